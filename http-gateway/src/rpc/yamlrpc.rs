//! YAML-RPC (`/YAML`, `application/x-yaml`): Qorus's JSON-RPC 1.1 written in YAML.
//!
//! # Requests
//!
//! One YAML document, a mapping:
//!
//! ```yaml
//! method: omq.system.get-order-info
//! params: [42]
//! id: 1
//! ```
//!
//! `method`, `params` and `id` follow JSON-RPC's rules ([`super::jsonrpc`]): `params` a
//! sequence (by position) or a mapping (passed as one param), absent or null for none;
//! `id` optional (a string, a number or null); other keys (e.g. `version`) are ignored.
//! There are no batches and no notifications: every request is answered. YAML is read
//! with YAML 1.2's core schema into JSON values ([`crate::format::from_yaml`], the same
//! reader as the REST API's YAML bodies): plain `42` is an integer, `1.5` and `1e3`
//! floats, `true`/`false` booleans, `~`/`null`/nothing null, anything quoted (or tagged
//! `!!str`) a string. Anchors and aliases are refused (an alias can multiply a small
//! document into a huge one), and so are nesting deeper than 128 levels and more than
//! one document.
//!
//! # Responses
//!
//! Always HTTP 200, `application/x-yaml`; `id` is there when the request had one:
//!
//! ```yaml
//! result: ...
//! id: 1
//! ```
//!
//! ```yaml
//! error:
//!   name: JSONRPCError
//!   code: 104
//!   message: "STATUS-ERROR: ..."
//!   error: {err: STATUS-ERROR, desc: "...", info: ...}
//! id: 1
//! ```
//!
//! The error object is JSON-RPC 1.1's, with the same numbers: 105 for `UNKNOWN-METHOD`,
//! 104 for an error the called method raised, -32700 for a body that is not YAML (or not
//! UTF-8), -32600 for one that is not a request (`err` `PARSE-ERROR` /
//! `INVALID-REQUEST`). `info` is there only when the error has details.

use serde_json::{json, Value};

use super::jsonrpc::{call_members, error_object, kind, Version};
use super::{fault_code, utf8_text, RpcCall, RpcError, RpcOutcome};
use crate::format::{from_yaml, to_yaml};

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-yaml";

/// Decodes a `/YAML` body: one call.
pub fn decode_request(body: &[u8]) -> Result<RpcCall, RpcError> {
    let text = utf8_text(body)?;
    if text.trim().is_empty() {
        return Err(RpcError::Parse("the request body is empty".into()));
    }
    let value = from_yaml(text)
        .map_err(|e| RpcError::Parse(format!("the request is not valid YAML: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(RpcError::Invalid(format!(
            "a YAML-RPC request is a mapping {{method, params, id}}, not {}",
            kind(&value)
        )));
    };
    call_members(&mut map).map_err(|(_, error)| RpcError::Invalid(error))
}

/// The response to `call`.
pub fn encode_response(call: &RpcCall, outcome: &RpcOutcome) -> Vec<u8> {
    let mut response = match outcome {
        RpcOutcome::Ok(result) => json!({"result": result}),
        RpcOutcome::Err { code, desc, info } => json!({
            "error": error_object(Version::V11, fault_code(code), code, desc, info.as_ref())
        }),
    };
    if let Some(id) = &call.id {
        response["id"] = id.clone();
    }
    document(&response)
}

/// The response to a body [`decode_request`] refused.
pub fn encode_error(error: &RpcError) -> Vec<u8> {
    document(&json!({
        "error": error_object(Version::V11, error.code(), error.err(), error.desc(), None)
    }))
}

