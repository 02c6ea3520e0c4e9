//! The system database, end to end: schema versions, the application session and crash
//! recovery, auditing. Every body runs on SQLite (a file in a temporary directory) and, when
//! `SLUICE_TEST_PG_URL` names a PostgreSQL server, on PostgreSQL too, in a database of its own
//! that is dropped afterwards.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use sluice_core::options::SystemDb;
use sluice_core::store::{
    AuditEvent, AuditTarget, Backend, OpenedSession, RecoveryCounts, SchemaState, SessionError,
    SessionHolder, SessionStatus, Store, StoreError, SLUICE_TABLES,
};

#[macro_use]
mod common;

on_both_backends!(
    schema_lifecycle,
    newer_schema_is_refused,
    damaged_schema_is_detected,
    one_session_per_instance_key,
    dropped_session_is_recovered_next_time,
    recovery_moves_only_the_dead_sessions_work,
    recovery_runs_in_batches,
    process_recovery_touches_only_that_process,
    adopted_work_survives_session_recovery,
    audit_events_get_increasing_ids,
    clock_skew_only_on_postgres,
);

async fn fresh_store(db: &SystemDb) -> Result<Store> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    Ok(store)
}

fn holder(pid: u32, host: &str) -> SessionHolder {
    SessionHolder {
        pid,
        host: host.to_string(),
    }
}

/// Opens a session after a simulated crash. A PostgreSQL server frees a dead connection's
/// advisory lock a moment after the socket closes, so `Held` is retried briefly.
async fn open_after_crash(store: &Store, key: &str, who: &SessionHolder) -> Result<OpenedSession> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.open_session(key, who).await {
            Err(SessionError::Held { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return Ok(other?),
        }
    }
}

async fn count(store: &Store, sql: &str) -> Result<i64> {
    store
        .query_i64(sql)
        .await?
        .with_context(|| format!("no value from {sql}"))
}

async fn schema_lifecycle(db: &SystemDb) -> Result<()> {
    let store = Store::open(db, true).await?;
    let known = Store::known_schema_version();
    assert_eq!(store.schema_state().await?, SchemaState::Empty);
    assert_eq!(store.schema_create().await?, known);
    assert_eq!(
        store.schema_state().await?,
        SchemaState::Current { version: known }
    );
    assert_eq!(store.ensure_schema_current().await?, known);
    assert_eq!(store.schema_upgrade().await?, Vec::<i64>::new());

    // The table list the store drops and checks is exactly what the migrations create.
    let tables_sql = match store.backend() {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
             AND name NOT IN ('sqlite_sequence', '_sqlx_migrations')"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() \
             AND tablename <> '_sqlx_migrations'"
        }
    };
    assert_eq!(count(&store, tables_sql).await?, SLUICE_TABLES.len() as i64);
    for table in SLUICE_TABLES {
        count(&store, &format!("SELECT COUNT(*) FROM {table}")).await?;
    }
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM groups WHERE name = 'DEFAULT'").await?,
        1
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sessions WHERE sessionid = 0").await?,
        1
    );

    let err = store.schema_create().await.err().context("second create")?;
    assert!(
        matches!(err, StoreError::SchemaNotEmpty { .. }),
        "unexpected: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("sluice schema upgrade") && text.contains("sluice schema verify"),
        "{text}"
    );

    store.schema_drop().await?;
    assert_eq!(store.schema_state().await?, SchemaState::Empty);
    assert_eq!(store.schema_create().await?, known);
    store.close().await;
    Ok(())
}

async fn newer_schema_is_refused(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let known = Store::known_schema_version();
    let future = known + 1;
    store
        .execute_sql(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             SELECT {future}, 'from a newer Sluice', success, checksum, 0 \
             FROM _sqlx_migrations WHERE version = {known}"
        ))
        .await?;
    assert_eq!(
        store.schema_state().await?,
        SchemaState::Newer {
            version: future,
            known
        }
    );
    let err = store
        .schema_upgrade()
        .await
        .err()
        .context("upgrade of newer")?;
    assert!(
        matches!(err, StoreError::SchemaMismatch { .. }),
        "unexpected: {err}"
    );
    assert!(
        err.to_string().contains(&format!("version {future}")),
        "{err}"
    );
    let err = store
        .ensure_schema_current()
        .await
        .err()
        .context("newer is not current")?;
    assert!(err.to_string().contains("newer Sluice"), "{err}");
    Ok(())
}

