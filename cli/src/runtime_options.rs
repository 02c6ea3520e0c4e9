//! `sluice option show|set` over the cluster API (`omq.system.get-options`,
//! `omq.system.set-option`; docs/cluster-api.md): the options a running instance has in
//! force, and changes to them while it runs. `sluice options` (plural) reads the local
//! options file instead, without a running master.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Cluster;

#[derive(Debug, Subcommand)]
pub enum OptionAction {
    /// Show the options in force in the running instance (secrets redacted).
    Show {
        /// One option, `qorus.NAME` or `NAME` (default: all).
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an option while the instance runs; it lasts until the master stops (put it
    /// in the options file to keep it). Startup-only options are refused.
    Set {
        /// `qorus.NAME` or `NAME`.
        name: String,
        /// As it would be written in the options file.
        value: String,
    },
}

pub(crate) async fn run(cluster: &Cluster, action: &OptionAction) -> anyhow::Result<u8> {
    match action {
        OptionAction::Show { name, json } => {
            let body = match name {
                Some(name) => json!({ "name": name }),
                None => json!({}),
            };
            let reply = cluster
                .call("omq.system.get-options", body.to_string().into_bytes())
                .await?;
            let value: Value =
                serde_json::from_slice(&reply).context("the master's reply is not JSON")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(0);
            }
            let rows = match &value {
                Value::Array(rows) => rows.clone(),
                one => vec![one.clone()],
            };
            for row in rows {
                println!("{}", line(&row));
            }
        }
        OptionAction::Set { name, value } => {
            let reply = cluster
                .call(
                    "omq.system.set-option",
                    json!({ "name": name, "value": value })
                        .to_string()
                        .into_bytes(),
                )
                .await?;
            let row: Value =
                serde_json::from_slice(&reply).context("the master's reply is not JSON")?;
            println!("{} (in force until the master stops)", line(&row));
        }
    }
    Ok(0)
}

/// `qorus.NAME: VALUE`, as the options file would say it, marked when startup-only.
fn line(row: &Value) -> String {
    let name = row["name"].as_str().unwrap_or("?");
    let value = row["value"].as_str().unwrap_or("");
    if row["startup_only"].as_bool() == Some(true) {
        format!("{name}: {value}  (startup only)")
    } else {
        format!("{name}: {value}")
    }
}
