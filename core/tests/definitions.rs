//! `sluice load` into the system database: services and jobs are created, recognised as
//! unchanged, updated in place (keeping what belongs to their runs) and deleted, on SQLite
//! and, when `SLUICE_TEST_PG_URL` names a server, PostgreSQL.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use sluice_core::interfaces;
use sluice_core::options::SystemDb;
use sluice_core::store::{Store, StoreError};

#[macro_use]
mod common;

on_both_backends!(services_load_update_and_delete, jobs_load_update_and_delete);

/// Rows of a query on either backend.
macro_rules! rows {
    ($store:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
        let store: &Store = $store;
        let sql: &str = $sql;
        match (store.sqlite_pool(), store.pg_pool()) {
            (Some(pool), _) => sqlx::query_as(sql)$(.bind($bind))*.fetch_all(pool).await,
            (None, Some(pool)) => sqlx::query_as(sql)$(.bind($bind))*.fetch_all(pool).await,
            (None, None) => unreachable!("a store has a pool"),
        }
    }};
}

async fn fresh_store(db: &SystemDb) -> Result<Store> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    Ok(store)
}

async fn count(store: &Store, sql: &str) -> Result<i64> {
    store
        .query_i64(sql)
        .await?
        .with_context(|| format!("no value from {sql}"))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Parses and loads the files; the report's lines.
async fn load(store: &Store, files: &[PathBuf]) -> Result<Vec<String>> {
    let loaded = interfaces::parse_files(files)?;
    ensure!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    Ok(store.load_definitions(&loaded).await?.lines)
}

/// The code hash's first 12 digits, as reports show it.
async fn short_hash(store: &Store, table: &str, name: &str) -> Result<String> {
    let hashes: Vec<(String,)> = rows!(
        store,
        &format!("SELECT code_hash FROM {table} WHERE name = $1"),
        name
    )?;
    let hash = &hashes.first().context("no such row")?.0;
    Ok(hash[..12].to_string())
}

const SERVICE_PY: &str = "from svc import QorusService\n\n\nclass Svc(QorusService):\n    pass\n";

/// serviceid, version, description, service_type, autostart, enabled, lang, class_name.
type ServiceColumns = (
    i64,
    String,
    Option<String>,
    String,
    bool,
    bool,
    String,
    String,
);

fn service_yaml(methods: &str, groups: &str) -> String {
    format!(
        "type: service\nname: SVC\nversion: 1.0\ndesc: a service\nservicetype: USER\n\
         lang: python\nbase-class-name: QorusService\nclass-name: Svc\ncode: svc.py\n\
         autostart: true\ngroups: {groups}\nmethods:\n{methods}"
    )
}

async fn services_load_update_and_delete(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let dir = tempfile::tempdir()?;
    write(dir.path(), "svc.py", SERVICE_PY)?;
    let methods = "  - name: echo\n    desc: returns its arguments\n\
                   \x20 - {name: info, lock: write, internal: true, write: true}\n";
    let file = write(
        dir.path(),
        "SVC-1.0.qsd.yaml",
        &service_yaml(methods, "[shop, ops]"),
    )?;

    let lines = load(&store, std::slice::from_ref(&file)).await?;
    let hash = short_hash(&store, "services", "SVC").await?;
    assert_eq!(
        lines,
        [format!(
            "created service SVC:1.0 (2 method(s), code {hash})"
        )]
    );
    let services: Vec<ServiceColumns> = rows!(
        &store,
        "SELECT serviceid, version, description, service_type, autostart, enabled, lang, \
         class_name FROM services WHERE name = 'SVC'"
    )?;
    let [(id, version, desc, service_type, autostart, enabled, lang, class)] = services.as_slice()
    else {
        panic!("one service row: {services:?}");
    };
    assert_eq!(
        (version.as_str(), desc.as_deref(), service_type.as_str()),
        ("1.0", Some("a service"), "USER")
    );
    assert!(*autostart && *enabled);
    assert_eq!((lang.as_str(), class.as_str()), ("python", "Svc"));
    let id = *id;
    let methods: Vec<(String, Option<String>, String, bool, bool)> = rows!(
        &store,
        "SELECT name, description, lock_type, internal, write FROM service_methods \
         WHERE serviceid = $1 ORDER BY name",
        id
    )?;
    assert_eq!(
        methods,
        [
            (
                "echo".to_string(),
                Some("returns its arguments".to_string()),
                "none".to_string(),
                false,
                false
            ),
            ("info".to_string(), None, "write".to_string(), true, true),
        ]
    );
    let members: Vec<(String,)> = rows!(
        &store,
        "SELECT group_name FROM group_members WHERE object_type = 'service' AND object_id = $1 \
         ORDER BY group_name",
        id
    )?;
    assert_eq!(members, [("ops".to_string(),), ("shop".to_string(),)]);
    let code: Vec<(String,)> = rows!(
        &store,
        "SELECT source FROM code WHERE code_hash = (SELECT code_hash FROM services \
         WHERE serviceid = $1)",
        id
    )?;
    assert_eq!(code, [(SERVICE_PY.to_string(),)]);

    // The same files again: nothing changes.
    let modified = count(&store, "SELECT modified FROM services").await?;
    let lines = load(&store, std::slice::from_ref(&file)).await?;
    assert_eq!(
        lines,
        [format!(
            "unchanged service SVC:1.0 (2 method(s), code {hash})"
        )]
    );
    assert_eq!(
        count(&store, "SELECT modified FROM services").await?,
        modified
    );

    // An update replaces the methods and groups and keeps the id and the state data.
    store
        .execute_sql(&format!(
            "INSERT INTO service_state_data (serviceid, data, modified) \
             VALUES ({id}, '{{\"n\": 3}}', 1)"
        ))
        .await?;
    let file = write(
        dir.path(),
        "SVC-1.0.qsd.yaml",
        &service_yaml("  - {name: info, lock: read}\n", "[ops]"),
    )?;
    let lines = load(&store, std::slice::from_ref(&file)).await?;
    assert_eq!(
        lines,
        [format!(
            "updated service SVC:1.0 (1 method(s), code {hash})"
        )]
    );
    let methods: Vec<(i64, String, String)> = rows!(
        &store,
        "SELECT serviceid, name, lock_type FROM service_methods"
    )?;
    assert_eq!(methods, [(id, "info".to_string(), "read".to_string())]);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM group_members WHERE object_type = 'service'"
        )
        .await?,
        1
    );
    assert_eq!(
        count(&store, "SELECT serviceid FROM service_state_data").await?,
        id
    );

    let listed: Vec<_> = store
        .list_definitions()
        .await?
        .into_iter()
        .map(|d| (d.kind, d.name, d.version))
        .collect();
    assert_eq!(
        listed,
        [("service".to_string(), "SVC".to_string(), "1.0".to_string())]
    );

    // Deleting takes its methods, state data and group memberships with it.
    assert!(store.delete_definition("service", "SVC", "1.0").await?);
    for table in [
        "services",
        "service_methods",
        "service_state_data",
        "group_members",
    ] {
        assert_eq!(
            count(&store, &format!("SELECT COUNT(*) FROM {table}")).await?,
            0,
            "{table}"
        );
    }
    assert!(!store.delete_definition("service", "SVC", "1.0").await?);
    store.close().await;
    Ok(())
}

