//! What a job process and the master's job verbs read and write (`store/jobs.rs`): the job
//! and its code, starting a run only when the job may run (and never two at once), how a run
//! ends, state data, schedules and expiry. Every body runs on SQLite and, when
//! `SLUICE_TEST_PG_URL` names a PostgreSQL server, on PostgreSQL too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_core::options::SystemDb;
use sluice_core::schedule::{Cron, Schedule};
use sluice_core::store::jobs::{Begun, JobError, JobOutcome, JobOwner, Refusal};
use sluice_core::store::{Session, SessionHolder, SessionStatus, Store};

#[macro_use]
mod common;

on_both_backends!(
    load_job_program_reads_definition_and_code,
    begin_refuses_a_job_that_may_not_run,
    runs_never_overlap,
    deactivation_refuses_every_later_begin,
    finish_records_the_outcome_and_state_data,
    schedules_expiry_and_listings,
    a_dead_process_run_becomes_crash,
);

const NET: &str = "job-CLEANUP-1.0";
const SOURCE: &str =
    "from job import QorusJob\n\n\nclass Cleanup(QorusJob):\n    def run(self):\n        pass\n";

struct Fixture {
    store: Store,
    session: Session,
    /// CLEANUP 1.0 (cron `*/5 * * * *`) and 2.0 (every 30 s).
    v1: i64,
    v2: i64,
}

impl Fixture {
    fn owner(&self) -> JobOwner<'_> {
        JobOwner {
            session: self.session.id,
            network_id: NET,
        }
    }

    async fn begin(&self, jobid: i64) -> Result<Begun> {
        Ok(self.store.begin_job_instance(jobid, self.owner()).await?)
    }

    /// Starts a run that must start.
    async fn started(&self, jobid: i64) -> Result<i64> {
        match self.begin(jobid).await? {
            Begun::Started { job_instanceid, .. } => Ok(job_instanceid),
            Begun::Refused(why) => bail!("refused: {why}"),
        }
    }

    async fn refused(&self, jobid: i64) -> Result<Refusal> {
        match self.begin(jobid).await? {
            Begun::Started { job_instanceid, .. } => {
                bail!("started instance {job_instanceid}, expected a refusal")
            }
            Begun::Refused(why) => Ok(why),
        }
    }

    async fn count(&self, sql: &str) -> Result<i64> {
        self.store
            .query_i64(sql)
            .await?
            .with_context(|| format!("no value from {sql}"))
    }
}

async fn fixture(db: &SystemDb) -> Result<Fixture> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    let holder = SessionHolder {
        pid: std::process::id(),
        host: "test".into(),
    };
    let session = store.open_session("jobs-test", &holder).await?.session;
    let source = SOURCE.replace('\'', "''");
    store
        .execute_sql(&format!(
            "INSERT INTO code (code_hash, lang, source, created) VALUES ('h1', 'python', '{source}', 0);
             INSERT INTO jobs (name, version, description, lang, class_name, code_hash, minute, hour,
                 day, month, wday, created, modified)
                 VALUES ('CLEANUP', '1.0', 'tidies up', 'python', 'Cleanup', 'h1', '*/5', '*', '*',
                 '*', '*', 0, 0);
             INSERT INTO jobs (name, version, lang, class_name, code_hash, recurring, run_skipped,
                 created, modified)
                 VALUES ('CLEANUP', '2.0', 'python', 'Cleanup', 'h1', 30, TRUE, 0, 0);"
        ))
        .await?;
    let v1 = store
        .query_i64("SELECT jobid FROM jobs WHERE version = '1.0'")
        .await?
        .context("1.0")?;
    let v2 = store
        .query_i64("SELECT jobid FROM jobs WHERE version = '2.0'")
        .await?
        .context("2.0")?;
    Ok(Fixture {
        store,
        session,
        v1,
        v2,
    })
}

