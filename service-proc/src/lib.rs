//! The service engine: what a service process does beside the common child loop.
//!
//! It loads one service (definition, methods and code) from the system database, makes
//! one long-lived instance of its class in a Python runner (`init()` at load, `start()` in
//! the background after it), and serves method calls on that instance for as long as the
//! service is loaded. Calls run concurrently, up to the runner's workers; a method
//! declared `lock: write` runs alone (Qorus's service lock); every call has a deadline.
//!
//! A reset loads the newest code into a *second* instance while the first keeps serving,
//! switches new calls to it, lets the calls already running on the old one finish, and only
//! then stops and drops the old one: callers see no failed call. A runner that dies takes
//! the process with it (exit code 1), so the master restarts the service as Qorus restarts
//! a crashed service process; state kept with `saveStateData` survives in the database.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::child::{ChildContext, Request, MASTER_USER};
use sluice_core::engine::{refused, reply_to, unknown_method, Current, EngineError};
use sluice_core::events::{EventCode, Severity};
use sluice_core::host_api::{dict_arg, HostApi, SERVICE_CALL_TIMEOUT};
use sluice_core::runner::{
    CallbackError, CallbackFuture, ClassInfo, Code, CodeKind, EngineSlot, Host, Runner,
};
use sluice_core::store::services::{MethodLock, ServiceProgram};
use sluice_core::store::Store;
use sluice_proto::v1::Envelope;

/// Worker threads in the runner: how many method calls run at once (`start()` holds one).
const RUNNER_WORKERS: usize = 32;
/// How long `stop()` and a `start()` that must end may take at unload or reset.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The body of a `call` request on the service process's socket.
#[derive(Debug, Deserialize)]
struct CallRequest {
    method: String,
    #[serde(default)]
    args: Vec<Value>,
    /// From outside the system (a cluster API or HTTP client): `internal` methods are
    /// refused. Calls from other interfaces' code are not external.
    #[serde(default)]
    external: bool,
}

/// One loaded generation of the service: its program and the instance that runs it.
struct Loaded {
    program: ServiceProgram,
    handle: String,
    class: ClassInfo,
    /// Calls running on this instance; a reset waits for them before stopping it.
    calls: AtomicUsize,
}

impl Loaded {
    fn has(&self, method: &str) -> bool {
        self.class.has(method)
    }
}

