//! The loop every child process runs (gateway, workflow, service and job processes).
//!
//! The master starts a child with its identity and a fresh CURVE keypair written as one JSON
//! line to the child's stdin (never argv or the environment, which other local users can
//! read). The child then:
//! 1. serves its own ROUTER (ephemeral port) for direct calls, admitting the master (which
//!    authenticates with the cluster keypair) and the HTTP gateway (the keypair derived
//!    from it), which may only `ping` and `call`;
//! 2. connects a DEALER to the master's control endpoint and registers;
//! 3. heartbeats; answers `ping`, `get-info` and `stop` from the master on either socket;
//! 4. when the master has been silent for longer than `qorus.master-grace`, stops cleanly,
//!    so nothing runs unsupervised for long. A master started again within the grace period
//!    sees the child's heartbeats (its DEALER reconnects by itself) and adopts it.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use serde::{Deserialize, Serialize};
use sluice_proto::v1::{envelope::Kind, Envelope, ProcessInfo, Register, RegisterReply};

use crate::bus::{Authenticator, Bus, BusError, Client, Replier};
use crate::keys::{self, KeyPair};
use crate::options::LiveOptions;
use crate::secret::Secret;

/// The bus API level this build speaks; the master refuses children of another level.
pub const API_LEVEL: u32 = 1;

/// Error code of a heartbeat the master does not recognise (it restarted): register again.
pub const UNKNOWN_PROCESS: &str = "UNKNOWN-PROCESS";

/// What the master hands a child on stdin.
#[derive(Clone, Serialize, Deserialize)]
pub struct Bootstrap {
    pub network_id: String,
    pub process_type: String,
    pub instance_key: String,
    pub logdir: PathBuf,
    /// The master's control endpoint (an `ipc://` socket under `$OMQ_DIR/var`, stable
    /// across master restarts).
    pub master_endpoint: String,
    /// The cluster key file; the child's own ROUTER serves with the cluster keypair.
    pub network_key: PathBuf,
    /// This child's own secret key, Z85.
    pub client_secret: Secret,
    pub master_grace_ms: u64,
    pub heartbeat_ms: u64,
    pub interfaces: Vec<String>,
    /// The master's application session; the work this process claims is recorded under it.
    #[serde(default)]
    pub session_id: i64,
    /// The instance home (`$OMQ_DIR`) and the master's command-line option overrides, so the
    /// child reads the same options as the master (`Options::load`). Overrides may hold the
    /// database password: they travel on stdin only.
    #[serde(default)]
    pub home: PathBuf,
    #[serde(default)]
    pub overrides: Vec<String>,
    /// Options the operator changed while the master runs (`qorus.NAME=VALUE`, see
    /// [`LiveOptions`]), over the file and `overrides`.
    #[serde(default)]
    pub runtime_options: Vec<String>,
    /// The `python/` directory interface code runs with, if the master found one.
    #[serde(default)]
    pub python_dir: Option<PathBuf>,
}

impl Bootstrap {
    /// `(NAME, VERSION)` of the interface the master started this process for, which must
    /// be of `kind` (`workflow`, `service`, `job`): the bootstrap names it `KIND:NAME:VERSION`.
    pub fn interface(&self, kind: &str) -> Result<(String, String), String> {
        let wanted = self
            .interfaces
            .first()
            .ok_or_else(|| format!("the master named no {kind} to run"))?;
        let mut parts = wanted.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(name), Some(version)) if k == kind => Ok((name.into(), version.into())),
            _ => Err(format!(
                "{wanted:?} is not a {kind} interface ({kind}:NAME:VERSION)"
            )),
        }
    }

    /// How this process starts its Python runner: the interpreter from the options, the
    /// `python/` directory the master found, `workers` threads, logs labelled with the
    /// network id.
    pub fn runner_config(
        &self,
        options: &crate::options::Options,
        workers: usize,
    ) -> Result<crate::runner::RunnerConfig, String> {
        let python_dir = self.python_dir.clone().ok_or_else(|| {
            "the master found no python/ directory for interface code (looked in \
             $OMQ_DIR/python and beside the binaries)"
                .to_string()
        })?;
        Ok(crate::runner::RunnerConfig {
            python: options.python_executable().to_string(),
            python_dir,
            label: self.network_id.clone(),
            workers,
        })
    }

    /// The options as the master read them at its start.
    pub fn options(&self) -> Result<crate::options::Options, crate::options::OptionsError> {
        let home = crate::home::Home::new(self.home.clone());
        crate::options::Options::load(&home, &self.overrides)
    }

    /// The options with the changes the master had when it started this process; the
    /// child loop keeps them up to date with what the master says later.
    pub fn live_options(&self) -> Result<LiveOptions, ChildError> {
        let options = self
            .options()
            .map_err(|e| ChildError::Bootstrap(format!("cannot read the options: {e}")))?;
        let live = LiveOptions::new(options);
        if let Err(err) = live.replace_changes(&self.runtime_options) {
            tracing::warn!("{err}");
        }
        Ok(live)
    }
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("network_id", &self.network_id)
            .field("process_type", &self.process_type)
            .field("master_endpoint", &self.master_endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error(
        "this process is started by sluice-master, which passes its identity on stdin; \
         it cannot be started by hand"
    )]
    NoBootstrap,
    #[error("cannot read the bootstrap from the master: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Log(#[from] crate::logging::LogError),
    #[error("the master refused the registration: {0}")]
    Refused(String),
    #[error("{0}")]
    Work(String),
}

