//! The job engine: what a job process does beside the common child loop.
//!
//! It loads its job (definition, schedule, code) from the system database, starts a Python
//! runner with the job's class, and fires the job on its schedule. Each run is a
//! `job_instance` row that [`Store::begin_job_instance`] inserts only if the job may run at
//! that moment (active, enabled, not expired, in no disabled group, no run in progress), so a
//! deactivation committed before a trigger refuses that trigger even if this process has not
//! heard of it yet. Runs never overlap: a trigger that comes due while a run is in progress
//! fires once when it ends, and a manual `run` waits its turn the same way.
//!
//! What recovery needs is in the database: a run in progress is a row IN-PROGRESS owned by
//! this process, which the master marks CRASH if the process dies.

mod host;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_core::child::{ChildContext, Request};
use sluice_core::engine::{refused, reply_to, unknown_method, Current, RestartBackoff};
use sluice_core::events::{EventCode, Severity};
use sluice_core::host_api::HostApi;
use sluice_core::runner::{Code, CodeKind, Runner, RunnerConfig, RunnerError};
use sluice_core::schedule::Schedule;
use sluice_core::store::jobs::{job_status_name, Begun, JobOutcome, JobOwner, JobProgram, Refusal};
use sluice_core::store::orders::format_time;
use sluice_core::store::Store;
use sluice_proto::v1::Envelope;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Worker threads in the runner: runs never overlap, but threads user code starts and
/// callbacks in flight need a few.
const RUNNER_WORKERS: usize = 4;
/// The longest the scheduler sleeps without looking at the clock again, so that a change of
/// the system clock (or a missed wake-up) delays a trigger by at most this much.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long a call into the master (retire) may take.
const MASTER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an expired job asks the master again to retire it, while it waits to be stopped.
const RETIRE_RETRY: Duration = Duration::from_secs(30);
/// How long the events still queued at stop may take to reach the master.
const EVENT_DRAIN: Duration = Duration::from_secs(5);
/// How soon a trigger refused for want of the live session is tried again.
const SESSION_RETRY_MS: i64 = 1_000;
/// The error a run gets when the runner dies under it.
pub const RUNNER_DIED: &str = "RUNNER-DIED";

pub use sluice_core::engine::EngineError;

/// The job as loaded, with its parsed schedule.
pub struct Loaded {
    pub program: JobProgram,
    pub schedule: Schedule,
}

impl Loaded {
    fn jobid(&self) -> i64 {
        self.program.job.jobid
    }

    fn describe(&self) -> Value {
        let job = &self.program.job;
        json!({"jobid": job.jobid, "name": job.name, "version": job.version})
    }
}

/// What the engine's tasks and the runner's host share.
pub struct Shared {
    pub store: Store,
    pub network_id: String,
    /// The master's live session (changes when a new master adopts this process).
    pub session: Arc<AtomicI64>,
    pub loaded: Current<Arc<Loaded>>,
    pub runner: Current<Runner>,
    /// The run in progress (jobid, job_instanceid): callbacks without a call context
    /// (threads user code started) belong to it.
    pub current: Current<Option<(i64, i64)>>,
    /// Events, service calls and orders from user code (shared with workflows and services).
    pub api: HostApi,
    events: mpsc::UnboundedSender<(EventCode, Severity, Value)>,
}

impl Shared {
    fn owner(&self) -> JobOwner<'_> {
        JobOwner {
            // Read at each begin: adoption by a new master changes it.
            session: self.session.load(Ordering::SeqCst),
            network_id: &self.network_id,
        }
    }

    /// Queues a system event for the master. Events go out in order from one task, so a
    /// master that is slow or away delays the events, never the runs.
    fn raise(&self, code: EventCode, severity: Severity, info: Value) {
        let _ = self.events.send((code, severity, info));
    }
}

async fn load(store: &Store, name: &str, version: &str) -> Result<Loaded, EngineError> {
    let program = store
        .load_job_program(name, version)
        .await?
        .ok_or_else(|| EngineError::not_loaded("job", name, version))?;
    let schedule = program.job.schedule()?;
    Ok(Loaded { program, schedule })
}

