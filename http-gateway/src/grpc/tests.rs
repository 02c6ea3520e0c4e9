//! The gRPC service over real sockets — h2c on a plain listener, HTTP/2 with ALPN on a TLS
//! one — through the whole application (hygiene, authentication), with tonic's client and
//! a stand-in master.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use serde_json::{json, Value};
use sluice_core::bus::BusError;
use sluice_core::options::{HttpListener, TlsFiles};
use sluice_proto::v1::{
    Empty, Envelope, Event, EventList, EventQuery, InterfaceRef, JsonCall, SystemStatus,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Code;

use super::api::system_api_client::SystemApiClient;
use super::*;
use crate::listeners::{self, Bound};
use crate::tests::{ok, refused};
use crate::{app, ws, Gateway, MasterLink};

type Answer = Box<dyn Fn(&Envelope) -> Result<Envelope, BusError> + Send + Sync>;

/// Records what it is asked; answers as `answer` says. `get-events` is a long poll as the
/// real master's: past the last event (id 5) it waits, then answers with nothing.
struct Master {
    seen: Mutex<Vec<Envelope>>,
    answer: Answer,
}

impl MasterLink for Master {
    fn call(
        &self,
        request: Envelope,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Envelope, BusError>> + Send + '_>> {
        self.seen.lock().unwrap().push(request.clone());
        let reply = (self.answer)(&request);
        let wait = match request.method.as_str() {
            "omq.system.get-events" => EventQuery::decode(request.body.as_slice())
                .ok()
                .filter(|q| q.since_id >= 5)
                .map(|q| Duration::from_millis(u64::from(q.wait_ms))),
            _ => None,
        };
        Box::pin(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            reply
        })
    }
}

fn event(id: u64) -> Event {
    Event {
        id,
        time_ms: 77,
        class_code: 1,
        class_name: "SYSTEM".into(),
        event_code: 1001,
        event_name: "SYSTEM_STARTUP".into(),
        severity_name: "INFO".into(),
        caller: "master".into(),
        info_json: br#"{"pid": 42}"#.to_vec(),
        ..Default::default()
    }
}