async fn load_job_program_reads_definition_and_code(db: &SystemDb) -> Result<()> {
    let f = fixture(db).await?;
    let program = f
        .store
        .load_job_program("CLEANUP", "1.0")
        .await?
        .context("CLEANUP 1.0")?;
    assert_eq!(program.source, SOURCE);
    assert_eq!(program.class_name, "Cleanup");
    assert_eq!(program.code_hash, "h1");
    let job = &program.job;
    assert_eq!(
        (job.jobid, job.active, job.enabled, job.run_skipped),
        (f.v1, true, true, false)
    );
    assert_eq!(job.description.as_deref(), Some("tidies up"));
    assert_eq!(job.schedule_line().as_deref(), Some("*/5 * * * *"));
    assert_eq!(job.schedule()?.describe(), "*/5 * * * *");
    assert!(f.store.load_job_program("CLEANUP", "9.9").await?.is_none());

    // Without a version: the newest loaded one.
    let newest = f.store.find_job("CLEANUP", None).await?.context("newest")?;
    assert_eq!(newest.jobid, f.v2);
    assert_eq!(newest.recurring, Some(30));
    assert!(newest.run_skipped);
    assert_eq!(
        newest.schedule()?,
        Schedule::Recurring(Duration::from_secs(30))
    );
    assert_eq!(newest.schedule_line(), None);
    assert_eq!(
        f.store.job_by_id(f.v1).await?.context("by id")?.version,
        "1.0"
    );
    let all: Vec<String> = f
        .store
        .list_jobs()
        .await?
        .into_iter()
        .map(|j| format!("{}:{}", j.name, j.version))
        .collect();
    assert_eq!(all, ["CLEANUP:1.0", "CLEANUP:2.0"]);

    // A job whose code is gone is an error, not a job without code.
    f.store
        .execute_sql("UPDATE jobs SET code_hash = NULL WHERE version = '2.0'")
        .await?;
    let err = f
        .store
        .load_job_program("CLEANUP", "2.0")
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Invalid(_)), "{err}");
    Ok(())
}

async fn begin_refuses_a_job_that_may_not_run(db: &SystemDb) -> Result<()> {
    let f = fixture(db).await?;
    let sql = |s: &'static str| {
        let store = f.store.clone();
        async move { store.execute_sql(s).await }
    };

    assert!(f.store.set_job_active(f.v1, false).await?);
    assert_eq!(f.refused(f.v1).await?, Refusal::Inactive);
    assert!(f.store.set_job_active(f.v1, true).await?);

    sql("UPDATE jobs SET enabled = FALSE WHERE version = '1.0'").await?;
    assert_eq!(f.refused(f.v1).await?, Refusal::Disabled);
    sql("UPDATE jobs SET enabled = TRUE WHERE version = '1.0'").await?;

    let past = sluice_core::now_ms() - 1_000;
    f.store.set_job_expiry(f.v1, Some(past)).await?;
    assert_eq!(
        f.refused(f.v1).await?,
        Refusal::Expired { expiry_date: past }
    );
    f.store
        .set_job_expiry(f.v1, Some(sluice_core::now_ms() + 3_600_000))
        .await?;

    // A disabled group refuses; DEFAULT (enabled) beside it does not matter.
    sql(
        "INSERT INTO groups (name, description, enabled) VALUES ('NIGHTLY', 'x', FALSE);
         INSERT INTO group_members (group_name, object_type, object_id)
             SELECT 'NIGHTLY', 'job', jobid FROM jobs WHERE version = '1.0';
         INSERT INTO group_members (group_name, object_type, object_id)
             SELECT 'DEFAULT', 'job', jobid FROM jobs WHERE version = '1.0';",
    )
    .await?;
    assert_eq!(
        f.refused(f.v1).await?,
        Refusal::GroupDisabled {
            group: "NIGHTLY".into()
        }
    );
    // The other version is not in the group.
    let other = f.started(f.v2).await?;
    sql("UPDATE groups SET enabled = TRUE WHERE name = 'NIGHTLY'").await?;

    // A session that is not live stamps nothing.
    let dead = JobOwner {
        session: 0,
        network_id: NET,
    };
    assert_eq!(
        f.store.begin_job_instance(f.v1, dead).await?,
        Begun::Refused(Refusal::SessionNotActive { session: 0 })
    );
    assert_eq!(
        f.store.begin_job_instance(424242, f.owner()).await?,
        Begun::Refused(Refusal::NotFound)
    );

    // Everything fixed: it runs.
    let id = f.started(f.v1).await?;
    let row = f.store.job_instance(id).await?.context("instance")?;
    assert_eq!(row.jobstatus, "I");
    assert_eq!(row.sessionid, f.session.id);
    assert_eq!(row.owner.as_deref(), Some(NET));
    assert_ne!(id, other);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM job_instance").await?,
        2,
        "refusals insert nothing"
    );
    Ok(())
}

