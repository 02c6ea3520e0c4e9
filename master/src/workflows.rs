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

use serde_json::{json, Map, Value};
use sluice_core::store::workflows::WorkflowSummary;
use sluice_core::store::StoreError;
use sluice_proto::v1::{Envelope, RegistryEntry};

use crate::api::Api;
use crate::supervisor::interface_network_id;
use crate::verbs::{
    db, interface_row, named_request, parse, start_if_due, to_json, Kind, Named, Refusal,
};

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

const WORKFLOW: Kind = Kind {
    name: "workflow",
    id_field: "workflowid",
    not_found: "UNKNOWN-WORKFLOW",
};

named_request! {
    struct WorkflowRef by workflowid {}
}

named_request! {
    struct SetEnabled by workflowid {
        enabled: bool,
    }
}

named_request! {
    struct SetAutostart by workflowid {
        autostart: i64,
    }
}

/// The workflow a request names.
async fn find(api: &Api, named: Named<'_>) -> Result<WorkflowSummary, Refusal> {
    WORKFLOW
        .find(
            named,
            async |id| api.store.workflow_by_id(id).await,
            async |name, version| api.store.find_workflow(name, version).await,
        )
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

/// Serves a switch verb: commits the switch (`write`, given the workflow's id), then
/// starts or stops the workflow's process (`run`: whether the new value lets it run), and
/// answers with the new value.
async fn set_switch(
    api: &Api,
    user: &str,
    named: Named<'_>,
    (switch, value): (&str, Value),
    run: bool,
    write: impl AsyncFnOnce(i64) -> Result<bool, StoreError>,
) -> Result<Vec<u8>, Refusal> {
    let wf = find(api, named).await?;
    // The row first: from the commit of a disable on, the workflow takes no new order,
    // whatever its process does until it is stopped.
    let changed = write(wf.workflowid).await.map_err(db)?;
    tracing::info!(
        user,
        "workflow {}:{}: {switch} {value}",
        wf.name,
        wf.version
    );
    let process = if run {
        start_if_due(
            api,
            user,
            &interface_row(api, WORKFLOW.name, &wf.name, &wf.version).await?,
        )
    } else {
        stop(api, user, &wf).await.into()
    };
    to_json(&json!({
        "workflowid": wf.workflowid, "name": wf.name, "version": wf.version,
        switch: value, "changed": changed, "process": process,
    }))
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
            let wf = find(api, wanted.named()).await?;
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
            let switch = ("enabled", json!(r.enabled));
            set_switch(api, user, r.named(), switch, r.enabled, async |id| {
                api.store.set_workflow_enabled(id, r.enabled).await
            })
            .await
        }
        "omq.system.set-workflow-autostart" => {
            let r: SetAutostart = parse(body)?;
            let switch = ("autostart", json!(r.autostart));
            set_switch(api, user, r.named(), switch, r.autostart != 0, async |id| {
                api.store.set_workflow_autostart(id, r.autostart).await
            })
            .await
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
    let id = crate::orders::create(api, user, request).await?;
    let mut last = String::from("READY");
    loop {
        match api.store.order_summary(id).await {
            Ok(Some(order)) if FINAL_STATUSES.contains(&order.workflowstatus_code.as_str()) => {
                break
            }
            Ok(Some(order)) => last = order.workflowstatus,
            Ok(None) => return Err(gone(id)),
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
        None => Err(gone(id)),
    }
}

fn gone(id: i64) -> Refusal {
    (
        "WORKFLOW-ORDER-NOT-FOUND",
        format!("order {id} was created but is gone"),
    )
}
