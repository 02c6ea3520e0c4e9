//! End-to-end tests of the RPC gateways (`/JSON`, `/RPC2`, `/YAML`): the real master,
//! gateway and service process; one service method called through REST and each RPC
//! protocol gives the same result; Python's standard `xmlrpc.client` as the XML-RPC client.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_e2e::gateway_node::{GatewayNode, Rest};
use sluice_e2e::{fixtures, output_text, yaml_files};

/// A JSON-RPC request to `/JSON`; the reply.
async fn json_rpc(http: &reqwest::Client, base: &str, request: Value) -> Result<Value> {
    Ok(http
        .post(format!("{base}/JSON"))
        .json(&request)
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_service_method_through_rest_and_every_rpc_protocol() -> Result<()> {
    let (node, port) = GatewayNode::listening("e2e-rpc", &[], &yaml_files(&fixtures("services"))?)?;
    let rest = Rest::local(port, Duration::from_secs(60))?;
    let args = json!([1, "two", {"three": [3.5, true, null]}]);

    // REST first: also waits for the autostart service.
    assert_eq!(node.echo_when_up(&rest, &args).await?, args);
    let Rest { http, base } = &rest;

    // JSON-RPC 2.0, by position.
    let reply = json_rpc(
        http,
        base,
        json!({"jsonrpc": "2.0", "id": 7,
                      "method": "omq.user.service.TEST-SVC.echo", "params": args}),
    )
    .await?;
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["result"], args, "{reply}");
    // An exception in the method: error 104 with Qorus's err; an unknown method: 105,
    // both in an HTTP 200.
    let r = http
        .post(format!("{base}/JSON"))
        .json(&json!({"jsonrpc": "2.0", "id": 8,
                      "method": "omq.user.service.TEST-SVC.fail", "params": ["boom"]}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await?;
    assert_eq!(reply["error"]["code"], 104, "{reply}");
    assert!(
        reply.to_string().contains("ValueError") && reply.to_string().contains("boom"),
        "{reply}"
    );
    let reply = json_rpc(
        http,
        base,
        json!({"jsonrpc": "2.0", "id": 9, "method": "omq.system.no-such-thing"}),
    )
    .await?;
    assert_eq!(reply["error"]["code"], 105, "{reply}");
    // A system method, and a malformed request: a clear error, the gateway stays up.
    let reply = json_rpc(
        http,
        base,
        json!({"jsonrpc": "2.0", "id": 10, "method": "omq.system.list-services"}),
    )
    .await?;
    assert!(
        reply["result"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["name"] == "TEST-SVC")),
        "{reply}"
    );
    let reply: Value = http
        .post(format!("{base}/JSON"))
        .body("{not json")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");

    // YAML-RPC.
    let r = http
        .post(format!("{base}/YAML"))
        .header("content-type", "application/x-yaml")
        .body("method: omq.user.service.TEST-SVC.echo\nparams:\n  - 1\n  - two\n  - three: [3.5, true, null]\nid: 3\n")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let text = r.text().await?;
    assert!(text.contains("result"), "{text}");
    assert!(text.contains("two") && text.contains("3.5"), "{text}");

    // XML-RPC with Python's standard client, system.listMethods included (internal methods
    // are not exported).
    let script = format!(
        r#"
import json, xmlrpc.client
p = xmlrpc.client.ServerProxy("{base}/RPC2", allow_none=True)
echo = getattr(p, "omq.user.service.TEST-SVC.echo")(1, "two", {{"three": [3.5, True, None]}})
methods = p.system.listMethods()
try:
    getattr(p, "omq.user.service.TEST-SVC.fail")("boom")
    fault = None
except xmlrpc.client.Fault as f:
    fault = [f.faultCode, f.faultString]
print(json.dumps({{"echo": echo, "methods": methods, "fault": fault}}))
"#
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "{}", output_text(&out));
    let got: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(got["echo"], args, "{got}");
    let methods: Vec<&str> = got["methods"]
        .as_array()
        .context("methods")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        methods.contains(&"omq.user.service.TEST-SVC.echo"),
        "{methods:?}"
    );
    assert!(methods.contains(&"omq.system.get-status"), "{methods:?}");
    assert!(
        !methods.contains(&"omq.user.service.TEST-SVC.secret"),
        "{methods:?}"
    );
    assert_eq!(got["fault"][0], 104, "{got}");
    assert!(
        got["fault"][1]
            .as_str()
            .unwrap_or_default()
            .contains("ValueError"),
        "{got}"
    );

    // Malformed XML-RPC and YAML-RPC: well-formed protocol errors, and the gateway serves on.
    for (path, body) in [
        (
            "/RPC2",
            "<methodCall><methodName>x</methodName><params><param>",
        ),
        (
            "/RPC2",
            "<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY a \"aaaa\">]><methodCall/>",
        ),
        ("/YAML", "method: [unclosed\n"),
        ("/YAML", "- just\n- a list\n"),
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .body(body.to_string())
            .send()
            .await?;
        assert_eq!(r.status(), 200, "{path} {body}");
        let text = r.text().await?;
        let fault = if path == "/RPC2" { "<fault>" } else { "error" };
        assert!(text.contains(fault), "{path} {body}: {text}");
    }
    let reply = json_rpc(
        http,
        base,
        json!({"jsonrpc": "2.0", "id": 11,
                      "method": "omq.user.service.TEST-SVC.echo", "params": ["after"]}),
    )
    .await?;
    assert_eq!(reply["result"], json!(["after"]), "{reply}");

    node.stop()
}
