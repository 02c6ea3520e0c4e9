//! What user code in a step can ask of the engine (the runner's callbacks).
//!
//! Changes to an order (dynamic data, keys) are committed before the call returns to user
//! code, so a step that went on after `updateDynamicData` never sees its change lost.

use std::sync::Arc;

use serde_json::Value;
use sluice_core::runner::{CallbackError, Engine};
use sluice_core::store::engine::OrderTransition;

use crate::Shared;

/// The runner's host: the engine's APIs for user code.
pub type EngineHost = sluice_core::runner::EngineHost<Shared>;

impl Engine for Shared {
    const STOPPING: &'static str = "the engine is stopping";

    async fn serve(
        self: &Arc<Self>,
        context: &Value,
        api: &str,
        args: Vec<Value>,
    ) -> Result<Value, CallbackError> {
        match api {
            "updateDynamicData" | "deleteDynamicDataKey" => {
                let order = order_of(self, context)?;
                let _serial = order.updates.lock().await;
                let data = {
                    let mut data = order.dynamicdata.lock().unwrap_or_else(|p| p.into_inner());
                    if !data.is_object() {
                        *data = Value::Object(Default::default());
                    }
                    let map = data.as_object_mut().ok_or_else(|| {
                        CallbackError::new("DYNAMIC-DATA-ERROR", "dynamic data is not an object")
                    })?;
                    if api == "updateDynamicData" {
                        let Some(Value::Object(patch)) = args.into_iter().next() else {
                            return Err(CallbackError::new(
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
                    self,
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
                let order = order_of(self, context)?;
                let Some(Value::Object(keys)) = args.into_iter().next() else {
                    return Err(CallbackError::new(
                        "ORDER-KEY-ERROR",
                        "setOrderKeys takes a dict of key: value",
                    ));
                };
                let program = self.program.get();
                let mut writes = Vec::new();
                for (name, value) in keys {
                    if !program.workflow.keylist.contains(&name) {
                        return Err(CallbackError::new(
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
                    self,
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
            other => {
                self.api
                    .common_or_unknown(other, args, "the workflow engine")
                    .await
            }
        }
    }

    fn log(level: &str, message: &str, call_context: Option<&Value>) {
        let order = call_context
            .and_then(|c| c.get("wfiid"))
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let step = call_context
            .and_then(|c| c.get("stepname"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        sluice_core::runner_log!(level, message, order, step);
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
        .ok_or_else(|| {
            CallbackError::new("NOT-IN-ORDER", "this API works only inside a workflow step")
        })?;
    shared
        .orders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
        .ok_or_else(|| {
            CallbackError::new("NOT-IN-ORDER", format!("order {id} is not running here"))
        })
}

async fn commit(shared: &Shared, t: OrderTransition) -> Result<(), CallbackError> {
    match shared.committer.commit(t).await {
        Ok(crate::Committed::Done) => Ok(()),
        Ok(crate::Committed::Lost) => Err(CallbackError::new(
            "ORDER-LOST",
            "the order was taken back by recovery; this step's work will be redone",
        )),
        Err(err) => Err(CallbackError::new("DATABASE-ERROR", err.to_string())),
    }
}
