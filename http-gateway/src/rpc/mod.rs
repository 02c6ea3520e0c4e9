//! The RPC gateways' protocols: JSON-RPC (`/JSON`), XML-RPC (`/RPC2`) and YAML-RPC
//! (`/YAML`), as pure functions from request bytes to an [`RpcCall`] and from an
//! [`RpcOutcome`] back to response bytes. No HTTP and no bus here: the HTTP side decodes
//! the body with its protocol's `decode_request`, resolves each call with
//! [`methods::resolve`] to a master verb and its body, sends it, turns the master's reply
//! into an outcome ([`methods::Target::outcome`], [`RpcOutcome::from_bus`]) and answers
//! with the protocol's `encode_response` (HTTP 200 in every case, faults included, as
//! Qorus does). A malformed request is answered with the protocol's `encode_error`: a
//! well-formed error response in the same protocol, never a panic. `docs/rpc.md` shows the
//! shapes, the method names and the error codes to clients.
//!
//! The error numbers are one table for the three protocols ([`fault_code`]): Qorus's 105
//! for an unknown method and 104 for an error raised by the called method (any other
//! code), and for a request that cannot be decoded the JSON-RPC 2.0 numbers, which the
//! XML-RPC fault code convention (xmlrpc-epi's "specification for fault code
//! interoperability") shares: -32700 not well-formed, -32600 not a valid request.

pub mod http;
pub mod jsonrpc;
pub mod methods;
pub mod xmlrpc;
pub mod yamlrpc;

use serde_json::{json, Value};

use crate::errors::ApiError;

/// Deepest nesting of arrays and objects (structs) a call's params may have: the same
/// limit as the REST bodies' (and serde_json's), so no input can exhaust the stack.
pub const MAX_DEPTH: usize = crate::format::MAX_DEPTH;

/// Qorus's error number for a method the system does not have.
pub const UNKNOWN_METHOD: i64 = 105;
/// Qorus's error number for an error raised by the called method.
pub const METHOD_ERROR: i64 = 104;
/// The request is not well-formed JSON, XML or YAML (or not UTF-8).
pub const PARSE_ERROR: i64 = -32700;
/// The request is well-formed but not a valid call of its protocol.
pub const INVALID_REQUEST: i64 = -32600;

/// One decoded RPC call, whatever the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub method: String,
    pub params: Vec<Value>,
    /// The JSON-RPC (or YAML-RPC) id; `None` when the request had none (a JSON-RPC 2.0
    /// notification, or an XML-RPC call, which has no ids).
    pub id: Option<Value>,
}

/// What the system answered.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcOutcome {
    Ok(Value),
    Err {
        /// Qorus's error code, e.g. `ValueError`, `UNKNOWN-METHOD`, `STATUS-ERROR`.
        code: String,
        desc: String,
        /// Details, when the error has any: a service method's exception
        /// `{"type", "message", "traceback", "info"}`.
        info: Option<Value>,
    },
}

impl RpcOutcome {
    pub fn error(code: impl Into<String>, desc: impl Into<String>) -> RpcOutcome {
        RpcOutcome::Err {
            code: code.into(),
            desc: desc.into(),
            info: None,
        }
    }

    /// `UNKNOWN-METHOD` for a method name the gateway does not export.
    pub fn unknown_method(method: &str) -> RpcOutcome {
        RpcOutcome::error("UNKNOWN-METHOD", format!("no method {method:?}"))
    }

    /// The error of a bus reply (the master's, or a service's through it).
    pub fn from_bus(error: sluice_proto::v1::Error) -> RpcOutcome {
        ApiError::from_bus(error).into()
    }
}

impl From<ApiError> for RpcOutcome {
    fn from(error: ApiError) -> RpcOutcome {
        RpcOutcome::Err {
            code: error.code,
            desc: error.desc,
            info: error.info,
        }
    }
}

/// The error number an outcome's code is reported with: 105 for `UNKNOWN-METHOD`, 104 for
/// every other error (whatever the called method raised, or refused).
pub fn fault_code(code: &str) -> i64 {
    if code == "UNKNOWN-METHOD" {
        UNKNOWN_METHOD
    } else {
        METHOD_ERROR
    }
}

/// The message of an error response: `CODE: desc`.
fn fault_message(code: &str, desc: &str) -> String {
    format!("{code}: {desc}")
}

/// Qorus's error as a JSON object: `{"err", "desc"}`, plus `"info"` when there is any
/// (the same object as a REST error reply's body).
fn error_data(code: &str, desc: &str, info: Option<&Value>) -> Value {
    let mut data = json!({"err": code, "desc": desc});
    if let Some(info) = info {
        data["info"] = info.clone();
    }
    data
}

/// Why a request could not be decoded. Its text says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// Not well-formed JSON, XML or YAML, truncated, or not UTF-8 text.
    #[error("parse error: {0}")]
    Parse(String),
    /// Well-formed, but not a call of the protocol (no method name, a wrong root
    /// element, a malformed value, params nested too deep, a DOCTYPE, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl RpcError {
    /// The error number the protocols answer this error with.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Parse(_) => PARSE_ERROR,
            RpcError::Invalid(_) => INVALID_REQUEST,
        }
    }

    /// The Qorus-style code shown in the error's message and data: `PARSE-ERROR` or
    /// `INVALID-REQUEST`.
    pub fn err(&self) -> &'static str {
        match self {
            RpcError::Parse(_) => "PARSE-ERROR",
            RpcError::Invalid(_) => "INVALID-REQUEST",
        }
    }

    pub fn desc(&self) -> &str {
        match self {
            RpcError::Parse(text) | RpcError::Invalid(text) => text,
        }
    }
}

/// The body as UTF-8 text, without a byte order mark.
fn utf8_text(body: &[u8]) -> Result<&str, RpcError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| {
        RpcError::Parse(format!(
            "the request is not UTF-8 text: invalid byte at offset {}",
            e.valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_numbers_follow_qorus() {
        assert_eq!(fault_code("UNKNOWN-METHOD"), 105);
        assert_eq!(fault_code("ValueError"), 104);
        assert_eq!(fault_code("STATUS-ERROR"), 104);
        assert_eq!(RpcError::Parse("x".into()).code(), -32700);
        assert_eq!(RpcError::Invalid("x".into()).code(), -32600);
    }

    #[test]
    fn bus_errors_keep_their_details() {
        let outcome = RpcOutcome::from_bus(sluice_proto::v1::Error {
            code: "ValueError".into(),
            description: "boom".into(),
            info_json: br#"{"type": "ValueError", "traceback": "t"}"#.to_vec(),
        });
        assert_eq!(
            outcome,
            RpcOutcome::Err {
                code: "ValueError".into(),
                desc: "boom".into(),
                info: Some(json!({"type": "ValueError", "traceback": "t"})),
            }
        );
    }

    #[test]
    fn bodies_must_be_utf8() {
        assert_eq!(utf8_text(b"\xEF\xBB\xBFok"), Ok("ok"));
        let err = utf8_text(b"ab\xFFcd").unwrap_err();
        assert_eq!(err.code(), PARSE_ERROR);
        assert!(err.desc().contains("offset 2"), "{err}");
    }
}
