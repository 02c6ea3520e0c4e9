//! End-to-end tests of the HTTP gateway: the real master starts `sluice-http-gateway`, which
//! serves REST over real sockets (HTTP, and HTTPS with certificates made here) and
//! forwards to the master, the service process and the workflow process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_e2e::gateway_node::{certificate, GatewayNode, Rest, GATEWAY};
use sluice_e2e::{eventually, fixtures, free_port, output_text, yaml_files, Backend, Instance};

const SVC: &str = "service-TEST-SVC-1.0";
const WF: &str = "workflow-TEST-FLOW-1.0";
const STOP_GRACE: Duration = Duration::from_secs(30);
const SOON: Duration = Duration::from_secs(60);
/// How long one request may take: long polls and a restarting gateway take a while.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A node with the gateway on a free port and the given interfaces loaded; the node, the
/// port and a REST client for it.
fn serving(
    key: &str,
    options: &[&str],
    interfaces: &[PathBuf],
) -> Result<(GatewayNode, u16, Rest)> {
    let (node, port) = GatewayNode::listening(key, options, interfaces)?;
    let rest = Rest::local(port, REQUEST_TIMEOUT)?;
    Ok((node, port, rest))
}

/// [`serving`] with TEST-SVC loaded, once its process is ready.
fn serving_test_svc(key: &str) -> Result<(GatewayNode, u16, Rest)> {
    let services = [fixtures("services").join("TEST-SVC-1.0.qsd.yaml")];
    let (node, port, rest) = serving(key, &[], &services)?;
    node.wait_log(SVC, "ready:")?;
    Ok((node, port, rest))
}

/// Creates an order with a POST of `body` to `path`, which must answer 201 Created; the
/// order's id.
async fn create_order(rest: &Rest, path: &str, body: Value) -> Result<i64> {
    let (status, created) = rest.post(path, body).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["workflow_instanceid"]
        .as_i64()
        .context("an order id")
}

/// Sends `body` as it is, for what `Rest`'s JSON cannot say (YAML, malformed JSON).
async fn send_body(
    rest: &Rest,
    method: Method,
    path: &str,
    content_type: &str,
    body: &'static str,
) -> Result<reqwest::Response> {
    Ok(rest
        .http
        .request(method, rest.url(path))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?)
}

/// A GET with one extra header, whose reply the caller reads as it is.
async fn get_with_header(
    rest: &Rest,
    path: &str,
    name: &str,
    value: &str,
) -> Result<reqwest::Response> {
    Ok(rest
        .http
        .get(rest.url(path))
        .header(name, value)
        .send()
        .await?)
}

/// A one-time token for a WebSocket that needs one (`/remote-command`).
async fn ws_token(rest: &Rest) -> Result<String> {
    let (_, token) = rest.get("/api/latest/system/wstoken").await?;
    Ok(token.as_str().context("a token")?.to_string())
}

