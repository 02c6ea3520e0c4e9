//! Shutdown: one watch channel that every part of the master observes, fed by SIGTERM,
//! SIGINT and (later) the shutdown API; then the documented stop sequence.

use std::fmt;
use std::sync::Arc;

use sluice_core::audit::AuditEventCode;
use sluice_core::events::{EventCode, Severity};
use sluice_core::store::SessionStatus;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::supervisor::ChildKind;
use crate::system::System;

/// Why the master is stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    Signal(&'static str),
    Api {
        user: String,
    },
    /// The session lock was lost (PostgreSQL connection gone).
    SessionLost,
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(name) => write!(f, "signal {name}"),
            Self::Api { user } => write!(f, "shutdown API call by {user}"),
            Self::SessionLost => f.write_str("loss of the application session lock"),
        }
    }
}

/// The one shutdown signal of the process.
#[derive(Clone)]
pub struct ShutdownControl {
    tx: watch::Sender<Option<ShutdownReason>>,
}

impl Default for ShutdownControl {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownControl {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(None);
        Self { tx }
    }

    /// Requests shutdown. Returns false (and logs) when one is already under way.
    pub fn request(&self, reason: ShutdownReason) -> bool {
        // Logged inside the update, before waiters wake, so the log shows the request
        // ahead of the stop sequence it starts.
        self.tx.send_if_modified(|current| {
            if current.is_none() {
                tracing::info!("shutdown requested by {reason}");
                *current = Some(reason.clone());
                true
            } else {
                tracing::warn!(
                    "{reason} received while shutdown is already in progress; still \
                     shutting down (SIGKILL aborts, and the next start recovers the session)"
                );
                false
            }
        })
    }

    pub fn requested(&self) -> Option<ShutdownReason> {
        self.tx.borrow().clone()
    }

    /// Resolves once shutdown has been requested.
    pub async fn wait(&self) -> ShutdownReason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`; this cannot happen while we are borrowed.
                return ShutdownReason::Signal("internal");
            }
        }
    }

    /// Routes SIGTERM and SIGINT to [`ShutdownControl::request`] for the life of the
    /// process; a second signal is reported, not fatal.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let control = self.clone();
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    s = term.recv() => { if s.is_none() { break; } "SIGTERM" }
                    s = int.recv() => { if s.is_none() { break; } "SIGINT" }
                };
                control.request(ShutdownReason::Signal(name));
            }
        });
        Ok(())
    }
}

/// Waits until something asks the master to stop.
pub async fn wait_for_request(system: &System) -> ShutdownReason {
    system.shutdown.wait().await
}

/// The documented shutdown sequence; returns the exit code.
pub async fn stop(system: Arc<System>, reason: ShutdownReason) -> u8 {
    tracing::info!("system shutdown started ({reason})");
    // Steps 1-4: the children, kind by kind, in the reference's order; each is asked to stop
    // and signalled if it does not.
    for kind in ChildKind::SHUTDOWN_ORDER {
        let policy = kind.policy();
        let what = match kind {
            ChildKind::Workflow => "stop all workflows",
            ChildKind::Job => "stop all jobs",
            ChildKind::Service => "stop and unload all services",
            ChildKind::HttpGateway => "stop the HTTP server",
        };
        // The supervisor signals children that do not stop; this bound only guards the
        // master against a bug there: it must always be able to finish its shutdown.
        let bound = crate::supervisor::STOP_TIMEOUT + std::time::Duration::from_secs(5);
        let stopped = match tokio::time::timeout(bound, system.supervisor.stop_kind(kind)).await {
            Ok(n) => n,
            Err(_) => {
                tracing::error!(
                    "shutdown: {what} did not finish within {} s; going on",
                    bound.as_secs()
                );
                0
            }
        };
        tracing::info!(
            "shutdown step {}/6: {what} ({stopped} {} process(es) stopped)",
            policy.shutdown_step,
            policy.process_type
        );
    }

    let mut code = 0;
    match system.session.lock().await.take() {
        Some(session) => {
            let id = session.id;
            match system
                .store
                .close_session(session, SessionStatus::Complete)
                .await
            {
                Ok(()) => tracing::info!("shutdown step 5/6: application session {id} closed"),
                Err(err) => {
                    // The session stays ACTIVE; the next start recovers it, so nothing is lost.
                    tracing::error!(
                        "shutdown step 5/6: cannot close application session {id}: {err}; \
                         the next start will recover it"
                    );
                    code = 70;
                }
            }
        }
        None => tracing::warn!("shutdown step 5/6: no application session was open"),
    }

    system.raise(
        EventCode::SystemShutdown,
        Severity::Info,
        serde_json::json!({
            "instance-key": system.options.instance_key(),
            "reason": reason.to_string(),
            "sessionid": system.session_id,
        }),
    );
    system
        .audit(
            AuditEventCode::SystemShutdown,
            Some(reason.to_string()),
            None,
        )
        .await;
    for task in system.tasks.lock().await.drain(..) {
        task.abort();
    }
    // Sockets close before the context ends, so the last messages flush.
    drop(system.bus.lock().await.take());
    system.store.close().await;
    tracing::info!("shutdown step 6/6: closing log files; exit code {code}");
    system.log.close();
    code
}
