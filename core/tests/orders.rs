//! Orders in the system database: creation with keys and unique keys, reading, searching,
//! and every operator action with the statuses it accepts and refuses, including refusal
//! while a workflow process owns the order. Every body runs on SQLite and, when
//! `SLUICE_TEST_PG_URL` names a PostgreSQL server, on PostgreSQL too (a database of its own,
//! dropped afterwards), as in `store.rs`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_core::options::SystemDb;
use sluice_core::store::orders::StatusChange;
use sluice_core::store::{
    NewOrder, OpenedSession, OrderError, OrderQuery, SessionHolder, SessionStatus, Store,
};

#[macro_use]
mod common;

on_both_backends!(
    create_validates_and_stores,
    unique_keys_are_scoped,
    concurrent_duplicates_admit_exactly_one,
    status_actions_and_their_preconditions,
    owned_orders_are_left_alone,
    skip_step_releases_the_order,
    data_keys_and_notes,
    search_filters,
);

/// WF 1.0 and 2.0 (keys order_id, customer; steps one, two, three), OTHER 1.0 (key
/// order_id) and the disabled OFF 1.0.
async fn fixture(db: &SystemDb) -> Result<Store> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    store
        .execute_sql(
            "INSERT INTO workflows (workflowid, name, version, keylist, created, modified) VALUES \
                 (1, 'WF', '1.0', '[\"order_id\", \"customer\"]', 0, 0), \
                 (2, 'WF', '2.0', '[\"order_id\", \"customer\"]', 0, 0), \
                 (3, 'OTHER', '1.0', '[\"order_id\"]', 0, 0); \
             INSERT INTO workflows (workflowid, name, version, keylist, enabled, created, modified) \
                 VALUES (4, 'OFF', '1.0', '[]', FALSE, 0, 0); \
             INSERT INTO steps (stepid, name, version, created, modified) \
                 VALUES (1, 'one', '1.0', 0, 0), (2, 'two', '1.0', 0, 0), (3, 'three', '1.0', 0, 0); \
             INSERT INTO workflow_steps (workflowid, stepid, position) \
                 VALUES (1, 1, 0), (1, 2, 1), (1, 3, 2);",
        )
        .await?;
    Ok(store)
}

fn order(value: serde_json::Value) -> NewOrder {
    let mut value = value;
    if value.get("staticdata").is_none() {
        value["staticdata"] = json!({"n": 1});
    }
    serde_json::from_value(value).unwrap_or_else(|e| panic!("a test order: {e}"))
}

async fn create(store: &Store, value: serde_json::Value) -> Result<i64> {
    Ok(store.create_order(&order(value)).await?)
}

/// The error code of a result that must be an error.
fn code<T: std::fmt::Debug>(result: Result<T, OrderError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

async fn status_of(store: &Store, id: i64) -> Result<String> {
    Ok(store
        .get_order(id)
        .await?
        .with_context(|| format!("order {id}"))?
        .workflowstatus_code)
}

async fn set_status(store: &Store, id: i64, status: &str) -> Result<()> {
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET workflowstatus = '{status}' WHERE workflow_instanceid = {id}"
        ))
        .await?;
    Ok(())
}

fn letters(change: &StatusChange) -> (&str, &str) {
    (change.old.as_str(), change.new.as_str())
}

