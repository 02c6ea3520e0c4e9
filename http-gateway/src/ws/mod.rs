//! The gateway's WebSockets (RFC 6455), at Qorus's paths:
//!
//! - `/apievents` ([`events`]): the master's system events as JSON arrays, with a filter;
//! - `/log/SOURCE` ([`log`]): the last lines of a process's log file, then what is added;
//! - `/remote-command` ([`command`]): operator commands as Qorus's remote client runs them,
//!   opened with a token from `GET /api/latest/system/wstoken` ([`token`]).
//!
//! What every socket shares (here): the handshake is checked before the upgrade and a
//! malformed one gets a JSON error; a browser page of another origin is refused (unless
//! `qorus.cors-enable`); client messages are at most [`MAX_MESSAGE`]; a send that does not
//! complete in [`SEND_TIMEOUT`] closes the socket (a slow reader never makes the gateway
//! buffer without limit); a protocol error is answered with a close frame naming it; the
//! gateway pings every [`PING_EVERY`] and closes with 1001 when it stops.
//!
//! Upgraded connections leave hyper's graceful shutdown, so each socket watches
//! [`Local::stopping`] itself.

pub mod command;
pub mod events;
pub mod log;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::errors::ApiError;
use crate::format;
use crate::Gateway;

/// Largest message (and frame) a client may send: filters and commands are small.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// How long one send may take before the client counts as gone.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle socket is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// Close codes (RFC 6455 section 7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// What the gateway's own handlers use besides the master: the instance's directories,
/// the WebSocket tokens, the event feed the `/apievents` sockets share, and the stop signal.
pub struct Local {
    pub instance_key: String,
    /// `$OMQ_DIR`: remote files go under `user/remote/`; `oload` runs with it.
    pub home: PathBuf,
    /// Where the processes' log files are (`<instance-key>-<process>.log`).
    pub logdir: PathBuf,
    /// Where the `sluice` binary is: beside the gateway's own.
    pub tools: PathBuf,
    /// Turns true when the process stops; every socket then closes.
    pub stopping: watch::Receiver<bool>,
    pub(crate) tokens: token::Tokens,
    pub(crate) events: Arc<events::EventFeed>,
    /// Keeps a stand-alone stop signal alive (tests).
    _stop: Option<watch::Sender<bool>>,
}

impl Local {
    pub fn new(
        instance_key: String,
        home: PathBuf,
        logdir: PathBuf,
        stopping: watch::Receiver<bool>,
    ) -> Local {
        let tools = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .unwrap_or_default();
        Local {
            instance_key,
            home,
            logdir,
            tools,
            stopping,
            tokens: token::Tokens::default(),
            events: Arc::new(events::EventFeed::default()),
            _stop: None,
        }
    }

    /// A `Local` over a directory of its own, with a stop signal nobody sends (tests).
    pub fn standalone(instance_key: &str, home: PathBuf) -> Local {
        let (stop, stopping) = watch::channel(false);
        let logdir = home.join("log");
        Local {
            _stop: Some(stop),
            ..Local::new(instance_key.to_string(), home, logdir, stopping)
        }
    }
}

/// The WebSocket routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let not_allowed = crate::rest::method_not_allowed;
    Router::new()
        .route("/apievents", get(events::open).fallback(not_allowed))
        .route("/log/{*source}", get(log::open).fallback(not_allowed))
        .route("/remote-command", get(command::open).fallback(not_allowed))
        .with_state(gateway)
}

fn refuse(headers: &HeaderMap, status: axum::http::StatusCode, error: ApiError) -> Response {
    let mut response = format::respond(format::reply_format(headers), status, &error.to_json());
    if status == axum::http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Sluice\""),
        );
    }
    response
}

/// The error reply of a request refused before the upgrade.
pub(crate) fn refused(headers: &HeaderMap, error: ApiError) -> Response {
    let status = error.status();
    refuse(headers, status, error)
}

/// The upgrade with the gateway's limits, or the JSON error for a request that is not a
/// WebSocket handshake (with the status axum's extractor gives: 400, 405 or 426) or that a
/// page of another origin sent.
pub(crate) fn accept(
    gateway: &Gateway,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: &HeaderMap,
) -> Result<WebSocketUpgrade, Box<Response>> {
    let upgrade = upgrade.map_err(|rejection| {
        let error = ApiError::new(
            "BAD-REQUEST",
            format!(
                "not a WebSocket handshake (RFC 6455): {}",
                rejection.body_text()
            ),
        );
        let mut response = refuse(headers, rejection.status(), error);
        if matches!(
            rejection,
            WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_)
        ) {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        Box::new(response)
    })?;
    if !gateway.cors {
        if let Some(origin) = foreign_origin(headers) {
            return Err(Box::new(refused(
                headers,
                ApiError::new(
                    "AUTHORIZATION-ERROR",
                    format!(
                        "a WebSocket opened by a web page of another origin ({origin}) is \
                         refused; qorus.cors-enable allows it"
                    ),
                ),
            )));
        }
    }
    Ok(upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .max_write_buffer_size(4 * 1024 * 1024))
}

