//! `sluice job ...`: jobs over the cluster API (`omq.system.list-jobs`, `get-job`,
//! `run-job`, `set-job-active`, `schedule-job`, `set-job-expiry`, `reset-job`; see
//! docs/jobs.md).
//!
//! A job is named `NAME` (the newest loaded version) or `NAME:VERSION`. An error the
//! master answers with prints as `CODE: description` and the command exits 1.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};
use sluice_core::store::orders::{format_time, parse_time};

use crate::client::Cluster;

/// How long `sluice job run` waits at least for the run to end (the master waits as long).
pub const RUN_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, Subcommand)]
pub enum JobAction {
    /// List the loaded jobs with their schedule, last and next run, and process status.
    List {
        /// Print the list as the master returns it (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Show a job and its 20 newest runs.
    Show {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
        #[arg(long)]
        json: bool,
    },
    /// List a job's runs, newest first.
    Instances {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
        /// Only runs in these statuses: IN-PROGRESS, COMPLETE, ERROR, CRASH (or I, C, E, Z).
        #[arg(long, value_delimiter = ',', value_name = "STATUS,...")]
        status: Vec<String>,
        /// At most this many (up to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Run a job now (after the run in progress, if any) and wait for it to end; exits 1
    /// unless the run ends COMPLETE.
    Run {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
    },
    /// Activate a job: it runs on its schedule again (its process is started).
    Activate {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
    },
    /// Deactivate a job: from the moment this returns no run of it starts (a run in
    /// progress finishes; its process then stops).
    Deactivate {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
    },
    /// Give a job a new schedule: a cron line "MINUTES HOURS DAYS MONTHS DOW", or --every.
    Schedule {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
        /// The five cron fields as one argument, e.g. "0 3 * * mon-fri".
        #[arg(
            value_name = "CRON",
            required_unless_present = "every",
            conflicts_with = "every"
        )]
        cron: Option<String>,
        /// Run every SECS seconds instead.
        #[arg(long, value_name = "SECS")]
        every: Option<u64>,
    },
    /// Set when a job expires (stops running for good), or `none`.
    Expiry {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
        /// RFC 3339 (2030-01-31T12:00:00Z), ms since the epoch, `now`, or `none`.
        #[arg(value_name = "DATE|none")]
        date: String,
    },
    /// Reset a job: its process loads the newest loaded definition and code (a run in
    /// progress finishes with the code it started with).
    Reset {
        #[arg(value_name = "NAME[:VERSION]")]
        job: String,
    },
}

/// `{"name": .., "version": ..}` for `NAME` or `NAME:VERSION`.
fn job_ref(job: &str) -> Value {
    match job.split_once(':') {
        Some((name, version)) => json!({ "name": name, "version": version }),
        None => json!({ "name": job }),
    }
}

async fn call_json(cluster: &Cluster, method: &str, body: Value) -> anyhow::Result<Value> {
    let reply = cluster.call(method, body.to_string().into_bytes()).await?;
    serde_json::from_slice(&reply)
        .with_context(|| format!("the master's {method} reply is not JSON"))
}

/// Runs a job command; returns the exit code. `patient` is the same connection with a
/// timeout long enough to wait for a run.
pub(crate) async fn run(
    cluster: &Cluster,
    patient: &Cluster,
    action: &JobAction,
) -> anyhow::Result<u8> {
    match action {
        JobAction::List { json } => {
            let reply = call_json(cluster, "omq.system.list-jobs", json!({})).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
                return Ok(0);
            }
            println!(
                "{:<24} {:<8} {:<6} {:<10} {:<18} {:<24} NEXT RUN",
                "NAME", "VERSION", "ACTIVE", "STATUS", "SCHEDULE", "LAST RUN"
            );
            for job in reply.as_array().map(Vec::as_slice).unwrap_or_default() {
                println!(
                    "{:<24} {:<8} {:<6} {:<10} {:<18} {:<24} {}",
                    text(&job["name"]),
                    text(&job["version"]),
                    job["active"].as_bool().unwrap_or(false),
                    text(&job["status"]),
                    schedule(job),
                    time(&job["last_executed"]),
                    time(&job["next_trigger"])
                );
            }
            Ok(0)
        }
        JobAction::Show { job, json } => {
            let reply = call_json(cluster, "omq.system.get-job", job_ref(job)).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_job(&reply);
            }
            Ok(0)
        }
        JobAction::Instances {
            job,
            status,
            limit,
            json,
        } => {
            let mut query = job_ref(job);
            query["limit"] = json!(limit);
            query["status"] = json!(status);
            let reply = call_json(cluster, "omq.system.get-job-instances", query).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_instances(reply.as_array().map(Vec::as_slice).unwrap_or_default());
            }
            Ok(0)
        }
        JobAction::Run { job } => {
            // A quick call first, so an unknown job or an unreachable master is reported
            // within the usual timeout, not after the long wait for a run.
            call_json(cluster, "omq.system.get-job", job_ref(job)).await?;
            let reply = call_json(patient, "omq.system.run-job", job_ref(job)).await?;
            let status = text(&reply["status"]);
            match reply.get("error").and_then(Value::as_str) {
                Some(error) => println!(
                    "job instance {}: {status}: {error}: {}",
                    reply["job_instanceid"],
                    text(&reply["error_description"])
                ),
                None => println!("job instance {}: {status}", reply["job_instanceid"]),
            }
            Ok(u8::from(status != "COMPLETE"))
        }
        JobAction::Activate { job } | JobAction::Deactivate { job } => {
            let active = matches!(action, JobAction::Activate { .. });
            let mut body = job_ref(job);
            body["active"] = json!(active);
            let reply = call_json(cluster, "omq.system.set-job-active", body).await?;
            println!(
                "job {}:{}: {}{} (process {})",
                text(&reply["name"]),
                text(&reply["version"]),
                if active { "active" } else { "inactive" },
                if reply["changed"].as_bool() == Some(false) {
                    " already"
                } else {
                    ""
                },
                text(&reply["process"])
            );
            Ok(0)
        }
        JobAction::Schedule { job, cron, every } => {
            let mut body = job_ref(job);
            match (cron, every) {
                (_, Some(secs)) => body["recurring"] = json!(secs),
                (Some(line), None) => body["schedule"] = json!(line),
                (None, None) => anyhow::bail!("give a cron line or --every SECS"),
            }
            let reply = call_json(cluster, "omq.system.schedule-job", body).await?;
            println!(
                "job {}:{}: {}; next run {}",
                text(&reply["name"]),
                text(&reply["version"]),
                schedule(&reply),
                time(&reply["next_trigger"])
            );
            Ok(0)
        }
        JobAction::Expiry { job, date } => {
            let mut body = job_ref(job);
            body["expiry_date"] = if date.eq_ignore_ascii_case("none") {
                Value::Null
            } else {
                json!(parse_time(date).map_err(anyhow::Error::msg)?)
            };
            let reply = call_json(cluster, "omq.system.set-job-expiry", body).await?;
            println!(
                "job {}:{}: expires {}",
                text(&reply["name"]),
                text(&reply["version"]),
                match reply["expiry_date"].as_i64() {
                    Some(ms) => format_time(ms),
                    None => "never".into(),
                }
            );
            Ok(0)
        }
        JobAction::Reset { job } => {
            let reply = call_json(cluster, "omq.system.reset-job", job_ref(job)).await?;
            println!("{}", text(&reply["message"]));
            Ok(0)
        }
    }
}

