//! The option verbs of the system API: `omq.system.get-options` (every option of the table
//! with its value as the master read it at startup, secrets redacted) and
//! `omq.system.set-option`. Bodies are JSON.
//!
//! Qorus lets some options change while it runs; Sluice reads its options once, when the
//! master starts, and hands them to every process it starts. So `set-option` checks the
//! value with the options parser (an unknown option or a bad value is `INVALID-ARGUMENT`,
//! with the parser's message) and then refuses with `OPTION-ERROR`, saying where the value
//! goes to take effect at the next start. It never writes the options file: that file is
//! the operator's.

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::options::{find, table, OptionDef};

use crate::api::Api;

type Refusal = (&'static str, String);

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

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
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
pub(crate) fn handle(api: &Api, user: &str, method: &str, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    // Redacted: the system database's password never leaves the master.
    let values = api.options.describe();
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
            let name = bare(&r.name);
            // The parser's checks on a copy: the running options never change.
            let mut copy = (*api.options).clone();
            copy.set(name, &value)
                .map_err(|e| ("INVALID-ARGUMENT", e))?;
            let qualified: &str = find(name).map_or(name, |d| d.qualified_name());
            tracing::info!(
                user,
                option = qualified,
                "set-option refused: options are read at startup"
            );
            Err((
                "OPTION-ERROR",
                format!(
                    "{qualified} cannot change while Sluice runs: the master reads its options \
                     when it starts, so a new value takes effect only at the next start; put \
                     `{qualified}: VALUE` in {} (or give qorus.{name}=VALUE to sluice-master) \
                     and restart",
                    api.options.home().options_file().display()
                ),
            ))
        }
        other => Err(("UNKNOWN-METHOD", format!("no method {other:?}"))),
    }
}