async fn damaged_schema_is_detected(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    store
        .execute_sql("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 1")
        .await?;
    let state = store.schema_state().await?;
    assert!(
        matches!(&state, SchemaState::Damaged { reason } if reason.contains("did not complete")),
        "{state:?}"
    );
    assert!(store.schema_upgrade().await.is_err());

    store.execute_sql("DROP TABLE _sqlx_migrations").await?;
    let state = store.schema_state().await?;
    assert!(
        matches!(&state, SchemaState::Damaged { reason } if reason.contains("no migration")),
        "{state:?}"
    );
    let err = store
        .schema_create()
        .await
        .err()
        .context("create over tables")?;
    assert!(
        matches!(err, StoreError::SchemaNotEmpty { .. }),
        "unexpected: {err}"
    );

    // drop clears even a damaged schema.
    store.schema_drop().await?;
    assert_eq!(store.schema_state().await?, SchemaState::Empty);
    Ok(())
}

#[tokio::test]
async fn missing_sqlite_file_names_the_fix() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("absent.db");
    let err = Store::open(&SystemDb::Sqlite { path: path.clone() }, false)
        .await
        .err()
        .context("opening a missing file must fail")?;
    assert!(
        matches!(err, StoreError::Connect { .. }),
        "unexpected: {err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("does not exist") && text.contains("sluice schema create"),
        "{text}"
    );
    assert!(!path.exists(), "open without create made the file");
    Ok(())
}