/// A string field, or `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn time(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), format_time)
}

/// The cron line, or `every N s`.
fn schedule(job: &Value) -> String {
    match (job["schedule"].as_str(), job["recurring"].as_i64()) {
        (Some(line), _) => line.to_string(),
        (None, Some(secs)) => format!("every {secs} s"),
        (None, None) => "-".into(),
    }
}

fn print_job(job: &Value) {
    println!(
        "job {}:{} (jobid {})",
        text(&job["name"]),
        text(&job["version"]),
        job["jobid"]
    );
    if let Some(desc) = job["desc"].as_str() {
        println!("  description:   {desc}");
    }
    println!("  status:        {}", text(&job["status"]));
    println!(
        "  active:        {} (enabled {})",
        job["active"], job["enabled"]
    );
    println!("  schedule:      {}", schedule(job));
    println!("  run skipped:   {}", job["run_skipped"]);
    println!("  expires:       {}", time(&job["expiry_date"]));
    println!(
        "  last run:      {} (instance {})",
        time(&job["last_executed"]),
        text(&job["last_executed_job_instanceid"])
    );
    println!("  next run:      {}", time(&job["next_trigger"]));
    println!("  class:         {}", text(&job["class_name"]));
    if let Some(instances) = job["instances"].as_array().filter(|i| !i.is_empty()) {
        println!("  recent runs:");
        print_instances(instances);
    }
}

fn print_instances(instances: &[Value]) {
    println!(
        "{:<10} {:<12} {:<24} {:<24} ERROR",
        "INSTANCE", "STATUS", "STARTED", "COMPLETED"
    );
    for i in instances {
        let error = match i["error"].as_str() {
            Some(error) => format!("{error}: {}", text(&i["error_description"])),
            None => String::new(),
        };
        println!(
            "{:<10} {:<12} {:<24} {:<24} {}",
            i["job_instanceid"],
            text(&i["status"]),
            time(&i["started"]),
            time(&i["completed"]),
            error
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_carry_an_optional_version() {
        assert_eq!(job_ref("J"), json!({"name": "J"}));
        assert_eq!(job_ref("J:1.0"), json!({"name": "J", "version": "1.0"}));
        assert_eq!(schedule(&json!({"schedule": "0 3 * * *"})), "0 3 * * *");
        assert_eq!(
            schedule(&json!({"schedule": null, "recurring": 5})),
            "every 5 s"
        );
    }

    #[test]
    fn every_job_command_parses() {
        use clap::Parser;
        for args in [
            vec!["job", "list"],
            vec!["job", "show", "J:1.0", "--json"],
            vec!["job", "instances", "J", "--status", "ERROR,CRASH"],
            vec!["job", "run", "J"],
            vec!["job", "activate", "J"],
            vec!["job", "deactivate", "J"],
            vec!["job", "schedule", "J", "*/5 * * * *"],
            vec!["job", "schedule", "J", "--every", "10"],
            vec!["job", "expiry", "J", "none"],
            vec!["job", "expiry", "J", "2030-01-31T12:00:00Z"],
            vec!["job", "reset", "J"],
        ] {
            let mut all = vec!["sluice", "--key", "c.cert"];
            all.extend(&args);
            let parsed = crate::Cli::try_parse_from(&all);
            assert!(parsed.is_ok(), "{args:?}: {:?}", parsed.err());
        }
        for bad in [
            vec!["sluice", "job", "schedule", "J"],
            vec![
                "sluice",
                "job",
                "schedule",
                "J",
                "* * * * *",
                "--every",
                "5",
            ],
        ] {
            assert!(crate::Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