async fn runs_never_overlap(db: &SystemDb) -> Result<()> {
    let f = Arc::new(fixture(db).await?);
    let first = f.started(f.v1).await?;
    assert_eq!(
        f.refused(f.v1).await?,
        Refusal::Running {
            job_instanceid: first
        }
    );
    assert!(
        f.store
            .finish_job_instance(first, NET, &JobOutcome::Complete)
            .await?
    );

    // Many begins at once: exactly one starts.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move { f.begin(f.v1).await }));
    }
    let mut started = 0;
    for task in tasks {
        match task.await?? {
            Begun::Started { .. } => started += 1,
            Begun::Refused(Refusal::Running { .. }) => {}
            Begun::Refused(other) => bail!("unexpected refusal: {other}"),
        }
    }
    assert_eq!(started, 1);
    assert_eq!(
        f.count("SELECT COUNT(*) FROM job_instance WHERE jobstatus = 'I'")
            .await?,
        1
    );
    Ok(())
}

/// The race Qorus leaves open: a job deactivated just before its trigger still runs it.
/// Here a run either committed before the deactivation committed, or is refused.
async fn deactivation_refuses_every_later_begin(db: &SystemDb) -> Result<()> {
    let f = Arc::new(fixture(db).await?);
    let stop = Arc::new(AtomicBool::new(false));
    // A process running the job as fast as it can.
    let runner = {
        let (f, stop) = (f.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if let Begun::Started { job_instanceid, .. } = f.begin(f.v1).await? {
                    runs += 1;
                    f.store
                        .finish_job_instance(job_instanceid, NET, &JobOutcome::Complete)
                        .await?;
                }
            }
            anyhow::Ok(runs)
        })
    };
    // Let it run a while, then deactivate while it keeps trying.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.store.set_job_active(f.v1, false).await?);
    let committed = sluice_core::now_ms();
    assert!(
        !f.store.set_job_active(f.v1, false).await?,
        "already inactive"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let runs = runner.await??;
    assert!(runs > 0, "the job ran before its deactivation");
    let late = f
        .count(&format!(
            "SELECT COUNT(*) FROM job_instance WHERE started > {committed}"
        ))
        .await?;
    assert_eq!(late, 0, "no run started after the deactivation committed");
    assert_eq!(f.refused(f.v1).await?, Refusal::Inactive);
    Ok(())
}

async fn finish_records_the_outcome_and_state_data(db: &SystemDb) -> Result<()> {
    let f = fixture(db).await?;
    let state = f.store.job_state_data(f.v1).await?;
    assert_eq!((state.data, state.persistent), (None, None));

    let first = f.started(f.v1).await?;
    f.store
        .save_job_state_data(f.v1, &json!({"cursor": 10}))
        .await?;
    f.store
        .save_job_persistent_state_data(f.v1, &json!({"runs": 1}))
        .await?;
    assert!(
        f.store
            .save_job_info(first, NET, &json!({"removed": 3}))
            .await?
    );
    assert!(
        !f.store
            .save_job_info(first, "job-OTHER-1.0", &json!({}))
            .await?,
        "only the owner writes"
    );
    assert!(
        !f.store
            .finish_job_instance(first, "job-OTHER-1.0", &JobOutcome::Complete)
            .await?
    );
    let error = JobOutcome::Error {
        error: "KeyError".into(),
        description: Some("'x'".into()),
        info: Some(json!({"at": "line 3"})),
    };
    assert!(f.store.finish_job_instance(first, NET, &error).await?);
    assert!(
        !f.store.finish_job_instance(first, NET, &error).await?,
        "a run ends once"
    );
    let row = f.store.job_instance(first).await?.context("first")?;
    assert_eq!(row.jobstatus, "E");
    assert_eq!(row.error.as_deref(), Some("KeyError"));
    assert_eq!(row.error_description.as_deref(), Some("'x'"));
    assert_eq!(row.error_info, Some(json!({"at": "line 3"})));
    assert_eq!(row.info, Some(json!({"removed": 3})));
    assert!(row.completed.is_some_and(|c| c >= row.started));
    let job = f.store.job_by_id(f.v1).await?.context("job")?;
    assert_eq!(job.last_executed, Some(row.started));
    assert_eq!(job.last_executed_job_instanceid, Some(first));

    // An ERROR keeps the state data for the next run ...
    let state = f.store.job_state_data(f.v1).await?;
    assert_eq!(state.data, Some(json!({"cursor": 10})));
    let second = f.started(f.v1).await?;
    assert!(
        f.store
            .finish_job_instance(second, NET, &JobOutcome::Complete)
            .await?
    );
    // ... a COMPLETE clears it; persistent data stays.
    let state = f.store.job_state_data(f.v1).await?;
    assert_eq!(state.data, None);
    assert_eq!(state.persistent, Some(json!({"runs": 1})));
    let row = f.store.job_instance(second).await?.context("second")?;
    assert_eq!((row.jobstatus.as_str(), row.error), ("C", None));
    let job = f.store.job_by_id(f.v1).await?.context("job")?;
    assert_eq!(job.last_executed_job_instanceid, Some(second));
    Ok(())
}

