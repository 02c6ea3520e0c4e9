//! What a job process and the master's job verbs read and write: job definitions, their
//! instances (runs), state data and schedules.
//!
//! - [`Store::load_job_program`]: a job's definition with its code, what its process runs.
//! - [`Store::begin_job_instance`]: starts a run, atomically, only if the job may run now
//!   (active, enabled, not expired, in no disabled group, no run in progress). This is what
//!   closes Qorus's deactivation race: a deactivation committed before a trigger's begin
//!   refuses that trigger, whatever the job process believes.
//! - [`Store::finish_job_instance`]: records how a run ended, guarded by ownership, so a
//!   run that recovery already marked CRASH is not overwritten.
//!
//! A job instance's `jobstatus` is Qorus's letter: IN-PROGRESS `I`, COMPLETE `C`, ERROR
//! `E`, CRASH `Z` (set by recovery when the process or the session that ran it died).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{on_pool, Backend, Store, StoreError};
use crate::schedule::{Cron, CronError, Schedule};

/// Most instances one listing returns.
pub const MAX_INSTANCES_PER_LISTING: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no job {0} is loaded")]
    NotFound(String),
    #[error("invalid schedule: {0}")]
    Schedule(#[from] CronError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Store(StoreError::Sql(e))
    }
}

impl JobError {
    /// The code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::NotFound(_) => "NOT-FOUND",
            JobError::Schedule(_) | JobError::Invalid(_) => "INVALID-ARGUMENT",
            JobError::Store(StoreError::Invalid(_)) => "INVALID-ARGUMENT",
            JobError::Store(_) => "DATABASE-ERROR",
        }
    }
}

/// A job's row: definition, schedule and run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub jobid: i64,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub lang: String,
    pub class_name: Option<String>,
    pub code_hash: Option<String>,
    pub active: bool,
    pub enabled: bool,
    pub run_skipped: bool,
    /// The five cron fields as written (minute, hour, day, month, wday); `None` for a
    /// recurring job.
    pub cron: Option<[String; 5]>,
    /// Seconds between runs, for a recurring job.
    pub recurring: Option<i64>,
    /// ms since the epoch; the job stops running at this time.
    pub expiry_date: Option<i64>,
    /// When the last finished run started.
    pub last_executed: Option<i64>,
    pub last_executed_job_instanceid: Option<i64>,
    /// When the job process plans to run it next (written by the process).
    pub next_trigger: Option<i64>,
}

impl Job {
    /// The schedule, parsed. A row with neither a valid cron schedule nor a positive
    /// period is refused (only a hand-edited database can hold one).
    pub fn schedule(&self) -> Result<Schedule, JobError> {
        if let Some([m, h, d, mon, dow]) = &self.cron {
            return Ok(Schedule::Cron(Cron::parse(m, h, d, mon, dow)?));
        }
        match self.recurring {
            Some(secs) if secs > 0 => Ok(Schedule::Recurring(std::time::Duration::from_secs(
                secs.unsigned_abs(),
            ))),
            _ => Err(JobError::Invalid(format!(
                "job {}:{} has neither a cron schedule nor a positive recurring period",
                self.name, self.version
            ))),
        }
    }

    /// The cron schedule as one line ("M H D Mon DOW"), `None` for a recurring job.
    pub fn schedule_line(&self) -> Option<String> {
        self.cron.as_ref().map(|fields| fields.join(" "))
    }

    /// Whether the job's expiry date has passed at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expiry_date.is_some_and(|at| at <= now_ms)
    }
}

/// A job with the code its process runs.
#[derive(Debug, Clone)]
pub struct JobProgram {
    pub job: Job,
    pub class_name: String,
    pub code_hash: String,
    pub source: String,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInstance {
    pub job_instanceid: i64,
    pub jobid: i64,
    /// The letter: `I`, `C`, `E` or `Z`.
    pub jobstatus: String,
    pub sessionid: i64,
    pub owner: Option<String>,
    pub started: i64,
    pub completed: Option<i64>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// JSON, as user code raised it.
    pub error_info: Option<Value>,
    /// What the run saved with `saveInfo`.
    pub info: Option<Value>,
}

/// The name of a job instance status letter (`C` → `COMPLETE`).
pub fn job_status_name(letter: &str) -> &'static str {
    match letter {
        "I" => "IN-PROGRESS",
        "C" => "COMPLETE",
        "E" => "ERROR",
        "Z" => "CRASH",
        _ => "UNKNOWN",
    }
}

