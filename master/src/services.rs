//! The service verbs of the system API: calling a method (`omq.system.call-service`),
//! listing, loading, unloading and resetting services. Bodies are JSON.
//!
//! A call is routed to the service's own process with the registry the supervisor keeps
//! in memory (no database read, no message to the supervisor actor), over a connection
//! kept per process; a service that is not loaded is loaded first, and the call waits
//! for it. The service process does the rest (method checks, the service lock, the
//! deadline), so its error codes reach the caller unchanged.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::host_api::{ServiceCall, SERVICE_CALL_TIMEOUT};
use sluice_proto::v1::{envelope::Kind, Envelope, RegistryEntry};

use crate::api::{Api, CHILD_PREFIX};
use crate::supervisor::{ChildSpec, Command};
use crate::verbs::{self, parse_strict as parse, to_json, Refusal, Unreachable};

/// The verb served by [`call`] (it answers with a whole envelope: a method's error codes
/// are the service's, not a fixed set).
pub const CALL: &str = "omq.system.call-service";

/// The verbs [`handle`] serves.
pub const VERBS: &[&str] = &[
    "omq.system.list-services",
    "omq.system.get-service",
    "omq.system.load-service",
    "omq.system.unload-service",
    "omq.system.reset-service",
];

/// How long loading a service (its process, the runner, `init()`) may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a loaded service's process may take to say how it is.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reset (new code loaded, old calls drained, `stop()`) may take.
const RESET_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct CallBody {
    #[serde(flatten)]
    call: ServiceCall,
    /// A child forwarding a call from outside the system (the HTTP gateway) says so.
    #[serde(default)]
    external: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRef {
    name: String,
    #[serde(default)]
    version: Option<String>,
}

fn reply_to(request: &Envelope) -> Envelope {
    Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        ..Default::default()
    }
}

fn refuse(mut reply: Envelope, (code, description): Refusal) -> Envelope {
    reply.error = Some(sluice_proto::v1::Error {
        code: code.to_string(),
        description,
        ..Default::default()
    });
    reply
}

/// `omq.system.call-service`: `{"name", "version"?, "method", "args": [...]}`; the reply
/// body is the method's JSON result, or the error the method raised (code = the
/// exception's `err` or class name; `info_json` = type, message, traceback, info).
///
/// Any authenticated caller may call (RBAC's group checks come with the RBAC issue);
/// `internal` methods only from the master's children (other interfaces' code).
pub async fn call(api: &Api, user: &str, request: &Envelope) -> Envelope {
    let reply = reply_to(request);
    let body: CallBody = match serde_json::from_slice(&request.body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                reply,
                (
                    "INVALID-ARGUMENT",
                    format!(
                        "malformed call (JSON {{\"name\", \"method\", \"args\"}} expected): {e}"
                    ),
                ),
            )
        }
    };
    let external = body.external || !user.starts_with(CHILD_PREFIX);
    let version = body.call.version.as_deref().filter(|v| !v.is_empty());
    let deadline_ms = if request.deadline_ms > 0 {
        request.deadline_ms
    } else {
        sluice_core::now_ms() + SERVICE_CALL_TIMEOUT.as_millis() as i64
    };
    let entry = match running(api, &body.call.name, version) {
        Some(entry) => entry,
        None => match load(api, &body.call.name, version).await {
            Ok(entry) => entry,
            Err(refusal) => return refuse(reply, refusal),
        },
    };
    let client = match verbs::connect(api, &entry) {
        Ok(client) => client,
        Err(why) => {
            let why = match why {
                Unreachable::NoEndpoint => format!("service {} has no endpoint", body.call.name),
                Unreachable::Connect(e) => format!("cannot reach the service: {e}"),
                Unreachable::NoChildren => why.to_string(),
            };
            return refuse(reply, ("SERVICE-ERROR", why));
        }
    };
    let forward = Envelope {
        method: "call".into(),
        deadline_ms,
        body: json!({"method": body.call.method, "args": body.call.args, "external": external})
            .to_string()
            .into_bytes(),
        ..Default::default()
    };
    let left =
        Duration::from_millis(u64::try_from(deadline_ms - sluice_core::now_ms()).unwrap_or(0));
    // A little longer than the deadline: the service answers TIMEOUT itself, naming the
    // method, which says more than a bus timeout here. A process that dies meanwhile will
    // never answer: the registry says so at once, and the caller need not wait it out.
    let outcome = tokio::select! {
        answer = client.call(forward, left + Duration::from_millis(500)) => answer,
        () = ended(api, &entry) => {
            return refuse(
                reply,
                (
                    "SERVICE-ERROR",
                    format!(
                        "the process of service {} ended during the call of {}; an autostart \
                         service is restarted, and the next call loads any other",
                        body.call.name, body.call.method
                    ),
                ),
            )
        }
    };
    match outcome {
        Ok(answer) => Envelope {
            error: answer.error,
            body: answer.body,
            ..reply
        },
        Err(e) => refuse(
            reply,
            (
                "TIMEOUT",
                format!(
                    "service {} did not answer {} in time: {e}",
                    body.call.name, body.call.method
                ),
            ),
        ),
    }
}