/// Reads the bootstrap line from stdin.
pub fn read_bootstrap() -> Result<Bootstrap, ChildError> {
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        return Err(ChildError::NoBootstrap);
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| ChildError::Bootstrap(e.to_string()))?;
    if line.trim().is_empty() {
        return Err(ChildError::NoBootstrap);
    }
    serde_json::from_str(&line).map_err(|e| ChildError::Bootstrap(e.to_string()))
}

/// The user id a child's socket gives the master's connections.
pub const MASTER_USER: &str = "master";
/// The user id a child's socket gives the HTTP gateway's direct calls.
pub const GATEWAY_USER: &str = "gateway";
/// What the gateway may ask of a child directly; everything else (`stop`, `reset`, ...)
/// is the master's alone.
const GATEWAY_METHODS: &[&str] = &["ping", "call"];

/// Admits the master, which authenticates with the cluster keypair, and the HTTP gateway,
/// with the keypair derived from it ([`KeyPair::gateway`]).
struct MasterAndGateway {
    master_public: [u8; 32],
    gateway_public: [u8; 32],
}

impl Authenticator for MasterAndGateway {
    fn authenticate(&self, client_public: &[u8; 32], _peer: &str) -> Option<String> {
        // Both compared, always: the time taken says nothing about which key matched.
        let master = crate::secret::ct_eq(client_public, &self.master_public);
        let gateway = crate::secret::ct_eq(client_public, &self.gateway_public);
        if master {
            Some(MASTER_USER.to_string())
        } else if gateway {
            Some(GATEWAY_USER.to_string())
        } else {
            None
        }
    }
}

struct Identity {
    boot: Bootstrap,
    pid: u32,
    host: String,
    started: Instant,
    endpoints: Vec<String>,
}

impl Identity {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            network_id: self.boot.network_id.clone(),
            process_type: self.boot.process_type.clone(),
            pid: self.pid,
            host: self.host.clone(),
            rss_bytes: rss_bytes(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            interfaces: self.boot.interfaces.clone(),
            endpoints: self.endpoints.clone(),
        }
    }

    fn register(&self) -> Register {
        Register {
            network_id: self.boot.network_id.clone(),
            process_type: self.boot.process_type.clone(),
            pid: self.pid,
            host: self.host.clone(),
            endpoints: self.endpoints.clone(),
            api_level: API_LEVEL,
            interfaces: self.boot.interfaces.clone(),
        }
    }
}

/// A request the common loop does not serve itself, handed to the process's own work.
pub struct Request {
    /// Who sent it: `master`, or the user id of a direct caller.
    pub caller: String,
    pub envelope: Envelope,
    /// Where the reply goes; dropping it unanswered sends an `UNKNOWN-METHOD` error.
    pub reply: tokio::sync::oneshot::Sender<Envelope>,
}

/// What a process does besides the common loop (the workflow engine, a service, a job).
pub struct ChildContext {
    pub boot: Bootstrap,
    /// The connection to the master, for calls into the system API.
    pub master: Client,
    /// Becomes true when the process must stop: the work finishes or hands back what it
    /// holds, then returns.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Requests for methods the common loop does not serve.
    pub requests: tokio::sync::mpsc::Receiver<Request>,
    /// The live session of the master this process answers to: it changes when a new
    /// master adopts the process (learnt from registration and heartbeat replies).
    pub session: Arc<std::sync::atomic::AtomicI64>,
    /// The options in force, with the operator's changes as the master reports them (also
    /// learnt from those replies): read `options.current()` where a value is used.
    pub options: Arc<LiveOptions>,
}

