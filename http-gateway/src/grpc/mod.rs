//! gRPC: the system API as the service `sluice.v1.SystemApi` (`proto/sluice/api.proto`),
//! for cluster API clients that prefer gRPC to ZeroMQ. `docs/grpc.md` is its reference.
//!
//! The service is tonic's generated server (the gateway's `build.rs`; every message is
//! `sluice_proto`'s, the bus's own) mounted on the gateway's axum router at
//! `/sluice.v1.SystemApi/*`, so it is served by the same HTTP and HTTPS listeners as
//! REST — over HTTP/2 only, as gRPC is: h2c with prior knowledge on plain listeners, ALPN
//! `h2` on TLS ones — and behind the same hygiene (request id, access log) and
//! authentication gate. (tonic's own `Routes` brings an axum fallback of its own, which the
//! REST router's fallback cannot be merged with; the route below is what `Routes` makes.)
//!
//! - The typed rpcs (`GetStatus`, `GetEvents`, `StartInterface`, ...) send their verb's
//!   bus body and answer with the master's reply message, decoded and encoded again.
//! - `Call` takes any method of the RPC gateways by name (`rpc::methods`: the
//!   client-callable verbs, `omq.user.service.NAME.METHOD`, `system.listMethods`) with a
//!   JSON body, and runs it exactly as `/JSON` does (`rpc::http::execute`: the same
//!   method table, forced fields such as `"external": true`, patience). Verbs only the
//!   master's own processes may call are refused without asking the master.
//! - A refusal is a gRPC status ([`status`]): its code from the Qorus code ([`code_of`]),
//!   the message `CODE: description`, metadata `qorus-err` (the code) and `qorus-info`
//!   (the details as JSON, when there are any).
//! - A client's `grpc-timeout` bounds the call ([`time_limit`]).

pub mod api {
    //! The generated service: `system_api_server` and a client, `system_api_client`.
    include!(concat!(env!("OUT_DIR"), "/sluice.v1.rs"));
}

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use futures_util::stream::BoxStream;
use prost::Message;
use serde_json::Value;
use sluice_proto::v1::{
    Empty, Event, EventList, EventQuery, InterfaceList, InterfaceRef, InterfaceReply, JsonCall,
    JsonReply, Registry, SystemStatus,
};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::errors::{self, ApiError};
use crate::rest::{CHANGE_TIMEOUT, MAX_BODY, READ_TIMEOUT};
use crate::rpc::{self, RpcCall, RpcOutcome};
use crate::Gateway;
use api::system_api_server::{SystemApi, SystemApiServer, SERVICE_NAME};

/// The metadata key of the Qorus error code of a refusal.
pub const ERR_KEY: &str = "qorus-err";
/// The metadata key of a refusal's details (JSON, ASCII only).
pub const INFO_KEY: &str = "qorus-info";
/// Longest status message, in bytes; a longer description is cut. The message and the
/// metadata travel as HTTP/2 headers, and clients limit those (grpcio: 8 KiB in all).
const MAX_MESSAGE: usize = 1024;
/// Longest `qorus-info`: past it, the traceback is left out; still too long, all of it.
const MAX_INFO: usize = 3072;
/// How long one `WatchEvents` poll waits at the master for an event.
const WATCH_WAIT: Duration = Duration::from_secs(25);