/// Loads the job's class into `runner`; a class without `run()` is refused.
async fn load_class(runner: &Runner, loaded: &Loaded) -> Result<(), EngineError> {
    let p = &loaded.program;
    let code = Code {
        kind: CodeKind::Job,
        name: &p.job.name,
        version: &p.job.version,
        class: &p.class_name,
        source: &p.source,
        code_hash: &p.code_hash,
    };
    let info = code.load(runner).await?;
    Ok(code.require(&info, "run")?)
}

/// When a job that starts at `now` runs first: `(next trigger, fire at once)`. A trigger
/// missed while no process ran the job (the stored next trigger passed, or the schedule
/// says one came after the last run) fires at once only when the job has run-skipped set.
pub fn first_trigger(loaded: &Loaded, now: i64) -> (Option<i64>, bool) {
    let job = &loaded.program.job;
    let missed = match job.next_trigger {
        Some(at) => at <= now,
        None => job
            .last_executed
            .and_then(|last| loaded.schedule.next_after_ms(last))
            .is_some_and(|at| at <= now),
    };
    if missed && job.run_skipped {
        return (Some(now), true);
    }
    match job.next_trigger.filter(|at| *at > now) {
        Some(at) => (Some(at), false),
        None => (loaded.schedule.next_after_ms(now), false),
    }
}

/// The trigger after one due at `due` that fired at `now`: the schedule's next after `due`
/// (so a recurring job does not drift), unless that has passed too while the run waited —
/// then the next after `now`, so missed triggers fire once, not once each.
pub fn next_trigger(schedule: &Schedule, due: i64, now: i64) -> Option<i64> {
    match schedule.next_after_ms(due) {
        Some(at) if at > now => Some(at),
        _ => schedule.next_after_ms(now),
    }
}

/// A run the loop waits for, and the manual request that asked for it.
struct Running {
    task: JoinHandle<RunReport>,
    request: Option<Request>,
}

/// How one attempt to run ended.
#[derive(Debug, Clone)]
enum RunReport {
    Finished {
        job_instanceid: i64,
        status: &'static str,
        error: Option<(String, String)>,
    },
    Refused(Refusal),
    Failed(String),
}

