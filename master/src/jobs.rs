//! The job verbs of the system API (`omq.system.list-jobs`, `run-job`, `set-job-active`,
//! ...), served by [`crate::api::Api`]. Request and reply bodies are JSON; `docs/jobs.md`
//! documents each verb's shapes.
//!
//! The database decides whether a job runs: a change here (deactivation, schedule, expiry)
//! is committed first, and only then is the job's process started, stopped or told to read
//! its row again. A job process that has not heard of a deactivation yet still cannot start
//! a run, because starting a run re-checks the row in the same transaction
//! (`Store::begin_job_instance`).

use std::time::Duration;

use serde_json::{json, Map, Value};
use sluice_core::schedule::{Cron, Schedule};
use sluice_core::store::jobs::{job_status_letter, job_status_name, Job, JobError, JobInstance};
use sluice_core::store::orders::parse_time;

use crate::api::Api;
use crate::supervisor::interface_network_id;
use crate::verbs::{
    self, db, named_request, parse, start_if_due, to_json, Kind, Named, Refusal, Unreachable,
};

/// The verbs this module serves.
pub const VERBS: &[&str] = &[
    "omq.system.list-jobs",
    "omq.system.get-job",
    "omq.system.get-job-instances",
    "omq.system.run-job",
    "omq.system.set-job-active",
    "omq.system.schedule-job",
    "omq.system.set-job-expiry",
    "omq.system.reset-job",
];

/// Runs `get-job` shows.
const RECENT_INSTANCES: u32 = 20;
/// Runs `get-job-instances` returns when the request names no limit.
const DEFAULT_INSTANCE_LIMIT: u32 = 100;
/// How long `run-job` waits for the run to end. A longer run goes on; only the reply is
/// lost (the caller finds the run in `get-job-instances`).
const RUN_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a job process may take to reload its code or its schedule.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

const JOB: Kind = Kind {
    name: "job",
    id_field: "jobid",
    not_found: "NOT-FOUND",
};

named_request! {
    struct JobRef by jobid {}
}

named_request! {
    struct InstancesQuery by jobid {
        #[serde(default)]
        limit: Option<u32>,
        /// A status name or letter (`ERROR`, `E`), or a list of them.
        #[serde(default)]
        status: Value,
    }
}

named_request! {
    struct SetActive by jobid {
        active: bool,
    }
}

named_request! {
    struct ScheduleJob by jobid {
        /// "M H D Mon DOW".
        #[serde(default)]
        schedule: Option<String>,
        /// Seconds.
        #[serde(default)]
        recurring: Option<u64>,
    }
}

named_request! {
    struct SetExpiry by jobid {
        /// ms since the epoch, RFC 3339 text, or null (never expires). Required: a missing
        /// key is more likely a mistake than a wish to remove the expiry.
        expiry_date: Value,
    }
}

fn job_error(err: JobError) -> Refusal {
    match err {
        JobError::Store(store) => db(store),
        other => (other.code(), other.to_string()),
    }
}

/// The job a request names.
async fn find(api: &Api, named: Named<'_>) -> Result<Job, Refusal> {
    JOB.find(
        named,
        async |id| api.store.job_by_id(id).await,
        async |name, version| api.store.find_job(name, version).await,
    )
    .await
}

/// A reply about `job`: which job it is, then `fields`.
fn job_reply(job: &Job, fields: Value) -> Result<Vec<u8>, Refusal> {
    let mut reply = Map::new();
    reply.insert("jobid".into(), json!(job.jobid));
    reply.insert("name".into(), json!(job.name));
    reply.insert("version".into(), json!(job.version));
    if let Value::Object(fields) = fields {
        reply.extend(fields);
    }
    to_json(&reply)
}

fn network_id(job: &Job) -> String {
    interface_network_id(JOB.name, &job.name, &job.version)
}

/// The state of the job's process as the supervisor knows it, else why there is none.
fn status(api: &Api, job: &Job, now: i64) -> String {
    let id = network_id(job);
    if let Some(entry) = api
        .supervisor
        .current_registry()
        .iter()
        .find(|e| e.network_id == id)
    {
        return entry.status.clone();
    }
    if !job.active {
        "inactive"
    } else if !job.enabled {
        "disabled"
    } else if job.expired(now) {
        "expired"
    } else {
        "stopped"
    }
    .to_string()
}

fn job_json(api: &Api, job: &Job, now: i64) -> Value {
    json!({
        "jobid": job.jobid,
        "name": job.name,
        "version": job.version,
        "desc": job.description,
        "active": job.active,
        "enabled": job.enabled,
        "run_skipped": job.run_skipped,
        "schedule": job.schedule_line(),
        "recurring": job.recurring,
        "expiry_date": job.expiry_date,
        "last_executed": job.last_executed,
        "last_executed_job_instanceid": job.last_executed_job_instanceid,
        "next_trigger": job.next_trigger,
        "status": status(api, job, now),
    })
}

fn instance_json(instance: &JobInstance) -> Value {
    let mut value = serde_json::to_value(instance).unwrap_or(Value::Null);
    value["status"] = json!(job_status_name(&instance.jobstatus));
    value
}

