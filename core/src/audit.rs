//! Audit event codes (Qorus `OMQ::AE_*`) and which `qorus.audit` option enables each.
//!
//! Audit records go to the `audit_events` table only when the operator turned the matching
//! `qorus.audit` code on; otherwise they are not written at all, as in Qorus.

use crate::options::{AuditCode, Options};
use crate::store::{AuditEvent, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEventCode {
    SystemStartup = 1,
    SystemShutdown = 2,
    SystemRecoveryStart = 3,
    SystemRecoveryComplete = 4,
    UserEvent = 5,
    WorkflowStatusChange = 6,
    WorkflowStart = 7,
    WorkflowStop = 8,
    ServiceStart = 9,
    ServiceStop = 10,
    JobStart = 11,
    JobStop = 12,
    JobInstanceStart = 13,
    JobInstanceStop = 14,
    ApiCall = 15,
    JobRecovery = 16,
    WorkflowDataCreated = 17,
    AlertOngoingRaised = 18,
    AlertOngoingCleared = 19,
    AlertTransientRaised = 20,
    SourceFileLoaded = 21,
    GroupStatusChanged = 22,
}

impl AuditEventCode {
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The Qorus name, e.g. `SYSTEM-RECOVERY-START`.
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemStartup => "SYSTEM-STARTUP",
            Self::SystemShutdown => "SYSTEM-SHUTDOWN",
            Self::SystemRecoveryStart => "SYSTEM-RECOVERY-START",
            Self::SystemRecoveryComplete => "SYSTEM-RECOVERY-COMPLETE",
            Self::UserEvent => "USER-EVENT",
            Self::WorkflowStatusChange => "WORKFLOW-STATUS-CHANGE",
            Self::WorkflowStart => "WORKFLOW-START",
            Self::WorkflowStop => "WORKFLOW-STOP",
            Self::ServiceStart => "SERVICE-START",
            Self::ServiceStop => "SERVICE-STOP",
            Self::JobStart => "JOB-START",
            Self::JobStop => "JOB-STOP",
            Self::JobInstanceStart => "JOB-INSTANCE-START",
            Self::JobInstanceStop => "JOB-INSTANCE-STOP",
            Self::ApiCall => "API-CALL",
            Self::JobRecovery => "JOB-RECOVERY",
            Self::WorkflowDataCreated => "WORKFLOW-DATA-CREATED",
            Self::AlertOngoingRaised => "ALERT-ONGOING-RAISED",
            Self::AlertOngoingCleared => "ALERT-ONGOING-CLEARED",
            Self::AlertTransientRaised => "ALERT-TRANSIENT-RAISED",
            Self::SourceFileLoaded => "SOURCE-FILE-LOADED",
            Self::GroupStatusChanged => "GROUP-STATUS-CHANGED",
        }
    }

    /// The `qorus.audit` code that must be on for this event to be written.
    pub fn option(self) -> AuditCode {
        match self {
            Self::SystemStartup
            | Self::SystemShutdown
            | Self::SystemRecoveryStart
            | Self::SystemRecoveryComplete => AuditCode::System,
            Self::UserEvent => AuditCode::UserEvents,
            Self::WorkflowStatusChange | Self::WorkflowDataCreated => AuditCode::WorkflowData,
            Self::WorkflowStart | Self::WorkflowStop => AuditCode::Workflows,
            Self::ServiceStart | Self::ServiceStop => AuditCode::Services,
            Self::JobStart | Self::JobStop | Self::JobRecovery => AuditCode::Jobs,
            Self::JobInstanceStart | Self::JobInstanceStop => AuditCode::JobData,
            Self::ApiCall => AuditCode::Api,
            Self::AlertOngoingRaised | Self::AlertOngoingCleared | Self::AlertTransientRaised => {
                AuditCode::Alerts
            }
            Self::SourceFileLoaded => AuditCode::Oload,
            Self::GroupStatusChanged => AuditCode::Groups,
        }
    }
}

/// Who system processing is recorded as, as in Qorus.
pub const SYSTEM_USER: &str = "Qorus";

/// Where an audited action came from.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The RBAC user, or [`SYSTEM_USER`].
    pub who: &'a str,
    /// e.g. `system`, or the tool: `sluice load`.
    pub source: &'a str,
    /// e.g. `internal call`, or the API or command.
    pub reason: &'a str,
}

impl Caller<'_> {
    pub const SYSTEM: Caller<'static> = Caller {
        who: SYSTEM_USER,
        source: "system",
        reason: "internal call",
    };
}

/// Writes an audit record when `qorus.audit` enables its code. A failed write is logged and
/// does not stop the action it describes.
pub async fn record(
    options: &Options,
    store: &Store,
    code: AuditEventCode,
    caller: Caller<'_>,
    info1: Option<String>,
    info2: Option<String>,
) {
    if !options.audits(code.option()) {
        return;
    }
    let event = AuditEvent {
        code: code.code(),
        user_event: None,
        reason: Some(caller.reason.to_string()),
        who: caller.who.to_string(),
        source: caller.source.to_string(),
        info1,
        info2,
    };
    if let Err(err) = store.insert_audit_event(&event).await {
        tracing::error!("cannot write audit event {}: {err}", code.name());
    }
}
