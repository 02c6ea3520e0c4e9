//! End-to-end tests of `sluice load` (Qorus's oload) with the shipped example, as a user runs it.

use anyhow::Result;
use sluice_e2e::{
    assert_contains_all, examples, on_both_backends, output_text, yaml_files, Backend, Instance,
};

async fn example_loads_and_reloads(backend: Backend) -> Result<()> {
    let inst = Instance::new(backend, "e2e-load", &["qorus.audit: oload"])?;
    inst.create_schema()?;
    let files = yaml_files(&examples("order"))?;
    assert_eq!(files.len(), 5, "{files:?}");

    let out = inst.load_output(&files)?;
    let shown = output_text(&out);
    assert!(out.status.success(), "{shown}");
    assert_contains_all(
        &shown,
        &[
            "created step ValidateOrder:1.0",
            "created step ReserveStock:1.0",
            "created step ChargePayment:1.0",
            "created errors example-order-errors (2 error(s))",
            "created workflow EXAMPLE-ORDER:1.0 (3 step(s))",
        ],
    );

    let db = inst.db().await?;
    // The graph: both parallel steps wait for ValidateOrder, which waits for nothing.
    let graph = db
        .strings(
            "SELECT s.name || '<' || w.depends_on FROM workflow_steps w JOIN steps s ON s.stepid = w.stepid \
             ORDER BY w.position",
        )
        .await?;
    let validate = db
        .scalar_i64("SELECT stepid FROM steps WHERE name = 'ValidateOrder'")
        .await?;
    assert_eq!(
        graph,
        vec![
            "ValidateOrder<[]".to_string(),
            format!("ReserveStock<[{validate}]"),
            format!("ChargePayment<[{validate}]"),
        ]
    );
    let errors = db
        .strings(
            "SELECT error || ':' || status || ':' || COALESCE(CAST(retry_delay_secs AS TEXT), '-') \
             FROM workflow_errors ORDER BY error",
        )
        .await?;
    assert_eq!(
        errors,
        vec!["PAYMENT-DECLINED:E:-", "STOCK-UNAVAILABLE:R:30"]
    );
    assert_eq!(
        db.scalar_i64("SELECT COUNT(*) FROM code").await?,
        3,
        "code stored by content hash"
    );
    assert_eq!(db.scalar_i64("SELECT autostart FROM workflows").await?, 1);
    assert_eq!(
        db.scalar_i64(
            "SELECT COUNT(*) FROM audit_events WHERE audit_event_code = 21 AND info1 LIKE '%.yaml'"
        )
        .await?,
        5,
        "qorus.audit: oload records SOURCE-FILE-LOADED per file"
    );

    // Loading the same files again changes no step.
    let out = inst.load_output(&files)?;
    let shown = output_text(&out);
    assert!(
        out.status.success() && shown.contains("unchanged step ValidateOrder:1.0"),
        "{shown}"
    );
    assert!(
        shown.contains("updated workflow EXAMPLE-ORDER:1.0"),
        "{shown}"
    );
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM workflows").await?, 1);

    let listed = output_text(&inst.sluice(&["load", "--list"])?);
    assert!(
        listed.contains("EXAMPLE-ORDER") && listed.contains("ChargePayment"),
        "{listed}"
    );

    // A step a workflow uses cannot be deleted; the workflow can, and then the step.
    let out = inst.sluice(&["load", "--delete", "step:ValidateOrder:1.0"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("still used"),
        "{}",
        output_text(&out)
    );
    assert!(inst
        .sluice(&["load", "--delete", "workflow:EXAMPLE-ORDER:1.0"])?
        .status
        .success());
    assert!(inst
        .sluice(&["load", "--delete", "step:ValidateOrder:1.0"])?
        .status
        .success());
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM workflows").await?, 0);
    db.close().await;
    Ok(())
}

on_both_backends! {
    example_loads_and_reloads_sqlite, example_loads_and_reloads_postgres
        => example_loads_and_reloads;
}

#[tokio::test]
async fn a_bad_file_loads_nothing_and_names_the_line() -> Result<()> {
    let inst = Instance::new(Backend::Sqlite, "e2e-load-bad", &[])?;
    inst.create_schema()?;
    // A copy of the example with one broken step file.
    let dir = inst.home().join("src");
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for f in yaml_files(&examples("order"))? {
        let to = dir.join(f.file_name().unwrap_or_default());
        std::fs::copy(&f, &to)?;
        let py = f.with_extension("py");
        if py.exists() {
            std::fs::copy(&py, dir.join(py.file_name().unwrap_or_default()))?;
        }
        files.push(to);
    }
    let broken = dir.join("ReserveStock-1.0.qstep.yaml");
    let text = std::fs::read_to_string(&broken)?.replace("steptype: NORMAL", "steptype: ASYNC");
    std::fs::write(&broken, &text)?;
    let line = text
        .lines()
        .position(|l| l.contains("steptype"))
        .map(|i| i + 1)
        .unwrap_or(0);

    let out = inst.load_output(&files)?;
    let shown = output_text(&out);
    assert_eq!(out.status.code(), Some(65), "{shown}");
    assert!(
        shown.contains(&format!("{}:{line}:", broken.display())) && shown.contains("ASYNC"),
        "names the file, the line and the problem: {shown}"
    );
    assert!(shown.contains("nothing was loaded"), "{shown}");
    let db = inst.db().await?;
    assert_eq!(
        db.scalar_i64("SELECT COUNT(*) FROM steps").await?,
        0,
        "the good files were not loaded either"
    );

    // A workflow naming a step that exists nowhere: refused with the workflow's file and line.
    let wf = dir.join("EXAMPLE-ORDER-1.0.qwf.yaml");
    let out = inst.load_output(std::slice::from_ref(&wf))?;
    let shown = output_text(&out);
    assert_eq!(out.status.code(), Some(65), "{shown}");
    assert!(
        shown.contains(&format!("{}:", wf.display())) && shown.contains("ValidateOrder:1.0"),
        "{shown}"
    );
    assert_eq!(db.scalar_i64("SELECT COUNT(*) FROM workflows").await?, 0);
    db.close().await;
    Ok(())
}
