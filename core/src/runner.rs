//! The Python runner: one long-lived child process of an interface process that runs the
//! interface's user code (`python3 -m sluice_runner`, from the `python/` directory).
//!
//! The two talk over the runner's stdin and stdout, one JSON object per line in both
//! directions (`docs/runner-protocol.md` is the contract). Many requests are in flight at
//! once: a writer task sends what callers queue, a reader task routes each reply to its
//! caller by id, and each callback user code makes (`updateDynamicData`, `createOrder`,
//! ...) runs as its own task against the [`Host`], so a slow callback never holds up the
//! reader. The runner's stderr (user `print` output included) goes to the process log.
//!
//! When the runner dies, every call in flight resolves at once to [`RunnerError::Died`],
//! saying how it ended, and [`Runner::exited`] resolves, so a supervisor can start a new
//! one. When the interface process dies, the runner dies with it (see [`Runner::start`]).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};

mod code;
mod host;
#[cfg(test)]
mod tests;

pub use code::{Code, CodeError, CodeKind};
#[doc(hidden)]
pub use host::__tracing;
pub use host::{Engine, EngineHost};

/// Worker threads in a runner unless configured otherwise.
pub const DEFAULT_WORKERS: usize = 32;

// The error types the runner itself reports in a `UserError`; user code reports its own
// exception class names, or the `err` of a `StepError`.

/// A malformed request (a host bug).
pub const PROTOCOL_ERROR: &str = "PROTOCOL-ERROR";
/// The value returned by user code (or passed to a callback) is not JSON.
pub const SERIALIZATION_ERROR: &str = "SERIALIZATION-ERROR";
pub const CLASS_NOT_FOUND: &str = "CLASS-NOT-FOUND";
pub const METHOD_NOT_FOUND: &str = "METHOD-NOT-FOUND";
pub const INSTANCE_NOT_FOUND: &str = "INSTANCE-NOT-FOUND";
/// Raised in user code by a callback made after the host closed the runner's stdin.
pub const RUNNER_STOPPING: &str = "RUNNER-STOPPING";

/// How long a starting runner has to answer its first ping. Python starts in well under a
/// second; a loaded machine gets the rest.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the runner may keep running after closing its stdout before it is killed: it
/// closes stdout only by exiting, so this only guards against a wedged process.
const EXIT_AFTER_EOF: Duration = Duration::from_secs(2);

/// Requests queued for the writer before callers wait.
const QUEUE: usize = 1024;

/// The environment variables a runner inherits. Everything else is dropped, so nothing
/// secret the interface process holds in its environment reaches user code.
const PASSED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "OMQ_DIR",
];

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The interpreter, a name looked up in PATH or a path (`qorus.python-executable`).
    pub python: String,
    /// The `python/` directory holding `sluice_runner`, `wf`, `svc` and `job`.
    pub python_dir: PathBuf,
    /// Names the runner in log lines, e.g. `workflow-ORDERS-1.0`.
    pub label: String,
    /// Worker threads in the runner: how many calls run at once.
    pub workers: usize,
}

/// An exception raised by user code (or a request the runner could not carry out).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserError {
    /// The error name: the `err` of a `StepError`/`QorusException`, else the exception's
    /// class name, or one of this module's `*_ERROR`/`*_NOT_FOUND` constants.
    pub r#type: String,
    pub message: String,
    /// Python's traceback text, user frames only; empty for errors of the runner itself.
    #[serde(default)]
    pub traceback: String,
    #[serde(default)]
    pub info: Value,
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.r#type)
        } else {
            write!(f, "{}: {}", self.r#type, self.message)
        }
    }
}

impl std::error::Error for UserError {}

/// What a loaded class offers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClassInfo {
    /// The callables the user class defines (its own and its user-defined bases'), sorted.
    pub methods: Vec<String>,
    /// The Sluice base it derives from (`QorusNormalStep`, `QorusService`, `QorusJob`, ...),
    /// or empty.
    pub base: String,
}

impl ClassInfo {
    pub fn has(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }
}

/// The host's refusal of a callback; user code sees it as `QorusException(err, desc)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackError {
    pub err: String,
    pub desc: String,
}