async fn create_validates_and_stores(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let id = create(
        &store,
        json!({"name": "WF", "staticdata": {"a": [1, 2]}, "dynamicdata": {"d": true},
               "orderkeys": {"order_id": "A-1", "customer": ["c1", "c2"]}}),
    )
    .await?;
    let info = store.get_order(id).await?.context("created order")?;
    assert_eq!(
        (info.workflowid, info.version.as_str()),
        (2, "2.0"),
        "no version: the newest"
    );
    assert_eq!(
        (
            info.workflowstatus.as_str(),
            info.workflowstatus_code.as_str()
        ),
        ("READY", "Y")
    );
    assert_eq!(
        (info.priority, info.sessionid, info.scheduled),
        (500, 0, None)
    );
    assert_eq!(info.staticdata, json!({"a": [1, 2]}));
    assert_eq!(info.dynamicdata, json!({"d": true}));
    assert_eq!(info.keys["order_id"], vec!["A-1"]);
    assert_eq!(info.keys["customer"], vec!["c1", "c2"]);
    assert!(info.steps.is_empty() && info.errors.is_empty() && info.notes.is_empty());

    let v1 = create(
        &store,
        json!({"name": "WF", "version": "1.0", "priority": 0}),
    )
    .await?;
    let info = store.get_order(v1).await?.context("v1 order")?;
    assert_eq!((info.workflowid, info.priority), (1, 0));

    // Keys the workflow does not declare are refused, naming the key and the allowed ones.
    let err = store
        .create_order(&order(
            json!({"name": "WF", "orderkeys": {"colour": "red"}}),
        ))
        .await
        .err()
        .context("bad key")?;
    assert_eq!(err.code(), "ORDER-KEY-ERROR");
    let text = err.to_string();
    assert!(
        text.contains("colour") && text.contains("order_id, customer"),
        "{text}"
    );
    assert_eq!(
        code(
            store
                .create_order(&order(
                    json!({"name": "OTHER", "global_unique_key": {"customer": "x"}})
                ))
                .await
        ),
        "ORDER-KEY-ERROR",
        "unique keys are order keys too"
    );

    for priority in [-1, 1000] {
        let r = store
            .create_order(&order(json!({"name": "WF", "priority": priority})))
            .await;
        assert_eq!(code(r), "ORDER-DATA-ERROR", "priority {priority}");
    }
    let r = store
        .create_order(&order(json!({"name": "WF", "status": "ERROR"})))
        .await;
    assert_eq!(code(r), "ORDER-DATA-ERROR");
    let r = store
        .create_order(&order(json!({"name": "WF", "staticdata": [1]})))
        .await;
    assert_eq!(code(r), "ORDER-DATA-ERROR");
    let r = store
        .create_order(&order(
            json!({"name": "WF", "parent_workflow_instanceid": 9999}),
        ))
        .await;
    assert_eq!(code(r), "ORDER-DATA-ERROR");
    let r = store.create_order(&order(json!({"name": "NOPE"}))).await;
    assert_eq!(code(r), "UNKNOWN-WORKFLOW");
    let r = store
        .create_order(&order(json!({"name": "WF", "version": "9.9"})))
        .await;
    assert_eq!(code(r), "UNKNOWN-WORKFLOW");
    let r = store.create_order(&order(json!({"name": "OFF"}))).await;
    assert_eq!(
        code(r),
        "STATUS-ERROR",
        "a disabled workflow takes no orders"
    );

    let now = sluice_core::now_ms();
    let future = now + 3_600_000;
    let scheduled = create(&store, json!({"name": "WF", "scheduled": future})).await?;
    let info = store.get_order(scheduled).await?.context("scheduled")?;
    assert_eq!(
        (info.workflowstatus_code.as_str(), info.scheduled),
        ("S", Some(future))
    );
    let past = create(&store, json!({"name": "WF", "scheduled": now - 1000})).await?;
    assert_eq!(status_of(&store, past).await?, "Y");
    let blocked = create(
        &store,
        json!({"name": "WF", "status": "BLOCKED", "scheduled": future}),
    )
    .await?;
    let info = store.get_order(blocked).await?.context("blocked")?;
    assert_eq!(info.workflowstatus, "BLOCKED");
    assert_eq!(info.status_orig.as_deref(), Some("SCHEDULED"));
    let child = create(
        &store,
        json!({"name": "WF", "parent_workflow_instanceid": id}),
    )
    .await?;
    assert_eq!(
        store
            .get_order(child)
            .await?
            .context("child")?
            .parent_workflow_instanceid,
        Some(id)
    );

    assert!(store.get_order(9999).await?.is_none());
    store.close().await;
    Ok(())
}