const JOB_PY: &str =
    "from job import QorusJob\n\n\nclass Job(QorusJob):\n    def run(self):\n        pass\n";

fn job_yaml(name: &str, when: &str, extra: &str) -> String {
    format!(
        "type: job\nname: {name}\nversion: 1.0\ndesc: a job\nlang: python\n\
         base-class-name: QorusJob\nclass-name: Job\ncode: job.py\n{when}{extra}"
    )
}

const EVERY_5: &str =
    "schedule:\n  minutes: '*/5'\n  hours: '*'\n  days: '*'\n  months: '*'\n  dow: '*'\n";

type JobColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
    bool,
    Option<i64>,
);

async fn job_columns(store: &Store, name: &str) -> Result<JobColumns> {
    let rows: Vec<JobColumns> = rows!(
        store,
        "SELECT minute, hour, day, month, wday, recurring, active, run_skipped, expiry_date \
         FROM jobs WHERE name = $1",
        name
    )?;
    rows.into_iter().next().context("no such job")
}

async fn jobs_load_update_and_delete(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let dir = tempfile::tempdir()?;
    write(dir.path(), "job.py", JOB_PY)?;
    let cron = write(
        dir.path(),
        "CRON-1.0.qjob.yaml",
        &job_yaml(
            "CRON",
            EVERY_5,
            "expiry-date: 2027-01-01T00:00:00Z\ngroups: [ops]\n",
        ),
    )?;
    let every = write(
        dir.path(),
        "EVERY-1.0.qjob.yaml",
        &job_yaml(
            "EVERY",
            "recurring: 30\n",
            "active: false\nrun-skipped: true\n",
        ),
    )?;
    let files = [cron.clone(), every.clone()];

    let lines = load(&store, &files).await?;
    let hash = short_hash(&store, "jobs", "CRON").await?;
    assert_eq!(
        lines,
        [
            format!("created job CRON:1.0 (*/5 * * * *, code {hash})"),
            format!("created job EVERY:1.0 (every 30 s, code {hash})"),
        ]
    );
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        job_columns(&store, "CRON").await?,
        (
            some("*/5"),
            some("*"),
            some("*"),
            some("*"),
            some("*"),
            None,
            true,
            false,
            Some(1_798_761_600_000)
        )
    );
    assert_eq!(
        job_columns(&store, "EVERY").await?,
        (None, None, None, None, None, Some(30), false, true, None)
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM group_members WHERE object_type = 'job'"
        )
        .await?,
        1
    );
    // One copy of the code both jobs share.
    assert_eq!(count(&store, "SELECT COUNT(*) FROM code").await?, 1);

    // What the job engine wrote about its runs.
    let cron_id = count(&store, "SELECT jobid FROM jobs WHERE name = 'CRON'").await?;
    store
        .execute_sql(&format!(
            "UPDATE jobs SET last_executed = 123, last_executed_job_instanceid = 7, \
             next_trigger = 999 WHERE jobid = {cron_id}"
        ))
        .await?;

    // Unchanged: the computed next trigger stays.
    let lines = load(&store, &files).await?;
    assert_eq!(
        lines,
        [
            format!("unchanged job CRON:1.0 (*/5 * * * *, code {hash})"),
            format!("unchanged job EVERY:1.0 (every 30 s, code {hash})"),
        ]
    );
    assert_eq!(
        count(&store, "SELECT next_trigger FROM jobs WHERE name = 'CRON'").await?,
        999
    );

    // Updated from cron to recurring: the run history stays, the next trigger is cleared.
    let cron = write(
        dir.path(),
        "CRON-1.0.qjob.yaml",
        &job_yaml("CRON", "recurring: 60\n", "active: false\n"),
    )?;
    let lines = load(&store, std::slice::from_ref(&cron)).await?;
    assert_eq!(
        lines,
        [format!("updated job CRON:1.0 (every 60 s, code {hash})")]
    );
    assert_eq!(
        job_columns(&store, "CRON").await?,
        (None, None, None, None, None, Some(60), false, false, None)
    );
    let kept: Vec<(i64, Option<i64>, Option<i64>)> = rows!(
        &store,
        "SELECT jobid, last_executed, last_executed_job_instanceid FROM jobs \
         WHERE name = 'CRON'"
    )?;
    assert_eq!(kept, [(cron_id, Some(123), Some(7))]);
    assert_eq!(
        store
            .query_i64("SELECT next_trigger FROM jobs WHERE name = 'CRON'")
            .await?,
        None
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM group_members WHERE object_type = 'job'"
        )
        .await?,
        0
    );

    let listed: Vec<_> = store
        .list_definitions()
        .await?
        .into_iter()
        .map(|d| format!("{} {}:{}", d.kind, d.name, d.version))
        .collect();
    assert_eq!(listed, ["job CRON:1.0", "job EVERY:1.0"]);

    // A job that has run is kept, like a workflow with orders.
    store
        .execute_sql(&format!(
            "INSERT INTO job_instance (jobid, jobstatus, sessionid, started) \
             VALUES ({cron_id}, 'C', 0, 1)"
        ))
        .await?;
    match store.delete_definition("job", "CRON", "1.0").await {
        Err(StoreError::Invalid(message)) => assert_eq!(
            message,
            "job CRON:1.0 is still used (1 job instance(s)); nothing was deleted"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM jobs").await?, 2);

    // One that has not goes, with its state data.
    let every_id = count(&store, "SELECT jobid FROM jobs WHERE name = 'EVERY'").await?;
    store
        .execute_sql(&format!(
            "INSERT INTO job_state_data (jobid, data, modified) VALUES ({every_id}, '{{}}', 1)"
        ))
        .await?;
    assert!(store.delete_definition("job", "EVERY", "1.0").await?);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM jobs").await?, 1);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM job_state_data").await?,
        0
    );
    assert!(!store.delete_definition("job", "EVERY", "1.0").await?);
    store.close().await;
    Ok(())
}
