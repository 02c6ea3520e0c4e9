//! End-to-end tests of the `sluice` operator tool, run as a real process.

use anyhow::Result;
use sluice_e2e::{output_text, Backend, Instance};

async fn schema_tool_lifecycle(backend: Backend) -> Result<()> {
    let inst = Instance::new(backend, "e2e-cli", &[])?;

    let out = inst.sluice(&["schema", "verify"])?;
    assert!(
        !out.status.success(),
        "verify fails before create: {}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "create"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("created the Sluice schema version"),
        "{}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "create"])?;
    assert!(
        !out.status.success(),
        "create twice is refused: {}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "verify"])?;
    assert!(
        out.status.success() && output_text(&out).starts_with("OK"),
        "{}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "upgrade"])?;
    assert!(
        out.status.success() && output_text(&out).contains("nothing to do"),
        "{}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "drop"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("--yes"),
        "{}",
        output_text(&out)
    );
    let out = inst.sluice(&["schema", "verify"])?;
    assert!(
        out.status.success(),
        "an unconfirmed drop drops nothing: {}",
        output_text(&out)
    );

    let out = inst.sluice(&["schema", "drop", "--yes"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let out = inst.sluice(&["schema", "verify"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("sluice schema create"),
        "{}",
        output_text(&out)
    );
    Ok(())
}

#[tokio::test]
async fn schema_tool_lifecycle_sqlite() -> Result<()> {
    schema_tool_lifecycle(Backend::Sqlite).await
}

#[tokio::test]
async fn schema_tool_lifecycle_postgres() -> Result<()> {
    match Backend::postgres().await? {
        Some(backend) => schema_tool_lifecycle(backend).await,
        None => Ok(()),
    }
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