async fn unique_keys_are_scoped(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let orders_now = || store.query_i64("SELECT COUNT(*) FROM workflow_instance");

    // Global: no other order of any workflow may have it.
    let first = create(
        &store,
        json!({"name": "WF", "global_unique_key": {"order_id": 1}}),
    )
    .await?;
    let before = orders_now().await?;
    let err = store
        .create_order(&order(
            json!({"name": "OTHER", "global_unique_key": {"order_id": "1"}}),
        ))
        .await
        .err()
        .context("global duplicate")?;
    match &err {
        OrderError::DuplicateKey {
            key,
            value,
            existing,
        } => assert_eq!(
            (key.as_str(), value.as_str(), *existing),
            ("order_id", "1", first)
        ),
        other => bail!("expected DuplicateKey, got {other:?}"),
    }
    assert_eq!(err.code(), "DUPLICATE-ORDER-KEY");
    assert!(err.to_string().contains(&first.to_string()), "{err}");
    assert_eq!(
        orders_now().await?,
        before,
        "the refused order left nothing behind"
    );
    let info = store.get_order(first).await?.context("first")?;
    assert_eq!(
        info.keys["order_id"],
        vec!["1"],
        "unique keys are order keys"
    );

    // Workflow-specific: every version of the name, but not other workflows.
    let v1 = create(
        &store,
        json!({"name": "WF", "version": "1.0", "workflow_specific_unique_key": {"order_id": "2"}}),
    )
    .await?;
    let r = store
        .create_order(&order(
            json!({"name": "WF", "version": "2.0", "workflow_specific_unique_key": {"order_id": "2"}}),
        ))
        .await;
    assert!(
        matches!(r, Err(OrderError::DuplicateKey { existing, .. }) if existing == v1),
        "{r:?}"
    );
    create(
        &store,
        json!({"name": "OTHER", "workflow_specific_unique_key": {"order_id": "2"}}),
    )
    .await?;

    // Workflow (version) unique: this version only.
    let wf1 = create(
        &store,
        json!({"name": "WF", "version": "1.0", "workflow_unique_key": {"order_id": "3"}}),
    )
    .await?;
    create(
        &store,
        json!({"name": "WF", "version": "2.0", "workflow_unique_key": {"order_id": "3"}}),
    )
    .await?;
    create(
        &store,
        json!({"name": "OTHER", "workflow_unique_key": {"order_id": "3"}}),
    )
    .await?;
    let r = store
        .create_order(&order(
            json!({"name": "WF", "version": "1.0", "workflow_unique_key": {"order_id": "3"}}),
        ))
        .await;
    assert!(
        matches!(r, Err(OrderError::DuplicateKey { existing, .. }) if existing == wf1),
        "{r:?}"
    );
    // A plain order key is not unique.
    create(
        &store,
        json!({"name": "WF", "orderkeys": {"order_id": "1"}}),
    )
    .await?;
    store.close().await;
    Ok(())
}

async fn concurrent_duplicates_admit_exactly_one(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_order(&order(json!({
                    "name": "WF",
                    "staticdata": {"attempt": i},
                    "global_unique_key": {"order_id": "race"},
                    "workflow_unique_key": {"customer": "race"},
                })))
                .await
        }));
    }
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(id) => won.push(id),
            Err(OrderError::DuplicateKey { existing, .. }) => lost.push(existing),
            Err(other) => bail!("unexpected: {other}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one create succeeds: {won:?}");
    assert_eq!(lost.len(), 7);
    assert!(
        lost.iter().all(|e| *e == won[0]),
        "every loser names the winner: {lost:?} vs {won:?}"
    );
    assert_eq!(
        store
            .query_i64("SELECT COUNT(*) FROM workflow_instance")
            .await?,
        Some(1)
    );
    store.close().await;
    Ok(())
}

