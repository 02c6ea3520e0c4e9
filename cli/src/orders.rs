//! `sluice order ...`: workflow orders over the cluster API (`omq.system.create-order`,
//! `get-order-info`, `search-orders` and the operator actions; see docs/cluster-api.md).
//!
//! An error the master answers with prints as `CODE: description` and the command exits 1;
//! an action given several ids goes through all of them and exits 1 if any failed.

use std::path::Path;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use sluice_core::store::orders::{format_time, parse_time, OrderInfo, OrderSummary};

use crate::client::{Cluster, RemoteError};

#[derive(Debug, Subcommand)]
pub enum OrderAction {
    /// Create an order and print its id.
    ///
    /// --data holds what Qorus's createOrder takes: staticdata (required), dynamicdata,
    /// orderkeys, priority, scheduled, status (READY or BLOCKED), parent_workflow_instanceid,
    /// external_order_instanceid, global_unique_key, workflow_specific_unique_key and
    /// workflow_unique_key. A unique key another order has is refused with
    /// DUPLICATE-ORDER-KEY, naming that order.
    Create {
        /// The workflow, NAME or NAME:VERSION (default: the newest loaded version).
        #[arg(value_name = "NAME[:VERSION]")]
        workflow: String,
        /// The order as a JSON object, or @FILE to read it from a file.
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
    },
    /// Show an order: status, data, keys, steps, errors and notes.
    Show {
        #[arg(value_name = "ID")]
        id: i64,
        /// Print the order as the master returns it (JSON).
        #[arg(long)]
        json: bool,
    },
    /// List orders, newest first.
    List {
        /// Only orders of this workflow.
        #[arg(long, value_name = "NAME[:VERSION]")]
        workflow: Option<String>,
        /// Only orders in these statuses (Qorus names or letters), e.g. ERROR,RETRY.
        #[arg(long, value_delimiter = ',', value_name = "STATUS,...")]
        status: Vec<String>,
        /// Only orders with this order key (and value).
        #[arg(long, value_name = "NAME[=VALUE]")]
        order_key: Option<String>,
        /// Only orders created at or after this time (RFC 3339, ms, or `now`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only orders created at or before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many (up to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retry orders in ERROR, RETRY or ASYNC-WAITING: they run again at once.
    Retry {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Cancel orders (not IN-PROGRESS, COMPLETE or BLOCKED); uncancel restores them.
    Cancel {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Return canceled orders to the status they had.
    Uncancel {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Block orders (not IN-PROGRESS, COMPLETE or CANCELED): they do not run until unblocked.
    Block {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Return blocked orders to the status they had.
    Unblock {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Set orders to ERROR (from READY, SCHEDULED, RETRY or a waiting status).
    SetError {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<i64>,
    },
    /// Skip a step of an order.
    ///
    /// The step must be in ERROR, RETRY or a waiting status, or not started yet; it becomes
    /// COMPLETE (skipped). When no failed step is left, the order goes on at once (RETRY).
    SkipStep {
        #[arg(value_name = "ID")]
        id: i64,
        /// The step's id (`sluice order show` lists them), with the array index for an
        /// array step.
        #[arg(value_name = "STEPID[:IND]")]
        step: String,
    },
    /// Set an order's priority: 0 (highest) to 999 (lowest).
    Priority {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(value_name = "N", allow_negative_numbers = true)]
        priority: i64,
    },
    /// Schedule a READY or SCHEDULED order (or a BLOCKED one that was) to run at TIME.
    Reschedule {
        #[arg(value_name = "ID")]
        id: i64,
        /// RFC 3339 (2030-01-31T12:00:00Z), ms since the epoch, or `now`.
        #[arg(value_name = "TIME")]
        time: String,
    },
    /// Merge a JSON object into an order's dynamic data (null deletes a key).
    DynamicData {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(value_name = "JSON|@FILE")]
        data: String,
    },
    /// Replace the values of order keys: a JSON object of name to value or list of values.
    Keys {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(value_name = "JSON|@FILE")]
        keys: String,
    },
    /// Add a note to an order.
    Note {
        #[arg(value_name = "ID")]
        id: i64,
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<String>,
    },
}

/// Runs an order command; returns the exit code.
pub(crate) async fn run(cluster: &Cluster, action: &OrderAction) -> anyhow::Result<u8> {
    match action {
        OrderAction::Create { workflow, data } => {
            let mut order = json_object(data, "--data")?;
            let (name, version) = split_workflow(workflow);
            order.insert("name".into(), json!(name));
            if let Some(version) = version {
                order.insert("version".into(), json!(version));
            }
            let reply = call_json(cluster, "omq.system.create-order", Value::Object(order)).await?;
            println!("created order {}", reply["workflow_instanceid"]);
            Ok(0)
        }
        OrderAction::Show { id, json } => {
            let reply = call_json(
                cluster,
                "omq.system.get-order-info",
                json!({ "workflow_instanceid": id }),
            )
            .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                let info: OrderInfo =
                    serde_json::from_value(reply).context("the master's reply is not an order")?;
                print_order(&info);
            }
            Ok(0)
        }
        OrderAction::List {
            workflow,
            status,
            order_key,
            since,
            until,
            limit,
            offset,
            json,
        } => {
            let mut query = json!({ "limit": limit, "offset": offset, "status": status });
            if let Some(workflow) = workflow {
                let (name, version) = split_workflow(workflow);
                query["name"] = json!(name);
                if let Some(version) = version {
                    query["version"] = json!(version);
                }
            }
            if let Some(key) = order_key {
                match key.split_once('=') {
                    Some((name, value)) => {
                        query["keyname"] = json!(name);
                        query["keyvalue"] = json!(value);
                    }
                    None => query["keyname"] = json!(key),
                }
            }
            for (field, time) in [("mindate", since), ("maxdate", until)] {
                if let Some(time) = time {
                    query[field] = json!(parse_time(time).map_err(anyhow::Error::msg)?);
                }
            }
            let reply = call_json(cluster, "omq.system.search-orders", query).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(0);
            }
            let orders: Vec<OrderSummary> = serde_json::from_value(reply)
                .context("the master's reply is not a list of orders")?;
            println!(
                "{:<10} {:<28} {:<9} {:<14} {:<8} CREATED",
                "ID", "WORKFLOW", "VERSION", "STATUS", "PRIORITY"
            );
            for o in &orders {
                println!(
                    "{:<10} {:<28} {:<9} {:<14} {:<8} {}",
                    o.workflow_instanceid,
                    o.name,
                    o.version,
                    o.workflowstatus,
                    o.priority,
                    format_time(o.created)
                );
            }
            Ok(0)
        }
        OrderAction::Retry { ids } => {
            each(cluster, "omq.system.retry-workflow-instance", ids).await
        }
        OrderAction::Cancel { ids } => {
            each(cluster, "omq.system.cancel-workflow-instance", ids).await
        }
        OrderAction::Uncancel { ids } => {
            each(cluster, "omq.system.uncancel-workflow-instance", ids).await
        }
        OrderAction::Block { ids } => {
            each(cluster, "omq.system.block-workflow-instance", ids).await
        }
        OrderAction::Unblock { ids } => {
            each(cluster, "omq.system.unblock-workflow-instance", ids).await
        }
        OrderAction::SetError { ids } => {
            each(cluster, "omq.system.set-workflow-instance-error", ids).await
        }
        OrderAction::SkipStep { id, step } => {
            let (stepid, ind) = match step.split_once(':') {
                Some((s, i)) => (s, i),
                None => (step.as_str(), "0"),
            };
            let (Ok(stepid), Ok(ind)) = (stepid.parse::<i64>(), ind.parse::<i64>()) else {
                bail!("{step:?} is not STEPID[:IND], e.g. 12 or 12:3");
            };
            let body = json!({ "workflow_instanceid": id, "stepid": stepid, "ind": ind });
            status_reply(call_json(cluster, "omq.system.skip-step", body).await?);
            Ok(0)
        }
        OrderAction::Priority { id, priority } => {
            let body = json!({ "workflow_instanceid": id, "priority": priority });
            call_json(cluster, "omq.system.set-order-priority", body).await?;
            println!("order {id}: priority {priority}");
            Ok(0)
        }
        OrderAction::Reschedule { id, time } => {
            let at = parse_time(time).map_err(anyhow::Error::msg)?;
            let body = json!({ "workflow_instanceid": id, "scheduled": at });
            let reply = call_json(cluster, "omq.system.reschedule-order", body).await?;
            println!(
                "order {id}: {} at {}",
                reply["workflowstatus"].as_str().unwrap_or("?"),
                format_time(at)
            );
            Ok(0)
        }
        OrderAction::DynamicData { id, data } => {
            let patch = json_object(data, "the dynamic data")?;
            let body = json!({ "workflow_instanceid": id, "data": patch });
            call_json(cluster, "omq.system.update-dynamic-data", body).await?;
            println!("order {id}: dynamic data updated");
            Ok(0)
        }
        OrderAction::Keys { id, keys } => {
            let keys = json_object(keys, "the keys")?;
            let body = json!({ "workflow_instanceid": id, "orderkeys": keys });
            call_json(cluster, "omq.system.set-order-keys", body).await?;
            println!("order {id}: keys set");
            Ok(0)
        }
        OrderAction::Note { id, text } => {
            let body = json!({ "workflow_instanceid": id, "note": text.join(" ") });
            let reply = call_json(cluster, "omq.system.add-order-note", body).await?;
            println!("order {id}: note {} added", reply["noteid"]);
            Ok(0)
        }
    }
}

async fn call_json(cluster: &Cluster, method: &str, body: Value) -> anyhow::Result<Value> {
    let reply = cluster.call(method, body.to_string().into_bytes()).await?;
    serde_json::from_slice(&reply)
        .with_context(|| format!("the master's {method} reply is not JSON"))
}

/// Runs a status action on every id; a refusal is printed and the rest still run.
async fn each(cluster: &Cluster, method: &str, ids: &[i64]) -> anyhow::Result<u8> {
    let mut failed = false;
    for id in ids {
        match call_json(cluster, method, json!({ "workflow_instanceid": id })).await {
            Ok(reply) => status_reply(reply),
            Err(err) => match err.downcast_ref::<RemoteError>() {
                Some(remote) => {
                    eprintln!("order {id}: {remote}");
                    failed = true;
                }
                // No answer at all: the next id would fare no better.
                None => return Err(err),
            },
        }
    }
    Ok(u8::from(failed))
}

fn status_reply(reply: Value) {
    println!(
        "order {}: {} (was {})",
        reply["workflow_instanceid"],
        reply["workflowstatus"].as_str().unwrap_or("?"),
        reply["previous_workflowstatus"].as_str().unwrap_or("?")
    );
}

/// `NAME` or `NAME:VERSION`.
fn split_workflow(workflow: &str) -> (&str, Option<&str>) {
    match workflow.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (workflow, None),
    }
}

