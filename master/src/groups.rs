//! Interface groups: `omq.system.list-groups` and `omq.system.set-group-enabled`. JSON
//! bodies.
//!
//! Disabling a group stops its running members at once (workflows, services, jobs);
//! enabling it starts the members that would start with the system (workflows with
//! autostart, autostart services, active jobs) unless another of their groups is still
//! disabled. A job in a disabled group does not run even if its process is up: the job
//! engine checks the group in the same transaction that starts an instance.

use serde::Deserialize;
use serde_json::json;
use sluice_core::audit::AuditEventCode;
use sluice_core::events::{EventCode, Severity};
use sluice_proto::v1::Envelope;

use crate::api::Api;
use crate::supervisor::{interface_network_id, ChildSpec, Command};

type Refusal = (&'static str, String);

pub const VERBS: &[&str] = &["omq.system.list-groups", "omq.system.set-group-enabled"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetEnabled {
    group: String,
    enabled: bool,
}

fn db(e: sluice_core::store::StoreError) -> Refusal {
    match e {
        sluice_core::store::StoreError::Invalid(text) => ("INVALID-ARGUMENT", text),
        other => {
            tracing::error!("system database: {other}");
            ("DATABASE-ERROR", other.to_string())
        }
    }
}

pub async fn handle(api: &Api, user: &str, envelope: &Envelope) -> Result<Vec<u8>, Refusal> {
    let (method, body) = (envelope.method.as_str(), envelope.body.as_slice());
    match method {
        "omq.system.list-groups" => {
            let groups = api.store.list_groups().await.map_err(db)?;
            serde_json::to_vec(&groups).map_err(|e| ("INTERNAL-ERROR", e.to_string()))
        }
        "omq.system.set-group-enabled" => {
            let request: SetEnabled = serde_json::from_slice(body).map_err(|e| {
                (
                    "INVALID-ARGUMENT",
                    format!("malformed request body (JSON {{\"group\", \"enabled\"}}): {e}"),
                )
            })?;
            let changed = api
                .store
                .set_group_enabled(&request.group, request.enabled)
                .await
                .map_err(db)?
                .ok_or(("GROUP-NOT-FOUND", format!("no group {:?}", request.group)))?;
            let (stopped, started) = if changed {
                apply(api, &request.group, request.enabled).await?
            } else {
                (Vec::new(), Vec::new())
            };
            if changed {
                tracing::info!(
                    user,
                    group = %request.group,
                    "group {}: {} process(es) stopped, {} started",
                    if request.enabled { "enabled" } else { "disabled" },
                    stopped.len(),
                    started.len()
                );
                let info = json!({"name": request.group, "enabled": request.enabled});
                api.events.raise(
                    EventCode::GroupStatusChanged,
                    Severity::Info,
                    user,
                    info.clone(),
                );
                sluice_core::audit::record(
                    &api.options.current(),
                    &api.store,
                    AuditEventCode::GroupStatusChanged,
                    crate::api::audit_caller(user, envelope),
                    Some(info.to_string()),
                    None,
                )
                .await;
            }
            Ok(json!({
                "group": request.group, "enabled": request.enabled, "changed": changed,
                "stopped": stopped, "started": started,
            })
            .to_string()
            .into_bytes())
        }
        other => Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    }
}

/// Stops (disabled) or starts (enabled) the group's members; returns their network ids.
async fn apply(
    api: &Api,
    group: &str,
    enabled: bool,
) -> Result<(Vec<String>, Vec<String>), Refusal> {
    let groups = api.store.list_groups().await.map_err(db)?;
    let Some(found) = groups.iter().find(|g| g.name == group) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let rows = api.store.list_interfaces().await.map_err(db)?;
    let members: Vec<_> = rows
        .iter()
        .filter(|r| {
            found
                .members
                .iter()
                .any(|m| m.r#type == r.kind && m.id == r.id)
        })
        .collect();
    let (mut stopped, mut started) = (Vec::new(), Vec::new());
    for row in members {
        let network_id = interface_network_id(&row.kind, &row.name, &row.version);
        if !enabled {
            if api.supervisor.stop_one(&network_id).await {
                stopped.push(network_id);
            }
            continue;
        }
        // `rows` was read after the group changed, so `blocked` is about the other groups.
        if row.starts_by_itself() {
            if let Some(spec) = ChildSpec::for_interface(row) {
                api.supervisor.send(Command::Start(spec));
                started.push(network_id);
            }
        }
    }
    Ok((stopped, started))
}