/// What every call task shares.
struct Service {
    network_id: String,
    store: Store,
    api: HostApi,
    runner: Runner,
    current: Current<Arc<Loaded>>,
    /// Qorus's service lock: `write` methods take it exclusively, every other call shared.
    lock: tokio::sync::RwLock<()>,
    /// Resets one at a time.
    resetting: tokio::sync::Mutex<()>,
    /// `start()` calls still running (0 or 1, more during a reset): "running" vs "loaded".
    starting: AtomicUsize,
    /// The running `start()` of each generation, by instance handle, for its unload.
    starts: Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Service {
    fn describe(&self) -> String {
        let now = self.current.get();
        format!("service {}:{}", now.program.name, now.program.version)
    }
}

/// The runner's host: state data here, everything else through [`HostApi`].
#[derive(Default)]
struct ServiceHost {
    service: EngineSlot<Service>,
    /// Until the service exists (load time): what `getStateData` and events need.
    early: Mutex<Option<(HostApi, i64)>>,
}

impl ServiceHost {
    fn parts(&self) -> Option<(HostApi, i64)> {
        if let Some(service) = self.service.get() {
            return Some((service.api.clone(), service.current.get().program.serviceid));
        }
        self.early.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Host for ServiceHost {
    fn callback(&self, _context: Value, api: String, args: Vec<Value>) -> CallbackFuture {
        let parts = self.parts();
        Box::pin(async move {
            let (host, serviceid) = parts.ok_or_else(|| {
                CallbackError::new("SHUTDOWN-IN-PROGRESS", "the service is stopping")
            })?;
            match api.as_str() {
                "getStateData" => host
                    .store
                    .service_state(serviceid)
                    .await
                    .map(|v| v.unwrap_or(Value::Null))
                    .map_err(|e| CallbackError::new("DATABASE-ERROR", e.to_string())),
                "saveStateData" => {
                    let data = dict_arg(args, &api)?;
                    host.store
                        .save_service_state(serviceid, &data)
                        .await
                        .map(|()| Value::Null)
                        .map_err(|e| CallbackError::new("DATABASE-ERROR", e.to_string()))
                }
                other => host.common_or_unknown(other, args, "a service").await,
            }
        })
    }

    fn log(&self, level: &str, message: &str, _context: Option<&Value>) {
        sluice_core::runner_log!(level, message);
    }
}

/// The engine's entry point, run by the child loop.
pub async fn run(mut ctx: ChildContext) -> Result<(), EngineError> {
    // The child loop read them (and keeps the operator's changes in them).
    let options = ctx.options.current();
    let (name, version) = ctx.boot.interface("service").map_err(EngineError::Setup)?;
    let store = Store::open(&options.systemdb(), false).await?;
    let api = HostApi::new(&ctx, store.clone());
    let loaded = setup(&ctx, &options, &store, &api, &name, &version).await;
    let service = match loaded {
        Ok(ready) => ready,
        Err(err) => {
            // Calls that arrived while it loaded learn why it will not serve them.
            while let Ok(request) = ctx.requests.try_recv() {
                let answer = refused(
                    reply_to(&request.envelope),
                    "SERVICE-LOAD-ERROR",
                    format!("service {name}:{version} could not be loaded: {err}"),
                    None,
                );
                let _ = request.reply.send(answer);
            }
            api.raise_event(
                EventCode::ServiceError,
                Severity::Error,
                json!({"name": name, "version": version, "err": "SERVICE-LOAD-ERROR", "desc": err.to_string()}),
            )
            .await;
            return Err(err);
        }
    };
    let program = service.current.get().program.clone();
    tracing::info!(
        "service {name}:{version} (id {}) ready: {} method(s), runner pid {}",
        program.serviceid,
        program.methods.len(),
        service.runner.pid().unwrap_or_default()
    );
    api.raise_event(
        EventCode::ServiceStart,
        Severity::Info,
        json!({"name": name, "version": version, "serviceid": program.serviceid}),
    )
    .await;

    let mut stopping = ctx.stopping.clone();
    let runner = service.runner.clone();
    let outcome = loop {
        tokio::select! {
            _ = stopping.changed() => break Ok(()),
            _ = runner.exited() => {
                let how = runner.exit_status().unwrap_or_default();
                break Err(EngineError::Setup(format!(
                    "the Python runner of service {name}:{version} {how}; the process exits so \
                     the master can restart the service"
                )));
            }
            Some(request) = ctx.requests.recv() => {
                let service = service.clone();
                tokio::spawn(async move { handle(&service, request).await });
            }
        }
    };
    if outcome.is_ok() {
        unload(&service, service.current.get()).await;
        service.runner.stop(Duration::from_secs(5)).await;
    }
    api.raise_event(
        EventCode::ServiceStop,
        Severity::Info,
        json!({"name": name, "version": version, "serviceid": program.serviceid}),
    )
    .await;
    outcome
}

/// Loads the service into a new runner: its class, one instance, `init()`, then `start()`
/// in the background.
async fn setup(
    ctx: &ChildContext,
    options: &sluice_core::options::Options,
    store: &Store,
    api: &HostApi,
    name: &str,
    version: &str,
) -> Result<Arc<Service>, EngineError> {
    let program = store
        .load_service(name, version)
        .await?
        .ok_or_else(|| EngineError::not_loaded("service", name, version))?;
    let config = ctx
        .boot
        .runner_config(options, RUNNER_WORKERS)
        .map_err(EngineError::Setup)?;
    let host = Arc::new(ServiceHost::default());
    *host.early.lock().unwrap_or_else(|p| p.into_inner()) = Some((api.clone(), program.serviceid));
    let runner = Runner::start(config, host.clone()).await?;
    let loaded = instantiate(&runner, program).await?;
    let service = Arc::new(Service {
        network_id: ctx.boot.network_id.clone(),
        store: store.clone(),
        api: api.clone(),
        runner,
        current: Current::new(loaded.clone()),
        lock: tokio::sync::RwLock::new(()),
        resetting: tokio::sync::Mutex::new(()),
        starting: AtomicUsize::new(0),
        starts: Mutex::default(),
    });
    host.service.attach(&service);
    begin(&service, &loaded);
    Ok(service)
}

/// Loads `program`'s class and makes its instance, with `init()` run.
async fn instantiate(runner: &Runner, program: ServiceProgram) -> Result<Arc<Loaded>, EngineError> {
    let code = Code {
        kind: CodeKind::Service,
        name: &program.name,
        version: &program.version,
        class: &program.class_name,
        source: &program.source,
        code_hash: &program.code_hash,
    };
    let class = code.load(runner).await?;
    let missing: Vec<&str> = program
        .methods
        .iter()
        .map(|m| m.name.as_str())
        .filter(|m| !class.has(m))
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::Setup(format!(
            "class {} of {} does not define the declared method(s) {}",
            program.class_name,
            code.what(),
            missing.join(", ")
        )));
    }
    let context = json!({
        "serviceid": program.serviceid,
        "name": program.name,
        "version": program.version,
        "desc": program.description,
    });
    let handle = runner
        .create(&program.class_name, context)
        .await?
        .map_err(|e| {
            EngineError::Setup(format!(
                "the constructor of service {}:{} raised {e}",
                program.name, program.version
            ))
        })?;
    if class.has("init") {
        if let Err(e) = runner.call_instance(&handle, "init", Vec::new()).await? {
            let _ = runner.drop_instance(&handle).await;
            return Err(EngineError::Setup(format!(
                "init() of service {}:{} raised {e}",
                program.name, program.version
            )));
        }
    }
    Ok(Arc::new(Loaded {
        program,
        handle,
        class,
        calls: AtomicUsize::new(0),
    }))
}

/// Runs `start()` in the background when the class has one; an exception in it is a
/// SERVICE_ERROR event, not the end of the service (its methods still serve).
fn begin(service: &Arc<Service>, loaded: &Arc<Loaded>) {
    if !loaded.has("start") {
        return;
    }
    let handle = loaded.handle.clone();
    let task_service = service.clone();
    let loaded = loaded.clone();
    service.starting.fetch_add(1, Ordering::SeqCst);
    let task = tokio::spawn(async move {
        let service = task_service;
        let outcome = service
            .runner
            .call_instance(&loaded.handle, "start", Vec::new())
            .await;
        service.starting.fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(Ok(_)) => tracing::info!("start() of {} returned", service.describe()),
            Ok(Err(e)) => {
                tracing::error!("start() of {} raised {e}", service.describe());
                service
                    .api
                    .raise_event(
                        EventCode::ServiceError,
                        Severity::Error,
                        json!({
                            "name": loaded.program.name, "version": loaded.program.version,
                            "err": e.r#type, "desc": e.message, "method": "start",
                        }),
                    )
                    .await;
            }
            Err(e) => tracing::warn!("start() of {} ended: {e}", service.describe()),
        }
    });
    service
        .starts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(handle, task);
}

