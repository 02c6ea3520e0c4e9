//! What job code can ask of the engine (the runner's callbacks): state data, persistent
//! state data and the run's info; everything else is the API every interface shares
//! ([`sluice_core::host_api::HostApi::common`]).
//!
//! Every write is committed before the call returns to user code, so a run that went on
//! after `saveStateData` never finds its state lost.

use std::sync::Arc;

use serde_json::Value;
use sluice_core::host_api::dict_arg;
use sluice_core::runner::{CallbackError, Engine};

use crate::Shared;

/// The runner's host: the engine's APIs for user code.
pub type JobHost = sluice_core::runner::EngineHost<Shared>;

impl Engine for Shared {
    const STOPPING: &'static str = "the job is stopping";

    async fn serve(
        self: &Arc<Self>,
        context: &Value,
        api: &str,
        args: Vec<Value>,
    ) -> Result<Value, CallbackError> {
        match api {
            "getStateData" | "getPersistentStateData" => {
                // The job, not the run: state data outlives runs (and may be read at load time).
                let jobid = self.loaded.get().program.job.jobid;
                let state = self.store.job_state_data(jobid).await.map_err(db)?;
                Ok(if api == "getStateData" {
                    state.data
                } else {
                    state.persistent
                }
                .unwrap_or(Value::Null))
            }
            "saveStateData" | "savePersistentStateData" => {
                let data = dict_arg(args, api)?;
                let jobid = self.loaded.get().program.job.jobid;
                let store = &self.store;
                if api == "saveStateData" {
                    store.save_job_state_data(jobid, &data).await
                } else {
                    store.save_job_persistent_state_data(jobid, &data).await
                }
                .map_err(db)?;
                Ok(Value::Null)
            }
            "saveInfo" => {
                let info = dict_arg(args, api)?;
                let (_, job_instanceid) = run_of(self, context)?;
                let saved = self
                    .store
                    .save_job_info(job_instanceid, &self.network_id, &info)
                    .await
                    .map_err(db)?;
                if !saved {
                    return Err(CallbackError::new(
                        "NOT-IN-JOB-INSTANCE",
                        format!("job instance {job_instanceid} is no longer in progress here"),
                    ));
                }
                Ok(Value::Null)
            }
            other => {
                self.api
                    .common_or_unknown(other, args, "the job engine")
                    .await
            }
        }
    }

    fn log(level: &str, message: &str, call_context: Option<&Value>) {
        let job_instanceid = call_context
            .and_then(|c| c.get("job_instanceid"))
            .and_then(Value::as_i64)
            .unwrap_or_default();
        sluice_core::runner_log!(level, message, job_instanceid);
    }
}

/// The run a callback belongs to: from its call's context, else (threads user code started
/// itself carry no context) the run in progress.
fn run_of(shared: &Shared, context: &Value) -> Result<(i64, i64), CallbackError> {
    let from_context = context
        .get("jobid")
        .and_then(Value::as_i64)
        .zip(context.get("job_instanceid").and_then(Value::as_i64));
    from_context.or(shared.current.get()).ok_or_else(|| {
        CallbackError::new(
            "NOT-IN-JOB-INSTANCE",
            "this API works only while the job runs",
        )
    })
}

fn db(err: sluice_core::store::StoreError) -> CallbackError {
    CallbackError::new("DATABASE-ERROR", err.to_string())
}