/// The work a child runs beside its loop. An `Err` ends the process with exit code 1, so
/// the master restarts it.
pub type Work = Box<
    dyn FnOnce(
            ChildContext,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send,
>;

/// How long the work may take to wind down after a stop before the process exits anyway.
const WORK_STOP_GRACE: Duration = Duration::from_secs(30);

/// Why the child loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Master,
    Signal,
    MasterGone(Duration),
}

/// Runs a child until the master stops it, a signal arrives, or the master is gone for
/// longer than the grace period. Returns the exit code.
pub async fn run(
    boot: Bootstrap,
    log: &crate::logging::LogFile,
    work: Option<Work>,
) -> Result<StopReason, ChildError> {
    log.open(
        &boot.logdir,
        &crate::logging::file_name(&boot.instance_key, &boot.network_id),
    )?;
    let cluster = keys::load_key_file(&boot.network_key)?;
    let own = KeyPair::from_secret(keys::z85_decode(boot.client_secret.expose())?);
    let bus = Bus::new(Arc::new(MasterAndGateway {
        master_public: *cluster.public(),
        gateway_public: *cluster.gateway()?.public(),
    }))?;
    let mut direct = bus.serve("tcp://127.0.0.1:0", &cluster)?;
    let direct_replier = direct.replier();
    let master = bus.connect(&boot.master_endpoint, cluster.public(), &own)?;
    let mut from_master = master
        .incoming()
        .ok_or_else(|| ChildError::Bootstrap("the master socket has no incoming channel".into()))?;

    let id = Identity {
        pid: std::process::id(),
        host: crate::hostname(),
        started: Instant::now(),
        endpoints: vec![direct.endpoint().to_string()],
        boot,
    };
    let grace = Duration::from_millis(id.boot.master_grace_ms);
    let beat = Duration::from_millis(id.boot.heartbeat_ms.max(100));
    tracing::info!(
        network_id = %id.boot.network_id,
        pid = id.pid,
        endpoint = %id.endpoints[0],
        "{} process starting",
        id.boot.process_type
    );

    let session = Arc::new(std::sync::atomic::AtomicI64::new(id.boot.session_id));
    let options = Arc::new(id.boot.live_options()?);
    let id = Arc::new(id);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (request_tx, request_rx) = tokio::sync::mpsc::channel::<Request>(256);
    let mut work = work.map(|work| {
        tokio::spawn(work(ChildContext {
            boot: id.boot.clone(),
            master: master.clone(),
            stopping: stop_rx,
            requests: request_rx,
            session: session.clone(),
            options: options.clone(),
        }))
    });
    let forward = |caller: String, envelope: Envelope, send: Box<dyn FnOnce(Envelope) + Send>| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let unanswered = unknown_method(&id, &envelope);
        match request_tx.try_send(Request {
            caller,
            envelope,
            reply: tx,
        }) {
            Ok(()) => {
                tokio::spawn(async move { send(rx.await.unwrap_or(unanswered)) });
            }
            Err(err) => {
                let mut busy = unanswered;
                busy.error = Some(sluice_proto::v1::Error {
                    code: "BUSY".into(),
                    description: format!(
                        "{} cannot take the request now: {err}",
                        id.boot.network_id
                    ),
                    ..Default::default()
                });
                send(busy);
            }
        }
    };
    // Registration and heartbeats run in their own task: while the master is away each
    // heartbeat waits out its timeout, and the loop below must keep answering a restarted
    // master's `get-info` (adoption) and `stop` meanwhile.
    let contact = Arc::new(std::sync::Mutex::new(Instant::now()));
    let (fatal_tx, mut fatal) = tokio::sync::mpsc::channel::<ChildError>(1);
    let beats = tokio::spawn(keep_in_touch(
        master.clone(),
        id.clone(),
        beat,
        contact.clone(),
        session,
        options,
        fatal_tx,
    ));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ChildError::Bootstrap(e.to_string()))?;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let touch = || *contact.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    let reason = loop {
        tokio::select! {
            _ = check.tick() => {
                let silent = contact.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                if silent > grace {
                    break StopReason::MasterGone(silent);
                }
            }
            Some(err) = fatal.recv() => {
                beats.abort();
                return Err(err);
            }
            Some(request) = from_master.recv() => {
                touch();
                let stop = request.method == "stop";
                match answer(&id, &request, work.is_some()) {
                    Answer::Reply(reply) => {
                        if let Err(err) = master.send(*reply) {
                            tracing::warn!("cannot answer {}: {err}", request.method);
                        }
                    }
                    Answer::Forward => {
                        let master = master.clone();
                        forward("master".into(), request, Box::new(move |reply| {
                            if let Err(err) = master.send(reply) {
                                tracing::warn!("cannot answer the master: {err}");
                            }
                        }));
                    }
                    Answer::None => {}
                }
                if stop { break StopReason::Master; }
            }
            Some(incoming) = direct.recv() => {
                if incoming.peer.user_id != MASTER_USER
                    && !GATEWAY_METHODS.contains(&incoming.envelope.method.as_str())
                {
                    let refusal = not_yours(&id, &incoming.envelope, &incoming.peer.user_id);
                    reply_direct(&direct_replier, &incoming.peer, refusal);
                    continue;
                }
                if incoming.peer.user_id == MASTER_USER {
                    touch();
                }
                let stop = incoming.envelope.method == "stop";
                match answer(&id, &incoming.envelope, work.is_some()) {
                    Answer::Reply(reply) => reply_direct(&direct_replier, &incoming.peer, *reply),
                    Answer::Forward => {
                        let replier = direct_replier.clone();
                        let peer = incoming.peer.clone();
                        forward(incoming.peer.user_id.clone(), incoming.envelope, Box::new(move |reply| {
                            reply_direct(&replier, &peer, reply);
                        }));
                    }
                    Answer::None => {}
                }
                if stop { break StopReason::Master; }
            }
            done = async { work.as_mut().expect("guarded by the select condition").await }, if work.is_some() => {
                beats.abort();
                return Err(match done {
                    Ok(Ok(())) => ChildError::Work("the process's work ended by itself".into()),
                    Ok(Err(err)) => ChildError::Work(err),
                    Err(join) => ChildError::Work(format!("the process's work failed: {join}")),
                });
            }
            _ = term.recv() => break StopReason::Signal,
        }
    };
    // The work hands back what it holds before the sockets close: a workflow process
    // releases its claimed orders here.
    let _ = stop_tx.send(true);
    if let Some(handle) = work.take() {
        match tokio::time::timeout(WORK_STOP_GRACE, handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::error!("stopping: {err}"),
            Ok(Err(join)) => tracing::error!("stopping: the process's work failed: {join}"),
            Err(_) => tracing::warn!(
                "the process's work did not stop within {} s; exiting anyway",
                WORK_STOP_GRACE.as_secs()
            ),
        }
    }
    beats.abort();
    match &reason {
        StopReason::Master => tracing::info!("stopping at the master's request"),
        StopReason::Signal => tracing::info!("stopping on SIGTERM"),
        StopReason::MasterGone(d) => tracing::warn!(
            "no master for {} s (qorus.master-grace is {} s); stopping cleanly",
            d.as_secs(),
            grace.as_secs()
        ),
    }
    // Give the last reply time to leave before the sockets close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(direct);
    drop(master);
    drop(bus);
    Ok(reason)
}