/// Stops one generation: `stop()` (which should make a running `start()` return), waits
/// for `start()` to end and for the calls still running on it, then drops the instance.
async fn unload(service: &Arc<Service>, loaded: Arc<Loaded>) {
    let drain = async {
        while loaded.calls.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
        tracing::warn!(
            "{} call(s) still running on the old instance after {} s",
            loaded.calls.load(Ordering::SeqCst),
            STOP_GRACE.as_secs()
        );
    }
    if loaded.has("stop") {
        let stop = service
            .runner
            .call_instance(&loaded.handle, "stop", Vec::new());
        match tokio::time::timeout(STOP_GRACE, stop).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::error!("stop() of {} raised {e}", service.describe()),
            Ok(Err(e)) => tracing::warn!("stop(): {e}"),
            Err(_) => tracing::warn!("stop() did not return within {} s", STOP_GRACE.as_secs()),
        }
    }
    let start = service
        .starts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&loaded.handle);
    if let Some(start) = start {
        if tokio::time::timeout(STOP_GRACE, start).await.is_err() {
            tracing::warn!(
                "start() did not return within {} s of stop(); abandoning it",
                STOP_GRACE.as_secs()
            );
        }
    }
    if let Err(e) = service.runner.drop_instance(&loaded.handle).await {
        tracing::debug!("dropping the old instance: {e}");
    }
}

async fn handle(service: &Arc<Service>, request: Request) {
    let envelope = request.envelope;
    let out = match envelope.method.as_str() {
        // A direct call (from the gateway) comes from outside the system by definition.
        "call" => call(service, &envelope, request.caller != MASTER_USER).await,
        "reset" => match reset(service).await {
            Ok(text) => {
                let mut r = reply_to(&envelope);
                r.body = text.into_bytes();
                r
            }
            Err(err) => refused(reply_to(&envelope), "RESET-ERROR", err.to_string(), None),
        },
        "status" => {
            let now = service.current.get();
            let mut r = reply_to(&envelope);
            r.body = json!({
                "status": if service.starting.load(Ordering::SeqCst) > 0 { "running" } else { "loaded" },
                "serviceid": now.program.serviceid,
                "version": now.program.version,
                "code_hash": now.program.code_hash,
                "calls": now.calls.load(Ordering::SeqCst),
                "runner_pid": service.runner.pid(),
            })
            .to_string()
            .into_bytes();
            r
        }
        _ => unknown_method(&envelope, &service.network_id),
    };
    let _ = request.reply.send(out);
}