/// Resolves once the process of `entry` is gone (it died, or was restarted): a stopping
/// process still answers the calls it has.
async fn ended(api: &Api, entry: &RegistryEntry) {
    let mut watch = api.supervisor.watch_registry();
    loop {
        if !sluice_core::registry::still_serving(&watch.borrow_and_update(), entry) {
            return;
        }
        if watch.changed().await.is_err() {
            // The master is stopping: its shutdown ends the call some other way.
            std::future::pending::<()>().await;
        }
    }
}

/// The running process of service `name` (a given version, or any), from the registry.
fn running(api: &Api, name: &str, version: Option<&str>) -> Option<RegistryEntry> {
    let registry = api.supervisor.current_registry();
    sluice_core::registry::running_service(&registry, name, version).cloned()
}

/// Loads a service that is not running (starts its process) and waits until it serves.
async fn load(api: &Api, name: &str, version: Option<&str>) -> Result<RegistryEntry, Refusal> {
    let row = find(api, name, version).await?;
    if !row.enabled {
        return Err((
            "STATUS-ERROR",
            format!("service {}:{} is disabled", row.name, row.version),
        ));
    }
    if row.blocked {
        return Err((
            "STATUS-ERROR",
            format!(
                "service {}:{} is in a disabled interface group",
                row.name, row.version
            ),
        ));
    }
    let Some(spec) = ChildSpec::for_interface(&row) else {
        return Err(("INVALID-ARGUMENT", "not a service".into()));
    };
    let network_id = spec.network_id.clone();
    let mut watch = api.supervisor.watch_registry();
    tracing::info!(
        network_id,
        "loading service {}:{} for a call",
        row.name,
        row.version
    );
    api.supervisor.send(Command::Start(spec.clone()));
    let wait = async {
        // A start after a crash loop (failed) is a fresh chance; wait past that status.
        let mut seen_start = false;
        // The supervisor ignores a start while the process is stopping (an unload in
        // progress): once that process is gone, ask again.
        let mut stopping = false;
        loop {
            let entry = watch
                .borrow_and_update()
                .iter()
                .find(|e| e.network_id == network_id)
                .cloned();
            match entry {
                Some(e) if e.status == "running" => return Ok(e),
                Some(e) if e.status == "failed" && seen_start => {
                    return Err((
                        "SERVICE-LOAD-ERROR",
                        format!(
                            "service {}:{} failed to load; its log ({network_id}) says why",
                            row.name, row.version
                        ),
                    ))
                }
                Some(e) if e.status == "starting" || e.status == "restarting" => seen_start = true,
                Some(e) if e.status == "stopping" => stopping = true,
                None if stopping => {
                    stopping = false;
                    api.supervisor.send(Command::Start(spec.clone()));
                }
                _ => {}
            }
            if watch.changed().await.is_err() {
                return Err(("SHUTDOWN-IN-PROGRESS", "the master is stopping".into()));
            }
        }
    };
    let timed_out = || {
        (
            "SERVICE-LOAD-ERROR",
            format!(
                "service {}:{} did not load within {} s",
                row.name,
                row.version,
                LOAD_TIMEOUT.as_secs()
            ),
        )
    };
    let started = tokio::time::Instant::now();
    let entry = tokio::time::timeout(LOAD_TIMEOUT, wait)
        .await
        .map_err(|_| timed_out())??;
    // Registered is not ready: the process answers `status` only once init() has returned,
    // and with the reason when loading failed.
    let left = LOAD_TIMEOUT.saturating_sub(started.elapsed());
    ask(api, &entry, "status", left)
        .await
        .map_err(|(_, why)| ("SERVICE-LOAD-ERROR", why))?;
    Ok(entry)
}

/// Asks a running service's process something (`status`, `reset`).
async fn ask(
    api: &Api,
    entry: &RegistryEntry,
    method: &str,
    timeout: Duration,
) -> Result<Vec<u8>, Refusal> {
    let client = verbs::connect(api, entry).map_err(|why| match why {
        Unreachable::NoEndpoint => ("SERVICE-ERROR", "the service has no endpoint".to_string()),
        Unreachable::NoChildren | Unreachable::Connect(_) => ("SERVICE-ERROR", why.to_string()),
    })?;
    let answer = verbs::ask(&client, method, timeout)
        .await
        .map_err(|e| ("TIMEOUT", format!("{}: {e}", entry.network_id)))?;
    match answer.error {
        Some(e) => Err(("SERVICE-ERROR", format!("{}: {}", e.code, e.description))),
        None => Ok(answer.body),
    }
}

fn db(e: sluice_core::store::StoreError) -> Refusal {
    tracing::error!("system database: {e}");
    ("DATABASE-ERROR", e.to_string())
}

