//! The workflow engine: what a workflow process does beside the common child loop.
//!
//! It claims runnable orders of its workflow in batches ([`Store::claim_orders`]), runs
//! each order's steps in dependency order in the Python runner, and commits every
//! transition through the group committer before acting on it. A step is marked
//! IN-PROGRESS (committed) before its code runs, so after any crash the step is known to
//! have maybe run, and its validation code decides whether to run it again.
//!
//! Everything recovery needs is in the database; what this process holds in memory (the
//! orders in flight) is handed back by the master's recovery if the process dies, or by
//! [`Store::release_orders`] when it stops.

mod committer;
mod host;
mod order;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::child::ChildContext;
use sluice_core::runner::{ClassInfo, Runner, RunnerConfig};
use sluice_core::store::engine::{Owner, WorkflowProgram};
use sluice_core::store::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use committer::{Committed, Committer};

/// Orders one process runs at once.
const MAX_IN_FLIGHT: usize = 512;
/// Most orders one claim takes.
const CLAIM_BATCH: usize = 200;
/// How often an idle process looks for runnable orders (new, scheduled, or due to retry).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Worker threads in the runner: steps that block (I/O, sleeps) run side by side.
const RUNNER_WORKERS: usize = 32;
const RUNNER_RESTART_FIRST: Duration = Duration::from_millis(200);
const RUNNER_RESTART_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] sluice_core::store::StoreError),
    #[error(transparent)]
    Runner(#[from] sluice_core::runner::RunnerError),
}

/// The loaded workflow with the runner classes of its steps.
pub struct Program {
    pub workflow: WorkflowProgram,
    /// By stepid: the class name the runner knows the step's code by, and what it defines.
    pub classes: HashMap<i64, (String, ClassInfo)>,
}

/// What every order task shares.
pub struct Shared {
    pub store: Store,
    pub committer: Committer,
    /// The master's live session (changes when a new master adopts this process).
    pub session: Arc<std::sync::atomic::AtomicI64>,
    pub network_id: String,
    /// This incarnation's ownership token: `NETWORK-ID#PID.STARTED-MS`; each claim stamps
    /// `TOKEN/N` (see `OrderTransition::claim`).
    pub token: String,
    pub claims: std::sync::atomic::AtomicU64,
    pub program: Mutex<Arc<Program>>,
    pub runner: Mutex<Runner>,
    /// `qorus.recover_delay` and `qorus.max-retries` are read here at each error, so an
    /// operator's change applies to the next one.
    pub options: Arc<sluice_core::options::LiveOptions>,
    pub stopping: watch::Receiver<bool>,
    /// Orders in flight, by id: callbacks from user code find their order here.
    pub orders: Mutex<HashMap<i64, Arc<order::OrderState>>>,
    pub master: sluice_core::bus::Client,
    /// Events, service calls and orders from user code (shared with services and jobs).
    pub api: sluice_core::host_api::HostApi,
}

