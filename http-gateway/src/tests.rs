//! The whole HTTP application in-process, over a stand-in master that records what it is
//! asked and answers as the real one would.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use prost::Message;
use serde_json::{json, Value};
use sluice_proto::v1::{Envelope, RegistryEntry, SystemStatus};
use tower::ServiceExt;

use super::*;

type Answer = Box<dyn Fn(&Envelope) -> Result<Envelope, BusError> + Send + Sync>;

struct FakeMaster {
    seen: Mutex<Vec<(String, Vec<u8>)>>,
    /// The principal of each request, in the same order.
    principals: Mutex<Vec<Option<sluice_proto::v1::Principal>>>,
    answer: Answer,
}

impl MasterLink for FakeMaster {
    fn call(
        &self,
        request: Envelope,
        _timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Envelope, BusError>> + Send + '_>> {
        self.seen
            .lock()
            .unwrap()
            .push((request.method.clone(), request.body.clone()));
        self.principals
            .lock()
            .unwrap()
            .push(request.principal.clone());
        let reply = (self.answer)(&request);
        Box::pin(async move { reply })
    }
}

/// A stand-in master's answer with `body` (for the other stand-ins too).
pub(crate) fn ok(body: Vec<u8>) -> Result<Envelope, BusError> {
    Ok(Envelope {
        body,
        ..Default::default()
    })
}

/// A stand-in master's refusal.
pub(crate) fn refused(code: &str, description: &str, info: &str) -> Result<Envelope, BusError> {
    Ok(Envelope {
        error: Some(sluice_proto::v1::Error {
            code: code.into(),
            description: description.into(),
            info_json: info.as_bytes().to_vec(),
        }),
        ..Default::default()
    })
}

/// The stand-in master: status, events, and JSON verbs that echo their body.
fn standard(request: &Envelope) -> Result<Envelope, BusError> {
    match request.method.as_str() {
        "omq.system.get-status" => ok(SystemStatus {
            instance_key: "test-key".into(),
            session_id: 3,
            master_pid: 42,
            host: "h".into(),
            version: "9.9".into(),
            started_ms: 1000,
            uptime_ms: 5,
            status: "running".into(),
            processes: vec![
                RegistryEntry {
                    network_id: "http-gateway".into(),
                    process_type: "http-gateway".into(),
                    status: "running".into(),
                    pid: 7,
                    ..Default::default()
                },
                RegistryEntry {
                    network_id: "workflow-W-1.0".into(),
                    process_type: "workflow".into(),
                    status: "restarting".into(),
                    ..Default::default()
                },
            ],
        }
        .encode_to_vec()),
        "omq.system.get-events" => ok(sluice_proto::v1::EventList {
            events: vec![sluice_proto::v1::Event {
                id: 5,
                time_ms: 77,
                class_code: 1,
                class_name: "SYSTEM".into(),
                event_code: 1001,
                event_name: "SYSTEM_STARTUP".into(),
                severity: 0,
                severity_name: "INFO".into(),
                caller: "master".into(),
                info_json: br#"{"pid": 42}"#.to_vec(),
            }],
            last_id: 5,
        }
        .encode_to_vec()),
        "omq.system.call-service" => {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            match body["method"].as_str() {
                Some("fail") => refused(
                    "ValueError",
                    "boom",
                    r#"{"type": "ValueError", "message": "boom", "traceback": "tb", "info": null}"#,
                ),
                Some("secret") => refused("AUTHORIZATION-ERROR", "internal", ""),
                _ => ok(body["args"].to_string().into_bytes()),
            }
        }
        "omq.system.create-order" => ok(br#"{"workflow_instanceid": 12}"#.to_vec()),
        "omq.system.get-order-info" => refused("WORKFLOW-ORDER-NOT-FOUND", "no order 9", ""),
        "omq.system.block-workflow-instance" => {
            refused("STATUS-ERROR", "the order is COMPLETE", "")
        }
        _ => ok(if request.body.is_empty() {
            Vec::new()
        } else {
            request.body.clone()
        }),
    }
}

struct Harness {
    app: App,
    master: Arc<FakeMaster>,
}

impl Harness {
    fn new(rbac_security: bool) -> Harness {
        Self::with(rbac_security, Box::new(standard))
    }

    fn with(rbac_security: bool, answer: Answer) -> Harness {
        Self::configured(rbac_security, false, answer)
    }

    fn configured(rbac_security: bool, cors: bool, answer: Answer) -> Harness {
        let master = Arc::new(FakeMaster {
            seen: Mutex::new(Vec::new()),
            principals: Mutex::new(Vec::new()),
            answer,
        });
        let app = app(Gateway {
            master: master.clone(),
            rbac_security,
            cors,
            status: Default::default(),
            local: ws::Local::standalone("test-key", std::env::temp_dir().join("sluice-no-home")),
            direct: None,
        });
        Harness { app, master }
    }

    /// Over an instance home of the test's (its `log/` holds the log files).
    fn at(home: std::path::PathBuf, answer: Answer) -> Harness {
        let master = Arc::new(FakeMaster {
            seen: Mutex::new(Vec::new()),
            principals: Mutex::new(Vec::new()),
            answer,
        });
        let app = app(Gateway {
            master: master.clone(),
            rbac_security: false,
            cors: false,
            status: Default::default(),
            local: ws::Local::standalone("test-key", home),
            direct: None,
        });
        Harness { app, master }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, body_bytes(response.into_body()).await)
    }

    async fn json(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
        let (status, _, bytes) = self.send(builder.body(body).unwrap()).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {uri}: not JSON ({e}): {bytes:?}"));
        (status, value)
    }

    /// The verbs the master was asked, with their JSON bodies.
    fn seen(&self) -> Vec<(String, Value)> {
        self.master
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, b)| (m.clone(), serde_json::from_slice(b).unwrap_or(Value::Null)))
            .collect()
    }
}

