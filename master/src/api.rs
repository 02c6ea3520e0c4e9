//! The master's bus endpoints: the control socket its children talk to, the cluster API
//! external clients talk to, and the PUB socket for events and the registry.
//!
//! Both ROUTER sockets share one dispatcher. A caller is known by the user id the ZAP
//! handler gave its key during the CURVE handshake: `child:<network-id>` for the master's
//! own children, the RBAC user name for a registered cluster API key.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sluice_core::bus::{Authenticator, BusError, Incoming, Publisher, Replier, Server};
use sluice_core::events::{EventCode, EventSink, Severity};
use sluice_core::keys;
use sluice_core::store::Store;
use sluice_proto::v1::{
    envelope::Kind, Envelope, EventList, EventQuery, Heartbeat, Interface, InterfaceList,
    InterfaceRef, RaiseEvent, Register, RegisterReply, Registry, SystemStatus, UserEvent,
};
use tokio::sync::{mpsc, oneshot};

use crate::shutdown::{ShutdownControl, ShutdownReason};
use crate::supervisor::{interface_network_id, ChildSpec, Command, Published, Supervisor};

/// The user-id prefix the ZAP handler gives the master's children.
pub const CHILD_PREFIX: &str = "child:";

/// Most events one `get-events` reply carries.
const MAX_EVENTS_PER_REPLY: usize = 1000;
/// Longest long-poll a client may ask for.
const MAX_EVENT_WAIT: Duration = Duration::from_secs(60);

/// Admits the master's children (by the keys the supervisor made for them) and registered,
/// unrevoked cluster API keys (looked up in the database at each handshake, so a key revoked
/// with `sluice keys revoke` is refused from the next connection on).
pub struct MasterAuth {
    pub supervisor: Supervisor,
    pub store: Store,
    pub runtime: tokio::runtime::Handle,
}

impl Authenticator for MasterAuth {
    fn authenticate(&self, client_public: &[u8; 32], _peer: &str) -> Option<String> {
        if let Some(network_id) = self.supervisor.child_of_key(client_public) {
            return Some(format!("{CHILD_PREFIX}{network_id}"));
        }
        let z85 = keys::z85_encode(client_public);
        let store = self.store.clone();
        let lookup = async move { store.cluster_key_user(&z85).await };
        // The ZAP handler runs on its own thread, outside the runtime, so blocking here
        // blocks only handshakes; inside a runtime thread we must say so first.
        let result = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(lookup)),
            Err(_) => self.runtime.block_on(lookup),
        };
        match result {
            Ok(user) => user,
            Err(err) => {
                tracing::error!("cannot check a cluster key against the database: {err}");
                None
            }
        }
    }
}

/// What a verb needs before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The master's children only.
    Child,
    /// Any authenticated caller.
    Read,
    /// Changes the system: needs the named RBAC permission when `qorus.rbac-security` is on.
    Permission(&'static str),
    /// Controls an interface: needs `WORKFLOW-CONTROL`, `SERVICE-CONTROL` or `JOB-CONTROL`
    /// by the interface's type (Qorus's permissions).
    Control,
}

