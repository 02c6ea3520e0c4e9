//! The RPC method names and what each becomes: a master verb and its body.
//!
//! Three kinds of names, as in Qorus:
//!
//! - `omq.system.NAME`: the system API, one row of [`METHODS`] each. The RPC name is the
//!   master's verb (docs/cluster-api.md); the call's params become the verb's body:
//!   no params → `{}`; a single object param → the body as it is; otherwise the params
//!   in order, named by the row's [`Param`] list (fewer may be given: the rest are
//!   absent; `null` is passed as `null`). So `omq.system.retry-workflow-instance(42)`,
//!   `omq.system.retry-workflow-instance({"workflow_instanceid": 42})` and JSON-RPC's
//!   by-name `"params": {"workflow_instanceid": 42}` are one call.
//! - `omq.user.service.NAME.METHOD`: a service method, `omq.system.call-service` with
//!   `{"name": NAME, "method": METHOD, "args": [params...], "external": true}` (METHOD is
//!   the last dot-separated segment; service names have no dots).
//! - `system.listMethods`: the names above ([`list_methods`]), which the HTTP side
//!   answers itself from the loaded services ([`loaded_services`],
//!   [`exported_methods`]).
//!
//! Any other name (including the verbs only the master's own processes may call, such as
//! `omq.system.raise-event`) is `UNKNOWN-METHOD` (105) without asking the master. A
//! call from outside is always `external` (so `internal` service methods stay
//! internal), whatever its body says.
//!
//! Seven verbs take protobuf bodies ([`Body::Proto`]): the gateway builds their request
//! message from the same JSON body (the message's field names) and shows their reply as
//! JSON ([`status_json`], [`events_json`], [`interfaces_json`], [`registry_json`]).

use std::time::Duration;

use prost::Message;
use serde_json::{json, Map, Value};
use sluice_proto::v1::{
    Event, EventList, EventQuery, Interface, InterfaceList, InterfaceRef, Registry, SystemStatus,
};

use super::{RpcCall, RpcOutcome};
use crate::routes::StatusView;

/// The prefix of service method names: `omq.user.service.NAME.METHOD`.
pub const SERVICE_PREFIX: &str = "omq.user.service.";
/// The introspection method.
pub const LIST_METHODS: &str = "system.listMethods";
/// The verb that calls a service method.
pub const CALL_SERVICE: &str = "omq.system.call-service";
/// Longest wait of an `omq.system.get-events` long poll (the master's limit too).
pub const MAX_EVENT_WAIT: Duration = Duration::from_secs(60);

/// How a verb's request and reply bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// JSON both ways (UTF-8); an empty reply is `null`.
    Json,
    /// A protobuf message of `bus.proto`.
    Proto(Proto),
}

/// The protobuf verbs, by their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// No request body; the reply is a `SystemStatus`.
    Status,
    /// No request body; the reply is a `Registry`.
    Registry,
    /// An `EventQuery` (`since_id`, `class_code`, `event_code`, `limit`, `wait_ms`); the
    /// reply is an `EventList`.
    Events,
    /// No request body; the reply is an `InterfaceList`.
    Interfaces,
    /// An `InterfaceRef` (`type`, `name`, `version`); the reply is UTF-8 text (a network
    /// id, or what a reset did), shown as a JSON string.
    InterfaceRef,
    /// No request body and no reply body (`null`).
    Empty,
}

/// How one positional param becomes part of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The body's field of this name.
    Field(&'static str),
    /// A string is the field `text`, an integer the field `integer`: a job by name or
    /// by id, a schedule as cron text or as seconds.
    Either {
        text: &'static str,
        integer: &'static str,
    },
    /// An object whose fields join the body (`null`: none): `create-order`'s order
    /// parameters.
    Fields,
}

/// A field every body of a verb gets, replacing any the caller sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    Bool(bool),
    Text(&'static str),
}

impl Fixed {
    fn value(self) -> Value {
        match self {
            Fixed::Bool(b) => Value::Bool(b),
            Fixed::Text(text) => Value::String(text.to_string()),
        }
    }
}

/// How long the master may take to answer a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// A look-up: REST's timeout for `GET`.
    Read,
    /// It may wait for processes (a load, a start, a job run): REST's timeout for a
    /// change.
    Change,
    /// A long poll: a look-up plus this wait.
    LongPoll(Duration),
    /// A service method: the method's time limit
    /// (`sluice_core::host_api::SERVICE_CALL_TIMEOUT`), sent as the envelope's deadline
    /// too, so that the service answers `TIMEOUT` itself.
    ServiceCall,
}

/// One `omq.system.*` method.
#[derive(Debug, Clone, Copy)]
pub struct Method {
    /// The RPC name, which is the master's verb.
    pub name: &'static str,
    pub body: Body,
    /// What the positional params are, in order.
    pub params: &'static [Param],
    pub fixed: &'static [(&'static str, Fixed)],
    pub patience: Patience,
    pub summary: &'static str,
}

const M: Method = Method {
    name: "",
    body: Body::Json,
    params: &[],
    fixed: &[],
    patience: Patience::Change,
    summary: "",
};

const ORDER: &[Param] = &[Param::Field("workflow_instanceid")];
const JOB: Param = Param::Either {
    text: "name",
    integer: "jobid",
};
const SERVICE: &[Param] = &[Param::Field("name"), Param::Field("version")];
const WORKFLOW: Param = Param::Either {
    text: "name",
    integer: "workflowid",
};

