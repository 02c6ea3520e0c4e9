//! Client commands over the cluster API (ZeroMQ with CURVE), authenticated by a registered
//! client key.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use prost::Message;
use sluice_core::bus::Bus;
use sluice_core::keys;
use sluice_core::options::Options;
use sluice_proto::v1::{
    Envelope, EventList, EventQuery, InterfaceList, InterfaceRef, SystemStatus,
};

/// How to reach the cluster API.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The master's cluster API endpoint (default: the first of qorus.cluster-api).
    #[arg(long, global = true, value_name = "ENDPOINT")]
    pub cluster: Option<String>,
    /// Your client certificate, from `sluice keys gen --out FILE` (registered with
    /// `sluice keys register`).
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The cluster's public key, Z85 (`sluice keys public` prints it); default: derived
    /// from the local qorus.network-key file.
    #[arg(long, global = true, value_name = "Z85", allow_hyphen_values = true)]
    pub server_key: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum ClientAction {
    /// Show the system status: instance, session, uptime, processes.
    Status,
    /// Print system events since an id (as JSON lines); --follow keeps waiting for more.
    Events {
        #[arg(long, default_value_t = 0)]
        since: u64,
        #[arg(long)]
        follow: bool,
    },
    /// List the loaded workflows, services and jobs with the state of their processes.
    Interfaces,
    /// Start the process of a workflow, service or job.
    Start {
        #[arg(value_parser = ["workflow", "service", "job"])]
        r#type: String,
        name: String,
        /// Default: the newest loaded version.
        #[arg(value_name = "VERSION")]
        iface_version: Option<String>,
    },
    /// Stop the process of a workflow, service or job.
    Stop {
        #[arg(value_parser = ["workflow", "service", "job"])]
        r#type: String,
        name: String,
        #[arg(value_name = "VERSION")]
        iface_version: Option<String>,
    },
    /// Reset a workflow: its running process reloads the newest loaded definition and code
    /// (steps already running finish with the code they started with).
    Reset {
        #[arg(value_parser = ["workflow"])]
        r#type: String,
        name: String,
        #[arg(value_name = "VERSION")]
        iface_version: Option<String>,
    },
    /// Ask the master to shut the node down.
    Shutdown,
    /// Create, inspect and act on workflow orders.
    Order {
        #[command(subcommand)]
        action: crate::orders::OrderAction,
    },
    /// Call, list, load, unload and reset services.
    Service {
        #[command(subcommand)]
        action: crate::services::ServiceAction,
    },
    /// Enable, disable and list interface groups.
    Group {
        #[command(subcommand)]
        action: crate::services::GroupAction,
    },
    /// List, show, run, activate, deactivate, schedule and reset jobs.
    Job {
        #[command(subcommand)]
        action: crate::jobs::JobAction,
    },
    /// Show the options a running instance has in force, or change one while it runs.
    Option {
        #[command(subcommand)]
        action: crate::runtime_options::OptionAction,
    },
}

/// An error the master answered a call with; it prints as `CODE: description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub code: String,
    pub description: String,
    /// Details the error carries, e.g. a service method's exception with its traceback.
    pub info: Option<serde_json::Value>,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for RemoteError {}

/// A connection to the master's cluster API, for command modules beside this one.
pub(crate) struct Cluster {
    client: sluice_core::bus::Client,
    endpoint: String,
    timeout: Duration,
}

impl Cluster {
    /// Calls `method`; an error reply is a [`RemoteError`].
    pub(crate) async fn call(&self, method: &str, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        call(&self.client, &self.endpoint, method, body, self.timeout).await
    }

