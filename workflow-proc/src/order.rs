//! One order's run: its steps in dependency order, each transition committed before the
//! engine acts on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sluice_core::runner::{RunnerError, UserError};
use sluice_core::store::engine::{
    ClaimedOrder, ErrorPolicy, ErrorWrite, OrderTransition, OrderWrite, StepWrite,
};

use crate::committer::Committed;
use crate::{Program, Shared};

/// What user-code callbacks may read and change while the order runs.
pub struct OrderState {
    pub id: i64,
    /// The token this run's claim stamped: every write of the run carries it.
    pub claim: String,
    /// Held from a change of dynamic data or keys until its commit, so parallel steps'
    /// changes reach the database in the order they were made in memory.
    pub updates: tokio::sync::Mutex<()>,
    pub dynamicdata: Mutex<Value>,
    pub keys: Mutex<BTreeMap<String, Vec<String>>>,
}

/// A step's state in memory, mirrored from the committed rows.
#[derive(Debug, Clone)]
struct Step {
    /// Letter status; `None` when the step never started.
    status: Option<&'static str>,
    retries: i64,
    skip: bool,
}

/// How one step's attempt ended.
enum Outcome {
    Complete,
    Failed {
        policy: ErrorPolicy,
        error: UserError,
    },
    /// The runner died under the step: not the step's fault; it runs again at once.
    RunnerDied(String),
}

fn letter(status: &str) -> &'static str {
    match status {
        "C" => "C",
        "E" => "E",
        "R" => "R",
        "I" => "I",
        "B" => "B",
        "X" => "X",
        "W" => "W",
        "A" => "A",
        "V" => "V",
        _ => "R",
    }
}

pub async fn run(shared: Arc<Shared>, claimed: ClaimedOrder) {
    let id = claimed.id;
    let state = Arc::new(OrderState {
        id,
        claim: claimed.claim.clone(),
        updates: tokio::sync::Mutex::new(()),
        dynamicdata: Mutex::new(claimed.dynamicdata.clone()),
        keys: Mutex::new(claimed.keys.clone()),
    });
    shared
        .orders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, state.clone());
    if let Err(err) = run_steps(&shared, &claimed, &state).await {
        // The order stays IN-PROGRESS and ours: the release at stop, or recovery after a
        // crash, returns it to RETRY. Nothing was acted upon without a commit.
        tracing::error!(order = id, "order left for recovery: {err}");
    }
    // Only our own entry: a later claim of the same order may have replaced it.
    let mut orders = shared.orders.lock().unwrap_or_else(|p| p.into_inner());
    if orders.get(&id).is_some_and(|s| Arc::ptr_eq(s, &state)) {
        orders.remove(&id);
    }
}

async fn commit(shared: &Shared, t: OrderTransition) -> Result<bool, String> {
    match shared.committer.commit(t).await {
        Ok(Committed::Done) => Ok(true),
        Ok(Committed::Lost) => Ok(false),
        Err(err) => Err(err.to_string()),
    }
}