/// The system API as RPC methods. docs/rpc.md shows this table (a test keeps it current).
pub const METHODS: &[Method] = &[
    // ---- the system --------------------------------------------------------------------
    Method {
        name: "omq.system.get-status",
        body: Body::Proto(Proto::Status),
        patience: Patience::Read,
        summary: "the master and every process (as `GET /api/latest/system`)",
        ..M
    },
    Method {
        name: "omq.system.get-registry",
        body: Body::Proto(Proto::Registry),
        patience: Patience::Read,
        summary: "`{\"version\", \"entries\": [processes]}`",
        ..M
    },
    Method {
        name: "omq.system.get-events",
        body: Body::Proto(Proto::Events),
        params: &[
            Param::Field("since_id"),
            Param::Field("class_code"),
            Param::Field("event_code"),
            Param::Field("limit"),
            Param::Field("wait_ms"),
        ],
        patience: Patience::Read,
        summary: "`{\"events\": [...], \"last_id\"}`; waits up to `wait_ms` (at most 60 s) for one",
        ..M
    },
    Method {
        name: "omq.system.list-interfaces",
        body: Body::Proto(Proto::Interfaces),
        patience: Patience::Read,
        summary: "every workflow, service and job with its status",
        ..M
    },
    Method {
        name: "omq.system.start-interface",
        body: Body::Proto(Proto::InterfaceRef),
        params: &[
            Param::Field("type"),
            Param::Field("name"),
            Param::Field("version"),
        ],
        summary: "starts a workflow, service or job; the process's network id",
        ..M
    },
    Method {
        name: "omq.system.stop-interface",
        body: Body::Proto(Proto::InterfaceRef),
        params: &[
            Param::Field("type"),
            Param::Field("name"),
            Param::Field("version"),
        ],
        summary: "stops it; the network id, once stopped",
        ..M
    },
    Method {
        name: "omq.system.reset-workflow",
        body: Body::Proto(Proto::InterfaceRef),
        params: SERVICE,
        fixed: &[("type", Fixed::Text("workflow"))],
        summary: "reloads a running workflow's code; what it did, as text",
        ..M
    },
    Method {
        name: "omq.system.shutdown",
        body: Body::Proto(Proto::Empty),
        summary: "shuts the system down; `null`, before the shutdown starts",
        ..M
    },
    // ---- orders ------------------------------------------------------------------------
    Method {
        name: "omq.system.create-order",
        params: &[
            Param::Field("name"),
            Param::Field("version"),
            Param::Fields,
            Param::Field("status"),
        ],
        summary: "Qorus's `(name, version, params, status)`: `params` holds `staticdata`, \
                  `dynamicdata`, `orderkeys`, `priority`, ...; `{\"workflow_instanceid\"}`",
        ..M
    },
    Method {
        name: "omq.system.get-order-info",
        params: ORDER,
        patience: Patience::Read,
        summary: "the order with its steps, errors, keys and notes",
        ..M
    },
    Method {
        name: "omq.system.search-orders",
        patience: Patience::Read,
        summary: "one object param, the query (`name`, `status`, `keyname`, `keyvalue`, \
                  `mindate`, `maxdate`, `limit`, ...); a list of orders",
        ..M
    },
    Method {
        name: "omq.system.retry-workflow-instance",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.cancel-workflow-instance",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.uncancel-workflow-instance",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.block-workflow-instance",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.unblock-workflow-instance",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.set-workflow-instance-error",
        params: ORDER,
        summary: "the order's new status",
        ..M
    },
    Method {
        name: "omq.system.reschedule-order",
        params: &[
            Param::Field("workflow_instanceid"),
            Param::Field("scheduled"),
        ],
        summary: "`scheduled`: ms, RFC 3339 text, or null for as soon as it can",
        ..M
    },
    Method {
        name: "omq.system.set-order-priority",
        params: &[
            Param::Field("workflow_instanceid"),
            Param::Field("priority"),
        ],
        summary: "priority 0 (first) to 999",
        ..M
    },
    Method {
        name: "omq.system.skip-step",
        params: &[
            Param::Field("workflow_instanceid"),
            Param::Field("stepid"),
            Param::Field("ind"),
        ],
        summary: "`ind` defaults to 0",
        ..M
    },
    Method {
        name: "omq.system.update-dynamic-data",
        params: &[Param::Field("workflow_instanceid"), Param::Field("data")],
        summary: "merges `data` into the dynamic data (a null value deletes its key)",
        ..M
    },
    Method {
        name: "omq.system.set-order-keys",
        params: &[
            Param::Field("workflow_instanceid"),
            Param::Field("orderkeys"),
        ],
        summary: "each key named gets exactly the values given",
        ..M
    },
    Method {
        name: "omq.system.add-order-note",
        params: &[Param::Field("workflow_instanceid"), Param::Field("note")],
        summary: "`{\"workflow_instanceid\", \"noteid\"}`",
        ..M
    },
    // ---- workflows ---------------------------------------------------------------------
    Method {
        name: "omq.system.list-workflows",
        patience: Patience::Read,
        summary: "every workflow with its process status and order counts",
        ..M
    },
    Method {
        name: "omq.system.get-workflow",
        params: &[WORKFLOW, Param::Field("version")],
        patience: Patience::Read,
        summary: "a workflow (by name, or by workflowid: an integer) with its steps and errors",
        ..M
    },
    Method {
        name: "omq.system.set-workflow-enabled",
        params: &[WORKFLOW, Param::Field("enabled")],
        summary: "`{\"enabled\", \"changed\", \"process\"}`: disabled, its process stops",
        ..M
    },
    Method {
        name: "omq.system.set-workflow-autostart",
        params: &[WORKFLOW, Param::Field("autostart")],
        summary: "`{\"autostart\", \"changed\", \"process\"}`: 0 stops it, more starts it",
        ..M
    },
    Method {
        name: "omq.system.exec-synchronous",
        params: &[
            Param::Field("name"),
            Param::Field("version"),
            Param::Fields,
            Param::Field("status"),
        ],
        summary: "as `create-order`; the order once it is COMPLETE, ERROR, CANCELED or \
                  BLOCKED, else `TIMEOUT` after 60 s",
        ..M
    },
    Method {
        name: "omq.system.exec-synchronous-workflow",
        params: &[
            Param::Field("name"),
            Param::Field("version"),
            Param::Fields,
            Param::Field("status"),
        ],
        summary: "Qorus's name for `omq.system.exec-synchronous`",
        ..M
    },
    // ---- options -----------------------------------------------------------------------
    Method {
        name: "omq.system.get-options",
        params: &[Param::Field("name")],
        patience: Patience::Read,
        summary: "every option (or the one named) with its value, type, default and \
                  description",
        ..M
    },
    Method {
        name: "omq.system.set-option",
        params: &[Param::Field("name"), Param::Field("value")],
        summary: "changes an option while running (`OPTION-ERROR` for a startup-only one); \
                  returns it as `get-options` shows it",
        ..M
    },
    // ---- services ----------------------------------------------------------------------
    Method {
        name: CALL_SERVICE,
        params: &[
            Param::Field("name"),
            Param::Field("method"),
            Param::Field("args"),
        ],
        fixed: &[("external", Fixed::Bool(true))],
        patience: Patience::ServiceCall,
        summary: "the method's return value (as `omq.user.service.NAME.METHOD`)",
        ..M
    },
    Method {
        name: "omq.system.list-services",
        patience: Patience::Read,
        summary: "every service with its `status`",
        ..M
    },
    Method {
        name: "omq.system.get-service",
        params: SERVICE,
        patience: Patience::Read,
        summary: "the service, its methods, process and state data",
        ..M
    },
    Method {
        name: "omq.system.load-service",
        params: SERVICE,
        summary: "`{\"status\": \"loaded\", \"already\", \"network_id\"}` once it serves",
        ..M
    },
    Method {
        name: "omq.system.unload-service",
        params: SERVICE,
        summary: "`{\"status\": \"unloaded\", \"network_id\"}`",
        ..M
    },
    Method {
        name: "omq.system.reset-service",
        params: SERVICE,
        summary: "`{\"reset\", \"message\"}`",
        ..M
    },
    // ---- jobs --------------------------------------------------------------------------
    Method {
        name: "omq.system.list-jobs",
        patience: Patience::Read,
        summary: "every job with its last and next run",
        ..M
    },
    Method {
        name: "omq.system.get-job",
        params: &[JOB, Param::Field("version")],
        patience: Patience::Read,
        summary: "a job (by name, or by jobid: an integer) and its newest instances",
        ..M
    },
    Method {
        name: "omq.system.get-job-instances",
        params: &[JOB, Param::Field("limit"), Param::Field("status")],
        patience: Patience::Read,
        summary: "instances, newest first",
        ..M
    },
    Method {
        name: "omq.system.run-job",
        params: &[JOB],
        summary: "runs it now; `{\"job_instanceid\", \"status\", ...}` once it ended",
        ..M
    },
    Method {
        name: "omq.system.set-job-active",
        params: &[JOB, Param::Field("active")],
        summary: "`{\"active\", \"changed\", \"process\"}`",
        ..M
    },
    Method {
        name: "omq.system.schedule-job",
        params: &[
            JOB,
            Param::Either {
                text: "schedule",
                integer: "recurring",
            },
        ],
        summary: "a cron schedule `\"M H D Mon DOW\"`, or an integer: every N seconds",
        ..M
    },
    Method {
        name: "omq.system.set-job-expiry",
        params: &[JOB, Param::Field("expiry_date")],
        summary: "ms, RFC 3339 text, `\"now\"`, or null for never",
        ..M
    },
    Method {
        name: "omq.system.reset-job",
        params: &[JOB],
        summary: "reloads its code; `{\"reset\", \"message\", \"loaded\"}`",
        ..M
    },
    // ---- groups ------------------------------------------------------------------------
    Method {
        name: "omq.system.list-groups",
        patience: Patience::Read,
        summary: "groups with `enabled` and their members",
        ..M
    },
    Method {
        name: "omq.system.set-group-enabled",
        params: &[Param::Field("group"), Param::Field("enabled")],
        summary: "`{\"changed\", \"stopped\", \"started\"}`",
        ..M
    },
];