/// The engine's entry point, run by the child loop.
pub async fn run(mut ctx: ChildContext) -> Result<(), EngineError> {
    // The child loop read them (and keeps the operator's changes in them).
    let options = ctx.options.current();
    let (name, version) = ctx.boot.interface("job").map_err(EngineError::Setup)?;
    let store = Store::open(&options.systemdb(), false).await?;
    let loaded = load(&store, &name, &version).await?;
    let config = ctx
        .boot
        .runner_config(&options, RUNNER_WORKERS)
        .map_err(EngineError::Setup)?;
    let host = Arc::new(host::JobHost::default());
    let runner = Runner::start(config.clone(), host.clone()).await?;
    load_class(&runner, &loaded).await?;
    tracing::info!(
        "job {name}:{version} (id {}) ready: {}, runner pid {}",
        loaded.jobid(),
        loaded.schedule.describe(),
        runner.pid().unwrap_or_default()
    );
    let api = HostApi::new(&ctx, store.clone());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let event_task = tokio::spawn(send_events(api.clone(), events_rx));
    let shared = Arc::new(Shared {
        store: store.clone(),
        network_id: ctx.boot.network_id.clone(),
        session: ctx.session.clone(),
        loaded: Current::new(Arc::new(loaded)),
        runner: Current::new(runner),
        current: Current::new(None),
        api,
        events: events_tx,
    });
    host.attach(&shared);

    let mut engine = Engine {
        shared: shared.clone(),
        config,
        host,
        master: ctx.master.clone(),
        next: None,
        queued: VecDeque::new(),
        running: None,
        restart_at: None,
        restart: RestartBackoff::default(),
        retired: None,
        last_refusal: None,
    };
    engine.start_schedule().await;
    let mut stopping = ctx.stopping.clone();
    loop {
        engine.start_what_is_due().await;
        let wake = engine.wake();
        let runner = shared.runner.get();
        tokio::select! {
            _ = stopping.changed() => break,
            Some(request) = ctx.requests.recv() => engine.handle_request(request).await,
            report = async { (&mut engine.running.as_mut().expect("guarded").task).await },
                if engine.running.is_some() => {
                let request = engine.running.take().and_then(|r| r.request);
                let report = report.unwrap_or_else(|e| RunReport::Failed(format!("the run's task failed: {e}")));
                engine.note(&report, request.is_none());
                if let Some(request) = request {
                    answer_run(request, &report);
                }
            }
            _ = runner.exited(), if engine.restart_at.is_none() => {
                // A run in progress fails with "runner died" and is recorded as ERROR;
                // the next run waits for the new runner.
                tracing::error!(
                    "the Python runner {}; starting a new one in {} ms",
                    runner.exit_status().unwrap_or_else(|| "exited".into()),
                    engine.restart.delay().as_millis()
                );
                engine.restart_at = Some(Instant::now() + engine.restart.delay());
            }
            _ = tokio::time::sleep_until(engine.restart_at.unwrap_or_else(Instant::now)),
                if engine.restart_at.is_some() => engine.restart_runner().await,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    engine.stop().await;
    // An expired job raised JOB_STOP when it retired.
    if engine.retired.is_none() {
        shared.raise(
            EventCode::JobStop,
            Severity::Info,
            with(
                shared.loaded.get().describe(),
                json!({"reason": "the job process is stopping"}),
            ),
        );
    }
    drop(engine);
    // Every sender of the event queue is gone once `shared` is: the task then drains it.
    let runner = shared.runner.get();
    drop(shared);
    if tokio::time::timeout(EVENT_DRAIN, event_task).await.is_err() {
        tracing::warn!("stopping: events not delivered to the master are dropped");
    }
    runner.stop(Duration::from_secs(5)).await;
    Ok(())
}

/// Sends queued events to the master, one at a time, in order. Ends when every sender is
/// gone and the queue is empty.
async fn send_events(
    api: HostApi,
    mut queue: mpsc::UnboundedReceiver<(EventCode, Severity, Value)>,
) {
    while let Some((code, severity, info)) = queue.recv().await {
        api.raise_event(code, severity, info).await;
    }
}

/// `base` with the keys of `extra` added.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

struct Engine {
    shared: Arc<Shared>,
    config: RunnerConfig,
    host: Arc<host::JobHost>,
    master: sluice_core::bus::Client,
    /// When the next scheduled run is due (ms since the epoch); `None`: never.
    next: Option<i64>,
    /// Manual runs waiting for their turn, oldest first.
    queued: VecDeque<Request>,
    running: Option<Running>,
    /// When to start a new runner after the last one died.
    restart_at: Option<Instant>,
    restart: RestartBackoff,
    /// Set once the job expired: nothing is scheduled any more, and when the master was last
    /// asked to retire the process.
    retired: Option<Instant>,
    /// Why the last trigger did not run, so that a job refused at every trigger (inactive,
    /// in a disabled group) logs it once, not every second.
    last_refusal: Option<Refusal>,
}

impl Engine {
    /// The first trigger, at start.
    async fn start_schedule(&mut self) {
        let loaded = self.shared.loaded.get();
        self.shared.raise(
            EventCode::JobStart,
            Severity::Info,
            with(
                loaded.describe(),
                json!({"schedule": loaded.schedule.describe()}),
            ),
        );
        let now = sluice_core::now_ms();
        let (next, missed) = first_trigger(&loaded, now);
        if missed {
            tracing::info!(
                "a trigger was missed while the job did not run (last planned {}); running it \
                 now (run-skipped)",
                loaded
                    .program
                    .job
                    .next_trigger
                    .map_or_else(|| "-".into(), format_time)
            );
        } else if loaded.program.job.next_trigger.is_some_and(|at| at <= now) {
            tracing::info!(
                "the trigger planned for {} was missed while the job did not run; not running \
                 it (run-skipped is off)",
                loaded
                    .program
                    .job
                    .next_trigger
                    .map_or_else(|| "-".into(), format_time)
            );
        }
        self.plan(next).await;
    }

    /// Records the next trigger, in memory and in the database (for listings, and for the
    /// next start to see whether it was missed).
    async fn plan(&mut self, next: Option<i64>) {
        self.next = next;
        let jobid = self.shared.loaded.get().jobid();
        match next {
            Some(at) => tracing::debug!("next run at {}", format_time(at)),
            None => tracing::info!("no further run is scheduled"),
        }
        if let Err(err) = self.shared.store.set_job_next_trigger(jobid, next).await {
            tracing::warn!("cannot record the next trigger: {err}");
        }
    }

    /// When the loop must look again: the next trigger or the expiry, whichever is first,
    /// but at most [`MAX_SLEEP`] ahead.
    fn wake(&self) -> Instant {
        let now = sluice_core::now_ms();
        let cap = Instant::now() + MAX_SLEEP;
        if self.running.is_some() {
            return cap;
        }
        if let Some(asked) = self.retired {
            return (asked + RETIRE_RETRY).min(cap);
        }
        let expiry = self.shared.loaded.get().program.job.expiry_date;
        let at = match (self.next, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match at {
            Some(at) => {
                let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                (Instant::now() + wait).min(cap)
            }
            None => cap,
        }
    }

    /// What a finished attempt means for the schedule and the log.
    fn note(&mut self, report: &RunReport, scheduled: bool) {
        if scheduled {
            if let RunReport::Refused(Refusal::SessionNotActive { .. }) = report {
                // A new master adopted this process and the next heartbeat brings its
                // session: try again shortly rather than lose this trigger.
                let retry = sluice_core::now_ms() + SESSION_RETRY_MS;
                self.next = Some(self.next.map_or(retry, |at| at.min(retry)));
            }
        }
        match report {
            RunReport::Refused(why) => {
                if self.last_refusal.as_ref() != Some(why) {
                    tracing::info!("not running the job: {why}");
                } else {
                    tracing::debug!("not running the job: {why}");
                }
                self.last_refusal = Some(why.clone());
            }
            _ => self.last_refusal = None,
        }
    }

    fn runner_ready(&self) -> bool {
        self.restart_at.is_none() && self.shared.runner.get().is_alive()
    }

    /// Starts a run when nothing runs and one is wanted: a manual run first (an operator is
    /// waiting for it), else the scheduled one if it is due. Retires an expired job.
    async fn start_what_is_due(&mut self) {
        if self.running.is_some() {
            return;
        }
        let now = sluice_core::now_ms();
        if let Some(asked) = self.retired {
            if asked.elapsed() >= RETIRE_RETRY {
                self.ask_to_retire();
            }
        } else if self.shared.loaded.get().program.job.expired(now) {
            self.retire(now).await;
        }
        if !self.runner_ready() {
            return;
        }
        if let Some(request) = self.queued.pop_front() {
            self.start(Trigger::Manual, Some(request));
            return;
        }
        if self.retired.is_some() {
            return;
        }
        let Some(due) = self.next.filter(|at| *at <= now) else {
            return;
        };
        let next = next_trigger(&self.shared.loaded.get().schedule, due, now);
        self.plan(next).await;
        self.start(Trigger::Schedule { due }, None);
    }

    fn start(&mut self, trigger: Trigger, request: Option<Request>) {
        let shared = self.shared.clone();
        self.running = Some(Running {
            task: tokio::spawn(run_once(shared, trigger)),
            request,
        });
    }

    /// The job's expiry date has passed: no more runs; the master is asked to stop this
    /// process for good.
    async fn retire(&mut self, now: i64) {
        let loaded = self.shared.loaded.get();
        let reason = format!(
            "the job expired at {}",
            loaded
                .program
                .job
                .expiry_date
                .map_or_else(|| format_time(now), format_time)
        );
        tracing::info!("{reason}: no further runs; asking the master to retire this process");
        self.plan(None).await;
        self.shared.raise(
            EventCode::JobStop,
            Severity::Info,
            with(loaded.describe(), json!({"reason": reason})),
        );
        self.ask_to_retire();
    }

    fn ask_to_retire(&mut self) {
        self.retired = Some(Instant::now());
        let master = self.master.clone();
        tokio::spawn(async move {
            let request = Envelope {
                method: "omq.system.retire".into(),
                ..Default::default()
            };
            match master.call(request, MASTER_CALL_TIMEOUT).await {
                Ok(reply) => {
                    if let Some(err) = reply.error {
                        tracing::warn!(
                            "the master refused to retire this process: {}: {}",
                            err.code,
                            err.description
                        );
                    }
                }
                Err(err) => tracing::warn!("cannot ask the master to retire this process: {err}"),
            }
        });
    }

    async fn restart_runner(&mut self) {
        self.restart_at = None;
        let started = async {
            let runner = Runner::start(self.config.clone(), self.host.clone()).await?;
            load_class(&runner, &self.shared.loaded.get()).await?;
            Ok::<_, EngineError>(runner)
        }
        .await;
        match started {
            Ok(runner) => {
                tracing::info!(
                    "Python runner restarted (pid {})",
                    runner.pid().unwrap_or_default()
                );
                self.shared.runner.set(runner);
                self.restart.shorten();
            }
            Err(err) => {
                self.restart.lengthen();
                tracing::error!(
                    "cannot start the Python runner: {err}; trying again in {} ms",
                    self.restart.delay().as_millis()
                );
                self.restart_at = Some(Instant::now() + self.restart.delay());
            }
        }
    }

    /// Requests the master forwards: `run`, `reset`, `reschedule`.
    async fn handle_request(&mut self, request: Request) {
        match request.envelope.method.as_str() {
            // Answered when the run ends.
            "run" => self.queued.push_back(request),
            "reset" => {
                let result = self.reset().await;
                reply(request, result);
            }
            "reschedule" => {
                let result = self.reschedule().await;
                reply(request, result);
            }
            _ => {
                let answer = unknown_method(&request.envelope, &self.shared.network_id);
                let _ = request.reply.send(answer);
            }
        }
    }

    /// Loads the job's definition, code and schedule again. A run in progress finishes with
    /// the code it started with; runs started from now on use the new code.
    async fn reset(&mut self) -> Result<Value, (&'static str, String)> {
        let current = self.shared.loaded.get();
        let job = &current.program.job;
        let fresh = load(&self.shared.store, &job.name, &job.version)
            .await
            .map_err(|e| ("RESET-ERROR", e.to_string()))?;
        load_class(&self.shared.runner.get(), &fresh)
            .await
            .map_err(|e| ("RESET-ERROR", e.to_string()))?;
        let body = json!({
            "code_hash": fresh.program.code_hash,
            "class": fresh.program.class_name,
            "schedule": fresh.schedule.describe(),
        });
        self.shared.loaded.set(Arc::new(fresh));
        tracing::info!("reset: job code and definition reloaded");
        self.replan().await;
        Ok(body)
    }

    /// Reads the schedule, expiry and active flag again and plans the next run from now.
    async fn reschedule(&mut self) -> Result<Value, (&'static str, String)> {
        let current = self.shared.loaded.get();
        let job = &current.program.job;
        let fresh = self
            .shared
            .store
            .find_job(&job.name, Some(&job.version))
            .await
            .map_err(|e| ("DATABASE-ERROR", e.to_string()))?
            .ok_or_else(|| {
                (
                    "NOT-FOUND",
                    EngineError::no_longer_loaded("job", &job.name, &job.version).to_string(),
                )
            })?;
        let schedule = fresh
            .schedule()
            .map_err(|e| ("INVALID-ARGUMENT", e.to_string()))?;
        let program = JobProgram {
            job: fresh,
            ..current.program.clone()
        };
        self.shared
            .loaded
            .set(Arc::new(Loaded { program, schedule }));
        self.replan().await;
        Ok(json!({"next_trigger": self.next}))
    }

    async fn replan(&mut self) {
        let loaded = self.shared.loaded.get();
        let now = sluice_core::now_ms();
        if self.retired.is_some() && !loaded.program.job.expired(now) {
            // A new expiry date (or none) while the master had not yet stopped us.
            tracing::info!("the job no longer expires at once; scheduling it again");
            self.retired = None;
        }
        let next = loaded.schedule.next_after_ms(now);
        tracing::info!(
            "schedule {}: next run {}",
            loaded.schedule.describe(),
            next.map_or_else(|| "never".into(), format_time)
        );
        self.plan(next).await;
    }

    /// Stopping: the run in progress finishes (the child loop bounds how long); manual runs
    /// still waiting are refused.
    async fn stop(&mut self) {
        for request in self.queued.drain(..) {
            reply(
                request,
                Err(("SHUTDOWN-IN-PROGRESS", "the job process is stopping".into())),
            );
        }
        if let Some(running) = self.running.take() {
            tracing::info!("stopping: waiting for the run in progress to finish");
            let report = running
                .task
                .await
                .unwrap_or_else(|e| RunReport::Failed(format!("the run's task failed: {e}")));
            if let Some(request) = running.request {
                answer_run(request, &report);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Trigger {
    Schedule { due: i64 },
    Manual,
}

/// One run: begin (refused when the job may not run), call `run()` in the runner, record
/// the outcome, raise the events.
async fn run_once(shared: Arc<Shared>, trigger: Trigger) -> RunReport {
    let loaded = shared.loaded.get();
    let jobid = loaded.jobid();
    let begun = match shared.store.begin_job_instance(jobid, shared.owner()).await {
        Ok(begun) => begun,
        Err(err) => {
            tracing::error!("cannot start a run: {err}");
            return RunReport::Failed(err.to_string());
        }
    };
    let (job_instanceid, started) = match begun {
        Begun::Started {
            job_instanceid,
            started,
        } => (job_instanceid, started),
        Begun::Refused(why) => return RunReport::Refused(why),
    };
    shared.current.set(Some((jobid, job_instanceid)));
    let (trigger_name, due) = match trigger {
        Trigger::Schedule { due } => ("schedule", Some(due)),
        Trigger::Manual => ("manual", None),
    };
    tracing::info!(job_instanceid, trigger = trigger_name, "run started");
    let about = with(loaded.describe(), json!({"job_instanceid": job_instanceid}));
    shared.raise(EventCode::JobInstanceStart, Severity::Info, about.clone());
    let job = &loaded.program.job;
    let context = json!({
        "jobid": jobid,
        "job_instanceid": job_instanceid,
        "name": job.name,
        "version": job.version,
        "started": started,
        "trigger": trigger_name,
        "scheduled": due,
        "schedule": loaded.schedule.describe(),
    });
    let outcome = match shared
        .runner
        .get()
        .call(&loaded.program.class_name, "run", Vec::new(), context)
        .await
    {
        Ok(Ok(_)) => JobOutcome::Complete,
        Ok(Err(error)) => JobOutcome::Error {
            description: Some(error.message.clone()),
            info: Some(json!({
                "type": error.r#type,
                "message": error.message,
                "traceback": error.traceback,
                "info": error.info,
            })),
            error: error.r#type,
        },
        Err(RunnerError::User(error)) => JobOutcome::Error {
            description: Some(error.message.clone()),
            info: None,
            error: error.r#type,
        },
        Err(err) => JobOutcome::Error {
            error: RUNNER_DIED.into(),
            description: Some(err.to_string()),
            info: None,
        },
    };
    shared.current.set(None);
    let (status, error) = match &outcome {
        JobOutcome::Complete => ("C", None),
        JobOutcome::Error {
            error, description, ..
        } => (
            "E",
            Some((error.clone(), description.clone().unwrap_or_default())),
        ),
    };
    match shared
        .store
        .finish_job_instance(job_instanceid, &shared.network_id, &outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            job_instanceid,
            "the run was taken over by recovery (CRASH) before it ended; its outcome is not recorded"
        ),
        Err(err) => {
            // The row stays IN-PROGRESS; recovery marks it CRASH when this process or its
            // session ends, and meanwhile no run overlaps it.
            tracing::error!(job_instanceid, "cannot record the end of the run: {err}");
            return RunReport::Failed(err.to_string());
        }
    }
    match &error {
        None => tracing::info!(job_instanceid, "run COMPLETE"),
        Some((name, description)) => {
            tracing::warn!(job_instanceid, "run ERROR: {name}: {description}");
            shared.raise(
                EventCode::JobError,
                Severity::Error,
                with(
                    about.clone(),
                    json!({"error": name, "description": description}),
                ),
            );
        }
    }
    shared.raise(
        EventCode::JobInstanceStop,
        Severity::Info,
        with(about, json!({"status": job_status_name(status)})),
    );
    RunReport::Finished {
        job_instanceid,
        status,
        error,
    }
}

fn reply(request: Request, result: Result<Value, (&'static str, String)>) {
    let base = reply_to(&request.envelope);
    let envelope = match result {
        Ok(body) => Envelope {
            body: body.to_string().into_bytes(),
            ..base
        },
        Err((code, description)) => refused(base, code, description, None),
    };
    let _ = request.reply.send(envelope);
}

/// The reply to a manual `run`: the run's id and status once it ended.
fn answer_run(request: Request, report: &RunReport) {
    let result = match report {
        RunReport::Finished {
            job_instanceid,
            status,
            error,
        } => {
            let mut body = json!({
                "job_instanceid": job_instanceid,
                "status": job_status_name(status),
                "jobstatus": status,
            });
            if let Some((name, description)) = error {
                body["error"] = json!(name);
                body["error_description"] = json!(description);
            }
            Ok(body)
        }
        RunReport::Refused(why) => Err(("STATUS-ERROR", format!("the job did not run: {why}"))),
        RunReport::Failed(why) => Err(("DATABASE-ERROR", why.clone())),
    };
    reply(request, result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::schedule::Cron;
    use sluice_core::store::jobs::Job;

    fn loaded(schedule: Schedule, next: Option<i64>, last: Option<i64>, skipped: bool) -> Loaded {
        let job = Job {
            jobid: 1,
            name: "J".into(),
            version: "1".into(),
            description: None,
            lang: "python".into(),
            class_name: Some("J".into()),
            code_hash: Some("h".into()),
            active: true,
            enabled: true,
            run_skipped: skipped,
            cron: None,
            recurring: None,
            expiry_date: None,
            last_executed: last,
            last_executed_job_instanceid: None,
            next_trigger: next,
        };
        Loaded {
            program: JobProgram {
                job,
                class_name: "J".into(),
                code_hash: "h".into(),
                source: String::new(),
            },
            schedule,
        }
    }

    const SEC: i64 = 1_000;

    #[test]
    fn a_missed_trigger_runs_at_start_only_with_run_skipped() {
        let every = Schedule::Recurring(Duration::from_secs(10));
        let now = 1_000_000;
        // Planned in the future: wait for it.
        assert_eq!(
            first_trigger(&loaded(every.clone(), Some(now + SEC), None, true), now),
            (Some(now + SEC), false)
        );
        // Missed: at once with run-skipped, else from now.
        assert_eq!(
            first_trigger(&loaded(every.clone(), Some(now - SEC), None, true), now),
            (Some(now), true)
        );
        assert_eq!(
            first_trigger(&loaded(every.clone(), Some(now - SEC), None, false), now),
            (Some(now + 10 * SEC), false)
        );
        // Nothing planned: the last run and the schedule say whether one was missed.
        assert_eq!(
            first_trigger(
                &loaded(every.clone(), None, Some(now - 60 * SEC), true),
                now
            ),
            (Some(now), true)
        );
        assert_eq!(
            first_trigger(&loaded(every.clone(), None, Some(now - 5 * SEC), true), now),
            (Some(now + 10 * SEC), false)
        );
        // Never ran, nothing planned: nothing was missed.
        assert_eq!(
            first_trigger(&loaded(every, None, None, true), now),
            (Some(now + 10 * SEC), false)
        );
    }

    #[test]
    fn triggers_missed_during_a_run_fire_once() {
        let every = Schedule::Recurring(Duration::from_secs(1));
        // On time: no drift.
        assert_eq!(
            next_trigger(&every, 10 * SEC, 10 * SEC + 30),
            Some(11 * SEC)
        );
        // The run waited 2.5 s: the next is a period after now, not the missed ones.
        assert_eq!(
            next_trigger(&every, 10 * SEC, 12 * SEC + 500),
            Some(13 * SEC + 500)
        );
        let minutely = Schedule::Cron(Cron::parse_line("* * * * *").unwrap());
        let minute = 60 * SEC;
        assert_eq!(
            next_trigger(&minutely, 100 * minute, 100 * minute + 5),
            Some(101 * minute)
        );
        assert_eq!(
            next_trigger(&minutely, 100 * minute, 102 * minute + 5),
            Some(103 * minute)
        );
    }
}
