//! What the interface engines (the workflow, service and job processes) share beside the
//! child loop ([`crate::child`]) and the Python runner ([`crate::runner`]): their `main`,
//! their error type, the replies to the requests the child loop forwards to them, and the
//! pace at which they start a new runner after one died.

use std::future::Future;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use sluice_proto::v1::{envelope::Kind, Envelope};

use crate::child::{ChildContext, Work};
use crate::runner::{CodeError, RunnerError};
use crate::store::jobs::JobError;
use crate::store::StoreError;

/// Why an engine could not start, or could not load its interface's code again.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Setup(String),
    /// `kind` is `workflow`, `service` or `job`.
    #[error("{kind} {name}:{version} is not loaded in the system database")]
    NotLoaded {
        kind: &'static str,
        name: String,
        version: String,
    },
    /// Found at a reset: the interface was deleted while this process ran it.
    #[error("{kind} {name}:{version} is no longer loaded")]
    NoLongerLoaded {
        kind: &'static str,
        name: String,
        version: String,
    },
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A job's stored definition does not hold (its schedule).
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

impl EngineError {
    pub fn not_loaded(kind: &'static str, name: &str, version: &str) -> Self {
        EngineError::NotLoaded {
            kind,
            name: name.to_string(),
            version: version.to_string(),
        }
    }

    pub fn no_longer_loaded(kind: &'static str, name: &str, version: &str) -> Self {
        EngineError::NoLongerLoaded {
            kind,
            name: name.to_string(),
            version: version.to_string(),
        }
    }
}

/// `main` of an interface process: the child loop with `engine` beside it.
pub fn main<F, Fut>(process_type: &str, engine: F) -> ExitCode
where
    F: FnOnce(ChildContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let work: Work =
        Box::new(move |ctx| Box::pin(async move { engine(ctx).await.map_err(|e| e.to_string()) }));
    ExitCode::from(crate::child::main_with(process_type, Some(work)))
}

/// A value that many tasks read and that is replaced whole now and then (the loaded code
/// at a reset, the runner after a restart). Readers get a clone, so no lock is held while
/// they use it.
pub struct Current<T>(Mutex<T>);

impl<T: Clone> Current<T> {
    pub fn new(value: T) -> Self {
        Current(Mutex::new(value))
    }

    pub fn get(&self) -> T {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }
}

/// The reply to `request`, with nothing in it yet.
pub fn reply_to(request: &Envelope) -> Envelope {
    Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        ..Default::default()
    }
}

/// `reply` carrying the error `code`; `info` becomes its `info_json`.
pub fn refused(
    mut reply: Envelope,
    code: &str,
    description: String,
    info: Option<Value>,
) -> Envelope {
    reply.error = Some(sluice_proto::v1::Error {
        code: code.to_string(),
        description,
        info_json: info.map(|i| i.to_string().into_bytes()).unwrap_or_default(),
    });
    reply
}

/// The reply to a request for a method the engine of `network_id` does not serve.
pub fn unknown_method(request: &Envelope, network_id: &str) -> Envelope {
    refused(
        reply_to(request),
        "UNKNOWN-METHOD",
        format!("{network_id} does not serve {}", request.method),
        None,
    )
}

/// How long an engine waits before it starts a new runner after the last one died. The
/// wait doubles while runners keep dying or failing to start, so code that kills its
/// runner at once does not keep the machine busy with restarts; a runner that comes up
/// brings it back down, not all the way, for the same reason.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    delay: Duration,
}

impl RestartBackoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// A restart is due (or failed): the next one waits longer.
    pub fn lengthen(&mut self) {
        self.delay = (self.delay * 2).min(Self::MAX);
    }

    /// A new runner is up.
    pub fn shorten(&mut self) {
        self.delay = Self::FIRST.max(self.delay / 4);
    }
}

impl Default for RestartBackoff {
    fn default() -> Self {
        RestartBackoff { delay: Self::FIRST }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_slow_down_while_runners_die_and_speed_up_once_one_lives() {
        let mut backoff = RestartBackoff::default();
        assert_eq!(backoff.delay(), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.lengthen();
        }
        assert_eq!(backoff.delay(), Duration::from_secs(10));
        backoff.shorten();
        assert_eq!(backoff.delay(), Duration::from_millis(2500));
        backoff.shorten();
        backoff.shorten();
        assert_eq!(backoff.delay(), Duration::from_millis(200));
    }

    #[test]
    fn an_unknown_method_is_refused_in_the_reply_to_its_request() {
        let request = Envelope {
            id: 7,
            method: "frobnicate".into(),
            kind: Kind::Request as i32,
            ..Default::default()
        };
        let reply = unknown_method(&request, "qwf-1");
        assert_eq!((reply.id, reply.kind), (7, Kind::Reply as i32));
        let error = reply.error.unwrap_or_default();
        assert_eq!(error.code, "UNKNOWN-METHOD");
        assert_eq!(error.description, "qwf-1 does not serve frobnicate");
        assert!(error.info_json.is_empty());
    }
}
