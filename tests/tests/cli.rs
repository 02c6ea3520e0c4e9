//! End-to-end tests of the `sluice` operator tool, run as a real process.

use anyhow::Result;
use sluice_e2e::{on_both_backends, output_text, Backend, Instance};

/// `sluice schema ARGS`: whether it succeeded, and its output.
fn schema(inst: &Instance, args: &[&str]) -> Result<(bool, String)> {
    let mut all = vec!["schema"];
    all.extend_from_slice(args);
    let out = inst.sluice(&all)?;
    Ok((out.status.success(), output_text(&out)))
}

async fn schema_tool_lifecycle(backend: Backend) -> Result<()> {
    let inst = Instance::new(backend, "e2e-cli", &[])?;

    let (ok, text) = schema(&inst, &["verify"])?;
    assert!(!ok, "verify fails before create: {text}");

    let (ok, text) = schema(&inst, &["create"])?;
    assert!(ok, "{text}");
    assert!(text.contains("created the Sluice schema version"), "{text}");

    let (ok, text) = schema(&inst, &["create"])?;
    assert!(!ok, "create twice is refused: {text}");

    let (ok, text) = schema(&inst, &["verify"])?;
    assert!(ok && text.starts_with("OK"), "{text}");

    let (ok, text) = schema(&inst, &["upgrade"])?;
    assert!(ok && text.contains("nothing to do"), "{text}");

    let (ok, text) = schema(&inst, &["drop"])?;
    assert!(!ok && text.contains("--yes"), "{text}");
    let (ok, text) = schema(&inst, &["verify"])?;
    assert!(ok, "an unconfirmed drop drops nothing: {text}");

    let (ok, text) = schema(&inst, &["drop", "--yes"])?;
    assert!(ok, "{text}");
    let (ok, text) = schema(&inst, &["verify"])?;
    assert!(!ok && text.contains("sluice schema create"), "{text}");
    Ok(())
}

on_both_backends! {
    schema_tool_lifecycle_sqlite, schema_tool_lifecycle_postgres => schema_tool_lifecycle;
}

#[test]
fn options_listing_matches_the_generated_doc() -> Result<()> {
    let inst = Instance::new(Backend::Sqlite, "e2e-cli-options", &[])?;
    let out = inst.sluice(&["options", "--markdown"])?;
    assert!(out.status.success());
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/options.md"))?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        doc,
        "docs/options.md is stale"
    );

    let out = inst.sluice(&["options"])?;
    let listing = output_text(&out);
    for name in [
        "qorus.instance-key",
        "qorus.systemdb",
        "qorus.http-secure-server",
        "qorus.max-events",
    ] {
        assert!(
            listing.contains(name),
            "{name} missing from `sluice options`"
        );
    }
    Ok(())
}

#[test]
fn option_values_never_show_the_database_password() -> Result<()> {
    let inst = Instance::new(Backend::Sqlite, "e2e-cli-secret", &[])?;
    let out = inst.sluice(&[
        "-o",
        "qorus.systemdb=pgsql:omq/s3cr3t-pw@omq%db.example.com:5432",
        "options",
        "--values",
    ])?;
    let shown = output_text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("postgres://omq:***@db.example.com:5432/omq"),
        "{shown}"
    );
    assert!(!shown.contains("s3cr3t-pw"), "password leaked: {shown}");
    Ok(())
}
