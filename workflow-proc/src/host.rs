//! What user code in a step can ask of the engine (the runner's callbacks).
//!
//! Changes to an order (dynamic data, keys) are committed before the call returns to user
//! code, so a step that went on after `updateDynamicData` never sees its change lost.

use std::sync::Arc;

use serde_json::Value;
use sluice_core::runner::{CallbackError, CallbackFuture, EngineSlot, Host};
use sluice_core::store::engine::OrderTransition;

use crate::Shared;

/// The runner's host: the engine's APIs for user code.
#[derive(Default)]
pub struct EngineHost {
    shared: EngineSlot<Shared>,
}

impl EngineHost {
    pub fn attach(&self, shared: &Arc<Shared>) {
        self.shared.attach(shared);
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get()
    }
}

fn refuse(err: &str, desc: impl Into<String>) -> CallbackError {
    CallbackError {
        err: err.into(),
        desc: desc.into(),
    }
}

impl Host for EngineHost {
    fn callback(&self, call_context: Value, api: String, args: Vec<Value>) -> CallbackFuture {
        let shared = self.shared();
        Box::pin(async move {
            let shared =
                shared.ok_or_else(|| refuse("SHUTDOWN-IN-PROGRESS", "the engine is stopping"))?;
            dispatch(&shared, &call_context, &api, args).await
        })
    }

    fn log(&self, level: &str, message: &str, call_context: Option<&Value>) {
        let order = call_context
            .and_then(|c| c.get("wfiid"))
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let step = call_context
            .and_then(|c| c.get("stepname"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match level {
            "debug" => tracing::debug!(order, step, "{message}"),
            "warn" | "warning" => tracing::warn!(order, step, "{message}"),
            "error" | "fatal" => tracing::error!(order, step, "{message}"),
            _ => tracing::info!(order, step, "{message}"),
        }
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    context: &Value,
    api: &str,
    args: Vec<Value>,
) -> Result<Value, CallbackError> {
    match api {
        "updateDynamicData" | "deleteDynamicDataKey" => {
            let order = order_of(shared, context)?;
            let _serial = order.updates.lock().await;
            let data = {
                let mut data = order.dynamicdata.lock().unwrap_or_else(|p| p.into_inner());
                if !data.is_object() {
                    *data = Value::Object(Default::default());
                }
                let map = data
                    .as_object_mut()
                    .ok_or_else(|| refuse("DYNAMIC-DATA-ERROR", "dynamic data is not an object"))?;
                if api == "updateDynamicData" {
                    let Some(Value::Object(patch)) = args.into_iter().next() else {
                        return Err(refuse(
                            "DYNAMIC-DATA-ERROR",
                            "updateDynamicData takes a dict",
                        ));
                    };
                    for (k, v) in patch {
                        map.insert(k, v);
                    }
                } else {
                    for key in args {
                        if let Value::String(key) = key {
                            map.remove(&key);
                        }
                    }
                }
                data.to_string()
            };
            commit(
                shared,
                OrderTransition {
                    id: order.id,
                    claim: order.claim.clone(),
                    dynamicdata: Some(data),
                    ..Default::default()
                },
            )
            .await?;
            Ok(Value::Null)
        }
        "setOrderKeys" => {
            let order = order_of(shared, context)?;
            let Some(Value::Object(keys)) = args.into_iter().next() else {
                return Err(refuse(
                    "ORDER-KEY-ERROR",
                    "setOrderKeys takes a dict of key: value",
                ));
            };
            let program = shared.program();
            let mut writes = Vec::new();
            for (name, value) in keys {
                if !program.workflow.keylist.contains(&name) {
                    return Err(refuse(
                        "ORDER-KEY-ERROR",
                        format!(
                            "workflow {}:{} has no order key {name:?} (keylist: {})",
                            program.workflow.name,
                            program.workflow.version,
                            program.workflow.keylist.join(", ")
                        ),
                    ));
                }
                let values = match value {
                    Value::Array(items) => items.into_iter().map(scalar).collect(),
                    other => vec![scalar(other)],
                };
                writes.push((name, values));
            }
            let _serial = order.updates.lock().await;
            {
                let mut keys = order.keys.lock().unwrap_or_else(|p| p.into_inner());
                for (name, values) in &writes {
                    keys.insert(name.clone(), values.clone());
                }
            }
            commit(
                shared,
                OrderTransition {
                    id: order.id,
                    claim: order.claim.clone(),
                    keys: writes,
                    ..Default::default()
                },
            )
            .await?;
            Ok(Value::Null)
        }
        other => match shared.api.common(other, args).await {
            Some(result) => result,
            None => Err(refuse(
                "UNKNOWN-API",
                format!("the workflow engine has no API {other:?}"),
            )),
        },
    }
}
fn scalar(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn order_of(
    shared: &Shared,
    context: &Value,
) -> Result<Arc<crate::order::OrderState>, CallbackError> {
    let id = context
        .get("wfiid")
        .and_then(Value::as_i64)
        .ok_or_else(|| refuse("NOT-IN-ORDER", "this API works only inside a workflow step"))?;
    shared
        .orders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
        .ok_or_else(|| refuse("NOT-IN-ORDER", format!("order {id} is not running here")))
}

async fn commit(shared: &Shared, t: OrderTransition) -> Result<(), CallbackError> {
    match shared.committer.commit(t).await {
        Ok(crate::Committed::Done) => Ok(()),
        Ok(crate::Committed::Lost) => Err(refuse(
            "ORDER-LOST",
            "the order was taken back by recovery; this step's work will be redone",
        )),
        Err(err) => Err(refuse("DATABASE-ERROR", err.to_string())),
    }
}
