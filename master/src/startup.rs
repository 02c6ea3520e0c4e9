//! System startup, in the order the Qorus reference documents:
//! 1 parse options, 2 open the system datasource, 3 open log files, 4 initialise RBAC,
//! 5 open the application session (recovering a crashed one), 6 start autostart
//! interfaces, 7 start the HTTP server; then raise `SYSTEM_STARTUP`.

use std::sync::Arc;

use tokio::sync::Mutex;

use sluice_core::audit::{self, AuditEventCode, Caller};
use sluice_core::bus::{self, Bus, BusError};
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::home::Home;
use sluice_core::keys::{self as cluster_keys, KeyError, KeyPair};
use sluice_core::logging::{self, LogError, LogFile};
use sluice_core::options::{Options, OptionsError};
use sluice_core::store::{
    CrashedSession, RecoveryCounts, SchemaState, SessionError, SessionHolder, Store, StoreError,
};

use crate::api::{Api, MasterAuth};
use crate::shutdown::ShutdownControl;
use crate::supervisor::{self, ChildKind, ChildSpec, Supervisor};
use crate::system::System;
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
    #[error("{0}")]
    Keys(#[from] KeyError),
    #[error("{0}")]
    NoCurve(BusError),
    #[error("cannot open the bus endpoint {endpoint}: {source}")]
    Bus { endpoint: String, source: BusError },
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
    #[error("{0}")]
    Gateway(sluice_http_gateway::GatewayError),
}

impl StartupError {
    /// The documented startup step that failed (0: before step 1).
    pub fn step(&self) -> u8 {
        match self {
            Self::Signals(_) => 0,
            Self::Options(_) | Self::Keys(_) | Self::NoCurve(_) => 1,
            Self::Bus { .. } => 6,
            Self::Datasource { .. } | Self::Schema { .. } | Self::ClockSkew { .. } => 2,
            Self::Log(_) => 3,
            Self::SessionHeld(_) | Self::Session(_) | Self::Recovery { .. } => 5,
            Self::Gateway(_) => 7,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Signals(_) => 71,                             // EX_OSERR
            Self::Options(_) => 64,                             // EX_USAGE
            Self::Keys(_) => 78,                                // EX_CONFIG
            Self::NoCurve(_) | Self::Bus { .. } => 69,          // EX_UNAVAILABLE
            Self::Datasource { .. } => 69,                      // EX_UNAVAILABLE
            Self::Schema { .. } | Self::ClockSkew { .. } => 78, // EX_CONFIG
            Self::Log(_) => 73,                                 // EX_CANTCREAT
            Self::SessionHeld(_) => 75,                         // EX_TEMPFAIL
            Self::Session(_) | Self::Recovery { .. } => 69,
            Self::Gateway(sluice_http_gateway::GatewayError::Tls { .. }) => 78, // EX_CONFIG
            Self::Gateway(_) => 69,
        }
    }

