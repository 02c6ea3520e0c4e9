//! The sockets, remote files and compression through the whole application, served on a
//! loopback port (upgrades need a real connection), over a stand-in master that keeps
//! events as the real one does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use serde_json::{json, Value};
use sluice_core::bus::BusError;
use sluice_proto::v1::{
    Envelope, Event, EventList, EventQuery, Interface, InterfaceList, SystemStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tower::ServiceExt;

use crate::tests::ok as reply;
use crate::{app, body_bytes, App, Gateway, MasterLink};

/// Events as the master keeps them: ids from 1, a long poll that returns when one comes.
#[derive(Default)]
struct Master {
    events: Mutex<Vec<Event>>,
}

impl Master {
    fn raise(&self, class: u32, code: u32, name: &str, info: Value) {
        let mut events = self.events.lock().unwrap();
        let id = events.len() as u64 + 1;
        events.push(Event {
            id,
            time_ms: 1,
            class_code: class,
            class_name: if class == 1 { "SYSTEM" } else { "USER" }.into(),
            event_code: code,
            event_name: name.into(),
            severity: 0,
            severity_name: "INFO".into(),
            caller: "test".into(),
            info_json: info.to_string().into_bytes(),
        });
    }

    fn list(&self, since: u64) -> EventList {
        let events = self.events.lock().unwrap();
        EventList {
            events: events.iter().filter(|e| e.id > since).cloned().collect(),
            last_id: events.len() as u64,
        }
    }
}

impl MasterLink for Master {
    fn call(
        &self,
        request: Envelope,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Envelope, BusError>> + Send + '_>> {
        Box::pin(async move {
            match request.method.as_str() {
                "omq.system.get-events" => {
                    let query = EventQuery::decode(request.body.as_slice()).unwrap();
                    let deadline = tokio::time::Instant::now()
                        + Duration::from_millis(u64::from(query.wait_ms));
                    loop {
                        let list = self.list(query.since_id);
                        if !list.events.is_empty() || tokio::time::Instant::now() >= deadline {
                            return reply(list.encode_to_vec());
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                "omq.system.get-status" => reply(
                    SystemStatus {
                        instance_key: "k".into(),
                        status: "running".into(),
                        master_pid: 42,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                "omq.system.list-interfaces" => reply(
                    InterfaceList {
                        interfaces: vec![Interface {
                            r#type: "service".into(),
                            id: 3,
                            name: "S".into(),
                            version: "1.0".into(),
                            status: "running".into(),
                            network_id: "service-S-1.0".into(),
                            pid: 77,
                            ..Default::default()
                        }],
                    }
                    .encode_to_vec(),
                ),
                _ => reply(Vec::new()),
            }
        })
    }
}

struct Node {
    app: App,
    addr: SocketAddr,
    master: Arc<Master>,
    home: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn node(cors: bool) -> Node {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("log")).unwrap();
    let master = Arc::new(Master::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let app = app(Gateway {
        master: master.clone(),
        rbac_security: false,
        cors,
        status: Default::default(),
        local: super::Local::new(
            "k".into(),
            home.path().to_path_buf(),
            home.path().join("log"),
            stopping,
        ),
        direct: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let app = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(app.clone(), request.map(Body::new))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Node {
        app,
        addr,
        master,
        home,
        stop,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Node {
    async fn socket(&self, path: &str, token: Option<&str>) -> Socket {
        let mut request = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("Qorus-Token", token.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .0
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, body_bytes(body).await)
    }

    async fn token(&self) -> String {
        let (status, _, body) = self
            .send(
                Request::get("/api/latest/system/wstoken")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice::<String>(&body).unwrap()
    }
}

/// The next text message (pings and pongs skipped), within 5 s.
async fn text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a message");
        match message {
            WsMessage::Text(text) => return text.to_string(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn apievents_pushes_new_events_through_a_filter() {
    let node = node(false).await;
    node.master.raise(1, 1001, "SYSTEM_STARTUP", json!({}));
    let mut socket = node.socket("/apievents", None).await;
    node.master.raise(9, 9001, "USER_EVENT", json!({"n": 1}));
    let events: Value = serde_json::from_str(&text(&mut socket).await).unwrap();
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(1),
        "only the new one: {events}"
    );
    assert_eq!(events[0]["id"], 2);
    assert_eq!(events[0]["eventstr"], "USER_EVENT");
    assert_eq!(events[0]["info"], json!({"n": 1}));
    for key in [
        "time",
        "class",
        "classstr",
        "event",
        "severity",
        "severitystr",
        "caller",
    ] {
        assert!(events[0].get(key).is_some(), "{key}: {events}");
    }

    socket.send(WsMessage::text("ping")).await.unwrap();
    assert_eq!(text(&mut socket).await, "pong");
    socket
        .send(WsMessage::text(r#"[{"class": "NOPE"}]"#))
        .await
        .unwrap();
    let err: Value = serde_json::from_str(&text(&mut socket).await).unwrap();
    assert_eq!(err["err"], "BAD-REQUEST", "{err}");
    socket
        .send(WsMessage::text(r#"{"filter": [{"event": "USER_EVENT"}]}"#))
        .await
        .unwrap();
    // The filter is read before the next event arrives.
    socket.send(WsMessage::text("ping")).await.unwrap();
    assert_eq!(text(&mut socket).await, "pong");
    node.master.raise(1, 1002, "SYSTEM_SHUTDOWN", json!({}));
    node.master.raise(9, 9001, "USER_EVENT", json!({"n": 2}));
    let events: Value = serde_json::from_str(&text(&mut socket).await).unwrap();
    assert_eq!(events[0]["info"], json!({"n": 2}), "{events}");
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");

    // A second socket shares the poll.
    let mut other = node.socket("/apievents", None).await;
    node.master.raise(9, 9001, "USER_EVENT", json!({"n": 3}));
    let seen: Value = serde_json::from_str(&text(&mut other).await).unwrap();
    assert_eq!(seen[0]["info"], json!({"n": 3}));
    let seen: Value = serde_json::from_str(&text(&mut socket).await).unwrap();
    assert_eq!(seen[0]["info"], json!({"n": 3}));
}

#[tokio::test]
async fn log_sockets_send_the_tail_then_follow() {
    let node = node(false).await;
    let log = node.home.path().join("log/k-service-S-1.0.log");
    let lines: String = (1..=150).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&log, lines).unwrap();
    let mut socket = node.socket("/log/services/S", None).await;
    let tail = text(&mut socket).await;
    assert!(tail.starts_with("line 51\n"), "{tail:.40}");
    assert!(tail.ends_with("line 150\n"));
    assert_eq!(tail.lines().count(), 100);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all_sync(b"line 151\n");
    assert_eq!(text(&mut socket).await, "line 151\n");

    // By id, and with ?lines=.
    let mut by_id = node.socket("/log/services/3?lines=2", None).await;
    assert_eq!(text(&mut by_id).await, "line 150\nline 151\n");

    std::fs::write(node.home.path().join("log/k-master.log"), "started\n").unwrap();
    let mut system = node.socket("/log/system", None).await;
    assert_eq!(text(&mut system).await, "started\n");

    for (path, status) in [
        ("/log/services/NOPE", StatusCode::NOT_FOUND),
        (
            "/log/services/..%2F..%2Fetc%2Fpasswd",
            StatusCode::NOT_FOUND,
        ),
        ("/log/..%2Fetc", StatusCode::NOT_FOUND),
        ("/log/system?lines=many", StatusCode::BAD_REQUEST),
    ] {
        let (got, _, body) = handshake(&node, path, "").await;
        assert_eq!(
            got,
            status.as_u16(),
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert!(err["err"].is_string(), "{err}");
    }
}

trait WriteAllSync {
    fn write_all_sync(&mut self, bytes: &[u8]);
}

impl WriteAllSync for std::fs::File {
    fn write_all_sync(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(self, bytes).unwrap();
    }
}

/// A WebSocket handshake over a connection of its own with `extra` header lines, when it
/// is refused: the status, the headers (lower-case names) and the body.
async fn handshake(node: &Node, path: &str, extra: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut raw = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let version = if extra.contains("Sec-WebSocket-Version") {
        ""
    } else {
        "Sec-WebSocket-Version: 13\r\n"
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         {version}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        node.addr
    );
    raw.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Until the head and as much body as Content-Length says.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        answer.extend_from_slice(&buf[..n]);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            assert!(n > 0, "closed before the head");
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        if answer.len() >= end + 4 + length || n == 0 {
            let body = answer[end + 4..].to_vec();
            return (status, headers, body);
        }
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The YAML messages of a remote command, up to the server's close.
async fn command_output(socket: &mut Socket) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("output within 10 s");
        match message {
            Some(Ok(WsMessage::Text(text))) => {
                let doc = crate::format::from_yaml(&text).unwrap();
                assert_eq!(doc["msgtype"], "text-output", "{text}");
                out.push(doc["data"].as_str().unwrap().to_string());
            }
            Some(Ok(WsMessage::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                return out;
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?} after {out:?}"),
        }
    }
}

#[tokio::test]
async fn remote_commands_need_a_token_and_end_with_the_exit_code() {
    let node = node(false).await;
    let (status, headers, body) = handshake(&node, "/remote-command", "").await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(header_of(&headers, "www-authenticate").is_some());
    let (status, _, _) = handshake(&node, "/remote-command?token=00ff", "").await;
    assert_eq!(status, 401);

    // Qorus's form of the token route answers the same.
    let (status, _, body) = node
        .send(
            Request::get("/api/latest/system?action=wstoken")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token: String = serde_json::from_slice(&body).unwrap();
    assert_eq!(token.len(), 64);

    let mut socket = node.socket("/remote-command", Some(&token)).await;
    socket
        .send(WsMessage::text("cmd: ostatus\n"))
        .await
        .unwrap();
    let out = command_output(&mut socket).await;
    let all = out.concat();
    assert!(all.contains("instance:  k"), "{all}");
    assert!(all.contains("service   S"), "{all}");
    assert_eq!(
        out.last().map(String::as_str),
        Some("-- process terminated with exit code 0 --")
    );
    // Used up.
    let (status, _, _) = handshake(
        &node,
        "/remote-command",
        &format!("Qorus-Token: {token}\r\n"),
    )
    .await;
    assert_eq!(status, 401);

    let token = node.token().await;
    let mut socket = node
        .socket(&format!("/remote-command?token={token}"), None)
        .await;
    socket
        .send(WsMessage::text("cmd: rm\nargs: [-rf, /]\n"))
        .await
        .unwrap();
    let out = command_output(&mut socket).await;
    assert!(out[0].contains("unknown command \"rm\""), "{out:?}");
    assert_eq!(out[1], "-- process terminated with exit code 1 --");

    let token = node.token().await;
    let mut socket = node.socket("/remote-command", Some(&token)).await;
    socket
        .send(WsMessage::text("[not, a, mapping]"))
        .await
        .unwrap();
    let out = command_output(&mut socket).await;
    assert!(out[0].contains("must be a mapping"), "{out:?}");
    assert_eq!(out[1], "-- process terminated with exit code 1 --");
}

#[tokio::test]
async fn malformed_handshakes_and_frames_get_clear_errors() {
    let node = node(false).await;
    let (status, _, body) = node
        .send(Request::get("/apievents").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["err"], "BAD-REQUEST");
    assert!(
        err["desc"]
            .as_str()
            .unwrap()
            .contains("not a WebSocket handshake"),
        "{err}"
    );
    let (status, headers, _) = handshake(&node, "/apievents", "Sec-WebSocket-Version: 8\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(header_of(&headers, "sec-websocket-version"), Some("13"));
    let (status, _, _) = node
        .send(Request::post("/apievents").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A page of another origin.
    let (status, _, body) =
        handshake(&node, "/apievents", "Origin: https://evil.example\r\n").await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    // An unmasked frame from the client: a close frame saying so (1002).
    let mut raw = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    raw.write_all(
        b"GET /apievents HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 4096];
    let n = raw.read(&mut head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    raw.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut frame = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut frame)).await;
    assert!(frame.len() > 4, "{frame:?}");
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
    let reason = String::from_utf8_lossy(&frame[4..]);
    assert!(reason.contains("unmasked"), "{reason}");

    // The gateway serves on.
    let mut socket = node.socket("/apievents", None).await;
    socket.send(WsMessage::text("ping")).await.unwrap();
    assert_eq!(text(&mut socket).await, "pong");
}

fn upload(file: &str, dir: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post("/raw/remote-file").header("filepath", file);
    if let Some(dir) = dir {
        request = request.header("dir", dir);
    }
    request.body(body.into()).unwrap()
}

#[tokio::test]
async fn remote_files_go_into_a_fresh_private_directory() {
    let node = node(false).await;
    let (status, headers, body) = node.send(upload("A-1.0.qjob.yaml", None, "a: 1\n")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let dir = String::from_utf8(body).unwrap();
    let path = node.home.path().join("user/remote").join(&dir);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o700);
    // A second file, gzip-compressed on the way, in a subdirectory.
    let packed = crate::body_bytes(crate::compression::encode(
        crate::compression::Encoding::Gzip,
        Body::from("print('hi')\n"),
    ))
    .await;
    let mut request = upload("lib/jobs.py", Some(&dir), packed);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let (status, _, body) = node.send(request).await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap()),
        (StatusCode::OK, dir.clone())
    );
    assert_eq!(
        std::fs::read_to_string(path.join("lib/jobs.py")).unwrap(),
        "print('hi')\n"
    );
    assert_eq!(
        std::fs::read_to_string(path.join("A-1.0.qjob.yaml")).unwrap(),
        "a: 1\n"
    );
    let mode = path
        .join("lib/jobs.py")
        .metadata()
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    for (request, status) in [
        (
            upload("../../etc/x", Some(&dir), "x"),
            StatusCode::BAD_REQUEST,
        ),
        (upload("/etc/x", None, "x"), StatusCode::BAD_REQUEST),
        (upload("x", Some("../../etc"), "x"), StatusCode::BAD_REQUEST),
        (
            upload("x", Some("0123456789abcdef0123456789abcdef"), "x"),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::post("/raw/remote-file")
                .body(Body::from("x"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            upload("big", Some(&dir), vec![0u8; crate::rest::MAX_BODY + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let (got, _, body) = node.send(request).await;
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert!(err["err"].is_string());
    }
    assert!(!path.join("big").exists(), "a refused file is not kept");

    let delete = |dir: &str| {
        Request::delete("/raw/remote-file")
            .header("dir", dir)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = node.send(delete(&dir)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!path.exists());
    let (status, _, _) = node.send(delete(&dir)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uploads_together_have_a_ceiling() {
    let node = node(false).await;
    let (status, _, body) = node.send(upload("a.yaml", None, "a: 1\n")).await;
    assert_eq!(status, StatusCode::OK);
    let dir = String::from_utf8(body).unwrap();
    let path = node.home.path().join("user/remote").join(&dir);
    // An earlier upload left the ceiling less 100 bytes (sparse: no disk used here).
    let earlier = std::fs::File::create(path.join("earlier.bin")).unwrap();
    earlier
        .set_len(crate::remote::UPLOADS_TOTAL - 100 - 5)
        .unwrap();
    let (status, _, body) = node
        .send(upload("b.yaml", Some(&dir), vec![b'x'; 101]))
        .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(!path.join("b.yaml").exists(), "a refused file is not kept");
    let (status, _, _) = node
        .send(upload("b.yaml", Some(&dir), vec![b'x'; 100]))
        .await;
    assert_eq!(status, StatusCode::OK, "what fits is taken");
    let (status, _, body) = node.send(upload("c.yaml", None, "c: 1\n")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        err["desc"]
            .as_str()
            .unwrap()
            .contains("DELETE /raw/remote-file"),
        "{err}"
    );
}

#[tokio::test]
async fn replies_are_compressed_and_bombs_refused() {
    let node = node(false).await;
    for (accept, token) in [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("x-bzip2", "x-bzip2"),
        ("bzip2;q=0.5, gzip;q=0.4", "bzip2"),
    ] {
        let (status, headers, body) = node
            .send(
                Request::get("/api/latest/openapi.json")
                    .header(header::ACCEPT_ENCODING, accept)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_ENCODING], token, "{accept}");
        assert!(!headers.contains_key(header::CONTENT_LENGTH));
        let (encoding, _) = crate::compression::Encoding::from_token(token).unwrap();
        let plain = crate::compression::decode(&[encoding], Body::from(body), 1 << 24)
            .await
            .unwrap();
        let doc: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
    }
    // A small reply goes as it is.
    let (_, headers, _) = node
        .send(
            Request::get("/api/latest/system/wstoken")
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(!headers.contains_key(header::CONTENT_ENCODING));

    // 64 MiB of zeros in a few KiB of zstd.
    let bomb = crate::body_bytes(crate::compression::encode(
        crate::compression::Encoding::Zstd,
        Body::from(vec![0u8; 64 << 20]),
    ))
    .await;
    assert!(bomb.len() < 64 * 1024);
    let (status, _, body) = node
        .send(
            Request::put("/api/latest/services/S/echo?action=call")
                .header(header::CONTENT_ENCODING, "zstd")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bomb))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["err"], "PAYLOAD-TOO-LARGE");
    let (status, headers, _) = node
        .send(
            Request::put("/api/latest/services/S/echo?action=call")
                .header(header::CONTENT_ENCODING, "compress")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(headers[header::ACCEPT_ENCODING]
        .to_str()
        .unwrap()
        .contains("bzip2"));
}

#[tokio::test]
async fn sockets_close_with_1001_when_the_gateway_stops() {
    let node = node(false).await;
    let mut events = node.socket("/apievents", None).await;
    let mut log = node.socket("/log/http", None).await;
    node.stop.send(true).unwrap();
    for socket in [&mut events, &mut log] {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .expect("a close within 5 s");
            match message {
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 1001);
                    assert!(frame.reason.contains("stopping"), "{}", frame.reason);
                    break;
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Text(_))) => continue,
                other => panic!("{other:?}"),
            }
        }
    }
}

/// An `/apievents` socket over a connection of its own with a small receive buffer, its
/// handshake done by hand: a client that never reads what it is sent.
async fn stalled_events_socket(node: &Node) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Set before connecting, so that the window the client offers stays small.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut raw = socket.connect(node.addr).await.unwrap();
    raw.write_all(
        b"GET /apievents HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    // Byte by byte, so that nothing after the head is read here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(Duration::from_secs(5), raw.read_u8())
            .await
            .expect("the handshake's answer within 5 s")
            .unwrap();
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw
}

/// A plain `GET` over a connection of its own: the status line.
async fn http_status(node: &Node, path: &str) -> String {
    let mut raw = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    raw.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_string()
}

/// Reads events from `socket` until the one with id `id` has come.
async fn events_until(socket: &mut Socket, id: u64) {
    loop {
        let events: Value = serde_json::from_str(&text(socket).await).unwrap();
        let last = events
            .as_array()
            .and_then(|events| events.iter().filter_map(|e| e["id"].as_u64()).max())
            .unwrap_or_else(|| panic!("a list of events: {events:.200}"));
        if last >= id {
            return;
        }
    }
}

#[tokio::test]
async fn apievents_closes_a_client_that_stops_reading_and_serves_the_others() {
    let node = node(false).await;
    let mut slow = stalled_events_socket(&node).await;
    let mut reader = node.socket("/apievents", None).await;

    // 16 MiB of events, far more than the kernel buffers between the gateway and the slow
    // client hold (its receive buffer is a few KiB; a send buffer grows to 4 MiB at most):
    // the gateway's send to it blocks. Each round is read by the other client.
    let pad = "x".repeat(64 * 1024);
    let mut id = 0;
    for _ in 0..16 {
        for _ in 0..16 {
            id += 1;
            node.master
                .raise(9, 9001, "USER_EVENT", json!({"n": id, "pad": pad}));
        }
        events_until(&mut reader, id).await;
    }

    // How the slow client learns that the gateway has closed the connection without reading
    // (which would let the blocked send go on): it sends a ping frame now and then. While
    // the gateway's socket is open, the ping is just queued there; once it is closed, the
    // ping (or one left unread at the close) is answered with a reset (RFC 1122 4.2.2.13),
    // and the next write fails. The gateway should close it after `SEND_TIMEOUT` (plus 2 s
    // for its close frame); 45 s is the bound. Meanwhile the other client gets every new
    // event and HTTP requests are answered.
    const PING: [u8; 6] = [0x89, 0x80, 0x12, 0x34, 0x56, 0x78];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let sent = tokio::time::timeout(Duration::from_secs(5), slow.write_all(&PING))
            .await
            .expect("a 6-byte write within 5 s");
        if sent.is_err() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never closed a client that stopped reading"
        );
        id += 1;
        node.master.raise(9, 9001, "USER_EVENT", json!({"n": id}));
        events_until(&mut reader, id).await;
        assert_eq!(
            http_status(&node, "/api/latest/system/wstoken").await,
            "HTTP/1.1 200 OK"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // What the slow client had received: frames of events (a text frame first), then the
    // end of the connection (EOF or a reset), not more and more.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the closed connection ends within 5 s");
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        assert!(got.len() < 16 << 20, "{} bytes and on", got.len());
    }
    if let Some(first) = got.first() {
        assert_eq!(*first, 0x81, "a text frame first");
    }

    // And afterwards: the reader, a new socket and HTTP all work.
    let mut fresh = node.socket("/apievents", None).await;
    id += 1;
    node.master.raise(9, 9001, "USER_EVENT", json!({"n": id}));
    events_until(&mut reader, id).await;
    events_until(&mut fresh, id).await;
    fresh.send(WsMessage::text("ping")).await.unwrap();
    assert_eq!(text(&mut fresh).await, "pong");
    assert_eq!(
        http_status(&node, "/api/latest/system/wstoken").await,
        "HTTP/1.1 200 OK"
    );
}