/// A JSON object given inline or as `@FILE`.
fn json_object(text: &str, what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let text = match text.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(Path::new(file))
            .with_context(|| format!("cannot read {what} from {file}"))?,
        None => text.to_string(),
    };
    match serde_json::from_str(&text).with_context(|| format!("{what} is not JSON"))? {
        Value::Object(map) => Ok(map),
        other => bail!("{what} must be a JSON object, not {other}"),
    }
}

fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), format_time)
}

fn print_order(o: &OrderInfo) {
    println!(
        "order {}: {}:{} (workflowid {})",
        o.workflow_instanceid, o.name, o.version, o.workflowid
    );
    let mut status = format!("{} ({})", o.workflowstatus, o.workflowstatus_code);
    if let Some(orig) = &o.status_orig {
        if matches!(o.workflowstatus_code.as_str(), "B" | "X") {
            status.push_str(&format!(", returns to {orig}"));
        }
    }
    if o.business_error {
        status.push_str(", business error");
    }
    println!("  status:      {status}");
    if o.sessionid != 0 {
        println!(
            "  owner:       {} (session {})",
            o.owner.as_deref().unwrap_or("?"),
            o.sessionid
        );
    }
    println!("  priority:    {}", o.priority);
    println!("  created:     {}", format_time(o.created));
    println!("  scheduled:   {}", time_or_dash(o.scheduled));
    if o.retry_trigger.is_some() {
        println!("  retry at:    {}", time_or_dash(o.retry_trigger));
    }
    println!("  completed:   {}", time_or_dash(o.completed));
    println!("  retries:     {}", o.retries);
    if let Some(parent) = o.parent_workflow_instanceid {
        println!("  parent:      {parent}");
    }
    if let Some(external) = &o.external_order_instanceid {
        println!("  external id: {external}");
    }
    let keys: Vec<String> = o
        .keys
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect();
    println!(
        "  keys:        {}",
        if keys.is_empty() {
            "-".to_string()
        } else {
            keys.join(" ")
        }
    );
    println!("  staticdata:  {}", o.staticdata);
    println!("  dynamicdata: {}", o.dynamicdata);
    if !o.steps.is_empty() {
        println!("  steps:");
        for s in &o.steps {
            let mut line = format!(
                "    {:<6} {}:{}[{}] {}",
                s.stepid, s.name, s.version, s.ind, s.stepstatus
            );
            if s.skip {
                line.push_str(" (skipped)");
            }
            if s.retries > 0 {
                line.push_str(&format!(" retries {}", s.retries));
            }
            if let Some(error) = &s.error {
                line.push_str(&format!(
                    " {error}: {}",
                    s.error_description.as_deref().unwrap_or("")
                ));
            }
            println!("{line}");
        }
    }
    if !o.errors.is_empty() {
        println!("  errors:");
        for e in &o.errors {
            println!(
                "    {} step {} {} ({}{}): {}",
                format_time(e.created),
                e.stepid.map_or_else(|| "-".to_string(), |s| s.to_string()),
                e.error,
                e.severity,
                if e.retry { ", retry" } else { "" },
                e.description.as_deref().unwrap_or("")
            );
        }
    }
    if !o.notes.is_empty() {
        println!("  notes:");
        for n in &o.notes {
            println!("    {} {}: {}", format_time(n.created), n.username, n.note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_names_and_json_arguments() {
        assert_eq!(split_workflow("WF"), ("WF", None));
        assert_eq!(split_workflow("WF:1.0"), ("WF", Some("1.0")));
        assert!(json_object(r#"{"a": 1}"#, "x").is_ok());
        assert!(json_object("[1]", "x").is_err());
        assert!(json_object("{", "x").is_err());
        assert!(json_object("@/nonexistent/file", "x").is_err());
    }

    #[test]
    fn every_order_command_parses() {
        use clap::Parser;
        for args in [
            vec!["order", "create", "WF:1.0", "--data", "{}"],
            vec!["order", "show", "1", "--json"],
            vec![
                "order",
                "list",
                "--status",
                "ERROR,RETRY",
                "--order-key",
                "id=7",
            ],
            vec!["order", "retry", "1", "2", "3"],
            vec!["order", "skip-step", "1", "12:3"],
            vec!["order", "priority", "1", "0"],
            vec!["order", "reschedule", "1", "now"],
            vec!["order", "dynamic-data", "1", "{}"],
            vec!["order", "keys", "1", "{}"],
            vec!["order", "note", "1", "a", "longer", "note"],
        ] {
            let mut all = vec!["sluice", "--key", "c.cert"];
            all.extend(&args);
            let parsed = crate::Cli::try_parse_from(&all);
            assert!(parsed.is_ok(), "{args:?}: {:?}", parsed.err());
        }
        assert!(crate::Cli::try_parse_from(["sluice", "order", "retry"]).is_err());
    }
}
