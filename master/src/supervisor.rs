//! The supervisor: starts one child process per running interface (and the gateway),
//! notices at once when one dies, restarts it with exponential backoff, gives up on a crash
//! loop, adopts children a previous master left running, and stops them in order.
//!
//! It is an actor: one task owns all child state and acts on [`Command`]s, so no lock is
//! held across an await and every decision about a child is made in one place.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sluice_core::bus::{Peer, Replier};
use sluice_core::child::Bootstrap;
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::keys::{self, KeyPair};
use sluice_core::options::LiveOptions;
use sluice_core::secret::Secret;
use sluice_core::store::{ProcessRow, RecoveryCounts, Store};
use sluice_proto::v1::{envelope::Kind, Envelope, Register, RegistryEntry};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// How often children heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A child that has not registered this long after its start is killed (and counts as a crash).
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(15);
/// A running child silent this long is hung: it is killed and restarted.
pub const HUNG_AFTER: Duration = Duration::from_secs(10);
/// The longest backoff between restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// How long a child asked to stop may take before it is signalled.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Orders per transaction when recovering a dead child's work.
const RECOVERY_BATCH: u32 = 1_000;
/// Heartbeats are written to `cluster_processes` at most this often.
const DB_HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// The kinds of child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildKind {
    Workflow,
    Job,
    Service,
    HttpGateway,
}

/// When a crashed child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    /// Only when its interface is autostart (Qorus's rule for services).
    IfAutostart,
}

/// What the master does with each kind of child: declared here, once.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub binary: &'static str,
    pub process_type: &'static str,
    pub restart: Restart,
    /// The shutdown step that stops this kind (the reference's order).
    pub shutdown_step: u8,
}

impl ChildKind {
    pub const SHUTDOWN_ORDER: [ChildKind; 4] = [
        ChildKind::Workflow,
        ChildKind::Job,
        ChildKind::Service,
        ChildKind::HttpGateway,
    ];

    pub fn policy(self) -> Policy {
        match self {
            ChildKind::Workflow => Policy {
                binary: "sluice-workflow-proc",
                process_type: "workflow",
                restart: Restart::Always,
                shutdown_step: 1,
            },
            ChildKind::Job => Policy {
                binary: "sluice-job-proc",
                process_type: "job",
                restart: Restart::Always,
                shutdown_step: 2,
            },
            ChildKind::Service => Policy {
                binary: "sluice-service-proc",
                process_type: "service",
                restart: Restart::IfAutostart,
                shutdown_step: 3,
            },
            ChildKind::HttpGateway => Policy {
                binary: "sluice-http-gateway",
                process_type: "http-gateway",
                restart: Restart::Always,
                shutdown_step: 4,
            },
        }
    }

    pub fn from_process_type(t: &str) -> Option<ChildKind> {
        Self::SHUTDOWN_ORDER
            .into_iter()
            .find(|k| k.policy().process_type == t)
    }
}

/// A child the master should run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub network_id: String,
    pub kind: ChildKind,
    pub interfaces: Vec<String>,
    pub autostart: bool,
}

impl ChildSpec {
    /// The process that runs a loaded workflow, service or job.
    pub fn for_interface(row: &sluice_core::store::InterfaceRow) -> Option<ChildSpec> {
        let kind = ChildKind::from_process_type(&row.kind)?;
        Some(ChildSpec {
            network_id: interface_network_id(&row.kind, &row.name, &row.version),
            kind,
            interfaces: vec![format!("{}:{}:{}", row.kind, row.name, row.version)],
            autostart: row.autostart,
        })
    }
}

/// The network id of the process running an interface, e.g. `workflow-ORDERS-1.0`.
pub fn interface_network_id(kind: &str, name: &str, version: &str) -> String {
    format!("{kind}-{name}-{version}")
}

