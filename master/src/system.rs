//! The running master's state: what startup builds and shutdown takes apart.

use std::sync::Arc;

use tokio::sync::Mutex;

use sluice_core::audit::{self, AuditEventCode, Caller};
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::logging::LogFile;
use sluice_core::options::Options;
use sluice_core::store::{Session, Store};

use crate::shutdown::ShutdownControl;

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
        audit::record(
            &self.options,
            &self.store,
            code,
            Caller::SYSTEM,
            info1,
            info2,
        )
        .await;
    }
}