    /// What the operator can do about it, when there is something to say.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Self::Options(_) => {
                Some("fix the option in the file (or the command line); `sluice options` lists every option")
            }
            Self::Schema { help, .. } => Some(help),
            Self::Keys(KeyError::NotFound { .. }) => {
                Some("create the cluster key with `sluice keys init` (scripts/run does it)")
            }
            Self::Bus { .. } => {
                Some("another process may use the port: change qorus.cluster-api, or stop it")
            }
            Self::ClockSkew { .. } => Some("synchronise both clocks (NTP) and start again"),
            Self::Log(_) => Some("check qorus.logdir: the directory must be writable by this user"),
            Self::SessionHeld(_) => Some(
                "stop the running master first, or give this one its own qorus.instance-key",
            ),
            Self::Gateway(sluice_http_gateway::GatewayError::Tls { .. }) => Some(
                "fix the cert=/key= files of the listener in qorus.http-secure-server",
            ),
            Self::Gateway(_) => Some(
                "another process may use the port: change qorus.http-server or \
                 qorus.http-secure-server, or stop it",
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
    // The cluster key and CURVE are checked with the options: without them no process of
    // the node can talk to another, and there is no plaintext fallback.
    if !bus::curve_available() {
        return Err(StartupError::NoCurve(BusError::NoCurve));
    }
    let cluster_key = cluster_keys::load_key_file(&options.network_key())?;
    tracing::info!(
        "cluster key {} (public {})",
        options.network_key().display(),
        cluster_key.public_z85()
    );

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
        host: sluice_core::hostname(),
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
    // The bus comes up inside step 5, before recovery: children a dead master left running
    // keep working, and the processes this master adopts must keep their work; only what
    // the dead session's gone processes held is recovered.
    let events = Arc::new(EventSink::new(options.max_events()));
    let node = start_bus(
        &options,
        &store,
        &events,
        &shutdown,
        &cluster_key,
        session_id,
        started_ms,
        &args.overrides,
    )?;
    let adopted = adopt(&options, &store, &node, &cluster_key, session_id).await;
    for (network_id, old_session) in &adopted {
        match store.adopt_work(*old_session, session_id, network_id).await {
            Ok((0, 0)) => {}
            Ok((orders, jobs)) => tracing::info!(
                network_id = %network_id,
                "kept the work of adopted process: {orders} orders, {jobs} job instances"
            ),
            Err(source) => {
                return Err(StartupError::Recovery {
                    session: *old_session,
                    source,
                })
            }
        }
    }
    for crashed in &opened.crashed {
        recover(&options, &store, crashed).await?;
    }
    let adopted: Vec<String> = adopted.into_iter().map(|(id, _)| id).collect();

    // Step 6: the autostart interfaces. A failure to read them is logged (and raised as an
    // event) but does not stop the start, as the reference says for services.
    let mut autostarted = 0;
    if options.autostart_interfaces() {
        match store.list_interfaces().await {
            Ok(rows) => {
                for row in rows.iter().filter(|r| r.starts_by_itself()) {
                    let Some(spec) = ChildSpec::for_interface(row) else {
                        continue;
                    };
                    if adopted.contains(&spec.network_id) {
                        continue;
                    }
                    node.supervisor.send(supervisor::Command::Start(spec));
                    autostarted += 1;
                }
            }
            Err(err) => {
                tracing::error!("startup step 6/7: cannot read the interfaces to autostart: {err}");
                events.raise(
                    EventCode::SystemError,
                    Severity::Error,
                    "master",
                    serde_json::json!({"step": 6, "error": err.to_string()}),
                );
            }
        }
        tracing::info!(
            "startup step 6/7: cluster bus up ({}); {} process(es) adopted; {autostarted} \
             autostart interface(s) starting",
            node.endpoints.join(", "),
            adopted.len()
        );
    } else {
        tracing::info!(
            "startup step 6/7: cluster bus up ({}); {} process(es) adopted; autostart \
             disabled (qorus.autostart-interfaces)",
            node.endpoints.join(", "),
            adopted.len()
        );
    }

    // Step 7: the HTTP server, served by the gateway child process.
    let listeners: Vec<String> = options
        .http_listeners()
        .iter()
        .map(ToString::to_string)
        .collect();
    if adopted.iter().any(|id| id == GATEWAY_ID) {
        tracing::info!(
            "startup step 7/7: HTTP gateway adopted (listeners {})",
            listeners.join(", ")
        );
    } else {
        // Every certificate loads and every address is free, or the start stops here,
        // after stopping what steps 5 and 6 started.
        if let Err(err) = sluice_http_gateway::preflight(&options) {
            for kind in ChildKind::SHUTDOWN_ORDER {
                node.supervisor.stop_kind(kind).await;
            }
            if let Err(e) = store
                .close_session(opened.session, sluice_core::store::SessionStatus::Complete)
                .await
            {
                tracing::warn!(
                    "cannot close session {session_id}: {e}; the next start recovers it"
                );
            }
            return Err(StartupError::Gateway(err));
        }
        node.supervisor.send(supervisor::Command::Start(ChildSpec {
            network_id: GATEWAY_ID.to_string(),
            kind: ChildKind::HttpGateway,
            interfaces: Vec::new(),
            autostart: true,
        }));
        tracing::info!(
            "startup step 7/7: HTTP gateway process started (listeners {})",
            listeners.join(", ")
        );
    }

    let system = System {
        options,
        store,
        events,
        log,
        shutdown,
        session: Mutex::new(Some(opened.session)),
        session_id,
        started_ms,
        supervisor: node.supervisor,
        bus: Mutex::new(Some(node.bus)),
        tasks: Mutex::new(node.tasks),
    };

    let ready_ms = sluice_core::now_ms() - started_ms;
    // The audit record first: SYSTEM_STARTUP is the readiness signal, and whoever acts on
    // it must find the startup already recorded.
    system
        .audit(
            AuditEventCode::SystemStartup,
            Some(system.options.instance_key().to_string()),
            Some(format!("session {session_id}")),
        )
        .await;
    system.raise(
        EventCode::SystemStartup,
        Severity::Info,
        serde_json::json!({
            "instance-key": system.options.instance_key(),
            "sessionid": session_id,
            "pid": std::process::id(),
            "host": sluice_core::hostname(),
            "version": sluice_core::VERSION,
            "startup_ms": ready_ms,
        }),
    );
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
    audit::record(
        options,
        store,
        AuditEventCode::SystemRecoveryStart,
        Caller::SYSTEM,
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
    audit::record(
        options,
        store,
        AuditEventCode::SystemRecoveryComplete,
        Caller::SYSTEM,
        Some(format!("session {}", crashed.id)),
        Some(summary),
    )
    .await;
    Ok(())
}

/// How long a child of a previous master has to answer `get-info` to be adopted.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The gateway's network id: one per node.
pub const GATEWAY_ID: &str = "http-gateway";

/// The master's bus: its sockets, the supervisor, and the tasks serving them.
struct Node {
    bus: Bus,
    supervisor: Supervisor,
    endpoints: Vec<String>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Control endpoints live under `$OMQ_DIR/var`, named for the instance: stable across
/// master restarts, so children reconnect to a restarted master by themselves.
#[allow(clippy::too_many_arguments)]
fn start_bus(
    options: &Options,
    store: &Store,
    events: &Arc<EventSink>,
    shutdown: &ShutdownControl,
    cluster_key: &KeyPair,
    session_id: i64,
    started_ms: i64,
    overrides: &[String],
) -> Result<Node, StartupError> {
    let (supervisor, mailbox) = Supervisor::new();
    let auth = MasterAuth {
        supervisor: supervisor.clone(),
        store: store.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let bus = Bus::new(Arc::new(auth)).map_err(StartupError::NoCurve)?;
    let _ = std::fs::create_dir_all(options.home().var_dir());
    let bind = |endpoint: &str| {
        bus.serve(endpoint, cluster_key)
            .map_err(|source| StartupError::Bus {
                endpoint: endpoint.to_string(),
                source,
            })
    };
    let control_endpoint = options.local_endpoint("master");
    let control = bind(&control_endpoint)?;
    let events_endpoint = options.local_endpoint("events");
    let publisher = bus
        .publisher(&events_endpoint, cluster_key)
        .map_err(|source| StartupError::Bus {
            endpoint: events_endpoint.clone(),
            source,
        })?;
    let mut servers = Vec::new();
    for endpoint in options.cluster_api() {
        servers.push(bind(endpoint)?);
    }
    let mut endpoints = vec![control.endpoint().to_string()];
    endpoints.extend(servers.iter().map(|s| s.endpoint().to_string()));

    let (publish_tx, publish_rx) = tokio::sync::mpsc::unbounded_channel();
    let live = Arc::new(sluice_core::options::LiveOptions::new(options.clone()));
    let config = supervisor::Config {
        instance_key: options.instance_key().to_string(),
        session_id,
        logdir: options.logdir(),
        network_key: options.network_key(),
        master_endpoint: control_endpoint,
        master_grace: options.master_grace(),
        bin_dir: bin_dir(),
        options: live.clone(),
        home: options.home().root().to_path_buf(),
        overrides: overrides.to_vec(),
        python_dir: sluice_core::runner::locate_python_dir(options.home().root(), &bin_dir()),
        gateway_key: Some(cluster_key.gateway()?),
    };
    let mut tasks = vec![supervisor.run(
        mailbox,
        config,
        store.clone(),
        events.clone(),
        control.replier(),
        publish_tx,
    )];
    let api = Api {
        supervisor: supervisor.clone(),
        store: store.clone(),
        events: events.clone(),
        shutdown: shutdown.clone(),
        instance_key: options.instance_key().to_string(),
        session_id,
        started_ms,
        rbac_security: options.rbac_security(),
        events_endpoint: events_endpoint.clone(),
        master_grace: options.master_grace(),
        options: live,
        children: Some(crate::api::ChildCalls::new(
            bus.clone(),
            cluster_key.clone(),
        )),
    };
    tasks.push(tokio::spawn(api.clone().serve(control)));
    for server in servers {
        tasks.push(tokio::spawn(api.clone().serve(server)));
    }
    tasks.push(tokio::spawn(crate::api::publish(
        publisher,
        events.clone(),
        publish_rx,
    )));
    Ok(Node {
        bus,
        supervisor,
        endpoints,
        tasks,
    })
}

/// Adopts the children a previous master of this instance left running: each must answer
/// `get-info` on its own endpoint with its recorded id and pid. The rest are forgotten (a
/// child without a master stops by itself after `qorus.master-grace`). Returns the ids
/// adopted, each with the session it belonged to.
async fn adopt(
    options: &Options,
    store: &Store,
    node: &Node,
    cluster_key: &KeyPair,
    session_id: i64,
) -> Vec<(String, i64)> {
    let rows = match store.list_processes(options.instance_key()).await {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!("cannot read cluster_processes: {err}");
            return Vec::new();
        }
    };
    // Probed concurrently: a start must not take (children × timeout).
    let mut probes = Vec::new();
    for row in rows.into_iter().filter(|r| r.sessionid != session_id) {
        let endpoints: Vec<String> = serde_json::from_str(&row.endpoints).unwrap_or_default();
        let bus = node.bus.clone();
        let key = cluster_key.clone();
        probes.push(tokio::spawn(async move {
            let info = match endpoints.first() {
                Some(endpoint) => probe(&bus, endpoint, &key).await,
                None => None,
            };
            (row, info)
        }));
    }
    let mut adopted = Vec::new();
    for probe in probes {
        let Ok((row, answered)) = probe.await else {
            continue;
        };
        match answered {
            Some(info)
                if info.network_id == row.process_network_id && i64::from(info.pid) == row.pid =>
            {
                adopted.push((row.process_network_id.clone(), row.sessionid));
                node.supervisor.send(supervisor::Command::Adopt(row));
            }
            _ => {
                // Its work is about to be recovered and run again by a new process; one
                // that still runs (hung, or too slow to answer) must not go on running it
                // beside the new one.
                if kill_unanswering(&row).await {
                    tracing::warn!(
                        network_id = %row.process_network_id,
                        pid = row.pid,
                        "process of a previous master is alive but did not answer; killed it \
                         so its work can be recovered safely"
                    );
                }
                tracing::info!(
                    network_id = %row.process_network_id,
                    pid = row.pid,
                    "process of a previous master is gone or does not answer; forgetting it"
                );
                if let Err(err) = store.delete_process(&row.process_network_id).await {
                    tracing::warn!("cannot remove process {}: {err}", row.process_network_id);
                }
            }
        }
    }
    adopted
}

/// SIGKILLs the process a `cluster_processes` row names, if it runs on this host and is
/// still a Sluice child (its command line names the binary of its type, so a recycled pid
/// is left alone), then waits until it is gone. True when it killed one.
async fn kill_unanswering(row: &sluice_core::store::ProcessRow) -> bool {
    let Ok(pid) = i32::try_from(row.pid) else {
        return false;
    };
    if pid <= 0 || row.host != sluice_core::hostname() {
        return false;
    }
    let Some(kind) = supervisor::ChildKind::from_process_type(&row.process_type) else {
        return false;
    };
    let binary = kind.policy().binary;
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(binary))
        .unwrap_or(false);
    if !ours {
        return false;
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_err() {
        return false;
    }
    for _ in 0..100 {
        if nix::sys::signal::kill(pid, None).is_err() {
            break;
        }
        // A zombie child of the dead master is reaped by init; it is dead already.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            == Some("Z")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}

async fn probe(
    bus: &Bus,
    endpoint: &str,
    cluster_key: &KeyPair,
) -> Option<sluice_proto::v1::ProcessInfo> {
    use prost::Message;
    // The master authenticates to its children with the cluster keypair itself: only a
    // holder of the cluster secret can, and a restarted master has the same one.
    let client = bus
        .connect(endpoint, cluster_key.public(), cluster_key)
        .ok()?;
    let request = sluice_proto::v1::Envelope {
        method: "get-info".into(),
        ..Default::default()
    };
    let reply = client.call(request, PROBE_TIMEOUT).await.ok()?;
    if reply.error.is_some() {
        return None;
    }
    sluice_proto::v1::ProcessInfo::decode(reply.body.as_slice()).ok()
}

/// Where the child binaries are: `SLUICE_BIN_DIR` when set (packagers may put them in
/// e.g. /usr/libexec/sluice), else beside `sluice-master` itself.
pub fn bin_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_BIN_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default()
}
