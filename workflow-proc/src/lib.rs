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

use serde_json::json;
use sluice_core::child::ChildContext;
use sluice_core::engine::{refused, reply_to, unknown_method, Current, RestartBackoff};
use sluice_core::events::{EventCode, Severity};
use sluice_core::runner::{ClassInfo, Code, CodeKind, Runner, RunnerConfig};
use sluice_core::store::engine::{Owner, WorkflowProgram};
use sluice_core::store::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use committer::{Committed, Committer};
pub use sluice_core::engine::EngineError;

/// Orders one process runs at once.
const MAX_IN_FLIGHT: usize = 512;
/// Most orders one claim takes.
const CLAIM_BATCH: usize = 200;
/// How often an idle process looks for runnable orders (new, scheduled, or due to retry).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// Worker threads in the runner: steps that block (I/O, sleeps) run side by side.
const RUNNER_WORKERS: usize = 32;

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
    pub program: Current<Arc<Program>>,
    pub runner: Current<Runner>,
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
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            session: self.session.load(std::sync::atomic::Ordering::SeqCst),
            network_id: &self.network_id,
            token: &self.token,
        }
    }
}

/// The engine's entry point, run by the child loop.
pub async fn run(mut ctx: ChildContext) -> Result<(), EngineError> {
    // The child loop read them (and keeps the operator's changes in them).
    let options = ctx.options.current();
    let (name, version) = ctx.boot.interface("workflow").map_err(EngineError::Setup)?;
    let store = Store::open(&options.systemdb(), false).await?;
    let workflow = store
        .load_program(&name, &version)
        .await?
        .ok_or_else(|| EngineError::not_loaded("workflow", &name, &version))?;
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
        program: Current::new(Arc::new(Program { workflow, classes })),
        runner: Current::new(runner),
        options: ctx.options.clone(),
        stopping: ctx.stopping.clone(),
        orders: Mutex::new(HashMap::new()),
        master: ctx.master.clone(),
        api: sluice_core::host_api::HostApi::new(&ctx, store.clone()),
    });
    host.attach(&shared);
    let identity = {
        let workflow = &shared.program.get().workflow;
        json!({"name": name, "version": version, "workflowid": workflow.workflowid})
    };
    shared
        .api
        .raise_event(EventCode::WorkflowStart, Severity::Info, identity.clone())
        .await;

    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut poll = tokio::time::interval(IDLE_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut restart = RestartBackoff::default();
    let mut stopping = ctx.stopping.clone();
    loop {
        let runner = shared.runner.get();
        tokio::select! {
            _ = stopping.changed() => break,
            Some(request) = ctx.requests.recv() => handle_request(&shared, &config, request).await,
            _ = runner.exited() => {
                // In-flight calls have failed with "runner died"; their steps went to
                // RETRY and run again (validation first) once a new runner is up.
                tracing::error!("the Python runner exited; starting a new one in {} ms", restart.delay().as_millis());
                tokio::time::sleep(restart.delay()).await;
                restart.lengthen();
                match restart_runner(&shared, &config, host.clone()).await {
                    Ok(()) => restart.shorten(),
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
    let released = store.release_orders(shared.owner()).await;
    if let Ok(released @ 1..) = released {
        tracing::info!("stopping: {released} unfinished order(s) handed back as RETRY");
    }
    shared.runner.get().stop(Duration::from_secs(5)).await;
    shared
        .api
        .raise_event(EventCode::WorkflowStop, Severity::Info, identity)
        .await;
    released?;
    Ok(())
}

async fn claim(shared: &Arc<Shared>, tasks: &mut JoinSet<()>) {
    if *shared.stopping.borrow() || !shared.runner.get().is_alive() {
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
        let workflowid = shared.program.get().workflow.workflowid;
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
        let code = Code {
            kind: CodeKind::Step,
            name: &step.name,
            version: &step.version,
            class: &step.class_name,
            source: &step.source,
            code_hash: &step.code_hash,
        };
        let info = code.load(runner).await?;
        code.require(&info, "primary")?;
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
    let program = shared.program.get();
    let classes = load_classes(&runner, &program.workflow).await?;
    shared.program.set(Arc::new(Program {
        workflow: program.workflow.clone(),
        classes,
    }));
    tracing::info!(
        "Python runner restarted (pid {})",
        runner.pid().unwrap_or_default()
    );
    shared.runner.set(runner);
    Ok(())
}

/// Requests the master forwards: `reset` reloads the workflow's newest code.
async fn handle_request(
    shared: &Arc<Shared>,
    _config: &RunnerConfig,
    request: sluice_core::child::Request,
) {
    let envelope = &request.envelope;
    let reply = match envelope.method.as_str() {
        "reset" => match reset(shared).await {
            Ok(steps) => sluice_proto::v1::Envelope {
                body: steps.to_string().into_bytes(),
                ..reply_to(envelope)
            },
            Err(err) => refused(reply_to(envelope), "RESET-ERROR", err.to_string(), None),
        },
        _ => unknown_method(envelope, &shared.network_id),
    };
    let _ = request.reply.send(reply);
}

/// Loads the workflow's definition and code again. Steps already running finish with the
/// code they started with; every step started from now on runs the new code.
async fn reset(shared: &Arc<Shared>) -> Result<usize, EngineError> {
    let current = shared.program.get();
    let (name, version) = (&current.workflow.name, &current.workflow.version);
    let workflow = shared
        .store
        .load_program(name, version)
        .await?
        .ok_or_else(|| EngineError::no_longer_loaded("workflow", name, version))?;
    let classes = load_classes(&shared.runner.get(), &workflow).await?;
    let steps = workflow.steps.len();
    shared.program.set(Arc::new(Program { workflow, classes }));
    tracing::info!("reset: workflow code reloaded ({steps} step(s))");
    Ok(steps)
}
