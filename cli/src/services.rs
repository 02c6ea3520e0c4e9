//! `sluice service ...` and `sluice group ...` over the cluster API
//! (`omq.system.call-service`, `list-services`, `load-service`, ...; docs/services.md).

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{Cluster, RemoteError};

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Call a method and print its result as JSON; a service that is not loaded is
    /// loaded first.
    Call {
        /// The service, NAME or NAME:VERSION (default: the newest loaded version).
        #[arg(value_name = "NAME[:VERSION]")]
        service: String,
        method: String,
        /// The method's arguments, each a JSON value (`42`, `'"text"'`, `'{"a": 1}'`);
        /// a word that is not JSON is taken as a string.
        #[arg(value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the loaded services with their status (unloaded, loaded, running).
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a service: its methods, status, process and state data (JSON).
    Show {
        #[arg(value_name = "NAME[:VERSION]")]
        service: String,
    },
    /// Load a service: start its process, run init() and start().
    Load {
        #[arg(value_name = "NAME[:VERSION]")]
        service: String,
    },
    /// Unload a service: stop() is called and its process ends.
    Unload {
        #[arg(value_name = "NAME[:VERSION]")]
        service: String,
    },
    /// Reset a loaded service: it loads the newest code from the system database while
    /// the calls in progress finish on the old code.
    Reset {
        #[arg(value_name = "NAME[:VERSION]")]
        service: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// List interface groups with their status and members.
    List,
    /// Enable a group: its autostart members start.
    Enable { group: String },
    /// Disable a group: its running members stop and its jobs do not run.
    Disable { group: String },
}

fn name_version(text: &str) -> Value {
    match text.split_once(':') {
        Some((name, version)) => json!({"name": name, "version": version}),
        None => json!({"name": text}),
    }
}

fn argument(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn print_json(body: &[u8]) -> anyhow::Result<()> {
    let value: Value = serde_json::from_slice(body).context("the master's reply is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

pub(crate) async fn run(cluster: &Cluster, action: &ServiceAction) -> anyhow::Result<u8> {
    match action {
        ServiceAction::Call {
            service,
            method,
            args,
        } => {
            let mut body = name_version(service);
            body["method"] = json!(method);
            body["args"] = args.iter().map(|a| argument(a)).collect();
            match cluster
                .call_with_deadline("omq.system.call-service", body.to_string().into_bytes())
                .await
            {
                Ok(reply) => print_json(&reply)?,
                Err(err) => {
                    if let Some(remote) = err.downcast_ref::<RemoteError>() {
                        eprintln!("{remote}");
                        if let Some(tb) = remote
                            .info
                            .as_ref()
                            .and_then(|i| i["traceback"].as_str())
                            .filter(|t| !t.is_empty())
                        {
                            eprint!("{tb}");
                        }
                        return Ok(1);
                    }
                    return Err(err);
                }
            }
        }
        ServiceAction::List { json: as_json } => {
            let reply = cluster
                .call("omq.system.list-services", b"{}".to_vec())
                .await?;
            if *as_json {
                print_json(&reply)?;
            } else {
                let list: Vec<Value> = serde_json::from_slice(&reply)?;
                println!(
                    "{:<32} {:<10} {:<10} {:<9} methods",
                    "service", "version", "status", "autostart"
                );
                for s in list {
                    println!(
                        "{:<32} {:<10} {:<10} {:<9} {}",
                        s["name"].as_str().unwrap_or_default(),
                        s["version"].as_str().unwrap_or_default(),
                        s["status"].as_str().unwrap_or_default(),
                        s["autostart"].as_bool().unwrap_or_default(),
                        s["methods"]
                            .as_array()
                            .map(|m| m
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
        }
        ServiceAction::Show { service } => {
            let reply = cluster
                .call(
                    "omq.system.get-service",
                    name_version(service).to_string().into_bytes(),
                )
                .await?;
            print_json(&reply)?;
        }
        ServiceAction::Load { service }
        | ServiceAction::Unload { service }
        | ServiceAction::Reset { service } => {
            let verb = match action {
                ServiceAction::Load { .. } => "omq.system.load-service",
                ServiceAction::Unload { .. } => "omq.system.unload-service",
                _ => "omq.system.reset-service",
            };
            let reply = cluster
                .call_with_deadline(verb, name_version(service).to_string().into_bytes())
                .await?;
            let value: Value = serde_json::from_slice(&reply)?;
            match value.get("message").and_then(Value::as_str) {
                Some(message) => println!("{message}"),
                None => println!(
                    "service {service}: {}",
                    value["status"].as_str().unwrap_or("done")
                ),
            }
        }
    }
    Ok(0)
}

pub(crate) async fn run_group(cluster: &Cluster, action: &GroupAction) -> anyhow::Result<u8> {
    match action {
        GroupAction::List => {
            let reply = cluster
                .call("omq.system.list-groups", b"{}".to_vec())
                .await?;
            print_json(&reply)?;
        }
        GroupAction::Enable { group } | GroupAction::Disable { group } => {
            let enabled = matches!(action, GroupAction::Enable { .. });
            let reply = cluster
                .call(
                    "omq.system.set-group-enabled",
                    json!({"group": group, "enabled": enabled})
                        .to_string()
                        .into_bytes(),
                )
                .await?;
            let value: Value = serde_json::from_slice(&reply)?;
            println!(
                "group {group} {}{}: {} stopped, {} started",
                if enabled { "enabled" } else { "disabled" },
                if value["changed"].as_bool() == Some(false) {
                    " (no change)"
                } else {
                    ""
                },
                value["stopped"].as_array().map_or(0, Vec::len),
                value["started"].as_array().map_or(0, Vec::len)
            );
        }
    }
    Ok(0)
}