    /// Like [`Cluster::call`], with the request's deadline set to the command's timeout,
    /// so the server gives up (and says so) when the command would.
    pub(crate) async fn call_with_deadline(
        &self,
        method: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Vec<u8>> {
        let request = Envelope {
            method: method.to_string(),
            deadline_ms: sluice_core::now_ms() + self.timeout.as_millis() as i64,
            body,
            ..Default::default()
        };
        send(
            &self.client,
            &self.endpoint,
            request,
            self.timeout + Duration::from_secs(1),
        )
        .await
    }
}

pub async fn run(
    options: &Options,
    conn: &Connection,
    action: &ClientAction,
) -> anyhow::Result<u8> {
    let endpoint = match &conn.cluster {
        Some(e) => e.clone(),
        None => options
            .cluster_api()
            .first()
            .cloned()
            .context("no --cluster endpoint and no qorus.cluster-api")?,
    };
    let Some(key_file) = &conn.key else {
        bail!("--key FILE is required: make one with `sluice keys gen --out FILE` and register it");
    };
    let client_key = crate::keys::load_certificate(key_file)?;
    let server_public = match &conn.server_key {
        Some(z85) => keys::z85_decode(z85)?,
        None => *keys::load_key_file(&options.network_key())
            .context("no --server-key given and the local cluster key cannot be read")?
            .public(),
    };
    let bus = Bus::client()?;
    let client = bus.connect(&endpoint, &server_public, &client_key)?;
    let timeout = Duration::from_secs(conn.timeout);
    let call = |method: &'static str, body: Vec<u8>, timeout: Duration| {
        call(&client, &endpoint, method, body, timeout)
    };
    match action {
        ClientAction::Status => {
            let body = call("omq.system.get-status", Vec::new(), timeout).await?;
            let s = SystemStatus::decode(body.as_slice())?;
            print!("{}", sluice_core::report::status_text(&s));
        }
        ClientAction::Events { since, follow } => {
            let mut since = *since;
            loop {
                let query = EventQuery {
                    since_id: since,
                    wait_ms: if *follow { 30_000 } else { 0 },
                    ..Default::default()
                };
                let body = call(
                    "omq.system.get-events",
                    query.encode_to_vec(),
                    timeout + Duration::from_secs(35),
                )
                .await?;
                let list = EventList::decode(body.as_slice())?;
                for e in &list.events {
                    let info: serde_json::Value =
                        serde_json::from_slice(&e.info_json).unwrap_or_default();
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": e.id, "time": e.time_ms, "class": e.class_code,
                            "classstr": e.class_name, "event": e.event_code,
                            "eventstr": e.event_name, "severity": e.severity,
                            "severitystr": e.severity_name, "caller": e.caller, "info": info,
                        })
                    );
                    since = since.max(e.id);
                }
                if !follow {
                    break;
                }
            }
        }
        ClientAction::Interfaces => {
            let body = call("omq.system.list-interfaces", Vec::new(), timeout).await?;
            let list = InterfaceList::decode(body.as_slice())?;
            print!("{}", sluice_core::report::interfaces_text(&list));
        }
        ClientAction::Start {
            r#type,
            name,
            iface_version,
        }
        | ClientAction::Stop {
            r#type,
            name,
            iface_version,
        } => {
            let method = match action {
                ClientAction::Start { .. } => "omq.system.start-interface",
                _ => "omq.system.stop-interface",
            };
            let body = InterfaceRef {
                r#type: r#type.clone(),
                name: name.clone(),
                version: iface_version.clone().unwrap_or_default(),
            }
            .encode_to_vec();
            let reply = call(method, body, timeout).await?;
            let verb = if method.ends_with("start-interface") {
                "starting"
            } else {
                "stopped"
            };
            println!("{verb} {}", String::from_utf8_lossy(&reply));
        }
        ClientAction::Reset {
            r#type,
            name,
            iface_version,
        } => {
            let body = InterfaceRef {
                r#type: r#type.clone(),
                name: name.clone(),
                version: iface_version.clone().unwrap_or_default(),
            }
            .encode_to_vec();
            let reply = call("omq.system.reset-workflow", body, timeout).await?;
            println!("{}", String::from_utf8_lossy(&reply));
        }
        ClientAction::Shutdown => {
            call("omq.system.shutdown", Vec::new(), timeout).await?;
            println!("shutdown requested");
        }
        ClientAction::Order { action } => {
            let cluster = Cluster {
                client: client.clone(),
                endpoint: endpoint.clone(),
                timeout,
            };
            return crate::orders::run(&cluster, action).await;
        }
        ClientAction::Service { action } => {
            let cluster = Cluster {
                client: client.clone(),
                endpoint: endpoint.clone(),
                timeout,
            };
            return crate::services::run(&cluster, action).await;
        }
        ClientAction::Group { action } => {
            let cluster = Cluster {
                client: client.clone(),
                endpoint: endpoint.clone(),
                timeout,
            };
            return crate::services::run_group(&cluster, action).await;
        }
        ClientAction::Option { action } => {
            let cluster = Cluster {
                client: client.clone(),
                endpoint: endpoint.clone(),
                timeout,
            };
            return crate::runtime_options::run(&cluster, action).await;
        }
        ClientAction::Job { action } => {
            let cluster = |timeout| Cluster {
                client: client.clone(),
                endpoint: endpoint.clone(),
                timeout,
            };
            // `job run` waits for the run to end, which may take far longer than a call.
            let patient = cluster(timeout.max(crate::jobs::RUN_WAIT));
            return crate::jobs::run(&cluster(timeout), &patient, action).await;
        }
    }
    Ok(0)
}

async fn call(
    client: &sluice_core::bus::Client,
    endpoint: &str,
    method: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let request = Envelope {
        method: method.to_string(),
        body,
        ..Default::default()
    };
    send(client, endpoint, request, timeout).await
}

async fn send(
    client: &sluice_core::bus::Client,
    endpoint: &str,
    request: Envelope,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let reply = client.call(request, timeout).await.with_context(|| {
        format!(
            "no answer from {endpoint}: is the master running, and is your key registered \
             (the master refuses unknown keys without a reply)?"
        )
    })?;
    if let Some(err) = reply.error {
        return Err(RemoteError {
            code: err.code,
            description: err.description,
            info: serde_json::from_slice(&err.info_json).ok(),
        }
        .into());
    }
    Ok(reply.body)
}
