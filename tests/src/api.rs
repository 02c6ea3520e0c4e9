//! A cluster API client for tests that need many calls or concurrent callers (the `sluice`
//! CLI starts one process per call): it connects with the instance's admin key.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sluice_proto::v1::Envelope;

use crate::Instance;

/// One connection to a running master's cluster API, as user `admin`.
#[derive(Clone)]
pub struct ApiClient {
    client: sluice_core::bus::Client,
    _bus: sluice_core::bus::Bus,
}

/// An error reply: the code, the description and the details the error carries.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: String,
    pub description: String,
    pub info: Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl ApiClient {
    pub fn connect(inst: &Instance) -> Result<ApiClient> {
        let cert = inst.admin_key()?;
        let key = sluice_cli::keys::load_certificate(&cert)?;
        let server = sluice_core::keys::load_key_file(&inst.home().join("etc/cluster.key"))?;
        let options = std::fs::read_to_string(inst.options_file())?;
        let endpoint = options
            .lines()
            .find_map(|l| l.strip_prefix("qorus.cluster-api:"))
            .map(|e| e.trim().to_string())
            .context("no qorus.cluster-api in the options")?;
        let bus = sluice_core::bus::Bus::client()?;
        let client = bus.connect(&endpoint, server.public(), &key)?;
        Ok(ApiClient { client, _bus: bus })
    }

    /// Calls a JSON verb; `Ok(Err(..))` is the master's (or a service's) error reply.
    pub async fn call(
        &self,
        method: &str,
        body: Value,
        timeout: Duration,
    ) -> Result<std::result::Result<Value, ApiError>> {
        let request = Envelope {
            method: method.into(),
            deadline_ms: sluice_core::now_ms() + timeout.as_millis() as i64,
            body: body.to_string().into_bytes(),
            ..Default::default()
        };
        let reply = self
            .client
            .call(request, timeout + Duration::from_secs(2))
            .await
            .with_context(|| format!("{method}: no answer"))?;
        if let Some(e) = reply.error {
            return Ok(Err(ApiError {
                code: e.code,
                description: e.description,
                info: serde_json::from_slice(&e.info_json).unwrap_or(Value::Null),
            }));
        }
        if reply.body.is_empty() {
            return Ok(Ok(Value::Null));
        }
        Ok(Ok(serde_json::from_slice(&reply.body).with_context(
            || {
                format!(
                    "{method}: reply is not JSON: {:?}",
                    String::from_utf8_lossy(&reply.body)
                )
            },
        )?))
    }

    /// Calls a service method and expects success.
    pub async fn call_service(&self, service: &str, method: &str, args: Value) -> Result<Value> {
        match self.try_service(service, method, args).await? {
            Ok(v) => Ok(v),
            Err(e) => bail!("{service}.{method}: {e}"),
        }
    }

    pub async fn try_service(
        &self,
        service: &str,
        method: &str,
        args: Value,
    ) -> Result<std::result::Result<Value, ApiError>> {
        self.call(
            "omq.system.call-service",
            serde_json::json!({"name": service, "method": method, "args": args}),
            Duration::from_secs(30),
        )
        .await
    }
}