/// The gRPC router: the service under `/sluice.v1.SystemApi/`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let server = SystemApiServer::new(SystemApiService { gateway })
        .max_decoding_message_size(MAX_BODY)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    Router::new()
        .route_service(&format!("/{SERVICE_NAME}/{{*rest}}"), server)
        .route_layer(axum::middleware::from_fn(only_grpc))
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, `+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/grpc" || v.starts_with("application/grpc+")
        })
}

/// Middleware of the service's paths: what is not gRPC is answered as a REST error.
async fn only_grpc(request: Request, next: Next) -> Response {
    if is_grpc(request.headers()) {
        return next.run(request).await;
    }
    let error = ApiError::new(
        "BAD-REQUEST",
        format!(
            "{} is a gRPC method: it takes gRPC calls (content-type application/grpc, \
             over HTTP/2) only",
            request.uri().path()
        ),
    );
    crate::format::respond_error(crate::format::reply_format(request.headers()), &error)
}

/// A refusal as the gRPC reply it is (trailers only), for the layers before routing (the
/// authentication gate).
pub fn refusal(error: &ApiError) -> Response {
    status(error).into_http::<axum::body::Body>()
}

/// The gRPC code of a Qorus error code: from its HTTP status in [`errors::STATUS_TABLE`]
/// (the one table of codes), but for the codes of [`OVERRIDES`].
pub fn code_of(code: &str) -> Code {
    if let Some((_, grpc)) = OVERRIDES.iter().find(|(c, _)| *c == code) {
        return *grpc;
    }
    let http = errors::status_of(code).as_u16();
    BY_HTTP_STATUS
        .iter()
        .find(|(status, _)| *status == http)
        .map_or(Code::FailedPrecondition, |(_, grpc)| *grpc)
}

/// Codes whose gRPC code says more than their HTTP status would.
pub const OVERRIDES: &[(&str, Code)] = &[
    // No such method (of the system, or of a service): gRPC's own word for it.
    ("UNKNOWN-METHOD", Code::Unimplemented),
    // A service method that ran past its time limit.
    ("TIMEOUT", Code::DeadlineExceeded),
];

/// The gRPC code of each HTTP status of the REST table; any other status (409, every
/// other refusal) is `FAILED_PRECONDITION`.
pub const BY_HTTP_STATUS: &[(u16, Code)] = &[
    (400, Code::InvalidArgument),
    (401, Code::Unauthenticated),
    (403, Code::PermissionDenied),
    (404, Code::NotFound),
    (405, Code::Unimplemented),
    (413, Code::ResourceExhausted),
    (415, Code::InvalidArgument),
    (500, Code::Internal),
    (503, Code::Unavailable),
    (504, Code::DeadlineExceeded),
];

/// An error as a gRPC status: the code of [`code_of`], the message `CODE: description`,
/// metadata `qorus-err` and, when the error has details, `qorus-info`.
pub fn status(error: &ApiError) -> Status {
    let mut metadata = MetadataMap::new();
    if let Ok(value) = MetadataValue::try_from(error.code.as_str()) {
        metadata.insert(ERR_KEY, value);
    }
    if let Some(text) = error.info.as_ref().and_then(info_text) {
        if let Ok(value) = MetadataValue::try_from(text.as_str()) {
            metadata.insert(INFO_KEY, value);
        }
    }
    let mut message = format!("{}: {}", error.code, error.desc);
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" ...");
    }
    Status::with_metadata(code_of(&error.code), message, metadata)
}

/// `qorus-info`'s text: the details as ASCII-only JSON (a header value is ASCII), without
/// the traceback when it would be too long, `None` when even that is.
fn info_text(info: &Value) -> Option<String> {
    let text = ascii_json(info);
    if text.len() <= MAX_INFO {
        return Some(text);
    }
    let mut shorter = info.as_object()?.clone();
    shorter.remove("traceback")?;
    let text = ascii_json(&Value::Object(shorter));
    (text.len() <= MAX_INFO).then_some(text)
}

/// JSON with every character past ASCII escaped (`\u00e9`; a surrogate pair past the BMP).
/// serde_json already escapes the control characters, and only strings hold others.
pub fn ascii_json(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// The time limit a client gave its call (`grpc-timeout`: up to 8 digits and a unit, `H`,
/// `M`, `S`, `m`, `u` or `n`); `None` when it gave none or a malformed one.
pub fn time_limit(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Runs `work` within the client's time limit, if it gave one.
async fn within<T>(
    limit: Option<Duration>,
    work: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(limit) = limit else {
        return work.await;
    };
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(status(&ApiError::new(
            "REQUEST-TIMEOUT",
            format!(
                "the call took longer than its grpc-timeout ({} ms)",
                limit.as_millis()
            ),
        )))
    })
}

/// The params of a [`JsonCall`]'s body, as the RPC gateways take them.
fn call_params(body_json: &[u8]) -> Result<Vec<Value>, ApiError> {
    if body_json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let body: Value = serde_json::from_slice(body_json)
        .map_err(|e| ApiError::invalid(format!("body_json is not JSON: {e}")))?;
    Ok(match body {
        Value::Null => Vec::new(),
        Value::Array(params) => params,
        one => vec![one],
    })
}

struct SystemApiService {
    gateway: Arc<Gateway>,
}

impl SystemApiService {
    /// Sends a verb to the master; the reply's body.
    async fn verb(
        &self,
        verb: &str,
        body: Vec<u8>,
        timeout: Duration,
        limit: Option<Duration>,
    ) -> Result<Vec<u8>, Status> {
        // The master drops what is past the client's deadline before it starts on it.
        let deadline_ms = limit.map_or(0, |l| {
            sluice_core::now_ms() + l.min(timeout).as_millis() as i64
        });
        within(limit, async {
            self.gateway
                .call(verb, body, timeout, deadline_ms)
                .await
                .map_err(|e| status(&e))
        })
        .await
    }

    /// A verb whose reply is a protobuf message.
    async fn typed<M: Message + Default>(
        &self,
        verb: &str,
        body: Vec<u8>,
        timeout: Duration,
        limit: Option<Duration>,
    ) -> Result<tonic::Response<M>, Status> {
        let reply = self.verb(verb, body, timeout, limit).await?;
        M::decode(reply.as_slice())
            .map(tonic::Response::new)
            .map_err(|e| {
                status(&ApiError::new(
                    "INTERNAL-ERROR",
                    format!("the master's reply to {verb} is malformed: {e}"),
                ))
            })
    }

    async fn interface(
        &self,
        verb: &str,
        request: tonic::Request<InterfaceRef>,
    ) -> Result<tonic::Response<InterfaceReply>, Status> {
        let limit = time_limit(request.metadata());
        let body = request.into_inner().encode_to_vec();
        let reply = self.verb(verb, body, CHANGE_TIMEOUT, limit).await?;
        Ok(tonic::Response::new(InterfaceReply {
            network_id: String::from_utf8_lossy(&reply).into_owned(),
        }))
    }
}

/// Where a `WatchEvents` stream is.
struct Watch {
    gateway: Arc<Gateway>,
    query: EventQuery,
    /// Events up to this id were sent (or did not match).
    since: u64,
    pending: std::collections::VecDeque<Event>,
    stopping: tokio::sync::watch::Receiver<bool>,
    done: bool,
}

impl Watch {
    /// The next event, the error that ends the stream, or `None` once it ended.
    async fn next(&mut self) -> Option<Result<Event, Status>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let query = EventQuery {
                since_id: self.since,
                wait_ms: WATCH_WAIT.as_millis() as u32,
                ..self.query
            };
            let polled = tokio::select! {
                polled = self.gateway.poll_events(query) => polled,
                _ = crate::ws::stopped(&mut self.stopping) => {
                    self.done = true;
                    return Some(Err(status(&ApiError::new(
                        "SHUTDOWN-IN-PROGRESS",
                        "the gateway is stopping; watch again from the last event's id",
                    ))));
                }
            };
            match polled {
                Ok(list) if list.last_id < self.since => {
                    // A new master: its ids start again from 1.
                    self.since = 0;
                }
                Ok(list) => {
                    let since = self.since;
                    self.pending
                        .extend(list.events.into_iter().filter(|e| e.id > since));
                    self.since = self.pending.iter().map(|e| e.id).fold(since, u64::max);
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(status(&error)));
                }
            }
        }
    }
}

#[tonic::async_trait]
impl SystemApi for SystemApiService {
    async fn get_status(
        &self,
        request: tonic::Request<Empty>,
    ) -> Result<tonic::Response<SystemStatus>, Status> {
        let limit = time_limit(request.metadata());
        self.typed("omq.system.get-status", Vec::new(), READ_TIMEOUT, limit)
            .await
    }

    async fn get_registry(
        &self,
        request: tonic::Request<Empty>,
    ) -> Result<tonic::Response<Registry>, Status> {
        let limit = time_limit(request.metadata());
        self.typed("omq.system.get-registry", Vec::new(), READ_TIMEOUT, limit)
            .await
    }

    async fn get_events(
        &self,
        request: tonic::Request<EventQuery>,
    ) -> Result<tonic::Response<EventList>, Status> {
        let limit = time_limit(request.metadata());
        let query = request.into_inner();
        within(limit, async {
            self.gateway
                .poll_events(query)
                .await
                .map(tonic::Response::new)
                .map_err(|e| status(&e))
        })
        .await
    }

    type WatchEventsStream = BoxStream<'static, Result<Event, Status>>;

    async fn watch_events(
        &self,
        request: tonic::Request<EventQuery>,
    ) -> Result<tonic::Response<Self::WatchEventsStream>, Status> {
        let query = request.into_inner();
        let watch = Watch {
            gateway: self.gateway.clone(),
            since: query.since_id,
            query,
            pending: Default::default(),
            stopping: self.gateway.local.stopping.clone(),
            done: false,
        };
        // Polled by tonic as the client reads; dropped (and the poll with it) when the
        // client goes away.
        let stream = futures_util::stream::unfold(watch, |mut watch| async move {
            watch.next().await.map(|item| (item, watch))
        });
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn list_interfaces(
        &self,
        request: tonic::Request<Empty>,
    ) -> Result<tonic::Response<InterfaceList>, Status> {
        let limit = time_limit(request.metadata());
        self.typed(
            "omq.system.list-interfaces",
            Vec::new(),
            READ_TIMEOUT,
            limit,
        )
        .await
    }

    async fn start_interface(
        &self,
        request: tonic::Request<InterfaceRef>,
    ) -> Result<tonic::Response<InterfaceReply>, Status> {
        self.interface("omq.system.start-interface", request).await
    }

    async fn stop_interface(
        &self,
        request: tonic::Request<InterfaceRef>,
    ) -> Result<tonic::Response<InterfaceReply>, Status> {
        self.interface("omq.system.stop-interface", request).await
    }

    async fn call(
        &self,
        request: tonic::Request<JsonCall>,
    ) -> Result<tonic::Response<JsonReply>, Status> {
        let limit = time_limit(request.metadata());
        let JsonCall { method, body_json } = request.into_inner();
        let params = call_params(&body_json).map_err(|e| status(&e))?;
        let call = RpcCall {
            method,
            params,
            id: None,
        };
        let outcome = within(limit, async {
            Ok(rpc::http::execute(&self.gateway, &call).await)
        })
        .await?;
        match outcome {
            RpcOutcome::Ok(value) => Ok(tonic::Response::new(JsonReply {
                body_json: value.to_string().into_bytes(),
            })),
            RpcOutcome::Err { code, desc, info } => Err(status(&ApiError { code, desc, info })),
        }
    }
}

#[cfg(test)]
mod tests;
