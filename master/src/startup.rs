//! System startup, in the order the Qorus reference documents:
//! 1 parse options, 2 open the system datasource, 3 open log files, 4 initialise RBAC,
//! 5 open the application session (recovering a crashed one), 6 start autostart
//! interfaces, 7 start the HTTP server; then raise `SYSTEM_STARTUP`.

use std::sync::Arc;

use tokio::sync::Mutex;

use sluice_core::audit::AuditEventCode;
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::home::Home;
use sluice_core::logging::{self, LogError, LogFile};
use sluice_core::options::{Options, OptionsError};
use sluice_core::store::{
    CrashedSession, RecoveryCounts, SchemaState, SessionError, SessionHolder, Store, StoreError,
};

use crate::shutdown::ShutdownControl;
use crate::system::{self, System};
use crate::Args;

/// Clock difference to the database server beyond which the master refuses to start:
/// order timestamps, schedules and leases compare the two clocks.
pub const MAX_CLOCK_SKEW_MS: i64 = 5_000;

/// Orders recovered per transaction, so recovering a huge session never holds one giant
/// transaction (and progress is visible in the log).
pub const RECOVERY_BATCH: u32 = 5_000;

/// A startup step that failed. Exit codes follow sysexits(3).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Options(#[from] OptionsError),
    #[error("cannot open the system database {db}: {source}")]
    Datasource { db: String, source: StoreError },
    #[error("{message}")]
    Schema { message: String, help: &'static str },
    #[error(
        "the database server's clock differs from this host's by {skew_ms} ms \
         (more than {MAX_CLOCK_SKEW_MS} ms allowed)"
    )]
    ClockSkew { skew_ms: i64 },
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("{0}")]
    SessionHeld(SessionError),
    #[error("cannot open the application session: {0}")]
    Session(SessionError),
    #[error("cannot recover crashed session {session}: {source}")]
    Recovery { session: i64, source: StoreError },
}

impl StartupError {
    /// The documented startup step that failed (0: before step 1).
    pub fn step(&self) -> u8 {
        match self {
            Self::Signals(_) => 0,
            Self::Options(_) => 1,
            Self::Datasource { .. } | Self::Schema { .. } | Self::ClockSkew { .. } => 2,
            Self::Log(_) => 3,
            Self::SessionHeld(_) | Self::Session(_) | Self::Recovery { .. } => 5,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Signals(_) => 71,                             // EX_OSERR
            Self::Options(_) => 64,                             // EX_USAGE
            Self::Datasource { .. } => 69,                      // EX_UNAVAILABLE
            Self::Schema { .. } | Self::ClockSkew { .. } => 78, // EX_CONFIG
            Self::Log(_) => 73,                                 // EX_CANTCREAT
            Self::SessionHeld(_) => 75,                         // EX_TEMPFAIL
            Self::Session(_) | Self::Recovery { .. } => 69,
        }
    }

    /// What the operator can do about it, when there is something to say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Self::Options(_) => {
                Some("fix the option in the file (or the command line); `sluice options` lists every option")
            }
            Self::Schema { help, .. } => Some(help),
            Self::ClockSkew { .. } => Some("synchronise both clocks (NTP) and start again"),
            Self::Log(_) => Some("check qorus.logdir: the directory must be writable by this user"),
            Self::SessionHeld(_) => Some(
                "stop the running master first, or give this one its own qorus.instance-key",
            ),
            _ => None,
        }
    }
}

