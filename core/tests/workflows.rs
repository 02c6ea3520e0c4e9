//! Workflows as the master's workflow verbs read and switch them (`store/workflows.rs`):
//! listings with order counts and groups, one workflow's graph and errors, `enabled` and
//! `autostart`. Every body runs on SQLite and, when `SLUICE_TEST_PG_URL` names a
//! PostgreSQL server, on PostgreSQL too.

use anyhow::{Context, Result};
use sluice_core::options::SystemDb;
use sluice_core::store::{NewOrder, Store};

#[macro_use]
mod common;

on_both_backends!(listings_count_orders_by_status, graph_errors_and_switches);

/// WF 1.0 (two steps, errors of its own) and 2.0 (in a disabled group), global errors.
async fn fixture(db: &SystemDb) -> Result<Store> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    store
        .execute_sql(
            "INSERT INTO workflows (workflowid, name, version, description, autostart, keylist, \
                 created, modified) VALUES (1, 'WF', '1.0', 'first', 1, '[\"id\"]', 0, 0), \
                 (2, 'WF', '2.0', NULL, 0, NULL, 0, 0), (3, 'OTHER', '1.0', NULL, 2, '[]', 0, 0);
             INSERT INTO steps (stepid, name, version, steptype, created, modified) \
                 VALUES (10, 'A', '1.0', 'NORMAL', 0, 0), (11, 'B', '1.0', 'NORMAL', 0, 0), \
                 (12, 'C', '1.0', 'NORMAL', 0, 0);
             INSERT INTO workflow_steps (workflowid, stepid, position, depends_on) \
                 VALUES (1, 12, 2, '[10, 11]'), (1, 10, 0, '[]'), (1, 11, 1, '[10]');
             INSERT INTO workflow_errors (workflowid, error, description, status, \
                 business_error, retry_delay_secs, level) \
                 VALUES (1, 'E1', 'own', 'R', TRUE, 5, 'WORKFLOW'), \
                 (NULL, 'E1', 'global', 'E', FALSE, NULL, 'GLOBAL'), \
                 (NULL, 'G', 'global only', 'E', FALSE, NULL, 'GLOBAL'), \
                 (3, 'OTHERS', 'not ours', 'E', FALSE, NULL, 'AUTO');
             INSERT INTO groups (name, enabled) VALUES ('OFF', FALSE), ('ON', TRUE);
             INSERT INTO group_members (group_name, object_type, object_id) \
                 VALUES ('OFF', 'workflow', 2), ('ON', 'workflow', 1), ('ON', 'service', 2);",
        )
        .await?;
    Ok(store)
}

async fn listings_count_orders_by_status(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    for (version, n) in [("1.0", 3), ("2.0", 1)] {
        for _ in 0..n {
            store
                .create_order(&NewOrder {
                    name: "WF".into(),
                    version: Some(version.into()),
                    staticdata: serde_json::json!({}),
                    ..Default::default()
                })
                .await?;
        }
    }
    store
        .execute_sql(
            "UPDATE workflow_instance SET workflowstatus = 'E' WHERE workflow_instanceid = 1",
        )
        .await?;

    let list = store.list_workflows().await?;
    let names: Vec<(&str, &str)> = list
        .iter()
        .map(|w| (w.name.as_str(), w.version.as_str()))
        .collect();
    assert_eq!(names, vec![("OTHER", "1.0"), ("WF", "1.0"), ("WF", "2.0")]);
    let v1 = &list[1];
    assert_eq!(
        (
            v1.workflowid,
            v1.desc.as_deref(),
            v1.autostart,
            v1.max_instances
        ),
        (1, Some("first"), 1, 1)
    );
    assert!(v1.enabled);
    assert_eq!(v1.keylist, vec!["id".to_string()]);
    assert_eq!(v1.groups, vec!["ON".to_string()]);
    assert_eq!(v1.order_counts["READY"], 2);
    assert_eq!(v1.order_counts["ERROR"], 1);
    assert_eq!(v1.order_counts["COMPLETE"], 0);
    assert_eq!(v1.order_counts["TOTAL"], 3);
    assert_eq!(v1.order_counts.len(), 13, "twelve statuses and TOTAL");
    let v2 = &list[2];
    assert!(v2.keylist.is_empty(), "no keylist is an empty one");
    assert_eq!(v2.groups, vec!["OFF".to_string()]);
    assert_eq!(v2.order_counts["TOTAL"], 1);
    assert_eq!(list[0].order_counts["TOTAL"], 0);

    // One workflow: the same, with only its own counts.
    let newest = store.find_workflow("WF", None).await?.context("newest")?;
    assert_eq!(&newest, v2);
    let by_version = store
        .find_workflow("WF", Some("1.0"))
        .await?
        .context("1.0")?;
    assert_eq!(&by_version, v1);
    assert_eq!(store.workflow_by_id(1).await?.as_ref(), Some(v1));
    assert!(store.find_workflow("WF", Some("9.9")).await?.is_none());
    assert!(store.find_workflow("NOPE", None).await?.is_none());
    assert!(store.workflow_by_id(99).await?.is_none());
    Ok(())
}