/// Asserts a reply is 200 OK; its body.
#[track_caller]
fn ok((status, reply): (StatusCode, Value)) -> Value {
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

/// Asserts a reply is an error with this status and Qorus error code; its body.
#[track_caller]
fn refused((status, reply): (StatusCode, Value), want: StatusCode, err: &str) -> Value {
    assert_eq!((status, &reply["err"]), (want, &json!(err)), "{reply}");
    reply
}

/// The REST API against a real node: system views, a service method (value, exception,
/// internal), an order created and acted on, YAML, malformed input, unknown routes, and a
/// gateway killed with SIGKILL that the master restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rest_api_against_a_running_node() -> Result<()> {
    let mut interfaces = vec![fixtures("services").join("TEST-SVC-1.0.qsd.yaml")];
    interfaces.extend(yaml_files(&fixtures("flow"))?);
    let (node, port, rest) = serving("e2e-gw-rest", &[], &interfaces)?;

    // ---- system
    let info = ok(rest.get("/api/public/info").await?);
    assert_eq!(info["instance-key"], "e2e-gw-rest");
    assert_eq!(info["pid"], node.inst.pid(node.master));
    assert_eq!(info["status"], "running");
    let (_, system) = rest.get("/api/v7/system").await?;
    assert_eq!(system["instance-key"], "e2e-gw-rest");
    let (_, processes) = rest.get("/api/latest/system/processes").await?;
    assert!(
        processes.as_array().is_some_and(|p| p
            .iter()
            .any(|e| e["network_id"] == GATEWAY && e["status"] == "running")),
        "{processes}"
    );
    let health = ok(rest.get("/api/latest/system/health").await?);
    assert!(
        ["GREEN", "YELLOW"].contains(&health["health"].as_str().unwrap_or_default()),
        "{health}"
    );
    let (_, events) = rest
        .get("/api/latest/system/events?event=SYSTEM_STARTUP")
        .await?;
    assert_eq!(events[0]["eventstr"], "SYSTEM_STARTUP", "{events}");
    assert_eq!(events[0]["classstr"], "SYSTEM");
    assert_eq!(events[0]["info"]["instance-key"], "e2e-gw-rest");
    let (_, doc) = rest.get("/api/latest/openapi.json").await?;
    assert!(doc["paths"]["/api/latest/orders/{workflow_instanceid}/retry"]["put"].is_object());

    // ---- a service method through REST
    node.wait_log(SVC, "ready:")?;
    let (status, value) = rest
        .put(
            "/api/latest/services/TEST-SVC/echo?action=call",
            Some(json!({"args": [1, "a", {"b": null}]})),
        )
        .await?;
    assert_eq!(
        (status, value),
        (StatusCode::OK, json!([1, "a", {"b": null}]))
    );
    let (status, value) = rest
        .put("/api/latest/services/TEST-SVC/echo/call?args=hello", None)
        .await?;
    assert_eq!((status, value), (StatusCode::OK, json!(["hello"])));
    let err = refused(
        rest.put(
            "/api/latest/services/TEST-SVC/fail?action=call",
            Some(json!({"args": "boom"})),
        )
        .await?,
        StatusCode::CONFLICT,
        "ValueError",
    );
    assert_eq!(err["desc"], "boom");
    assert_eq!(err["info"]["type"], "ValueError");
    assert!(
        err["info"]["traceback"]
            .as_str()
            .unwrap_or_default()
            .contains("in fail"),
        "{err}"
    );
    refused(
        rest.put("/api/latest/services/TEST-SVC/secret?action=call", None)
            .await?,
        StatusCode::FORBIDDEN,
        "AUTHORIZATION-ERROR",
    );
    refused(
        rest.put("/api/latest/services/NO-SUCH-SVC/echo?action=call", None)
            .await?,
        StatusCode::NOT_FOUND,
        "SERVICE-NOT-FOUND",
    );
    let (_, services) = rest.get("/api/latest/services").await?;
    assert!(
        services
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "TEST-SVC")),
        "{services}"
    );
    ok(rest.get("/api/latest/services/TEST-SVC").await?);
    let groups = ok(rest.get("/api/latest/groups").await?);
    assert!(groups.is_array(), "{groups}");
    let (status, jobs) = rest.get("/api/latest/jobs").await?;
    assert_eq!((status, jobs), (StatusCode::OK, json!([])));
    refused(
        rest.get("/api/latest/jobs/NOPE").await?,
        StatusCode::NOT_FOUND,
        "NOT-FOUND",
    );

    // ---- YAML in and out
    let response = send_body(
        &rest,
        Method::PUT,
        "/api/latest/services/TEST-SVC/echo/call",
        "application/x-yaml",
        "args:\n  - 1\n  - two\n  - {three: 3}\n",
    )
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-yaml",
        "YAML in, YAML out"
    );
    let text = response.text().await?;
    assert_eq!(
        sluice_http_gateway::format::from_yaml(&text).map_err(anyhow::Error::msg)?,
        json!([1, "two", {"three": 3}]),
        "{text}"
    );

    // ---- orders
    node.wait_log(WF, "ready:")?;
    let out = node.inst.home().join("effects.txt");
    let id = create_order(
        &rest,
        "/api/latest/workflows/TEST-FLOW?action=createOrder",
        json!({"staticdata": {"out": out}, "orderkeys": {"ref": "R-1"}}),
    )
    .await?;
    let order = order_until(&rest, id, "the order to complete", |o| {
        o["workflowstatus"] == "COMPLETE"
    })
    .await?;
    assert_eq!(order["keys"]["ref"], json!(["R-1"]));
    assert_eq!(order["steps"].as_array().map(Vec::len), Some(4), "{order}");
    refused(
        rest.put(&format!("/api/latest/orders/{id}?action=block"), None)
            .await?,
        StatusCode::CONFLICT,
        "STATUS-ERROR",
    );

    // A scheduled order, acted on with both forms of the action.
    let later = create_order(
        &rest,
        "/api/latest/workflows/TEST-FLOW/createOrder",
        json!({"staticdata": {"out": out}, "scheduled": "2100-01-01T00:00:00Z"}),
    )
    .await?;
    for (path, body, status_after) in [
        (
            format!("/api/latest/orders/{later}?action=block"),
            None,
            "BLOCKED",
        ),
        (
            format!("/api/latest/orders/{later}/unblock"),
            None,
            "SCHEDULED",
        ),
        (
            format!("/api/latest/orders/{later}/setPriority?priority=7"),
            None,
            "SCHEDULED",
        ),
        (
            format!("/api/latest/orders/{later}?action=cancel"),
            None,
            "CANCELED",
        ),
        (
            format!("/api/latest/orders/{later}?action=uncancel"),
            None,
            "SCHEDULED",
        ),
        (
            format!("/api/latest/orders/{later}?action=dynamicData"),
            Some(json!({"data": {"approved": true}})),
            "SCHEDULED",
        ),
    ] {
        let (status, reply) = rest.put(&path, body).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        assert_eq!(reply["workflowstatus"], status_after, "{path}: {reply}");
    }
    let note = ok(rest
        .put(
            &format!("/api/latest/orders/{later}?action=notes&note=checked"),
            None,
        )
        .await?);
    assert!(note["noteid"].is_i64(), "{note}");
    let order = rest.get(&format!("/api/latest/orders/{later}")).await?.1;
    assert_eq!(order["priority"], 7);
    assert_eq!(order["dynamicdata"]["approved"], true);
    assert_eq!(order["notes"][0]["note"], "checked");
    let (_, found) = rest
        .get("/api/latest/orders?name=TEST-FLOW&status=SCHEDULED,COMPLETE")
        .await?;
    let ids: Vec<i64> = found
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|o| o["workflow_instanceid"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, vec![later, id], "newest first");
    refused(
        rest.get("/api/latest/orders/999999").await?,
        StatusCode::NOT_FOUND,
        "WORKFLOW-ORDER-NOT-FOUND",
    );
    refused(
        rest.post(
            "/api/latest/workflows/NO-SUCH-FLOW?action=createOrder",
            json!({"staticdata": {}}),
        )
        .await?,
        StatusCode::NOT_FOUND,
        "UNKNOWN-WORKFLOW",
    );

    // ---- malformed input and unknown routes: clear errors, and the gateway stays up
    let response = send_body(
        &rest,
        Method::POST,
        "/api/latest/workflows/TEST-FLOW?action=createOrder",
        "application/json",
        "{\"staticdata\": {",
    )
    .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let err: Value = response.json().await?;
    assert_eq!(err["err"], "BAD-REQUEST");
    assert!(
        err["desc"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{err}"
    );
    refused(
        rest.get("/api/latest/no/such/route").await?,
        StatusCode::NOT_FOUND,
        "NOT-FOUND",
    );
    let (status, err) = rest
        .put("/api/latest/orders/1?action=explode", None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    // Not HTTP at all.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", port))?;
        raw.set_read_timeout(Some(Duration::from_secs(5)))?;
        raw.write_all(b"\x16\x03\x01 this is not HTTP\r\n\r\n")?;
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
    }
    let response =
        get_with_header(&rest, "/api/public/info", "X-Request-Id", "e2e-request-1").await?;
    assert_eq!(response.status(), StatusCode::OK, "the gateway is still up");
    assert_eq!(response.headers()["x-request-id"], "e2e-request-1");
    let access = node.log(GATEWAY);
    assert!(
        access.contains(&format!("/api/latest/orders/{later}?action&note")),
        "the access log names the query's parameters:\n{access}"
    );
    assert!(
        access.contains("e2e-request-1"),
        "and the request id:\n{access}"
    );
    assert!(
        !access.contains("checked"),
        "but not their values:\n{access}"
    );

    // ---- kill -9 of the gateway: the master restarts it and it serves again
    let pid = node.gateway_pid(None)?;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let restarted = node.gateway_pid(Some(pid))?;
    assert_ne!(restarted, pid);
    let info = rest
        .poll("/api/public/info", "the restarted gateway", |i| {
            i["instance-key"] == "e2e-gw-rest"
        })
        .await?;
    assert_eq!(info["status"], "running");
    node.stop()
}