/// Calls the job's process on its own socket; `Ok(None)` when it is not running.
async fn call_process(
    api: &Api,
    job: &Job,
    method: &str,
    timeout: Duration,
) -> Result<Option<Value>, Refusal> {
    let id = network_id(job);
    let registry = api.supervisor.current_registry();
    let Some(entry) = registry
        .iter()
        .find(|e| e.network_id == id && e.status == "running")
    else {
        return Ok(None);
    };
    let client = verbs::connect(api, entry).map_err(|why| match why {
        Unreachable::Connect(e) => ("STATUS-ERROR", format!("cannot reach {id}: {e}")),
        Unreachable::NoEndpoint | Unreachable::NoChildren => {
            ("STATUS-ERROR", format!("{id} cannot be reached"))
        }
    })?;
    let reply = verbs::ask(&client, method, timeout)
        .await
        .map_err(|e| ("TIMEOUT", format!("{id} did not answer {method}: {e}")))?;
    if let Some(err) = reply.error {
        // The process's codes (STATUS-ERROR, RESET-ERROR, ...) are the caller's to see.
        let code = match err.code.as_str() {
            "STATUS-ERROR" => "STATUS-ERROR",
            "SHUTDOWN-IN-PROGRESS" => "SHUTDOWN-IN-PROGRESS",
            "DATABASE-ERROR" => "DATABASE-ERROR",
            "NOT-FOUND" => "NOT-FOUND",
            "INVALID-ARGUMENT" => "INVALID-ARGUMENT",
            "RESET-ERROR" => "RESET-ERROR",
            _ => "JOB-ERROR",
        };
        return Err((code, format!("{id}: {}", err.description)));
    }
    let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    Ok(Some(body))
}

