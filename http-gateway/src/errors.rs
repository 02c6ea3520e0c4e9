//! Errors as HTTP clients see them: `{"err": CODE, "desc": TEXT}` (plus `"info"` when the
//! error carries details, e.g. a service method's exception), and the one table that maps
//! a Qorus error code to an HTTP status.

use axum::http::StatusCode;
use serde_json::{json, Value};

/// Which codes a row of [`STATUS_TABLE`] covers.
#[derive(Debug, Clone, Copy)]
pub enum Codes {
    /// Exactly these codes.
    Exact(&'static [&'static str]),
    /// Every code ending with this text (`SERVICE-NOT-FOUND`, `GROUP-NOT-FOUND`, ...).
    Suffix(&'static str),
}

impl Codes {
    fn matches(self, code: &str) -> bool {
        match self {
            Codes::Exact(codes) => codes.contains(&code),
            Codes::Suffix(suffix) => code.ends_with(suffix),
        }
    }
}

/// The status of every error code, first matching row wins; a code no row names is a
/// refusal: 409. `docs/rest.md` shows this table (a test keeps it current).
pub const STATUS_TABLE: &[(Codes, u16, &str)] = &[
    (
        Codes::Exact(&[
            "INVALID-ARGUMENT",
            "ORDER-DATA-ERROR",
            "ORDER-KEY-ERROR",
            "BAD-REQUEST",
        ]),
        400,
        "an argument is missing, malformed or out of range; the body is not the JSON or \
         YAML the route takes",
    ),
    (
        Codes::Exact(&["AUTHENTICATION-ERROR"]),
        401,
        "the request did not authenticate (with `qorus.rbac-security` on)",
    ),
    (
        Codes::Exact(&["AUTHORIZATION-ERROR"]),
        403,
        "the caller may not do this (e.g. an `internal` service method called from outside)",
    ),
    (
        Codes::Exact(&["NOT-FOUND", "UNKNOWN-WORKFLOW", "UNKNOWN-METHOD"]),
        404,
        "no such route, interface, order, method, job instance, ...",
    ),
    (
        Codes::Suffix("-NOT-FOUND"),
        404,
        "`SERVICE-NOT-FOUND`, `WORKFLOW-ORDER-NOT-FOUND`, `GROUP-NOT-FOUND`, ...",
    ),
    (
        Codes::Exact(&["METHOD-NOT-ALLOWED"]),
        405,
        "the path exists, but not with this HTTP method",
    ),
    (
        Codes::Exact(&["PAYLOAD-TOO-LARGE"]),
        413,
        "the body is larger than the gateway accepts (16 MiB; decoded, when it was sent \
         compressed)",
    ),
    (
        Codes::Exact(&["UNSUPPORTED-ENCODING"]),
        415,
        "the body's `Content-Encoding` is not one the gateway reads",
    ),
    (
        Codes::Exact(&["INTERNAL-ERROR"]),
        500,
        "a fault in the gateway itself (it stays up)",
    ),
    (
        Codes::Exact(&["SHUTDOWN-IN-PROGRESS", "MASTER-UNAVAILABLE"]),
        503,
        "the master is shutting down, or did not answer",
    ),
    (
        Codes::Exact(&["REQUEST-TIMEOUT"]),
        504,
        "the request took longer than the gateway allows (120 s)",
    ),
];

/// The HTTP status of an error code.
pub fn status_of(code: &str) -> StatusCode {
    STATUS_TABLE
        .iter()
        .find(|(codes, _, _)| codes.matches(code))
        .and_then(|(_, status, _)| StatusCode::from_u16(*status).ok())
        .unwrap_or(StatusCode::CONFLICT)
}

/// An error reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub desc: String,
    /// Details, when the error has any: a service method's exception
    /// `{"type", "message", "traceback", "info"}`.
    pub info: Option<Value>,
}

impl ApiError {
    pub fn new(code: impl Into<String>, desc: impl Into<String>) -> ApiError {
        ApiError {
            code: code.into(),
            desc: desc.into(),
            info: None,
        }
    }

    pub fn invalid(desc: impl Into<String>) -> ApiError {
        ApiError::new("INVALID-ARGUMENT", desc)
    }

    /// An error reply of the bus (the master's, or a service's through it).
    pub fn from_bus(error: sluice_proto::v1::Error) -> ApiError {
        let info = if error.info_json.is_empty() {
            None
        } else {
            serde_json::from_slice(&error.info_json).ok()
        };
        ApiError {
            code: error.code,
            desc: error.description,
            info,
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(&self.code)
    }

    /// The reply body.
    pub fn to_json(&self) -> Value {
        let mut body = json!({"err": self.code, "desc": self.desc});
        if let Some(info) = &self.info {
            body["info"] = info.clone();
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_qorus_statuses() {
        for (code, status) in [
            ("INVALID-ARGUMENT", 400),
            ("ORDER-DATA-ERROR", 400),
            ("ORDER-KEY-ERROR", 400),
            ("BAD-REQUEST", 400),
            ("AUTHENTICATION-ERROR", 401),
            ("AUTHORIZATION-ERROR", 403),
            ("NOT-FOUND", 404),
            ("SERVICE-NOT-FOUND", 404),
            ("WORKFLOW-ORDER-NOT-FOUND", 404),
            ("GROUP-NOT-FOUND", 404),
            ("UNKNOWN-WORKFLOW", 404),
            ("UNKNOWN-METHOD", 404),
            ("METHOD-NOT-ALLOWED", 405),
            ("PAYLOAD-TOO-LARGE", 413),
            ("UNSUPPORTED-ENCODING", 415),
            ("INTERNAL-ERROR", 500),
            ("SHUTDOWN-IN-PROGRESS", 503),
            ("MASTER-UNAVAILABLE", 503),
            ("REQUEST-TIMEOUT", 504),
            // Every other refusal.
            ("DUPLICATE-ORDER-KEY", 409),
            ("STATUS-ERROR", 409),
            ("ValueError", 409),
            ("TIMEOUT", 409),
            ("DATABASE-ERROR", 409),
            ("", 409),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn an_exception_keeps_its_details() {
        let err = ApiError::from_bus(sluice_proto::v1::Error {
            code: "ValueError".into(),
            description: "boom".into(),
            info_json:
                br#"{"type": "ValueError", "message": "boom", "traceback": "t", "info": null}"#
                    .to_vec(),
        });
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(
            err.to_json(),
            json!({"err": "ValueError", "desc": "boom",
                   "info": {"type": "ValueError", "message": "boom", "traceback": "t", "info": null}})
        );
        let plain = ApiError::new("STATUS-ERROR", "no");
        assert_eq!(
            plain.to_json(),
            json!({"err": "STATUS-ERROR", "desc": "no"})
        );
    }
}