fn document(value: &Value) -> Vec<u8> {
    match to_yaml(value) {
        Ok(text) => text.into_bytes(),
        // JSON is a subset of YAML: the response is still a YAML document.
        Err(_) => format!("{value}\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str) -> RpcCall {
        decode_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn read(bytes: &[u8]) -> Value {
        from_yaml(std::str::from_utf8(bytes).expect("UTF-8")).expect("responses are YAML")
    }

    #[test]
    fn requests_decode_with_yaml_scalars() {
        assert_eq!(
            decode(
                "---\nmethod: omq.user.service.X.echo\nparams:\n  - 1\n  - a\n  - {k: [1.5, true]}\n  \
                 - [~, null, \"1\", '2', 0x1F, -3, 1e3, false, !!str true, '']\nid: 3\nversion: \"1.1\"\n"
            ),
            RpcCall {
                method: "omq.user.service.X.echo".into(),
                params: vec![
                    json!(1),
                    json!("a"),
                    json!({"k": [1.5, true]}),
                    json!([null, null, "1", "2", 31, -3, 1000.0, false, "true", ""]),
                ],
                id: Some(json!(3)),
            }
        );
        // By name: one param; no params at all; no id.
        assert_eq!(
            decode(
                "{method: omq.system.retry-workflow-instance, params: {workflow_instanceid: 42}}"
            ),
            RpcCall {
                method: "omq.system.retry-workflow-instance".into(),
                params: vec![json!({"workflow_instanceid": 42})],
                id: None,
            }
        );
        assert_eq!(
            decode("method: omq.system.get-status\nparams:\n").params,
            Vec::<Value>::new()
        );
    }

    #[test]
    fn responses_round_trip_through_yaml() {
        let tricky = json!({
            "strings": ["true", "null", "~", "1.5", "", " lead", "a: b", "- x", "#c", "line\nbreak", "é 😀", "'q\""],
            "numbers": [0, -1, i64::MAX, 1.5, -2.5e-7, 1e300],
            "bool": [true, false], "null": null, "nested": [[], {}, [{"a": [1]}]],
        });
        let call = RpcCall {
            method: "m".into(),
            params: vec![],
            id: Some(json!("r-1")),
        };
        assert_eq!(
            read(&encode_response(&call, &RpcOutcome::Ok(tricky.clone()))),
            json!({"result": tricky, "id": "r-1"})
        );
        let anonymous = RpcCall { id: None, ..call };
        assert_eq!(
            read(&encode_response(&anonymous, &RpcOutcome::Ok(json!(null)))),
            json!({"result": null})
        );
        let exception = RpcOutcome::Err {
            code: "ValueError".into(),
            desc: "bad: value".into(),
            info: Some(json!({"traceback": "t"})),
        };
        assert_eq!(
            read(&encode_response(&anonymous, &exception)),
            json!({"error": {"name": "JSONRPCError", "code": 104, "message": "ValueError: bad: value",
                             "error": {"err": "ValueError", "desc": "bad: value", "info": {"traceback": "t"}}}})
        );
        assert_eq!(
            read(&encode_response(
                &anonymous,
                &RpcOutcome::unknown_method("x")
            ))["error"]["code"],
            105
        );
    }

    #[test]
    fn malformed_requests_get_errors() {
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                      c: [*b, *b, *b, *b, *b, *b, *b, *b]\nmethod: m\n";
        let deep = "[".repeat(200) + &"]".repeat(200);
        for (body, code, text) in [
            (&b""[..], -32700, "empty"),
            (b"method: [unclosed", -32700, "not valid YAML"),
            (b"method: m\n---\nmethod: n\n", -32700, "one YAML document"),
            (laughs.as_bytes(), -32700, "aliases"),
            (deep.as_bytes(), -32700, "deeper than 128"),
            (b"method: m\xFF\n", -32700, "not UTF-8"),
            (
                b"- method\n- m\n",
                -32600,
                "a mapping {method, params, id}, not an array",
            ),
            (b"omq.system.get-status", -32600, "not a string"),
            (b"params: [1]\n", -32600, "has no method"),
            (b"method: 5\n", -32600, "method must be a string"),
            (b"method: ''\n", -32600, "method is empty"),
            (b"method: m\nparams: 5\n", -32600, "params must be an array"),
            (
                b"method: m\nparams: text\n",
                -32600,
                "params must be an array",
            ),
            (b"method: m\nid: [1]\n", -32600, "id must be"),
        ] {
            let err = decode_request(body).expect_err("refused");
            let shown = String::from_utf8_lossy(body);
            assert_eq!(err.code(), code, "{shown}: {err}");
            assert!(err.desc().contains(text), "{shown}: {err}");
            let response = read(&encode_error(&err));
            assert_eq!(response["error"]["code"], code, "{shown}");
            assert_eq!(response["error"]["error"]["desc"], err.desc(), "{shown}");
        }
    }
}
