//! The workflow verbs of the system API: listing workflows (`omq.system.list-workflows`,
//! `get-workflow`), the two switches operators turn (`set-workflow-enabled`,
//! `set-workflow-autostart`), and `exec-synchronous`, which creates an order and answers
//! once it has ended. Bodies are JSON; `docs/cluster-api.md` documents each verb's shapes.
//!
//! A switch is committed first and only then is the workflow's process stopped or started,
//! by the same rule startup uses ([`sluice_core::store::InterfaceRow::starts_by_itself`]):
//! enabled, autostart above 0, and in no disabled interface group. A disabled workflow
//! takes no new orders whatever its process does meanwhile (the store checks `enabled`
//! when an order is created).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sluice_core::store::workflows::WorkflowSummary;
use sluice_core::store::{InterfaceRow, StoreError};
use sluice_proto::v1::{Envelope, InterfaceRef, RegistryEntry};

use crate::api::Api;
use crate::supervisor::{interface_network_id, ChildSpec, Command};

/// An error reply: code and description.
type Refusal = (&'static str, String);

/// The verb that waits for its order.
pub const EXEC_SYNCHRONOUS: &str = "omq.system.exec-synchronous";
/// Qorus's name for the same verb.
pub const EXEC_SYNCHRONOUS_WORKFLOW: &str = "omq.system.exec-synchronous-workflow";

/// The verbs [`handle`] serves.
pub const VERBS: &[&str] = &[
    "omq.system.list-workflows",
    "omq.system.get-workflow",
    "omq.system.set-workflow-enabled",
    "omq.system.set-workflow-autostart",
    EXEC_SYNCHRONOUS,
    EXEC_SYNCHRONOUS_WORKFLOW,
];

/// How long `exec-synchronous` waits when the request carries no deadline.
pub const SYNC_WAIT: Duration = Duration::from_secs(60);
/// The longest it waits whatever the deadline says.
const MAX_SYNC_WAIT: Duration = Duration::from_secs(3600);
/// How often it looks at the order.
const SYNC_POLL: Duration = Duration::from_millis(50);
/// It answers this long before the deadline, so that the answer arrives in time.
const SYNC_MARGIN: Duration = Duration::from_millis(500);
/// The statuses an order waits in for nobody but an operator: `exec-synchronous` answers
/// once its order has one (COMPLETE, ERROR, CANCELED, BLOCKED).
const FINAL_STATUSES: &[&str] = &["C", "E", "X", "B"];

/// Names a workflow: `name` (with `version`, else the newest loaded one), or `workflowid`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WorkflowRef {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    workflowid: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetEnabled {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    workflowid: Option<i64>,
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetAutostart {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    workflowid: Option<i64>,
    autostart: i64,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    // An empty body is an empty object, for verbs whose fields are all optional.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        (
            "INVALID-ARGUMENT",
            format!("malformed request body (JSON expected): {e}"),
        )
    })
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value)
        .map_err(|e| ("INTERNAL-ERROR", format!("cannot encode the reply: {e}")))
}

fn db(err: StoreError) -> Refusal {
    if let StoreError::Invalid(msg) = err {
        return ("INVALID-ARGUMENT", msg);
    }
    tracing::error!("system database: {err}");
    (
        "DATABASE-ERROR",
        format!("the system database failed: {err}"),
    )
}

/// The workflow a request names.
async fn find(api: &Api, wanted: &WorkflowRef) -> Result<WorkflowSummary, Refusal> {
    let version = wanted.version.as_deref().filter(|v| !v.is_empty());
    let found = match (wanted.workflowid, wanted.name.as_deref()) {
        (Some(id), None) => api.store.workflow_by_id(id).await.map_err(db)?,
        (None, Some(name)) => api.store.find_workflow(name, version).await.map_err(db)?,
        (Some(_), Some(_)) => {
            return Err((
                "INVALID-ARGUMENT",
                "name a workflow by name (and version) or by workflowid, not both".into(),
            ))
        }
        (None, None) => {
            return Err((
                "INVALID-ARGUMENT",
                "the request names no workflow: give name (and version) or workflowid".into(),
            ))
        }
    };
    found.ok_or_else(|| {
        let what = match (wanted.workflowid, wanted.name.as_deref(), version) {
            (Some(id), _, _) => format!("with workflowid {id}"),
            (None, Some(name), Some(version)) => format!("{name}:{version}"),
            (None, Some(name), None) => name.to_string(),
            (None, None, _) => String::new(),
        };
        ("UNKNOWN-WORKFLOW", format!("no workflow {what} is loaded"))
    })
}