/// The letter of a job instance status, given as a name (any case) or a letter.
pub fn job_status_letter(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_uppercase().as_str() {
        "I" | "IN-PROGRESS" => Some("I"),
        "C" | "COMPLETE" => Some("C"),
        "E" | "ERROR" => Some("E"),
        "Z" | "CRASH" => Some("Z"),
        _ => None,
    }
}

/// Who runs an instance: the master's live session and the job process's network id.
/// Recovery finds a dead process's instances by `owner`, a dead session's by `session`.
#[derive(Debug, Clone, Copy)]
pub struct JobOwner<'a> {
    pub session: i64,
    pub network_id: &'a str,
}

/// Why [`Store::begin_job_instance`] did not start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Inactive,
    Disabled,
    Expired {
        expiry_date: i64,
    },
    GroupDisabled {
        group: String,
    },
    /// A run is in progress: runs of one job never overlap.
    Running {
        job_instanceid: i64,
    },
    /// The session the caller named is not the live one (a process adopted by a new master
    /// that has not learnt its session yet): nothing may be stamped with a dead session,
    /// which no recovery would look at again.
    SessionNotActive {
        session: i64,
    },
    /// Refused, but what refused it changed before it could be read back.
    Changed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotFound => f.write_str("the job is no longer loaded"),
            Refusal::Inactive => f.write_str("the job is inactive"),
            Refusal::Disabled => f.write_str("the job is disabled"),
            Refusal::Expired { expiry_date } => write!(
                f,
                "the job expired at {}",
                super::orders::format_time(*expiry_date)
            ),
            Refusal::GroupDisabled { group } => {
                write!(f, "the job's interface group {group} is disabled")
            }
            Refusal::Running { job_instanceid } => {
                write!(f, "job instance {job_instanceid} is still in progress")
            }
            Refusal::SessionNotActive { session } => {
                write!(f, "session {session} is not the live session")
            }
            Refusal::Changed => f.write_str("the job changed while it was being started"),
        }
    }
}

/// What [`Store::begin_job_instance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    Started { job_instanceid: i64, started: i64 },
    Refused(Refusal),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Complete,
    Error {
        error: String,
        description: Option<String>,
        info: Option<Value>,
    },
}

/// A job's state data: `data` lives until a run COMPLETEs, `persistent` for good.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStateData {
    pub data: Option<Value>,
    pub persistent: Option<Value>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    jobid: i64,
    name: String,
    version: String,
    description: Option<String>,
    lang: String,
    class_name: Option<String>,
    code_hash: Option<String>,
    active: bool,
    enabled: bool,
    run_skipped: bool,
    minute: Option<String>,
    hour: Option<String>,
    day: Option<String>,
    month: Option<String>,
    wday: Option<String>,
    recurring: Option<i64>,
    expiry_date: Option<i64>,
    last_executed: Option<i64>,
    last_executed_job_instanceid: Option<i64>,
    next_trigger: Option<i64>,
}

impl From<JobRow> for Job {
    fn from(r: JobRow) -> Job {
        let cron = match (r.minute, r.hour, r.day, r.month, r.wday) {
            (Some(m), Some(h), Some(d), Some(mon), Some(dow)) => Some([m, h, d, mon, dow]),
            _ => None,
        };
        Job {
            jobid: r.jobid,
            name: r.name,
            version: r.version,
            description: r.description,
            lang: r.lang,
            class_name: r.class_name,
            code_hash: r.code_hash,
            active: r.active,
            enabled: r.enabled,
            run_skipped: r.run_skipped,
            cron,
            recurring: r.recurring,
            expiry_date: r.expiry_date,
            last_executed: r.last_executed,
            last_executed_job_instanceid: r.last_executed_job_instanceid,
            next_trigger: r.next_trigger,
        }
    }
}