async fn run_steps(
    shared: &Arc<Shared>,
    claimed: &ClaimedOrder,
    state: &Arc<OrderState>,
) -> Result<(), String> {
    let id = claimed.id;
    let program = shared.program.get();
    let mut steps: HashMap<i64, Step> = program
        .workflow
        .steps
        .iter()
        .map(|s| {
            let row = claimed
                .steps
                .iter()
                .find(|r| r.stepid == s.stepid && r.ind == 0);
            (
                s.stepid,
                Step {
                    status: row.map(|r| letter(&r.status)),
                    retries: row.map(|r| r.retries).unwrap_or(0),
                    skip: row.is_some_and(|r| r.skip),
                },
            )
        })
        .collect();
    // Writes waiting for the next commit: the previous round's outcomes go with the next
    // round's starts, one commit per round.
    let fresh = || OrderTransition {
        id,
        claim: claimed.claim.clone(),
        ..Default::default()
    };
    let mut pending = fresh();
    // One snapshot of the graph for the whole run: a reset changes the code later steps
    // run (the runner's classes), never the graph an order is half-way through.
    loop {
        let ready: Vec<i64> = program
            .workflow
            .steps
            .iter()
            .filter(|s| {
                steps[&s.stepid].status != Some("C")
                    && s.depends_on
                        .iter()
                        .all(|d| steps.get(d).is_some_and(|st| st.status == Some("C")))
            })
            .map(|s| s.stepid)
            .collect();
        if ready.is_empty() {
            let all_done = steps.values().all(|s| s.status == Some("C"));
            let status = if all_done { "C" } else { "E" };
            if !all_done {
                tracing::error!(
                    order = id,
                    "no step can run and not every step is COMPLETE; setting ERROR"
                );
            }
            let now = sluice_core::now_ms();
            pending.order = Some(OrderWrite {
                status,
                retry_trigger: None,
                completed: all_done.then_some(now),
                business_error: false,
                release: true,
            });
            commit(shared, pending).await?;
            return Ok(());
        }
        if *shared.stopping.borrow() {
            // Hand the order back as it stands; the outcomes so far are committed first.
            commit(shared, pending).await?;
            return Ok(());
        }
        // Start the round: each ready step IN-PROGRESS, committed with the last round's
        // outcomes before any of its code runs.
        let started = sluice_core::now_ms();
        let mut ran_before = HashMap::new();
        for stepid in &ready {
            let step = steps.get_mut(stepid).ok_or("unknown step")?;
            ran_before.insert(*stepid, step.status.is_some());
            step.status = Some("I");
            pending.steps.push(StepWrite {
                stepid: *stepid,
                ind: 0,
                status: "I",
                retries: step.retries,
                skip: false,
                started,
                completed: None,
                error: None,
                error_description: None,
                error_info: None,
                business_error: false,
            });
        }
        let t = std::mem::replace(&mut pending, fresh());
        if !commit(shared, t).await? {
            tracing::warn!(
                order = id,
                "order taken back by recovery; stopping work on it"
            );
            return Ok(());
        }
        let attempts = ready.iter().map(|&stepid| {
            let program = program.clone();
            let shared = shared.clone();
            let context = step_context(&program, stepid, claimed, state, steps[&stepid].retries);
            let again = ran_before[&stepid];
            async move {
                let outcome = attempt(&shared, &program, stepid, again, context).await;
                (stepid, outcome)
            }
        });
        let outcomes = join_all(attempts).await;
        let now = sluice_core::now_ms();
        let mut retry_at: Option<i64> = None;
        let mut failed = false;
        let mut business = false;
        let mut runner_died = false;
        for (stepid, outcome) in outcomes {
            let step = steps.get_mut(&stepid).ok_or("unknown step")?;
            let mut write = StepWrite {
                stepid,
                ind: 0,
                status: "C",
                retries: step.retries,
                skip: step.skip,
                started,
                completed: Some(now),
                error: None,
                error_description: None,
                error_info: None,
                business_error: false,
            };
            match outcome {
                Outcome::Complete => step.status = Some("C"),
                Outcome::RunnerDied(why) => {
                    runner_died = true;
                    step.status = Some("R");
                    write.status = "R";
                    write.completed = None;
                    tracing::warn!(order = id, stepid, "step interrupted: {why}");
                }
                Outcome::Failed { policy, error } => {
                    let retry = policy.retry
                        && (step.retries as u64) < shared.options.current().max_retries();
                    if policy.retry && !retry {
                        tracing::warn!(
                            order = id,
                            stepid,
                            "{} retries reached (qorus.max-retries); ERROR",
                            step.retries
                        );
                    }
                    let status = if retry { "R" } else { "E" };
                    if retry {
                        step.retries += 1;
                        let delay = policy
                            .retry_delay_secs
                            .map(|s| s.max(0) * 1000)
                            .unwrap_or(shared.options.current().recover_delay().as_millis() as i64);
                        let at = now + delay;
                        retry_at = Some(retry_at.map_or(at, |r: i64| r.min(at)));
                    } else {
                        failed = true;
                    }
                    business |= policy.business;
                    step.status = Some(status);
                    let description = if error.message.is_empty() {
                        policy.description.clone()
                    } else {
                        Some(error.message.clone())
                    };
                    let info = json!({
                        "type": error.r#type,
                        "message": error.message,
                        "traceback": error.traceback,
                        "info": error.info,
                    })
                    .to_string();
                    tracing::info!(
                        order = id,
                        stepid,
                        "step error {} ({}): {}",
                        policy.name,
                        status,
                        error.message
                    );
                    write.status = status;
                    write.retries = step.retries;
                    write.completed = None;
                    write.error = Some(policy.name.clone());
                    write.error_description = description.clone();
                    write.error_info = Some(info.clone());
                    write.business_error = policy.business;
                    pending.errors.push(ErrorWrite {
                        stepid,
                        ind: 0,
                        error: policy.name.clone(),
                        description,
                        info: Some(info),
                        severity: policy.severity.clone(),
                        retry,
                        business: policy.business,
                    });
                }
            }
            pending.steps.push(write);
        }
        if failed || retry_at.is_some() || runner_died {
            // The order stops here: ERROR waits for an operator, RETRY for its time (a
            // runner that died is no business error: at once).
            let (status, trigger) = if failed {
                ("E", None)
            } else if runner_died && retry_at.is_none() {
                ("R", None)
            } else {
                ("R", retry_at)
            };
            pending.order = Some(OrderWrite {
                status,
                retry_trigger: trigger,
                completed: None,
                business_error: business,
                release: true,
            });
            commit(shared, pending).await?;
            return Ok(());
        }
    }
}

