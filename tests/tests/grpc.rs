//! End-to-end test of the gateway's gRPC service (`sluice.v1.SystemApi`, docs/grpc.md):
//! the real master, gateway and service process, with Python's `grpcio` from PyPI as the
//! client: h2c on the plain listener, HTTP/2 over TLS (ALPN `h2`) on an HTTPS one. Python
//! has no generated stubs here: it sends and receives raw bytes, which this test encodes
//! and decodes with the generated messages.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use prost::Message;
use serde_json::{json, Value};
use sluice_e2e::gateway_node::{certificate, GatewayNode, Rest, GATEWAY};
use sluice_e2e::{fixtures, free_port, output_text, yaml_files};
use sluice_proto::v1::{JsonCall, JsonReply, SystemStatus};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .filter(|p| p.len() == 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .with_context(|| format!("not hex: {text:?}"))
        })
        .collect()
}

fn json_call(method: &str, body: Value) -> String {
    hex(&JsonCall {
        method: method.into(),
        body_json: body.to_string().into_bytes(),
    }
    .encode_to_vec())
}

/// Calls each `(rpc, request bytes as hex)` with grpcio, over TLS when a CA file is given;
/// prints one JSON list of `{"reply": HEX}` or `{"code", "details", "err"}`.
const CLIENT: &str = r#"
import json, sys, grpc
target, calls = sys.argv[1], json.loads(sys.argv[2])
if len(sys.argv) > 3:
    with open(sys.argv[3], "rb") as ca:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read()))
else:
    channel = grpc.insecure_channel(target)
out = []
for rpc, request in calls:
    method = channel.unary_unary("/sluice.v1.SystemApi/" + rpc,
                                 request_serializer=None, response_deserializer=None)
    try:
        out.append({"reply": method(bytes.fromhex(request), timeout=60).hex()})
    except grpc.RpcError as e:
        metadata = dict(tuple(e.initial_metadata() or ()) + tuple(e.trailing_metadata() or ()))
        out.append({"code": e.code().name, "details": e.details(),
                    "err": metadata.get("qorus-err")})
print(json.dumps(out))
"#;

/// Runs [`CLIENT`]; its JSON list.
async fn grpcio(target: &str, calls: &Value, ca: Option<&Path>) -> Result<Value> {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg("-c")
        .arg(CLIENT)
        .arg(target)
        .arg(calls.to_string());
    if let Some(ca) = ca {
        command.arg(ca);
    }
    let out = command.output().await?;
    anyhow::ensure!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).with_context(|| format!("not JSON: {}", output_text(&out)))
}

fn reply(got: &Value, i: usize) -> Result<Vec<u8>> {
    unhex(got[i]["reply"].as_str().with_context(|| format!("{got}"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpcio_calls_a_service_method_and_the_status() -> Result<()> {
    let tls_port = free_port();
    let certs = tempfile::tempdir()?;
    let ca_pem = certificate(certs.path(), "gw")?;
    let ca = certs.path().join("ca.pem");
    std::fs::write(&ca, ca_pem)?;
    let dir = certs.path().display();
    let key = "e2e-grpc";
    let (node, port) = GatewayNode::listening(
        key,
        &[&format!(
            "qorus.http-secure-server: 127.0.0.1:{tls_port}{{cert={dir}/gw.crt;key={dir}/gw.key}}"
        )],
        &yaml_files(&fixtures("services"))?,
    )?;
    let rest = Rest::local(port, Duration::from_secs(60))?;
    let args = json!([1, "two", {"three": [3.5, true, null]}]);

    // REST first (as tests/tests/rpc.rs): also waits for the service.
    assert_eq!(node.echo_when_up(&rest, &args).await?, args);

    let calls = json!([
        [
            "Call",
            json_call(
                "omq.system.call-service",
                json!({"name": "TEST-SVC", "method": "echo", "args": args})
            )
        ],
        ["GetStatus", ""],
        [
            "Call",
            json_call(
                "omq.system.call-service",
                json!({"name": "TEST-SVC", "method": "fail", "args": ["boom"]})
            )
        ],
        ["Call", json_call("omq.system.raise-event", json!({}))],
    ]);
    let plain = grpcio(&format!("127.0.0.1:{port}"), &calls, None).await?;
    let tls = grpcio(&format!("localhost:{tls_port}"), &calls, Some(&ca)).await?;
    assert_eq!(plain.as_array().map(Vec::len), Some(4), "{plain}");
    assert_eq!(tls.as_array().map(Vec::len), Some(4), "{tls}");

    for got in [&plain, &tls] {
        // The same result as REST.
        let echoed = JsonReply::decode(reply(got, 0)?.as_slice())?;
        assert_eq!(serde_json::from_slice::<Value>(&echoed.body_json)?, args);
        let status = SystemStatus::decode(reply(got, 1)?.as_slice())?;
        assert_eq!(status.instance_key, key);
        assert_eq!(status.status, "running");
        assert!(
            status
                .processes
                .iter()
                .any(|p| p.network_id == "http-gateway"),
            "{status:?}"
        );
    }
    let got = &plain;
    // The method's exception, with its Qorus code; a verb of the system's own processes.
    assert_eq!(got[2]["code"], "FAILED_PRECONDITION", "{got}");
    assert_eq!(got[2]["err"], "ValueError", "{got}");
    assert!(
        got[2]["details"]
            .as_str()
            .is_some_and(|d| d.starts_with("ValueError: ") && d.contains("boom")),
        "{got}"
    );
    assert_eq!(got[3]["code"], "UNIMPLEMENTED", "{got}");
    assert_eq!(got[3]["err"], "UNKNOWN-METHOD", "{got}");

    // The access log has the calls.
    let log = node.log(GATEWAY);
    assert!(log.contains("POST /sluice.v1.SystemApi/Call"), "{log}");

    node.stop()
}