/// The `omq.system.*` method of this name.
pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// A call ready for the master.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub verb: &'static str,
    /// The envelope's body, encoded as [`Target::reply`] says.
    pub body: Vec<u8>,
    /// How the request was encoded and how the reply is to be read.
    pub reply: Body,
    pub patience: Patience,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    Master(Target),
    /// `system.listMethods`: the HTTP side answers with [`list_methods`].
    ListMethods,
}

fn invalid(desc: String) -> RpcOutcome {
    RpcOutcome::error("INVALID-ARGUMENT", desc)
}

/// What a call becomes; `Err` is the outcome to answer at once (`UNKNOWN-METHOD`, or
/// `INVALID-ARGUMENT` for params the method cannot take).
pub fn resolve(call: &RpcCall) -> Result<Dispatch, RpcOutcome> {
    if call.method == LIST_METHODS {
        return Ok(Dispatch::ListMethods);
    }
    if let Some(rest) = call.method.strip_prefix(SERVICE_PREFIX) {
        let (service, method) = rest
            .rsplit_once('.')
            .filter(|(s, m)| !s.is_empty() && !m.is_empty())
            .ok_or_else(|| RpcOutcome::unknown_method(&call.method))?;
        let body = json!({
            "name": service,
            "method": method,
            "args": call.params,
            "external": true,
        });
        return Ok(Dispatch::Master(Target {
            verb: CALL_SERVICE,
            body: body.to_string().into_bytes(),
            reply: Body::Json,
            patience: Patience::ServiceCall,
        }));
    }
    let method = method(&call.method).ok_or_else(|| RpcOutcome::unknown_method(&call.method))?;
    let fields = body_fields(method, &call.params).map_err(invalid)?;
    let (body, patience) = match method.body {
        Body::Json => (
            Value::Object(fields).to_string().into_bytes(),
            method.patience,
        ),
        Body::Proto(proto) => {
            let (body, long_poll) = encode_proto(method.name, proto, fields).map_err(invalid)?;
            (body, long_poll.map_or(method.patience, Patience::LongPoll))
        }
    };
    Ok(Dispatch::Master(Target {
        verb: method.name,
        body,
        reply: method.body,
        patience,
    }))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The params as the body's fields, by the rules of the module's doc.
fn body_fields(method: &Method, params: &[Value]) -> Result<Map<String, Value>, String> {
    let mut body = match params {
        [] => Map::new(),
        [Value::Object(object)] => object.clone(),
        _ if params.len() > method.params.len() => {
            let names: Vec<String> = method.params.iter().map(|p| param_name(*p)).collect();
            return Err(if names.is_empty() {
                format!(
                    "{} takes no positional params (at most one object); {} given",
                    method.name,
                    params.len()
                )
            } else {
                format!(
                    "{} takes at most {} positional param{} ({}); {} given",
                    method.name,
                    names.len(),
                    plural(names.len()),
                    names.join(", "),
                    params.len()
                )
            });
        }
        _ => {
            let mut body = Map::new();
            for (index, (param, value)) in method.params.iter().zip(params).enumerate() {
                let position = index + 1;
                let mut put = |name: &str, value: Value| {
                    if body.contains_key(name) {
                        return Err(format!("{}: field {name} is given twice", method.name));
                    }
                    body.insert(name.to_string(), value);
                    Ok(())
                };
                match (param, value) {
                    (Param::Field(name), value) => put(name, value.clone())?,
                    (Param::Either { text, .. }, Value::String(_)) => put(text, value.clone())?,
                    (Param::Either { integer, .. }, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                        put(integer, value.clone())?
                    }
                    (Param::Either { text, integer }, other) => {
                        return Err(format!(
                            "{}: param {position} is a {text} (a string) or a {integer} (an integer), not {other}",
                            method.name
                        ))
                    }
                    (Param::Fields, Value::Object(object)) => {
                        for (name, value) in object {
                            put(name, value.clone())?;
                        }
                    }
                    (Param::Fields, Value::Null) => {}
                    (Param::Fields, other) => {
                        return Err(format!(
                            "{}: param {position} is an object (fields of the request), not {other}",
                            method.name
                        ))
                    }
                }
            }
            body
        }
    };
    for (name, fixed) in method.fixed {
        body.insert(name.to_string(), fixed.value());
    }
    Ok(body)
}

/// How a param is named in messages and docs.
fn param_name(param: Param) -> String {
    match param {
        Param::Field(name) => name.to_string(),
        Param::Either { text, integer } => format!("{text} or {integer}"),
        Param::Fields => "params".to_string(),
    }
}

/// The positional signature of a method, as docs/rpc.md shows it: `(workflow_instanceid)`.
pub fn signature(method: &Method) -> String {
    let names: Vec<String> = method.params.iter().map(|p| param_name(*p)).collect();
    format!("({})", names.join(", "))
}

/// The request message of a protobuf verb, from its JSON fields, and the wait of a long
/// poll.
fn encode_proto(
    verb: &str,
    proto: Proto,
    mut fields: Map<String, Value>,
) -> Result<(Vec<u8>, Option<Duration>), String> {
    let allowed: &[&str] = match proto {
        Proto::Events => &["since_id", "class_code", "event_code", "limit", "wait_ms"],
        Proto::InterfaceRef => &["type", "name", "version"],
        Proto::Status | Proto::Registry | Proto::Interfaces | Proto::Empty => &[],
    };
    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(if allowed.is_empty() {
            format!("{verb} takes no params (given {unknown:?})")
        } else {
            format!(
                "{verb} has no field {unknown:?}; its fields: {}",
                allowed.join(", ")
            )
        });
    }
    match proto {
        Proto::Events => {
            let mut number = |name: &str, max: u64| -> Result<u64, String> {
                match fields.remove(name) {
                    None | Some(Value::Null) => Ok(0),
                    Some(value) => value.as_u64().filter(|n| *n <= max).ok_or_else(|| {
                        format!("{verb}: {name} must be an integer from 0 to {max}, not {value}")
                    }),
                }
            };
            let max32 = u64::from(u32::MAX);
            let query = EventQuery {
                since_id: number("since_id", u64::MAX)?,
                class_code: number("class_code", max32)? as u32,
                event_code: number("event_code", max32)? as u32,
                limit: number("limit", max32)? as u32,
                wait_ms: number("wait_ms", max32)?.min(MAX_EVENT_WAIT.as_millis() as u64) as u32,
            };
            let wait = Duration::from_millis(u64::from(query.wait_ms));
            Ok((query.encode_to_vec(), Some(wait)))
        }
        Proto::InterfaceRef => {
            let mut text = |name: &str| -> Result<String, String> {
                match fields.remove(name) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(text)) => Ok(text),
                    Some(other) => Err(format!("{verb}: {name} must be a string, not {other}")),
                }
            };
            let reference = InterfaceRef {
                r#type: text("type")?,
                name: text("name")?,
                version: text("version")?,
            };
            Ok((reference.encode_to_vec(), None))
        }
        Proto::Status | Proto::Registry | Proto::Interfaces | Proto::Empty => {
            Ok((Vec::new(), None))
        }
    }
}

