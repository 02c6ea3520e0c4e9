//! The running master's state: what startup builds and shutdown takes apart.

use std::sync::Arc;

use tokio::sync::Mutex;

use sluice_core::audit::AuditEventCode;
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::logging::LogFile;
use sluice_core::options::Options;
use sluice_core::store::{AuditEvent, Session, Store};

use crate::shutdown::ShutdownControl;

/// Who the master says it is in events and audit records.
pub const CALLER: &str = "Qorus";

pub struct System {
    pub options: Options,
    pub store: Store,
    pub events: Arc<EventSink>,
    pub log: LogFile,
    pub shutdown: ShutdownControl,
    /// The application session; `None` once shutdown has closed it. An async mutex: the
    /// heartbeat holds it across a database round trip.
    pub session: Mutex<Option<Session>>,
    pub session_id: i64,
    pub started_ms: i64,
    pub supervisor: crate::supervisor::Supervisor,
    /// The bus, dropped at the end of shutdown (after every socket task ended).
    pub bus: Mutex<Option<sluice_core::bus::Bus>>,
    /// Tasks serving the bus; aborted at the end of shutdown.
    pub tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl System {
    /// Raises a system event in the sink (which logs it).
    pub fn raise(&self, code: EventCode, severity: Severity, info: serde_json::Value) -> u64 {
        self.events.raise(code, severity, "master", info)
    }

    /// Writes an audit record when `qorus.audit` enables its code. A failed audit write is
    /// logged and does not stop the operation it describes.
    pub async fn audit(&self, code: AuditEventCode, info1: Option<String>, info2: Option<String>) {
        audit(&self.options, &self.store, code, info1, info2).await;
    }
}

/// [`System::audit`] for the steps that run before a `System` exists.
pub async fn audit(
    options: &Options,
    store: &Store,
    code: AuditEventCode,
    info1: Option<String>,
    info2: Option<String>,
) {
    if !options.audits(code.option()) {
        return;
    }
    let event = AuditEvent {
        code: code.code(),
        user_event: None,
        reason: Some("internal call".to_string()),
        who: CALLER.to_string(),
        source: "system".to_string(),
        info1,
        info2,
    };
    if let Err(err) = store.insert_audit_event(&event).await {
        tracing::error!("cannot write audit event {}: {err}", code.name());
    }
}
