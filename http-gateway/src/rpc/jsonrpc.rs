//! JSON-RPC (`/JSON`, `application/json`): versions 2.0 and 1.1, batches, notifications.
//!
//! # Requests
//!
//! ```json
//! {"jsonrpc": "2.0", "method": "omq.system.get-order-info", "params": [42], "id": 1}
//! {"version": "1.1", "method": "omq.system.get-order-info", "params": [42], "id": 1}
//! [{"jsonrpc": "2.0", "method": "...", "id": 1}, {"jsonrpc": "2.0", "method": "..."}]
//! ```
//!
//! - `"jsonrpc": "2.0"` makes a 2.0 request; `"version": "1.1"` (or `"1.0"`) a 1.1 one; a
//!   request with neither is answered as 1.1 (Qorus's own clients' dialect).
//! - `params`: an array passes its items by position; an object (JSON-RPC "by name")
//!   is passed as **one** param, that object; absent or `null` is no params. Anything
//!   else is an invalid request.
//! - `id`: a string, a number or null. A 2.0 request without an `id` member is a
//!   notification: it is carried out and gets no response entry. A 1.1 request is always
//!   answered (`"id": null` when it had none).
//! - A batch is a JSON array of requests (at most [`MAX_BATCH`]); the response is the
//!   array of the non-notification responses, in request order, or no body at all when
//!   every call was a notification (the HTTP side answers 204). Each invalid item of a
//!   batch gets its own error entry; an empty batch is one invalid-request error.
//!
//! # Responses
//!
//! Always HTTP 200 (`application/json`), errors included.
//!
//! ```json
//! {"jsonrpc": "2.0", "id": 1, "result": ...}
//! {"jsonrpc": "2.0", "id": 1, "error": {"code": 104, "message": "STATUS-ERROR: ...",
//!   "data": {"err": "STATUS-ERROR", "desc": "...", "info": ...}}}
//! {"version": "1.1", "id": 1, "result": ...}
//! {"version": "1.1", "id": 1, "error": {"name": "JSONRPCError", "code": 104,
//!   "message": "STATUS-ERROR: ...", "error": {"err": "STATUS-ERROR", "desc": "...", "info": ...}}}
//! ```
//!
//! `code` is [`super::fault_code`]'s: 105 for `UNKNOWN-METHOD`, 104 for any error the
//! called method raised; a request that cannot be decoded gets -32700 (not JSON, not
//! UTF-8) or -32600 (not a request) with `err` `PARSE-ERROR` / `INVALID-REQUEST` and
//! `"id": null` unless its id could be read. Qorus's error object `{"err", "desc",
//! "info"?}` is the 2.0 error's `data` and the 1.1 error's `error` (the member JSON-RPC
//! 1.1 names for it); `info` is there only when the error has details (a service
//! method's exception: `type`, `message`, `traceback`, `info`).

use serde_json::{json, Map, Value};

use super::{error_data, fault_code, fault_message, utf8_text, RpcCall, RpcError, RpcOutcome};

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/json";

/// Most calls one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// The JSON-RPC dialect of a request, which its response speaks too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `"jsonrpc": "2.0"`.
    V2,
    /// `"version": "1.1"`, or no version at all.
    V11,
}

/// One item of a request: a call, or the reason it is not one.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Call {
        version: Version,
        call: RpcCall,
    },
    Invalid {
        version: Version,
        id: Value,
        error: RpcError,
    },
}

/// A decoded request body: one call or a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    batch: bool,
    items: Vec<Item>,
}

impl Request {
    /// The calls to carry out, in order; [`encode_responses`] takes their outcomes in the
    /// same order. Notifications are among them (they are carried out, unanswered).
    pub fn calls(&self) -> impl Iterator<Item = &RpcCall> {
        self.items.iter().filter_map(|item| match item {
            Item::Call { call, .. } => Some(call),
            Item::Invalid { .. } => None,
        })
    }

    /// Whether the body was a batch (a JSON array).
    pub fn is_batch(&self) -> bool {
        self.batch
    }
}