impl Shared {
    pub fn program(&self) -> Arc<Program> {
        self.program
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn runner(&self) -> Runner {
        self.runner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn owner(&self) -> Owner<'_> {
        Owner {
            session: self.session.load(std::sync::atomic::Ordering::SeqCst),
            network_id: &self.network_id,
            token: &self.token,
        }
    }
}

/// The engine's entry point, run by the child loop.
pub async fn run(ctx: ChildContext) -> Result<(), String> {
    run_engine(ctx).await.map_err(|e| e.to_string())
}

async fn run_engine(mut ctx: ChildContext) -> Result<(), EngineError> {
    // The child loop read them (and keeps the operator's changes in them).
    let options = ctx.options.current();
    let (name, version) = ctx.boot.interface("workflow").map_err(EngineError::Setup)?;
    let store = Store::open(&options.systemdb(), false).await?;
    let workflow = store.load_program(&name, &version).await?.ok_or_else(|| {
        EngineError::Setup(format!(
            "workflow {name}:{version} is not loaded in the system database"
        ))
    })?;
    let config = ctx
        .boot
        .runner_config(&options, RUNNER_WORKERS)
        .map_err(EngineError::Setup)?;
    let network_id = ctx.boot.network_id.clone();
    let token = format!(
        "{network_id}#{}.{}",
        std::process::id(),
        sluice_core::now_ms()
    );
    let committer = Committer::spawn(
        store.clone(),
        ctx.session.clone(),
        network_id.clone(),
        token.clone(),
        ctx.stopping.clone(),
    );
    // The runner's host needs `Shared`, which needs a runner: the host holds a weak slot
    // filled once `Shared` exists.
    let host = Arc::new(host::EngineHost::default());
    let runner = Runner::start(config.clone(), host.clone()).await?;
    let classes = load_classes(&runner, &workflow).await?;
    tracing::info!(
        "workflow {name}:{version} (id {}) ready: {} step(s), runner pid {}",
        workflow.workflowid,
        workflow.steps.len(),
        runner.pid().unwrap_or_default()
    );
    let shared = Arc::new(Shared {
        store: store.clone(),
        committer,
        session: ctx.session.clone(),
        network_id,
        token,
        claims: std::sync::atomic::AtomicU64::new(0),
        program: Mutex::new(Arc::new(Program { workflow, classes })),
        runner: Mutex::new(runner),
        options: ctx.options.clone(),
        stopping: ctx.stopping.clone(),
        orders: Mutex::new(HashMap::new()),
        master: ctx.master.clone(),
        api: sluice_core::host_api::HostApi {
            store: store.clone(),
            master: ctx.master.clone(),
            caller: ctx.boot.network_id.clone(),
        },
    });
    host.attach(&shared);

    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut poll = tokio::time::interval(IDLE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut restart_delay = RUNNER_RESTART_FIRST;
    let mut stopping = ctx.stopping.clone();
    loop {
        let runner = shared.runner();
        tokio::select! {
            _ = stopping.changed() => break,
            Some(request) = ctx.requests.recv() => handle_request(&shared, &config, request).await,
            _ = runner.exited() => {
                // In-flight calls have failed with "runner died"; their steps went to
                // RETRY and run again (validation first) once a new runner is up.
                tracing::error!("the Python runner exited; starting a new one in {} ms", restart_delay.as_millis());
                tokio::time::sleep(restart_delay).await;
                restart_delay = (restart_delay * 2).min(RUNNER_RESTART_MAX);
                match restart_runner(&shared, &config, host.clone()).await {
                    Ok(()) => restart_delay = RUNNER_RESTART_FIRST.max(restart_delay / 4),
                    Err(err) => tracing::error!("cannot start the Python runner: {err}"),
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                // A finished order frees a slot: claim again without waiting for the poll.
                claim(&shared, &mut tasks).await;
            }
            _ = poll.tick() => claim(&shared, &mut tasks).await,
        }
    }
    // Stopping: order tasks see the flag between steps and return; a step running now
    // finishes first (bounded by the child loop's grace).
    while tasks.join_next().await.is_some() {}
    let released = store.release_orders(shared.owner()).await?;
    if released > 0 {
        tracing::info!("stopping: {released} unfinished order(s) handed back as RETRY");
    }
    shared.runner().stop(Duration::from_secs(5)).await;
    Ok(())
}

async fn claim(shared: &Arc<Shared>, tasks: &mut JoinSet<()>) {
    if *shared.stopping.borrow() || !shared.runner().is_alive() {
        return;
    }
    loop {
        // Claim in batches: every claim is a commit, so claiming one order per finished
        // order would spend a commit per order. A busy process waits until a batch's worth
        // of slots is free; an idle one takes what there is.
        let room = MAX_IN_FLIGHT.saturating_sub(tasks.len()).min(CLAIM_BATCH);
        if room < CLAIM_BATCH && !tasks.is_empty() {
            return;
        }
        let workflowid = shared.program().workflow.workflowid;
        let claim = format!(
            "{}/{}",
            shared.token,
            shared
                .claims
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let owner = Owner {
            token: &claim,
            ..shared.owner()
        };
        let orders = match shared
            .store
            .claim_orders(workflowid, owner, room as u32)
            .await
        {
            Ok(orders) => orders,
            Err(err) => {
                tracing::error!("cannot claim orders: {err}");
                return;
            }
        };
        let full = orders.len() == room;
        for claimed in orders {
            let shared = shared.clone();
            tasks.spawn(async move { order::run(shared, claimed).await });
        }
        if !full {
            return;
        }
    }
}

async fn load_classes(
    runner: &Runner,
    workflow: &WorkflowProgram,
) -> Result<HashMap<i64, (String, ClassInfo)>, EngineError> {
    let mut classes = HashMap::new();
    for step in &workflow.steps {
        let module =
            sluice_core::runner::module_name("step", &step.name, &step.version, &step.code_hash);
        let info = runner
            .load(&module, &step.class_name, &step.source)
            .await
            .map_err(|e| {
                EngineError::Setup(format!(
                    "cannot load the code of step {}:{} (class {}): {e}",
                    step.name, step.version, step.class_name
                ))
            })?;
        if !info.has("primary") {
            return Err(EngineError::Setup(format!(
                "class {} of step {}:{} has no primary() method",
                step.class_name, step.name, step.version
            )));
        }
        classes.insert(step.stepid, (step.class_name.clone(), info));
    }
    Ok(classes)
}

async fn restart_runner(
    shared: &Arc<Shared>,
    config: &RunnerConfig,
    host: Arc<host::EngineHost>,
) -> Result<(), EngineError> {
    let runner = Runner::start(config.clone(), host).await?;
    let program = shared.program();
    let classes = load_classes(&runner, &program.workflow).await?;
    *shared.program.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(Program {
        workflow: program.workflow.clone(),
        classes,
    });
    tracing::info!(
        "Python runner restarted (pid {})",
        runner.pid().unwrap_or_default()
    );
    *shared.runner.lock().unwrap_or_else(|p| p.into_inner()) = runner;
    Ok(())
}

/// Requests the master forwards: `reset` reloads the workflow's newest code.
async fn handle_request(
    shared: &Arc<Shared>,
    _config: &RunnerConfig,
    request: sluice_core::child::Request,
) {
    let mut reply = sluice_proto::v1::Envelope {
        id: request.envelope.id,
        method: request.envelope.method.clone(),
        kind: sluice_proto::v1::envelope::Kind::Reply as i32,
        ..Default::default()
    };
    match request.envelope.method.as_str() {
        "reset" => match reset(shared).await {
            Ok(steps) => reply.body = format!("{steps}").into_bytes(),
            Err(err) => {
                reply.error = Some(sluice_proto::v1::Error {
                    code: "RESET-ERROR".into(),
                    description: err.to_string(),
                    ..Default::default()
                })
            }
        },
        other => {
            reply.error = Some(sluice_proto::v1::Error {
                code: "UNKNOWN-METHOD".into(),
                description: format!("{} does not serve {other}", shared.network_id),
                ..Default::default()
            })
        }
    }
    let _ = request.reply.send(reply);
}

/// Loads the workflow's definition and code again. Steps already running finish with the
/// code they started with; every step started from now on runs the new code.
async fn reset(shared: &Arc<Shared>) -> Result<usize, EngineError> {
    let current = shared.program();
    let workflow = shared
        .store
        .load_program(&current.workflow.name, &current.workflow.version)
        .await?
        .ok_or_else(|| {
            EngineError::Setup(format!(
                "workflow {}:{} is no longer loaded",
                current.workflow.name, current.workflow.version
            ))
        })?;
    let classes = load_classes(&shared.runner(), &workflow).await?;
    let steps = workflow.steps.len();
    *shared.program.lock().unwrap_or_else(|p| p.into_inner()) =
        Arc::new(Program { workflow, classes });
    tracing::info!("reset: workflow code reloaded ({steps} step(s))");
    Ok(steps)
}
