//! `sluice-core`: the library every Sluice process shares.
//!
//! - [`options`]: the typed option table and the `$OMQ_DIR/etc/options` parser.
//! - [`store`]: the system database (SQLite or PostgreSQL) behind one API, its schema
//!   migrations, and the application session with crash recovery.
//! - [`audit`]: audit event codes and the `qorus.audit` option that enables each.
//! - [`bus`]: ZeroMQ with CURVE on every socket, carrying protobuf envelopes.
//! - [`keys`]: CURVE keypairs and the cluster key file.
//! - [`child`]: the loop every child process runs (bootstrap, registration, heartbeats).
//! - [`engine`]: what the workflow, service and job engines share beside that loop.
//! - [`events`]: system events with Qorus's classes and codes, and the in-memory sink.
//! - [`interfaces`]: Qorus's interface definition files (YAML), parsed and validated.
//! - [`logging`]: per-process log files plus stderr, through `tracing`.
//! - [`home`]: the instance home directory (`$OMQ_DIR`) and its layout.
//! - [`host_api`]: the callbacks steps, services and jobs share (events, service calls, orders).
//! - [`report`]: the system's status and interfaces as operators read them (CLI and `ostatus`).
//! - [`runner`]: the Python runner that runs interface code, and its line-delimited JSON protocol.
//! - [`schedule`]: job schedules: Qorus's cron grammar and fixed periods.
//! - [`secret`]: a wrapper that keeps secrets out of logs and `Debug` output.

pub mod audit;
pub mod bus;
pub mod child;
pub mod engine;
pub mod events;
pub mod home;
pub mod host_api;
pub mod interfaces;
pub mod keys;
pub mod logging;
pub mod options;
pub mod registry;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod secret;
pub mod store;

/// The version every binary reports with `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, the unit every timestamp in the system database uses.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// This host's name, as recorded in sessions and process rows.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
