//! The order verbs of the system API (`omq.system.create-order`, `get-order-info`,
//! `search-orders` and the operator actions), served by [`crate::api::Api`].
//!
//! Request and reply bodies are JSON (user data travels as JSON inside the envelope); the
//! store does the work and decides every precondition (`sluice_core::store::orders`), this
//! module parses, raises Qorus's events, writes audit records and maps errors to the codes
//! clients see. `docs/cluster-api.md` documents each verb's shapes.

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::audit::AuditEventCode;
use sluice_core::events::{EventCode, Severity};
use sluice_core::options::Options;
use sluice_core::store::orders::{order_keys_from_json, parse_time};
use sluice_core::store::{
    status_name, AuditEvent, AuditTarget, NewOrder, OrderError, OrderQuery, StatusChange, Store,
    StoreError,
};
use sluice_proto::v1::Envelope;

use crate::api::Api;

/// An error reply: code and description.
type Refusal = (&'static str, String);

/// The verbs this module serves.
pub const VERBS: &[&str] = &[
    "omq.system.create-order",
    "omq.system.get-order-info",
    "omq.system.search-orders",
    "omq.system.retry-workflow-instance",
    "omq.system.cancel-workflow-instance",
    "omq.system.uncancel-workflow-instance",
    "omq.system.block-workflow-instance",
    "omq.system.unblock-workflow-instance",
    "omq.system.set-workflow-instance-error",
    "omq.system.reschedule-order",
    "omq.system.set-order-priority",
    "omq.system.skip-step",
    "omq.system.update-dynamic-data",
    "omq.system.set-order-keys",
    "omq.system.add-order-note",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderRef {
    workflow_instanceid: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reschedule {
    workflow_instanceid: i64,
    /// ms since the epoch, RFC 3339 text, `now`, or null (run when it can).
    #[serde(default)]
    scheduled: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Priority {
    workflow_instanceid: i64,
    priority: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkipStep {
    workflow_instanceid: i64,
    stepid: i64,
    #[serde(default)]
    ind: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DynamicData {
    workflow_instanceid: i64,
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderKeys {
    workflow_instanceid: i64,
    orderkeys: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    workflow_instanceid: i64,
    note: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        (
            "INVALID-ARGUMENT",
            format!("malformed request body (JSON expected): {e}"),
        )
    })
}

fn refused(err: OrderError) -> Refusal {
    if let OrderError::Store(store) = &err {
        if !matches!(store, StoreError::Invalid(_)) {
            tracing::error!("system database: {store}");
        }
    }
    (err.code(), err.to_string())
}

fn store_refused(err: StoreError) -> Refusal {
    refused(OrderError::Store(err))
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value)
        .map_err(|e| ("INTERNAL-ERROR", format!("cannot encode the reply: {e}")))
}

fn change_reply(change: &StatusChange) -> Value {
    json!({
        "workflow_instanceid": change.workflow_instanceid,
        "workflowstatus": status_name(&change.new),
        "workflowstatus_code": change.new,
        "previous_workflowstatus": status_name(&change.old),
    })
}

/// Serves one order verb for `user`.
pub(crate) async fn handle(api: &Api, user: &str, request: &Envelope) -> Result<Vec<u8>, Refusal> {
    let store = &api.store;
    let (method, body) = (request.method.as_str(), request.body.as_slice());
    match method {
        "omq.system.create-order" => {
            let id = create(api, user, request).await?;
            to_json(&json!({ "workflow_instanceid": id }))
        }
        "omq.system.get-order-info" => {
            let wanted: OrderRef = parse(body)?;
            let id = wanted.workflow_instanceid;
            match store.get_order(id).await.map_err(store_refused)? {
                Some(info) => to_json(&info),
                None => Err(refused(OrderError::NotFound(id))),
            }
        }
        "omq.system.search-orders" => {
            let query: OrderQuery = if body.is_empty() {
                OrderQuery::default()
            } else {
                parse(body)?
            };
            let found = store.search_orders(&query).await.map_err(store_refused)?;
            to_json(&found)
        }
        "omq.system.add-order-note" => {
            let note: Note = parse(body)?;
            let noteid = store
                .add_order_note(note.workflow_instanceid, user, &note.note)
                .await
                .map_err(refused)?;
            to_json(&json!({ "workflow_instanceid": note.workflow_instanceid, "noteid": noteid }))
        }
        _ => {
            let change = action(store, method, body).await?;
            tracing::info!(
                user,
                id = change.workflow_instanceid,
                old = status_name(&change.old),
                new = status_name(&change.new),
                "{method}"
            );
            let info = json!({
                "name": change.name, "version": change.version,
                "workflowid": change.workflowid,
                "workflow_instanceid": change.workflow_instanceid,
            });
            if change.old != change.new {
                let mut info = info.clone();
                info["old"] = json!(status_name(&change.old));
                info["new"] = json!(status_name(&change.new));
                api.events
                    .raise(EventCode::WorkflowStatusChanged, Severity::Info, user, info);
                audit(
                    &api.options.current(),
                    store,
                    AuditEventCode::WorkflowStatusChange,
                    crate::api::audit_caller(user, request),
                    (change.workflowid, change.workflow_instanceid),
                    Some(status_name(&change.new).to_string()),
                    Some(status_name(&change.old).to_string()),
                )
                .await;
            }
            if method == "omq.system.update-dynamic-data" {
                api.events
                    .raise(EventCode::WorkflowDataUpdated, Severity::Info, user, info);
            }
            to_json(&change_reply(&change))
        }
    }
}

/// Creates an order (`create-order`'s body), raises `WORKFLOW_DATA_SUBMITTED` and writes
/// the audit record; `exec-synchronous` creates its orders the same way.
pub(crate) async fn create(api: &Api, user: &str, request: &Envelope) -> Result<i64, Refusal> {
    let store = &api.store;
    let body = request.body.as_slice();
    let raw: Value = parse(body)?;
    let order: NewOrder = serde_json::from_value(raw)
        .map_err(|e| ("ORDER-DATA-ERROR", format!("invalid order: {e}")))?;
    let id = store.create_order(&order).await.map_err(refused)?;
    // The order is committed; failing to describe it only costs its event.
    let summary = match store.order_summary(id).await {
        Ok(summary) => summary,
        Err(err) => {
            tracing::warn!("order {id} created, but cannot be read for its event: {err}");
            None
        }
    };
    if let Some(summary) = summary {
        tracing::info!(user, id, workflow = %summary.name, "order created");
        api.events.raise(
            EventCode::WorkflowDataSubmitted,
            Severity::Info,
            user,
            json!({
                "name": summary.name, "version": summary.version,
                "workflowid": summary.workflowid, "workflow_instanceid": id,
                "status": summary.workflowstatus,
            }),
        );
        audit(
            &api.options.current(),
            store,
            AuditEventCode::WorkflowDataCreated,
            crate::api::audit_caller(user, request),
            (summary.workflowid, id),
            Some(format!("{}:{}", summary.name, summary.version)),
            Some(summary.workflowstatus),
        )
        .await;
    }
    Ok(id)
}

/// The actions that change one order and answer with its status.
async fn action(store: &Store, method: &str, body: &[u8]) -> Result<StatusChange, Refusal> {
    let result = match method {
        "omq.system.retry-workflow-instance" => {
            store
                .retry_order(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.cancel-workflow-instance" => {
            store
                .cancel_order(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.uncancel-workflow-instance" => {
            store
                .uncancel_order(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.block-workflow-instance" => {
            store
                .block_order(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.unblock-workflow-instance" => {
            store
                .unblock_order(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.set-workflow-instance-error" => {
            store
                .set_order_error(parse::<OrderRef>(body)?.workflow_instanceid)
                .await
        }
        "omq.system.reschedule-order" => {
            let r: Reschedule = parse(body)?;
            let at = match &r.scheduled {
                Value::Null => None,
                Value::Number(n) => Some(
                    n.as_i64()
                        .ok_or_else(|| ("INVALID-ARGUMENT", format!("{n} is not a time in ms")))?,
                ),
                Value::String(s) => Some(parse_time(s).map_err(|e| ("INVALID-ARGUMENT", e))?),
                other => {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!("scheduled must be ms, RFC 3339 text or null, not {other}"),
                    ))
                }
            };
            store.reschedule_order(r.workflow_instanceid, at).await
        }
        "omq.system.set-order-priority" => {
            let p: Priority = parse(body)?;
            store
                .set_order_priority(p.workflow_instanceid, p.priority)
                .await
        }
        "omq.system.skip-step" => {
            let s: SkipStep = parse(body)?;
            store
                .skip_step(s.workflow_instanceid, s.stepid, s.ind)
                .await
        }
        "omq.system.update-dynamic-data" => {
            let d: DynamicData = parse(body)?;
            store
                .update_dynamic_data(d.workflow_instanceid, &d.data)
                .await
        }
        "omq.system.set-order-keys" => {
            let k: OrderKeys = parse(body)?;
            let keys = order_keys_from_json(k.orderkeys).map_err(|e| ("ORDER-KEY-ERROR", e))?;
            store.set_order_keys(k.workflow_instanceid, &keys).await
        }
        other => return Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    };
    result.map_err(refused)
}

/// Writes an audit record about an order when `qorus.audit` enables its code (as
/// `sluice_core::audit::record` does, plus the order and workflow it concerns). A failed
/// write is logged and does not undo the action.
async fn audit(
    options: &Options,
    store: &Store,
    code: AuditEventCode,
    caller: sluice_core::audit::Caller<'_>,
    (workflowid, workflow_instanceid): (i64, i64),
    info1: Option<String>,
    info2: Option<String>,
) {
    if !options.audits(code.option()) {
        return;
    }
    let event = AuditEvent {
        code: code.code(),
        user_event: None,
        reason: Some(caller.reason.to_string()),
        who: caller.who.to_string(),
        source: caller.source.to_string(),
        info1,
        info2,
    };
    let target = AuditTarget {
        workflowid: Some(workflowid),
        workflow_instanceid: Some(workflow_instanceid),
        ..Default::default()
    };
    if let Err(err) = store.insert_audit_event_for(&event, &target).await {
        tracing::error!("cannot write audit event {}: {err}", code.name());
    }
}