/// The interface row of a workflow: whether anything keeps it from starting.
async fn row_of(api: &Api, wf: &WorkflowSummary) -> Result<InterfaceRow, Refusal> {
    api.find_interface(&InterfaceRef {
        r#type: "workflow".into(),
        name: wf.name.clone(),
        version: wf.version.clone(),
    })
    .await
}

/// A workflow as listed: its row, the state of its process, and its order counts by
/// status (Qorus's keys: `READY`, `COMPLETE`, ..., `TOTAL`).
fn workflow_json(wf: &WorkflowSummary, blocked: bool, registry: &[RegistryEntry]) -> Value {
    let network_id = interface_network_id("workflow", &wf.name, &wf.version);
    let process = registry.iter().find(|e| e.network_id == network_id);
    let mut out = Map::new();
    for (status, n) in &wf.order_counts {
        out.insert(status.clone(), json!(n));
    }
    let fields = json!({
        "workflowid": wf.workflowid,
        "name": wf.name,
        "version": wf.version,
        "desc": wf.desc,
        "autostart": wf.autostart,
        "max_instances": wf.max_instances,
        "enabled": wf.enabled,
        "blocked": blocked,
        "keylist": wf.keylist,
        "groups": wf.groups,
        "status": process.map_or("stopped", |p| p.status.as_str()),
        "network_id": process.map(|p| p.network_id.as_str()),
        "pid": process.map(|p| p.pid),
    });
    if let Value::Object(fields) = fields {
        out.extend(fields);
    }
    Value::Object(out)
}

/// Starts the workflow's process when it starts by itself; says what happened.
fn start_if_due(api: &Api, user: &str, row: &InterfaceRow) -> &'static str {
    if row.starts_by_itself() {
        if let Some(spec) = ChildSpec::for_interface(row) {
            tracing::info!(user, network_id = %spec.network_id, "starting the workflow's process");
            api.supervisor.send(Command::Start(spec));
            return "starting";
        }
    }
    if !row.enabled {
        "not started: the workflow is disabled"
    } else if !row.autostart {
        "not started: its autostart is 0"
    } else {
        "not started: the workflow is in a disabled interface group"
    }
}

/// Stops the workflow's process; says what happened.
async fn stop(api: &Api, user: &str, wf: &WorkflowSummary) -> &'static str {
    let network_id = interface_network_id("workflow", &wf.name, &wf.version);
    tracing::info!(user, %network_id, "stopping the workflow's process");
    if api.supervisor.stop_one(&network_id).await {
        "stopped"
    } else {
        "not running"
    }
}

