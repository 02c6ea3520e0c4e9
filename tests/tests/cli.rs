//! End-to-end tests of the `sluice` operator tool, run as a real process.

use std::process::{Command, Output};

use anyhow::Result;
use sluice_e2e::{Backend, Instance};

fn sluice(inst: &Instance, args: &[&str]) -> Result<Output> {
    Ok(Command::new(sluice_e2e::bin("sluice")?)
        .args(args)
        .env("OMQ_DIR", inst.home())
        .output()?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn schema_tool_lifecycle(backend: Backend) -> Result<()> {
    let inst = Instance::new(backend, "e2e-cli", &[])?;

    let out = sluice(&inst, &["schema", "verify"])?;
    assert!(
        !out.status.success(),
        "verify fails before create: {}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "create"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("created the Sluice schema version"),
        "{}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "create"])?;
    assert!(
        !out.status.success(),
        "create twice is refused: {}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "verify"])?;
    assert!(
        out.status.success() && text(&out).starts_with("OK"),
        "{}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "upgrade"])?;
    assert!(
        out.status.success() && text(&out).contains("nothing to do"),
        "{}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "drop"])?;
    assert!(
        !out.status.success() && text(&out).contains("--yes"),
        "{}",
        text(&out)
    );
    let out = sluice(&inst, &["schema", "verify"])?;
    assert!(
        out.status.success(),
        "an unconfirmed drop drops nothing: {}",
        text(&out)
    );

    let out = sluice(&inst, &["schema", "drop", "--yes"])?;
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice(&inst, &["schema", "verify"])?;
    assert!(
        !out.status.success() && text(&out).contains("sluice schema create"),
        "{}",
        text(&out)
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
    let out = sluice(&inst, &["options", "--markdown"])?;
    assert!(out.status.success());
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/options.md"))?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        doc,
        "docs/options.md is stale"
    );

    let out = sluice(&inst, &["options"])?;
    let listing = text(&out);
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
    let out = sluice(
        &inst,
        &[
            "-o",
            "qorus.systemdb=pgsql:omq/s3cr3t-pw@omq%db.example.com:5432",
            "options",
            "--values",
        ],
    )?;
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("postgres://omq:***@db.example.com:5432/omq"),
        "{shown}"
    );
    assert!(!shown.contains("s3cr3t-pw"), "password leaked: {shown}");
    Ok(())
}