impl CallbackError {
    pub fn new(err: impl Into<String>, desc: impl Into<String>) -> Self {
        Self {
            err: err.into(),
            desc: desc.into(),
        }
    }
}

/// The answer to a callback (the same type as `futures::future::BoxFuture<'static, _>`).
pub type CallbackFuture = Pin<Box<dyn Future<Output = Result<Value, CallbackError>> + Send>>;

/// What user code can ask of the host. Implemented by the interface process.
pub trait Host: Send + Sync + 'static {
    /// Carries out `api` (`updateDynamicData`, `createOrder`, ...; the list is in
    /// `docs/runner-protocol.md`). `call_context` is the context JSON of the call that made
    /// the callback (`null` for code running at load time or in threads user code started
    /// itself). User code blocks until the future resolves; a panic in it is reported to
    /// user code as `INTERNAL-ERROR`.
    fn callback(&self, call_context: Value, api: String, args: Vec<Value>) -> CallbackFuture;

    /// A log line from user code: `level` is `fatal`, `error`, `warn`, `info` or `debug`.
    fn log(&self, level: &str, message: &str, call_context: Option<&Value>);
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{label}: cannot start the Python runner `{python}`: {source}")]
    Spawn {
        label: String,
        python: String,
        source: std::io::Error,
    },
    #[error("{label}: {} does not hold the sluice_runner package (see qorus.python-executable and the python/ directory of the installation)", dir.display())]
    PythonDir { label: String, dir: PathBuf },
    /// The runner is gone; `how` says how it ended ("was killed by signal 9 (SIGKILL)").
    #[error("{label}: the Python runner {how}")]
    Died { label: String, how: String },
    #[error("{0}")]
    Protocol(String),
    /// Loading user code failed (syntax error, import error, missing class).
    #[error("{0}")]
    User(UserError),
}

/// What a caller waiting for a reply receives.
type Outcome = Result<Result<Value, UserError>, RunnerError>;

enum Out {
    Line(Vec<u8>),
    /// Closes the runner's stdin, after the lines queued before it.
    Close,
}

struct Pending {
    reply: oneshot::Sender<Outcome>,
    /// Handed to the host with the call's callbacks and log lines.
    context: Option<Arc<Value>>,
}

#[derive(Default)]
struct Calls {
    waiting: HashMap<u64, Pending>,
    /// Set once the runner is gone: how it ended. No call is registered after that.
    gone: Option<String>,
    /// Set by [`Runner::stop`]: no new requests.
    stopping: bool,
}

impl Calls {
    /// Removes a waiting call, and wakes a stop waiting for the last one.
    fn take(&mut self, id: u64, idle: &tokio::sync::Notify) -> Option<Pending> {
        let pending = self.waiting.remove(&id);
        if self.waiting.is_empty() {
            idle.notify_waiters();
        }
        pending
    }
}

struct Shared {
    label: String,
    pid: u32,
    host: Arc<dyn Host>,
    out: mpsc::Sender<Out>,
    calls: Mutex<Calls>,
    /// Notified when the last waiting call is answered.
    idle: tokio::sync::Notify,
    /// The create context of each instance, for the callbacks of its calls.
    instances: Mutex<HashMap<String, Arc<Value>>>,
    next_id: AtomicU64,
    /// How the process ended, once it has.
    exit: watch::Receiver<Option<String>>,
    kill: mpsc::UnboundedSender<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The last runner handle dropped kills the process.
struct Inner {
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shared.kill.send(());
    }
}

/// A running Python runner. Cheap to clone; the process is killed when the last clone is
/// dropped (use [`Runner::stop`] to let calls in flight finish).
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<&'a str>,
    #[serde(rename = "class", skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Value>,
}

impl<'a> Request<'a> {
    fn new(op: &'static str) -> Self {
        Request {
            id: 0,
            op,
            module: None,
            class: None,
            source: None,
            instance: None,
            method: None,
            args: None,
            context: None,
        }
    }
}