async fn schedules_expiry_and_listings(db: &SystemDb) -> Result<()> {
    let f = fixture(db).await?;
    f.store.set_job_next_trigger(f.v1, Some(12345)).await?;
    assert_eq!(
        f.store.job_by_id(f.v1).await?.context("job")?.next_trigger,
        Some(12345)
    );
    let cron = Schedule::Cron(Cron::parse_line("0 3 * * mon-fri")?);
    assert!(f.store.set_job_schedule(f.v1, &cron).await?);
    let job = f.store.job_by_id(f.v1).await?.context("job")?;
    assert_eq!(job.schedule_line().as_deref(), Some("0 3 * * mon-fri"));
    assert_eq!((job.recurring, job.next_trigger), (None, None));
    assert!(
        f.store
            .set_job_schedule(f.v1, &Schedule::Recurring(Duration::from_secs(5)))
            .await?
    );
    let job = f.store.job_by_id(f.v1).await?.context("job")?;
    assert_eq!((job.schedule_line(), job.recurring), (None, Some(5)));
    let zero = f
        .store
        .set_job_schedule(f.v1, &Schedule::Recurring(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(zero.code(), "INVALID-ARGUMENT");
    assert!(!f.store.set_job_schedule(999, &cron).await?);

    let now = sluice_core::now_ms();
    assert!(f.store.set_job_expiry(f.v2, Some(now - 1)).await?);
    assert_eq!(f.store.expired_job_ids(now).await?, vec![f.v2]);
    assert!(f.store.job_by_id(f.v2).await?.context("v2")?.expired(now));
    assert!(f.store.set_job_expiry(f.v2, None).await?);
    assert!(f.store.expired_job_ids(now).await?.is_empty());

    let mut ids = Vec::new();
    for i in 0..5 {
        let id = f.started(f.v1).await?;
        let outcome = if i % 2 == 0 {
            JobOutcome::Complete
        } else {
            JobOutcome::Error {
                error: "E".into(),
                description: None,
                info: None,
            }
        };
        f.store.finish_job_instance(id, NET, &outcome).await?;
        ids.push(id);
    }
    let listed: Vec<i64> = f
        .store
        .job_instances(f.v1, 3, None)
        .await?
        .iter()
        .map(|i| i.job_instanceid)
        .collect();
    assert_eq!(
        listed,
        vec![ids[4], ids[3], ids[2]],
        "newest first, limited"
    );
    let errors: Vec<i64> = f
        .store
        .job_instances(f.v1, 100, Some("E"))
        .await?
        .iter()
        .map(|i| i.job_instanceid)
        .collect();
    assert_eq!(errors, vec![ids[3], ids[1]]);
    assert!(f.store.job_instances(f.v2, 100, None).await?.is_empty());
    Ok(())
}

/// The supervisor's recovery of a dead job process finds its run by owner; the job runs
/// again afterwards, and the dead run's late finish changes nothing.
async fn a_dead_process_run_becomes_crash(db: &SystemDb) -> Result<()> {
    let f = fixture(db).await?;
    let id = f.started(f.v1).await?;
    let mut progress = |_| {};
    let other = f
        .store
        .recover_process(f.session.id, "job-OTHER-1.0", 100, &mut progress)
        .await?;
    assert_eq!(other.job_instances, 0, "another process's recovery");
    let counts = f
        .store
        .recover_process(f.session.id, NET, 100, &mut progress)
        .await?;
    assert_eq!(counts.job_instances, 1);
    let row = f.store.job_instance(id).await?.context("instance")?;
    assert_eq!(row.jobstatus, "Z");
    assert!(
        !f.store
            .finish_job_instance(id, NET, &JobOutcome::Complete)
            .await?
    );
    assert_eq!(
        f.store
            .job_instance(id)
            .await?
            .context("instance")?
            .jobstatus,
        "Z"
    );
    let again = f.started(f.v1).await?;
    assert!(again > id);
    f.store
        .close_session(f.session, SessionStatus::Complete)
        .await?;
    Ok(())
}