/// Serves one workflow verb for `user`.
pub(crate) async fn handle(api: &Api, user: &str, request: &Envelope) -> Result<Vec<u8>, Refusal> {
    let body = request.body.as_slice();
    match request.method.as_str() {
        "omq.system.list-workflows" => {
            let _: Map<String, Value> = parse(body)?;
            let workflows = api.store.list_workflows().await.map_err(db)?;
            let rows = api.store.list_interfaces().await.map_err(db)?;
            let registry = api.supervisor.current_registry();
            let list: Vec<Value> = workflows
                .iter()
                .map(|wf| {
                    let blocked = rows
                        .iter()
                        .any(|r| r.kind == "workflow" && r.id == wf.workflowid && r.blocked);
                    workflow_json(wf, blocked, &registry)
                })
                .collect();
            to_json(&list)
        }
        "omq.system.get-workflow" => {
            let wanted: WorkflowRef = parse(body)?;
            let wf = find(api, &wanted).await?;
            let blocked = api
                .store
                .in_disabled_group("workflow", wf.workflowid)
                .await
                .map_err(db)?;
            let mut value = workflow_json(&wf, blocked, &api.supervisor.current_registry());
            value["steps"] = json!(api.store.workflow_steps(wf.workflowid).await.map_err(db)?);
            value["errors"] = json!(api.store.workflow_errors(wf.workflowid).await.map_err(db)?);
            to_json(&value)
        }
        "omq.system.set-workflow-enabled" => {
            let r: SetEnabled = parse(body)?;
            let wanted = WorkflowRef {
                name: r.name,
                version: r.version,
                workflowid: r.workflowid,
            };
            let wf = find(api, &wanted).await?;
            // The row first: from its commit on, the workflow takes no new order.
            let changed = api
                .store
                .set_workflow_enabled(wf.workflowid, r.enabled)
                .await
                .map_err(db)?;
            tracing::info!(
                user,
                "workflow {}:{} {}",
                wf.name,
                wf.version,
                if r.enabled { "enabled" } else { "disabled" }
            );
            let process = if r.enabled {
                start_if_due(api, user, &row_of(api, &wf).await?)
            } else {
                stop(api, user, &wf).await
            };
            to_json(&json!({
                "workflowid": wf.workflowid, "name": wf.name, "version": wf.version,
                "enabled": r.enabled, "changed": changed, "process": process,
            }))
        }
        "omq.system.set-workflow-autostart" => {
            let r: SetAutostart = parse(body)?;
            let wanted = WorkflowRef {
                name: r.name,
                version: r.version,
                workflowid: r.workflowid,
            };
            let wf = find(api, &wanted).await?;
            let changed = api
                .store
                .set_workflow_autostart(wf.workflowid, r.autostart)
                .await
                .map_err(db)?;
            tracing::info!(
                user,
                "workflow {}:{}: autostart {}",
                wf.name,
                wf.version,
                r.autostart
            );
            let process = if r.autostart == 0 {
                stop(api, user, &wf).await
            } else {
                start_if_due(api, user, &row_of(api, &wf).await?)
            };
            to_json(&json!({
                "workflowid": wf.workflowid, "name": wf.name, "version": wf.version,
                "autostart": r.autostart, "changed": changed, "process": process,
            }))
        }
        EXEC_SYNCHRONOUS | EXEC_SYNCHRONOUS_WORKFLOW => exec_synchronous(api, user, request).await,
        other => Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    }
}

/// Creates the order, then waits (bounded by the request's deadline) until it is
/// COMPLETE, ERROR, CANCELED or BLOCKED, and answers with it as `get-order-info` would.
async fn exec_synchronous(api: &Api, user: &str, request: &Envelope) -> Result<Vec<u8>, Refusal> {
    let started = sluice_core::now_ms();
    let most = started + MAX_SYNC_WAIT.as_millis() as i64;
    let deadline_ms = match request.deadline_ms {
        d if d > 0 => d.min(most),
        _ => started + SYNC_WAIT.as_millis() as i64,
    } - SYNC_MARGIN.as_millis() as i64;
    let id = crate::orders::create(api, user, EXEC_SYNCHRONOUS, &request.body).await?;
    let mut last = String::from("READY");
    loop {
        match api.store.order_summary(id).await {
            Ok(Some(order)) if FINAL_STATUSES.contains(&order.workflowstatus_code.as_str()) => {
                break
            }
            Ok(Some(order)) => last = order.workflowstatus,
            Ok(None) => {
                return Err((
                    "WORKFLOW-ORDER-NOT-FOUND",
                    format!("order {id} was created but is gone"),
                ))
            }
            // A database hiccup while waiting: the order goes on; look again.
            Err(err) => tracing::warn!("exec-synchronous: cannot read order {id}: {err}"),
        }
        if sluice_core::now_ms() >= deadline_ms {
            let network_id = match api.store.order_summary(id).await {
                Ok(Some(o)) => interface_network_id("workflow", &o.name, &o.version),
                _ => String::new(),
            };
            let running = api
                .supervisor
                .current_registry()
                .iter()
                .any(|e| e.network_id == network_id && e.status == "running");
            return Err((
                "TIMEOUT",
                format!(
                    "order {id} is still {last} after {} ms; it goes on (follow it with \
                     omq.system.get-order-info){}",
                    sluice_core::now_ms() - started,
                    if running {
                        ""
                    } else {
                        "; the workflow's process is not running"
                    }
                ),
            ));
        }
        tokio::time::sleep(SYNC_POLL).await;
    }
    match api.store.get_order(id).await.map_err(db)? {
        Some(info) => to_json(&info),
        None => Err((
            "WORKFLOW-ORDER-NOT-FOUND",
            format!("order {id} was created but is gone"),
        )),
    }
}