/// Serves one job verb for `user`.
pub async fn handle(api: &Api, user: &str, method: &str, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let now = sluice_core::now_ms();
    match method {
        "omq.system.list-jobs" => {
            let jobs = api.store.list_jobs().await.map_err(db)?;
            let list: Vec<Value> = jobs.iter().map(|j| job_json(api, j, now)).collect();
            to_json(&Value::Array(list))
        }
        "omq.system.get-job" => {
            let r: JobRef = parse(body)?;
            let job = find(api, r.named()).await?;
            let instances = api
                .store
                .job_instances(job.jobid, RECENT_INSTANCES, None)
                .await
                .map_err(db)?;
            let mut value = job_json(api, &job, now);
            value["class_name"] = json!(job.class_name);
            value["code_hash"] = json!(job.code_hash);
            value["instances"] = instances.iter().map(instance_json).collect();
            to_json(&value)
        }
        "omq.system.get-job-instances" => {
            let q: InstancesQuery = parse(body)?;
            let job = find(api, q.named()).await?;
            let statuses: Vec<String> = match q.status {
                Value::Null => Vec::new(),
                Value::String(s) => s.split(',').map(str::to_string).collect(),
                Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        other => Err(("INVALID-ARGUMENT", format!("{other} is not a status"))),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!("status must be a name, a letter or a list of them, not {other}"),
                    ))
                }
            };
            let mut letters = Vec::new();
            for s in statuses.iter().filter(|s| !s.trim().is_empty()) {
                let letter = job_status_letter(s).ok_or_else(|| {
                    (
                        "INVALID-ARGUMENT",
                        format!(
                            "{s:?} is not a job instance status (IN-PROGRESS, COMPLETE, ERROR, \
                             CRASH or I, C, E, Z)"
                        ),
                    )
                })?;
                letters.push(letter);
            }
            let limit = q.limit.unwrap_or(DEFAULT_INSTANCE_LIMIT);
            let mut instances = Vec::new();
            if letters.is_empty() {
                instances = api
                    .store
                    .job_instances(job.jobid, limit, None)
                    .await
                    .map_err(db)?;
            } else {
                for letter in letters {
                    instances.extend(
                        api.store
                            .job_instances(job.jobid, limit, Some(letter))
                            .await
                            .map_err(db)?,
                    );
                }
                instances.sort_by_key(|i| std::cmp::Reverse(i.job_instanceid));
                instances.dedup_by_key(|i| i.job_instanceid);
                instances.truncate(limit as usize);
            }
            to_json(&instances.iter().map(instance_json).collect::<Vec<_>>())
        }
        "omq.system.run-job" => {
            let r: JobRef = parse(body)?;
            let job = find(api, r.named()).await?;
            if !job.active {
                return Err((
                    "STATUS-ERROR",
                    format!("job {}:{} is inactive", job.name, job.version),
                ));
            }
            tracing::info!(user, job = %job.name, version = %job.version, "run requested");
            match call_process(api, &job, "run", RUN_TIMEOUT).await? {
                Some(reply) => to_json(&reply),
                None => Err((
                    "STATUS-ERROR",
                    format!(
                        "job {}:{} has no running process (status {})",
                        job.name,
                        job.version,
                        status(api, &job, now)
                    ),
                )),
            }
        }
        "omq.system.set-job-active" => {
            let r: SetActive = parse(body)?;
            let job = find(api, r.named()).await?;
            if r.active && job.expired(now) {
                return Err((
                    "STATUS-ERROR",
                    format!(
                        "job {}:{} expired at {}; give it a new expiry date first",
                        job.name,
                        job.version,
                        job.expiry_date
                            .map(sluice_core::store::orders::format_time)
                            .unwrap_or_default()
                    ),
                ));
            }
            // The row first: from its commit on, no run of a deactivated job can start,
            // whatever its process does until it is stopped.
            let changed = api
                .store
                .set_job_active(job.jobid, r.active)
                .await
                .map_err(db)?;
            let process = if r.active {
                tracing::info!(user, job = %job.name, version = %job.version, "job activated");
                let mut row = verbs::interface_row(api, JOB.name, &job.name, &job.version).await?;
                // A job has no autostart switch: an active one starts unless it is
                // disabled or in a disabled group.
                row.autostart = true;
                start_if_due(api, user, &row)
            } else {
                let id = network_id(&job);
                tracing::info!(user, network_id = %id, "job deactivated: stopping its process");
                let supervisor = api.supervisor.clone();
                // Not awaited: a run in progress finishes first, which may take long; the
                // deactivation is already in force.
                tokio::spawn(async move { supervisor.stop_one(&id).await });
                "stopping".into()
            };
            job_reply(
                &job,
                json!({
                    "active": r.active,
                    "changed": changed,
                    "process": process,
                }),
            )
        }
        "omq.system.schedule-job" => {
            let r: ScheduleJob = parse(body)?;
            let job = find(api, r.named()).await?;
            let schedule = match (&r.schedule, r.recurring) {
                (Some(line), None) => Schedule::Cron(
                    Cron::parse_line(line)
                        .map_err(|e| ("INVALID-ARGUMENT", format!("invalid schedule: {e}")))?,
                ),
                (None, Some(secs)) if secs > 0 => Schedule::Recurring(Duration::from_secs(secs)),
                (None, Some(_)) => {
                    return Err((
                        "INVALID-ARGUMENT",
                        "recurring must be at least 1 (seconds)".into(),
                    ))
                }
                _ => {
                    return Err((
                        "INVALID-ARGUMENT",
                        "give either schedule (\"M H D Mon DOW\") or recurring (seconds)".into(),
                    ))
                }
            };
            api.store
                .set_job_schedule(job.jobid, &schedule)
                .await
                .map_err(job_error)?;
            tracing::info!(user, job = %job.name, version = %job.version, "schedule set to {}", schedule.describe());
            let next = call_process(api, &job, "reschedule", CONTROL_TIMEOUT)
                .await?
                .and_then(|reply| reply.get("next_trigger").cloned())
                .unwrap_or(Value::Null);
            let (line, recurring) = match &schedule {
                Schedule::Cron(cron) => (Some(cron.to_string()), None),
                Schedule::Recurring(period) => (None, Some(period.as_secs())),
            };
            job_reply(
                &job,
                json!({
                    "schedule": line,
                    "recurring": recurring,
                    "next_trigger": next,
                }),
            )
        }
        "omq.system.set-job-expiry" => {
            let r: SetExpiry = parse(body)?;
            let job = find(api, r.named()).await?;
            let expiry = match &r.expiry_date {
                Value::Null => None,
                Value::Number(n) => Some(
                    n.as_i64()
                        .ok_or_else(|| ("INVALID-ARGUMENT", format!("{n} is not a time in ms")))?,
                ),
                Value::String(text) if text.eq_ignore_ascii_case("none") => None,
                Value::String(text) => Some(parse_time(text).map_err(|e| ("INVALID-ARGUMENT", e))?),
                other => {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!("expiry_date must be ms, RFC 3339 text or null, not {other}"),
                    ))
                }
            };
            api.store
                .set_job_expiry(job.jobid, expiry)
                .await
                .map_err(db)?;
            tracing::info!(user, job = %job.name, version = %job.version, ?expiry, "expiry date set");
            // A running process reads it again; one whose date has now passed retires.
            let told = call_process(api, &job, "reschedule", CONTROL_TIMEOUT)
                .await?
                .is_some();
            job_reply(
                &job,
                json!({
                    "expiry_date": expiry,
                    "process_told": told,
                }),
            )
        }
        "omq.system.reset-job" => {
            let r: JobRef = parse(body)?;
            let job = find(api, r.named()).await?;
            tracing::info!(user, job = %job.name, version = %job.version, "reset requested");
            let reply = call_process(api, &job, "reset", CONTROL_TIMEOUT).await?;
            let message = match &reply {
                Some(_) => format!(
                    "job {}:{} reset: its process runs the newest loaded code from its next run",
                    job.name, job.version
                ),
                None => format!(
                    "job {}:{} is not running; it runs the newest loaded code when started",
                    job.name, job.version
                ),
            };
            job_reply(
                &job,
                json!({
                    "reset": reply.is_some(),
                    "message": message,
                    "loaded": reply,
                }),
            )
        }
        _ => Err(("UNKNOWN-METHOD", format!("{method} is not a job verb"))),
    }
}
