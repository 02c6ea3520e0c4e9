//! What every request goes through, whatever its route: a request id, a time limit, one
//! access log line, CORS when enabled, and a 500 instead of a dropped connection if a
//! handler ever panicked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use axum::middleware::Next;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::errors::ApiError;
use crate::format::{self, Format};

/// The longest a request may take before the gateway answers 504 (a job run through
/// `PUT jobs/NAME?action=run` that takes longer goes on; only the reply is lost).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The address of the client, put on every request by the listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The address of the listener a connection came in on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Listener(pub SocketAddr);

/// Where the request being served came from and what it was: the master records them in
/// its audit records of the changes the request makes (`Principal.source`, `.reason`).
/// Kept as the request had them (cheap clones); the text is made only for a call to the
/// master ([`Origin::source`], [`Origin::reason`]), which most requests never make.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    method: Method,
    uri: Uri,
    peer: Option<SocketAddr>,
    listener: Option<SocketAddr>,
}

tokio::task_local! {
    /// The [`Origin`] of the request the current task serves ([`track`] sets it).
    pub(crate) static ORIGIN: Origin;
}

/// Qorus's spelling of an address in audit records: `ipv4[127.0.0.1]:50653`.
fn audit_address(addr: Option<SocketAddr>) -> String {
    match addr {
        Some(SocketAddr::V4(a)) => format!("ipv4[{}]:{}", a.ip(), a.port()),
        Some(SocketAddr::V6(a)) => format!("ipv6[{}]:{}", a.ip(), a.port()),
        None => "-".to_string(),
    }
}

impl Origin {
    pub(crate) fn of(request: &Request) -> Origin {
        Origin {
            method: request.method().clone(),
            uri: request.uri().clone(),
            peer: request.extensions().get::<Peer>().map(|p| p.0),
            listener: request.extensions().get::<Listener>().map(|l| l.0),
        }
    }

    /// The client's and the listener's addresses: `source: ipv4[C]:P listener: ipv4[L]:P`.
    pub(crate) fn source(&self) -> String {
        format!(
            "source: {} listener: {}",
            audit_address(self.peer),
            audit_address(self.listener)
        )
    }

    /// The protocol, method and path with only the `action` of the query (other values
    /// may be secrets): `REST PUT api/latest/orders/5?action=retry`.
    pub(crate) fn reason(&self) -> String {
        let path = self.uri.path();
        let protocol = match path {
            "/JSON" => "JSON-RPC",
            "/RPC2" => "XML-RPC",
            "/YAML" => "YAML-RPC",
            p if p.starts_with("/sluice.v1.") => "gRPC",
            _ => "REST",
        };
        let action = self.uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "action")
                .map(|(_, value)| value.into_owned())
        });
        let reason = format!(
            "{protocol} {} {}",
            self.method,
            path.trim_start_matches('/')
        );
        match action {
            Some(action) => format!("{reason}?action={action}"),
            None => reason,
        }
    }
}

/// A client's request id is kept when it is short printable text; otherwise a new one is
/// made (it goes into log lines: nothing a client sends may forge one).
fn request_id(request: &Request) -> HeaderValue {
    let given = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
        });
    match given.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(value) => value,
        None => HeaderValue::from_str(&new_request_id())
            .unwrap_or_else(|_| HeaderValue::from_static("-")),
    }
}

/// A random UUID (version 4).
fn new_request_id() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The path for the log: query parameter names only, since values may be secrets.
pub fn loggable(uri: &Uri) -> String {
    match uri.query() {
        Some(query) if !query.is_empty() => {
            let names: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(name, _)| name.into_owned())
                .collect();
            format!("{}?{}", uri.path(), names.join("&"))
        }
        _ => uri.path().to_string(),
    }
}

/// Middleware: request id (taken or made, echoed), the time limit, the access log line.
pub async fn track(mut request: Request, next: Next) -> Response<Body> {
    let started = Instant::now();
    let id = request_id(&request);
    request
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    let method = request.method().clone();
    let path = loggable(request.uri());
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.to_string())
        .unwrap_or_else(|| "-".to_string());
    let format = format::reply_format(request.headers());
    let origin = Origin::of(&request);
    let served = ORIGIN.scope(
        origin,
        tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)),
    );
    let mut response = match served.await {
        Ok(response) => response,
        Err(_) => format::respond_error(
            format,
            &ApiError::new(
                "REQUEST-TIMEOUT",
                format!(
                    "the request took longer than {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ),
        ),
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), id.clone());
    // A refused body may be left unread, and then hyper closes the connection after the
    // reply. Saying so lets a client open a new connection for its next request rather than
    // send it on this one and lose it to the close.
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::GATEWAY_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    tracing::info!(
        target: "sluice::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_micros() as f64 / 1000.0,
        request_id = id.to_str().unwrap_or("-"),
        peer = %peer,
        "{method} {path} {}",
        response.status().as_u16()
    );
    response
}

/// What a panicking handler answers (the panic is logged; the gateway serves on).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".to_string());
    tracing::error!("a request handler panicked: {what}");
    format::respond_error(
        Format::Json,
        &ApiError::new("INTERNAL-ERROR", "the gateway failed on this request"),
    )
}

/// CORS for `qorus.cors-enable`: any origin may call the API from a browser.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::any())
        .expose_headers([X_REQUEST_ID.clone()])
        .max_age(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_keeps_the_action_and_no_other_query_value() {
        let request = Request::builder()
            .method("PUT")
            .uri("/api/latest/system/options/qorus.systemdb?value=pass%3Dsecret&action=set")
            .body(Body::empty())
            .unwrap();
        let origin = Origin::of(&request);
        assert_eq!(
            origin.reason(),
            "REST PUT api/latest/system/options/qorus.systemdb?action=set"
        );
        assert!(!origin.reason().contains("secret"));
        assert_eq!(origin.source(), "source: - listener: -");
        let grpc = Request::builder()
            .method("POST")
            .uri("/sluice.v1.SystemApi/Call")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            Origin::of(&grpc).reason(),
            "gRPC POST sluice.v1.SystemApi/Call"
        );
    }

    #[test]
    fn request_ids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "{id}");
        assert!("89ab".contains(&id[19..20]), "{id}");
        let with = |v: &str| {
            let mut r = Request::new(Body::empty());
            r.headers_mut()
                .insert(X_REQUEST_ID.clone(), HeaderValue::from_str(v).unwrap());
            request_id(&r)
        };
        assert_eq!(with("abc-123"), "abc-123");
        assert_ne!(with("a b"), "a b");
        assert_ne!(with(&"x".repeat(200)), "x".repeat(200).as_str());
    }

    #[test]
    fn log_paths_hide_query_values() {
        let uri: Uri = "/api/latest/x?token=secret&action=call&args=%5B1%5D"
            .parse()
            .unwrap();
        assert_eq!(loggable(&uri), "/api/latest/x?token&action&args");
        assert_eq!(loggable(&"/a".parse().unwrap()), "/a");
    }
}