impl Target {
    /// The outcome of a successful reply's body, read as [`Target::reply`] says. A body
    /// that does not decode is an `INTERNAL-ERROR`. (A failed reply's error is
    /// [`RpcOutcome::from_bus`].)
    pub fn outcome(&self, body: &[u8]) -> RpcOutcome {
        match decode_reply(self.reply, body) {
            Ok(value) => RpcOutcome::Ok(value),
            Err(err) => RpcOutcome::error(
                "INTERNAL-ERROR",
                format!("the master's reply to {} is malformed: {err}", self.verb),
            ),
        }
    }
}

fn decode_reply(reply: Body, body: &[u8]) -> Result<Value, String> {
    let proto = |e: prost::DecodeError| e.to_string();
    Ok(match reply {
        Body::Json if body.is_empty() => Value::Null,
        Body::Json => serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?,
        Body::Proto(Proto::Status) => status_json(&SystemStatus::decode(body).map_err(proto)?),
        Body::Proto(Proto::Registry) => registry_json(&Registry::decode(body).map_err(proto)?),
        Body::Proto(Proto::Events) => events_json(&EventList::decode(body).map_err(proto)?),
        Body::Proto(Proto::Interfaces) => {
            interfaces_json(&InterfaceList::decode(body).map_err(proto)?)
        }
        Body::Proto(Proto::InterfaceRef) => {
            Value::String(String::from_utf8_lossy(body).into_owned())
        }
        Body::Proto(Proto::Empty) => Value::Null,
    })
}