async fn graph_errors_and_switches(db: &SystemDb) -> Result<()> {
    let store = fixture(db).await?;
    let steps = store.workflow_steps(1).await?;
    let graph: Vec<(&str, &[i64])> = steps
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
        .collect();
    assert_eq!(
        graph,
        vec![("A", &[][..]), ("B", &[10][..]), ("C", &[10, 11][..])],
        "in graph order"
    );
    assert_eq!(steps[0].steptype, "NORMAL");
    assert!(store.workflow_steps(2).await?.is_empty());

    let errors = store.workflow_errors(1).await?;
    let shown: Vec<_> = errors
        .iter()
        .map(|e| {
            (
                e.error.as_str(),
                e.description.as_deref(),
                e.status.as_str(),
                e.business_error,
                e.retry_delay_secs,
                e.level.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            ("E1", Some("own"), "RETRY", true, Some(5), "WORKFLOW"),
            ("G", Some("global only"), "ERROR", false, None, "GLOBAL"),
        ],
        "its own E1 hides the global one; another workflow's errors are not its"
    );
    assert_eq!(store.workflow_errors(2).await?.len(), 2, "the global ones");

    assert!(store.set_workflow_enabled(1, false).await?);
    assert!(!store.set_workflow_enabled(1, false).await?, "no change");
    assert!(!store.workflow_by_id(1).await?.context("wf")?.enabled);
    let refused = store
        .create_order(&NewOrder {
            name: "WF".into(),
            version: Some("1.0".into()),
            staticdata: serde_json::json!({}),
            ..Default::default()
        })
        .await;
    assert_eq!(refused.map_err(|e| e.code()), Err("STATUS-ERROR"));
    let rows = store.list_interfaces().await?;
    let row = rows
        .iter()
        .find(|r| r.kind == "workflow" && r.id == 1)
        .context("row")?;
    assert!(!row.enabled && !row.starts_by_itself());
    assert!(store.set_workflow_enabled(1, true).await?);

    assert!(store.set_workflow_autostart(1, 4).await?);
    assert!(!store.set_workflow_autostart(1, 4).await?);
    assert_eq!(store.workflow_by_id(1).await?.context("wf")?.autostart, 4);
    assert!(store.set_workflow_autostart(1, 0).await?);
    let rows = store.list_interfaces().await?;
    let row = rows
        .iter()
        .find(|r| r.kind == "workflow" && r.id == 1)
        .context("row")?;
    assert!(!row.autostart, "autostart 0 does not start");
    assert!(store.set_workflow_autostart(1, -1).await.is_err());
    assert!(
        !store.set_workflow_enabled(99, false).await?,
        "no such workflow"
    );
    Ok(())
}