/// What the supervisor needs from the rest of the master.
pub struct Config {
    pub instance_key: String,
    pub session_id: i64,
    pub logdir: PathBuf,
    pub network_key: PathBuf,
    pub master_endpoint: String,
    pub master_grace: Duration,
    pub bin_dir: PathBuf,
    /// The restart policy is read from here at each crash, and each child started gets the
    /// operator's option changes made so far.
    pub options: Arc<LiveOptions>,
    /// Handed to children so they read the same options (`Bootstrap::options`).
    pub home: PathBuf,
    pub overrides: Vec<String>,
    pub python_dir: Option<PathBuf>,
    /// The HTTP gateway's keypair ([`KeyPair::gateway`]); `None` gives it a fresh one,
    /// which interface processes do not admit.
    pub gateway_key: Option<KeyPair>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Starting,
    Running,
    Stopping,
    Backoff,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Backoff => "restarting",
            Status::Failed => "failed",
        }
    }
}

struct Child {
    spec: ChildSpec,
    status: Status,
    pid: Option<u32>,
    public_key: Option<[u8; 32]>,
    /// Bumped at every start, so events about an earlier incarnation are ignored.
    generation: u64,
    started: Instant,
    crashes: VecDeque<Instant>,
    last_heartbeat: Instant,
    last_db_heartbeat: Instant,
    endpoints: Vec<String>,
    peer: Option<Peer>,
    adopted: bool,
}

/// Requests to the supervisor task.
pub enum Command {
    Start(ChildSpec),
    Adopt(ProcessRow),
    Exited {
        network_id: String,
        generation: u64,
        reason: String,
    },
    RestartDue {
        network_id: String,
        generation: u64,
    },
    Registered {
        register: Register,
        peer: Peer,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Heartbeat {
        network_id: String,
        peer: Peer,
        reply: oneshot::Sender<bool>,
    },
    Stop {
        kind: ChildKind,
        done: oneshot::Sender<usize>,
    },
    /// Stops one child; answers false when no such child runs.
    StopOne {
        network_id: String,
        done: oneshot::Sender<usize>,
    },
    Registry(oneshot::Sender<Vec<RegistryEntry>>),
}

/// What the supervisor announces on the master's PUB socket.
pub enum Published {
    /// The whole registry after any change (topic `registry`).
    Registry(Vec<RegistryEntry>),
    /// A child died (topic `process`).
    Aborted(sluice_proto::v1::ProcessAborted),
}

/// The handle the rest of the master uses.
#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::UnboundedSender<Command>,
    /// The registry as of the last change: read without a round trip through the actor,
    /// so routing a call to an interface's process costs no message to the supervisor.
    registry: tokio::sync::watch::Receiver<Arc<Vec<RegistryEntry>>>,
    registry_tx: Arc<tokio::sync::watch::Sender<Arc<Vec<RegistryEntry>>>>,
    /// Child public key → network id, read by the ZAP handler during handshakes.
    keys: Arc<RwLock<HashMap<[u8; 32], String>>>,
}

impl Supervisor {
    /// The handle, and the mailbox its actor will read once [`Supervisor::run`] starts it.
    /// Split in two because the bus's ZAP handler needs the handle before the control
    /// socket (whose replier the actor needs) exists.
    pub fn new() -> (Supervisor, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let keys = Arc::new(RwLock::new(HashMap::new()));
        let (registry_tx, registry) = tokio::sync::watch::channel(Arc::new(Vec::new()));
        (
            Supervisor {
                tx,
                keys,
                registry,
                registry_tx: Arc::new(registry_tx),
            },
            rx,
        )
    }

    /// Starts the actor that owns every child.
    pub fn run(
        &self,
        mailbox: mpsc::UnboundedReceiver<Command>,
        config: Config,
        store: Store,
        events: Arc<EventSink>,
        replier: Replier,
        publish: mpsc::UnboundedSender<Published>,
    ) -> tokio::task::JoinHandle<()> {
        let actor = Actor {
            config: Arc::new(config),
            store,
            events,
            replier,
            tx: self.tx.clone(),
            keys: self.keys.clone(),
            children: HashMap::new(),
            stopping: Vec::new(),
            publish,
            registry: self.registry_tx.clone(),
        };
        tokio::spawn(actor.run(mailbox))
    }