fn standard(request: &Envelope) -> Result<Envelope, BusError> {
    match request.method.as_str() {
        "omq.system.get-status" => ok(SystemStatus {
            instance_key: "test-key".into(),
            master_pid: 42,
            status: "running".into(),
            ..Default::default()
        }
        .encode_to_vec()),
        "omq.system.get-events" => {
            let query = EventQuery::decode(request.body.as_slice()).unwrap();
            let events = [event(4), event(5)]
                .into_iter()
                .filter(|e| e.id > query.since_id)
                .collect();
            ok(EventList { events, last_id: 5 }.encode_to_vec())
        }
        "omq.system.start-interface" => {
            let which = InterfaceRef::decode(request.body.as_slice()).unwrap();
            match which.name.as_str() {
                "nope" => refused("NOT-FOUND", "no service nope is loaded", ""),
                name => ok(format!("service-{name}-1.0").into_bytes()),
            }
        }
        "omq.system.call-service" => {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            match body["method"].as_str() {
                Some("fail") => refused(
                    "ValueError",
                    "boom é",
                    r#"{"type": "ValueError", "message": "boom é", "traceback": "tb", "info": null}"#,
                ),
                Some("secret") => refused("AUTHORIZATION-ERROR", "internal", ""),
                Some("nope") => refused("UNKNOWN-METHOD", "no method nope", ""),
                _ => ok(body["args"].to_string().into_bytes()),
            }
        }
        "omq.system.create-order" => ok(br#"{"workflow_instanceid": 12}"#.to_vec()),
        "omq.system.get-order-info" => refused("WORKFLOW-ORDER-NOT-FOUND", "no order 9", ""),
        "omq.system.block-workflow-instance" => {
            refused("STATUS-ERROR", "the order is COMPLETE", "")
        }
        "omq.system.shutdown" => refused("SHUTDOWN-IN-PROGRESS", "the system is stopping", ""),
        "omq.system.list-interfaces" => Err(BusError::PeerGone),
        _ => ok(Vec::new()),
    }
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as files; the CA's PEM.
fn certificate(dir: &std::path::Path) -> (TlsFiles, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "grpc test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("gw.crt"),
        key: dir.join("gw.key"),
    };
    std::fs::write(&files.cert, format!("{}{}", cert.pem(), ca.pem())).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (files, ca.pem())
}

/// The gateway on a plain and a TLS listener.
struct Served {
    plain: SocketAddr,
    tls: SocketAddr,
    ca: String,
    master: Arc<Master>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(rbac_security: bool) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let (files, ca) = certificate(dir.path());
        let (stop, stopping) = watch::channel(false);
        let master = Arc::new(Master {
            seen: Mutex::new(Vec::new()),
            answer: Box::new(standard),
        });
        let app = app(Gateway {
            master: master.clone(),
            rbac_security,
            cors: false,
            status: Default::default(),
            local: ws::Local::new(
                "test-key".into(),
                dir.path().to_path_buf(),
                dir.path().join("log"),
                stopping.clone(),
            ),
            direct: None,
        });
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), secure.local_addr().unwrap());
        let listener = |port, tls| HttpListener {
            host: Some("127.0.0.1".into()),
            port,
            tls,
        };
        let bound = vec![
            Bound {
                listener: listener(plain_addr.port(), None),
                sockets: vec![plain],
                tls: None,
            },
            Bound {
                listener: listener(tls_addr.port(), Some(files.clone())),
                sockets: vec![secure],
                tls: Some(tokio_rustls::TlsAcceptor::from(
                    listeners::tls_config(&files).unwrap(),
                )),
            },
        ];
        let server = tokio::spawn(listeners::serve(bound, app, stopping));
        Served {
            plain: plain_addr,
            tls: tls_addr,
            ca,
            master,
            stop,
            server,
            _dir: dir,
        }
    }

    /// A client over h2c (HTTP/2 with prior knowledge).
    async fn client(&self) -> SystemApiClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.plain))
            .unwrap()
            .connect()
            .await
            .unwrap();
        SystemApiClient::new(channel)
    }

    /// A client over TLS, trusting the test CA (ALPN `h2`).
    async fn tls_client(&self) -> SystemApiClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://localhost:{}", self.tls.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        SystemApiClient::new(channel)
    }

    fn verbs(&self) -> Vec<String> {
        let seen = self.master.seen.lock().unwrap();
        seen.iter().map(|e| e.method.clone()).collect()
    }

    fn last_body(&self, verb: &str) -> Value {
        let seen = self.master.seen.lock().unwrap();
        let body = &seen.iter().rev().find(|e| e.method == verb).unwrap().body;
        serde_json::from_slice(body).unwrap()
    }
}

fn call(method: &str, body: Value) -> JsonCall {
    JsonCall {
        method: method.into(),
        body_json: body.to_string().into_bytes(),
    }
}

fn reply_json(reply: tonic::Response<sluice_proto::v1::JsonReply>) -> Value {
    serde_json::from_slice(&reply.into_inner().body_json).unwrap()
}