/// Runs `futures` concurrently and collects their outputs in order.
async fn join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => tracing::error!("a step task failed: {e}"),
        }
    }
    out
}

fn step_context(
    program: &Program,
    stepid: i64,
    claimed: &ClaimedOrder,
    state: &OrderState,
    retries: i64,
) -> Value {
    let name = program
        .workflow
        .step(stepid)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    json!({
        "wfiid": claimed.id,
        "workflow": program.workflow.name,
        "workflow_version": program.workflow.version,
        "stepid": stepid,
        "stepname": name,
        "ind": 0,
        "priority": claimed.priority,
        "retries": retries,
        "staticdata": claimed.staticdata,
        "dynamicdata": *state.dynamicdata.lock().unwrap_or_else(|p| p.into_inner()),
        "keys": *state.keys.lock().unwrap_or_else(|p| p.into_inner()),
    })
}

/// One attempt at a step: validation first when it ran before, then primary.
async fn attempt(
    shared: &Shared,
    program: &Program,
    stepid: i64,
    ran_before: bool,
    context: Value,
) -> Outcome {
    let Some((class, info)) = program.classes.get(&stepid) else {
        return Outcome::Failed {
            policy: unknown_error(program, "STEP-NOT-LOADED"),
            error: UserError {
                r#type: "STEP-NOT-LOADED".into(),
                message: format!("step {stepid} has no loaded code"),
                traceback: String::new(),
                info: Value::Null,
            },
        };
    };
    let runner = shared.runner.get();
    if ran_before && info.has("validation") {
        match runner
            .call(class, "validation", Vec::new(), context.clone())
            .await
        {
            Ok(Ok(Value::String(verdict))) => match verdict.as_str() {
                "COMPLETE" => return Outcome::Complete,
                "RETRY" => {}
                "ERROR" => {
                    return failed(
                        program,
                        UserError {
                            r#type: "VALIDATION-ERROR".into(),
                            message: "validation() returned ERROR".into(),
                            traceback: String::new(),
                            info: Value::Null,
                        },
                    )
                }
                other => {
                    return failed(
                        program,
                        UserError {
                            r#type: "VALIDATION-ERROR".into(),
                            message: format!(
                                "validation() returned {other:?}; expected \"COMPLETE\", \
                                 \"RETRY\" or \"ERROR\""
                            ),
                            traceback: String::new(),
                            info: Value::Null,
                        },
                    )
                }
            },
            Ok(Ok(other)) => {
                return failed(
                    program,
                    UserError {
                        r#type: "VALIDATION-ERROR".into(),
                        message: format!(
                            "validation() returned {other}; expected \"COMPLETE\", \"RETRY\" \
                             or \"ERROR\""
                        ),
                        traceback: String::new(),
                        info: Value::Null,
                    },
                )
            }
            Ok(Err(user)) => return failed(program, user),
            Err(err) => return runner_failure(program, err),
        }
    }
    match runner.call(class, "primary", Vec::new(), context).await {
        Ok(Ok(_)) => Outcome::Complete,
        Ok(Err(user)) => failed(program, user),
        Err(err) => runner_failure(program, err),
    }
}

fn runner_failure(program: &Program, err: RunnerError) -> Outcome {
    match err {
        RunnerError::User(user) => failed(program, user),
        other => Outcome::RunnerDied(other.to_string()),
    }
}

fn failed(program: &Program, error: UserError) -> Outcome {
    // A Python class cannot be named STOCK-UNAVAILABLE: `class STOCK_UNAVAILABLE` raises
    // the declared error of that name.
    let errors = &program.workflow.errors;
    let policy = errors
        .get(&error.r#type)
        .or_else(|| errors.get(&error.r#type.replace('_', "-")))
        .cloned()
        .unwrap_or_else(|| unknown_error(program, &error.r#type));
    Outcome::Failed { policy, error }
}

/// An error no definition names: MAJOR and ERROR, as Qorus treats it.
fn unknown_error(program: &Program, name: &str) -> ErrorPolicy {
    ErrorPolicy {
        name: name.to_string(),
        description: Some(format!(
            "error {name} is not declared by workflow {}:{} nor globally; treated as a \
             MAJOR error with status ERROR",
            program.workflow.name, program.workflow.version
        )),
        severity: "MAJOR".into(),
        retry: false,
        business: false,
        retry_delay_secs: None,
    }
}