async fn one_session_per_instance_key(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let mut first = store
        .open_session("inst-a", &holder(4242, "host-a"))
        .await?;
    assert!(first.crashed.is_empty());
    let first_id = first.session.id;
    assert!(first_id > 0);
    let opened = store.session_info(first_id).await?.context("new row")?;
    assert_eq!(opened.status, SessionStatus::Active);
    assert_eq!((opened.pid, opened.host.as_str()), (4242, "host-a"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.session_heartbeat(&mut first.session).await?;
    let beat = store.session_info(first_id).await?.context("row")?;
    assert!(beat.heartbeat_ms > opened.heartbeat_ms);

    // Another store (as another process would have) with the same key is refused.
    let other_store = Store::open(db, false).await?;
    match other_store
        .open_session("inst-a", &holder(777, "host-b"))
        .await
    {
        Err(SessionError::Held {
            instance_key,
            session_id,
            pid,
            host,
            since,
        }) => {
            assert_eq!(instance_key, "inst-a");
            assert_eq!((session_id, pid, host.as_str()), (first_id, 4242, "host-a"));
            assert!(since.contains('T') && since.ends_with('Z'), "{since}");
        }
        other => bail!("expected Held, got {other:?}"),
    }
    let err = store
        .open_session("inst-a", &holder(777, "host-b"))
        .await
        .err()
        .context("same store, same key")?;
    let text = err.to_string();
    assert!(text.contains("4242") && text.contains("host-a"), "{text}");

    let b = other_store
        .open_session("inst b/with odd chars", &holder(778, "host-b"))
        .await?;
    assert!(b.crashed.is_empty());
    other_store
        .close_session(b.session, SessionStatus::Complete)
        .await?;

    store
        .close_session(first.session, SessionStatus::Complete)
        .await?;
    let info = store
        .session_info(first_id)
        .await?
        .context("closed session row")?;
    assert_eq!(info.status, SessionStatus::Complete);
    assert!(info.completed_ms.is_some());

    let again = other_store
        .open_session("inst-a", &holder(779, "host-b"))
        .await?;
    assert!(again.crashed.is_empty(), "{:?}", again.crashed);
    assert!(again.session.id > first_id);
    other_store
        .close_session(again.session, SessionStatus::Complete)
        .await?;
    Ok(())
}

async fn dropped_session_is_recovered_next_time(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let opened = store.open_session("inst", &holder(1001, "host-x")).await?;
    let dead_id = opened.session.id;
    let started = store
        .session_info(dead_id)
        .await?
        .context("session row")?
        .started_ms;
    // No close: the lock goes with the Session, the row stays ACTIVE, as after a crash.
    drop(opened);

    let next = open_after_crash(&store, "inst", &holder(1002, "host-y")).await?;
    assert_eq!(next.crashed.len(), 1, "{:?}", next.crashed);
    let crashed = &next.crashed[0];
    assert_eq!(
        (
            crashed.id,
            crashed.pid,
            crashed.host.as_str(),
            crashed.started_ms
        ),
        (dead_id, 1001, "host-x", started)
    );
    let counts = store.recover_session(dead_id, 100, &mut |_| {}).await?;
    assert_eq!(counts, RecoveryCounts::default());
    let info = store.session_info(dead_id).await?.context("dead row")?;
    assert_eq!(info.status, SessionStatus::Recovered);
    assert_eq!(info.recovered_by, Some(next.session.id));
    assert!(info.completed_ms.is_some());

    store
        .close_session(next.session, SessionStatus::Complete)
        .await?;
    let third = store.open_session("inst", &holder(1003, "host-y")).await?;
    assert!(third.crashed.is_empty(), "{:?}", third.crashed);
    store
        .close_session(third.session, SessionStatus::Complete)
        .await?;
    Ok(())
}

/// One workflow with steps 1..=3 and one job, for order fixtures.
async fn define_interfaces(store: &Store) -> Result<()> {
    store
        .execute_sql(
            "INSERT INTO workflows (workflowid, name, version, created, modified) \
                 VALUES (1, 'WF', '1.0', 0, 0); \
             INSERT INTO steps (stepid, name, version, created, modified) \
                 VALUES (1, 'one', '1.0', 0, 0), (2, 'two', '1.0', 0, 0), (3, 'three', '1.0', 0, 0); \
             INSERT INTO jobs (jobid, name, version, created, modified) \
                 VALUES (1, 'JOB', '1.0', 0, 0);",
        )
        .await?;
    Ok(())
}

/// Orders `ids` owned by `session` in status `status`: segment 0 in `status`, segment 1
/// COMPLETE; step 1 COMPLETE, step 2 and array step 3 (elements 0 and 1) in `status`.
async fn insert_orders(
    store: &Store,
    ids: std::ops::RangeInclusive<i64>,
    session: i64,
    status: &str,
) -> Result<()> {
    let mut orders = Vec::new();
    let mut segments = Vec::new();
    let mut steps = Vec::new();
    for id in ids {
        orders.push(format!("({id}, 1, '{status}', {session}, 1, 1, 1)"));
        segments.push(format!("({id}, 0, '{status}', 1, 1), ({id}, 1, 'C', 1, 1)"));
        steps.push(format!(
            "({id}, 1, 0, 'C', 1, 1), ({id}, 2, 0, '{status}', 1, 1), \
             ({id}, 3, 0, '{status}', 1, 1), ({id}, 3, 1, '{status}', 1, 1)"
        ));
    }
    store
        .execute_sql(&format!(
            "INSERT INTO workflow_instance (workflow_instanceid, workflowid, workflowstatus, \
                 sessionid, started, created, modified) VALUES {}; \
             INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, \
                 created, modified) VALUES {}; \
             INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, \
                 modified) VALUES {};",
            orders.join(", "),
            segments.join(", "),
            steps.join(", ")
        ))
        .await?;
    Ok(())
}

async fn insert_job_instances(
    store: &Store,
    ids: std::ops::RangeInclusive<i64>,
    session: i64,
    status: &str,
) -> Result<()> {
    let rows: Vec<String> = ids
        .map(|id| format!("({id}, 1, '{status}', {session}, 1)"))
        .collect();
    store
        .execute_sql(&format!(
            "INSERT INTO job_instance (job_instanceid, jobid, jobstatus, sessionid, started) \
             VALUES {}",
            rows.join(", ")
        ))
        .await?;
    Ok(())
}

async fn recovery_moves_only_the_dead_sessions_work(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    define_interfaces(&store).await?;
    let doomed = store.open_session("inst", &holder(1, "h")).await?;
    let dead = doomed.session.id;
    let live = store.open_session("other", &holder(2, "h")).await?;
    let alive = live.session.id;

    insert_orders(&store, 1..=20, dead, "I").await?; // in progress: to RETRY
    insert_orders(&store, 21..=25, dead, "E").await?; // owned, not in progress
    insert_orders(&store, 26..=30, 0, "C").await?; // finished, unowned
    insert_orders(&store, 31..=35, alive, "I").await?; // the live session's
    insert_job_instances(&store, 1..=4, dead, "I").await?;
    insert_job_instances(&store, 5..=6, dead, "C").await?;
    insert_job_instances(&store, 7..=9, alive, "I").await?;
    drop(doomed);

    let next = open_after_crash(&store, "inst", &holder(3, "h")).await?;
    assert_eq!(
        next.crashed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![dead]
    );
    let mut calls = Vec::new();
    let counts = store
        .recover_session(dead, 1000, &mut |c| calls.push(c))
        .await?;
    assert_eq!(
        counts,
        RecoveryCounts {
            orders: 20,
            segments: 20,
            steps: 60,
            job_instances: 4
        }
    );
    assert_eq!(calls.last(), Some(&counts));

    let expect = [
        // The dead session owns nothing any more.
        (
            format!("SELECT COUNT(*) FROM workflow_instance WHERE sessionid = {dead}"),
            0,
        ),
        (
            "SELECT COUNT(*) FROM workflow_instance WHERE workflow_instanceid <= 20 \
             AND workflowstatus = 'R' AND sessionid = 0"
                .into(),
            20,
        ),
        (
            "SELECT COUNT(*) FROM segment_instance WHERE workflow_instanceid <= 20 \
             AND segmentid = 0 AND segmentstatus = 'R'"
                .into(),
            20,
        ),
        (
            "SELECT COUNT(*) FROM step_instance WHERE workflow_instanceid <= 20 \
             AND stepstatus = 'R'"
                .into(),
            60,
        ),
        // Rows that were not IN-PROGRESS keep their status.
        (
            "SELECT COUNT(*) FROM segment_instance WHERE segmentid = 1 AND segmentstatus = 'C'"
                .into(),
            35,
        ),
        (
            "SELECT COUNT(*) FROM step_instance WHERE stepid = 1 AND stepstatus = 'C'".into(),
            35,
        ),
        (
            "SELECT COUNT(*) FROM workflow_instance WHERE workflow_instanceid BETWEEN 21 AND 25 \
             AND workflowstatus = 'E' AND sessionid = 0"
                .into(),
            5,
        ),
        (
            "SELECT COUNT(*) FROM step_instance WHERE workflow_instanceid BETWEEN 21 AND 25 \
             AND stepstatus = 'E'"
                .into(),
            15,
        ),
        (
            "SELECT COUNT(*) FROM workflow_instance WHERE workflow_instanceid BETWEEN 26 AND 30 \
             AND workflowstatus = 'C' AND sessionid = 0"
                .into(),
            5,
        ),
        // The live session's work is untouched.
        (
            format!(
                "SELECT COUNT(*) FROM workflow_instance WHERE workflow_instanceid > 30 \
                 AND workflowstatus = 'I' AND sessionid = {alive}"
            ),
            5,
        ),
        (
            "SELECT COUNT(*) FROM step_instance WHERE workflow_instanceid > 30 \
             AND stepstatus = 'I'"
                .into(),
            15,
        ),
        (
            "SELECT COUNT(*) FROM segment_instance WHERE workflow_instanceid > 30 \
             AND segmentstatus = 'I'"
                .into(),
            5,
        ),
        // Job instances: the dead session's running ones crashed; others as they were.
        (
            "SELECT COUNT(*) FROM job_instance WHERE job_instanceid <= 4 AND jobstatus = 'Z' \
             AND sessionid = 0 AND completed IS NOT NULL"
                .into(),
            4,
        ),
        (
            format!(
                "SELECT COUNT(*) FROM job_instance WHERE job_instanceid IN (5, 6) \
                 AND jobstatus = 'C' AND sessionid = {dead}"
            ),
            2,
        ),
        (
            format!(
                "SELECT COUNT(*) FROM job_instance WHERE job_instanceid >= 7 \
                 AND jobstatus = 'I' AND sessionid = {alive}"
            ),
            3,
        ),
    ];
    for (sql, want) in &expect {
        assert_eq!(count(&store, sql).await?, *want, "{sql}");
    }
    let info = store.session_info(dead).await?.context("dead row")?;
    assert_eq!(info.status, SessionStatus::Recovered);
    assert_eq!(info.recovered_by, Some(next.session.id));
    let live_info = store.session_info(alive).await?.context("live row")?;
    assert_eq!(live_info.status, SessionStatus::Active);

    // Running it again (as after an interrupted recovery) changes nothing.
    let mut called = false;
    let again = store
        .recover_session(dead, 1000, &mut |_| called = true)
        .await?;
    assert_eq!(again, RecoveryCounts::default());
    assert!(!called);
    for (sql, want) in &expect {
        assert_eq!(count(&store, sql).await?, *want, "after rerun: {sql}");
    }

    store
        .close_session(live.session, SessionStatus::Complete)
        .await?;
    store
        .close_session(next.session, SessionStatus::Complete)
        .await?;
    Ok(())
}

async fn recovery_runs_in_batches(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    define_interfaces(&store).await?;
    let doomed = store.open_session("inst", &holder(1, "h")).await?;
    let dead = doomed.session.id;
    insert_orders(&store, 1..=95, dead, "I").await?;
    insert_job_instances(&store, 1..=25, dead, "I").await?;
    drop(doomed);
    let next = open_after_crash(&store, "inst", &holder(2, "h")).await?;

    let mut seen: Vec<RecoveryCounts> = Vec::new();
    let counts = store
        .recover_session(dead, 10, &mut |c| seen.push(c))
        .await?;
    let want = RecoveryCounts {
        orders: 95,
        segments: 95,
        steps: 285,
        job_instances: 25,
    };
    assert_eq!(counts, want);
    // 10 order batches (the last of 5), then 3 job batches (the last of 5).
    assert_eq!(seen.len(), 13, "{seen:?}");
    assert_eq!(seen[0].orders, 10);
    assert_eq!(seen[0].steps, 30);
    assert_eq!(seen[9].orders, 95);
    assert_eq!(seen[10].job_instances, 10);
    assert!(
        seen.windows(2).all(|w| w[0].orders <= w[1].orders
            && w[0].job_instances <= w[1].job_instances
            && w[0] != w[1]),
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&want));
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM step_instance WHERE stepstatus = 'I'"
        )
        .await?,
        0
    );
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM workflow_instance WHERE sessionid = {dead}")
        )
        .await?,
        0
    );
    store
        .close_session(next.session, SessionStatus::Complete)
        .await?;
    Ok(())
}