async fn status_actions_and_their_preconditions(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let new = || create(&store, json!({"name": "WF", "version": "1.0"}));

    // retry: ERROR, RETRY, ASYNC-WAITING -> RETRY at once; its failed steps too.
    let id = new().await?;
    set_status(&store, id, "E").await?;
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET business_error = TRUE, retry_trigger = 99 \
                 WHERE workflow_instanceid = {id}; \
             INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) \
                 VALUES ({id}, 1, 0, 'C', 1, 1), ({id}, 2, 0, 'E', 1, 1)"
        ))
        .await?;
    let change = store.retry_order(id).await?;
    assert_eq!(letters(&change), ("E", "R"));
    assert_eq!(
        (change.name.as_str(), change.version.as_str()),
        ("WF", "1.0")
    );
    let info = store.get_order(id).await?.context("retried")?;
    assert_eq!((info.retry_trigger, info.business_error), (None, false));
    let steps: Vec<_> = info
        .steps
        .iter()
        .map(|s| (s.stepid, s.stepstatus_code.as_str()))
        .collect();
    assert_eq!(steps, vec![(1, "C"), (2, "R")]);
    for status in ["R", "A"] {
        set_status(&store, id, status).await?;
        assert_eq!(store.retry_order(id).await?.new, "R", "from {status}");
    }
    for status in ["Y", "S", "C", "X", "B", "W", "V", "N"] {
        set_status(&store, id, status).await?;
        let err = store.retry_order(id).await.err().context(status)?;
        assert_eq!(err.code(), "STATUS-ERROR", "retry from {status}");
        assert!(
            err.to_string()
                .contains(sluice_core::store::status_name(status)),
            "{err}"
        );
    }

    // cancel / uncancel restore the original status.
    for status in ["Y", "S", "E", "R", "W", "A", "V", "N"] {
        set_status(&store, id, status).await?;
        assert_eq!(letters(&store.cancel_order(id).await?), (status, "X"));
        let info = store.get_order(id).await?.context("canceled")?;
        assert_eq!(info.workflowstatus, "CANCELED");
        assert_eq!(
            info.status_orig.as_deref(),
            Some(sluice_core::store::status_name(status))
        );
        assert_eq!(letters(&store.uncancel_order(id).await?), ("X", status));
        assert_eq!(
            store
                .get_order(id)
                .await?
                .context("uncanceled")?
                .status_orig,
            None
        );
    }
    for status in ["C", "B", "X"] {
        set_status(&store, id, status).await?;
        assert_eq!(
            code(store.cancel_order(id).await),
            "STATUS-ERROR",
            "cancel {status}"
        );
    }
    set_status(&store, id, "Y").await?;
    assert_eq!(code(store.uncancel_order(id).await), "STATUS-ERROR");

    // block / unblock, the same way.
    set_status(&store, id, "E").await?;
    assert_eq!(letters(&store.block_order(id).await?), ("E", "B"));
    assert_eq!(
        code(store.cancel_order(id).await),
        "STATUS-ERROR",
        "unblock first"
    );
    assert_eq!(code(store.block_order(id).await), "STATUS-ERROR");
    assert_eq!(letters(&store.unblock_order(id).await?), ("B", "E"));
    assert_eq!(code(store.unblock_order(id).await), "STATUS-ERROR");
    set_status(&store, id, "C").await?;
    assert_eq!(code(store.block_order(id).await), "STATUS-ERROR");

    // set error
    for status in ["Y", "S", "R", "A", "V", "W", "N"] {
        set_status(&store, id, status).await?;
        assert_eq!(letters(&store.set_order_error(id).await?), (status, "E"));
    }
    for status in ["E", "C", "X", "B"] {
        set_status(&store, id, status).await?;
        assert_eq!(
            code(store.set_order_error(id).await),
            "STATUS-ERROR",
            "{status}"
        );
    }

    // reschedule: the future makes it SCHEDULED, the past or none READY; a blocked order
    // stays blocked and unblocks to the new status.
    let future = sluice_core::now_ms() + 3_600_000;
    set_status(&store, id, "Y").await?;
    assert_eq!(
        letters(&store.reschedule_order(id, Some(future)).await?),
        ("Y", "S")
    );
    assert_eq!(
        store.get_order(id).await?.context("rescheduled")?.scheduled,
        Some(future)
    );
    assert_eq!(
        letters(&store.reschedule_order(id, Some(1)).await?),
        ("S", "Y")
    );
    assert_eq!(
        letters(&store.reschedule_order(id, None).await?),
        ("Y", "Y")
    );
    assert_eq!(
        store.get_order(id).await?.context("unscheduled")?.scheduled,
        None
    );
    store.block_order(id).await?;
    assert_eq!(
        letters(&store.reschedule_order(id, Some(future)).await?),
        ("B", "B")
    );
    assert_eq!(letters(&store.unblock_order(id).await?), ("B", "S"));
    for status in ["E", "R", "C", "X"] {
        set_status(&store, id, status).await?;
        assert_eq!(
            code(store.reschedule_order(id, None).await),
            "STATUS-ERROR",
            "{status}"
        );
    }
    set_status(&store, id, "E").await?;
    store.block_order(id).await?;
    assert_eq!(
        code(store.reschedule_order(id, None).await),
        "STATUS-ERROR",
        "blocked from ERROR"
    );

    // priority: any status, in range.
    set_status(&store, id, "C").await?;
    assert_eq!(letters(&store.set_order_priority(id, 7).await?), ("C", "C"));
    assert_eq!(store.get_order(id).await?.context("prio")?.priority, 7);
    assert_eq!(
        code(store.set_order_priority(id, 1000).await),
        "INVALID-ARGUMENT"
    );
    assert_eq!(
        code(store.set_order_priority(id, -1).await),
        "INVALID-ARGUMENT"
    );

    // An order that does not exist.
    for result in [
        store.retry_order(9999).await,
        store.cancel_order(9999).await,
        store.uncancel_order(9999).await,
        store.block_order(9999).await,
        store.unblock_order(9999).await,
        store.set_order_error(9999).await,
        store.reschedule_order(9999, None).await,
        store.set_order_priority(9999, 1).await,
        store.skip_step(9999, 1, 0).await,
        store.update_dynamic_data(9999, &json!({})).await,
    ] {
        assert_eq!(code(result), "WORKFLOW-ORDER-NOT-FOUND");
    }
    assert_eq!(
        code(store.add_order_note(9999, "ops", "x").await),
        "WORKFLOW-ORDER-NOT-FOUND"
    );
    store.close().await;
    Ok(())
}