/// Runs startup steps 1-7 and returns the running system.
pub async fn start(args: &Args, log: LogFile) -> Result<System, StartupError> {
    let started_ms = sluice_core::now_ms();
    let shutdown = ShutdownControl::new();
    shutdown
        .install_signal_handlers()
        .map_err(StartupError::Signals)?;
    tracing::info!(
        version = sluice_core::VERSION,
        pid = std::process::id(),
        "Sluice master starting"
    );

    // Step 1: parse the options file and the command-line overrides.
    let home = match &args.omq_dir {
        Some(dir) => Home::new(dir.clone()),
        None => Home::from_env(),
    };
    let options = Options::load(&home, &args.overrides)?;
    tracing::info!(
        "startup step 1/7: options read from {} ({} override(s))",
        home.options_file().display(),
        args.overrides.len()
    );
    let db_override = args
        .overrides
        .iter()
        .any(|o| o.trim_start().starts_with("qorus.systemdb"));
    if db_override && options.systemdb().has_password() {
        tracing::warn!(
            "qorus.systemdb with a password was given on the command line, where any local \
             user can read it (ps); put it in the options file (mode 0600) instead"
        );
    }
    for (name, value) in options.describe() {
        tracing::debug!("option {name} = {value}");
    }

    // Step 2: open the system datasource and check its schema.
    let db = options.systemdb();
    let store = Store::open(&db, args.create_schema)
        .await
        .map_err(|source| StartupError::Datasource {
            db: db.to_string(),
            source,
        })?;
    check_schema(&store, args.create_schema).await?;
    if let Some(skew_ms) =
        store
            .clock_skew_ms()
            .await
            .map_err(|source| StartupError::Datasource {
                db: db.to_string(),
                source,
            })?
    {
        if skew_ms.abs() > MAX_CLOCK_SKEW_MS {
            return Err(StartupError::ClockSkew { skew_ms });
        }
    }
    tracing::info!(
        "startup step 2/7: system datasource {db} open ({:?}, schema version {})",
        store.backend(),
        Store::known_schema_version()
    );

    // Step 3: open the log file; the lines logged so far go into it first.
    let path = log.open(
        &options.logdir(),
        &logging::file_name(options.instance_key(), "master"),
    )?;
    tracing::info!("startup step 3/7: logging to {}", path.display());

    // Step 4: RBAC. Users, roles and the login/shutdown check arrive with the RBAC
    // component; the step stays here so the order never changes.
    if options.rbac_security() {
        tracing::info!("startup step 4/7: RBAC security enabled");
    } else {
        tracing::info!(
            "startup step 4/7: RBAC security disabled (qorus.rbac-security); \
             every caller has every permission"
        );
    }

    // Step 5: the application session, recovering any session that died without closing.
    let holder = SessionHolder {
        pid: std::process::id(),
        host: hostname(),
    };
    let opened = store
        .open_session(options.instance_key(), &holder)
        .await
        .map_err(|err| match err {
            SessionError::Held { .. } => StartupError::SessionHeld(err),
            other => StartupError::Session(other),
        })?;
    let session_id = opened.session.id;
    tracing::info!(
        "startup step 5/7: application session {session_id} opened for instance '{}' \
         (pid {}, host {})",
        options.instance_key(),
        holder.pid,
        holder.host
    );
    for crashed in &opened.crashed {
        recover(&options, &store, crashed).await?;
    }

    let events = Arc::new(EventSink::new(options.max_events()));
    let system = System {
        options,
        store,
        events,
        log,
        shutdown,
        session: Mutex::new(Some(opened.session)),
        session_id,
        started_ms,
    };

    // Step 6: autostart interfaces. Interface processes (workflows, services, jobs) are
    // started here once the components that run them exist.
    if system.options.autostart_interfaces() {
        tracing::info!("startup step 6/7: autostart interfaces: none to start");
    } else {
        tracing::info!(
            "startup step 6/7: autostart interfaces disabled (qorus.autostart-interfaces)"
        );
    }

    // Step 7: the HTTP server. The gateway process that serves the listeners is started
    // here once it exists; until then the configured listeners are only reported.
    let listeners: Vec<String> = system
        .options
        .http_listeners()
        .iter()
        .map(|l| {
            format!(
                "{}:{}{}",
                l.host.as_deref().unwrap_or("*"),
                l.port,
                if l.tls.is_some() { " (https)" } else { "" }
            )
        })
        .collect();
    tracing::info!(
        "startup step 7/7: HTTP server: gateway not part of this build; configured listeners: {}",
        listeners.join(", ")
    );

    let ready_ms = sluice_core::now_ms() - started_ms;
    system.raise(
        EventCode::SystemStartup,
        Severity::Info,
        serde_json::json!({
            "instance-key": system.options.instance_key(),
            "sessionid": session_id,
            "pid": holder.pid,
            "host": holder.host,
            "version": sluice_core::VERSION,
            "startup_ms": ready_ms,
        }),
    );
    system
        .audit(
            AuditEventCode::SystemStartup,
            Some(system.options.instance_key().to_string()),
            Some(format!("session {session_id}")),
        )
        .await;
    tracing::info!("Sluice master ready in {ready_ms} ms");

    if let Some(reason) = system.shutdown.requested() {
        tracing::info!("{reason} arrived during startup; stopping now");
    }
    Ok(system)
}