/// Decodes a `/JSON` body. `Err` only when the whole body is unusable (not UTF-8, not
/// JSON, not an object or array, an empty or oversized batch): answer it with
/// [`encode_error`]. An invalid request inside a body is answered by
/// [`encode_responses`] with its own error.
pub fn decode_request(body: &[u8]) -> Result<Request, RpcError> {
    let text = utf8_text(body)?;
    if text.trim().is_empty() {
        return Err(RpcError::Parse("the request body is empty".into()));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RpcError::Parse(format!("the request is not valid JSON: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::Invalid(
                    "the batch is empty: send at least one request".into(),
                ));
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::Invalid(format!(
                    "the batch holds {} requests; at most {MAX_BATCH} are allowed",
                    items.len()
                )));
            }
            Ok(Request {
                batch: true,
                items: items.into_iter().map(item).collect(),
            })
        }
        Value::Object(_) => Ok(Request {
            batch: false,
            items: vec![item(value)],
        }),
        other => Err(RpcError::Invalid(format!(
            "a JSON-RPC request is an object, or an array of them (a batch), not {}",
            kind(&other)
        ))),
    }
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn item(value: Value) -> Item {
    let Value::Object(mut map) = value else {
        return Item::Invalid {
            version: Version::V2,
            id: Value::Null,
            error: RpcError::Invalid(format!(
                "a request in a batch is an object, not {}",
                kind(&value)
            )),
        };
    };
    let (version, version_error) = version(&map);
    if let Some(error) = version_error {
        let id = match map.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            _ => Value::Null,
        };
        return Item::Invalid {
            version,
            id,
            error: RpcError::Invalid(error),
        };
    }
    match call_members(&mut map) {
        Ok(call) => Item::Call { version, call },
        Err((id, error)) => Item::Invalid {
            version,
            id: id.unwrap_or(Value::Null),
            error: RpcError::Invalid(error),
        },
    }
}

/// A call from a request object's `method`, `params` and `id` (JSON-RPC's rules, which
/// YAML-RPC shares); other members are ignored. The error names the id when it could be
/// read.
pub(super) fn call_members(
    map: &mut Map<String, Value>,
) -> Result<RpcCall, (Option<Value>, String)> {
    let id = match map.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(other) => {
            return Err((
                None,
                format!(
                    "id must be a string, a number or null, not {}",
                    kind(&other)
                ),
            ))
        }
    };
    let invalid = |error: String| Err((id.clone(), error));
    let method = match map.remove("method") {
        Some(Value::String(method)) if !method.is_empty() => method,
        Some(Value::String(_)) => return invalid("method is empty".into()),
        Some(other) => {
            return invalid(format!(
                "method must be a string (the method's name), not {}",
                kind(&other)
            ))
        }
        None => return invalid("the request has no method".into()),
    };
    let params = match map.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        // By name: the object is the one param.
        Some(object @ Value::Object(_)) => vec![object],
        Some(other) => {
            return invalid(format!(
                "params must be an array (by position) or an object (by name), not {}",
                kind(&other)
            ))
        }
    };
    Ok(RpcCall { method, params, id })
}

/// The request's dialect, and why its version member is wrong if it is.
fn version(map: &Map<String, Value>) -> (Version, Option<String>) {
    match (map.get("jsonrpc"), map.get("version")) {
        (Some(Value::String(v)), _) if v == "2.0" => (Version::V2, None),
        (Some(other), _) => (
            Version::V2,
            Some(format!("jsonrpc must be \"2.0\", not {other}")),
        ),
        (None, None) => (Version::V11, None),
        (None, Some(Value::String(v))) if v == "1.1" || v == "1.0" => (Version::V11, None),
        (None, Some(other)) => (
            Version::V11,
            Some(format!(
                "version must be \"1.1\" (or use \"jsonrpc\": \"2.0\"), not {other}"
            )),
        ),
    }
}