/// One method call: checks, the lock, the deadline, the call, the reply.
async fn call(service: &Arc<Service>, envelope: &Envelope, direct: bool) -> Envelope {
    let base = reply_to(envelope);
    let mut request: CallRequest = match serde_json::from_slice(&envelope.body) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                base,
                "INVALID-ARGUMENT",
                format!("malformed call (JSON {{\"method\", \"args\"}} expected): {e}"),
                None,
            )
        }
    };
    request.external |= direct;
    let deadline = if envelope.deadline_ms > 0 {
        let left = envelope.deadline_ms - sluice_core::now_ms();
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    } else {
        SERVICE_CALL_TIMEOUT
    };
    let loaded = service.current.get();
    let Some(method) = loaded.program.method(&request.method).cloned() else {
        return refused(
            base,
            "UNKNOWN-METHOD",
            format!(
                "{} has no method {:?} (its methods: {})",
                service.describe(),
                request.method,
                loaded
                    .program
                    .methods
                    .iter()
                    .filter(|m| !(request.external && m.internal))
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        );
    };
    if method.internal && request.external {
        return refused(
            base,
            "AUTHORIZATION-ERROR",
            format!(
                "method {} of {} is internal: only interface code may call it",
                method.name,
                service.describe()
            ),
            None,
        );
    }
    let run = async {
        // The lock first, then the instance: a call queued behind a write-locked one
        // during a reset runs on the instance current when it gets its turn.
        let _guard = match method.lock {
            MethodLock::Write => Guard::Write(service.lock.write().await),
            MethodLock::Read | MethodLock::None => Guard::Read(service.lock.read().await),
        };
        let loaded = service.current.get();
        loaded.calls.fetch_add(1, Ordering::SeqCst);
        let _count = CallCount(&loaded);
        service
            .runner
            .call_instance(&loaded.handle, &method.name, request.args)
            .await
    };
    match tokio::time::timeout(deadline, run).await {
        Err(_) => refused(
            base,
            "TIMEOUT",
            format!(
                "method {} of {} did not answer within {} ms",
                method.name,
                service.describe(),
                deadline.as_millis()
            ),
            None,
        ),
        Ok(Err(e)) => refused(base, "SERVICE-ERROR", e.to_string(), None),
        Ok(Ok(Err(user))) => {
            let info = json!({
                "type": user.r#type, "message": user.message,
                "traceback": user.traceback, "info": user.info,
            });
            let description = user.message.clone();
            refused(base, &user.r#type, description, Some(info))
        }
        Ok(Ok(Ok(value))) => {
            let mut r = base;
            r.body = value.to_string().into_bytes();
            r
        }
    }
}

/// Held only for its drop, which releases the service lock.
#[allow(dead_code)]
enum Guard<'a> {
    Read(tokio::sync::RwLockReadGuard<'a, ()>),
    Write(tokio::sync::RwLockWriteGuard<'a, ()>),
}

/// Decrements a generation's running calls when the call ends, however it ends.
struct CallCount<'a>(&'a Loaded);

impl Drop for CallCount<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Loads the newest code beside the running instance and switches to it (module doc).
async fn reset(service: &Arc<Service>) -> Result<String, EngineError> {
    let _one = service.resetting.lock().await;
    let old = service.current.get();
    let (name, version) = (&old.program.name, &old.program.version);
    let program = service
        .store
        .load_service(name, version)
        .await?
        .ok_or_else(|| EngineError::no_longer_loaded("service", name, version))?;
    let new = instantiate(&service.runner, program).await?;
    service.current.set(new.clone());
    tracing::info!(
        "reset: {} now runs code {} ({} call(s) finishing on the old code)",
        service.describe(),
        &new.program.code_hash[..12.min(new.program.code_hash.len())],
        old.calls.load(Ordering::SeqCst)
    );
    unload(service, old).await;
    begin(service, &new);
    Ok(format!(
        "{} reset: {} method(s), code {}",
        service.describe(),
        new.program.methods.len(),
        &new.program.code_hash[..12.min(new.program.code_hash.len())]
    ))
}