fn trusting(ca_pem: &str) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Two HTTPS listeners, each with its own certificate, and a plain one, all at once; then
/// a graceful stop: a request in flight completes, new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_on_two_ports_and_a_graceful_stop() -> Result<()> {
    let certs = tempfile::tempdir()?;
    let ca_one = certificate(certs.path(), "one")?;
    let ca_two = certificate(certs.path(), "two")?;
    let (p1, p2, plain) = (free_port(), free_port(), free_port());
    let dir = certs.path().display();
    let secure = format!(
        "qorus.http-secure-server: 127.0.0.1:{p1}{{cert={dir}/one.crt;key={dir}/one.key}}, \
         127.0.0.1:{p2}{{cert={dir}/two.crt;key={dir}/two.key}}"
    );
    let http = format!("qorus.http-server: 127.0.0.1:{plain}");
    let node = GatewayNode::start("e2e-gw-tls", &[&secure, &http], &[])?;

    let one = trusting(&ca_one)?;
    let two = trusting(&ca_two)?;
    for (client, port) in [(&one, p1), (&two, p2)] {
        let response = client
            .get(format!("https://127.0.0.1:{port}/api/public/info"))
            .send()
            .await
            .with_context(|| format!("HTTPS on port {port}"))?;
        assert_eq!(response.status(), StatusCode::OK);
        let info: Value = response.json().await?;
        assert_eq!(info["instance-key"], "e2e-gw-tls");
    }
    // Each listener serves its own certificate: a client trusting only the first CA
    // refuses the second port.
    assert!(
        one.get(format!("https://127.0.0.1:{p2}/api/public/info"))
            .send()
            .await
            .is_err(),
        "port {p2} must not present the first listener's certificate"
    );
    let rest = Rest::local(plain, REQUEST_TIMEOUT)?;
    assert_eq!(rest.get("/api/public/info").await?.0, StatusCode::OK);

    // A long poll in flight when the master stops the gateway completes.
    let in_flight = {
        let client = one.clone();
        tokio::spawn(async move {
            client
                .get(format!(
                    "https://127.0.0.1:{p1}/api/latest/system/events?event=USER_EVENT&wait_ms=4000"
                ))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.inst.signal(node.master, Signal::SIGTERM)?;
    node.wait_log(GATEWAY, "HTTP gateway stopping")?;
    eventually(
        Duration::from_secs(5),
        "new connections to be refused",
        || {
            std::net::TcpStream::connect(("127.0.0.1", plain))
                .is_err()
                .then_some(())
        },
    )?;
    let response = in_flight.await?.context("the request in flight")?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await?, json!([]));
    node.stop()
}

/// Startup step 7: a taken port or a bad certificate stops the master's start, naming
/// the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_that_cannot_start_stops_the_master() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let listener = format!("qorus.http-server: 127.0.0.1:{port}");
    let mut inst = Instance::new(Backend::Sqlite, "e2e-gw-taken", &[&listener])?;
    let (status, stderr) = inst.refused_start(&["--create-schema"], SOON)?;
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("startup step 7 failed"), "{stderr}");
    assert!(
        stderr.contains(&format!("HTTP listener 127.0.0.1:{port}: cannot listen")),
        "{stderr}"
    );
    drop(taken);

    let certs = tempfile::tempdir()?;
    let bad = certs.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )?;
    let secure = format!(
        "qorus.http-secure-server: 127.0.0.1:{}{{cert={}}}",
        free_port(),
        bad.display()
    );
    let mut inst = Instance::new(Backend::Sqlite, "e2e-gw-badcert", &[&secure])?;
    let (status, stderr) = inst.refused_start(&["--create-schema"], SOON)?;
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("startup step 7 failed: HTTP listener 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.pem"), "{stderr}");
    Ok(())
}

// ---- compression and WebSockets ------------------------------------------------------

/// `data` compressed with the codec of an HTTP token (the same codecs the gateway uses,
/// driven here directly).
async fn compressed(token: &str, data: &[u8]) -> Result<Vec<u8>> {
    through_codec(token, data, false).await
}

async fn decompressed(token: &str, data: &[u8]) -> Result<Vec<u8>> {
    through_codec(token, data, true).await
}

async fn through_codec(token: &str, data: &[u8], decode: bool) -> Result<Vec<u8>> {
    use async_compression::tokio::bufread as codec;
    use std::pin::Pin;
    use tokio::io::{AsyncRead, AsyncReadExt};
    let mut reader: Pin<Box<dyn AsyncRead + Send + '_>> = match (token, decode) {
        ("gzip", false) => Box::pin(codec::GzipEncoder::new(data)),
        ("gzip", true) => Box::pin(codec::GzipDecoder::new(data)),
        ("deflate", false) => Box::pin(codec::ZlibEncoder::new(data)),
        ("deflate", true) => Box::pin(codec::ZlibDecoder::new(data)),
        ("br", false) => Box::pin(codec::BrotliEncoder::new(data)),
        ("br", true) => Box::pin(codec::BrotliDecoder::new(data)),
        ("zstd", false) => Box::pin(codec::ZstdEncoder::new(data)),
        ("zstd", true) => Box::pin(codec::ZstdDecoder::new(data)),
        ("bzip2" | "x-bzip2" | "bzip", false) => Box::pin(codec::BzEncoder::new(data)),
        ("bzip2" | "x-bzip2" | "bzip", true) => Box::pin(codec::BzDecoder::new(data)),
        (other, _) => bail!("no codec for {other}"),
    };
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await?;
    Ok(out)
}