/// Marks an order as held by a workflow process of a live session, as a claim does.
async fn own(store: &Store, session: i64, id: i64, status: &str) -> Result<()> {
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET sessionid = {session}, owner = 'workflow-WF-1.0', \
                 workflowstatus = '{status}' WHERE workflow_instanceid = {id}"
        ))
        .await?;
    Ok(())
}

async fn owned_orders_are_left_alone(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let holder = SessionHolder {
        pid: std::process::id(),
        host: "test".into(),
    };
    let OpenedSession { session, .. } = store.open_session("orders", &holder).await?;
    let id = create(&store, json!({"name": "WF", "version": "1.0"})).await?;
    // IN-PROGRESS as claimed; ERROR as a process may hold it between two of its commits:
    // ownership alone must stop every action, whatever the status says.
    for status in ["I", "E"] {
        own(&store, session.id, id, status).await?;
        let before = store.get_order(id).await?.context("owned")?;
        let keys = BTreeMap::from([("customer".to_string(), vec!["z".to_string()])]);
        let refused: Vec<(&str, Result<StatusChange, OrderError>)> = vec![
            ("retry", store.retry_order(id).await),
            ("cancel", store.cancel_order(id).await),
            ("uncancel", store.uncancel_order(id).await),
            ("block", store.block_order(id).await),
            ("unblock", store.unblock_order(id).await),
            ("set-error", store.set_order_error(id).await),
            ("reschedule", store.reschedule_order(id, None).await),
            ("skip", store.skip_step(id, 2, 0).await),
            (
                "dynamic data",
                store.update_dynamic_data(id, &json!({"x": 1})).await,
            ),
            ("keys", store.set_order_keys(id, &keys).await),
        ];
        for (what, result) in refused {
            let err = result
                .err()
                .with_context(|| format!("{what} of an order owned in {status}"))?;
            assert_eq!(err.code(), "STATUS-ERROR", "{what}");
            let text = err.to_string();
            assert!(
                text.contains(sluice_core::store::status_name(status))
                    && text.contains("workflow-WF-1.0"),
                "{what}: {text}"
            );
        }
        let after = store.get_order(id).await?.context("still owned")?;
        assert_eq!(
            (
                after.workflowstatus_code.as_str(),
                after.sessionid,
                &after.owner,
                after.modified
            ),
            (status, session.id, &before.owner, before.modified),
            "nothing was written"
        );
        assert_eq!(after.dynamicdata, before.dynamicdata);
        assert!(after.steps.is_empty() && after.keys.is_empty());
    }

    // Priority and notes never race the engine, so they are allowed.
    store.set_order_priority(id, 1).await?;
    store.add_order_note(id, "ops", "looking at it").await?;

    // Once the process releases it, the same actions work.
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET sessionid = 0, owner = NULL, workflowstatus = 'E' \
             WHERE workflow_instanceid = {id}"
        ))
        .await?;
    assert_eq!(store.retry_order(id).await?.new, "R");
    store
        .close_session(session, SessionStatus::Complete)
        .await?;
    store.close().await;
    Ok(())
}