impl Runner {
    /// Starts a runner and waits for it to answer a ping.
    ///
    /// The runner gets a clean environment (see `PASSED_ENV`) plus `PYTHONPATH`. On Linux
    /// it is also asked to be SIGKILLed when the interface process dies
    /// (`PR_SET_PDEATHSIG`): the master then returns the dead process's orders to RETRY, and
    /// an orphaned runner still working on them would run steps twice. Elsewhere the
    /// runner ends when its stdin reaches EOF, which the death of the parent also causes,
    /// after its calls in flight finish.
    pub async fn start(config: RunnerConfig, host: Arc<dyn Host>) -> Result<Runner, RunnerError> {
        let label = config.label.clone();
        if !holds_runner(&config.python_dir) {
            return Err(RunnerError::PythonDir {
                label,
                dir: config.python_dir,
            });
        }
        let python_dir =
            std::path::absolute(&config.python_dir).unwrap_or_else(|_| config.python_dir.clone());
        let mut cmd = Command::new(&config.python);
        cmd.args(["-m", "sluice_runner", "--workers"])
            .arg(config.workers.max(1).to_string())
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .env("PYTHONPATH", &python_dir)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUTF8", "1")
            // `-m` would otherwise put the working directory first on sys.path, where a
            // stray `wf.py` could shadow ours.
            .env("PYTHONSAFEPATH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let spawn_error = |source| RunnerError::Spawn {
            label: label.clone(),
            python: config.python.clone(),
            source,
        };
        let (mut child, keepalive) = spawn_tied(cmd).await.map_err(spawn_error)?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RunnerError::Protocol(format!(
                "{label}: the runner's standard streams were not piped"
            )));
        };

        let (out, out_rx) = mpsc::channel(QUEUE);
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            label: label.clone(),
            pid,
            host,
            out,
            calls: Mutex::new(Calls::default()),
            idle: tokio::sync::Notify::new(),
            instances: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            exit,
            kill,
        });
        tokio::spawn(wait_for_exit(child, kill_rx, exit_tx, keepalive));
        tokio::spawn(write_requests(stdin, out_rx, label.clone()));
        tokio::spawn(read_replies(stdout, shared.clone()));
        let (tail_tx, tail_rx) = oneshot::channel();
        tokio::spawn(forward_stderr(stderr, label.clone(), tail_tx));

        let runner = Runner {
            inner: Arc::new(Inner { shared }),
        };
        match tokio::time::timeout(START_TIMEOUT, runner.ping()).await {
            Ok(Ok(info)) => {
                tracing::info!(
                    "{label}: Python runner started (pid {pid}, Python {}, {} workers)",
                    info.get("python")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("?"),
                    config.workers.max(1)
                );
                Ok(runner)
            }
            Ok(Err(RunnerError::Died { label, how })) => {
                // What Python printed before dying is the useful part ("No module named
                // sluice_runner", a bad option, ...).
                let tail = tokio::time::timeout(Duration::from_secs(2), tail_rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let how = if tail.is_empty() {
                    how
                } else {
                    format!("{how}: {tail}")
                };
                Err(RunnerError::Died { label, how })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RunnerError::Protocol(format!(
                "{label}: the Python runner did not answer a ping within {START_TIMEOUT:?}"
            ))),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Asks the runner for `{"pid", "python", "workers"}`; answered by its reader thread,
    /// so it shows the process is alive even while every worker is busy.
    pub async fn ping(&self) -> Result<Value, RunnerError> {
        let request = Request::new("ping");
        flatten(
            self.shared().request(request, None).await,
            &self.shared().label,
            "ping",
        )
    }

    /// Loads `source` as the module `module` and returns what its class `class` offers.
    /// Loading the same module name again replaces it; class names are unique per runner,
    /// and later calls use the newest class loaded under that name.
    pub async fn load(
        &self,
        module: &str,
        class: &str,
        source: &str,
    ) -> Result<ClassInfo, RunnerError> {
        let request = Request {
            module: Some(module),
            class: Some(class),
            source: Some(source),
            ..Request::new("load")
        };
        let value = flatten(
            self.shared().request(request, None).await,
            &self.shared().label,
            "load",
        )?;
        serde_json::from_value(value).map_err(|e| {
            RunnerError::Protocol(format!(
                "{}: malformed load reply: {e}",
                self.shared().label
            ))
        })
    }

    /// Calls `method` on a fresh instance of `class`.
    /// Ok(Ok(value)) = returned; Ok(Err(user_error)) = user code raised; Err(RunnerError::Died)
    /// = runner gone mid-call.
    pub async fn call(
        &self,
        class: &str,
        method: &str,
        args: Vec<Value>,
        context: Value,
    ) -> Result<Result<Value, UserError>, RunnerError> {
        let context = Arc::new(context);
        let request = Request {
            class: Some(class),
            method: Some(method),
            args: Some(args.as_slice()),
            context: Some(context.as_ref()),
            ..Request::new("call")
        };
        self.shared().request(request, Some(context.clone())).await
    }

    /// Makes a long-lived instance of `class` (for services) and returns its handle.
    pub async fn create(
        &self,
        class: &str,
        context: Value,
    ) -> Result<Result<String, UserError>, RunnerError> {
        let context = Arc::new(context);
        let request = Request {
            class: Some(class),
            context: Some(context.as_ref()),
            ..Request::new("create")
        };
        match self
            .shared()
            .request(request, Some(context.clone()))
            .await?
        {
            Ok(Value::String(handle)) => {
                lock(&self.shared().instances).insert(handle.clone(), context);
                Ok(Ok(handle))
            }
            Ok(other) => Err(RunnerError::Protocol(format!(
                "{}: create replied {other} instead of a handle",
                self.shared().label
            ))),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Calls `method` on the instance `handle` made by [`Runner::create`]; its callbacks
    /// carry the context given to `create`.
    pub async fn call_instance(
        &self,
        handle: &str,
        method: &str,
        args: Vec<Value>,
    ) -> Result<Result<Value, UserError>, RunnerError> {
        let context = lock(&self.shared().instances).get(handle).cloned();
        let request = Request {
            instance: Some(handle),
            method: Some(method),
            args: Some(args.as_slice()),
            ..Request::new("call")
        };
        self.shared().request(request, context).await
    }

    /// Forgets the instance `handle`; returns whether the runner had it.
    pub async fn drop_instance(&self, handle: &str) -> Result<bool, RunnerError> {
        lock(&self.shared().instances).remove(handle);
        let request = Request {
            instance: Some(handle),
            ..Request::new("drop")
        };
        let value = flatten(
            self.shared().request(request, None).await,
            &self.shared().label,
            "drop",
        )?;
        Ok(value.as_bool().unwrap_or(false))
    }

    /// The runner's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.is_alive().then_some(self.shared().pid)
    }

    pub fn is_alive(&self) -> bool {
        self.shared().exit.borrow().is_none()
    }

    /// Resolves when the runner process has exited (for a supervisor loop that restarts it).
    pub async fn exited(&self) {
        let mut exit = self.shared().exit.clone();
        // An error means the task that watches the process is gone: so is the process.
        let _ = exit.wait_for(Option::is_some).await.map(|_| ());
    }

    /// How the runner ended ("exited with status 0"), once it has.
    pub fn exit_status(&self) -> Option<String> {
        self.shared().exit.borrow().clone()
    }

    /// Stops the runner: refuses new requests, waits for the calls in flight (their
    /// callbacks are still served), closes stdin so the runner exits, and kills it if all
    /// that takes longer than `grace`.
    pub async fn stop(&self, grace: Duration) {
        let shared = self.shared();
        lock(&shared.calls).stopping = true;
        let orderly = async {
            // Closing stdin first would also end the calls in flight, but every callback
            // they made after it would fail (RUNNER-STOPPING): the host could not answer.
            loop {
                let idle = shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if lock(&shared.calls).waiting.is_empty() {
                    break;
                }
                idle.await;
            }
            // The writer may be gone already; then stdin is closed already.
            let _ = shared.out.send(Out::Close).await;
            self.exited().await;
        };
        if tokio::time::timeout(grace, orderly).await.is_err() {
            tracing::warn!(
                "{}: the Python runner did not finish within {grace:?} of being stopped; killing it",
                shared.label
            );
            let _ = shared.kill.send(());
            self.exited().await;
        }
    }
}

/// A reply to a request that is not user code: a user error there is a protocol fault.
fn flatten(outcome: Outcome, label: &str, what: &str) -> Result<Value, RunnerError> {
    match outcome? {
        Ok(value) => Ok(value),
        Err(e) if what == "load" => Err(RunnerError::User(e)),
        Err(e) => Err(RunnerError::Protocol(format!(
            "{label}: {what} failed: {e}"
        ))),
    }
}

/// Removes a waiting call if its caller stops waiting (its future was dropped).
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.calls).take(self.id, &self.shared.idle);
    }
}