fn reply_direct(replier: &Replier, peer: &crate::bus::Peer, reply: Envelope) {
    if let Err(err) = replier.reply(peer, reply) {
        tracing::warn!("cannot answer a direct call: {err}");
    }
}

/// Registers, then heartbeats every `beat`, registering again when a new master does not
/// know this process. Every answer from the master refreshes `contact`.
async fn keep_in_touch(
    master: Client,
    id: Arc<Identity>,
    beat: Duration,
    contact: Arc<std::sync::Mutex<Instant>>,
    session: Arc<std::sync::atomic::AtomicI64>,
    options: Arc<LiveOptions>,
    fatal: tokio::sync::mpsc::Sender<ChildError>,
) {
    let learn = |reply: Option<RegisterReply>| {
        let Some(reply) = reply else { return };
        if reply.session_id > 0 {
            let new = reply.session_id;
            let old = session.swap(new, std::sync::atomic::Ordering::SeqCst);
            if old != new {
                tracing::info!("now working under the master's session {new} (was {old})");
            }
        }
        match options.replace_changes(&reply.runtime_options) {
            Ok(false) => {}
            Ok(true) => tracing::info!(
                changes = ?reply.runtime_options,
                "options changed by the master"
            ),
            Err(err) => tracing::warn!("{err}"),
        }
    };
    let touch = || *contact.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    let mut registered = false;
    loop {
        let started = Instant::now();
        if registered {
            match heartbeat(&master, &id, beat).await {
                Beat::Ok(s) => {
                    learn(s);
                    touch()
                }
                Beat::Unknown => {
                    // A new master that did not adopt us yet: introduce ourselves now.
                    touch();
                    registered = false;
                    continue;
                }
                Beat::NoAnswer => {}
            }
        } else {
            match register(&master, &id, beat).await {
                Ok(Some(reply)) => {
                    learn(Some(reply));
                    touch();
                    registered = true;
                }
                Ok(None) => {}
                Err(err) => {
                    let _ = fatal.send(err).await;
                    return;
                }
            }
        }
        tokio::time::sleep(beat.saturating_sub(started.elapsed())).await;
    }
}

