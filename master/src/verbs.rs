//! What the interface verbs ([`crate::jobs`], [`crate::workflows`], [`crate::services`])
//! share: reading request bodies, encoding replies, finding the interface a request names,
//! and reaching its process.

use std::time::Duration;

use serde::de::DeserializeOwned;
use sluice_core::bus::{BusError, Client};
use sluice_core::store::{InterfaceRow, StoreError};
use sluice_proto::v1::{Envelope, InterfaceRef, RegistryEntry};

use crate::api::Api;
use crate::supervisor::{ChildSpec, Command};

/// An error reply: code and description.
pub(crate) type Refusal = (&'static str, String);

/// Reads a JSON request body.
pub(crate) fn parse_strict<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        (
            "INVALID-ARGUMENT",
            format!("malformed request body (JSON expected): {e}"),
        )
    })
}

/// Reads a JSON request body, taking an empty one as an empty object: for verbs whose
/// fields are all optional, a caller need not send `{}`.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    parse_strict(body)
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value)
        .map_err(|e| ("INTERNAL-ERROR", format!("cannot encode the reply: {e}")))
}

/// The refusal for a failed store call: a value the store rejects is the caller's mistake.
pub(crate) fn db(err: StoreError) -> Refusal {
    if let StoreError::Invalid(msg) = err {
        return ("INVALID-ARGUMENT", msg);
    }
    tracing::error!("system database: {err}");
    (
        "DATABASE-ERROR",
        format!("the system database failed: {err}"),
    )
}

/// Declares a request body that names an interface by `name` (with `version`, else the
/// newest loaded one) or by the id field given after `by`, followed by the verb's own
/// fields. One struct rather than `#[serde(flatten)]`: flattening would drop the list of
/// accepted fields from `deny_unknown_fields`' message, and callers see that message.
macro_rules! named_request {
    (
        $(#[$attr:meta])*
        struct $name:ident by $id:ident {
            $($(#[$field_attr:meta])* $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            version: Option<String>,
            #[serde(default)]
            $id: Option<i64>,
            $($(#[$field_attr])* $field: $ty,)*
        }

        impl $name {
            fn named(&self) -> $crate::verbs::Named<'_> {
                $crate::verbs::Named {
                    name: self.name.as_deref(),
                    version: self.version.as_deref(),
                    id: self.$id,
                }
            }
        }
    };
}
pub(crate) use named_request;

/// How a request names an interface (see [`named_request`]).
pub(crate) struct Named<'a> {
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
    pub id: Option<i64>,
}

/// A kind of interface whose verbs name one by name or by id.
pub(crate) struct Kind {
    /// As in interface rows and network ids: `job`, `workflow`.
    pub name: &'static str,
    /// The request field with the id: `jobid`, `workflowid`.
    pub id_field: &'static str,
    /// The code of the refusal when no such interface is loaded.
    pub not_found: &'static str,
}

impl Kind {
    /// The interface `named` names, looked up by id or by name and version (`None`: the
    /// newest loaded one).
    pub(crate) async fn find<T>(
        &self,
        named: Named<'_>,
        by_id: impl AsyncFnOnce(i64) -> Result<Option<T>, StoreError>,
        by_name: impl AsyncFnOnce(&str, Option<&str>) -> Result<Option<T>, StoreError>,
    ) -> Result<T, Refusal> {
        let Kind {
            name: kind,
            id_field,
            not_found,
        } = self;
        let version = named.version.filter(|v| !v.is_empty());
        let (found, what) = match (named.id, named.name) {
            (Some(id), None) => (
                by_id(id).await.map_err(db)?,
                format!("with {id_field} {id}"),
            ),
            (None, Some(name)) => (
                by_name(name, version).await.map_err(db)?,
                match version {
                    Some(version) => format!("{name}:{version}"),
                    None => name.to_string(),
                },
            ),
            (Some(_), Some(_)) => {
                return Err((
                    "INVALID-ARGUMENT",
                    format!("name a {kind} by name (and version) or by {id_field}, not both"),
                ))
            }
            (None, None) => {
                return Err((
                    "INVALID-ARGUMENT",
                    format!("the request names no {kind}: give name (and version) or {id_field}"),
                ))
            }
        };
        found.ok_or_else(|| (*not_found, format!("no {kind} {what} is loaded")))
    }
}

/// The interface row of `kind` `name`:`version` (empty: the newest loaded one): whether
/// anything keeps it from starting.
pub(crate) async fn interface_row(
    api: &Api,
    kind: &str,
    name: &str,
    version: &str,
) -> Result<InterfaceRow, Refusal> {
    api.find_interface(&InterfaceRef {
        r#type: kind.into(),
        name: name.into(),
        version: version.into(),
    })
    .await
}

/// Starts the process of the interface `row` describes when nothing keeps it from
/// starting ([`InterfaceRow::starts_by_itself`]); says what happened, for the reply.
pub(crate) fn start_if_due(api: &Api, user: &str, row: &InterfaceRow) -> String {
    if row.starts_by_itself() {
        if let Some(spec) = ChildSpec::for_interface(row) {
            tracing::info!(user, network_id = %spec.network_id, "starting the {}'s process", row.kind);
            api.supervisor.send(Command::Start(spec));
            return "starting".into();
        }
    }
    if !row.enabled {
        format!("not started: the {} is disabled", row.kind)
    } else if !row.autostart {
        "not started: its autostart is 0".into()
    } else {
        format!(
            "not started: the {} is in a disabled interface group",
            row.kind
        )
    }
}

/// Why a process's own socket cannot be reached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreachable {
    #[error("the process has no endpoint")]
    NoEndpoint,
    #[error("this master cannot call its children")]
    NoChildren,
    #[error("{0}")]
    Connect(BusError),
}

/// A connection to the own socket of the process `entry` describes.
pub(crate) fn connect(api: &Api, entry: &RegistryEntry) -> Result<Client, Unreachable> {
    let endpoint = entry.endpoints.first().ok_or(Unreachable::NoEndpoint)?;
    api.children
        .as_ref()
        .ok_or(Unreachable::NoChildren)?
        .connect(endpoint)
        .map_err(Unreachable::Connect)
}

/// Asks a process something that takes no arguments (`status`, `reset`, ...). A reply
/// with `error` set is still `Ok`: what it means is the caller's to say.
pub(crate) async fn ask(
    client: &Client,
    method: &str,
    timeout: Duration,
) -> Result<Envelope, BusError> {
    let request = Envelope {
        method: method.into(),
        ..Default::default()
    };
    client.call(request, timeout).await
}
