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

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::schedule::{Cron, Schedule};
use sluice_core::store::jobs::{job_status_letter, job_status_name, Job, JobError, JobInstance};
use sluice_core::store::orders::parse_time;
use sluice_core::store::StoreError;
use sluice_proto::v1::{Envelope, InterfaceRef};

use crate::api::Api;
use crate::supervisor::{interface_network_id, ChildSpec, Command};

/// An error reply: code and description.
type Refusal = (&'static str, String);

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

/// Names a job: `name` (with `version`, else the newest loaded one), or `jobid`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JobRef {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    jobid: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstancesQuery {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    jobid: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
    /// A status name or letter (`ERROR`, `E`), or a list of them.
    #[serde(default)]
    status: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetActive {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    jobid: Option<i64>,
    active: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleJob {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    jobid: Option<i64>,
    /// "M H D Mon DOW".
    #[serde(default)]
    schedule: Option<String>,
    /// Seconds.
    #[serde(default)]
    recurring: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetExpiry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    jobid: Option<i64>,
    /// ms since the epoch, RFC 3339 text, or null (never expires). Required: a missing key
    /// is more likely a mistake than a wish to remove the expiry.
    expiry_date: Value,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    // An empty body is an empty object, for verbs whose fields are all optional.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        (
            "INVALID-ARGUMENT",
            format!("malformed request body (JSON expected): {e}"),
        )
    })
}

fn to_json(value: &Value) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value)
        .map_err(|e| ("INTERNAL-ERROR", format!("cannot encode the reply: {e}")))
}

fn db(err: StoreError) -> Refusal {
    if let StoreError::Invalid(msg) = err {
        return ("INVALID-ARGUMENT", msg);
    }
    tracing::error!("system database: {err}");
    (
        "DATABASE-ERROR",
        format!("the system database failed: {err}"),
    )
}

fn job_error(err: JobError) -> Refusal {
    match err {
        JobError::Store(store) => db(store),
        other => (other.code(), other.to_string()),
    }
}

/// The job a request names.
async fn find(
    api: &Api,
    name: Option<&str>,
    version: Option<&str>,
    jobid: Option<i64>,
) -> Result<Job, Refusal> {
    let version = version.filter(|v| !v.is_empty());
    let found = match (jobid, name) {
        (Some(id), None) => api.store.job_by_id(id).await.map_err(db)?,
        (None, Some(name)) => api.store.find_job(name, version).await.map_err(db)?,
        (Some(_), Some(_)) => {
            return Err((
                "INVALID-ARGUMENT",
                "name a job by name (and version) or by jobid, not both".into(),
            ))
        }
        (None, None) => {
            return Err((
                "INVALID-ARGUMENT",
                "the request names no job: give name (and version) or jobid".into(),
            ))
        }
    };
    found.ok_or_else(|| {
        let what = match (jobid, name, version) {
            (Some(id), _, _) => format!("with jobid {id}"),
            (None, Some(name), Some(version)) => format!("{name}:{version}"),
            (None, Some(name), None) => name.to_string(),
            (None, None, _) => String::new(),
        };
        ("NOT-FOUND", format!("no job {what} is loaded"))
    })
}

fn network_id(job: &Job) -> String {
    interface_network_id("job", &job.name, &job.version)
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
    let (Some(calls), Some(endpoint)) = (&api.children, entry.endpoints.first()) else {
        return Err(("STATUS-ERROR", format!("{id} cannot be reached")));
    };
    let client = calls
        .connect(endpoint)
        .map_err(|e| ("STATUS-ERROR", format!("cannot reach {id}: {e}")))?;
    let request = Envelope {
        method: method.into(),
        ..Default::default()
    };
    let reply = client
        .call(request, timeout)
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
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            let job = find(api, q.name.as_deref(), q.version.as_deref(), q.jobid).await?;
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
            to_json(&instances.iter().map(instance_json).collect())
        }
        "omq.system.run-job" => {
            let r: JobRef = parse(body)?;
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            let id = network_id(&job);
            let process = if r.active {
                // The interface row says whether anything keeps the job from starting (it
                // is disabled, or in a disabled group).
                let mut row = api
                    .find_interface(&InterfaceRef {
                        r#type: "job".into(),
                        name: job.name.clone(),
                        version: job.version.clone(),
                    })
                    .await?;
                row.autostart = true;
                match ChildSpec::for_interface(&row) {
                    Some(spec) if row.starts_by_itself() => {
                        tracing::info!(user, network_id = %id, "job activated: starting its process");
                        api.supervisor.send(Command::Start(spec));
                        "starting"
                    }
                    _ if !row.enabled => "not started: the job is disabled",
                    _ => "not started: the job is in a disabled interface group",
                }
            } else {
                tracing::info!(user, network_id = %id, "job deactivated: stopping its process");
                let supervisor = api.supervisor.clone();
                // Not awaited: a run in progress finishes first, which may take long; the
                // deactivation is already in force.
                tokio::spawn(async move { supervisor.stop_one(&id).await });
                "stopping"
            };
            to_json(&json!({
                "jobid": job.jobid,
                "name": job.name,
                "version": job.version,
                "active": r.active,
                "changed": changed,
                "process": process,
            }))
        }
        "omq.system.schedule-job" => {
            let r: ScheduleJob = parse(body)?;
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            to_json(&json!({
                "jobid": job.jobid,
                "name": job.name,
                "version": job.version,
                "schedule": line,
                "recurring": recurring,
                "next_trigger": next,
            }))
        }
        "omq.system.set-job-expiry" => {
            let r: SetExpiry = parse(body)?;
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            to_json(&json!({
                "jobid": job.jobid,
                "name": job.name,
                "version": job.version,
                "expiry_date": expiry,
                "process_told": told,
            }))
        }
        "omq.system.reset-job" => {
            let r: JobRef = parse(body)?;
            let job = find(api, r.name.as_deref(), r.version.as_deref(), r.jobid).await?;
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
            to_json(&json!({
                "jobid": job.jobid,
                "name": job.name,
                "version": job.version,
                "reset": reply.is_some(),
                "message": message,
                "loaded": reply,
            }))
        }
        _ => Err(("UNKNOWN-METHOD", format!("{method} is not a job verb"))),
    }
}