/// A service's row as listed: its definition and how its process is.
async fn describe(api: &Api, summary: &sluice_core::store::services::ServiceSummary) -> Value {
    let entry = running(api, &summary.name, Some(&summary.version));
    let (status, process) = match &entry {
        Some(e) => {
            let status = ask(api, e, "status", STATUS_TIMEOUT)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            let state = status
                .as_ref()
                .and_then(|s| s["status"].as_str().map(str::to_string))
                .unwrap_or_else(|| "loaded".into());
            (
                state,
                json!({"network_id": e.network_id, "pid": e.pid, "details": status}),
            )
        }
        None => {
            let registry = api.supervisor.current_registry();
            let other = registry.iter().find(|e| {
                e.network_id
                    == crate::supervisor::interface_network_id(
                        "service",
                        &summary.name,
                        &summary.version,
                    )
            });
            match other {
                Some(e) => (
                    e.status.clone(),
                    json!({"network_id": e.network_id, "pid": e.pid}),
                ),
                None => ("unloaded".to_string(), Value::Null),
            }
        }
    };
    json!({
        "serviceid": summary.serviceid,
        "name": summary.name,
        "version": summary.version,
        "desc": summary.desc,
        "autostart": summary.autostart,
        "enabled": summary.enabled,
        "status": status,
        "methods": summary.methods,
        "groups": summary.groups,
        "process": process,
    })
}

pub async fn handle(api: &Api, user: &str, method: &str, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    match method {
        "omq.system.list-services" => {
            let services = api.store.list_services().await.map_err(db)?;
            let mut out = Vec::new();
            for s in &services {
                out.push(describe(api, s).await);
            }
            to_json(&out)
        }
        "omq.system.get-service" => {
            let wanted: ServiceRef = parse(body)?;
            let row = find(api, &wanted.name, wanted.version.as_deref()).await?;
            let program = api
                .store
                .load_service(&row.name, &row.version)
                .await
                .map_err(db)?
                .ok_or(("SERVICE-NOT-FOUND", format!("no service {}", row.name)))?;
            let summary = api
                .store
                .list_services()
                .await
                .map_err(db)?
                .into_iter()
                .find(|s| s.serviceid == program.serviceid)
                .ok_or(("SERVICE-NOT-FOUND", format!("no service {}", row.name)))?;
            let mut out = describe(api, &summary).await;
            out["methods"] = program
                .methods
                .iter()
                .map(|m| {
                    json!({"name": m.name, "desc": m.description, "lock": m.lock.as_str(),
                           "internal": m.internal, "write": m.write})
                })
                .collect();
            out["class_name"] = json!(program.class_name);
            out["code_hash"] = json!(program.code_hash);
            out["state"] = api
                .store
                .service_state(program.serviceid)
                .await
                .map_err(db)?
                .unwrap_or(Value::Null);
            to_json(&out)
        }
        "omq.system.load-service" => {
            let wanted: ServiceRef = parse(body)?;
            let version = wanted.version.as_deref().filter(|v| !v.is_empty());
            let (entry, already) = match running(api, &wanted.name, version) {
                Some(entry) => (entry, true),
                None => {
                    tracing::info!(user, "load of service {} requested", wanted.name);
                    (load(api, &wanted.name, version).await?, false)
                }
            };
            to_json(
                &json!({"status": "loaded", "already": already, "network_id": entry.network_id}),
            )
        }
        "omq.system.unload-service" => {
            let wanted: ServiceRef = parse(body)?;
            let row = find(api, &wanted.name, wanted.version.as_deref()).await?;
            let network_id =
                crate::supervisor::interface_network_id("service", &row.name, &row.version);
            tracing::info!(user, network_id, "unload requested");
            if !api.supervisor.stop_one(&network_id).await {
                return Err((
                    "STATUS-ERROR",
                    format!("service {}:{} is not loaded", row.name, row.version),
                ));
            }
            to_json(&json!({"status": "unloaded", "network_id": network_id}))
        }
        "omq.system.reset-service" => {
            let wanted: ServiceRef = parse(body)?;
            let row = find(api, &wanted.name, wanted.version.as_deref()).await?;
            tracing::info!(
                user,
                "reset of service {}:{} requested",
                row.name,
                row.version
            );
            match running(api, &row.name, Some(&row.version)) {
                None => to_json(&json!({
                    "reset": false,
                    "message": format!("service {}:{} is not loaded; it runs the newest loaded code when it loads", row.name, row.version),
                })),
                Some(entry) => {
                    let text = ask(api, &entry, "reset", RESET_TIMEOUT)
                        .await
                        .map_err(|(_, d)| ("RESET-ERROR", d))?;
                    to_json(&json!({"reset": true, "message": String::from_utf8_lossy(&text)}))
                }
            }
        }
        other => Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    }
}

/// The interface row of service `name` (a given version, else the newest loaded one).
async fn find(
    api: &Api,
    name: &str,
    version: Option<&str>,
) -> Result<sluice_core::store::InterfaceRow, Refusal> {
    verbs::interface_row(api, "service", name, version.unwrap_or_default())
        .await
        .map_err(|(code, desc)| {
            if code == "NOT-FOUND" {
                ("SERVICE-NOT-FOUND", desc)
            } else {
                (code, desc)
            }
        })
}
