//! A running node with its HTTP gateway, a small REST client and test certificates: what
//! the gateway, RPC and gRPC tests share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{alive, child_pid_from_log, eventually, free_port, Backend, Instance};

/// The gateway's network id, which names its log.
pub const GATEWAY: &str = "http-gateway";
const STOP_GRACE: Duration = Duration::from_secs(30);
const SOON: Duration = Duration::from_secs(60);

/// A running master whose gateway listens on the given options.
pub struct GatewayNode {
    pub inst: Instance,
    pub master: usize,
}

impl GatewayNode {
    /// Creates the schema, loads `interfaces`, starts the master with `options` (the
    /// listeners among them) and returns once the gateway listens.
    pub fn start(key: &str, options: &[&str], interfaces: &[PathBuf]) -> Result<GatewayNode> {
        let mut inst = Instance::new(Backend::Sqlite, key, options)?;
        inst.create_schema()?;
        if !interfaces.is_empty() {
            inst.load(interfaces)?;
        }
        let master = inst.start_master(&[])?;
        inst.wait_ready(master)?;
        let node = GatewayNode { inst, master };
        node.wait_log(GATEWAY, "HTTP gateway listening on")?;
        Ok(node)
    }

    /// [`GatewayNode::start`] with a plain HTTP listener on a free port, besides `options`;
    /// the node and that port.
    pub fn listening(
        key: &str,
        options: &[&str],
        interfaces: &[PathBuf],
    ) -> Result<(GatewayNode, u16)> {
        let port = free_port();
        let listener = format!("qorus.http-server: 127.0.0.1:{port}");
        let mut all = vec![listener.as_str()];
        all.extend_from_slice(options);
        Ok((GatewayNode::start(key, &all, interfaces)?, port))
    }

    pub fn log(&self, process: &str) -> String {
        self.inst.log(process)
    }

    pub fn wait_log(&self, process: &str, text: &str) -> Result<()> {
        self.inst.wait_log(process, text, SOON)
    }

    /// The pid of the running gateway process, other than `not`.
    pub fn gateway_pid(&self, not: Option<i32>) -> Result<i32> {
        eventually(SOON, "the gateway's pid", || {
            child_pid_from_log(&self.log("master"), GATEWAY)
                .filter(|p| Some(*p) != not && alive(*p))
        })
    }

    /// PUTs `body` to `path` until the reply is a success, which also means that the
    /// gateway and whatever serves `path` are up; the reply.
    pub async fn put_until_ok(&self, rest: &Rest, path: &str, body: &Value) -> Result<Value> {
        let deadline = Instant::now() + SOON;
        loop {
            let reply = rest.http.put(rest.url(path)).json(body).send().await;
            if let Ok(r) = reply {
                if r.status().is_success() {
                    if let Ok(value) = r.json::<Value>().await {
                        return Ok(value);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {SOON:?} waiting for PUT {path} to succeed; {GATEWAY} log:\n{}",
                    self.log(GATEWAY)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Calls TEST-SVC's `echo` (`tests/fixtures/services`) with `args` through REST until
    /// it answers, which also means that the gateway and the service are up; the answer.
    pub async fn echo_when_up(&self, rest: &Rest, args: &Value) -> Result<Value> {
        let body = serde_json::json!({ "args": args });
        self.put_until_ok(
            rest,
            "/api/latest/services/TEST-SVC/echo?action=call",
            &body,
        )
        .await
    }

    /// Stops the master, which must exit with status 0.
    pub fn stop(mut self) -> Result<()> {
        let code = self.inst.stop(self.master, STOP_GRACE)?.code();
        ensure!(code == Some(0), "master exit: {code:?}");
        Ok(())
    }
}

/// A small REST client: JSON in, `(status, JSON)` out.
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
}

impl Rest {
    /// A client of the plain listener on `port` whose requests give up after `timeout`.
    pub fn local(port: u16, timeout: Duration) -> Result<Rest> {
        Ok(Rest {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.http.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        let value = serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: {status}, not JSON: {text:?}"))?;
        Ok((status, value))
    }

    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.send(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        self.send(Method::PUT, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// GETs until `check` accepts the reply.
    pub async fn poll(
        &self,
        path: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + SOON;
        loop {
            if let Ok((StatusCode::OK, value)) = self.get(path).await {
                if check(&value) {
                    return Ok(value);
                }
                if Instant::now() > deadline {
                    bail!("timed out waiting for {what}: last {value}");
                }
            } else if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, written as `NAME.crt`
/// (the chain) and `NAME.key`; the CA's PEM, for the client to trust.
pub fn certificate(dir: &Path, name: &str) -> Result<String> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Not rcgen's default name, which the certificate has: it would look self-signed.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(
        dir.join(format!("{name}.crt")),
        format!("{}{}", cert.pem(), ca.pem()),
    )?;
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    Ok(ca.pem())
}