/// Every verb the master serves, with who may call it. `docs/cluster-api.md` lists them.
const VERBS: &[(&str, Access)] = &[
    ("register", Access::Child),
    ("heartbeat", Access::Child),
    ("omq.system.raise-user-event", Access::Child),
    ("omq.system.raise-event", Access::Child),
    ("omq.system.retire", Access::Child),
    ("ping", Access::Read),
    ("omq.system.get-status", Access::Read),
    ("omq.system.get-events", Access::Read),
    ("omq.system.get-registry", Access::Read),
    ("omq.system.list-interfaces", Access::Read),
    ("omq.system.start-interface", Access::Control),
    ("omq.system.stop-interface", Access::Control),
    ("omq.system.reset-workflow", Access::Control),
    ("omq.system.shutdown", Access::Permission("SHUTDOWN")),
    // Orders (crate::orders), with Qorus's permissions; each is also granted by
    // WORKFLOW-ORDER-CONTROL and WORKFLOW-CONTROL once RBAC resolves those.
    (
        "omq.system.create-order",
        Access::Permission("SUBMIT-ORDER"),
    ),
    ("omq.system.get-order-info", Access::Read),
    ("omq.system.search-orders", Access::Read),
    (
        "omq.system.retry-workflow-instance",
        Access::Permission("RETRY-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.cancel-workflow-instance",
        Access::Permission("CANCEL-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.uncancel-workflow-instance",
        Access::Permission("CANCEL-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.block-workflow-instance",
        Access::Permission("BLOCK-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.unblock-workflow-instance",
        Access::Permission("BLOCK-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.set-workflow-instance-error",
        Access::Permission("SET-WORKFLOW-ORDER-ERROR"),
    ),
    (
        "omq.system.reschedule-order",
        Access::Permission("RESCHEDULE-WORKFLOW-ORDER"),
    ),
    (
        "omq.system.set-order-priority",
        Access::Permission("REPRIORITIZE-WORKFLOW-ORDER"),
    ),
    ("omq.system.skip-step", Access::Permission("SKIP-STEP")),
    (
        "omq.system.update-dynamic-data",
        Access::Permission("EDIT-WORKFLOW-DATA"),
    ),
    (
        "omq.system.set-order-keys",
        Access::Permission("EDIT-WORKFLOW-DATA"),
    ),
    (
        "omq.system.add-order-note",
        Access::Permission("SET-ORDER-INFO"),
    ),
    // Services (crate::services).
    ("omq.system.call-service", Access::Read),
    ("omq.system.list-services", Access::Read),
    ("omq.system.get-service", Access::Read),
    (
        "omq.system.load-service",
        Access::Permission("SERVICE-CONTROL"),
    ),
    (
        "omq.system.unload-service",
        Access::Permission("SERVICE-CONTROL"),
    ),
    (
        "omq.system.reset-service",
        Access::Permission("SERVICE-CONTROL"),
    ),
    // Jobs (crate::jobs).
    ("omq.system.list-jobs", Access::Read),
    ("omq.system.get-job", Access::Read),
    ("omq.system.get-job-instances", Access::Read),
    ("omq.system.run-job", Access::Permission("JOB-CONTROL")),
    (
        "omq.system.set-job-active",
        Access::Permission("JOB-CONTROL"),
    ),
    ("omq.system.schedule-job", Access::Permission("JOB-CONTROL")),
    (
        "omq.system.set-job-expiry",
        Access::Permission("JOB-CONTROL"),
    ),
    ("omq.system.reset-job", Access::Permission("JOB-CONTROL")),
    // Workflows (crate::workflows), with Qorus's permissions.
    ("omq.system.list-workflows", Access::Read),
    ("omq.system.get-workflow", Access::Read),
    (
        "omq.system.set-workflow-enabled",
        Access::Permission("WORKFLOW-CONTROL"),
    ),
    (
        "omq.system.set-workflow-autostart",
        Access::Permission("WORKFLOW-CONTROL"),
    ),
    (
        "omq.system.exec-synchronous",
        Access::Permission("SUBMIT-ORDER"),
    ),
    (
        "omq.system.exec-synchronous-workflow",
        Access::Permission("SUBMIT-ORDER"),
    ),
    // Options (crate::options_api).
    ("omq.system.get-options", Access::Read),
    (
        "omq.system.set-option",
        Access::Permission("OPTION-CONTROL"),
    ),
    // Interface groups (crate::groups).
    ("omq.system.list-groups", Access::Read),
    (
        "omq.system.set-group-enabled",
        Access::Permission("GROUP-CONTROL"),
    ),
];

/// Everything the dispatcher needs.
#[derive(Clone)]
pub struct Api {
    pub supervisor: Supervisor,
    pub store: Store,
    pub events: Arc<EventSink>,
    pub shutdown: ShutdownControl,
    pub instance_key: String,
    pub session_id: i64,
    pub started_ms: i64,
    pub rbac_security: bool,
    pub events_endpoint: String,
    pub master_grace: Duration,
    /// The options in force: the file and command line, and the operator's changes since
    /// (`omq.system.set-option`).
    pub options: Arc<sluice_core::options::LiveOptions>,
    /// How the master calls its children's own sockets (which admit the cluster keypair).
    pub children: Option<ChildCalls>,
}

/// The bus and the cluster keypair, for calls to a child's direct endpoint.
#[derive(Clone)]
pub struct ChildCalls {
    pub bus: sluice_core::bus::Bus,
    pub cluster_key: keys::KeyPair,
    /// One connection per child endpoint, made on first use and kept: a service called
    /// thousands of times a second must not pay a CURVE handshake per call.
    pub connections:
        Arc<std::sync::Mutex<std::collections::HashMap<String, sluice_core::bus::Client>>>,
}

/// Most cached child connections; past it the cache is cleared (children that restarted
/// have new endpoints, so old entries are dead weight).
const MAX_CHILD_CONNECTIONS: usize = 256;

impl ChildCalls {
    pub fn new(bus: sluice_core::bus::Bus, cluster_key: keys::KeyPair) -> Self {
        ChildCalls {
            bus,
            cluster_key,
            connections: Arc::default(),
        }
    }

    /// A connection to a child's own ROUTER endpoint.
    pub fn connect(&self, endpoint: &str) -> Result<sluice_core::bus::Client, BusError> {
        let mut cache = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = cache.get(endpoint) {
            return Ok(client.clone());
        }
        if cache.len() >= MAX_CHILD_CONNECTIONS {
            cache.clear();
        }
        let client = self
            .bus
            .connect(endpoint, self.cluster_key.public(), &self.cluster_key)?;
        cache.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// Who made the change `request` asked for, from where and why, for its audit record: a
/// cluster API client is its key's user; a call from one of the master's processes has no
/// RBAC user yet (Qorus records `Qorus` then), and one from the HTTP gateway says where its
/// request came from and what it was (`Principal.source`, `.reason`). Only the master's
/// own processes may say so: a client is its key's user, whatever its envelope says.
pub(crate) fn audit_caller<'a>(
    user: &'a str,
    request: &'a Envelope,
) -> sluice_core::audit::Caller<'a> {
    use sluice_core::audit::{Caller, SYSTEM_USER};
    let origin = request.principal.as_ref().filter(|p| !p.source.is_empty());
    match (user.strip_prefix(CHILD_PREFIX), origin) {
        (Some(_), Some(p)) => Caller {
            who: Some(p.user.as_str())
                .filter(|u| !u.is_empty())
                .unwrap_or(SYSTEM_USER),
            source: &p.source,
            reason: Some(p.reason.as_str())
                .filter(|r| !r.is_empty())
                .unwrap_or(&request.method),
        },
        (Some(network_id), None) => Caller {
            who: SYSTEM_USER,
            source: network_id,
            reason: &request.method,
        },
        (None, _) => Caller {
            who: user,
            source: "cluster API",
            reason: &request.method,
        },
    }
}

/// Whether `method` changes the system, so that `qorus.audit: api` records it: the verbs
/// that need a permission or control of an interface. `set-option` records itself, with
/// the value it set.
fn changes(method: &str) -> bool {
    method != "omq.system.set-option"
        && VERBS.iter().any(|(name, access)| {
            *name == method && matches!(access, Access::Permission(_) | Access::Control)
        })
}

/// What a changing verb acted on, for the audit record's `info1`: `TYPE:NAME[:VERSION]` of
/// an interface, or the identifying fields of a JSON body (names, versions, ids, the
/// group, the step) as compact JSON. Never order data or arguments, which are user data.
fn target_of(method: &str, body: &[u8]) -> Option<String> {
    const IDENTIFYING: &[&str] = &[
        "type",
        "name",
        "version",
        "workflow_instanceid",
        "ids",
        "workflowid",
        "serviceid",
        "jobid",
        "group",
        "stepid",
        "ind",
        "active",
        "enabled",
        "autostart",
        "priority",
    ];
    if matches!(
        method,
        "omq.system.start-interface" | "omq.system.stop-interface" | "omq.system.reset-workflow"
    ) {
        let wanted = InterfaceRef::decode(body).ok()?;
        let mut text = format!("{}:{}", wanted.r#type, wanted.name);
        if !wanted.version.is_empty() {
            text = format!("{text}:{}", wanted.version);
        }
        return Some(text);
    }
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let kept: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .filter(|(key, _)| IDENTIFYING.contains(&key.as_str()))
        .collect();
    (!kept.is_empty()).then(|| serde_json::Value::Object(kept).to_string())
}

/// How long a workflow process may take to reload its code.
const RESET_TIMEOUT: Duration = Duration::from_secs(60);

impl Api {
    /// Serves one ROUTER socket until it closes.
    pub async fn serve(self, mut server: Server) {
        let replier = server.replier();
        while let Some(incoming) = server.recv().await {
            let api = self.clone();
            let replier = replier.clone();
            // Each request in its own task: a long-polling get-events must not hold up a
            // heartbeat behind it.
            tokio::spawn(async move {
                let Incoming { peer, envelope } = incoming;
                if envelope.kind != Kind::Request as i32 {
                    return;
                }
                if envelope.deadline_ms > 0 && envelope.deadline_ms < sluice_core::now_ms() {
                    tracing::debug!(method = %envelope.method, "request past its deadline dropped");
                    return;
                }
                let reply = if envelope.method == crate::services::CALL {
                    crate::services::call(&api, &peer.user_id, &envelope).await
                } else {
                    reply_to(
                        &envelope,
                        api.dispatch(&peer.user_id, peer.clone(), &envelope).await,
                    )
                };
                send(&replier, &peer, reply);
            });
        }
    }

    /// Serves one verb; a change it made is audited as `API-CALL` when `qorus.audit`
    /// includes `api` (Qorus: "every api call that makes changes").
    async fn dispatch(
        &self,
        user: &str,
        peer: sluice_core::bus::Peer,
        request: &Envelope,
    ) -> Result<Vec<u8>, (&'static str, String)> {
        let served = self.serve_verb(user, peer, request).await;
        use sluice_core::audit::AuditEventCode;
        let options = self.options.current();
        // Checked first: the target is read from the body, which may be a large order.
        if served.is_ok()
            && options.audits(AuditEventCode::ApiCall.option())
            && changes(&request.method)
        {
            sluice_core::audit::record(
                &options,
                &self.store,
                AuditEventCode::ApiCall,
                audit_caller(user, request),
                target_of(&request.method, &request.body),
                Some(request.method.clone()),
            )
            .await;
        }
        served
    }

    async fn serve_verb(
        &self,
        user: &str,
        peer: sluice_core::bus::Peer,
        request: &Envelope,
    ) -> Result<Vec<u8>, (&'static str, String)> {
        let Some((_, access)) = VERBS.iter().find(|(name, _)| *name == request.method) else {
            return Err((
                "UNKNOWN-METHOD",
                format!("the master has no method {:?}", request.method),
            ));
        };
        let child = user.strip_prefix(CHILD_PREFIX);
        match (access, child) {
            (Access::Child, None) => {
                return Err((
                    "AUTHORIZATION-ERROR",
                    format!("{} is for the master's own processes", request.method),
                ))
            }
            (Access::Control, None) if self.rbac_security => {
                let kind = InterfaceRef::decode(request.body.as_slice())
                    .map(|r| r.r#type.to_ascii_uppercase())
                    .unwrap_or_else(|_| "INTERFACE".into());
                return Err((
                    "AUTHORIZATION-ERROR",
                    format!(
                        "user {user} lacks the {kind}-CONTROL permission needed for {}",
                        request.method
                    ),
                ));
            }
            (Access::Permission(permission), None) if self.rbac_security => {
                // Roles and permissions arrive with RBAC; until then, with RBAC on, nobody
                // is granted a permission, so nothing changes without it.
                return Err((
                    "AUTHORIZATION-ERROR",
                    format!(
                        "user {user} lacks the {permission} permission needed for {}",
                        request.method
                    ),
                ));
            }
            _ => {}
        }
        let body = request.body.as_slice();
        match request.method.as_str() {
            "register" => {
                let register = Register::decode(body).map_err(bad_body)?;
                let (tx, rx) = oneshot::channel();
                self.supervisor.send(Command::Registered {
                    register,
                    peer,
                    reply: tx,
                });
                match rx.await {
                    Ok(Ok(())) => Ok(self.register_reply()),
                    Ok(Err(reason)) => Err(("REGISTRATION-ERROR", reason)),
                    Err(_) => Err(("SHUTDOWN-IN-PROGRESS", "the master is stopping".into())),
                }
            }
            "heartbeat" => {
                let beat = Heartbeat::decode(body).map_err(bad_body)?;
                let (tx, rx) = oneshot::channel();
                self.supervisor.send(Command::Heartbeat {
                    network_id: beat.network_id,
                    peer,
                    reply: tx,
                });
                match rx.await {
                    // The session goes with every beat: a child a new master adopted
                    // learns the session its work now belongs to.
                    Ok(true) => Ok(self.register_reply()),
                    _ => Err((
                        sluice_core::child::UNKNOWN_PROCESS,
                        "this master does not know the process; register".into(),
                    )),
                }
            }
            "omq.system.raise-user-event" => {
                let event = UserEvent::decode(body).map_err(bad_body)?;
                let info: serde_json::Value =
                    serde_json::from_slice(&event.info_json).unwrap_or(serde_json::Value::Null);
                let severity = match event.severity.to_ascii_uppercase().as_str() {
                    "WARNING" => Severity::Warning,
                    "ERROR" => Severity::Error,
                    "FATAL" => Severity::Fatal,
                    _ => Severity::Info,
                };
                let caller = child.unwrap_or(user);
                let id = self
                    .events
                    .raise(EventCode::UserEvent, severity, caller, info);
                Ok(id.to_be_bytes().to_vec())
            }
            "ping" => Ok(Vec::new()),
            "omq.system.get-status" => Ok(self.status().await.encode_to_vec()),
            "omq.system.get-registry" => Ok(Registry {
                version: 0,
                entries: self.supervisor.registry().await,
            }
            .encode_to_vec()),
            "omq.system.get-events" => {
                let query = EventQuery::decode(body).map_err(bad_body)?;
                Ok(self.events(query).await.encode_to_vec())
            }
            "omq.system.list-interfaces" => Ok(self.interfaces().await?.encode_to_vec()),
            "omq.system.start-interface" | "omq.system.stop-interface" => {
                let wanted = InterfaceRef::decode(body).map_err(bad_body)?;
                let row = self.find_interface(&wanted).await?;
                let Some(spec) = ChildSpec::for_interface(&row) else {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!("unknown interface type {:?}", row.kind),
                    ));
                };
                if request.method == "omq.system.start-interface" {
                    if !row.enabled {
                        return Err((
                            "STATUS-ERROR",
                            format!("{} {}:{} is disabled", row.kind, row.name, row.version),
                        ));
                    }
                    if row.blocked {
                        return Err((
                            "STATUS-ERROR",
                            format!(
                                "{} {}:{} is in a disabled interface group or past its expiry date",
                                row.kind, row.name, row.version
                            ),
                        ));
                    }
                    tracing::info!(user, network_id = %spec.network_id, "start requested");
                    self.supervisor.send(Command::Start(spec.clone()));
                } else {
                    tracing::info!(user, network_id = %spec.network_id, "stop requested");
                    if !self.supervisor.stop_one(&spec.network_id).await {
                        return Err((
                            "STATUS-ERROR",
                            format!("{} {}:{} is not running", row.kind, row.name, row.version),
                        ));
                    }
                }
                Ok(spec.network_id.into_bytes())
            }
            "omq.system.reset-workflow" => {
                let wanted = InterfaceRef::decode(body).map_err(bad_body)?;
                let row = self.find_interface(&wanted).await?;
                if row.kind != "workflow" {
                    return Err((
                        "INVALID-ARGUMENT",
                        format!(
                            "{} {}:{} is not a workflow",
                            row.kind, row.name, row.version
                        ),
                    ));
                }
                tracing::info!(
                    user,
                    "reset of workflow {}:{} requested",
                    row.name,
                    row.version
                );
                self.reset_workflow(&row).await.map(String::into_bytes)
            }
            "omq.system.shutdown" => {
                // The reply goes out first: the caller learns the request was taken.
                let control = self.shutdown.clone();
                let user = user.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    control.request(ShutdownReason::Api { user });
                });
                Ok(Vec::new())
            }
            "omq.system.raise-event" => {
                let event = RaiseEvent::decode(body).map_err(bad_body)?;
                let caller = child.unwrap_or(user);
                Ok(self.raise_child_event(caller, event).await)
            }
            "omq.system.retire" => {
                let Some(network_id) = child else {
                    return Err(("AUTHORIZATION-ERROR", "only a child may retire".into()));
                };
                tracing::info!(
                    network_id,
                    "the process has nothing more to do; stopping it"
                );
                let supervisor = self.supervisor.clone();
                let network_id = network_id.to_string();
                // Answered first: the stop waits for the process to exit.
                tokio::spawn(async move { supervisor.stop_one(&network_id).await });
                Ok(Vec::new())
            }
            method if crate::orders::VERBS.contains(&method) => {
                crate::orders::handle(self, user, request).await
            }
            method if crate::services::VERBS.contains(&method) => {
                crate::services::handle(self, user, method, body).await
            }
            method if crate::jobs::VERBS.contains(&method) => {
                crate::jobs::handle(self, user, method, body).await
            }
            method if crate::groups::VERBS.contains(&method) => {
                crate::groups::handle(self, user, request).await
            }
            method if crate::workflows::VERBS.contains(&method) => {
                crate::workflows::handle(self, user, request).await
            }
            method if crate::options_api::VERBS.contains(&method) => {
                crate::options_api::handle(self, user, request).await
            }
            _ => Err(("UNKNOWN-METHOD", format!("no method {:?}", request.method))),
        }
    }

    /// What a child learns from registering, and again from every heartbeat reply (so a
    /// child a new master adopted learns the session its work now belongs to).
    fn register_reply(&self) -> Vec<u8> {
        RegisterReply {
            api_level: sluice_core::child::API_LEVEL,
            instance_key: self.instance_key.clone(),
            session_id: self.session_id,
            events_endpoint: self.events_endpoint.clone(),
            master_grace_secs: self.master_grace.as_secs() as u32,
            heartbeat_secs: crate::supervisor::HEARTBEAT.as_secs() as u32,
            runtime_options: self.options.changes(),
        }
        .encode_to_vec()
    }

    /// Asks the process running workflow `row` to reload its definition and code.
    async fn reset_workflow(
        &self,
        row: &sluice_core::store::InterfaceRow,
    ) -> Result<String, (&'static str, String)> {
        let network_id = interface_network_id(&row.kind, &row.name, &row.version);
        let registry = self.supervisor.registry().await;
        let Some(entry) = registry
            .iter()
            .find(|e| e.network_id == network_id && e.status == "running")
        else {
            return Ok(format!(
                "workflow {}:{} is not running; it runs the newest loaded code when started",
                row.name, row.version
            ));
        };
        let (Some(calls), Some(endpoint)) = (&self.children, entry.endpoints.first()) else {
            return Err((
                "STATUS-ERROR",
                format!("{network_id} cannot be reached for a reset"),
            ));
        };
        let client = calls
            .connect(endpoint)
            .map_err(|e| ("RESET-ERROR", format!("cannot reach {network_id}: {e}")))?;
        let request = Envelope {
            method: "reset".into(),
            ..Default::default()
        };
        let reply = client.call(request, RESET_TIMEOUT).await.map_err(|e| {
            (
                "RESET-ERROR",
                format!("{network_id} did not answer the reset: {e}"),
            )
        })?;
        if let Some(err) = reply.error {
            return Err(("RESET-ERROR", format!("{}: {}", err.code, err.description)));
        }
        Ok(format!(
            "workflow {}:{} reset: {} step(s) loaded",
            row.name,
            row.version,
            String::from_utf8_lossy(&reply.body)
        ))
    }

    /// Every loaded interface with the state of the process that runs it.
    async fn interfaces(&self) -> Result<InterfaceList, (&'static str, String)> {
        let rows = self.store.list_interfaces().await.map_err(db_error)?;
        let registry = self.supervisor.registry().await;
        let interfaces = rows
            .iter()
            .map(|row| {
                let network_id = interface_network_id(&row.kind, &row.name, &row.version);
                let process = registry.iter().find(|p| p.network_id == network_id);
                Interface {
                    r#type: row.kind.clone(),
                    id: row.id,
                    name: row.name.clone(),
                    version: row.version.clone(),
                    autostart: row.autostart,
                    enabled: row.enabled,
                    status: process.map_or_else(|| "stopped".to_string(), |p| p.status.clone()),
                    network_id: process.map(|p| p.network_id.clone()).unwrap_or_default(),
                    pid: process.map_or(0, |p| p.pid),
                }
            })
            .collect();
        Ok(InterfaceList { interfaces })
    }

    /// A system event a child raised about its own interface, with the audit record
    /// `qorus.audit` asks for; returns the event id (big-endian u64).
    async fn raise_child_event(&self, caller: &str, event: RaiseEvent) -> Vec<u8> {
        let info: serde_json::Value =
            serde_json::from_slice(&event.info_json).unwrap_or(serde_json::Value::Null);
        let severity = match event.severity {
            1 => Severity::Warning,
            2 => Severity::Error,
            3 => Severity::Fatal,
            _ => Severity::Info,
        };
        let Some(code) = EventCode::from_code(event.event_code) else {
            tracing::warn!(caller, "unknown event code {} raised", event.event_code);
            return 0u64.to_be_bytes().to_vec();
        };
        use sluice_core::audit::AuditEventCode as A;
        let audit = match code {
            EventCode::WorkflowStart => Some(A::WorkflowStart),
            EventCode::WorkflowStop => Some(A::WorkflowStop),
            EventCode::ServiceStart => Some(A::ServiceStart),
            EventCode::ServiceStop => Some(A::ServiceStop),
            EventCode::JobStart => Some(A::JobStart),
            EventCode::JobStop => Some(A::JobStop),
            EventCode::JobInstanceStart => Some(A::JobInstanceStart),
            EventCode::JobInstanceStop => Some(A::JobInstanceStop),
            _ => None,
        };
        if let Some(audit) = audit {
            sluice_core::audit::record(
                &self.options.current(),
                &self.store,
                audit,
                sluice_core::audit::Caller::SYSTEM,
                Some(info.to_string()),
                Some(caller.to_string()),
            )
            .await;
        }
        let id = self.events.raise(code, severity, caller, info);
        id.to_be_bytes().to_vec()
    }

    /// The interface a request names; without a version, the newest loaded one.
    pub(crate) async fn find_interface(
        &self,
        wanted: &InterfaceRef,
    ) -> Result<sluice_core::store::InterfaceRow, (&'static str, String)> {
        let rows = self.store.list_interfaces().await.map_err(db_error)?;
        rows.into_iter()
            .filter(|r| r.kind == wanted.r#type && r.name == wanted.name)
            .filter(|r| wanted.version.is_empty() || r.version == wanted.version)
            .max_by_key(|r| r.id)
            .ok_or_else(|| {
                (
                    "NOT-FOUND",
                    format!(
                        "no {} {}{} is loaded",
                        wanted.r#type,
                        wanted.name,
                        if wanted.version.is_empty() {
                            String::new()
                        } else {
                            format!(":{}", wanted.version)
                        }
                    ),
                )
            })
    }

    async fn status(&self) -> SystemStatus {
        let now = sluice_core::now_ms();
        SystemStatus {
            instance_key: self.instance_key.clone(),
            session_id: self.session_id,
            master_pid: std::process::id(),
            host: sluice_core::hostname(),
            version: sluice_core::VERSION.to_string(),
            started_ms: self.started_ms,
            uptime_ms: u64::try_from(now - self.started_ms).unwrap_or(0),
            status: if self.shutdown.requested().is_some() {
                "shutting-down".into()
            } else {
                "running".into()
            },
            processes: self.supervisor.registry().await,
        }
    }

    async fn events(&self, query: EventQuery) -> EventList {
        let limit = match query.limit {
            0 => MAX_EVENTS_PER_REPLY,
            n => (n as usize).min(MAX_EVENTS_PER_REPLY),
        };
        let matches = |class: u32, code: u32| {
            (query.class_code == 0 || query.class_code == class)
                && (query.event_code == 0 || query.event_code == code)
        };
        // Subscribe before reading, so an event raised in between is not missed.
        let mut live = self.events.subscribe();
        let mut found: Vec<_> = self
            .events
            .since(query.since_id, usize::MAX)
            .into_iter()
            .filter(|e| matches(e.class, e.event))
            .take(limit)
            .collect();
        if found.is_empty() && query.wait_ms > 0 {
            let wait = Duration::from_millis(u64::from(query.wait_ms)).min(MAX_EVENT_WAIT);
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, live.recv()).await {
                if event.id > query.since_id && matches(event.class, event.event) {
                    found.push(event);
                    break;
                }
            }
        }
        EventList {
            events: found.iter().map(|e| e.to_proto()).collect(),
            last_id: self.events.last_id(),
        }
    }
}

fn db_error(err: sluice_core::store::StoreError) -> (&'static str, String) {
    tracing::error!("system database: {err}");
    (
        "DATABASE-ERROR",
        format!("the system database failed: {err}"),
    )
}

fn bad_body(err: prost::DecodeError) -> (&'static str, String) {
    ("INVALID-ARGUMENT", format!("malformed request body: {err}"))
}

fn reply_to(request: &Envelope, result: Result<Vec<u8>, (&'static str, String)>) -> Envelope {
    let mut reply = Envelope {
        id: request.id,
        method: request.method.clone(),
        kind: Kind::Reply as i32,
        ..Default::default()
    };
    match result {
        Ok(body) => reply.body = body,
        Err((code, description)) => {
            reply.error = Some(sluice_proto::v1::Error {
                code: code.to_string(),
                description,
                ..Default::default()
            })
        }
    }
    reply
}

fn send(replier: &Replier, peer: &sluice_core::bus::Peer, reply: Envelope) {
    if let Err(err) = replier.reply(peer, reply) {
        tracing::warn!("cannot send a reply: {err}");
    }
}

/// Publishes events, registry changes and process aborts on the master's PUB socket, until
/// both sources end.
pub async fn publish(
    publisher: Publisher,
    events: Arc<EventSink>,
    mut from_supervisor: mpsc::UnboundedReceiver<Published>,
) {
    let mut live = events.subscribe();
    let mut registry_version = 0u64;
    loop {
        let (topic, envelope) = tokio::select! {
            event = live.recv() => match event {
                Ok(event) => ("event", Envelope {
                    method: "event".into(),
                    kind: Kind::Event as i32,
                    body: event.to_proto().encode_to_vec(),
                    ..Default::default()
                }),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("event publisher fell {n} events behind; subscribers can fetch them with get-events");
                    continue;
                }
                Err(_) => return,
            },
            published = from_supervisor.recv() => match published {
                Some(Published::Registry(entries)) => {
                    registry_version += 1;
                    ("registry", Envelope {
                        method: "registry".into(),
                        kind: Kind::Event as i32,
                        body: Registry { version: registry_version, entries }.encode_to_vec(),
                        ..Default::default()
                    })
                }
                Some(Published::Aborted(aborted)) => ("process", Envelope {
                    method: "process-aborted".into(),
                    kind: Kind::Event as i32,
                    body: aborted.encode_to_vec(),
                    ..Default::default()
                }),
                None => return,
            },
        };
        if let Err(err) = publisher.publish(topic, &envelope) {
            match err {
                BusError::Closed => return,
                err => tracing::warn!("cannot publish {topic}: {err}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::bus::Peer;

    async fn api(dir: &tempfile::TempDir) -> Api {
        let (supervisor, _mailbox) = Supervisor::new();
        let db = sluice_core::options::SystemDb::Sqlite {
            path: dir.path().join("t.db"),
        };
        let store = Store::open(&db, true).await.expect("store");
        store.schema_create().await.expect("schema");
        Api {
            supervisor,
            store,
            events: Arc::new(EventSink::new(100)),
            shutdown: ShutdownControl::new(),
            instance_key: "k".into(),
            session_id: 1,
            started_ms: 0,
            rbac_security: false,
            events_endpoint: "ipc://x".into(),
            master_grace: Duration::from_secs(60),
            options: Arc::new(sluice_core::options::LiveOptions::new(
                sluice_core::options::Options::parse(
                    "",
                    std::path::Path::new("options"),
                    &sluice_core::home::Home::new(dir.path()),
                )
                .expect("default options"),
            )),
            children: None,
        }
    }

    fn request(method: &str, body: Vec<u8>) -> Envelope {
        Envelope {
            id: 7,
            method: method.into(),
            kind: Kind::Request as i32,
            body,
            ..Default::default()
        }
    }

    fn peer(user: &str) -> Peer {
        Peer {
            routing_id: vec![1],
            user_id: user.into(),
        }
    }

    /// docs/cluster-api.md is what client writers read: every verb the master serves is in it.
    #[test]
    fn every_verb_is_documented() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/cluster-api.md"
        ))
        .expect("docs/cluster-api.md");
        let missing: Vec<&str> = VERBS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !doc.contains(&format!("`{name}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/cluster-api.md: {missing:?}"
        );
    }

    #[tokio::test]
    async fn children_raise_interface_events_with_their_audit_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut api = api(&dir).await;
        api.options = Arc::new(sluice_core::options::LiveOptions::new(
            sluice_core::options::Options::parse(
                "qorus.audit: services,job-data\n",
                std::path::Path::new("options"),
                &sluice_core::home::Home::new(dir.path()),
            )
            .expect("options"),
        ));
        for (code, info) in [
            (EventCode::ServiceStart, r#"{"name": "S"}"#),
            (EventCode::JobStart, r#"{"name": "J"}"#),
            (EventCode::JobInstanceStop, r#"{"job_instanceid": 7}"#),
        ] {
            let event = RaiseEvent {
                event_code: code.code(),
                severity: Severity::Info.code(),
                info_json: info.as_bytes().to_vec(),
            };
            let req = request("omq.system.raise-event", event.encode_to_vec());
            api.dispatch("child:svc-1", peer("child:svc-1"), &req)
                .await
                .expect("a child may raise its interface's events");
        }
        let raised: Vec<_> = api
            .events
            .since(0, 10)
            .into_iter()
            .map(|e| (e.eventstr, e.event, e.caller))
            .collect();
        assert_eq!(
            raised,
            vec![
                ("SERVICE_START", 3001, "svc-1".to_string()),
                ("JOB_START", 4001, "svc-1".to_string()),
                ("JOB_INSTANCE_STOP", 4005, "svc-1".to_string()),
            ]
        );
        // qorus.audit: services and job-data, not jobs: SERVICE-START (9) and
        // JOB-INSTANCE-STOP (14) are written, JOB-START (11) is not.
        let codes = api
            .store
            .query_i64("SELECT COUNT(*) FROM audit_events WHERE audit_event_code IN (9, 14)")
            .await
            .expect("audit");
        assert_eq!(codes, Some(2));
        let job_start = api
            .store
            .query_i64("SELECT COUNT(*) FROM audit_events WHERE audit_event_code = 11")
            .await
            .expect("audit");
        assert_eq!(job_start, Some(0));
        let refused = api
            .dispatch(
                "alice",
                peer("alice"),
                &request("omq.system.raise-event", Vec::new()),
            )
            .await;
        assert_eq!(refused.map_err(|e| e.0), Err("AUTHORIZATION-ERROR"));
    }

    #[tokio::test]
    async fn children_raise_user_events_and_clients_may_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api = api(&dir).await;
        let event = UserEvent {
            severity: "warning".into(),
            info_json: br#"{"order": 42}"#.to_vec(),
            caller: String::new(),
        };
        let req = request("omq.system.raise-user-event", event.encode_to_vec());
        let body = api
            .dispatch("child:wf-1", peer("child:wf-1"), &req)
            .await
            .expect("a child may raise a user event");
        assert_eq!(body, 1u64.to_be_bytes());
        let raised = api.events.since(0, 10);
        assert_eq!(raised[0].eventstr, "USER_EVENT");
        assert_eq!(raised[0].event, 9001);
        assert_eq!(raised[0].caller, "wf-1");
        assert_eq!(raised[0].severitystr, "WARNING");
        assert_eq!(raised[0].info["order"], 42);

        let refused = api.dispatch("alice", peer("alice"), &req).await;
        assert_eq!(refused.map_err(|e| e.0), Err("AUTHORIZATION-ERROR"));
        let unknown = api
            .dispatch("alice", peer("alice"), &request("nope", vec![]))
            .await;
        assert_eq!(unknown.map_err(|e| e.0), Err("UNKNOWN-METHOD"));
        let garbage = api
            .dispatch(
                "alice",
                peer("alice"),
                &request("omq.system.get-events", vec![0xff, 0xff]),
            )
            .await;
        assert_eq!(garbage.map_err(|e| e.0), Err("INVALID-ARGUMENT"));
    }

    /// Calls a JSON verb as user `ops` and decodes the JSON reply.
    async fn call(
        api: &Api,
        method: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, (&'static str, String)> {
        let req = request(method, body.to_string().into_bytes());
        api.dispatch("ops", peer("ops"), &req)
            .await
            .map(|reply| serde_json::from_slice(&reply).expect("a JSON reply"))
    }

    /// An order verb on order `id` (body `{"workflow_instanceid": id}`), as `ops`.
    async fn on_order(
        api: &Api,
        method: &str,
        id: i64,
    ) -> Result<serde_json::Value, (&'static str, String)> {
        call(
            api,
            method,
            serde_json::json!({ "workflow_instanceid": id }),
        )
        .await
    }

    /// An API over a store with workflow WF 1.0 (id 1, `keylist` as JSON) and the options
    /// `qorus.audit: AUDIT`.
    async fn with_workflow_wf(dir: &tempfile::TempDir, keylist: &str, audit: &str) -> Api {
        let mut api = api(dir).await;
        api.store
            .execute_sql(&format!(
                "INSERT INTO workflows (workflowid, name, version, keylist, created, modified) \
                 VALUES (1, 'WF', '1.0', '{keylist}', 0, 0)"
            ))
            .await
            .expect("workflow");
        let options = sluice_core::options::Options::parse(
            &format!("qorus.audit: {audit}\n"),
            std::path::Path::new("options"),
            &sluice_core::home::Home::new(dir.path()),
        )
        .expect("options");
        api.options = Arc::new(sluice_core::options::LiveOptions::new(options));
        api
    }

    /// With `qorus.audit: api`, every verb that changes something is one `API-CALL` record
    /// naming the verb, the user, where it came from and what it acted on; reads and
    /// refusals are not recorded, nor user data.
    #[tokio::test]
    async fn changes_are_audited_as_api_calls() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let api = with_workflow_wf(&dir, "[]", "api").await;
        let count = |filter: &str| {
            let sql =
                format!("SELECT COUNT(*) FROM audit_events WHERE audit_event_code = 15 {filter}");
            let store = api.store.clone();
            async move { store.query_i64(&sql).await.expect("audit").unwrap_or(0) }
        };

        let order = json!({"name": "WF", "staticdata": {"secret": "s3cr3t"}});
        let id = call(&api, "omq.system.create-order", order)
            .await
            .expect("created")["workflow_instanceid"]
            .as_i64()
            .expect("an id");
        assert_eq!(
            count(
                "AND reason = 'omq.system.create-order' AND who = 'ops' \
                 AND source = 'cluster API' AND info1 = '{\"name\":\"WF\"}'"
            )
            .await,
            1
        );
        assert_eq!(count("AND info1 LIKE '%s3cr3t%'").await, 0, "no order data");

        on_order(&api, "omq.system.get-order-info", id)
            .await
            .expect("info");
        on_order(&api, "omq.system.cancel-workflow-instance", 999_999)
            .await
            .expect_err("no such order");
        assert_eq!(count("").await, 1, "reads and refusals are not audited");

        on_order(&api, "omq.system.block-workflow-instance", id)
            .await
            .expect("blocked");
        assert_eq!(
            count(&format!(
                "AND reason = 'omq.system.block-workflow-instance' \
                 AND info1 = '{{\"workflow_instanceid\":{id}}}'"
            ))
            .await,
            1
        );
        call(
            &api,
            "omq.system.set-option",
            json!({"name": "max-retries", "value": 3}),
        )
        .await
        .expect("set");
        assert_eq!(
            count("AND reason = 'omq.system.set-option'").await,
            1,
            "set-option records itself, once"
        );

        // A child's call (a step's) has no RBAC user yet; the gateway says where its
        // request came from, and a cluster API client cannot.
        let mut req = request(
            "omq.system.block-workflow-instance",
            json!({"workflow_instanceid": id}).to_string().into_bytes(),
        );
        req.principal = Some(sluice_proto::v1::Principal {
            source: "source: ipv4[10.0.0.9]:4711 listener: ipv4[0.0.0.0]:8001".into(),
            reason: "REST PUT api/latest/orders/1?action=block".into(),
            ..Default::default()
        });
        api.dispatch("ops", peer("ops"), &req)
            .await
            .expect_err("blocked already");
        let gateway = sluice_proto::v1::Principal {
            source: "source: ipv4[10.0.0.9]:4711 listener: ipv4[0.0.0.0]:8001".into(),
            reason: "REST PUT api/latest/orders/1?action=unblock".into(),
            ..Default::default()
        };
        let forged = sluice_proto::v1::Principal {
            user: "someone-else".into(),
            source: "source: forged".into(),
            reason: "forged".into(),
            ..Default::default()
        };
        let cases = [
            (
                "child:workflow-WF-1.0",
                None,
                "AND who = 'Qorus' AND source = 'workflow-WF-1.0' \
                 AND reason = 'omq.system.unblock-workflow-instance'",
            ),
            // A client cannot say where its call came from.
            (
                "ops",
                Some(forged),
                "AND who = 'ops' AND source = 'cluster API' \
                 AND reason = 'omq.system.unblock-workflow-instance'",
            ),
            (
                "child:http-gateway",
                Some(gateway),
                "AND who = 'Qorus' \
                 AND source = 'source: ipv4[10.0.0.9]:4711 listener: ipv4[0.0.0.0]:8001' \
                 AND reason = 'REST PUT api/latest/orders/1?action=unblock' \
                 AND info2 = 'omq.system.unblock-workflow-instance'",
            ),
        ];
        for (user, principal, recorded) in cases {
            let mut req = request(
                "omq.system.unblock-workflow-instance",
                json!({"workflow_instanceid": id}).to_string().into_bytes(),
            );
            req.principal = principal;
            api.dispatch(user, peer(user), &req)
                .await
                .expect("unblocked");
            assert_eq!(count(recorded).await, 1, "{user}");
            on_order(&api, "omq.system.block-workflow-instance", id)
                .await
                .expect("blocked");
        }
        assert_eq!(count("AND source = 'source: forged'").await, 0);
        assert_eq!(count("").await, 9);
    }

    #[tokio::test]
    async fn order_verbs_create_act_raise_events_and_audit() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut api = with_workflow_wf(&dir, r#"["id"]"#, "workflow-data").await;

        let order =
            json!({"name": "WF", "staticdata": {"a": 1}, "workflow_unique_key": {"id": "1"}});
        let reply = call(&api, "omq.system.create-order", order.clone())
            .await
            .expect("created");
        let id = reply["workflow_instanceid"].as_i64().expect("an id");
        let (code, description) = call(&api, "omq.system.create-order", order)
            .await
            .expect_err("duplicate");
        assert_eq!(code, "DUPLICATE-ORDER-KEY");
        assert!(
            description.contains(&format!("order {id}")),
            "{description}"
        );

        let reply = on_order(&api, "omq.system.block-workflow-instance", id)
            .await
            .expect("blocked");
        assert_eq!(reply["workflowstatus"], "BLOCKED");
        assert_eq!(reply["previous_workflowstatus"], "READY");
        let info = on_order(&api, "omq.system.get-order-info", id)
            .await
            .expect("info");
        assert_eq!(info["workflowstatus"], "BLOCKED");
        assert_eq!(info["staticdata"], json!({"a": 1}));
        let found = call(
            &api,
            "omq.system.search-orders",
            json!({"status": ["BLOCKED"]}),
        )
        .await
        .expect("search");
        assert_eq!(found[0]["workflow_instanceid"], id);

        let events: Vec<_> = api
            .events
            .since(0, 10)
            .into_iter()
            .map(|e| (e.eventstr, e.info["workflow_instanceid"].as_i64(), e.caller))
            .collect();
        assert_eq!(
            events,
            vec![
                ("WORKFLOW_DATA_SUBMITTED", Some(id), "ops".to_string()),
                ("WORKFLOW_STATUS_CHANGED", Some(id), "ops".to_string()),
            ]
        );
        let audited = api
            .store
            .query_i64(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE workflow_instanceid = {id} \
                 AND audit_event_code IN (6, 17) AND who = 'ops'"
            ))
            .await
            .expect("audit");
        assert_eq!(audited, Some(2), "qorus.audit: workflow-data");

        for (method, body, code) in [
            (
                "omq.system.get-order-info",
                json!({"workflow_instanceid": 99}),
                "WORKFLOW-ORDER-NOT-FOUND",
            ),
            (
                "omq.system.retry-workflow-instance",
                json!({"workflow_instanceid": id}),
                "STATUS-ERROR",
            ),
            (
                "omq.system.retry-workflow-instance",
                json!({"id": id}),
                "INVALID-ARGUMENT",
            ),
            (
                "omq.system.create-order",
                json!({"name": "WF", "priority": "high"}),
                "ORDER-DATA-ERROR",
            ),
            (
                "omq.system.create-order",
                json!({"name": "NOPE", "staticdata": {}}),
                "UNKNOWN-WORKFLOW",
            ),
            (
                "omq.system.set-order-keys",
                json!({"workflow_instanceid": id, "orderkeys": {"x": "1"}}),
                "ORDER-KEY-ERROR",
            ),
        ] {
            let got = call(&api, method, body.clone()).await.map_err(|e| e.0);
            assert_eq!(got, Err(code), "{method} {body}");
        }

        // With RBAC on and no permissions granted yet, reading works and changing does not.
        api.rbac_security = true;
        let (code, description) = call(
            &api,
            "omq.system.create-order",
            json!({"name": "WF", "staticdata": {}}),
        )
        .await
        .expect_err("refused");
        assert_eq!(code, "AUTHORIZATION-ERROR");
        assert!(description.contains("SUBMIT-ORDER"), "{description}");
        assert!(call(
            &api,
            "omq.system.get-order-info",
            json!({"workflow_instanceid": id})
        )
        .await
        .is_ok());
    }

    /// Two versions of WF (2.0 in a disabled group), a step graph, errors of its own and
    /// global ones.
    async fn workflows_fixture(api: &Api) {
        api.store
            .execute_sql(
                "INSERT INTO workflows (workflowid, name, version, description, autostart, \
                     keylist, created, modified) \
                     VALUES (1, 'WF', '1.0', 'first', 1, '[\"id\"]', 0, 0), \
                     (2, 'WF', '2.0', NULL, 0, '[]', 0, 0); \
                 INSERT INTO steps (stepid, name, version, created, modified) \
                     VALUES (10, 'A', '1.0', 0, 0), (11, 'B', '1.0', 0, 0); \
                 INSERT INTO workflow_steps (workflowid, stepid, position, depends_on) \
                     VALUES (1, 10, 0, '[]'), (1, 11, 1, '[10]'); \
                 INSERT INTO workflow_errors (workflowid, error, description, status, \
                     business_error) VALUES (1, 'E1', 'own', 'R', 1), \
                     (NULL, 'E1', 'global', 'E', 0), (NULL, 'G', 'global only', 'E', 0); \
                 INSERT INTO groups (name, enabled) VALUES ('OFF', 0); \
                 INSERT INTO group_members (group_name, object_type, object_id) \
                     VALUES ('OFF', 'workflow', 2);",
            )
            .await
            .expect("workflows");
    }

    #[tokio::test]
    async fn workflow_verbs_list_describe_and_switch() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut api = api(&dir).await;
        workflows_fixture(&api).await;
        for _ in 0..2 {
            call(
                &api,
                "omq.system.create-order",
                json!({"name": "WF", "version": "1.0", "staticdata": {}}),
            )
            .await
            .expect("order");
        }

        let list = call(&api, "omq.system.list-workflows", json!({}))
            .await
            .expect("list");
        let list = list.as_array().expect("a list");
        assert_eq!(list.len(), 2);
        let (v1, v2) = (&list[0], &list[1]);
        assert_eq!(
            (&v1["name"], &v1["version"], &v1["desc"]),
            (&json!("WF"), &json!("1.0"), &json!("first"))
        );
        assert_eq!(v1["autostart"], 1);
        assert_eq!(v1["enabled"], true);
        assert_eq!(v1["blocked"], false);
        assert_eq!(v1["keylist"], json!(["id"]));
        assert_eq!(v1["status"], "stopped");
        assert_eq!((&v1["READY"], &v1["TOTAL"]), (&json!(2), &json!(2)));
        assert_eq!(v1["COMPLETE"], 0, "every status is counted");
        assert_eq!(v2["groups"], json!(["OFF"]));
        assert_eq!(v2["blocked"], true);
        assert_eq!(v2["TOTAL"], 0);

        let newest = call(&api, "omq.system.get-workflow", json!({"name": "WF"}))
            .await
            .expect("newest");
        assert_eq!(newest["version"], "2.0");
        assert_eq!(newest["steps"], json!([]));
        let wf = call(
            &api,
            "omq.system.get-workflow",
            json!({"name": "WF", "version": "1.0"}),
        )
        .await
        .expect("1.0");
        assert_eq!(
            call(&api, "omq.system.get-workflow", json!({"workflowid": 1}))
                .await
                .expect("by id"),
            wf
        );
        let steps: Vec<_> = wf["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| (s["name"].clone(), s["depends_on"].clone()))
            .collect();
        assert_eq!(
            steps,
            vec![(json!("A"), json!([])), (json!("B"), json!([10]))]
        );
        let errors: Vec<_> = wf["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| {
                (
                    e["error"].clone(),
                    e["description"].clone(),
                    e["status"].clone(),
                )
            })
            .collect();
        assert_eq!(
            errors,
            vec![
                (json!("E1"), json!("own"), json!("RETRY")),
                (json!("G"), json!("global only"), json!("ERROR")),
            ],
            "the workflow's own E1 hides the global one"
        );
        for (body, code) in [
            (json!({"name": "NOPE"}), "UNKNOWN-WORKFLOW"),
            (json!({"workflowid": 99}), "UNKNOWN-WORKFLOW"),
            (json!({"name": "WF", "workflowid": 1}), "INVALID-ARGUMENT"),
            (json!({"nme": "WF"}), "INVALID-ARGUMENT"),
            (json!({}), "INVALID-ARGUMENT"),
        ] {
            let got = call(&api, "omq.system.get-workflow", body.clone()).await;
            assert_eq!(got.map_err(|e| e.0), Err(code), "{body}");
        }

        // Disabled: no new orders; the process is told to stop (none runs here).
        let off = json!({"name": "WF", "version": "1.0", "enabled": false});
        let reply = call(&api, "omq.system.set-workflow-enabled", off.clone())
            .await
            .expect("disabled");
        assert_eq!(
            (&reply["changed"], &reply["process"]),
            (&json!(true), &json!("not running"))
        );
        let again = call(&api, "omq.system.set-workflow-enabled", off)
            .await
            .expect("again");
        assert_eq!(again["changed"], false);
        let refused = call(
            &api,
            "omq.system.create-order",
            json!({"name": "WF", "version": "1.0", "staticdata": {}}),
        )
        .await;
        assert_eq!(refused.map_err(|e| e.0), Err("STATUS-ERROR"));
        let reply = call(
            &api,
            "omq.system.set-workflow-enabled",
            json!({"workflowid": 1, "enabled": true}),
        )
        .await
        .expect("enabled");
        assert_eq!(
            reply["process"], "starting",
            "autostart 1, in no disabled group"
        );
        let row = call(&api, "omq.system.get-workflow", json!({"workflowid": 1}))
            .await
            .expect("1.0");
        assert_eq!(row["enabled"], true);

        let reply = call(
            &api,
            "omq.system.set-workflow-autostart",
            json!({"name": "WF", "version": "2.0", "autostart": 3}),
        )
        .await
        .expect("autostart");
        assert_eq!(reply["changed"], true);
        assert_eq!(
            reply["process"],
            "not started: the workflow is in a disabled interface group"
        );
        let reply = call(
            &api,
            "omq.system.set-workflow-autostart",
            json!({"name": "WF", "version": "1.0", "autostart": 0}),
        )
        .await
        .expect("autostart 0");
        assert_eq!(reply["process"], "not running");
        let reply = call(
            &api,
            "omq.system.set-workflow-enabled",
            json!({"name": "WF", "version": "1.0", "enabled": true}),
        )
        .await
        .expect("enabled");
        assert_eq!(reply["process"], "not started: its autostart is 0");
        let list = call(&api, "omq.system.list-workflows", json!({}))
            .await
            .expect("list");
        assert_eq!(
            (&list[0]["autostart"], &list[1]["autostart"]),
            (&json!(0), &json!(3))
        );
        let negative = call(
            &api,
            "omq.system.set-workflow-autostart",
            json!({"name": "WF", "autostart": -1}),
        )
        .await;
        assert_eq!(negative.map_err(|e| e.0), Err("INVALID-ARGUMENT"));

        api.rbac_security = true;
        let (code, description) = call(
            &api,
            "omq.system.set-workflow-enabled",
            json!({"name": "WF", "enabled": false}),
        )
        .await
        .expect_err("refused");
        assert_eq!(code, "AUTHORIZATION-ERROR");
        assert!(description.contains("WORKFLOW-CONTROL"), "{description}");
        assert!(call(&api, "omq.system.list-workflows", json!({}))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn exec_synchronous_answers_once_the_order_ends_or_at_its_deadline() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let api = api(&dir).await;
        workflows_fixture(&api).await;
        let order = json!({"name": "WF", "version": "1.0", "staticdata": {"x": 1}});

        // Nothing runs the order here: TIMEOUT just before the deadline, naming it.
        let mut req = request(
            "omq.system.exec-synchronous",
            order.to_string().into_bytes(),
        );
        req.deadline_ms = sluice_core::now_ms() + 800;
        let started = std::time::Instant::now();
        let (code, description) = api
            .dispatch("ops", peer("ops"), &req)
            .await
            .expect_err("timeout");
        assert_eq!(code, "TIMEOUT");
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "answered in time"
        );
        assert!(
            description.contains("order 1 is still READY"),
            "{description}"
        );
        assert!(description.contains("not running"), "{description}");
        assert_eq!(
            api.store
                .query_i64("SELECT COUNT(*) FROM workflow_instance")
                .await
                .expect("count"),
            Some(1),
            "the order stays"
        );

        // An order that ends (here: a stand-in for the workflow process sets it COMPLETE).
        let store = api.store.clone();
        let finisher = tokio::spawn(async move {
            loop {
                let done = store
                    .execute_sql(
                        "UPDATE workflow_instance SET workflowstatus = 'C' \
                         WHERE workflow_instanceid = 2",
                    )
                    .await;
                if done.is_ok()
                    && store
                        .query_i64(
                            "SELECT COUNT(*) FROM workflow_instance \
                             WHERE workflowstatus = 'C'",
                        )
                        .await
                        .ok()
                        .flatten()
                        == Some(1)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let info = call(&api, "omq.system.exec-synchronous", order.clone())
            .await
            .expect("complete");
        finisher.await.expect("finisher");
        assert_eq!(info["workflow_instanceid"], 2);
        assert_eq!(info["workflowstatus"], "COMPLETE");
        assert_eq!(info["staticdata"], json!({"x": 1}));

        for verb in [
            "omq.system.exec-synchronous",
            "omq.system.exec-synchronous-workflow",
        ] {
            let bad = call(&api, verb, json!({"name": "NOPE", "staticdata": {}})).await;
            assert_eq!(bad.map_err(|e| e.0), Err("UNKNOWN-WORKFLOW"), "{verb}");
        }
    }

    #[tokio::test]
    async fn options_are_shown_redacted_and_runtime_ones_change() {
        use serde_json::json;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut api = api(&dir).await;
        api.options = Arc::new(sluice_core::options::LiveOptions::new(
            sluice_core::options::Options::parse(
                "qorus.systemdb: postgres://sluice:hunter2@db.example:5432/omq\n\
                 qorus.max-events: 500\n",
                std::path::Path::new("options"),
                &sluice_core::home::Home::new(dir.path()),
            )
            .expect("options"),
        ));
        let all = call(&api, "omq.system.get-options", json!({}))
            .await
            .expect("options");
        let all = all.as_array().expect("a list");
        assert_eq!(all.len(), sluice_core::options::table().len());
        assert!(!serde_json::to_string(all)
            .expect("json")
            .contains("hunter2"));
        let db = all
            .iter()
            .find(|o| o["name"] == "qorus.systemdb")
            .expect("systemdb");
        assert!(db["value"].as_str().expect("text").contains("***"), "{db}");
        let one = call(
            &api,
            "omq.system.get-options",
            json!({"name": "max-events"}),
        )
        .await
        .expect("one");
        assert_eq!(
            (&one["name"], &one["value"], &one["default"], &one["type"]),
            (
                &json!("qorus.max-events"),
                &json!("500"),
                &json!("10000"),
                &json!("integer > 0")
            )
        );
        let missing = call(
            &api,
            "omq.system.get-options",
            json!({"name": "qorus.nope"}),
        )
        .await;
        assert_eq!(missing.map_err(|e| e.0), Err("NOT-FOUND"));

        // A runtime option changes at once, and the event ring shrinks with it.
        for i in 0..8 {
            api.events
                .raise(EventCode::UserEvent, Severity::Info, "test", json!(i));
        }
        let set = call(
            &api,
            "omq.system.set-option",
            json!({"name": "qorus.max-events", "value": 5}),
        )
        .await
        .expect("set");
        assert_eq!(
            (&set["name"], &set["value"]),
            (&json!("qorus.max-events"), &json!("5"))
        );
        assert_eq!(api.options.current().max_events(), 5);
        assert_eq!(api.options.changes(), ["qorus.max-events=5"]);
        assert_eq!(api.events.since(0, 100).len(), 5);
        let reply = RegisterReply::decode(api.register_reply().as_slice()).expect("reply");
        assert_eq!(
            reply.runtime_options,
            ["qorus.max-events=5"],
            "children learn it"
        );
        // A startup option is refused, naming where its value goes.
        let (code, description) = call(
            &api,
            "omq.system.set-option",
            json!({"name": "qorus.systemdb", "value": "sqlite:/tmp/x.db"}),
        )
        .await
        .expect_err("refused");
        assert_eq!(code, "OPTION-ERROR");
        for part in ["qorus.systemdb", "restart", "options file"] {
            assert!(description.contains(part), "{part}: {description}");
        }
        for (body, text) in [
            (
                json!({"name": "max-events", "value": "0"}),
                "positive integer",
            ),
            (
                json!({"name": "qorus.max-event", "value": "1"}),
                "unknown option",
            ),
            (json!({"name": "max-events", "value": [1]}), "must be text"),
            (json!({"name": "max-events"}), "malformed"),
        ] {
            let (code, description) = call(&api, "omq.system.set-option", body.clone())
                .await
                .expect_err("invalid");
            assert_eq!(code, "INVALID-ARGUMENT", "{body}");
            assert!(description.contains(text), "{body}: {description}");
        }
        assert_eq!(api.options.current().max_events(), 5, "nothing changed");

        api.rbac_security = true;
        let (code, description) = call(
            &api,
            "omq.system.set-option",
            json!({"name": "max-events", "value": "5"}),
        )
        .await
        .expect_err("refused");
        assert_eq!(code, "AUTHORIZATION-ERROR");
        assert!(description.contains("OPTION-CONTROL"), "{description}");
    }

    #[tokio::test]
    async fn get_events_filters_and_long_polls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api = api(&dir).await;
        api.events.raise(
            EventCode::SystemStartup,
            Severity::Info,
            "master",
            serde_json::json!({}),
        );
        api.events.raise(
            EventCode::ProcessStarted,
            Severity::Info,
            "master",
            serde_json::json!({}),
        );

        let by_code = EventQuery {
            event_code: EventCode::ProcessStarted.code(),
            ..Default::default()
        };
        let list = api.events(by_code).await;
        assert_eq!(list.events.len(), 1);
        assert_eq!(list.events[0].event_name, "PROCESS_STARTED");
        assert_eq!(list.last_id, 2);

        // Nothing after id 2 yet: the query waits, and an event raised meanwhile answers it.
        let waiting = {
            let api = api.clone();
            tokio::spawn(async move {
                api.events(EventQuery {
                    since_id: 2,
                    wait_ms: 5_000,
                    ..Default::default()
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        api.events.raise(
            EventCode::UserEvent,
            Severity::Info,
            "x",
            serde_json::json!({}),
        );
        let list = waiting.await.expect("task");
        assert_eq!(list.events.len(), 1);
        assert_eq!(list.events[0].id, 3);

        // A wait that times out answers with nothing, not an error.
        let empty = api
            .events(EventQuery {
                since_id: 3,
                wait_ms: 50,
                ..Default::default()
            })
            .await;
        assert!(empty.events.is_empty());
    }
}