impl Shared {
    fn died(&self) -> RunnerError {
        let how = self
            .exit
            .borrow()
            .clone()
            .unwrap_or_else(|| "is not accepting requests (it is stopping)".to_string());
        RunnerError::Died {
            label: self.label.clone(),
            how,
        }
    }

    async fn request(&self, mut request: Request<'_>, context: Option<Arc<Value>>) -> Outcome {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        let mut line = serde_json::to_vec(&request).map_err(|e| {
            RunnerError::Protocol(format!("{}: cannot encode a request: {e}", self.label))
        })?;
        line.push(b'\n');
        let (reply, answer) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(how) = &calls.gone {
                return Err(RunnerError::Died {
                    label: self.label.clone(),
                    how: how.clone(),
                });
            }
            if calls.stopping {
                return Err(RunnerError::Died {
                    label: self.label.clone(),
                    how: "is stopping".to_string(),
                });
            }
            calls.waiting.insert(id, Pending { reply, context });
        }
        let _forget = Forget { shared: self, id };
        if self.out.send(Out::Line(line)).await.is_err() {
            return Err(self.died());
        }
        answer.await.unwrap_or_else(|_| Err(self.died()))
    }

    fn context_of(&self, call: Option<u64>) -> Option<Arc<Value>> {
        let calls = lock(&self.calls);
        call.and_then(|id| calls.waiting.get(&id)?.context.clone())
    }

    fn on_line(self: &Arc<Self>, line: &[u8]) {
        let mut msg: Map<String, Value> = match serde_json::from_slice(line) {
            Ok(msg) => msg,
            Err(e) => {
                let shown = String::from_utf8_lossy(&line[..line.len().min(200)]);
                tracing::warn!(
                    "{}: ignoring a line from the runner that is not a JSON object ({e}): {shown}",
                    self.label
                );
                return;
            }
        };
        if let Some(level) = msg.get("log") {
            let context = self.context_of(msg.get("call").and_then(Value::as_u64));
            let message = msg.get("msg").and_then(Value::as_str).unwrap_or_default();
            self.host.log(
                level.as_str().unwrap_or("info"),
                message,
                context.as_deref(),
            );
        } else if let Some(cb) = msg.get("cb").and_then(Value::as_u64) {
            self.on_callback(cb, msg);
        } else if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let outcome = if let Some(ok) = msg.remove("ok") {
                Ok(Ok(ok))
            } else if let Some(error) = msg.remove("error") {
                serde_json::from_value(error).map(Err).map_err(|e| {
                    RunnerError::Protocol(format!("{}: malformed error reply: {e}", self.label))
                })
            } else {
                Err(RunnerError::Protocol(format!(
                    "{}: reply {id} has neither ok nor error",
                    self.label
                )))
            };
            // No one waiting: the caller gave up (its future was dropped).
            let pending = lock(&self.calls).take(id, &self.idle);
            if let Some(pending) = pending {
                let _ = pending.reply.send(outcome);
            }
        } else {
            tracing::warn!(
                "{}: ignoring a message from the runner that is no reply, callback or log line: {}",
                self.label,
                serde_json::Value::Object(msg)
            );
        }
    }

    fn on_callback(self: &Arc<Self>, cb: u64, mut msg: Map<String, Value>) {
        let context = self.context_of(msg.get("call").and_then(Value::as_u64));
        let api = msg.get("api").and_then(Value::as_str).map(str::to_string);
        let args = match msg.remove("args") {
            Some(Value::Array(args)) => Some(args),
            None | Some(Value::Null) => Some(Vec::new()),
            Some(_) => None,
        };
        let shared = self.clone();
        // Its own task: a callback may take long (a durable commit, a service call), and
        // the reader must keep delivering replies meanwhile.
        tokio::spawn(async move {
            let result = match (api, args) {
                (Some(api), Some(args)) => {
                    let context = context.map(|c| (*c).clone()).unwrap_or(Value::Null);
                    let host = shared.host.clone();
                    let what = api.clone();
                    // Its own task again, so a panicking host still answers user code,
                    // which would otherwise wait forever.
                    match tokio::spawn(async move { host.callback(context, api, args).await }).await
                    {
                        Ok(result) => result,
                        Err(e) => Err(CallbackError::new(
                            "INTERNAL-ERROR",
                            format!("the host failed while handling {what}: {e}"),
                        )),
                    }
                }
                _ => Err(CallbackError::new(
                    PROTOCOL_ERROR,
                    "a callback needs a string api and an array of args",
                )),
            };
            let reply = match result {
                Ok(value) => serde_json::json!({"cb": cb, "ok": value}),
                Err(e) => serde_json::json!({"cb": cb, "error": {"err": e.err, "desc": e.desc}}),
            };
            match serde_json::to_vec(&reply) {
                Ok(mut line) => {
                    line.push(b'\n');
                    // Fails only when the runner is gone, and then no one waits for this.
                    let _ = shared.out.send(Out::Line(line)).await;
                }
                Err(e) => tracing::error!("{}: cannot encode a callback reply: {e}", shared.label),
            }
        });
    }

    /// The runner closed its stdout: it is exiting. Every waiting call learns how it ended.
    async fn on_eof(&self) {
        let mut exit = self.exit.clone();
        let exited = tokio::time::timeout(EXIT_AFTER_EOF, exit.wait_for(Option::is_some))
            .await
            .map(|_| ());
        if exited.is_err() {
            tracing::warn!(
                "{}: the Python runner closed its output but is still running; killing it",
                self.label
            );
            let _ = self.kill.send(());
            let _ = exit.wait_for(Option::is_some).await.map(|_| ());
        }
        let how = self
            .exit
            .borrow()
            .clone()
            .unwrap_or_else(|| "closed its output".to_string());
        let waiting = {
            let mut calls = lock(&self.calls);
            calls.gone = Some(how.clone());
            self.idle.notify_waiters();
            std::mem::take(&mut calls.waiting)
        };
        for pending in waiting.into_values() {
            let _ = pending.reply.send(Err(RunnerError::Died {
                label: self.label.clone(),
                how: how.clone(),
            }));
        }
    }
}