/// The status's code, message and `qorus-err`.
fn refusal(status: &Status) -> (Code, &str, &str) {
    let err = status
        .metadata()
        .get(ERR_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    (status.code(), status.message(), err)
}

#[tokio::test]
async fn typed_rpcs_over_h2c_and_tls() {
    let served = Served::start(false).await;
    for mut client in [served.client().await, served.tls_client().await] {
        let reply = client.get_status(Empty {}).await.unwrap();
        // Through the gateway's hygiene: it has a request id.
        assert!(reply.metadata().get("x-request-id").is_some());
        let status = reply.into_inner();
        assert_eq!(
            (status.instance_key.as_str(), status.master_pid),
            ("test-key", 42)
        );
    }
    let mut client = served.client().await;
    let list = client
        .get_events(EventQuery {
            since_id: 4,
            wait_ms: 120_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.events.iter().map(|e| e.id).collect::<Vec<_>>(), [5]);
    let asked = served.master.seen.lock().unwrap().last().unwrap().clone();
    let query = EventQuery::decode(asked.body.as_slice()).unwrap();
    assert_eq!(
        query.wait_ms, 60_000,
        "the wait is capped as the master caps it"
    );

    let started = client
        .start_interface(InterfaceRef {
            r#type: "service".into(),
            name: "billing".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.network_id, "service-billing-1.0");
    let err = client
        .start_interface(InterfaceRef {
            r#type: "service".into(),
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err),
        (
            Code::NotFound,
            "NOT-FOUND: no service nope is loaded",
            "NOT-FOUND"
        )
    );
    // The master cannot be reached.
    let err = client.list_interfaces(Empty {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().starts_with("MASTER-UNAVAILABLE: "), "{err:?}");
}

#[tokio::test]
async fn call_runs_json_verbs_and_maps_errors() {
    let served = Served::start(false).await;
    let mut client = served.client().await;
    let args = json!([1, "two", {"three": [3.5, true, null]}]);

    // A service method; a caller cannot make its call internal.
    let reply = client
        .call(call(
            "omq.system.call-service",
            json!({"name": "TEST-SVC", "method": "echo", "args": args, "external": false}),
        ))
        .await
        .unwrap();
    assert_eq!(reply_json(reply), args);
    assert_eq!(
        served.last_body("omq.system.call-service"),
        json!({"name": "TEST-SVC", "method": "echo", "args": args, "external": true})
    );
    // The RPC gateways' other names: a service method by name, params by position.
    let reply = client
        .call(call("omq.user.service.TEST-SVC.echo", args.clone()))
        .await
        .unwrap();
    assert_eq!(reply_json(reply), args);
    let reply = client
        .call(call(
            "omq.system.create-order",
            json!({"name": "W", "staticdata": {}}),
        ))
        .await
        .unwrap();
    assert_eq!(reply_json(reply), json!({"workflow_instanceid": 12}));
    // A protobuf verb through Call answers JSON, as JSON-RPC does.
    let reply = client
        .call(JsonCall {
            method: "omq.system.get-status".into(),
            body_json: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(reply_json(reply)["instance-key"], "test-key");

    // Refusals, each with its Qorus code.
    let err = client
        .call(call("omq.system.get-order-info", json!(9)))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err),
        (
            Code::NotFound,
            "WORKFLOW-ORDER-NOT-FOUND: no order 9",
            "WORKFLOW-ORDER-NOT-FOUND"
        )
    );
    let err = client
        .call(call("omq.system.block-workflow-instance", json!([9])))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::FailedPrecondition);
    assert_eq!(refusal(&err).2, "STATUS-ERROR");
    let err = client
        .call(call("omq.user.service.TEST-SVC.secret", json!([])))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::PermissionDenied);
    let err = client
        .call(call("omq.user.service.TEST-SVC.nope", json!([])))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::Unimplemented);
    let err = client
        .call(call("omq.system.shutdown", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::Unavailable);
    // An exception keeps its details, in ASCII.
    let err = client
        .call(call("omq.user.service.TEST-SVC.fail", json!(["boom"])))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&err),
        (Code::FailedPrecondition, "ValueError: boom é", "ValueError")
    );
    let info = err.metadata().get(INFO_KEY).unwrap().to_str().unwrap();
    assert!(info.contains("\\u00e9"), "{info}");
    assert_eq!(
        serde_json::from_str::<Value>(info).unwrap(),
        json!({"type": "ValueError", "message": "boom é", "traceback": "tb", "info": null})
    );
    // Arguments the method cannot take, and a body that is not JSON.
    let err = client
        .call(call("omq.system.get-status", json!({"x": 1})))
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::InvalidArgument);
    let err = client
        .call(JsonCall {
            method: "omq.system.create-order".into(),
            body_json: b"{oops".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(refusal(&err).0, Code::InvalidArgument);
    assert!(err.message().contains("body_json is not JSON"), "{err:?}");

    // The verbs only the system's own processes may call never reach the master.
    let before = served.verbs().len();
    for verb in [
        "omq.system.raise-event",
        "omq.system.raise-user-event",
        "omq.system.retire",
        "register",
        "heartbeat",
        "omq.system.nope",
    ] {
        let err = client.call(call(verb, json!({}))).await.unwrap_err();
        assert_eq!(refusal(&err).0, Code::Unimplemented, "{verb}: {err:?}");
        assert_eq!(refusal(&err).2, "UNKNOWN-METHOD", "{verb}");
    }
    assert_eq!(served.verbs().len(), before);
}

#[tokio::test]
async fn watch_events_streams_until_the_gateway_stops() {
    let served = Served::start(false).await;
    let mut client = served.tls_client().await;
    let mut stream = client
        .watch_events(EventQuery {
            since_id: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for id in [4, 5] {
        let event = stream.message().await.unwrap().unwrap();
        assert_eq!(event.id, id);
    }
    // Nothing more yet: the stream waits at the master (a long poll from id 5).
    let waited = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(waited.is_err(), "{waited:?}");
    served.stop.send(true).unwrap();
    let end = stream.message().await.unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(refusal(&end).2, "SHUTDOWN-IN-PROGRESS");
    tokio::time::timeout(Duration::from_secs(15), served.server)
        .await
        .expect("the listeners drain")
        .unwrap();
}

#[tokio::test]
async fn rbac_and_what_is_not_grpc() {
    // With RBAC on, nothing but /api/public/ is served: gRPC included, as a gRPC status.
    let served = Served::start(true).await;
    let mut client = served.client().await;
    let err = client.get_status(Empty {}).await.unwrap_err();
    assert_eq!(refusal(&err).0, Code::Unauthenticated, "{err:?}");
    assert_eq!(refusal(&err).2, "AUTHENTICATION-ERROR");
    let err = client
        .call(call("omq.system.get-status", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(served.verbs().is_empty());

    // A plain HTTP request to a gRPC path is a REST error; REST is unchanged beside it.
    let served = Served::start(false).await;
    let grpc_path = http1(
        served.plain,
        "POST /sluice.v1.SystemApi/GetStatus HTTP/1.1\r\nhost: x\r\ncontent-type: \
         application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
    .await;
    assert!(grpc_path.starts_with("HTTP/1.1 400"), "{grpc_path}");
    assert!(grpc_path.contains("\"BAD-REQUEST\""), "{grpc_path}");
    let info = http1(
        served.plain,
        "GET /api/public/info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
}

/// One HTTP/1.1 exchange: the whole response as text.
async fn http1(address: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn codes_map_to_grpc() {
    for (code, grpc) in [
        ("INVALID-ARGUMENT", Code::InvalidArgument),
        ("ORDER-DATA-ERROR", Code::InvalidArgument),
        ("AUTHENTICATION-ERROR", Code::Unauthenticated),
        ("AUTHORIZATION-ERROR", Code::PermissionDenied),
        ("NOT-FOUND", Code::NotFound),
        ("SERVICE-NOT-FOUND", Code::NotFound),
        ("UNKNOWN-WORKFLOW", Code::NotFound),
        ("UNKNOWN-METHOD", Code::Unimplemented),
        ("PAYLOAD-TOO-LARGE", Code::ResourceExhausted),
        ("INTERNAL-ERROR", Code::Internal),
        ("SHUTDOWN-IN-PROGRESS", Code::Unavailable),
        ("MASTER-UNAVAILABLE", Code::Unavailable),
        ("REQUEST-TIMEOUT", Code::DeadlineExceeded),
        ("TIMEOUT", Code::DeadlineExceeded),
        ("STATUS-ERROR", Code::FailedPrecondition),
        ("DUPLICATE-ORDER-KEY", Code::FailedPrecondition),
        ("ValueError", Code::FailedPrecondition),
    ] {
        assert_eq!(code_of(code), grpc, "{code}");
    }
}

#[test]
fn long_details_are_cut_to_fit_in_headers() {
    let long = "x".repeat(5000);
    let s = status(&ApiError {
        code: "ValueError".into(),
        desc: long.clone(),
        info: Some(json!({"type": "ValueError", "traceback": long})),
    });
    assert!(
        s.message().len() <= MAX_MESSAGE + 4,
        "{}",
        s.message().len()
    );
    let info = s.metadata().get(INFO_KEY).unwrap().to_str().unwrap();
    assert_eq!(info, r#"{"type":"ValueError"}"#);
    let s = status(&ApiError {
        code: "ValueError".into(),
        desc: "d".into(),
        info: Some(json!({"message": long})),
    });
    assert!(s.metadata().get(INFO_KEY).is_none());
    assert_eq!(
        ascii_json(&json!({"k": "é😀\n"})),
        r#"{"k":"\u00e9\ud83d\ude00\n"}"#
    );
}

#[test]
fn grpc_timeouts() {
    let limit = |text: &str| {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", text.parse().unwrap());
        time_limit(&m)
    };
    assert_eq!(limit("5S"), Some(Duration::from_secs(5)));
    assert_eq!(limit("250m"), Some(Duration::from_millis(250)));
    assert_eq!(limit("2M"), Some(Duration::from_secs(120)));
    assert_eq!(limit("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(limit("7u"), Some(Duration::from_micros(7)));
    assert_eq!(limit("9n"), Some(Duration::from_nanos(9)));
    for bad in ["S", "5", "123456789S", "5s", "-5S", "5.0S"] {
        assert_eq!(limit(bad), None, "{bad}");
    }
    assert_eq!(time_limit(&MetadataMap::new()), None);
    assert_eq!(call_params(b"").unwrap(), Vec::<Value>::new());
    assert_eq!(call_params(b" null ").unwrap(), Vec::<Value>::new());
    assert_eq!(call_params(b"[1, 2]").unwrap(), [json!(1), json!(2)]);
    assert_eq!(call_params(b"{\"a\": 1}").unwrap(), [json!({"a": 1})]);
    assert_eq!(call_params(b"42").unwrap(), [json!(42)]);
}

/// The error table of docs/grpc.md.
fn render_markdown() -> String {
    let mut out = String::from("| Qorus codes | gRPC code | REST status |\n|---|---|---|\n");
    let name = |code: Code| format!("`{}`", grpc_name(code));
    for (code, grpc) in OVERRIDES {
        out.push_str(&format!(
            "| `{code}` | {} | {} |\n",
            name(*grpc),
            errors::status_of(code).as_u16()
        ));
    }
    for (codes, http, _) in errors::STATUS_TABLE {
        let codes = match codes {
            errors::Codes::Exact(list) => list
                .iter()
                .filter(|c| !OVERRIDES.iter().any(|(o, _)| o == *c))
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            errors::Codes::Suffix(suffix) => format!("`*{suffix}`"),
        };
        let grpc = BY_HTTP_STATUS
            .iter()
            .find(|(s, _)| s == http)
            .map_or(Code::FailedPrecondition, |(_, g)| *g);
        out.push_str(&format!("| {codes} | {} | {http} |\n", name(grpc)));
    }
    out.push_str(&format!(
        "| every other code (`STATUS-ERROR`, `DUPLICATE-ORDER-KEY`, a service method's \
         exception, ...) | {} | 409 |\n",
        name(Code::FailedPrecondition)
    ));
    out
}

/// A code's name as the gRPC spec writes it (`FAILED_PRECONDITION`).
fn grpc_name(code: Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[test]
fn docs_grpc_md_shows_the_error_table() {
    assert_eq!(grpc_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    crate::generated_docs::check("grpc.md", &[("errors", render_markdown())], "docs_grpc_md");
}
