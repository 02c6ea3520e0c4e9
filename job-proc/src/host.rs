//! What job code can ask of the engine (the runner's callbacks): state data, persistent
//! state data and the run's info; everything else is the API every interface shares
//! ([`sluice_core::host_api::HostApi::common`]).
//!
//! Every write is committed before the call returns to user code, so a run that went on
//! after `saveStateData` never finds its state lost.

use std::sync::Arc;

use serde_json::Value;
use sluice_core::runner::{CallbackError, CallbackFuture, EngineSlot, Host};

use crate::Shared;

/// The runner's host: the engine's APIs for user code.
#[derive(Default)]
pub struct JobHost {
    shared: EngineSlot<Shared>,
}

impl JobHost {
    pub fn attach(&self, shared: &Arc<Shared>) {
        self.shared.attach(shared);
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get()
    }
}

fn refuse(err: &str, desc: impl Into<String>) -> CallbackError {
    CallbackError::new(err, desc)
}

impl Host for JobHost {
    fn callback(&self, call_context: Value, api: String, args: Vec<Value>) -> CallbackFuture {
        let shared = self.shared();
        Box::pin(async move {
            let shared =
                shared.ok_or_else(|| refuse("SHUTDOWN-IN-PROGRESS", "the job is stopping"))?;
            dispatch(&shared, &call_context, &api, args).await
        })
    }

    fn log(&self, level: &str, message: &str, call_context: Option<&Value>) {
        let job_instanceid = call_context
            .and_then(|c| c.get("job_instanceid"))
            .and_then(Value::as_i64)
            .unwrap_or_default();
        match level {
            "debug" => tracing::debug!(job_instanceid, "{message}"),
            "warn" | "warning" => tracing::warn!(job_instanceid, "{message}"),
            "error" | "fatal" => tracing::error!(job_instanceid, "{message}"),
            _ => tracing::info!(job_instanceid, "{message}"),
        }
    }
}

/// The run a callback belongs to: from its call's context, else (threads user code started
/// itself carry no context) the run in progress.
fn run_of(shared: &Shared, context: &Value) -> Result<(i64, i64), CallbackError> {
    let from_context = context
        .get("jobid")
        .and_then(Value::as_i64)
        .zip(context.get("job_instanceid").and_then(Value::as_i64));
    from_context
        .or(*shared.current.lock().unwrap_or_else(|p| p.into_inner()))
        .ok_or_else(|| {
            refuse(
                "NOT-IN-JOB-INSTANCE",
                "this API works only while the job runs",
            )
        })
}

fn object_arg(args: Vec<Value>, api: &str) -> Result<Value, CallbackError> {
    match args.into_iter().next() {
        Some(data @ Value::Object(_)) => Ok(data),
        _ => Err(refuse("INVALID-ARGUMENT", format!("{api} takes a dict"))),
    }
}

fn db(err: sluice_core::store::StoreError) -> CallbackError {
    refuse("DATABASE-ERROR", err.to_string())
}

async fn dispatch(
    shared: &Arc<Shared>,
    context: &Value,
    api: &str,
    args: Vec<Value>,
) -> Result<Value, CallbackError> {
    match api {
        "getStateData" | "getPersistentStateData" => {
            // The job, not the run: state data outlives runs (and may be read at load time).
            let jobid = shared.loaded().program.job.jobid;
            let state = shared.store.job_state_data(jobid).await.map_err(db)?;
            Ok(if api == "getStateData" {
                state.data
            } else {
                state.persistent
            }
            .unwrap_or(Value::Null))
        }
        "saveStateData" => {
            let data = object_arg(args, api)?;
            let jobid = shared.loaded().program.job.jobid;
            shared
                .store
                .save_job_state_data(jobid, &data)
                .await
                .map_err(db)?;
            Ok(Value::Null)
        }
        "savePersistentStateData" => {
            let data = object_arg(args, api)?;
            let jobid = shared.loaded().program.job.jobid;
            shared
                .store
                .save_job_persistent_state_data(jobid, &data)
                .await
                .map_err(db)?;
            Ok(Value::Null)
        }
        "saveInfo" => {
            let info = object_arg(args, api)?;
            let (_, job_instanceid) = run_of(shared, context)?;
            let saved = shared
                .store
                .save_job_info(job_instanceid, &shared.network_id, &info)
                .await
                .map_err(db)?;
            if !saved {
                return Err(refuse(
                    "NOT-IN-JOB-INSTANCE",
                    format!("job instance {job_instanceid} is no longer in progress here"),
                ));
            }
            Ok(Value::Null)
        }
        other => match shared.api.common(other, args).await {
            Some(result) => result,
            None => Err(refuse(
                "UNKNOWN-API",
                format!("the job engine has no API {other:?}"),
            )),
        },
    }
}