async fn audit_events_get_increasing_ids(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    let event = |code: i64| AuditEvent {
        code,
        user_event: None,
        reason: Some("internal call".into()),
        who: "Qorus".into(),
        source: "system".into(),
        info1: Some(format!("info {code}")),
        info2: None,
    };
    let first = store.insert_audit_event(&event(1)).await?;
    let second = store.insert_audit_event(&event(2)).await?;
    let third = store
        .insert_audit_event_for(
            &event(3),
            &AuditTarget {
                related_audit_eventid: Some(second),
                workflow_instanceid: Some(77),
                ..AuditTarget::default()
            },
        )
        .await?;
    ensure!(first < second && second < third, "{first} {second} {third}");
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT audit_event_code FROM audit_events WHERE audit_eventid = {third} \
                 AND related_audit_eventid = {second} AND workflow_instanceid = 77 \
                 AND who = 'Qorus' AND info1 = 'info 3' AND created > 0"
            )
        )
        .await?,
        3
    );
    Ok(())
}

async fn clock_skew_only_on_postgres(db: &SystemDb) -> Result<()> {
    let store = Store::open(db, true).await?;
    let skew = store.clock_skew_ms().await?;
    match store.backend() {
        Backend::Sqlite => assert_eq!(skew, None),
        // The server runs on this machine in the tests.
        Backend::Postgres => {
            let skew = skew.context("PostgreSQL reports a skew")?;
            assert!(skew.abs() < 5_000, "{skew}");
        }
    }
    Ok(())
}