    /// The network id of a child's key, for the ZAP handler.
    pub fn child_of_key(&self, public_key: &[u8; 32]) -> Option<String> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(public_key)
            .cloned()
    }

    pub fn send(&self, command: Command) {
        // The actor only ends with the master; a command after that has nothing to do.
        let _ = self.tx.send(command);
    }

    /// Stops every child of `kind` (asking first, then signalling); returns how many.
    pub async fn stop_kind(&self, kind: ChildKind) -> usize {
        let (done, rx) = oneshot::channel();
        self.send(Command::Stop { kind, done });
        rx.await.unwrap_or(0)
    }

    /// Stops one child; returns false when it was not running.
    pub async fn stop_one(&self, network_id: &str) -> bool {
        let (done, rx) = oneshot::channel();
        self.send(Command::StopOne {
            network_id: network_id.to_string(),
            done,
        });
        rx.await.unwrap_or(0) > 0
    }

    /// The registry as of the last change, without asking the actor.
    pub fn current_registry(&self) -> Arc<Vec<RegistryEntry>> {
        self.registry.borrow().clone()
    }

    /// A receiver that sees every registry change (to wait for a process to come up).
    pub fn watch_registry(&self) -> tokio::sync::watch::Receiver<Arc<Vec<RegistryEntry>>> {
        self.registry.clone()
    }

    pub async fn registry(&self) -> Vec<RegistryEntry> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Registry(tx));
        rx.await.unwrap_or_default()
    }
}

/// A stop request: answered with how many children it stopped once all have exited.
struct StopWaiter {
    waiting_for: Vec<String>,
    count: usize,
    done: oneshot::Sender<usize>,
}