/// Every call to the master says where its request came from (client and listener, in
/// Qorus's audit style) and what it was.
#[tokio::test]
async fn calls_tell_the_master_where_their_request_came_from() {
    let h = Harness::new(false);
    let mut request = Request::builder()
        .method("PUT")
        .uri("/api/latest/orders/5?action=retry")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(hygiene::Peer("10.1.2.3:4444".parse().unwrap()));
    request
        .extensions_mut()
        .insert(hygiene::Listener("[::1]:8001".parse().unwrap()));
    let (status, _, _) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "omq.system.get-status"});
    h.json("POST", "/JSON", Some(rpc)).await;
    let principals = h.master.principals.lock().unwrap().clone();
    let rest = principals[0].clone().expect("a principal");
    assert_eq!(rest.reason, "REST PUT api/latest/orders/5?action=retry");
    assert_eq!(
        rest.source,
        "source: ipv4[10.1.2.3]:4444 listener: ipv6[::1]:8001"
    );
    assert_eq!(rest.user, "", "no RBAC user yet");
    let rpc = principals[1].clone().expect("a principal");
    assert_eq!(rpc.reason, "JSON-RPC POST JSON");
    assert_eq!(rpc.source, "source: - listener: -");
}

#[tokio::test]
async fn system_views() {
    let h = Harness::new(false);
    let (status, info) = h.json("GET", "/api/public/info", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        info,
        json!({"instance-key": "test-key", "omq-version": "9.9", "session-id": 3, "pid": 42,
               "host": "h", "starttime": 1000, "uptime": 5, "status": "running"})
    );
    let (_, system) = h.json("GET", "/api/v3/system", None).await;
    assert_eq!(system["processes"][1]["network_id"], "workflow-W-1.0");
    let (_, health) = h.json("GET", "/api/latest/system/health", None).await;
    assert_eq!(health["health"], "YELLOW");
    assert_eq!(health["processes"], json!({"running": 1, "restarting": 1}));
    let (_, processes) = h.json("GET", "/api/latest/system/processes", None).await;
    assert_eq!(processes.as_array().map(Vec::len), Some(2));
    let (_, events) = h
        .json(
            "GET",
            "/api/latest/system/events?event=system_startup&since_id=2",
            None,
        )
        .await;
    assert_eq!(
        events,
        json!([{"id": 5, "time": 77, "class": 1, "classstr": "SYSTEM", "event": 1001,
                "eventstr": "SYSTEM_STARTUP", "severity": 0, "severitystr": "INFO",
                "caller": "master", "info": {"pid": 42}}])
    );
    let (status, err) = h
        .json("GET", "/api/latest/system/events?event=NOPE", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["err"], "INVALID-ARGUMENT");
}