/// Marks orders (and job instances) as worked on by `owner`.
async fn set_owner(
    store: &Store,
    table: &str,
    id_col: &str,
    ids: std::ops::RangeInclusive<i64>,
    owner: &str,
) -> Result<()> {
    store
        .execute_sql(&format!(
            "UPDATE {table} SET owner = '{owner}' WHERE {id_col} BETWEEN {} AND {}",
            ids.start(),
            ids.end()
        ))
        .await?;
    Ok(())
}

async fn process_recovery_touches_only_that_process(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    define_interfaces(&store).await?;
    let live = store.open_session("inst", &holder(1, "h")).await?;
    let session = live.session.id;
    insert_orders(&store, 1..=12, session, "I").await?;
    set_owner(
        &store,
        "workflow_instance",
        "workflow_instanceid",
        1..=7,
        "wf-dead",
    )
    .await?;
    set_owner(
        &store,
        "workflow_instance",
        "workflow_instanceid",
        8..=12,
        "wf-alive",
    )
    .await?;
    insert_job_instances(&store, 1..=3, session, "I").await?;
    set_owner(&store, "job_instance", "job_instanceid", 1..=2, "wf-dead").await?;
    set_owner(&store, "job_instance", "job_instanceid", 3..=3, "wf-alive").await?;

    let mut batches = 0;
    let counts = store
        .recover_process(session, "wf-dead", 3, &mut |_| batches += 1)
        .await?;
    assert_eq!(
        counts,
        RecoveryCounts {
            orders: 7,
            segments: 7,
            steps: 21,
            job_instances: 2
        }
    );
    assert!(
        batches >= 3,
        "7 orders in batches of 3: {batches} progress calls"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'R' \
             AND sessionid = 0 AND owner IS NULL AND workflow_instanceid <= 7"
        )
        .await?,
        7
    );
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'I' \
             AND sessionid = {session} AND owner = 'wf-alive'"
            )
        )
        .await?,
        5,
        "another process's work is untouched"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM step_instance WHERE stepstatus = 'I'"
        )
        .await?,
        15,
        "the other process's steps are still in progress"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM job_instance WHERE jobstatus = 'Z'"
        )
        .await?,
        2
    );
    // Idempotent: nothing left to do the second time.
    let again = store
        .recover_process(session, "wf-dead", 3, &mut |_| {})
        .await?;
    assert_eq!(again, RecoveryCounts::default());
    store
        .close_session(live.session, SessionStatus::Complete)
        .await?;
    Ok(())
}

