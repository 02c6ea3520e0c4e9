//! Service method calls straight to the service process, with the master's registry.
//!
//! DESIGN's route for interface calls: the gateway keeps the registry (every change the
//! master publishes on its events socket, and a fetch every few seconds in case one was
//! missed), finds the running process of the service, and sends it `call` over a
//! connection it keeps per process: one bus hop instead of two. Interface processes admit
//! the gateway's key, which is derived from the cluster key ([`KeyPair::gateway`]), and
//! only for `call` and `ping`.
//!
//! A service that is not running goes through the master, which loads it first; so does
//! any call whose body this module cannot read, so that the caller gets the master's
//! error for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use serde_json::json;
use sluice_core::bus::{Bus, BusError, Client};
use sluice_core::host_api::ServiceCall;
use sluice_core::keys::KeyPair;
use sluice_proto::v1::{Envelope, Registry, RegistryEntry};
use tokio::sync::watch;

use crate::MasterLink;

/// How often the registry is fetched from the master besides the changes it publishes.
const REFRESH: Duration = Duration::from_secs(3);
/// How long a fetch of the registry may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept to interface processes; past this the cache starts again.
const MAX_CONNECTIONS: usize = 256;

/// Why a direct call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("the process of service {service} ended during the call of {method}; an autostart service is restarted, and the next call loads any other")]
    Ended { service: String, method: String },
    #[error("service {service} did not answer {method} in time: {source}")]
    NoAnswer {
        service: String,
        method: String,
        source: BusError,
    },
    #[error("cannot reach the process of service {service}: {source}")]
    Connect { service: String, source: BusError },
}

impl DirectError {
    /// The error code the master gives the same failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ended { .. } | Self::Connect { .. } => "SERVICE-ERROR",
            Self::NoAnswer { .. } => "TIMEOUT",
        }
    }
}

/// The registry as last heard, and the connections to the processes in it.
pub struct Direct {
    bus: Bus,
    key: KeyPair,
    server_public: [u8; 32],
    registry: watch::Sender<Arc<Vec<RegistryEntry>>>,
    /// Registry changes heard on the events socket; a fetch that overlaps one is older
    /// than what it would replace, and is dropped.
    published: AtomicU64,
    connections: Mutex<HashMap<String, Client>>,
}