async fn read_replies(stdout: ChildStdout, shared: Arc<Shared>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => shared.on_line(&line),
            Err(e) => {
                tracing::warn!("{}: cannot read from the Python runner: {e}", shared.label);
                break;
            }
        }
    }
    shared.on_eof().await;
}

async fn write_requests(stdin: ChildStdin, mut queue: mpsc::Receiver<Out>, label: String) {
    let mut writer = BufWriter::with_capacity(64 * 1024, stdin);
    // Writes whatever is queued, then flushes once: many callers share each write.
    'run: while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(out) = next {
            match out {
                Out::Line(line) => {
                    if let Err(e) = writer.write_all(&line).await {
                        tracing::debug!("{label}: cannot write to the Python runner: {e}");
                        break 'run;
                    }
                }
                Out::Close => {
                    let _ = writer.flush().await;
                    break 'run;
                }
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = writer.flush().await {
            tracing::debug!("{label}: cannot write to the Python runner: {e}");
            break;
        }
    }
    // Dropping the writer closes the runner's stdin: EOF tells it to finish and exit.
}

async fn forward_stderr(stderr: ChildStderr, label: String, tail: oneshot::Sender<String>) {
    // The last lines, for the error when the runner dies while starting.
    let mut last: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        tracing::info!("{label}: {text}");
        if last.len() == 5 {
            last.pop_front();
        }
        last.push_back(text.to_string());
        line.clear();
    }
    let _ = tail.send(Vec::from(last).join(" | "));
}