enum Answer {
    Reply(Box<Envelope>),
    /// For the process's own work.
    Forward,
    /// Not a request: nothing to answer.
    None,
}

/// What to do with a request on either socket.
fn answer(id: &Identity, request: &Envelope, has_work: bool) -> Answer {
    if request.kind != Kind::Request as i32 {
        return Answer::None;
    }
    let mut reply = Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        ..Default::default()
    };
    match request.method.as_str() {
        "ping" | "stop" => {}
        "get-info" => reply.body = id.info().encode_to_vec(),
        _ if has_work => return Answer::Forward,
        _ => reply = unknown_method(id, request),
    }
    Answer::Reply(Box::new(reply))
}

/// The refusal of a method the caller (the gateway) may not ask of this process.
fn not_yours(id: &Identity, request: &Envelope, caller: &str) -> Envelope {
    let mut reply = unknown_method(id, request);
    reply.error = Some(sluice_proto::v1::Error {
        code: "AUTHORIZATION-ERROR".into(),
        description: format!(
            "{} serves {} only to the master, not to {caller}",
            id.boot.network_id, request.method
        ),
        ..Default::default()
    });
    reply
}

fn unknown_method(id: &Identity, request: &Envelope) -> Envelope {
    Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        error: Some(sluice_proto::v1::Error {
            code: "UNKNOWN-METHOD".into(),
            description: format!("{} does not serve {}", id.boot.network_id, request.method),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Registers; the master's reply on success, `None` when the master did not answer.
async fn register(
    master: &Client,
    id: &Identity,
    timeout: Duration,
) -> Result<Option<RegisterReply>, ChildError> {
    let request = Envelope {
        method: "register".into(),
        body: id.register().encode_to_vec(),
        ..Default::default()
    };
    match master.call(request, timeout).await {
        Ok(reply) => {
            if let Some(err) = reply.error {
                return Err(ChildError::Refused(format!(
                    "{}: {}",
                    err.code, err.description
                )));
            }
            let info = RegisterReply::decode(reply.body.as_slice()).unwrap_or_default();
            tracing::info!(
                session = info.session_id,
                "registered with the master of instance '{}'",
                info.instance_key
            );
            Ok(Some(info))
        }
        Err(BusError::Timeout { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

enum Beat {
    /// Answered; with the master's session and option changes when the reply carries them.
    Ok(Option<RegisterReply>),
    Unknown,
    NoAnswer,
}

async fn heartbeat(master: &Client, id: &Identity, timeout: Duration) -> Beat {
    let request = Envelope {
        method: "heartbeat".into(),
        body: sluice_proto::v1::Heartbeat {
            network_id: id.boot.network_id.clone(),
            rss_bytes: rss_bytes(),
        }
        .encode_to_vec(),
        ..Default::default()
    };
    match master.call(request, timeout).await {
        Ok(reply) => match reply.error {
            Some(e) if e.code == UNKNOWN_PROCESS => Beat::Unknown,
            Some(e) => {
                tracing::warn!("heartbeat refused: {}: {}", e.code, e.description);
                Beat::Ok(None)
            }
            None => Beat::Ok(RegisterReply::decode(reply.body.as_slice()).ok()),
        },
        Err(err) => {
            tracing::debug!("heartbeat: {err}");
            Beat::NoAnswer
        }
    }
}

/// Resident memory of this process, from /proc.
pub fn rss_bytes() -> u64 {
    rss_bytes_of(std::process::id())
}

pub fn rss_bytes_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// `main` of a child binary: bootstrap, run, exit code.
pub fn main(process_type: &str) -> u8 {
    main_with(process_type, None)
}

/// `main` of a child binary that does work of its own beside the common loop.
pub fn main_with(process_type: &str, work: Option<Work>) -> u8 {
    let log = crate::logging::init(false);
    let boot = match read_bootstrap() {
        Ok(b) => b,
        Err(err) => {
            eprintln!("sluice {process_type}: {err}");
            return 64;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("sluice {process_type}: cannot start the async runtime: {err}");
            return 71;
        }
    };
    let code = match rt.block_on(run(boot, &log, work)) {
        Ok(reason) => {
            tracing::info!("exiting ({reason:?})");
            0
        }
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("sluice {process_type}: {err}");
            1
        }
    };
    log.close();
    drop(rt);
    code
}