async fn skip_step_releases_the_order(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let new = || create(&store, json!({"name": "WF", "version": "1.0"}));

    // The only failed step skipped: the order goes on at once as RETRY.
    let id = new().await?;
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET workflowstatus = 'E', business_error = TRUE \
                 WHERE workflow_instanceid = {id}; \
             INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, created, modified) \
                 VALUES ({id}, 0, 'E', 1, 1); \
             INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) \
                 VALUES ({id}, 1, 0, 'C', 1, 1), ({id}, 2, 0, 'E', 1, 1)"
        ))
        .await?;
    assert_eq!(letters(&store.skip_step(id, 2, 0).await?), ("E", "R"));
    let info = store.get_order(id).await?.context("skipped")?;
    let two = info
        .steps
        .iter()
        .find(|s| s.stepid == 2)
        .context("step two")?;
    assert_eq!((two.stepstatus_code.as_str(), two.skip), ("C", true));
    assert!(two.completed.is_some());
    assert_eq!((info.retry_trigger, info.business_error), (None, false));
    assert_eq!(
        store
            .query_i64(&format!(
                "SELECT COUNT(*) FROM segment_instance WHERE workflow_instanceid = {id} \
                 AND segmentstatus = 'R'"
            ))
            .await?,
        Some(1)
    );
    // A complete step cannot be skipped, nor a step the workflow does not have.
    set_status(&store, id, "E").await?;
    let err = store
        .skip_step(id, 1, 0)
        .await
        .err()
        .context("complete step")?;
    assert_eq!(err.code(), "STATUS-ERROR");
    assert!(err.to_string().contains("COMPLETE"), "{err}");
    assert_eq!(code(store.skip_step(id, 99, 0).await), "INVALID-ARGUMENT");
    assert_eq!(code(store.skip_step(id, 2, -1).await), "INVALID-ARGUMENT");

    // Another step still failed: the order stays in ERROR.
    let id = new().await?;
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET workflowstatus = 'E' WHERE workflow_instanceid = {id}; \
             INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) \
                 VALUES ({id}, 2, 0, 'E', 1, 1), ({id}, 3, 0, 'R', 1, 1)"
        ))
        .await?;
    assert_eq!(letters(&store.skip_step(id, 2, 0).await?), ("E", "E"));
    assert_eq!(letters(&store.skip_step(id, 3, 0).await?), ("E", "R"));

    // A step that never ran is recorded as skipped; a READY order stays READY.
    let id = new().await?;
    assert_eq!(letters(&store.skip_step(id, 3, 0).await?), ("Y", "Y"));
    let info = store.get_order(id).await?.context("pre-skipped")?;
    assert_eq!(info.steps.len(), 1);
    assert_eq!(
        (
            info.steps[0].stepid,
            info.steps[0].stepstatus.as_str(),
            info.steps[0].skip
        ),
        (3, "COMPLETE", true)
    );
    for status in ["C", "X", "B"] {
        set_status(&store, id, status).await?;
        assert_eq!(
            code(store.skip_step(id, 2, 0).await),
            "STATUS-ERROR",
            "{status}"
        );
    }
    store.close().await;
    Ok(())
}

async fn data_keys_and_notes(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let id = create(
        &store,
        json!({"name": "WF", "version": "1.0", "dynamicdata": {"keep": 1, "drop": 2, "change": 3},
               "orderkeys": {"order_id": "o1", "customer": "c1"}}),
    )
    .await?;
    store
        .update_dynamic_data(
            id,
            &json!({"drop": null, "change": {"deep": true}, "new": "x"}),
        )
        .await?;
    assert_eq!(
        store.get_order(id).await?.context("data")?.dynamicdata,
        json!({"keep": 1, "change": {"deep": true}, "new": "x"})
    );
    assert_eq!(
        code(store.update_dynamic_data(id, &json!([1])).await),
        "INVALID-ARGUMENT"
    );

    let keys = BTreeMap::from([("customer".to_string(), vec!["c2".to_string(), "c3".into()])]);
    store.set_order_keys(id, &keys).await?;
    let info = store.get_order(id).await?.context("keys")?;
    assert_eq!(info.keys["customer"], vec!["c2", "c3"]);
    assert_eq!(info.keys["order_id"], vec!["o1"], "keys not named are kept");
    let bad = BTreeMap::from([("colour".to_string(), vec!["red".to_string()])]);
    assert_eq!(
        code(store.set_order_keys(id, &bad).await),
        "ORDER-KEY-ERROR"
    );
    let none = BTreeMap::from([("customer".to_string(), Vec::new())]);
    store.set_order_keys(id, &none).await?;
    assert!(!store
        .get_order(id)
        .await?
        .context("keys")?
        .keys
        .contains_key("customer"));

    // Notes: any status, in order.
    set_status(&store, id, "C").await?;
    let first = store.add_order_note(id, "ops", "first").await?;
    let second = store.add_order_note(id, "alice", "second").await?;
    assert!(second > first);
    let notes = store.get_order(id).await?.context("notes")?.notes;
    let shown: Vec<_> = notes
        .iter()
        .map(|n| (n.username.as_str(), n.note.as_str()))
        .collect();
    assert_eq!(shown, vec![("ops", "first"), ("alice", "second")]);
    assert_eq!(
        code(store.add_order_note(id, "ops", "  ").await),
        "INVALID-ARGUMENT"
    );
    store.close().await;
    Ok(())
}