const JOB_COLUMNS: &str = "jobid, name, version, description, lang, class_name, code_hash, \
     active, enabled, run_skipped, minute, hour, day, month, wday, recurring, expiry_date, \
     last_executed, last_executed_job_instanceid, next_trigger";

#[derive(sqlx::FromRow)]
struct InstanceRow {
    job_instanceid: i64,
    jobid: i64,
    jobstatus: String,
    sessionid: i64,
    owner: Option<String>,
    started: i64,
    completed: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
    error_info: Option<String>,
    info: Option<String>,
}

impl From<InstanceRow> for JobInstance {
    fn from(r: InstanceRow) -> JobInstance {
        JobInstance {
            job_instanceid: r.job_instanceid,
            jobid: r.jobid,
            jobstatus: r.jobstatus,
            sessionid: r.sessionid,
            owner: r.owner,
            started: r.started,
            completed: r.completed,
            error: r.error,
            error_description: r.error_description,
            error_info: r.error_info.as_deref().map(json_or_text),
            info: r.info.as_deref().map(json_or_text),
        }
    }
}

const INSTANCE_COLUMNS: &str = "job_instanceid, jobid, jobstatus, sessionid, owner, started, \
     completed, error, error_description, error_info, info";

/// Stored JSON; text that is not JSON (written by hand or by an older tool) is shown as a
/// string rather than failing the whole listing.
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The insert that starts a run: one statement, so on SQLite (one writer at a time, and an
/// INSERT takes the write lock before it reads) nothing can change between the checks and
/// the insert. `$1` jobid, `$2` session, `$3` owner, `$4` now.
const BEGIN_SQL: &str = "INSERT INTO job_instance (jobid, jobstatus, sessionid, owner, started) \
     SELECT j.jobid, 'I', $2, $3, $4 FROM jobs j \
     WHERE j.jobid = $1 AND j.active AND j.enabled \
     AND (j.expiry_date IS NULL OR j.expiry_date > $4) \
     AND NOT EXISTS (SELECT 1 FROM group_members m JOIN groups g ON g.name = m.group_name \
         WHERE m.object_type = 'job' AND m.object_id = j.jobid AND NOT g.enabled) \
     AND NOT EXISTS (SELECT 1 FROM job_instance i WHERE i.jobid = j.jobid AND i.jobstatus = 'I') \
     AND EXISTS (SELECT 1 FROM sessions s WHERE s.sessionid = $2 AND s.status = 'ACTIVE') \
     RETURNING job_instanceid";

impl Store {
    /// Job `name:version`, or with `version` `None` the newest loaded version of `name`.
    pub async fn find_job(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = match version {
            Some(version) => {
                let sql =
                    format!("SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1 AND version = $2");
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(name)
                    .bind(version)
                    .fetch_optional(pool)
                    .await?)
            }
            None => {
                let sql = format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE name = $1 ORDER BY jobid DESC LIMIT 1"
                );
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(name)
                    .fetch_optional(pool)
                    .await?)
            }
        };
        Ok(row.map(Job::from))
    }

    pub async fn job_by_id(&self, jobid: i64) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE jobid = $1");
        let row: Option<JobRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(jobid)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(Job::from))
    }

    /// Every loaded job (all versions), by name and version.
    pub async fn list_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY name, version");
        let rows: Vec<JobRow> = on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await?);
        Ok(rows.into_iter().map(Job::from).collect())
    }

    /// Ids of the jobs whose expiry date is at or before `now_ms`: the master starts no
    /// process for them.
    pub async fn expired_job_ids(&self, now_ms: i64) -> Result<Vec<i64>, StoreError> {
        let ids = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT jobid FROM jobs WHERE expiry_date IS NOT NULL AND expiry_date <= $1 \
             ORDER BY jobid"
        )
        .bind(now_ms)
        .fetch_all(pool)
        .await?);
        Ok(ids)
    }

    /// Job `name:version` with its code, as its process runs it. `None` when no such job is
    /// loaded; an error when it has no code or class (a definition `sluice load` refuses).
    pub async fn load_job_program(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<JobProgram>, JobError> {
        let Some(job) = self.find_job(name, Some(version)).await? else {
            return Ok(None);
        };
        let (Some(class_name), Some(code_hash)) = (job.class_name.clone(), job.code_hash.clone())
        else {
            return Err(JobError::Invalid(format!(
                "job {name}:{version} has no code (class-name and code are required)"
            )));
        };
        let source: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT source FROM code WHERE code_hash = $1"
        )
        .bind(&code_hash)
        .fetch_optional(pool)
        .await?);
        let source = source.ok_or_else(|| {
            JobError::Invalid(format!(
                "the code of job {name}:{version} (hash {code_hash}) is missing from the code table"
            ))
        })?;
        Ok(Some(JobProgram {
            job,
            class_name,
            code_hash,
            source,
        }))
    }

    /// Starts a run of `jobid` for `owner` if the job may run now: it is active and enabled,
    /// not past its expiry date, in no disabled interface group, has no run in progress, and
    /// `owner.session` is the live session. One transaction: on PostgreSQL the job's row is
    /// locked `FOR UPDATE` first and its groups' rows `FOR SHARE`, so a concurrent
    /// deactivation (an UPDATE of that row) or group disable either commits before (and the
    /// run is refused) or waits until the run is recorded; on SQLite the single
    /// INSERT ... SELECT is atomic against every other writer.
    pub async fn begin_job_instance(
        &self,
        jobid: i64,
        owner: JobOwner<'_>,
    ) -> Result<Begun, StoreError> {
        let now = crate::now_ms();
        let inserted: Option<i64> = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if self.backend() == Backend::Postgres {
                sqlx::query("SELECT jobid FROM jobs WHERE jobid = $1 FOR UPDATE")
                    .bind(jobid)
                    .fetch_optional(&mut *tx)
                    .await?;
                sqlx::query(
                    "SELECT g.name FROM groups g JOIN group_members m ON m.group_name = g.name \
                     WHERE m.object_type = 'job' AND m.object_id = $1 FOR SHARE OF g",
                )
                .bind(jobid)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("SELECT sessionid FROM sessions WHERE sessionid = $1 FOR SHARE")
                    .bind(owner.session)
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            let id: Option<i64> = sqlx::query_scalar(BEGIN_SQL)
                .bind(jobid)
                .bind(owner.session)
                .bind(owner.network_id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        });
        match inserted {
            Some(job_instanceid) => Ok(Begun::Started {
                job_instanceid,
                started: now,
            }),
            None => Ok(Begun::Refused(self.why_refused(jobid, owner, now).await?)),
        }
    }

    /// Reads back why a begin was refused (after the fact, so it may have changed since).
    async fn why_refused(
        &self,
        jobid: i64,
        owner: JobOwner<'_>,
        now: i64,
    ) -> Result<Refusal, StoreError> {
        let Some(job) = self.job_by_id(jobid).await? else {
            return Ok(Refusal::NotFound);
        };
        if !job.active {
            return Ok(Refusal::Inactive);
        }
        if !job.enabled {
            return Ok(Refusal::Disabled);
        }
        if let Some(expiry_date) = job.expiry_date.filter(|at| *at <= now) {
            return Ok(Refusal::Expired { expiry_date });
        }
        let group: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT g.name FROM groups g JOIN group_members m ON m.group_name = g.name \
             WHERE m.object_type = 'job' AND m.object_id = $1 AND NOT g.enabled \
             ORDER BY g.name LIMIT 1"
        )
        .bind(jobid)
        .fetch_optional(pool)
        .await?);
        if let Some(group) = group {
            return Ok(Refusal::GroupDisabled { group });
        }
        let running: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT job_instanceid FROM job_instance WHERE jobid = $1 AND jobstatus = 'I' \
             ORDER BY job_instanceid LIMIT 1"
        )
        .bind(jobid)
        .fetch_optional(pool)
        .await?);
        if let Some(job_instanceid) = running {
            return Ok(Refusal::Running { job_instanceid });
        }
        let live: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT sessionid FROM sessions WHERE sessionid = $1 AND status = 'ACTIVE'"
        )
        .bind(owner.session)
        .fetch_optional(pool)
        .await?);
        if live.is_none() {
            return Ok(Refusal::SessionNotActive {
                session: owner.session,
            });
        }
        Ok(Refusal::Changed)
    }

    /// Records how run `job_instanceid` ended, if it is still IN-PROGRESS and owned by
    /// `network_id` (recovery may have marked it CRASH meanwhile: then nothing is written and
    /// `false` returned). In the same transaction the job's `last_executed` and
    /// `last_executed_job_instanceid` move to this run, and a COMPLETE run clears the job's
    /// state data (`persistent_data` stays).
    pub async fn finish_job_instance(
        &self,
        job_instanceid: i64,
        network_id: &str,
        outcome: &JobOutcome,
    ) -> Result<bool, StoreError> {
        let now = crate::now_ms();
        let (status, error, description, info) = match outcome {
            JobOutcome::Complete => ("C", None, None, None),
            JobOutcome::Error {
                error,
                description,
                info,
            } => (
                "E",
                Some(error.as_str()),
                description.as_deref(),
                info.as_ref().filter(|v| !v.is_null()).map(Value::to_string),
            ),
        };
        let finished = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let row: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE job_instance SET jobstatus = $2, completed = $3, error = $4, \
                 error_description = $5, error_info = $6 \
                 WHERE job_instanceid = $1 AND jobstatus = 'I' AND owner = $7 \
                 RETURNING jobid, started",
            )
            .bind(job_instanceid)
            .bind(status)
            .bind(now)
            .bind(error)
            .bind(description)
            .bind(&info)
            .bind(network_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((jobid, started)) = row {
                sqlx::query(
                    "UPDATE jobs SET last_executed = $2, last_executed_job_instanceid = $3 \
                     WHERE jobid = $1 AND (last_executed_job_instanceid IS NULL \
                         OR last_executed_job_instanceid < $3)",
                )
                .bind(jobid)
                .bind(started)
                .bind(job_instanceid)
                .execute(&mut *tx)
                .await?;
                if status == "C" {
                    sqlx::query(
                        "UPDATE job_state_data SET data = NULL, modified = $2 WHERE jobid = $1",
                    )
                    .bind(jobid)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            row.is_some()
        });
        Ok(finished)
    }

    /// Saves `info` (a run's `saveInfo`) with a run still IN-PROGRESS and owned by
    /// `network_id`; `false` when it is not.
    pub async fn save_job_info(
        &self,
        job_instanceid: i64,
        network_id: &str,
        info: &Value,
    ) -> Result<bool, StoreError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE job_instance SET info = $2 \
             WHERE job_instanceid = $1 AND jobstatus = 'I' AND owner = $3"
        )
        .bind(job_instanceid)
        .bind(info.to_string())
        .bind(network_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(affected > 0)
    }

    /// Records when the job process plans the next run (`None`: none planned).
    pub async fn set_job_next_trigger(
        &self,
        jobid: i64,
        next_trigger: Option<i64>,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE jobs SET next_trigger = $2 WHERE jobid = $1"
        )
        .bind(jobid)
        .bind(next_trigger)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The job's state data (both kinds); empty when none was ever saved.
    pub async fn job_state_data(&self, jobid: i64) -> Result<JobStateData, StoreError> {
        let row: Option<(Option<String>, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT data, persistent_data FROM job_state_data WHERE jobid = $1")
                .bind(jobid)
                .fetch_optional(pool)
                .await?
        });
        let Some((data, persistent)) = row else {
            return Ok(JobStateData::default());
        };
        let parse = |text: Option<String>, what: &str| -> Result<Option<Value>, StoreError> {
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    StoreError::Invalid(format!("job {jobid}'s stored {what} is not JSON: {e}"))
                })
            })
            .transpose()
        };
        Ok(JobStateData {
            data: parse(data, "state data")?,
            persistent: parse(persistent, "persistent state data")?,
        })
    }

    /// Replaces the job's state data (kept until a run COMPLETEs). Committed on return.
    pub async fn save_job_state_data(&self, jobid: i64, data: &Value) -> Result<(), StoreError> {
        self.upsert_state(jobid, "data", data).await
    }

    /// Replaces the job's persistent state data (kept across runs). Committed on return.
    pub async fn save_job_persistent_state_data(
        &self,
        jobid: i64,
        data: &Value,
    ) -> Result<(), StoreError> {
        self.upsert_state(jobid, "persistent_data", data).await
    }

    /// `column` is one of two literals above, never input.
    async fn upsert_state(&self, jobid: i64, column: &str, data: &Value) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO job_state_data (jobid, {column}, modified) VALUES ($1, $2, $3) \
             ON CONFLICT (jobid) DO UPDATE SET {column} = excluded.{column}, \
             modified = excluded.modified"
        );
        on_pool!(self, |pool| sqlx::query(&sql)
            .bind(jobid)
            .bind(data.to_string())
            .bind(crate::now_ms())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Activates or deactivates a job; returns whether it changed. A deactivation committed
    /// here refuses every later [`Store::begin_job_instance`] of the job.
    pub async fn set_job_active(&self, jobid: i64, active: bool) -> Result<bool, StoreError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE jobs SET active = $2, modified = $3 WHERE jobid = $1 AND active <> $2"
        )
        .bind(jobid)
        .bind(active)
        .bind(crate::now_ms())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(affected > 0)
    }

    /// Gives the job a new schedule; `false` when no such job exists. `next_trigger` is
    /// cleared, as a load of a new definition does, so the job process computes it from the
    /// new schedule.
    pub async fn set_job_schedule(
        &self,
        jobid: i64,
        schedule: &Schedule,
    ) -> Result<bool, JobError> {
        let (fields, recurring): (Option<[&str; 5]>, Option<i64>) = match schedule {
            Schedule::Cron(cron) => (Some(cron.fields()), None),
            Schedule::Recurring(period) => {
                let secs = i64::try_from(period.as_secs()).unwrap_or(i64::MAX);
                if secs <= 0 {
                    return Err(JobError::Invalid(
                        "a recurring job's period must be at least 1 second".into(),
                    ));
                }
                (None, Some(secs))
            }
        };
        let field = |i: usize| fields.map(|f| f[i].to_string());
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE jobs SET minute = $2, hour = $3, day = $4, month = $5, wday = $6, \
             recurring = $7, next_trigger = NULL, modified = $8 WHERE jobid = $1"
        )
        .bind(jobid)
        .bind(field(0))
        .bind(field(1))
        .bind(field(2))
        .bind(field(3))
        .bind(field(4))
        .bind(recurring)
        .bind(crate::now_ms())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(affected > 0)
    }

    /// Sets (or with `None` removes) the job's expiry date; `false` when no such job exists.
    pub async fn set_job_expiry(
        &self,
        jobid: i64,
        expiry_date: Option<i64>,
    ) -> Result<bool, StoreError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "UPDATE jobs SET expiry_date = $2, modified = $3 WHERE jobid = $1"
        )
        .bind(jobid)
        .bind(expiry_date)
        .bind(crate::now_ms())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(affected > 0)
    }

    pub async fn job_instance(
        &self,
        job_instanceid: i64,
    ) -> Result<Option<JobInstance>, StoreError> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM job_instance WHERE job_instanceid = $1");
        let row: Option<InstanceRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(job_instanceid)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(JobInstance::from))
    }

    /// The job's runs, newest first: at most `limit` (capped at
    /// [`MAX_INSTANCES_PER_LISTING`]), only those with status letter `status` when given.
    pub async fn job_instances(
        &self,
        jobid: i64,
        limit: u32,
        status: Option<&str>,
    ) -> Result<Vec<JobInstance>, StoreError> {
        let limit = i64::from(limit.min(MAX_INSTANCES_PER_LISTING));
        let rows: Vec<InstanceRow> = match status {
            Some(status) => {
                let sql = format!(
                    "SELECT {INSTANCE_COLUMNS} FROM job_instance WHERE jobid = $1 \
                     AND jobstatus = $3 ORDER BY job_instanceid DESC LIMIT $2"
                );
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(jobid)
                    .bind(limit)
                    .bind(status)
                    .fetch_all(pool)
                    .await?)
            }
            None => {
                let sql = format!(
                    "SELECT {INSTANCE_COLUMNS} FROM job_instance WHERE jobid = $1 \
                     ORDER BY job_instanceid DESC LIMIT $2"
                );
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(jobid)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?)
            }
        };
        Ok(rows.into_iter().map(JobInstance::from).collect())
    }
}