/// The error member of a response.
pub(super) fn error_object(
    version: Version,
    number: i64,
    code: &str,
    desc: &str,
    info: Option<&Value>,
) -> Value {
    let data = error_data(code, desc, info);
    let message = fault_message(code, desc);
    match version {
        Version::V2 => json!({"code": number, "message": message, "data": data}),
        Version::V11 => {
            json!({"name": "JSONRPCError", "code": number, "message": message, "error": data})
        }
    }
}

/// The response to one call, as JSON-RPC 1.1 or 2.0 has it.
fn response(version: Version, id: Value, outcome: &RpcOutcome) -> Value {
    let mut response = match version {
        Version::V2 => json!({"jsonrpc": "2.0", "id": id}),
        Version::V11 => json!({"version": "1.1", "id": id}),
    };
    match outcome {
        RpcOutcome::Ok(result) => response["result"] = result.clone(),
        RpcOutcome::Err { code, desc, info } => {
            response["error"] = error_object(version, fault_code(code), code, desc, info.as_ref())
        }
    }
    response
}

fn invalid_response(version: Version, id: Value, error: &RpcError) -> Value {
    let mut response = match version {
        Version::V2 => json!({"jsonrpc": "2.0", "id": id}),
        Version::V11 => json!({"version": "1.1", "id": id}),
    };
    response["error"] = error_object(version, error.code(), error.err(), error.desc(), None);
    response
}

/// The response body to `request`, given the outcome of each of its [`Request::calls`]
/// in order; `None` when nothing is to be answered (every call was a notification).
/// A missing outcome (a caller's mistake) is answered as an `INTERNAL-ERROR`.
pub fn encode_responses(request: &Request, outcomes: &[RpcOutcome]) -> Option<Vec<u8>> {
    let missing = RpcOutcome::error("INTERNAL-ERROR", "the gateway lost this call's outcome");
    let mut outcomes = outcomes.iter();
    let mut answers = Vec::new();
    for item in &request.items {
        match item {
            Item::Call { version, call } => {
                let outcome = outcomes.next().unwrap_or(&missing);
                match (&call.id, version) {
                    (None, Version::V2) => {}
                    (id, _) => answers.push(response(
                        *version,
                        id.clone().unwrap_or(Value::Null),
                        outcome,
                    )),
                }
            }
            Item::Invalid { version, id, error } => {
                answers.push(invalid_response(*version, id.clone(), error))
            }
        }
    }
    if answers.is_empty() {
        return None;
    }
    let body = if request.batch {
        Value::Array(answers)
    } else {
        answers.pop().unwrap_or(Value::Null)
    };
    Some(body.to_string().into_bytes())
}