/// `SystemStatus` as JSON: the same object as `GET /api/latest/system`.
pub fn status_json(status: &SystemStatus) -> Value {
    crate::rest::status_view(StatusView::System, status)
}

/// `Registry` as JSON: `{"version", "entries": [{"network_id", "process_type",
/// "interfaces", "endpoints", "pid", "status"}]}`.
pub fn registry_json(registry: &Registry) -> Value {
    json!({
        "version": registry.version,
        "entries": registry.entries.iter().map(crate::rest::process).collect::<Vec<_>>(),
    })
}

/// An event with Qorus's field names (as `/apievents` and the REST API show it).
pub fn event_json(event: &Event) -> Value {
    json!({
        "id": event.id,
        "time": event.time_ms,
        "class": event.class_code,
        "classstr": event.class_name,
        "event": event.event_code,
        "eventstr": event.event_name,
        "severity": event.severity,
        "severitystr": event.severity_name,
        "caller": event.caller,
        "info": serde_json::from_slice::<Value>(&event.info_json).unwrap_or(Value::Null),
    })
}

/// `EventList` as JSON: `{"events": [...], "last_id"}`; `last_id` is the next call's
/// `since_id`.
pub fn events_json(list: &EventList) -> Value {
    json!({
        "events": list.events.iter().map(event_json).collect::<Vec<_>>(),
        "last_id": list.last_id,
    })
}

fn interface_json(interface: &Interface) -> Value {
    json!({
        "type": interface.r#type,
        "id": interface.id,
        "name": interface.name,
        "version": interface.version,
        "autostart": interface.autostart,
        "enabled": interface.enabled,
        "status": interface.status,
        "network_id": interface.network_id,
        "pid": interface.pid,
    })
}

/// `InterfaceList` as JSON: a list of `{"type", "id", "name", "version", "autostart",
/// "enabled", "status", "network_id", "pid"}`.
pub fn interfaces_json(list: &InterfaceList) -> Value {
    list.interfaces.iter().map(interface_json).collect()
}