impl Direct {
    /// Connects with `key` (the gateway's own keypair) to servers that use the cluster
    /// keypair, whose public key is `server_public`.
    pub fn new(key: KeyPair, server_public: [u8; 32]) -> Result<Direct, BusError> {
        Ok(Direct {
            bus: Bus::client()?,
            key,
            server_public,
            registry: watch::Sender::new(Arc::new(Vec::new())),
            published: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps the registry current until `stopping`: the master's published changes on
    /// `events_endpoint`, and a fetch through `master` now and every [`REFRESH`].
    pub async fn follow(
        self: Arc<Self>,
        master: Arc<dyn MasterLink>,
        events_endpoint: String,
        mut stopping: watch::Receiver<bool>,
    ) {
        let mut changes = match self.bus.subscribe(
            &events_endpoint,
            &self.server_public,
            &self.key,
            &["registry"],
        ) {
            Ok(sub) => Some(sub),
            Err(err) => {
                tracing::warn!(
                    "cannot follow the master's registry changes on {events_endpoint} ({err}); \
                     service calls learn of processes from a fetch every {} s",
                    REFRESH.as_secs()
                );
                None
            }
        };
        // Fetches run beside the changes: a fetch from a master that does not answer
        // (restarting, frozen) must not hold up the changes heard meanwhile.
        let fetches = {
            let direct = self.clone();
            tokio::spawn(async move {
                loop {
                    direct.fetch(master.as_ref()).await;
                    tokio::time::sleep(REFRESH).await;
                }
            })
        };
        loop {
            tokio::select! {
                change = async { changes.as_mut()?.recv().await }, if changes.is_some() => {
                    match change {
                        Some((_, envelope)) => match Registry::decode(envelope.body.as_slice()) {
                            Ok(registry) => {
                                self.published.fetch_add(1, Ordering::SeqCst);
                                self.update(registry.entries);
                            }
                            Err(err) => tracing::warn!("the master published a malformed registry: {err}"),
                        },
                        None => changes = None,
                    }
                }
                changed = stopping.changed() => {
                    if changed.is_err() || *stopping.borrow() {
                        break;
                    }
                }
            }
        }
        fetches.abort();
    }

    async fn fetch(&self, master: &dyn MasterLink) {
        let before = self.published.load(Ordering::SeqCst);
        let request = Envelope {
            method: "omq.system.get-registry".into(),
            ..Default::default()
        };
        match master.call(request, FETCH_TIMEOUT).await {
            Ok(reply) if reply.error.is_none() => match Registry::decode(reply.body.as_slice()) {
                Ok(registry) if self.published.load(Ordering::SeqCst) == before => {
                    self.update(registry.entries)
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("the master's registry is malformed: {err}"),
            },
            Ok(reply) => tracing::debug!("the master refused the registry: {:?}", reply.error),
            // The master may be restarting: the last registry stays, and calls to processes
            // that are gone end with the registry's next change.
            Err(err) => tracing::debug!("cannot fetch the registry: {err}"),
        }
    }

    /// Puts `entries` in force and forgets connections to processes no longer in it.
    pub fn update(&self, entries: Vec<RegistryEntry>) {
        {
            let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            connections.retain(|endpoint, _| {
                entries
                    .iter()
                    .any(|e| e.endpoints.iter().any(|x| x == endpoint))
            });
        }
        self.registry.send_replace(Arc::new(entries));
    }

    /// The running process of service `name` (a given version, or the last one loaded),
    /// as the master chooses it.
    pub fn service(&self, name: &str, version: Option<&str>) -> Option<RegistryEntry> {
        let registry = self.registry.borrow().clone();
        sluice_core::registry::running_service(&registry, name, version).cloned()
    }

    /// `omq.system.call-service` with its JSON `body`, straight to the service's process:
    /// `None` when that cannot be done (the service is not running, the body is not a
    /// call), and the master must take it.
    pub async fn call_service(
        &self,
        body: &[u8],
        timeout: Duration,
        deadline_ms: i64,
    ) -> Option<Result<Envelope, DirectError>> {
        let call: ServiceCall = serde_json::from_slice(body).ok()?;
        let version = call.version.as_deref().filter(|v| !v.is_empty());
        let entry = self.service(&call.name, version)?;
        let client = match self.connect(&entry) {
            Some(Ok(client)) => client,
            Some(Err(source)) => {
                return Some(Err(DirectError::Connect {
                    service: call.name,
                    source,
                }))
            }
            None => return None,
        };
        let request = Envelope {
            method: "call".into(),
            deadline_ms,
            body: json!({"method": call.method, "args": call.args, "external": true})
                .to_string()
                .into_bytes(),
            ..Default::default()
        };
        let outcome = tokio::select! {
            answer = client.call(request, timeout) => answer,
            () = self.ended(&entry) => {
                return Some(Err(DirectError::Ended { service: call.name, method: call.method }))
            }
        };
        Some(outcome.map_err(|source| DirectError::NoAnswer {
            service: call.name,
            method: call.method,
            source,
        }))
    }

    /// A connection to the process of `entry`; `None` when it has no endpoint.
    fn connect(&self, entry: &RegistryEntry) -> Option<Result<Client, BusError>> {
        let endpoint = entry.endpoints.first()?;
        let mut cache = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = cache.get(endpoint) {
            return Some(Ok(client.clone()));
        }
        if cache.len() >= MAX_CONNECTIONS {
            cache.clear();
        }
        let client = self.bus.connect(endpoint, &self.server_public, &self.key);
        if let Ok(client) = &client {
            cache.insert(endpoint.clone(), client.clone());
        }
        Some(client)
    }

    /// Resolves once the process of `entry` is gone from the registry (it died, or was
    /// restarted); a stopping process still answers the calls it has.
    async fn ended(&self, entry: &RegistryEntry) {
        let mut watch = self.registry.subscribe();
        loop {
            if !sluice_core::registry::still_serving(&watch.borrow_and_update(), entry) {
                return;
            }
            if watch.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service S's process `pid`, running; nothing listens on its endpoint.
    fn service_s(pid: u32) -> RegistryEntry {
        let mut entry = RegistryEntry {
            network_id: "service-S-1.0".into(),
            pid,
            ..Default::default()
        };
        entry.process_type = "service".into();
        entry.interfaces.push("service:S:1.0".into());
        entry
            .endpoints
            .push(format!("tcp://127.0.0.1:{}", 20_000 + pid));
        entry.status = "running".into();
        entry
    }

    #[tokio::test]
    async fn a_service_that_is_not_running_or_a_body_that_is_no_call_goes_to_the_master() {
        let direct = Direct::new(KeyPair::generate(), [0; 32]).unwrap();
        direct.update(vec![service_s(1)]);
        let body = br#"{"name": "OTHER", "method": "m", "args": []}"#;
        assert!(direct
            .call_service(body, Duration::from_secs(1), 0)
            .await
            .is_none());
        assert!(direct
            .call_service(b"not json", Duration::from_secs(1), 0)
            .await
            .is_none());
    }

    #[tokio::test]
    async fn a_call_whose_process_leaves_the_registry_ends_at_once() {
        // Nothing listens on the endpoint: the call would wait out its timeout.
        let direct = Arc::new(Direct::new(KeyPair::generate(), [7; 32]).unwrap());
        direct.update(vec![service_s(1)]);
        let call = {
            let direct = direct.clone();
            tokio::spawn(async move {
                direct
                    .call_service(
                        br#"{"name": "S", "method": "m", "args": [1]}"#,
                        Duration::from_secs(60),
                        0,
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        direct.update(vec![service_s(9)]);
        let outcome = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("ends when the registry changes")
            .unwrap();
        match outcome {
            Some(Err(err @ DirectError::Ended { .. })) => {
                assert_eq!(err.code(), "SERVICE-ERROR");
                assert!(err
                    .to_string()
                    .contains("service S ended during the call of m"));
            }
            other => panic!("expected Ended, got {other:?}"),
        }
    }
}