/// The response to a body [`decode_request`] refused: a 2.0 error with `"id": null`.
pub fn encode_error(error: &RpcError) -> Vec<u8> {
    invalid_response(Version::V2, Value::Null, error)
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> Request {
        decode_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn calls(body: &str) -> Vec<RpcCall> {
        decode(body).calls().cloned().collect()
    }

    fn answer(body: &str, outcomes: &[RpcOutcome]) -> Option<Value> {
        encode_responses(&decode(body), outcomes)
            .map(|bytes| serde_json::from_slice(&bytes).expect("responses are JSON"))
    }

    fn refused(body: &[u8]) -> (RpcError, Value) {
        let err = decode_request(body).expect_err("refused");
        let response = serde_json::from_slice(&encode_error(&err)).expect("JSON");
        (err, response)
    }

    fn ok(value: Value) -> RpcOutcome {
        RpcOutcome::Ok(value)
    }

    #[test]
    fn v2_by_position_and_by_name() {
        assert_eq!(
            calls(
                r#"{"jsonrpc": "2.0", "method": "omq.system.retry-workflow-instance", "params": [42], "id": 7}"#
            ),
            vec![RpcCall {
                method: "omq.system.retry-workflow-instance".into(),
                params: vec![json!(42)],
                id: Some(json!(7)),
            }]
        );
        // By name: one param, the object.
        assert_eq!(
            calls(r#"{"jsonrpc": "2.0", "method": "m", "params": {"workflow_instanceid": 42}, "id": "a"}"#)[0]
                .params,
            vec![json!({"workflow_instanceid": 42})]
        );
        assert_eq!(
            calls(r#"{"jsonrpc": "2.0", "method": "m", "id": 1}"#)[0].params,
            Vec::<Value>::new()
        );
        assert_eq!(
            answer(
                r#"{"jsonrpc": "2.0", "method": "m", "params": [], "id": 7}"#,
                &[ok(json!({"a": [1]}))]
            ),
            Some(json!({"jsonrpc": "2.0", "id": 7, "result": {"a": [1]}}))
        );
    }

    #[test]
    fn v11_and_versionless_requests_are_always_answered() {
        for body in [
            r#"{"version": "1.1", "method": "m", "params": [1, "x"]}"#,
            r#"{"method": "m", "params": [1, "x"]}"#,
        ] {
            assert_eq!(calls(body)[0].params, vec![json!(1), json!("x")]);
            assert_eq!(
                answer(body, &[ok(json!(true))]),
                Some(json!({"version": "1.1", "id": null, "result": true}))
            );
        }
        assert_eq!(
            answer(
                r#"{"version": "1.1", "method": "m", "id": "q"}"#,
                &[RpcOutcome::error("STATUS-ERROR", "not now")]
            ),
            Some(json!({"version": "1.1", "id": "q", "error": {
                "name": "JSONRPCError", "code": 104, "message": "STATUS-ERROR: not now",
                "error": {"err": "STATUS-ERROR", "desc": "not now"}}}))
        );
    }

    #[test]
    fn errors_carry_qorus_codes() {
        let body = r#"{"jsonrpc": "2.0", "method": "omq.system.nope", "id": 1}"#;
        assert_eq!(
            answer(body, &[RpcOutcome::unknown_method("omq.system.nope")]),
            Some(json!({"jsonrpc": "2.0", "id": 1, "error": {
                "code": 105, "message": "UNKNOWN-METHOD: no method \"omq.system.nope\"",
                "data": {"err": "UNKNOWN-METHOD", "desc": "no method \"omq.system.nope\""}}}))
        );
        let exception = RpcOutcome::Err {
            code: "ValueError".into(),
            desc: "bad value".into(),
            info: Some(json!({"type": "ValueError", "traceback": "line 1"})),
        };
        assert_eq!(
            answer(body, &[exception]),
            Some(json!({"jsonrpc": "2.0", "id": 1, "error": {
                "code": 104, "message": "ValueError: bad value",
                "data": {"err": "ValueError", "desc": "bad value",
                         "info": {"type": "ValueError", "traceback": "line 1"}}}}))
        );
    }

    #[test]
    fn batches_and_notifications() {
        let body = r#"[
            {"jsonrpc": "2.0", "method": "a", "params": [1], "id": 1},
            {"jsonrpc": "2.0", "method": "notify", "params": [2]},
            {"jsonrpc": "2.0", "params": [3], "id": 3},
            42,
            {"version": "1.1", "method": "b", "id": 5}
        ]"#;
        let request = decode(body);
        assert!(request.is_batch());
        let methods: Vec<&str> = request.calls().map(|c| c.method.as_str()).collect();
        assert_eq!(methods, ["a", "notify", "b"]);
        let got = answer(body, &[ok(json!("A")), ok(json!("N")), ok(json!("B"))]).expect("answers");
        assert_eq!(
            got,
            json!([
                {"jsonrpc": "2.0", "id": 1, "result": "A"},
                {"jsonrpc": "2.0", "id": 3, "error": {"code": -32600,
                    "message": "INVALID-REQUEST: the request has no method",
                    "data": {"err": "INVALID-REQUEST", "desc": "the request has no method"}}},
                {"jsonrpc": "2.0", "id": null, "error": {"code": -32600,
                    "message": "INVALID-REQUEST: a request in a batch is an object, not a number",
                    "data": {"err": "INVALID-REQUEST", "desc": "a request in a batch is an object, not a number"}}},
                {"version": "1.1", "id": 5, "result": "B"},
            ])
        );
        // Only notifications: nothing to answer, in a batch or alone.
        assert_eq!(
            answer(r#"[{"jsonrpc": "2.0", "method": "n"}]"#, &[ok(json!(1))]),
            None
        );
        assert_eq!(
            answer(r#"{"jsonrpc": "2.0", "method": "n"}"#, &[ok(json!(1))]),
            None
        );
        // A 2.0 request with "id": null is not a notification.
        assert_eq!(
            answer(
                r#"{"jsonrpc": "2.0", "method": "n", "id": null}"#,
                &[ok(json!(1))]
            ),
            Some(json!({"jsonrpc": "2.0", "id": null, "result": 1}))
        );
        // A lost outcome is an internal error, not a panic.
        let lost = answer(r#"{"jsonrpc": "2.0", "method": "n", "id": 2}"#, &[]).expect("answer");
        assert_eq!(lost["error"]["data"]["err"], "INTERNAL-ERROR");
    }

    #[test]
    fn malformed_bodies_get_protocol_errors() {
        for (body, code, text) in [
            (&b""[..], -32700, "empty"),
            (b"  \n", -32700, "empty"),
            (
                b"{\"jsonrpc\": \"2.0\", \"method\": ",
                -32700,
                "not valid JSON",
            ),
            (b"<methodCall/>", -32700, "not valid JSON"),
            (b"{\"method\": \"m\xFF\"}", -32700, "not UTF-8"),
            (b"[]", -32600, "batch is empty"),
            (b"42", -32600, "not a number"),
            (b"\"omq.system.get-status\"", -32600, "not a string"),
        ] {
            let (err, response) = refused(body);
            assert_eq!(err.code(), code, "{body:?}");
            assert!(err.desc().contains(text), "{body:?}: {err}");
            assert_eq!(response["jsonrpc"], "2.0");
            assert_eq!(response["id"], Value::Null);
            assert_eq!(response["error"]["code"], code);
            assert_eq!(response["error"]["data"]["desc"], err.desc());
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(refused(deep.as_bytes()).0.code(), -32700);
        let big = format!(
            "[{}]",
            vec![r#"{"jsonrpc": "2.0", "method": "m"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(refused(big.as_bytes()).0.desc().contains("at most 1000"));
    }

    #[test]
    fn invalid_requests_are_answered_with_their_id() {
        for (body, id, text) in [
            (r#"{"jsonrpc": "2.0", "id": 1}"#, json!(1), "has no method"),
            (
                r#"{"jsonrpc": "2.0", "method": 5, "id": 1}"#,
                json!(1),
                "method must be a string",
            ),
            (
                r#"{"jsonrpc": "2.0", "method": "", "id": 1}"#,
                json!(1),
                "method is empty",
            ),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "params": "x", "id": 2}"#,
                json!(2),
                "params must be an array",
            ),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "params": 3, "id": 2}"#,
                json!(2),
                "params must be an array",
            ),
            (
                r#"{"jsonrpc": "2.0", "method": "m", "id": [1]}"#,
                Value::Null,
                "id must be",
            ),
            (
                r#"{"jsonrpc": "1.0", "method": "m", "id": 4}"#,
                json!(4),
                "jsonrpc must be \"2.0\"",
            ),
            (
                r#"{"jsonrpc": 2, "method": "m", "id": 4}"#,
                json!(4),
                "jsonrpc must be \"2.0\"",
            ),
        ] {
            let request = decode(body);
            assert_eq!(request.calls().count(), 0, "{body}");
            let got = answer(body, &[]).expect("answered");
            assert_eq!(got["jsonrpc"], "2.0", "{body}");
            assert_eq!(got["id"], id, "{body}");
            assert_eq!(got["error"]["code"], -32600, "{body}");
            let desc = got["error"]["data"]["desc"].as_str().unwrap_or_default();
            assert!(desc.contains(text), "{body}: {desc}");
        }
        let got = answer(r#"{"version": "2", "method": "m", "id": 4}"#, &[]).expect("answered");
        assert_eq!(got["version"], "1.1");
        assert_eq!(got["error"]["code"], -32600);
        assert_eq!(got["error"]["name"], "JSONRPCError");
    }
}
