//! The option verbs of the system API: `omq.system.get-options` (every option of the table
//! with the value in force, secrets redacted) and `omq.system.set-option`. Bodies are JSON.
//!
//! As in Qorus, an option the table does not mark startup-only may change while Sluice
//! runs: `set-option` checks the value with the options parser (an unknown option or a bad
//! value is `INVALID-ARGUMENT`, with the parser's message), puts it in force in the master
//! at once, and every child has it from its next heartbeat reply (within a second) and
//! every process started later from its bootstrap (see `sluice_core::options::LiveOptions`).
//! A startup-only option is refused with `OPTION-ERROR`, saying where the value goes. The
//! change lasts while the master runs: Sluice never writes the options file, which is the
//! operator's.

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::audit::AuditEventCode;
use sluice_core::options::{find, table, OptionDef, SetOptionError};

use crate::api::Api;
use crate::verbs::{parse, Refusal};

/// The verbs [`handle`] serves.
pub const VERBS: &[&str] = &["omq.system.get-options", "omq.system.set-option"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GetOptions {
    /// One option (`qorus.NAME` or `NAME`); absent: all of them.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetOption {
    name: String,
    /// As written in the options file; a number or a bool is taken as its text.
    value: Value,
}

/// `qorus.NAME` or `NAME` without the prefix.
fn bare(name: &str) -> &str {
    name.strip_prefix("qorus.").unwrap_or(name)
}

/// One option as `get-options` shows it.
fn option_json(def: &OptionDef, value: &str) -> Value {
    json!({
        "name": def.qualified_name(),
        "value": value,
        "type": def.kind.label(),
        "default": def.default,
        "startup_only": def.startup_only,
        "description": def.description,
    })
}

/// Serves one option verb.
pub(crate) async fn handle(
    api: &Api,
    user: &str,
    request: &sluice_proto::v1::Envelope,
) -> Result<Vec<u8>, Refusal> {
    let (method, body) = (request.method.as_str(), request.body.as_slice());
    // Redacted: the system database's password never leaves the master.
    let values = api.options.current().describe();
    let value_of = |def: &OptionDef| {
        values
            .iter()
            .find(|(name, _)| *name == def.qualified_name())
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match method {
        "omq.system.get-options" => {
            let wanted: GetOptions = parse(body)?;
            let reply = match wanted.name.as_deref() {
                None => Value::Array(
                    table()
                        .iter()
                        .map(|def| option_json(def, &value_of(def)))
                        .collect(),
                ),
                Some(name) => {
                    let def = find(bare(name))
                        .ok_or_else(|| ("NOT-FOUND", format!("no option {name:?}")))?;
                    option_json(def, &value_of(def))
                }
            };
            Ok(reply.to_string().into_bytes())
        }
        "omq.system.set-option" => {
            let r: SetOption = parse(body)?;
            let value = match &r.value {
                Value::String(s) => s.clone(),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                other => {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!(
                            "the value of {} must be text (as written in the options file), \
                             not {other}",
                            r.name
                        ),
                    ))
                }
            };
            let now = api.options.set(&r.name, &value).map_err(|e| match e {
                SetOptionError::Invalid(message) => ("INVALID-ARGUMENT", message),
                e @ SetOptionError::StartupOnly(_) => ("OPTION-ERROR", e.to_string()),
            })?;
            // `set` succeeded, so the option exists.
            let def = find(bare(&r.name))
                .ok_or_else(|| ("NOT-FOUND", format!("no option {:?}", r.name)))?;
            let shown = now
                .describe()
                .into_iter()
                .find(|(name, _)| *name == def.qualified_name())
                .map(|(_, v)| v)
                .unwrap_or_default();
            // What the master itself holds changes here; the supervisor reads its restart
            // policy, and audit its codes, at each use, and children learn the change from
            // their next heartbeat reply.
            if def.name == "max-events" {
                api.events.set_capacity(now.max_events());
            }
            tracing::info!(
                user,
                option = def.qualified_name(),
                value = %shown,
                "option changed while running"
            );
            sluice_core::audit::record(
                &now,
                &api.store,
                AuditEventCode::ApiCall,
                crate::api::audit_caller(user, request),
                Some(format!("{}={shown}", def.qualified_name())),
                Some(method.to_string()),
            )
            .await;
            Ok(option_json(def, &shown).to_string().into_bytes())
        }
        other => Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    }
}