/// Compressed requests and replies in each of the five encodings, through a service
/// method call; a decompression bomb is refused with 413 and the gateway serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressed_bodies_both_ways() -> Result<()> {
    let (node, _, rest) = serving_test_svc("e2e-gw-zip")?;
    let call = rest.url("/api/latest/services/TEST-SVC/echo?action=call");
    let text: String = (0..200).map(|i| format!("word {i} ")).collect();
    let body = json!({"args": [text, 42]}).to_string();
    for (token, answer) in [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("bzip2", "bzip2"),
        ("x-bzip2", "x-bzip2"),
    ] {
        let packed = compressed(token, body.as_bytes()).await?;
        let response = rest
            .http
            .put(&call)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", token)
            .header("Accept-Encoding", format!("{token}, identity;q=0.1"))
            .body(packed)
            .send()
            .await?;
        let status = response.status();
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let bytes = response.bytes().await?;
        assert_eq!(status, StatusCode::OK, "{token}: {bytes:?}");
        assert_eq!(encoding.as_deref(), Some(answer), "{token}");
        let plain = decompressed(token, &bytes).await?;
        let value: Value = serde_json::from_slice(&plain)?;
        assert_eq!(value, json!([text, 42]), "{token}");
    }
    // By q-value, and a small reply is sent as it is.
    let response = get_with_header(
        &rest,
        "/api/latest/openapi.json",
        "Accept-Encoding",
        "gzip;q=0.5, br;q=0.9, zstd;q=0",
    )
    .await?;
    assert_eq!(response.headers()["content-encoding"], "br");
    let response = get_with_header(&rest, "/api/public/info", "Accept-Encoding", "gzip").await?;
    assert!(response.headers().get("content-encoding").is_none());

    // 256 MiB of zeros in a few KiB: refused once 16 MiB are decoded.
    let bomb = compressed("gzip", &vec![0u8; 256 << 20]).await?;
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let response = rest
        .http
        .put(&call)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The rest of the body is not read, so the connection closes, and the reply says so.
    assert_eq!(response.headers()["connection"], "close");
    let err: Value = response.json().await?;
    assert_eq!(err["err"], "PAYLOAD-TOO-LARGE", "{err}");
    let response = rest
        .http
        .put(&call)
        .header("Content-Encoding", "lzma")
        .body("x")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The gateway is still up.
    ok(rest.get("/api/public/info").await?);
    node.stop()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(port: u16, path: &str, token: Option<&str>) -> Result<Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}{path}").into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert("Qorus-Token", token.parse()?);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("WebSocket {path}"))?;
    Ok(socket)
}

/// The next text message within `within` (pings and pongs skipped); `None` at a close.
async fn next_text(socket: &mut Socket, within: Duration) -> Result<Option<String>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(within, socket.next())
            .await
            .context("no message in time")?;
        match message {
            Some(Ok(Message::Text(text))) => return Ok(Some(text.to_string())),
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => continue,
            Some(Err(err)) => bail!("the socket failed: {err}"),
        }
    }
}