async fn search_filters(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let a = create(
        &store,
        json!({"name": "WF", "version": "1.0", "orderkeys": {"order_id": "k1"}}),
    )
    .await?;
    let b = create(
        &store,
        json!({"name": "WF", "version": "2.0", "orderkeys": {"order_id": "k2"}}),
    )
    .await?;
    let c = create(
        &store,
        json!({"name": "OTHER", "orderkeys": {"order_id": "k1"}}),
    )
    .await?;
    let d = create(
        &store,
        json!({"name": "WF", "version": "2.0", "orderkeys": {"customer": "k1"}}),
    )
    .await?;
    set_status(&store, b, "E").await?;
    set_status(&store, c, "C").await?;
    store
        .execute_sql(&format!(
            "UPDATE workflow_instance SET created = 1000 WHERE workflow_instanceid = {a}; \
             UPDATE workflow_instance SET created = 2000 WHERE workflow_instanceid = {b}"
        ))
        .await?;
    let ids = |q: OrderQuery| {
        let store = store.clone();
        async move {
            Ok::<_, anyhow::Error>(
                store
                    .search_orders(&q)
                    .await?
                    .into_iter()
                    .map(|o| o.workflow_instanceid)
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(
        ids(OrderQuery::default()).await?,
        vec![d, c, b, a],
        "newest first"
    );
    let wf = |name: &str| OrderQuery {
        name: Some(name.into()),
        ..Default::default()
    };
    assert_eq!(ids(wf("WF")).await?, vec![d, b, a]);
    assert_eq!(
        ids(OrderQuery {
            version: Some("2.0".into()),
            ..wf("WF")
        })
        .await?,
        vec![d, b]
    );
    assert_eq!(
        ids(OrderQuery {
            status: vec!["error".into(), "C".into()],
            ..Default::default()
        })
        .await?,
        vec![c, b]
    );
    assert_eq!(
        ids(OrderQuery {
            keyname: Some("order_id".into()),
            keyvalue: Some("k1".into()),
            ..Default::default()
        })
        .await?,
        vec![c, a],
        "by key and value"
    );
    assert_eq!(
        ids(OrderQuery {
            keyname: Some("customer".into()),
            ..Default::default()
        })
        .await?,
        vec![d],
        "by key name alone"
    );
    assert_eq!(
        ids(OrderQuery {
            mindate: Some(1000),
            maxdate: Some(2000),
            ..Default::default()
        })
        .await?,
        vec![b, a]
    );
    assert_eq!(
        ids(OrderQuery {
            limit: Some(2),
            offset: Some(1),
            ..Default::default()
        })
        .await?,
        vec![c, b]
    );
    let summary = store
        .search_orders(&OrderQuery {
            status: vec!["ERROR".into()],
            ..Default::default()
        })
        .await?;
    assert_eq!(
        (summary[0].name.as_str(), summary[0].workflowstatus.as_str()),
        ("WF", "ERROR")
    );
    for bad in [
        OrderQuery {
            status: vec!["DONE".into()],
            ..Default::default()
        },
        OrderQuery {
            limit: Some(10_001),
            ..Default::default()
        },
        OrderQuery {
            keyvalue: Some("k1".into()),
            ..Default::default()
        },
        OrderQuery {
            version: Some("1.0".into()),
            ..Default::default()
        },
    ] {
        assert!(store.search_orders(&bad).await.is_err(), "{bad:?}");
    }
    store.close().await;
    Ok(())
}