/// What `system.listMethods` answers: every `omq.system.*` method, `system.listMethods`
/// itself, and `omq.user.service.NAME.METHOD` for each `(NAME, [METHOD...])` given (the
/// loaded services and their external methods), sorted.
pub fn list_methods(services: &[(String, Vec<String>)]) -> Vec<String> {
    let mut names: Vec<String> = METHODS.iter().map(|m| m.name.to_string()).collect();
    names.push(LIST_METHODS.to_string());
    for (service, methods) in services {
        for method in methods {
            names.push(format!("{SERVICE_PREFIX}{service}.{method}"));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The names of the services an `omq.system.list-services` reply shows loaded (any status
/// but `unloaded`), each once.
pub fn loaded_services(list_services: &Value) -> Vec<String> {
    let mut names: Vec<String> = list_services
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["status"]
                .as_str()
                .is_some_and(|status| status != "unloaded")
        })
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The service's name and the methods a caller from outside may call (not `internal`),
/// from an `omq.system.get-service` reply.
pub fn exported_methods(get_service: &Value) -> Option<(String, Vec<String>)> {
    let name = get_service["name"].as_str()?.to_string();
    let methods = get_service["methods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| !m["internal"].as_bool().unwrap_or(false))
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    Some((name, methods))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::v1::RegistryEntry;

    fn call(method: &str, params: Vec<Value>) -> RpcCall {
        RpcCall {
            method: method.into(),
            params,
            id: None,
        }
    }

    fn target(method: &str, params: Vec<Value>) -> Target {
        match resolve(&call(method, params.clone())) {
            Ok(Dispatch::Master(target)) => target,
            other => panic!("{method}({params:?}): {other:?}"),
        }
    }

    /// The JSON body a call becomes.
    fn body(method: &str, params: Vec<Value>) -> Value {
        let target = target(method, params);
        assert_eq!(target.reply, Body::Json, "{method}");
        serde_json::from_slice(&target.body).expect("a JSON body")
    }

    fn refusal(method: &str, params: Vec<Value>) -> (String, String) {
        match resolve(&call(method, params)) {
            Err(RpcOutcome::Err { code, desc, .. }) => (code, desc),
            other => panic!("{method}: {other:?}"),
        }
    }

    #[test]
    fn positional_params_are_named_by_the_table() {
        let order = json!({"workflow_instanceid": 42});
        for params in [vec![json!(42)], vec![order.clone()]] {
            assert_eq!(body("omq.system.retry-workflow-instance", params), order);
        }
        assert_eq!(body("omq.system.list-services", vec![]), json!({}));
        assert_eq!(
            body("omq.system.skip-step", vec![json!(42), json!(7)]),
            json!({"workflow_instanceid": 42, "stepid": 7})
        );
        assert_eq!(
            body("omq.system.reschedule-order", vec![json!(42), Value::Null]),
            json!({"workflow_instanceid": 42, "scheduled": null})
        );
        assert_eq!(
            body(
                "omq.system.create-order",
                vec![
                    json!("ORDERS"),
                    Value::Null,
                    json!({"staticdata": {"a": 1}, "priority": 5}),
                    json!("BLOCKED")
                ]
            ),
            json!({"name": "ORDERS", "version": null, "staticdata": {"a": 1}, "priority": 5,
                   "status": "BLOCKED"})
        );
        // The order object alone is the body.
        let order = json!({"name": "ORDERS", "staticdata": {}});
        assert_eq!(body("omq.system.create-order", vec![order.clone()]), order);
        assert_eq!(
            body(
                "omq.system.search-orders",
                vec![json!({"name": "ORDERS", "limit": 5})]
            ),
            json!({"name": "ORDERS", "limit": 5})
        );
        // Jobs by name or by id; schedules as cron text or seconds.
        assert_eq!(
            body("omq.system.run-job", vec![json!("nightly")]),
            json!({"name": "nightly"})
        );
        assert_eq!(
            body("omq.system.run-job", vec![json!(12)]),
            json!({"jobid": 12})
        );
        assert_eq!(
            body(
                "omq.system.schedule-job",
                vec![json!("nightly"), json!("0 3 * * *")]
            ),
            json!({"name": "nightly", "schedule": "0 3 * * *"})
        );
        assert_eq!(
            body("omq.system.schedule-job", vec![json!(12), json!(3600)]),
            json!({"jobid": 12, "recurring": 3600})
        );
        assert_eq!(
            body(
                "omq.system.set-group-enabled",
                vec![json!("G"), json!(false)]
            ),
            json!({"group": "G", "enabled": false})
        );
    }

    #[test]
    fn service_methods_are_external_calls() {
        let target = target(
            "omq.user.service.billing.charge",
            vec![json!(1), json!({"a": [2]})],
        );
        assert_eq!(target.verb, "omq.system.call-service");
        assert_eq!(target.patience, Patience::ServiceCall);
        assert_eq!(
            serde_json::from_slice::<Value>(&target.body).unwrap(),
            json!({"name": "billing", "method": "charge", "args": [1, {"a": [2]}], "external": true})
        );
        // A caller cannot make itself internal.
        assert_eq!(
            body(
                "omq.system.call-service",
                vec![json!({"name": "s", "method": "m", "args": [], "external": false})]
            ),
            json!({"name": "s", "method": "m", "args": [], "external": true})
        );
        assert_eq!(
            body(
                "omq.system.call-service",
                vec![json!("s"), json!("m"), json!([1])]
            ),
            json!({"name": "s", "method": "m", "args": [1], "external": true})
        );
        for name in [
            "omq.user.service.",
            "omq.user.service.x",
            "omq.user.service..m",
            "omq.user.service.x.",
        ] {
            assert_eq!(refusal(name, vec![]).0, "UNKNOWN-METHOD", "{name}");
        }
    }

    #[test]
    fn unknown_and_child_only_methods_are_refused() {
        for name in [
            "omq.system.nope",
            "omq.system.raise-event",
            "omq.system.raise-user-event",
            "omq.system.retire",
            "register",
            "heartbeat",
            "ping",
            "system.methodHelp",
            "",
        ] {
            let (code, desc) = refusal(name, vec![]);
            assert_eq!(code, "UNKNOWN-METHOD", "{name}");
            assert!(desc.contains(name), "{desc}");
        }
        assert_eq!(
            resolve(&call(LIST_METHODS, vec![])),
            Ok(Dispatch::ListMethods)
        );
    }

    #[test]
    fn params_a_method_cannot_take_are_invalid() {
        for (method, params, text) in [
            (
                "omq.system.retry-workflow-instance",
                vec![json!(1), json!(2)],
                "takes at most 1 positional param (workflow_instanceid); 2 given",
            ),
            (
                "omq.system.search-orders",
                vec![json!("x")],
                "takes no positional params",
            ),
            (
                "omq.system.run-job",
                vec![json!(true)],
                "a name (a string) or a jobid (an integer), not true",
            ),
            ("omq.system.run-job", vec![json!(1.5)], "not 1.5"),
            (
                "omq.system.create-order",
                vec![json!("W"), json!("1"), json!("staticdata")],
                "param 3 is an object",
            ),
            (
                "omq.system.create-order",
                vec![json!("W"), json!("1"), json!({"name": "X"})],
                "field name is given twice",
            ),
            (
                "omq.system.get-status",
                vec![json!({"x": 1})],
                "takes no params",
            ),
            (
                "omq.system.shutdown",
                vec![json!(1)],
                "takes no positional params",
            ),
            (
                "omq.system.get-events",
                vec![json!(-1)],
                "since_id must be an integer from 0",
            ),
            (
                "omq.system.get-events",
                vec![json!({"class": "WORKFLOW"})],
                "has no field \"class\"",
            ),
            (
                "omq.system.get-events",
                vec![json!(0), json!(4_294_967_296u64)],
                "class_code must be",
            ),
            (
                "omq.system.start-interface",
                vec![json!("workflow"), json!(5)],
                "name must be a string",
            ),
        ] {
            let (code, desc) = refusal(method, params);
            assert_eq!(code, "INVALID-ARGUMENT", "{method}");
            assert!(desc.contains(text), "{method}: {desc}");
        }
    }

    #[test]
    fn protobuf_verbs_encode_their_messages() {
        let t = target("omq.system.get-status", vec![]);
        assert_eq!(
            (t.body.is_empty(), t.reply, t.patience),
            (true, Body::Proto(Proto::Status), Patience::Read)
        );
        let t = target(
            "omq.system.get-events",
            vec![json!(10), json!(0), json!(2009), json!(50), json!(120_000)],
        );
        assert_eq!(
            EventQuery::decode(t.body.as_slice()).unwrap(),
            EventQuery {
                since_id: 10,
                class_code: 0,
                event_code: 2009,
                limit: 50,
                wait_ms: 60_000
            }
        );
        assert_eq!(t.patience, Patience::LongPoll(Duration::from_secs(60)));
        let t = target("omq.system.get-events", vec![json!({"since_id": 3})]);
        assert_eq!(EventQuery::decode(t.body.as_slice()).unwrap().since_id, 3);
        assert_eq!(t.patience, Patience::LongPoll(Duration::ZERO));
        let t = target(
            "omq.system.start-interface",
            vec![json!("service"), json!("billing")],
        );
        assert_eq!(
            InterfaceRef::decode(t.body.as_slice()).unwrap(),
            InterfaceRef {
                r#type: "service".into(),
                name: "billing".into(),
                version: String::new()
            }
        );
        let t = target(
            "omq.system.reset-workflow",
            vec![json!("ORDERS"), json!("1.0")],
        );
        assert_eq!(
            InterfaceRef::decode(t.body.as_slice()).unwrap(),
            InterfaceRef {
                r#type: "workflow".into(),
                name: "ORDERS".into(),
                version: "1.0".into()
            }
        );
        let t = target("omq.system.shutdown", vec![]);
        assert_eq!((t.body.is_empty(), t.patience), (true, Patience::Change));
    }

    #[test]
    fn replies_become_json() {
        let status = SystemStatus {
            instance_key: "sluice-1".into(),
            status: "running".into(),
            processes: vec![RegistryEntry {
                network_id: "http-gateway".into(),
                process_type: "http-gateway".into(),
                pid: 7,
                status: "running".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = target("omq.system.get-status", vec![]).outcome(&status.encode_to_vec());
        let RpcOutcome::Ok(value) = got else {
            panic!("{got:?}")
        };
        assert_eq!(value["instance-key"], "sluice-1");
        assert_eq!(value["processes"][0]["network_id"], "http-gateway");

        let events = EventList {
            events: vec![Event {
                id: 5,
                time_ms: 1000,
                class_code: 2,
                class_name: "WORKFLOW".into(),
                event_code: 2009,
                event_name: "WORKFLOW_STATUS_CHANGED".into(),
                severity: 0,
                severity_name: "INFO".into(),
                caller: "master".into(),
                info_json: br#"{"workflow_instanceid": 42}"#.to_vec(),
            }],
            last_id: 9,
        };
        assert_eq!(
            target("omq.system.get-events", vec![]).outcome(&events.encode_to_vec()),
            RpcOutcome::Ok(
                json!({"events": [{"id": 5, "time": 1000, "class": 2, "classstr": "WORKFLOW",
                "event": 2009, "eventstr": "WORKFLOW_STATUS_CHANGED", "severity": 0, "severitystr": "INFO",
                "caller": "master", "info": {"workflow_instanceid": 42}}], "last_id": 9})
            )
        );
        let interfaces = InterfaceList {
            interfaces: vec![Interface {
                r#type: "job".into(),
                id: 3,
                name: "nightly".into(),
                enabled: true,
                ..Default::default()
            }],
        };
        let got = target("omq.system.list-interfaces", vec![]).outcome(&interfaces.encode_to_vec());
        assert_eq!(
            got,
            RpcOutcome::Ok(
                json!([{"type": "job", "id": 3, "name": "nightly", "version": "", "autostart": false,
                "enabled": true, "status": "", "network_id": "", "pid": 0}])
            )
        );
        let registry = Registry {
            version: 4,
            entries: vec![],
        };
        assert_eq!(
            target("omq.system.get-registry", vec![]).outcome(&registry.encode_to_vec()),
            RpcOutcome::Ok(json!({"version": 4, "entries": []}))
        );
        assert_eq!(
            target(
                "omq.system.stop-interface",
                vec![json!("job"), json!("nightly")]
            )
            .outcome(b"job-nightly-1.0"),
            RpcOutcome::Ok(json!("job-nightly-1.0"))
        );
        assert_eq!(
            target("omq.system.shutdown", vec![]).outcome(b""),
            RpcOutcome::Ok(Value::Null)
        );
        let order = target("omq.system.get-order-info", vec![json!(1)]);
        assert_eq!(
            order.outcome(b"{\"a\": 1}"),
            RpcOutcome::Ok(json!({"a": 1}))
        );
        assert_eq!(order.outcome(b""), RpcOutcome::Ok(Value::Null));
        for (target, bad) in [
            (order, &b"{oops"[..]),
            (target("omq.system.get-status", vec![]), b"\xFF\xFF\xFF"),
        ] {
            let RpcOutcome::Err { code, desc, .. } = target.outcome(bad) else {
                panic!("{bad:?}")
            };
            assert_eq!(code, "INTERNAL-ERROR");
            assert!(desc.contains(target.verb), "{desc}");
        }
    }

    #[test]
    fn list_methods_has_the_system_and_the_loaded_services() {
        let list = json!([
            {"name": "billing", "version": "1.0", "status": "running"},
            {"name": "billing", "version": "2.0", "status": "loaded"},
            {"name": "idle", "version": "1.0", "status": "unloaded"},
        ]);
        assert_eq!(loaded_services(&list), ["billing"]);
        let service = json!({"name": "billing", "methods": [
            {"name": "charge", "internal": false}, {"name": "secret", "internal": true}, {"name": "refund"}]});
        let exported = exported_methods(&service).expect("a service");
        assert_eq!(
            exported,
            (
                "billing".to_string(),
                vec!["charge".to_string(), "refund".to_string()]
            )
        );
        let names = list_methods(&[exported]);
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert_eq!(names.len(), METHODS.len() + 3);
        for name in [
            "omq.system.get-status",
            "omq.system.create-order",
            LIST_METHODS,
            "omq.user.service.billing.charge",
            "omq.user.service.billing.refund",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}");
        }
        assert!(!names.iter().any(|n| n.ends_with(".secret")));
    }

    #[test]
    fn the_table_covers_the_clients_verbs() {
        // Every verb docs/cluster-api.md offers clients is a method, and no name twice.
        let doc = include_str!("../../../docs/cluster-api.md");
        let mut offered: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `omq.system."))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        offered.sort();
        let mut names: Vec<&str> = METHODS
            .iter()
            .map(|m| m.name.trim_start_matches("omq.system."))
            .collect();
        names.sort();
        assert_eq!(names, offered);
        for method in METHODS {
            // The one-object rule would hide a positional object param in first place.
            assert_ne!(
                method.params.first(),
                Some(&Param::Fields),
                "{}",
                method.name
            );
            let fields = method
                .params
                .iter()
                .filter(|p| matches!(p, Param::Fields))
                .count();
            assert!(fields <= 1, "{}", method.name);
        }
    }
    /// The methods table of docs/rpc.md.
    fn render_markdown() -> String {
        let mut out =
            String::from("| method | positional params | body | returns |\n|---|---|---|---|\n");
        for method in METHODS {
            let body = match method.body {
                Body::Json => "JSON".to_string(),
                Body::Proto(proto) => {
                    let (request, reply) = match proto {
                        Proto::Status => ("none", "`SystemStatus`"),
                        Proto::Registry => ("none", "`Registry`"),
                        Proto::Events => ("`EventQuery`", "`EventList`"),
                        Proto::Interfaces => ("none", "`InterfaceList`"),
                        Proto::InterfaceRef => ("`InterfaceRef`", "text"),
                        Proto::Empty => ("none", "none"),
                    };
                    format!("protobuf: {request} → {reply}")
                }
            };
            out.push_str(&format!(
                "| `{}` | {} | {body} | {} |\n",
                method.name,
                signature(method),
                method
                    .summary
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        out
    }

    #[test]
    fn docs_rpc_md_lists_every_method() {
        crate::generated_docs::check("rpc.md", &[("methods", render_markdown())], "docs_rpc_md");
    }
}