async fn wait_for_exit(
    mut child: Child,
    mut kill: mpsc::UnboundedReceiver<()>,
    exit: watch::Sender<Option<String>>,
    keepalive: std::sync::mpsc::Sender<()>,
) {
    let how = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => describe_exit(status),
                Err(e) => format!("could not be waited for: {e}"),
            },
            Some(()) = kill.recv() => {
                // Only the task that reaps the child signals it: its pid cannot have been
                // reused by then.
                let _ = child.start_kill();
            }
        }
    };
    let _ = exit.send(Some(how));
    drop(keepalive);
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(n) => match nix::sys::signal::Signal::try_from(n) {
            Ok(signal) => format!("was killed by signal {n} ({signal})"),
            Err(_) => format!("was killed by signal {n}"),
        },
        None => format!("ended ({status})"),
    }
}

/// Spawns the runner from a thread that lives exactly as long as the runner.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the
/// process, and tokio ends idle blocking threads (a worker that ran `block_in_place`
/// becomes one), so spawning from whatever thread runs this future could kill the runner
/// at a random moment. The thread parks until `wait_for_exit` drops the returned sender.
async fn spawn_tied(mut cmd: Command) -> std::io::Result<(Child, std::sync::mpsc::Sender<()>)> {
    let runtime = tokio::runtime::Handle::current();
    let (spawned_tx, spawned) = oneshot::channel();
    let (keepalive, parked) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sluice-runner-parent".into())
        .spawn(move || {
            let child = {
                let _runtime = runtime.enter();
                cmd.spawn()
            };
            let ok = child.is_ok();
            // If start() was abandoned meanwhile, the child comes back and is dropped
            // here, which kills it (kill_on_drop).
            if spawned_tx.send(child).is_ok() && ok {
                let _ = parked.recv();
            }
        })?;
    let child = spawned
        .await
        .map_err(|_| std::io::Error::other("the thread spawning the runner ended"))??;
    Ok((child, keepalive))
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec; it makes two system calls
    // (prctl, getppid) and does not allocate or take locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died before prctl took effect; nobody would signal us.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

fn holds_runner(dir: &Path) -> bool {
    dir.join("sluice_runner").join("__main__.py").is_file()
}

/// How a [`Host`] reaches the engine that owns its runner. The runner needs its host
/// before the engine (which holds the runner) exists, so the host keeps a weak slot that
/// is filled once the engine is built, and empty again once it is gone.
pub struct EngineSlot<T>(Mutex<std::sync::Weak<T>>);

impl<T> Default for EngineSlot<T> {
    fn default() -> Self {
        EngineSlot(Mutex::new(std::sync::Weak::new()))
    }
}

impl<T> EngineSlot<T> {
    pub fn attach(&self, engine: &Arc<T>) {
        *lock(&self.0) = Arc::downgrade(engine);
    }

    /// The engine, while it exists.
    pub fn get(&self) -> Option<Arc<T>> {
        lock(&self.0).upgrade()
    }
}

/// The module name interface code is loaded under: `PREFIX_NAME_VERSION_HASH8`, with
/// every character Python does not allow in a name replaced, and the code hash's start so
/// that new code (a reset) loads as a new module beside the old.
pub fn module_name(prefix: &str, name: &str, version: &str, code_hash: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    let hash8: String = code_hash.chars().take(8).collect();
    format!("{prefix}_{}_{}_{hash8}", clean(name), clean(version))
}

/// Finds the python/ directory: `$OMQ_DIR/python` if it holds `sluice_runner`, else
/// `<bin_dir>/../share/sluice/python`, else the source tree (`<bin_dir>/../../python`, for
/// target/debug and target/release), else None.
pub fn locate_python_dir(home_root: &Path, bin_dir: &Path) -> Option<PathBuf> {
    [
        home_root.join("python"),
        bin_dir.join("../share/sluice/python"),
        bin_dir.join("../../python"),
    ]
    .into_iter()
    .find(|dir| holds_runner(dir))
}