/// The sockets against a real node: `/apievents` delivers the user event a service
/// raises, `/log/services/TEST-SVC` streams the service's log, malformed handshakes and
/// frames get clear errors, and a job file uploaded with `/raw/remote-file` is loaded by
/// `oload` over `/remote-command`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websockets_against_a_running_node() -> Result<()> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (node, port, rest) = serving_test_svc("e2e-gw-ws")?;

    // ---- /apievents: a user event raised by the service, through a filter
    let mut events = socket(port, "/apievents", None).await?;
    events
        .send(Message::text(r#"[{"event": "USER_EVENT"}]"#))
        .await?;
    events.send(Message::text("ping")).await?;
    assert_eq!(next_text(&mut events, SOON).await?.as_deref(), Some("pong"));
    let (status, value) = rest
        .put(
            "/api/latest/services/TEST-SVC/announce?action=call",
            Some(json!({"args": [{"from": "e2e-announce"}]})),
        )
        .await?;
    assert_eq!((status, value), (StatusCode::OK, json!(true)));
    let text = next_text(&mut events, SOON)
        .await?
        .context("the event socket closed")?;
    let batch: Value = serde_json::from_str(&text)?;
    let event = &batch[0];
    assert_eq!(event["eventstr"], "USER_EVENT", "{batch}");
    assert_eq!(event["classstr"], "USER", "{batch}");
    assert!(text.contains("e2e-announce"), "{batch}");
    for key in [
        "id",
        "time",
        "class",
        "event",
        "severity",
        "severitystr",
        "caller",
        "info",
    ] {
        assert!(event.get(key).is_some(), "{key}: {batch}");
    }
    assert!(
        batch
            .as_array()
            .is_some_and(|b| b.iter().all(|e| e["eventstr"] == "USER_EVENT")),
        "the filter holds: {batch}"
    );

    // ---- /log/services/TEST-SVC: the tail, then new lines
    let mut log = socket(port, "/log/services/TEST-SVC", None).await?;
    let tail = next_text(&mut log, SOON)
        .await?
        .context("the log socket closed")?;
    assert!(tail.contains("ready:"), "{tail}");
    assert!(tail.ends_with('\n'));
    let mut system = socket(port, "/log/system?lines=5", None).await?;
    let master_tail = next_text(&mut system, SOON).await?.context("closed")?;
    assert_eq!(master_tail.lines().count(), 5, "{master_tail}");
    // The access log line of a new request arrives on the gateway's own log.
    let mut http = socket(port, "/log/http?lines=0", None).await?;
    rest.get("/api/latest/system/health").await?;
    let mut seen = String::new();
    while !seen.contains("/api/latest/system/health") {
        seen.push_str(&next_text(&mut http, SOON).await?.context("closed")?);
    }
    let response = rest
        .http
        .get(rest.url("/log/services/NO-SUCH-SVC"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // ---- malformed: not a handshake, and an unmasked frame
    let response = rest.http.get(rest.url("/apievents")).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let err: Value = response.json().await?;
    assert!(
        err["desc"]
            .as_str()
            .unwrap_or_default()
            .contains("not a WebSocket handshake"),
        "{err}"
    );
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", port))?;
        raw.set_read_timeout(Some(Duration::from_secs(10)))?;
        raw.write_all(
            b"GET /apievents HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )?;
        let mut head = [0u8; 1024];
        let n = raw.read(&mut head)?;
        assert!(
            head[..n].starts_with(b"HTTP/1.1 101"),
            "{:?}",
            String::from_utf8_lossy(&head[..n])
        );
        raw.write_all(&[0x81, 0x03, b'b', b'a', b'd'])?;
        let mut frame = Vec::new();
        let _ = raw.read_to_end(&mut frame);
        assert!(
            frame.len() > 4 && frame[0] == 0x88,
            "a close frame: {frame:?}"
        );
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
        assert!(String::from_utf8_lossy(&frame[4..]).contains("unmasked"));
    }
    events.send(Message::text("ping")).await?;
    assert_eq!(
        next_text(&mut events, SOON).await?.as_deref(),
        Some("pong"),
        "the gateway and its other sockets are still up"
    );

    // ---- remote oload of an uploaded job
    let upload = |name: &'static str, dir: Option<String>| {
        let mut request = rest
            .http
            .post(rest.url("/raw/remote-file"))
            .header("filepath", name);
        if let Some(dir) = dir {
            request = request.header("dir", dir);
        }
        let body = std::fs::read(fixtures("jobs").join(name));
        async move {
            let response = request.body(body?).send().await?;
            anyhow::ensure!(
                response.status() == StatusCode::OK,
                "upload {name}: {}",
                response.status()
            );
            Ok::<String, anyhow::Error>(response.text().await?)
        }
    };
    let dir = upload("RUNNOW-1.0.qjob.yaml", None).await?;
    assert_eq!(upload("jobs.py", Some(dir.clone())).await?, dir);
    let uploaded = node.inst.home().join("user/remote").join(&dir);
    assert!(uploaded.join("jobs.py").is_file(), "{}", uploaded.display());
    let token = ws_token(&rest).await?;
    let mut command = socket(port, "/remote-command", Some(&token)).await?;
    command
        .send(Message::text(format!(
            "cmd: oload\nargs: [RUNNOW-1.0.qjob.yaml, jobs.py]\nfiles: [RUNNOW-1.0.qjob.yaml, jobs.py]\ndir: {dir}\n"
        )))
        .await?;
    let mut output = Vec::new();
    while let Some(text) = next_text(&mut command, SOON).await? {
        let doc = sluice_http_gateway::format::from_yaml(&text).map_err(anyhow::Error::msg)?;
        assert_eq!(doc["msgtype"], "text-output", "{text}");
        output.push(doc["data"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        output.last().map(String::as_str),
        Some("-- process terminated with exit code 0 --"),
        "{output:?}"
    );
    let listed = node.inst.sluice(&["load", "--list"])?;
    let listed = output_text(&listed);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("job") && l.contains("RUNNOW")),
        "{listed}"
    );
    // The same through the socket, and a used token is refused.
    let token = ws_token(&rest).await?;
    let mut view = socket(port, &format!("/remote-command?token={token}"), None).await?;
    view.send(Message::text("cmd: oview")).await?;
    let mut shown = String::new();
    while let Some(text) = next_text(&mut view, SOON).await? {
        shown.push_str(&text);
    }
    assert!(shown.contains("RUNNOW"), "{shown}");
    assert!(socket(port, "/remote-command", Some(&token)).await.is_err());
    let response = rest
        .http
        .delete(rest.url("/raw/remote-file"))
        .header("dir", &dir)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!uploaded.exists());
    node.stop()
}

// ---- workflows, bulk actions, options, logs, shutdown, connection limits --------------

/// An order of TEST-FLOW until `check` accepts it.
async fn order_until(
    rest: &Rest,
    id: i64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    rest.poll(&format!("/api/latest/orders/{id}"), what, check)
        .await
}

/// TEST-FLOW as `GET /workflows/TEST-FLOW` shows it, once `check` accepts it.
async fn flow_until(rest: &Rest, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    rest.poll("/api/latest/workflows/TEST-FLOW", what, check)
        .await
}

/// Workflow control over REST against the real TEST-FLOW (list, get, stop, start, disable,
/// enable, setAutostart, reset), `execSynchronous`, a bulk retry, options read and set,
/// log lines, and a shutdown over REST that stops the master with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workflows_options_logs_and_shutdown_over_rest() -> Result<()> {
    let (mut node, port, rest) = serving("e2e-gw-wf", &[], &yaml_files(&fixtures("flow"))?)?;
    node.wait_log(WF, "ready:")?;
    let out = node.inst.home().join("effects.txt");
    let running = |w: &Value| w["status"] == "running";

    // ---- list and get
    let list = ok(rest.get("/api/latest/workflows").await?);
    let flow = &list[0];
    assert_eq!(
        (&flow["name"], &flow["version"], &flow["autostart"]),
        (&json!("TEST-FLOW"), &json!("1.0"), &json!(1)),
        "{list}"
    );
    assert_eq!(flow["enabled"], true);
    assert_eq!(flow["keylist"], json!(["ref"]));
    assert_eq!(flow["network_id"], WF, "{flow}");
    assert_eq!(flow["TOTAL"], 0);
    let workflowid = flow["workflowid"].as_i64().context("a workflowid")?;
    let one = ok(rest.get("/api/latest/workflows/TEST-FLOW").await?);
    let steps: Vec<&str> = one["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps, vec!["Prepare", "Left", "Right", "Finish"], "{one}");
    let errors: Vec<(&str, &str)> = one["errors"]
        .as_array()
        .context("errors")?
        .iter()
        .filter_map(|e| Some((e["error"].as_str()?, e["status"].as_str()?)))
        .collect();
    assert!(errors.contains(&("TEST-RETRY", "RETRY")), "{one}");
    assert!(errors.contains(&("TEST-DECLINED", "ERROR")), "{one}");
    let (_, by_id) = rest
        .get(&format!("/api/latest/workflows/{workflowid}"))
        .await?;
    assert_eq!(by_id["name"], "TEST-FLOW");
    refused(
        rest.get("/api/latest/workflows/NO-SUCH-FLOW").await?,
        StatusCode::NOT_FOUND,
        "UNKNOWN-WORKFLOW",
    );

    // ---- stop and start
    let reply = ok(rest
        .put("/api/latest/workflows/TEST-FLOW?action=stop", None)
        .await?);
    assert_eq!(reply, json!({"network_id": WF, "status": "stopped"}));
    assert_eq!(
        rest.get("/api/latest/workflows/TEST-FLOW").await?.1["status"],
        "stopped"
    );
    let reply = ok(rest
        .put(&format!("/api/latest/workflows/{workflowid}/start"), None)
        .await?);
    assert_eq!(reply["status"], "starting");
    flow_until(&rest, "the workflow to run again", running).await?;

    // ---- disable: no new orders, the process stops; enable starts it again
    let reply = ok(rest
        .put("/api/latest/workflows/TEST-FLOW/disable", None)
        .await?);
    assert_eq!(
        (&reply["enabled"], &reply["changed"], &reply["process"]),
        (&json!(false), &json!(true), &json!("stopped")),
        "{reply}"
    );
    let flow = rest.get("/api/latest/workflows/TEST-FLOW").await?.1;
    assert_eq!(
        (&flow["enabled"], &flow["status"]),
        (&json!(false), &json!("stopped"))
    );
    refused(
        rest.post(
            "/api/latest/workflows/TEST-FLOW?action=createOrder",
            json!({"staticdata": {"out": out}}),
        )
        .await?,
        StatusCode::CONFLICT,
        "STATUS-ERROR",
    );
    // Nor does it start.
    refused(
        rest.put("/api/latest/workflows/TEST-FLOW?action=start", None)
            .await?,
        StatusCode::CONFLICT,
        "STATUS-ERROR",
    );
    let reply = ok(rest
        .put("/api/latest/workflows/TEST-FLOW?action=enable", None)
        .await?);
    assert_eq!(reply["process"], "starting", "{reply}");
    flow_until(&rest, "the enabled workflow to run", running).await?;

    // ---- setAutostart: 0 stops it, 1 starts it
    let reply = ok(rest
        .put(
            "/api/latest/workflows/TEST-FLOW/setAutostart?autostart=0",
            None,
        )
        .await?);
    assert_eq!(reply["process"], "stopped", "{reply}");
    let flow = rest.get("/api/latest/workflows/TEST-FLOW").await?.1;
    assert_eq!(
        (&flow["autostart"], &flow["status"]),
        (&json!(0), &json!("stopped"))
    );
    let reply = ok(rest
        .put(
            "/api/latest/workflows/TEST-FLOW?action=setAutostart",
            Some(json!({"autostart": 1})),
        )
        .await?);
    assert_eq!(reply["process"], "starting", "{reply}");
    flow_until(&rest, "the workflow to run with autostart 1", running).await?;
    node.wait_log(WF, "ready:")?;

    // ---- reset: the running process loads its code again
    let reply = ok(rest
        .put("/api/latest/workflows/TEST-FLOW?action=reset", None)
        .await?);
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("TEST-FLOW:1.0 reset"),
        "{reply}"
    );

    // ---- execSynchronous: the order, COMPLETE
    let order = ok(rest
        .post(
            "/api/latest/workflows/TEST-FLOW?action=execSynchronous",
            json!({"staticdata": {"out": out}, "orderkeys": {"ref": "SYNC-1"}}),
        )
        .await?);
    assert_eq!(order["workflowstatus"], "COMPLETE", "{order}");
    assert_eq!(order["keys"]["ref"], json!(["SYNC-1"]));
    assert_eq!(order["steps"].as_array().map(Vec::len), Some(4), "{order}");

    // ---- a bulk retry of two orders in ERROR (and one that does not exist)
    let mut failed = Vec::new();
    for _ in 0..2 {
        failed.push(
            create_order(
                &rest,
                "/api/latest/workflows/TEST-FLOW/createOrder",
                json!({"staticdata": {"out": out, "fail": {"Right": "business"}}}),
            )
            .await?,
        );
    }
    for id in &failed {
        order_until(&rest, *id, "the order to fail", |o| {
            o["workflowstatus"] == "ERROR"
        })
        .await?;
    }
    let results = ok(rest
        .put(
            &format!(
                "/api/latest/orders?action=retry&ids={},{},999999",
                failed[0], failed[1]
            ),
            None,
        )
        .await?);
    for (i, id) in failed.iter().enumerate() {
        assert_eq!(results[i]["workflow_instanceid"], *id, "{results}");
        assert_eq!(
            results[i]["result"]["previous_workflowstatus"], "ERROR",
            "{results}"
        );
    }
    assert_eq!(results[2]["err"], "WORKFLOW-ORDER-NOT-FOUND", "{results}");

    // ---- options: read, and and set
    let options = ok(rest.get("/api/latest/system/options").await?);
    assert!(
        options.as_array().is_some_and(|o| o
            .iter()
            .any(|o| o["name"] == "qorus.instance-key" && o["value"] == "e2e-gw-wf")),
        "{options}"
    );
    let one = ok(rest
        .get("/api/latest/system/options/qorus.http-server")
        .await?);
    assert_eq!(one["value"], format!("127.0.0.1:{port}"));
    // A runtime option changes at once; a startup-only one is refused, naming why.
    let set = ok(rest
        .put(
            "/api/latest/system/options/max-events?action=set&value=5",
            None,
        )
        .await?);
    assert_eq!(
        (&set["name"], &set["value"]),
        (&json!("qorus.max-events"), &json!("5"))
    );
    let (_, one) = rest.get("/api/latest/system/options/max-events").await?;
    assert_eq!(one["value"], "5", "{one}");
    let err = refused(
        rest.put(
            "/api/latest/system/options/qorus.http-server?action=set&value=8099",
            None,
        )
        .await?,
        StatusCode::CONFLICT,
        "OPTION-ERROR",
    );
    assert!(
        err["desc"].as_str().unwrap_or_default().contains("restart"),
        "{err}"
    );
    refused(
        rest.put(
            "/api/latest/system/options/max-events/set",
            Some(json!({"value": "zero"})),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "INVALID-ARGUMENT",
    );

    // ---- log lines
    let lines = ok(rest.get("/api/latest/system/logs/system?lines=5").await?);
    assert_eq!(lines.as_array().map(Vec::len), Some(5), "{lines}");
    let lines = ok(rest
        .get("/api/latest/system/logs/workflows/TEST-FLOW?lines=500")
        .await?);
    assert!(
        lines.as_array().is_some_and(|l| l
            .iter()
            .any(|l| l.as_str().unwrap_or_default().contains("ready:"))),
        "{lines}"
    );
    let (status, _) = rest.get("/api/latest/system/logs/nope").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // ---- shutdown over REST: answered, then the master stops everything and exits 0
    let reply = ok(rest.put("/api/latest/system?action=shutdown", None).await?);
    assert_eq!(reply["shutdown"], true);
    let exit = node.inst.wait_exit(node.master, STOP_GRACE)?;
    assert_eq!(exit.code(), Some(0), "{}", node.log("master"));
    assert!(
        node.log("master").contains("shutdown"),
        "{}",
        node.log("master")
    );
    Ok(())
}

/// One HTTP/1.1 response off a raw connection: the head, then the body by its length.
fn read_response(stream: &mut std::net::TcpStream) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|n| n.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return Ok(text);
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// `qorus.http-max-connections-per-address`: with a limit of 3, a fourth connection from
/// 127.0.0.1 gets 503 with Retry-After and is closed; the three are served on, and once
/// one closes a new one is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_per_address_are_limited() -> Result<()> {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let (node, port) = GatewayNode::listening(
        "e2e-gw-limit",
        &["qorus.http-max-connections-per-address: 3"],
        &[],
    )?;
    const REQUEST: &[u8] = b"GET /api/public/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let connect = || -> Result<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(stream)
    };
    let mut open = Vec::new();
    for i in 0..3 {
        let mut stream = connect()?;
        stream.write_all(REQUEST)?;
        let answer = read_response(&mut stream)?;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "connection {i}: {answer}"
        );
        open.push(stream);
    }
    let mut extra = connect()?;
    let _ = extra.write_all(REQUEST);
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: "), "{answer}");
    assert!(answer.contains("TOO-MANY-CONNECTIONS"), "{answer}");
    // The three admitted ones are served on.
    open[0].write_all(REQUEST)?;
    assert!(read_response(&mut open[0])?.starts_with("HTTP/1.1 200"));
    node.wait_log(GATEWAY, "refusing connections from 127.0.0.1")?;

    // One closes: a new connection is admitted (once the gateway has seen the close).
    drop(open.pop());
    let admitted = eventually(SOON, "a place to come free", || {
        let mut stream = connect().ok()?;
        stream.write_all(REQUEST).ok()?;
        let answer = read_response(&mut stream).ok()?;
        answer.starts_with("HTTP/1.1 200").then_some(answer)
    })?;
    assert!(admitted.contains("e2e-gw-limit"), "{admitted}");
    drop(open);
    node.stop()
}