async fn check_schema(store: &Store, create: bool) -> Result<(), StartupError> {
    let known = Store::known_schema_version();
    let schema_err = |err: StoreError| StartupError::Schema {
        message: format!("cannot read the system schema: {err}"),
        help: "run `sluice schema verify` for details",
    };
    match store.schema_state().await.map_err(schema_err)? {
        SchemaState::Current { .. } => Ok(()),
        SchemaState::Empty if create => {
            let version = store
                .schema_create()
                .await
                .map_err(|err| StartupError::Schema {
                    message: format!("cannot create the system schema: {err}"),
                    help: "check that the database user may create tables",
                })?;
            tracing::info!("created the system schema, version {version}");
            Ok(())
        }
        SchemaState::Empty => Err(StartupError::Schema {
            message: "the system database has no Sluice schema".into(),
            help: "run `sluice schema create`, or start the master with --create-schema",
        }),
        SchemaState::Older { version, known } => Err(StartupError::Schema {
            message: format!(
                "the system schema is version {version} but this Sluice needs version {known}"
            ),
            help: "run `sluice schema upgrade` (back up the database first)",
        }),
        SchemaState::Newer { version, .. } => Err(StartupError::Schema {
            message: format!(
                "the system schema is version {version}, newer than this Sluice knows ({known})"
            ),
            help: "run the Sluice release that upgraded the schema, or a newer one",
        }),
        SchemaState::Damaged { reason } => Err(StartupError::Schema {
            message: format!("the system schema is damaged: {reason}"),
            help: "run `sluice schema verify` and restore the database from a backup",
        }),
    }
}

async fn recover(
    options: &Options,
    store: &Store,
    crashed: &CrashedSession,
) -> Result<(), StartupError> {
    tracing::warn!(
        "recovering session {} of instance '{}' (pid {} on {}), which ended without closing",
        crashed.id,
        options.instance_key(),
        crashed.pid,
        crashed.host
    );
    system::audit(
        options,
        store,
        AuditEventCode::SystemRecoveryStart,
        Some(format!("session {}", crashed.id)),
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let mut progress = |so_far: RecoveryCounts| {
        tracing::info!(
            "recovery of session {}: {} orders so far",
            crashed.id,
            so_far.orders
        );
    };
    let counts = store
        .recover_session(crashed.id, RECOVERY_BATCH, &mut progress)
        .await
        .map_err(|source| StartupError::Recovery {
            session: crashed.id,
            source,
        })?;
    let summary = format!(
        "{} orders, {} segments, {} steps set to RETRY; {} job instances set to CRASH",
        counts.orders, counts.segments, counts.steps, counts.job_instances
    );
    tracing::info!(
        orders = counts.orders,
        segments = counts.segments,
        steps = counts.steps,
        job_instances = counts.job_instances,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "session {} recovered: {summary}",
        crashed.id
    );
    system::audit(
        options,
        store,
        AuditEventCode::SystemRecoveryComplete,
        Some(format!("session {}", crashed.id)),
        Some(summary),
    )
    .await;
    Ok(())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
