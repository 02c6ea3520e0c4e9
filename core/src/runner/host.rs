//! The [`Host`] of an engine that is built after its runner: it serves user code's
//! callbacks while the engine exists and refuses them once it is gone.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use super::{CallbackError, CallbackFuture, EngineSlot, Host};

/// What an engine does for the user code its runner runs, through an [`EngineHost`].
pub trait Engine: Send + Sync + 'static {
    /// What user code calling back after the engine is gone is told, e.g. "the job is
    /// stopping".
    const STOPPING: &'static str;

    /// Carries out `api` (see [`Host::callback`]).
    fn serve(
        self: &Arc<Self>,
        call_context: &Value,
        api: &str,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<Value, CallbackError>> + Send;

    /// A log line from user code (see [`Host::log`] and [`runner_log!`](crate::runner_log)).
    fn log(level: &str, message: &str, call_context: Option<&Value>);
}

/// The runner's host for the engine `E`: the runner starts with it, and
/// [`EngineHost::attach`] hands it the engine once the engine holds the runner.
pub struct EngineHost<E>(EngineSlot<E>);

impl<E> Default for EngineHost<E> {
    fn default() -> Self {
        EngineHost(EngineSlot::default())
    }
}

impl<E> EngineHost<E> {
    pub fn attach(&self, engine: &Arc<E>) {
        self.0.attach(engine);
    }
}

impl<E: Engine> Host for EngineHost<E> {
    fn callback(&self, call_context: Value, api: String, args: Vec<Value>) -> CallbackFuture {
        let engine = self.0.get();
        Box::pin(async move {
            let engine =
                engine.ok_or_else(|| CallbackError::new("SHUTDOWN-IN-PROGRESS", E::STOPPING))?;
            engine.serve(&call_context, &api, args).await
        })
    }

    fn log(&self, level: &str, message: &str, call_context: Option<&Value>) {
        E::log(level, message, call_context);
    }
}

#[doc(hidden)]
pub use tracing as __tracing;

/// Logs a line of user code (see [`Host::log`]) at the level it gave, with the fields
/// named after the message, as in `runner_log!(level, message, order, step)`. A level the
/// runner protocol does not know logs as `info`.
#[macro_export]
macro_rules! runner_log {
    ($level:expr, $message:expr $(, $field:ident)* $(,)?) => {
        match $level {
            "debug" => $crate::runner::__tracing::debug!($($field,)* "{}", $message),
            "warn" | "warning" => $crate::runner::__tracing::warn!($($field,)* "{}", $message),
            "error" | "fatal" => $crate::runner::__tracing::error!($($field,)* "{}", $message),
            _ => $crate::runner::__tracing::info!($($field,)* "{}", $message),
        }
    };
}