/// A browser's `Origin` whose host is not the one the request was sent to. (Browsers let
/// any page open a WebSocket anywhere; other clients send no `Origin`.)
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    (!origin_host.eq_ignore_ascii_case(host)).then(|| origin.to_string())
}

/// The token a request carries: `Qorus-Token`, `Authorization: Bearer`, or `?token=`.
pub(crate) fn token_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(token) = headers.get("qorus-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim().to_string());
    }
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some((scheme, token)) = auth.trim().split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim().to_string());
            }
        }
    }
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// Why a socket ended on our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// The client closed or the connection broke.
    Closed,
    /// A send took longer than [`SEND_TIMEOUT`].
    Slow,
}

/// Sends one message within [`SEND_TIMEOUT`].
pub(crate) async fn send(socket: &mut WebSocket, message: Message) -> Result<(), Gone> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Gone::Closed),
        Err(_) => Err(Gone::Slow),
    }
}

/// Closes with `code` and `reason` (cut to the 123 bytes a close frame holds), best effort.
pub(crate) async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Closes a socket whose client was too slow, or just drops one that is gone.
pub(crate) async fn end(socket: &mut WebSocket, gone: Gone, what: &str) {
    if gone == Gone::Slow {
        close(
            socket,
            close::POLICY,
            &format!(
                "too slow: {what} could not be sent within {} s",
                SEND_TIMEOUT.as_secs()
            ),
        )
        .await;
    }
}

/// What the client sent, as the loops of the sockets handle it.
pub(crate) enum Incoming {
    Text(String),
    Binary,
    /// A ping or pong: tungstenite answers pings itself.
    Control,
    /// The client closed, or the connection is gone.
    Closed,
    /// The client broke the protocol: the close code and reason to answer with.
    Broken(u16, String),
}

impl Incoming {
    pub(crate) fn of(received: Option<Result<Message, axum::Error>>) -> Incoming {
        match received {
            None | Some(Ok(Message::Close(_))) => Incoming::Closed,
            Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => Incoming::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
            Some(Err(err)) => {
                let text = err.to_string();
                let code = if text.contains("UTF-8") {
                    close::INVALID_DATA
                } else if text.contains("Space limit") || text.contains("too long") {
                    close::TOO_BIG
                } else if text.contains("Connection reset")
                    || text.contains("closed")
                    || text.contains("Broken pipe")
                {
                    return Incoming::Closed;
                } else {
                    close::PROTOCOL
                };
                Incoming::Broken(code, text)
            }
        }
    }
}

/// Answers what every socket answers the same way; returns false when the socket is done
/// (closed, or closed by us after a protocol error).
pub(crate) async fn common(socket: &mut WebSocket, incoming: &Incoming) -> bool {
    match incoming {
        Incoming::Closed => false,
        Incoming::Broken(code, reason) => {
            tracing::debug!("closing a WebSocket: {reason}");
            close(socket, *code, reason).await;
            false
        }
        Incoming::Text(text) if text.trim().eq_ignore_ascii_case("ping") => {
            send(socket, Message::Text("pong".into())).await.is_ok()
        }
        _ => true,
    }
}

/// What a socket's loop waits for besides its own work.
pub(crate) enum Due {
    /// The keep-alive ping is due.
    Ping,
    /// The gateway is stopping.
    Stop,
}

/// The next of the keep-alive ping (every [`PING_EVERY`], from `ping`) and the gateway's
/// stop; the loop hands it to [`keep_alive`].
pub(crate) async fn due(
    ping: &mut tokio::time::Interval,
    stopping: &mut watch::Receiver<bool>,
) -> Due {
    tokio::select! {
        _ = ping.tick() => Due::Ping,
        () = stopped(stopping) => Due::Stop,
    }
}

/// Pings, or closes the socket because the gateway stops; false once the socket is done.
pub(crate) async fn keep_alive(socket: &mut WebSocket, due: Due) -> bool {
    match due {
        Due::Ping => match send(socket, Message::Ping(Default::default())).await {
            Ok(()) => true,
            Err(gone) => {
                end(socket, gone, "a ping").await;
                false
            }
        },
        Due::Stop => {
            close(socket, close::GOING_AWAY, "the gateway is stopping").await;
            false
        }
    }
}

/// Resolves once the process stops.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    while !*stopping.borrow() {
        if stopping.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
