//! End-to-end tests of orders: the shipped example loaded with `sluice load`, a real master,
//! and the `sluice order` commands over the cluster API, as an operator runs them.
//!
//! The master runs with `qorus.autostart-interfaces: false`, so no workflow process claims
//! the orders while the test looks at their statuses.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_e2e::{
    assert_contains_all, examples, on_both_backends, output_text, yaml_files, Backend, Instance,
};

const KEY: &str = "e2e-orders";

/// The id in `created order N`.
fn created_id(text: &str) -> Result<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("created order "))
        .and_then(|id| id.trim().parse().ok())
        .with_context(|| format!("no order id in {text:?}"))
}

/// The ids in the first column of `sluice order list`'s table.
fn listed_ids(text: &str) -> Vec<i64> {
    text.lines()
        .skip_while(|l| !l.starts_with("ID "))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

async fn orders_through_the_cli(backend: Backend) -> Result<()> {
    let mut inst = Instance::new(backend, KEY, &["qorus.autostart-interfaces: false"])?;
    inst.create_schema()?;
    inst.load(&yaml_files(&examples("order"))?)?;
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;

    let cert = inst.home().join("ops.cert");
    let cert = cert.to_str().context("path")?.to_string();
    let out = inst.sluice(&["keys", "gen", "--out", &cert])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    inst.sluice_ok(&["keys", "register", "ops", &public])?;
    // The CLI finds the endpoint and the server key in the instance's own options.
    let cli = |args: &[&str]| -> Result<Output> {
        let mut all = vec!["--key", cert.as_str()];
        all.extend_from_slice(args);
        inst.sluice(&all)
    };
    let cli_ok = |args: &[&str]| -> Result<String> {
        let out = cli(args)?;
        let text = output_text(&out);
        anyhow::ensure!(out.status.success(), "sluice {args:?} failed:\n{text}");
        Ok(text)
    };

    let order = r#"{"staticdata": {"customer": "ACME", "lines": [1, 2]},
                    "orderkeys": {"order_id": "A-1"},
                    "global_unique_key": {"order_id": "A-1"}}"#;
    let first = created_id(&cli_ok(&[
        "order",
        "create",
        "EXAMPLE-ORDER",
        "--data",
        order,
    ])?)?;

    let shown = cli_ok(&["order", "show", &first.to_string()])?;
    assert_contains_all(
        &shown,
        &[
            "EXAMPLE-ORDER:1.0",
            "READY (Y)",
            "order_id=A-1",
            "\"customer\":\"ACME\"",
        ],
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli_ok(&["order", "show", &first.to_string(), "--json"])?)?;
    assert_eq!(json["workflow_instanceid"], first);
    assert_eq!(json["workflowstatus"], "READY");
    assert_eq!(json["priority"], 500);

    // The same unique key again: refused, naming the order that has it.
    let out = cli(&["order", "create", "EXAMPLE-ORDER:1.0", "--data", order])?;
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("DUPLICATE-ORDER-KEY") && text.contains(&format!("order {first}")),
        "{text}"
    );

    // A second order, from a file.
    let file = inst.home().join("order.json");
    std::fs::write(
        &file,
        r#"{"staticdata": {"customer": "Initech"}, "orderkeys": {"order_id": "B-2"}, "priority": 10}"#,
    )?;
    let data = format!("@{}", file.display());
    let second = created_id(&cli_ok(&[
        "order",
        "create",
        "EXAMPLE-ORDER",
        "--data",
        &data,
    ])?)?;

    // Block and unblock, cancel and uncancel: each returns to where it was.
    let id = first.to_string();
    let text = cli_ok(&["order", "block", &id])?;
    assert!(text.contains("BLOCKED (was READY)"), "{text}");
    let listed = cli_ok(&["order", "list", "--status", "BLOCKED"])?;
    assert_eq!(listed_ids(&listed), vec![first], "{listed}");
    let text = cli_ok(&["order", "unblock", &id])?;
    assert!(text.contains("READY (was BLOCKED)"), "{text}");
    let text = cli_ok(&["order", "cancel", &id, &second.to_string()])?;
    assert!(
        text.contains(&format!("order {first}: CANCELED (was READY)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("order {second}: CANCELED")),
        "{text}"
    );
    let listed = cli_ok(&["order", "list", "--status", "CANCELED", "--json"])?;
    let ids: Vec<i64> = serde_json::from_str::<Vec<serde_json::Value>>(&listed)?
        .iter()
        .filter_map(|o| o["workflow_instanceid"].as_i64())
        .collect();
    assert_eq!(ids, vec![second, first], "newest first");
    let text = cli_ok(&["order", "uncancel", &id])?;
    assert!(text.contains("READY (was CANCELED)"), "{text}");

    // Refused actions print CODE: description and exit non-zero; the others still run.
    let out = cli(&["order", "retry", &id, "999999"])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("order {first}: STATUS-ERROR")) && text.contains("READY"),
        "{text}"
    );
    assert!(
        text.contains("order 999999: WORKFLOW-ORDER-NOT-FOUND"),
        "{text}"
    );

    // Search by key and by workflow.
    let listed = cli_ok(&["order", "list", "--order-key", "order_id=A-1"])?;
    assert_eq!(listed_ids(&listed), vec![first], "{listed}");
    assert!(listed.contains("READY"), "{listed}");
    let listed = cli_ok(&["order", "list", "--workflow", "EXAMPLE-ORDER:1.0"])?;
    assert_eq!(listed_ids(&listed), vec![second, first], "{listed}");
    let listed = cli_ok(&[
        "order",
        "list",
        "--workflow",
        "EXAMPLE-ORDER",
        "--status",
        "X",
    ])?;
    assert_eq!(listed_ids(&listed), vec![second], "{listed}");

    // Notes, priority and dynamic data show up in `show`.
    cli_ok(&["order", "note", &id, "called", "the", "customer"])?;
    cli_ok(&["order", "priority", &id, "5"])?;
    cli_ok(&["order", "dynamic-data", &id, r#"{"checked": true}"#])?;
    let shown = cli_ok(&["order", "show", &id])?;
    assert_contains_all(
        &shown,
        &[
            "ops: called the customer",
            "priority:    5",
            "\"checked\":true",
        ],
    );

    // What the database holds is what the commands said.
    let db = inst.db().await?;
    let states = db
        .strings(&format!(
            "SELECT workflowstatus || ':' || CAST(sessionid AS TEXT) FROM workflow_instance \
             WHERE workflow_instanceid IN ({first}, {second}) ORDER BY workflow_instanceid"
        ))
        .await?;
    assert_eq!(states, vec!["Y:0", "X:0"]);
    db.close().await;
    let log = std::fs::read_to_string(inst.log_file(KEY, "master"))?;
    assert!(log.contains("event WORKFLOW_DATA_SUBMITTED"), "{log}");
    assert!(log.contains("event WORKFLOW_STATUS_CHANGED"), "{log}");

    assert_eq!(inst.stop(m, Duration::from_secs(30))?.code(), Some(0));
    Ok(())
}

on_both_backends! {
    orders_through_the_cli_sqlite, orders_through_the_cli_postgres => orders_through_the_cli;
}