#[tokio::test]
async fn actions_in_the_query_or_the_path_reach_the_same_verb() {
    let h = Harness::new(false);
    for uri in [
        "/api/latest/orders/42?action=setPriority&priority=7",
        "/api/latest/orders/42/setPriority?priority=7",
        "/api/v1/orders/42/setPriority?priority=7",
    ] {
        let (status, _) = h.json("PUT", uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (status, _) = h
        .json(
            "PUT",
            "/api/latest/orders/42/setPriority",
            Some(json!({"priority": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seen = h.seen();
    assert_eq!(seen.len(), 4);
    for (verb, body) in seen {
        assert_eq!(verb, "omq.system.set-order-priority");
        assert_eq!(body, json!({"workflow_instanceid": 42, "priority": 7}));
    }

    let (status, err) = h.json("PUT", "/api/latest/orders/42", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["desc"]
            .as_str()
            .unwrap()
            .contains("needs an action: retry"),
        "{err}"
    );
    let (status, err) = h
        .json("PUT", "/api/latest/orders/42?action=explode", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["desc"]
            .as_str()
            .unwrap()
            .contains("no action \"explode\""),
        "{err}"
    );
    let (status, err) = h.json("GET", "/api/latest/orders/x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}

#[tokio::test]
async fn service_calls_are_external_and_errors_map_to_statuses() {
    let h = Harness::new(false);
    let (status, value) = h
        .json(
            "PUT",
            "/api/latest/services/S/echo?action=call",
            Some(json!({"args": [1, "a"]})),
        )
        .await;
    assert_eq!((status, value), (StatusCode::OK, json!([1, "a"])));
    let (_, value) = h
        .json(
            "PUT",
            "/api/latest/services/S/echo/call",
            Some(json!({"parse_args": "- 1\n- two\n"})),
        )
        .await;
    assert_eq!(value, json!([1, "two"]));
    let (_, value) = h
        .json("PUT", "/api/latest/services/S/echo/call?args=single", None)
        .await;
    assert_eq!(value, json!(["single"]));
    let (method, body) = h.seen().pop().unwrap();
    assert_eq!(method, "omq.system.call-service");
    assert_eq!(
        body,
        json!({"name": "S", "method": "echo", "args": ["single"], "external": true})
    );
    // A service method named like an action is still callable with ?action=call.
    let (status, _) = h
        .json("PUT", "/api/latest/services/S/load?action=call", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.seen().pop().unwrap().1["method"], "load");

    let (status, err) = h
        .json("PUT", "/api/latest/services/S/fail/call", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        err,
        json!({"err": "ValueError", "desc": "boom",
               "info": {"type": "ValueError", "message": "boom", "traceback": "tb", "info": null}})
    );
    let (status, err) = h
        .json("PUT", "/api/latest/services/S/secret/call", None)
        .await;
    assert_eq!(
        (status, err["err"].clone()),
        (StatusCode::FORBIDDEN, json!("AUTHORIZATION-ERROR"))
    );
    let (status, _) = h.json("GET", "/api/latest/orders/9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = h.json("PUT", "/api/latest/orders/9/block", None).await;
    assert_eq!(
        (status, err["err"].clone()),
        (StatusCode::CONFLICT, json!("STATUS-ERROR"))
    );
}

#[tokio::test]
async fn orders_are_created_with_201_in_json_or_yaml() {
    let h = Harness::new(false);
    let (status, value) = h
        .json(
            "POST",
            "/api/latest/workflows/W?action=createOrder",
            Some(json!({"staticdata": {"a": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(value, json!({"workflow_instanceid": 12}));
    assert_eq!(
        h.seen().pop().unwrap(),
        (
            "omq.system.create-order".to_string(),
            json!({"name": "W", "staticdata": {"a": 1}})
        )
    );

    let request = Request::builder()
        .method("POST")
        .uri("/api/latest/workflows/W/createOrder")
        .header(header::CONTENT_TYPE, "application/x-yaml")
        .body(Body::from("staticdata:\n  out: /tmp/x\npriority: 3\n"))
        .unwrap();
    let (status, headers, body) = h.send(request).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-yaml");
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        format::from_yaml(&text).unwrap(),
        json!({"workflow_instanceid": 12}),
        "{text}"
    );
    assert_eq!(
        h.seen().pop().unwrap().1,
        json!({"name": "W", "staticdata": {"out": "/tmp/x"}, "priority": 3})
    );

    // A YAML error for a YAML client.
    let request = Request::builder()
        .method("POST")
        .uri("/api/latest/workflows/W/createOrder")
        .header(header::CONTENT_TYPE, "text/x-yaml")
        .body(Body::from("staticdata: [unclosed\n"))
        .unwrap();
    let (status, headers, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-yaml");
    let err = format::from_yaml(std::str::from_utf8(&body).unwrap()).unwrap();
    assert_eq!(err["err"], "BAD-REQUEST");
}

#[tokio::test]
async fn malformed_and_unknown_requests_get_clear_json_errors() {
    let h = Harness::new(false);
    let request = Request::builder()
        .method("PUT")
        .uri("/api/latest/orders/1/notes")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"note\": "))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["err"], "BAD-REQUEST");
    assert!(
        err["desc"].as_str().unwrap().contains("not valid JSON"),
        "{err}"
    );

    for uri in [
        "/nope",
        "/api/latest/nope",
        "/api/v9/system",
        "/api/public/system",
    ] {
        let (status, err) = h.json("GET", uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(err["err"], "NOT-FOUND", "{uri}");
    }
    let (status, err) = h.json("POST", "/api/latest/system", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{err}");
    assert_eq!(err["err"], "METHOD-NOT-ALLOWED");

    let big = vec![b' '; rest::MAX_BODY + 1];
    let request = Request::builder()
        .method("PUT")
        .uri("/api/latest/orders/1/notes")
        .body(Body::from(big))
        .unwrap();
    let (status, _, _) = h.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(h.seen().is_empty(), "nothing malformed reached the master");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let h = Harness::new(false);
    let request = Request::builder()
        .uri("/api/public/info")
        .header("x-request-id", "client-1")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = h.send(request).await;
    assert_eq!(headers["x-request-id"], "client-1");
    let request = Request::builder().uri("/nope").body(Body::empty()).unwrap();
    let (_, headers, _) = h.send(request).await;
    assert_eq!(headers["x-request-id"].len(), 36);
}

#[tokio::test]
async fn with_rbac_only_public_routes_answer() {
    let h = Harness::new(true);
    let (status, _) = h.json("GET", "/api/public/info", None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, uri) in [
        ("GET", "/api/latest/system"),
        ("PUT", "/api/latest/services/S/echo/call"),
        ("GET", "/nope"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = h.send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        let err: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(err["err"], "AUTHENTICATION-ERROR");
        assert!(
            err["desc"].as_str().unwrap().contains("not implemented"),
            "{err}"
        );
    }
    assert_eq!(h.seen().len(), 1, "only the public call reached the master");
}

#[tokio::test]
async fn an_unreachable_master_is_503() {
    let h = Harness::with(
        false,
        Box::new(|request| {
            Err(BusError::Timeout {
                method: request.method.clone(),
                after: Duration::from_secs(1),
            })
        }),
    );
    let (status, err) = h.json("GET", "/api/latest/services", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err["err"], "MASTER-UNAVAILABLE");
    let h = Harness::with(
        false,
        Box::new(|_| refused("SHUTDOWN-IN-PROGRESS", "the master is stopping", "")),
    );
    let (status, _) = h.json("GET", "/api/latest/jobs", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn openapi_is_served_as_json() {
    let h = Harness::new(false);
    let request = Request::builder()
        .uri("/api/latest/openapi.json")
        .header(header::ACCEPT, "application/x-yaml")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/latest/services/{name}/{method}/call"]["put"].is_object());
}

#[test]
fn preflight_names_the_listener_that_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let home = sluice_core::home::Home::new(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let options = sluice_core::options::Options::parse(
        &format!("qorus.http-server: 127.0.0.1:{port}\n"),
        std::path::Path::new("options"),
        &home,
    )
    .unwrap();
    let err = preflight(&options).unwrap_err().to_string();
    assert!(
        err.contains(&format!("HTTP listener 127.0.0.1:{port}")),
        "{err}"
    );
    drop(taken);
    preflight(&options).expect("free again");

    // A certificate file that holds no certificate.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate\n").unwrap();
    let options = sluice_core::options::Options::parse(
        "qorus.http-secure-server: 127.0.0.1:1{cert=$OMQ_DIR/bad.pem}\n",
        std::path::Path::new("options"),
        &home,
    )
    .unwrap();
    let err = preflight(&options).unwrap_err().to_string();
    assert!(err.contains("HTTP listener 127.0.0.1:1{cert="), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");

    // A good certificate with the key of another.
    let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let two = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), one.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), one.key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("other.pem"), two.key_pair.serialize_pem()).unwrap();
    let good = listeners::tls_config(&sluice_core::options::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    });
    assert!(good.is_ok(), "{:?}", good.err());
    let mismatched = listeners::tls_config(&sluice_core::options::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("other.pem"),
    });
    assert!(
        mismatched.is_err(),
        "a key of another certificate is refused"
    );
}

#[tokio::test]
async fn cors_only_when_enabled() {
    let preflight = || {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/latest/system")
            .header(header::ORIGIN, "https://ui.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(Body::empty())
            .unwrap()
    };
    let simple = || {
        Request::builder()
            .uri("/api/public/info")
            .header(header::ORIGIN, "https://ui.example")
            .body(Body::empty())
            .unwrap()
    };
    let off = Harness::new(false);
    let (_, headers, _) = off.send(preflight()).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let (_, headers, _) = off.send(simple()).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    // On, even with RBAC: a browser's preflight carries no credentials.
    let on = Harness::configured(true, true, Box::new(standard));
    let (status, headers, _) = on.send(preflight()).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let (status, headers, _) = on.send(simple()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        on.seen().len() == 1,
        "the preflight did not reach the master"
    );
}

/// The stand-in master for the workflow, option and bulk routes.
fn workflows_master(request: &Envelope) -> Result<Envelope, BusError> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    match request.method.as_str() {
        "omq.system.start-interface" | "omq.system.stop-interface" => {
            let wanted = sluice_proto::v1::InterfaceRef::decode(request.body.as_slice()).unwrap();
            let version = if wanted.version.is_empty() {
                "1.0".to_string()
            } else {
                wanted.version
            };
            ok(format!("{}-{}-{version}", wanted.r#type, wanted.name).into_bytes())
        }
        "omq.system.reset-workflow" => ok(b"workflow W:1.0 reset: 2 step(s) loaded".to_vec()),
        "omq.system.list-interfaces" => ok(sluice_proto::v1::InterfaceList {
            interfaces: vec![sluice_proto::v1::Interface {
                r#type: "workflow".into(),
                id: 12,
                name: "W".into(),
                version: "2.0".into(),
                ..Default::default()
            }],
        }
        .encode_to_vec()),
        "omq.system.shutdown" => ok(Vec::new()),
        "omq.system.set-option" => refused("OPTION-ERROR", "qorus.max-events: next start", ""),
        "omq.system.retry-workflow-instance" if body["workflow_instanceid"] == 4 => {
            refused("STATUS-ERROR", "order 4 is COMPLETE", "")
        }
        "omq.system.retry-workflow-instance" => ok(json!({
            "workflow_instanceid": body["workflow_instanceid"], "workflowstatus": "RETRY"
        })
        .to_string()
        .into_bytes()),
        "omq.system.exec-synchronous" if request.deadline_ms <= sluice_core::now_ms() => {
            refused("INTERNAL-ERROR", "exec-synchronous needs a deadline", "")
        }
        "omq.system.exec-synchronous" => ok(json!({"workflow_instanceid": 5,
            "workflowstatus": "COMPLETE", "staticdata": body["staticdata"]})
        .to_string()
        .into_bytes()),
        _ => standard(request),
    }
}

#[tokio::test]
async fn workflow_routes_reach_their_verbs() {
    let h = Harness::with(false, Box::new(workflows_master));
    let (status, _) = h.json("GET", "/api/latest/workflows", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .json("GET", "/api/latest/workflows/W?version=1.0", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for (uri, body) in [
        ("/api/latest/workflows/W?action=disable", None),
        ("/api/latest/workflows/W/enable", None),
        ("/api/latest/workflows/W/setAutostart?autostart=0", None),
        (
            "/api/latest/workflows/12?action=setAutostart",
            Some(json!({"autostart": 2})),
        ),
    ] {
        let (status, reply) = h.json("PUT", uri, body).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {reply}");
    }
    assert_eq!(
        h.seen(),
        vec![
            ("omq.system.list-workflows".to_string(), json!({})),
            (
                "omq.system.get-workflow".to_string(),
                json!({"name": "W", "version": "1.0"})
            ),
            (
                "omq.system.set-workflow-enabled".to_string(),
                json!({"name": "W", "enabled": false})
            ),
            (
                "omq.system.set-workflow-enabled".to_string(),
                json!({"name": "W", "enabled": true})
            ),
            (
                "omq.system.set-workflow-autostart".to_string(),
                json!({"name": "W", "autostart": 0})
            ),
            (
                "omq.system.set-workflow-autostart".to_string(),
                json!({"workflowid": 12, "autostart": 2})
            ),
        ]
    );

    // start, stop and reset send the protobuf InterfaceRef; an id is looked up first.
    let (status, reply) = h
        .json("PUT", "/api/latest/workflows/W?action=stop", None)
        .await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::OK,
            json!({"network_id": "workflow-W-1.0", "status": "stopped"})
        )
    );
    let (_, reply) = h.json("PUT", "/api/latest/workflows/12/start", None).await;
    assert_eq!(
        reply,
        json!({"network_id": "workflow-W-2.0", "status": "starting"})
    );
    let (_, reply) = h.json("PUT", "/api/latest/workflows/W/reset", None).await;
    assert_eq!(
        reply,
        json!({"message": "workflow W:1.0 reset: 2 step(s) loaded"})
    );
    let (status, err) = h.json("PUT", "/api/latest/workflows/99/start", None).await;
    assert_eq!(
        (status, err["err"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT-FOUND"))
    );
    let sent: Vec<(String, sluice_proto::v1::InterfaceRef)> = h
        .master
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m.ends_with("-interface") || m.ends_with("reset-workflow"))
        .map(|(m, b)| {
            (
                m.clone(),
                sluice_proto::v1::InterfaceRef::decode(b.as_slice()).unwrap(),
            )
        })
        .collect();
    let r = |name: &str, version: &str| sluice_proto::v1::InterfaceRef {
        r#type: "workflow".into(),
        name: name.into(),
        version: version.into(),
    };
    assert_eq!(
        sent,
        vec![
            ("omq.system.stop-interface".to_string(), r("W", "")),
            ("omq.system.start-interface".to_string(), r("W", "2.0")),
            ("omq.system.reset-workflow".to_string(), r("W", "")),
        ]
    );

    // execSynchronous: the order's arguments, with a deadline.
    let (status, order) = h
        .json(
            "POST",
            "/api/latest/workflows/W/execSynchronous",
            Some(json!({"staticdata": {"a": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["workflowstatus"], "COMPLETE");
    assert_eq!(
        h.seen().pop().unwrap(),
        (
            "omq.system.exec-synchronous".to_string(),
            json!({"name": "W", "staticdata": {"a": 1}})
        )
    );
    let (status, err) = h
        .json(
            "POST",
            "/api/latest/workflows/W?action=execSynchronous",
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "staticdata is required: {err}"
    );
}

#[tokio::test]
async fn bulk_order_actions_answer_per_order() {
    let h = Harness::with(false, Box::new(workflows_master));
    let (status, reply) = h
        .json("PUT", "/api/latest/orders?action=retry&ids=3,4,5", None)
        .await;
    assert_eq!(status, StatusCode::OK, "200 even when some failed");
    assert_eq!(
        reply,
        json!([
            {"workflow_instanceid": 3, "result": {"workflow_instanceid": 3, "workflowstatus": "RETRY"}},
            {"workflow_instanceid": 4, "err": "STATUS-ERROR", "desc": "order 4 is COMPLETE"},
            {"workflow_instanceid": 5, "result": {"workflow_instanceid": 5, "workflowstatus": "RETRY"}},
        ])
    );
    let verbs: Vec<Value> = h.seen().into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        verbs,
        vec![
            json!({"workflow_instanceid": 3}),
            json!({"workflow_instanceid": 4}),
            json!({"workflow_instanceid": 5}),
        ]
    );
    let (status, reply) = h
        .json("PUT", "/api/latest/orders/block", Some(json!({"ids": [8]})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply[0]["err"], "STATUS-ERROR");
    assert_eq!(
        h.seen().pop().unwrap().0,
        "omq.system.block-workflow-instance"
    );
    for uri in [
        "/api/latest/orders?action=retry",
        "/api/latest/orders?action=retry&ids=x",
        "/api/latest/orders?action=setPriority&ids=1",
    ] {
        let (status, err) = h.json("PUT", uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {err}");
    }
    let many: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
    let (status, err) = h
        .json(
            "PUT",
            &format!("/api/latest/orders/cancel?ids={}", many.join(",")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
}

#[tokio::test]
async fn options_shutdown_and_log_lines() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("log")).unwrap();
    std::fs::write(
        home.path().join("log/test-key-master.log"),
        "one\ntwo\nthree\nfour\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join("log/test-key-workflow-W-2.0.log"),
        "wf started\n",
    )
    .unwrap();
    let h = Harness::at(home.path().to_path_buf(), Box::new(workflows_master));

    let (status, _) = h
        .json("GET", "/api/latest/system/options/qorus.max-events", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = h
        .json(
            "PUT",
            "/api/latest/system/options/qorus.max-events?action=set&value=5",
            None,
        )
        .await;
    assert_eq!(
        (status, err["err"].clone()),
        (StatusCode::CONFLICT, json!("OPTION-ERROR"))
    );
    let (status, _) = h
        .json("PUT", "/api/latest/system/options/max-events/set", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "value is required");
    let (status, reply) = h.json("PUT", "/api/latest/system/shutdown", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["shutdown"], true);
    let seen = h.seen();
    assert_eq!(
        seen,
        vec![
            (
                "omq.system.get-options".to_string(),
                json!({"name": "qorus.max-events"})
            ),
            (
                "omq.system.set-option".to_string(),
                json!({"name": "qorus.max-events", "value": "5"})
            ),
            ("omq.system.shutdown".to_string(), Value::Null),
        ]
    );

    let (status, lines) = h
        .json("GET", "/api/latest/system/logs/system?lines=2", None)
        .await;
    assert_eq!((status, lines), (StatusCode::OK, json!(["three", "four"])));
    let (_, lines) = h.json("GET", "/api/latest/system/logs/system", None).await;
    assert_eq!(lines.as_array().map(Vec::len), Some(4));
    // workflows/NAME: the log of the version the master knows (here 2.0).
    let (status, lines) = h
        .json("GET", "/api/v3/system/logs/workflows/W?lines=5", None)
        .await;
    assert_eq!((status, lines), (StatusCode::OK, json!(["wf started"])));
    let (_, lines) = h.json("GET", "/api/latest/system/logs/http", None).await;
    assert_eq!(lines, json!([]), "no file yet");
    for (uri, code) in [
        (
            "/api/latest/system/logs/../etc/options",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/latest/system/logs/workflows/NOPE",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/latest/system/logs/system?lines=-1",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/latest/system/logs/system?lines=10001",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, err) = h.json("GET", uri, None).await;
        assert_eq!(status, code, "{uri}: {err}");
    }
}