struct Actor {
    config: Arc<Config>,
    store: Store,
    events: Arc<EventSink>,
    replier: Replier,
    tx: mpsc::UnboundedSender<Command>,
    keys: Arc<RwLock<HashMap<[u8; 32], String>>>,
    children: HashMap<String, Child>,
    /// Stop requests waiting for their children to exit.
    stopping: Vec<StopWaiter>,
    publish: mpsc::UnboundedSender<Published>,
    registry: Arc<tokio::sync::watch::Sender<Arc<Vec<RegistryEntry>>>>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(c) => self.handle(c).await,
                    None => return,
                },
                _ = tick.tick() => self.check_liveness(),
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Start(spec) => {
                let id = spec.network_id.clone();
                if let Some(child) = self.children.get_mut(&id) {
                    if child.status != Status::Failed {
                        tracing::info!(network_id = %id, "already {}", child.status.as_str());
                        return;
                    }
                    // An operator's start after a crash loop: a fresh chance.
                    child.crashes.clear();
                    child.spec = spec.clone();
                }
                self.children.entry(id.clone()).or_insert_with(|| Child {
                    spec,
                    status: Status::Starting,
                    pid: None,
                    public_key: None,
                    generation: 0,
                    started: Instant::now(),
                    crashes: VecDeque::new(),
                    last_heartbeat: Instant::now(),
                    last_db_heartbeat: Instant::now(),
                    endpoints: Vec::new(),
                    peer: None,
                    adopted: false,
                });
                self.start(&id).await;
            }
            Command::Adopt(row) => self.adopt(row).await,
            Command::Exited {
                network_id,
                generation,
                reason,
            } => self.exited(&network_id, generation, reason).await,
            Command::RestartDue {
                network_id,
                generation,
            } => {
                let due = self
                    .children
                    .get(&network_id)
                    .is_some_and(|c| c.generation == generation && c.status == Status::Backoff);
                if due {
                    self.start(&network_id).await;
                }
            }
            Command::Registered {
                register,
                peer,
                reply,
            } => {
                let result = self.registered(register, peer).await;
                let _ = reply.send(result);
            }
            Command::Heartbeat {
                network_id,
                peer,
                reply,
            } => {
                let known = match self.children.get_mut(&network_id) {
                    Some(c) if matches!(c.status, Status::Running | Status::Stopping) => {
                        c.last_heartbeat = Instant::now();
                        c.peer = Some(peer);
                        if c.last_db_heartbeat.elapsed() >= DB_HEARTBEAT_EVERY {
                            c.last_db_heartbeat = Instant::now();
                            let store = self.store.clone();
                            let status = c.status.as_str();
                            tokio::spawn(async move {
                                if let Err(err) =
                                    store.update_process(&network_id, status, None).await
                                {
                                    tracing::warn!(
                                        "cannot record heartbeat of {network_id}: {err}"
                                    );
                                }
                            });
                        }
                        true
                    }
                    _ => false,
                };
                let _ = reply.send(known);
            }
            Command::Stop { kind, done } => {
                let ids: Vec<String> = self
                    .children
                    .values()
                    .filter(|c| c.spec.kind == kind)
                    .map(|c| c.spec.network_id.clone())
                    .collect();
                self.stop(ids, done);
            }
            Command::StopOne { network_id, done } => self.stop(vec![network_id], done),
            Command::Registry(reply) => {
                let _ = reply.send(self.registry());
            }
        }
    }

    /// Starts (or restarts) a child: a fresh keypair, a `cluster_processes` row, the process
    /// in its own process group, the bootstrap on its stdin, and a task that reports its exit.
    async fn start(&mut self, network_id: &str) {
        let config = self.config.clone();
        let Some(child) = self.children.get_mut(network_id) else {
            return;
        };
        let policy = child.spec.kind.policy();
        child.generation += 1;
        child.status = Status::Starting;
        child.started = Instant::now();
        child.peer = None;
        child.adopted = false;
        let generation = child.generation;

        // The gateway's keypair is the one derived from the cluster key, which every
        // interface process admits for direct calls; every other child gets a fresh one.
        let pair = match (&config.gateway_key, child.spec.kind) {
            (Some(key), ChildKind::HttpGateway) => key.clone(),
            _ => KeyPair::generate(),
        };
        let old_key = child.public_key.replace(*pair.public());
        {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = old_key {
                keys.remove(&old);
            }
            keys.insert(*pair.public(), network_id.to_string());
        }
        let boot = Bootstrap {
            network_id: network_id.to_string(),
            process_type: policy.process_type.to_string(),
            instance_key: config.instance_key.clone(),
            logdir: config.logdir.clone(),
            master_endpoint: config.master_endpoint.clone(),
            network_key: config.network_key.clone(),
            client_secret: Secret::new(keys::z85_encode(pair.secret())),
            master_grace_ms: config.master_grace.as_millis() as u64,
            heartbeat_ms: HEARTBEAT.as_millis() as u64,
            interfaces: child.spec.interfaces.clone(),
            session_id: config.session_id,
            home: config.home.clone(),
            overrides: config.overrides.clone(),
            runtime_options: config.options.changes(),
            python_dir: config.python_dir.clone(),
        };
        let binary = config.bin_dir.join(policy.binary);
        let mut command = tokio::process::Command::new(&binary);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove("OMQ_DIR")
            // Its own process group: a Ctrl-C meant for the master does not reach the
            // children; the master stops them in the documented order.
            .process_group(0);
        let spawned = command.spawn();
        let mut process = match spawned {
            Ok(p) => p,
            Err(err) => {
                let reason = format!("cannot start {}: {err}", binary.display());
                tracing::error!(network_id, "{reason}");
                self.events.raise(
                    EventCode::ProcessStartError,
                    Severity::Error,
                    "master",
                    serde_json::json!({"network_id": network_id, "reason": reason}),
                );
                self.crashed(network_id, generation, reason).await;
                return;
            }
        };
        let pid = process.id().unwrap_or(0);
        child.pid = Some(pid);
        if let Some(mut stdin) = process.stdin.take() {
            let mut line = match serde_json::to_vec(&boot) {
                Ok(line) => line,
                Err(err) => {
                    tracing::error!("cannot encode the bootstrap of {network_id}: {err}");
                    Vec::new()
                }
            };
            line.push(b'\n');
            // A child that dies before reading it is noticed by the exit watcher below.
            let _ = stdin.write_all(&line).await;
            drop(stdin);
        }
        tracing::info!(network_id, pid, "started {}", policy.binary);
        let row = ProcessRow {
            process_network_id: network_id.to_string(),
            host: sluice_core::hostname(),
            node: config.instance_key.clone(),
            pid: i64::from(pid),
            process_type: policy.process_type.to_string(),
            interfaces: serde_json::to_string(&child.spec.interfaces).ok(),
            endpoints: "[]".to_string(),
            public_key: Some(pair.public_z85()),
            sessionid: config.session_id,
            status: Status::Starting.as_str().to_string(),
            started: sluice_core::now_ms(),
            heartbeat: sluice_core::now_ms(),
        };
        if let Err(err) = self.store.upsert_process(&row).await {
            tracing::warn!("cannot record process {network_id}: {err}");
        }

        let tx = self.tx.clone();
        let id = network_id.to_string();
        tokio::spawn(async move {
            let reason = match process.wait().await {
                Ok(status) => describe_exit(status),
                Err(err) => format!("cannot wait for it: {err}"),
            };
            let _ = tx.send(Command::Exited {
                network_id: id,
                generation,
                reason,
            });
        });
        self.publish_registry();
    }

    /// Takes over a child a previous master left running, if it still answers.
    async fn adopt(&mut self, row: ProcessRow) {
        let network_id = row.process_network_id.clone();
        let Some(kind) = ChildKind::from_process_type(&row.process_type) else {
            tracing::warn!(
                "not adopting {network_id}: unknown process type {}",
                row.process_type
            );
            return;
        };
        let pid = u32::try_from(row.pid).unwrap_or(0);
        let Some(public_key) = row
            .public_key
            .as_deref()
            .and_then(|k| keys::z85_decode(k).ok())
        else {
            return;
        };
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(err) => {
                tracing::warn!(network_id, pid, "not adopting: {err}");
                return;
            }
        };
        let interfaces: Vec<String> = row
            .interfaces
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or_default();
        let endpoints: Vec<String> = serde_json::from_str(&row.endpoints).unwrap_or_default();
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(public_key, network_id.clone());
        let child = Child {
            spec: ChildSpec {
                network_id: network_id.clone(),
                kind,
                interfaces,
                autostart: true,
            },
            status: Status::Running,
            pid: Some(pid),
            public_key: Some(public_key),
            generation: 1,
            started: Instant::now(),
            crashes: VecDeque::new(),
            last_heartbeat: Instant::now(),
            last_db_heartbeat: Instant::now(),
            endpoints,
            peer: None,
            adopted: true,
        };
        self.children.insert(network_id.clone(), child);
        if let Err(err) = self
            .store
            .adopt_process(&network_id, self.config.session_id)
            .await
        {
            tracing::warn!("cannot record the adoption of {network_id}: {err}");
        }
        tracing::info!(
            network_id,
            pid,
            "adopted a running {} process",
            row.process_type
        );
        self.events.raise(
            EventCode::ProcessStarted,
            Severity::Info,
            "master",
            serde_json::json!({"network_id": network_id, "pid": pid, "type": row.process_type, "adopted": true}),
        );
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // Not our child: no exit status, only the fact that it ended.
            // SAFETY: the pidfd is an `OwnedFd` that moves into the AsyncFd, which closes
            // it only after deregistering it: nothing else can close or reuse the fd.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            };
            let reason = match registered {
                Ok(fd) => match fd.readable().await {
                    Ok(_) => "exited (adopted process; status unknown)".to_string(),
                    Err(err) => format!("cannot watch it: {err}"),
                },
                Err(err) => format!("cannot watch it: {err}"),
            };
            let _ = tx.send(Command::Exited {
                network_id,
                generation: 1,
                reason,
            });
        });
        self.publish_registry();
    }

    async fn registered(&mut self, register: Register, peer: Peer) -> Result<(), String> {
        let Some(child) = self.children.get_mut(&register.network_id) else {
            return Err(format!("no process {} is expected", register.network_id));
        };
        if register.api_level != sluice_core::child::API_LEVEL {
            return Err(format!(
                "API level {} is not {}; install matching binaries",
                register.api_level,
                sluice_core::child::API_LEVEL
            ));
        }
        let first = child.status == Status::Starting;
        // A registration already in flight when shutdown asked the child to stop must not
        // bring it back to life: its exit would then look like a crash and be restarted.
        if child.status != Status::Stopping {
            child.status = Status::Running;
        }
        child.peer = Some(peer);
        child.endpoints = register.endpoints.clone();
        child.last_heartbeat = Instant::now();
        let endpoints = serde_json::to_string(&register.endpoints).unwrap_or_default();
        if let Err(err) = self
            .store
            .update_process(&register.network_id, "running", Some(&endpoints))
            .await
        {
            tracing::warn!(
                "cannot record registration of {}: {err}",
                register.network_id
            );
        }
        if first {
            tracing::info!(
                network_id = %register.network_id,
                pid = register.pid,
                "registered after {} ms",
                child.started.elapsed().as_millis()
            );
            self.events.raise(
                EventCode::ProcessStarted,
                Severity::Info,
                "master",
                serde_json::json!({
                    "network_id": register.network_id,
                    "type": register.process_type,
                    "pid": register.pid,
                    "endpoints": register.endpoints,
                }),
            );
        }
        self.publish_registry();
        Ok(())
    }

    async fn exited(&mut self, network_id: &str, generation: u64, reason: String) {
        let Some(child) = self.children.get(network_id) else {
            return;
        };
        if child.generation != generation {
            return;
        }
        if child.adopted {
            tracing::info!(network_id, "adopted process ended");
        }
        if child.status == Status::Stopping {
            let pid = child.pid;
            self.forget_key(network_id);
            self.children.remove(network_id);
            if let Err(err) = self.store.delete_process(network_id).await {
                tracing::warn!("cannot remove process {network_id}: {err}");
            }
            // A child that had to be killed may have left work IN-PROGRESS.
            self.recover_work(network_id).await;
            tracing::info!(network_id, "stopped ({reason})");
            self.events.raise(
                EventCode::ProcessStopped,
                Severity::Info,
                "master",
                serde_json::json!({"network_id": network_id, "pid": pid, "reason": reason, "restarting": false}),
            );
            self.stop_progress(network_id);
            self.publish_registry();
            return;
        }
        self.crashed(network_id, generation, reason).await;
    }

    /// A child died unexpectedly (or could not start): restart it with backoff, or give up.
    async fn crashed(&mut self, network_id: &str, generation: u64, reason: String) {
        let config = self.config.clone();
        let Some(child) = self.children.get_mut(network_id) else {
            return;
        };
        let (restart_limit, restart_window, restart_delay) =
            config.options.current().restart_policy();
        let now = Instant::now();
        child.crashes.push_back(now);
        while child
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > restart_window)
        {
            child.crashes.pop_front();
        }
        let crashes = child.crashes.len() as u32;
        let restart = match child.spec.kind.policy().restart {
            Restart::Always => true,
            Restart::IfAutostart => child.spec.autostart,
        };
        let give_up = crashes >= restart_limit;
        let pid = child.pid;
        child.peer = None;
        if let Err(err) = self.store.delete_process(network_id).await {
            tracing::warn!("cannot remove process {network_id}: {err}");
        }
        // What it was working on goes back to RETRY (jobs: CRASH) before anything restarts.
        self.recover_work(network_id).await;
        let restarting = restart && !give_up;
        tracing::warn!(network_id, ?pid, crashes, "process died: {reason}");
        self.events.raise(
            EventCode::ProcessStopped,
            Severity::Warning,
            "master",
            serde_json::json!({"network_id": network_id, "pid": pid, "reason": reason, "restarting": restarting}),
        );
        let _ = self
            .publish
            .send(Published::Aborted(sluice_proto::v1::ProcessAborted {
                network_id: network_id.to_string(),
                pid: pid.unwrap_or(0),
                reason: reason.clone(),
                restarting,
            }));
        let Some(child) = self.children.get_mut(network_id) else {
            return;
        };
        if restarting {
            let delay = backoff(restart_delay, crashes);
            child.status = Status::Backoff;
            tracing::info!(
                network_id,
                "restarting in {} ms (crash {crashes} of {} allowed in {} s)",
                delay.as_millis(),
                restart_limit,
                restart_window.as_secs()
            );
            let tx = self.tx.clone();
            let id = network_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Command::RestartDue {
                    network_id: id,
                    generation,
                });
            });
        } else if give_up {
            child.status = Status::Failed;
            tracing::error!(
                network_id,
                "crashed {crashes} times within {} s: not restarting it; marked failed",
                restart_window.as_secs()
            );
            self.events.raise(
                EventCode::ProcessStartError,
                Severity::Error,
                "master",
                serde_json::json!({
                    "network_id": network_id,
                    "reason": format!("crash loop: {crashes} crashes within {} s; last: {reason}", restart_window.as_secs()),
                    "failed": true,
                }),
            );
        } else {
            child.status = Status::Failed;
            tracing::info!(network_id, "not restarted: its interface is not autostart");
        }
        self.publish_registry();
    }

    /// Returns the IN-PROGRESS work a dead child owned to RETRY (its job instances to
    /// CRASH). A failure is logged: the work then stays owned by the dead process until the
    /// next start recovers the session, so nothing is lost, only delayed.
    async fn recover_work(&self, network_id: &str) {
        let mut progress = |_| {};
        match self
            .store
            .recover_process(
                self.config.session_id,
                network_id,
                RECOVERY_BATCH,
                &mut progress,
            )
            .await
        {
            Ok(c) if c == RecoveryCounts::default() => {}
            Ok(c) => tracing::warn!(
                network_id,
                "recovered the work of the dead process: {} orders, {} segments, {} steps \
                 set to RETRY; {} job instances set to CRASH",
                c.orders,
                c.segments,
                c.steps,
                c.job_instances
            ),
            Err(err) => tracing::error!(
                network_id,
                "cannot recover the work of the dead process now ({err}); the next start will"
            ),
        }
    }

    /// Registration timeouts and hung children: kill, and let the exit path restart them.
    fn check_liveness(&mut self) {
        for child in self.children.values() {
            let late = match child.status {
                Status::Starting => child.started.elapsed() > REGISTRATION_TIMEOUT,
                Status::Running => child.last_heartbeat.elapsed() > HUNG_AFTER,
                _ => false,
            };
            if late {
                if let Some(pid) = child.pid {
                    tracing::warn!(
                        network_id = %child.spec.network_id,
                        pid,
                        "no {} for too long: killing it",
                        if child.status == Status::Starting { "registration" } else { "heartbeat" }
                    );
                    signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }

    /// Asks the named children to stop (then signals them, see [`STOP_TIMEOUT`]); `done`
    /// learns how many it stopped once they have all exited.
    fn stop(&mut self, ids: Vec<String>, done: oneshot::Sender<usize>) {
        let mut waiting_for = Vec::new();
        for id in ids {
            let Some(child) = self.children.get_mut(&id) else {
                continue;
            };
            if matches!(child.status, Status::Backoff | Status::Failed) {
                // Not running: nothing to wait for, and no restart is pending any more.
                self.children.remove(&id);
                continue;
            }
            tracing::info!(network_id = %id, status = child.status.as_str(), "asking it to stop");
            child.status = Status::Stopping;
            waiting_for.push(id.clone());
            let pid = child.pid;
            if let Some(peer) = &child.peer {
                let stop = Envelope {
                    id: 0,
                    method: "stop".into(),
                    kind: Kind::Request as i32,
                    ..Default::default()
                };
                if let Err(err) = self.replier.reply(peer, stop) {
                    tracing::warn!("cannot ask {id} to stop: {err}");
                    if let Some(pid) = pid {
                        signal(pid, nix::sys::signal::Signal::SIGTERM);
                    }
                }
            } else if let Some(pid) = pid {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
            if let Some(pid) = pid {
                tokio::spawn(async move {
                    tokio::time::sleep(STOP_TIMEOUT).await;
                    if signal(pid, nix::sys::signal::Signal::SIGTERM) {
                        tracing::warn!(network_id = %id, pid, "did not stop within {} s: SIGTERM", STOP_TIMEOUT.as_secs());
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if signal(pid, nix::sys::signal::Signal::SIGKILL) {
                        tracing::warn!(network_id = %id, pid, "still running: SIGKILL");
                    }
                });
            }
        }
        if waiting_for.is_empty() {
            let _ = done.send(0);
        } else {
            let count = waiting_for.len();
            self.stopping.push(StopWaiter {
                waiting_for,
                count,
                done,
            });
        }
        self.publish_registry();
    }

    /// A stopping child exited: answer the stop requests that waited only for it.
    fn stop_progress(&mut self, network_id: &str) {
        for waiter in &mut self.stopping {
            waiter.waiting_for.retain(|id| id != network_id);
        }
        let (finished, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(|w| w.waiting_for.is_empty());
        self.stopping = pending;
        for waiter in finished {
            let _ = waiter.done.send(waiter.count);
        }
    }

    fn forget_key(&mut self, network_id: &str) {
        if let Some(key) = self.children.get(network_id).and_then(|c| c.public_key) {
            self.keys
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }

    fn registry(&self) -> Vec<RegistryEntry> {
        let mut entries: Vec<RegistryEntry> = self
            .children
            .values()
            .map(|c| RegistryEntry {
                network_id: c.spec.network_id.clone(),
                process_type: c.spec.kind.policy().process_type.to_string(),
                interfaces: c.spec.interfaces.clone(),
                endpoints: c.endpoints.clone(),
                pid: c.pid.unwrap_or(0),
                status: c.status.as_str().to_string(),
            })
            .collect();
        entries.sort_by(|a, b| a.network_id.cmp(&b.network_id));
        entries
    }

    fn publish_registry(&self) {
        let entries = self.registry();
        self.registry.send_replace(Arc::new(entries.clone()));
        let _ = self.publish.send(Published::Registry(entries));
    }
}

/// The restart delay after `crashes` crashes in the window: `base`, doubling, capped.
pub fn backoff(base: Duration, crashes: u32) -> Duration {
    let factor = 1u32 << crashes.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RESTART_DELAY)
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "ended".to_string(),
    }
}

/// Sends a signal; false when the process is already gone.
fn signal(pid: u32, sig: nix::sys::signal::Signal) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

/// A pidfd for a process that is not our child: readable once it exits (Linux 5.3+).
fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pid"))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(250);
        assert_eq!(backoff(base, 1), Duration::from_millis(250));
        assert_eq!(backoff(base, 2), Duration::from_millis(500));
        assert_eq!(backoff(base, 3), Duration::from_millis(1000));
        assert_eq!(backoff(base, 40), MAX_RESTART_DELAY);
    }

    #[test]
    fn shutdown_order_is_the_references() {
        let steps: Vec<u8> = ChildKind::SHUTDOWN_ORDER
            .iter()
            .map(|k| k.policy().shutdown_step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        assert_eq!(ChildKind::Service.policy().restart, Restart::IfAutostart);
        assert_eq!(ChildKind::from_process_type("job"), Some(ChildKind::Job));
    }
}