async fn adopted_work_survives_session_recovery(db: &SystemDb) -> Result<()> {
    let store = fresh_store(db).await?;
    define_interfaces(&store).await?;
    let doomed = store.open_session("inst", &holder(1, "h")).await?;
    let dead = doomed.session.id;
    insert_orders(&store, 1..=10, dead, "I").await?;
    set_owner(
        &store,
        "workflow_instance",
        "workflow_instanceid",
        1..=4,
        "wf-adopted",
    )
    .await?;
    set_owner(
        &store,
        "workflow_instance",
        "workflow_instanceid",
        5..=10,
        "wf-gone",
    )
    .await?;
    drop(doomed);

    let next = open_after_crash(&store, "inst", &holder(2, "h")).await?;
    let now = next.session.id;
    // The new master adopted wf-adopted: its work moves to the new session first...
    let moved = store.adopt_work(dead, now, "wf-adopted").await?;
    assert_eq!(moved, (4, 0));
    // ...so recovering the dead session returns only the dead process's work to RETRY.
    let counts = store.recover_session(dead, 1000, &mut |_| {}).await?;
    assert_eq!(counts.orders, 6);
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'I' \
             AND sessionid = {now} AND owner = 'wf-adopted'"
            )
        )
        .await?,
        4
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'R'"
        )
        .await?,
        6
    );
    store
        .close_session(next.session, SessionStatus::Complete)
        .await?;
    Ok(())
}