/// Sends one request to the own socket of an interface process as the gateway does, with
/// the keypair derived from the cluster key; the reply.
async fn as_the_gateway(
    node: &GatewayNode,
    endpoint: &str,
    method: &str,
    body: Value,
) -> Result<sluice_proto::v1::Envelope> {
    let cluster = sluice_core::keys::load_key_file(&node.inst.home().join("etc/cluster.key"))?;
    let bus = sluice_core::bus::Bus::client()?;
    let client = bus.connect(endpoint, cluster.public(), &cluster.gateway()?)?;
    let request = sluice_proto::v1::Envelope {
        method: method.into(),
        body: body.to_string().into_bytes(),
        ..Default::default()
    };
    Ok(client.call(request, Duration::from_secs(10)).await?)
}

/// Calls TEST-SVC's `echo` through REST with the master frozen (`SIGSTOP`), where a call
/// that went through the master could not be answered; the answer. It may take the
/// gateway a registry fetch (3 s) to learn of the service's process, so there are a few
/// tries, each with the master frozen only briefly.
async fn answered_with_the_master_frozen(node: &GatewayNode, port: u16) -> Result<Value> {
    let master = Pid::from_raw(node.inst.pid(node.master));
    let quick = Rest::local(port, Duration::from_secs(2))?;
    let path = "/api/latest/services/TEST-SVC/echo?action=call";
    for _ in 0..10 {
        kill(master, Signal::SIGSTOP)?;
        let reply = quick.put(path, Some(json!({"args": ["frozen"]}))).await;
        kill(master, Signal::SIGCONT)?;
        if let Ok((StatusCode::OK, value)) = reply {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("no call was answered while the master was stopped")
}

#[tokio::test]
async fn service_calls_go_straight_to_the_service_process() -> Result<()> {
    let (node, port, rest) = serving_test_svc("e2e-gw-direct")?;
    assert_eq!(node.echo_when_up(&rest, &json!([1])).await?, json!([1]));
    assert_eq!(
        answered_with_the_master_frozen(&node, port).await?,
        json!(["frozen"])
    );

    // Straight to the process, the caller is from outside: internal methods are refused,
    // and errors keep their shape.
    let (status, reply) = rest
        .put("/api/latest/services/TEST-SVC/secret?action=call", None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert_eq!(reply["err"], "AUTHORIZATION-ERROR", "{reply}");
    let (status, reply) = rest
        .put(
            "/api/latest/services/TEST-SVC/fail?action=call",
            Some(json!({"args": ["broken"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert!(reply["desc"].to_string().contains("broken"), "{reply}");

    // The gateway's key opens the service's socket for calls, and for nothing the master
    // alone may ask.
    let endpoint = node
        .log(SVC)
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("endpoint="))
                .map(str::to_string)
        })
        .context("the service's log names no endpoint")?;
    let reply = as_the_gateway(
        &node,
        &endpoint,
        "call",
        json!({"method": "echo", "args": ["direct"]}),
    )
    .await?;
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.body)?,
        json!(["direct"])
    );
    let reply = as_the_gateway(&node, &endpoint, "call", json!({"method": "secret"})).await?;
    assert_eq!(
        reply.error.map(|e| e.code).as_deref(),
        Some("AUTHORIZATION-ERROR"),
        "the gateway's calls are external"
    );
    for method in ["stop", "reset", "status", "get-info"] {
        let reply = as_the_gateway(&node, &endpoint, method, json!({})).await?;
        let error = reply.error.context("the gateway was not refused")?;
        assert_eq!(error.code, "AUTHORIZATION-ERROR", "{method}: {error:?}");
    }
    assert_eq!(
        node.echo_when_up(&rest, &json!(["still up"])).await?,
        json!(["still up"])
    );
    node.stop()
}

/// Straight to the service process, a process that dies ends the calls in flight at once,
/// and once the master has restarted it the calls succeed again; a reset under 16
/// concurrent REST callers fails none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_calls_survive_a_killed_service_and_a_reset() -> Result<()> {
    let (node, port, rest) = serving_test_svc("e2e-gw-direct-kill")?;
    assert_eq!(node.echo_when_up(&rest, &json!([1])).await?, json!([1]));
    answered_with_the_master_frozen(&node, port).await?;

    let pid = eventually(SOON, "the service's pid", || {
        sluice_e2e::child_pid_from_log(&node.log("master"), SVC)
    })?;
    let in_flight = {
        let rest = Rest::local(port, REQUEST_TIMEOUT)?;
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let reply = rest
                .put(
                    "/api/latest/services/TEST-SVC/slow?action=call",
                    Some(json!({"args": [30]})),
                )
                .await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let (reply, took) = in_flight.await?;
    let (status, reply) = reply?;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["err"], "SERVICE-ERROR", "{reply}");
    assert!(
        took < Duration::from_secs(25),
        "the call waited for its deadline ({took:?}) rather than end with its process"
    );
    // The master restarts the autostart service; a call meanwhile may fail, and then they
    // succeed.
    assert_eq!(
        node.echo_when_up(&rest, &json!(["again"])).await?,
        json!(["again"])
    );

    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for n in 0..16 {
        let rest = Rest::local(port, REQUEST_TIMEOUT)?;
        let (failures, stop) = (failures.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut calls = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (path, body) = if n % 2 == 0 {
                    (
                        "/api/latest/services/TEST-SVC/echo?action=call",
                        json!({"args": [n]}),
                    )
                } else {
                    (
                        "/api/latest/services/TEST-SVC/slow?action=call",
                        json!({"args": [0.05]}),
                    )
                };
                calls += 1;
                match rest.put(path, Some(body)).await {
                    Ok((StatusCode::OK, _)) => {}
                    Ok((status, reply)) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{status}: {reply}")),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string()),
                }
            }
            calls
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, reply) = rest
        .put("/api/latest/services/TEST-SVC?action=reset", None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{reply}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut calls = 0;
    for caller in callers {
        calls += caller.await?;
    }
    assert!(calls > 32, "the callers were calling ({calls} calls)");
    let failures = failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        failures.is_empty(),
        "failed calls during the reset: {failures:?}"
    );
    node.stop()
}

/// With `qorus.audit: api`, a change made over REST is audited with the request and where
/// it came from, as Qorus records them.
#[tokio::test]
async fn changes_over_rest_are_audited_with_their_request() -> Result<()> {
    let flow = yaml_files(&fixtures("flow"))?;
    let (node, port, rest) = serving("e2e-gw-audit", &["qorus.audit: api,workflow-data"], &flow)?;
    let (status, reply) = rest
        .put(
            "/api/latest/system/options/qorus.max-retries?action=set&value=5",
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let out = node.inst.home().join("effects.txt").display().to_string();
    let id = create_order(
        &rest,
        "/api/latest/workflows/TEST-FLOW?action=createOrder",
        json!({"staticdata": {"out": out}}),
    )
    .await?;
    let db = node.inst.db().await?;
    let rows = db
        .strings(
            "SELECT who || '|' || source || '|' || reason || '|' || info1 || '|' || info2 \
             FROM audit_events WHERE audit_event_code = 15 \
             AND info2 = 'omq.system.set-option'",
        )
        .await?;
    // The order's own record (WORKFLOW-DATA-CREATED) names the request the same way.
    let created = db
        .strings(&format!(
            "SELECT who || '|' || reason || '|' || source FROM audit_events \
             WHERE audit_event_code = 17 AND workflow_instanceid = {id}"
        ))
        .await?;
    db.close().await;
    let [order] = created.as_slice() else {
        bail!("one WORKFLOW-DATA-CREATED record expected: {created:?}");
    };
    assert!(
        order.starts_with("Qorus|REST POST api/latest/workflows/TEST-FLOW?action=createOrder|source: ipv4[127.0.0.1]:")
            && order.ends_with(&format!(" listener: ipv4[127.0.0.1]:{port}")),
        "{order}"
    );
    let [row] = rows.as_slice() else {
        bail!("one API-CALL record expected: {rows:?}");
    };
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields[0], "Qorus", "no RBAC user yet: {row}");
    assert!(
        fields[1].starts_with("source: ipv4[127.0.0.1]:")
            && fields[1].ends_with(&format!(" listener: ipv4[127.0.0.1]:{port}")),
        "{row}"
    );
    assert_eq!(
        fields[2], "REST PUT api/latest/system/options/qorus.max-retries?action=set",
        "the request, with only the action of its query: {row}"
    );
    assert_eq!(fields[3], "qorus.max-retries=5", "{row}");
    assert_eq!(fields[4], "omq.system.set-option", "{row}");
    node.stop()
}
