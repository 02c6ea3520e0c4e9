//! Harness for Sluice's end-to-end tests: real binaries, real processes, real databases.
//!
//! Each [`Instance`] is one `$OMQ_DIR` in its own temporary directory. Processes started
//! from it write stdout/stderr to files there; tests wait for log lines by polling, stop
//! processes with SIGTERM then SIGKILL after a grace period, and when an instance is dropped
//! the harness prints each process's command line, exit status, stderr tail and log tail
//! (the test runner shows them only for a test that failed).

pub mod api;
pub mod flow;
pub mod gateway_node;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Environment variable naming a PostgreSQL server for the PostgreSQL variants.
pub const PG_URL_ENV: &str = "SLUICE_TEST_PG_URL";

/// Directory holding the built binaries: the test executable lives in `target/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    match deps.file_name() {
        Some(name) if name == "deps" => deps.parent().map(Path::to_path_buf).unwrap_or(deps),
        _ => deps,
    }
}

/// Path of a built binary; fails with a hint when it has not been built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the binaries first (`cargo build --workspace --bins`; \
             scripts/test does it)",
            path.display()
        );
    }
    Ok(path)
}

/// Which system database an instance uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A database created for this test on the server at `SLUICE_TEST_PG_URL`, dropped
    /// when the instance is dropped.
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl Backend {
    /// The PostgreSQL backend with a fresh database, or `None` (printing why) when
    /// `SLUICE_TEST_PG_URL` is unset.
    pub async fn postgres() -> Result<Option<Backend>> {
        let Ok(admin_url) = std::env::var(PG_URL_ENV) else {
            eprintln!("{PG_URL_ENV} not set; skipping the PostgreSQL variant of this test");
            return Ok(None);
        };
        let name = format!("sluice_e2e_{:016x}", rand::random::<u64>());
        let mut conn = pg_connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("create database {name}"))?;
        Ok(Some(Backend::Postgres { admin_url, name }))
    }

    fn option_value(&self, home: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite:{}", home.join("var/sluice.db").display()),
            Backend::Postgres { admin_url, name } => replace_db(admin_url, name),
        }
    }
}

async fn pg_connect(url: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connect to PostgreSQL at {PG_URL_ENV}"))
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Runs each async scenario `fn(Backend) -> Result<()>` as two tests, `NAME::sqlite` and
/// `NAME::postgres`; the second passes without running when `SLUICE_TEST_PG_URL` is unset.
/// A leading parenthesized group goes to `#[tokio::test ...]`, e.g. the runtime's flavor:
/// `on_both!((flavor = "multi_thread") name => scenario, other => scenario2);`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident => $scenario:ident),+ $(,)?) => {
        $crate::on_both!(() $($name => $scenario),+);
    };
    ($test_args:tt $($name:ident => $scenario:ident),+ $(,)?) => {
        $(
            mod $name {
                #[::tokio::test $test_args]
                async fn sqlite() -> ::anyhow::Result<()> {
                    super::$scenario($crate::Backend::Sqlite).await
                }

                #[::tokio::test $test_args]
                async fn postgres() -> ::anyhow::Result<()> {
                    match $crate::Backend::postgres().await? {
                        Some(backend) => super::$scenario(backend).await,
                        None => Ok(()),
                    }
                }
            }
        )+
    };
}

/// [`on_both!`] for tests named `SQLITE` and `PG` side by side rather than in a module:
/// `on_both_backends!(a_sqlite, a_postgres => a; b_sqlite, b_postgres => b);`.
#[macro_export]
macro_rules! on_both_backends {
    ($($sqlite:ident, $pg:ident => $scenario:ident);+ $(;)?) => {
        $(
            #[::tokio::test]
            async fn $sqlite() -> ::anyhow::Result<()> {
                $scenario($crate::Backend::Sqlite).await
            }

            #[::tokio::test]
            async fn $pg() -> ::anyhow::Result<()> {
                match $crate::Backend::postgres().await? {
                    Some(backend) => $scenario(backend).await,
                    None => Ok(()),
                }
            }
        )+
    };
}

/// Direct access to an instance's system database, independent of Sluice's store code,
/// so tests check what is really committed.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn execute(&self, sql: &str) -> Result<u64> {
        Ok(match self {
            Db::Sqlite(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
            Db::Postgres(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
        })
    }

    pub async fn scalar_i64(&self, sql: &str) -> Result<i64> {
        Ok(match self {
            Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
            Db::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
        })
    }

    pub async fn strings(&self, sql: &str) -> Result<Vec<String>> {
        Ok(match self {
            Db::Sqlite(p) => sqlx::query_scalar::<_, String>(sql).fetch_all(p).await?,
            Db::Postgres(p) => sqlx::query_scalar::<_, String>(sql).fetch_all(p).await?,
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// One instance home with its options file and the processes started from it.
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The `qorus.instance-key`, which names the log files.
    pub key: String,
    /// Extra environment for every process this instance starts.
    pub env: Vec<(String, String)>,
    procs: Vec<Proc>,
}

/// A process started by the harness.
pub struct Proc {
    pub name: String,
    pub command: String,
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub status: Option<ExitStatus>,
}

impl Instance {
    /// A new instance home using `backend`, with the given extra option lines.
    pub fn new(backend: Backend, instance_key: &str, extra_options: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("sluice-e2e-").tempdir()?;
        fs::create_dir_all(dir.path().join("etc"))?;
        // Its own cluster API and HTTP ports, so parallel tests never collide on the
        // defaults (8002, and the gateway's 8001).
        let cluster_port = free_port();
        let http_port = (0..100)
            .map(|_| free_port())
            .find(|p| *p != cluster_port)
            .unwrap_or(0);
        let base = format!(
            "# written by the e2e harness\nqorus.instance-key: {instance_key}\nqorus.systemdb: {}\n\
             qorus.cluster-api: tcp://127.0.0.1:{cluster_port}\nqorus.http-server: 127.0.0.1:{http_port}\n",
            backend.option_value(dir.path()),
        );
        // The key first, from the base options: the extra lines may be deliberately bad.
        fs::write(dir.path().join("etc/options"), &base)?;
        let out = Command::new(bin("sluice")?)
            .args(["keys", "init"])
            .env("OMQ_DIR", dir.path())
            .output()?;
        if !out.status.success() {
            bail!(
                "sluice keys init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut text = base;
        for line in extra_options {
            text.push_str(line);
            text.push('\n');
        }
        fs::write(dir.path().join("etc/options"), text)?;
        Ok(Self {
            dir,
            backend,
            key: instance_key.to_string(),
            env: Vec::new(),
            procs: Vec::new(),
        })
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn options_file(&self) -> PathBuf {
        self.home().join("etc/options")
    }

    pub fn log_file(&self, instance_key: &str, process: &str) -> PathBuf {
        self.home()
            .join(format!("log/{instance_key}-{process}.log"))
    }

    /// The text of a process's log, empty until the process has written one.
    pub fn log(&self, process: &str) -> String {
        fs::read_to_string(self.log_file(&self.key, process)).unwrap_or_default()
    }

    /// Waits until `process`'s log contains `text`; the error shows that log and the end of
    /// the master's, which says whether the process ever started.
    pub fn wait_log(&self, process: &str, text: &str, timeout: Duration) -> Result<()> {
        eventually(timeout, &format!("{text:?} in the {process} log"), || {
            self.log(process).contains(text).then_some(())
        })
        .with_context(|| {
            format!(
                "master log:\n{}\n{process} log:\n{}",
                tail(&self.log_file(&self.key, "master"), 40),
                self.log(process)
            )
        })
    }

    /// Starts a master that is expected to refuse to start; its exit status and stderr.
    pub fn refused_start(
        &mut self,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(ExitStatus, String)> {
        let m = self.start_master(args)?;
        let status = self.wait_exit(m, timeout)?;
        Ok((status, self.stderr(m)))
    }

    /// Starts a binary with `OMQ_DIR` pointing at this instance; returns its index.
    pub fn spawn(&mut self, binary: &str, args: &[&str]) -> Result<usize> {
        let path = bin(binary)?;
        let n = self.procs.len();
        let stdout = self.home().join(format!("{binary}.{n}.stdout"));
        let stderr = self.home().join(format!("{binary}.{n}.stderr"));
        let child = Command::new(&path)
            .args(args)
            .env("OMQ_DIR", self.home())
            .env_remove("SLUICE_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout)?)
            .stderr(fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("spawn {}", path.display()))?;
        self.procs.push(Proc {
            name: binary.to_string(),
            command: format!("{} {}", path.display(), args.join(" ")),
            child,
            stdout,
            stderr,
            status: None,
        });
        Ok(n)
    }

    /// Starts `sluice-master` with `args`.
    pub fn start_master(&mut self, args: &[&str]) -> Result<usize> {
        self.spawn("sluice-master", args)
    }

    pub fn proc(&mut self, i: usize) -> &mut Proc {
        &mut self.procs[i]
    }

    pub fn pid(&self, i: usize) -> i32 {
        self.procs[i].child.id() as i32
    }

    pub fn stderr(&self, i: usize) -> String {
        fs::read_to_string(&self.procs[i].stderr).unwrap_or_default()
    }

    /// Waits until `file` contains `needle` (polling), or fails with the file's tail.
    pub fn wait_for_text(
        &mut self,
        i: usize,
        file: &Path,
        needle: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if fs::read_to_string(file)
                .unwrap_or_default()
                .contains(needle)
            {
                return Ok(());
            }
            if let Some(status) = self.try_status(i)? {
                // One last look: the line may have been written just before exit.
                if fs::read_to_string(file)
                    .unwrap_or_default()
                    .contains(needle)
                {
                    return Ok(());
                }
                bail!(
                    "{} exited ({status}) before writing {needle:?}; its stderr ends:\n{}",
                    self.procs[i].name,
                    tail(&self.procs[i].stderr, 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {needle:?} in {}; it ends:\n{}",
                    file.display(),
                    tail(file, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the master's readiness line (the `SYSTEM_STARTUP` event) on its stderr.
    pub fn wait_ready(&mut self, i: usize) -> Result<()> {
        let stderr = self.procs[i].stderr.clone();
        self.wait_for_text(i, &stderr, "event SYSTEM_STARTUP", Duration::from_secs(30))
    }

    pub fn try_status(&mut self, i: usize) -> Result<Option<ExitStatus>> {
        let p = &mut self.procs[i];
        if p.status.is_none() {
            p.status = p.child.try_wait()?;
        }
        Ok(p.status)
    }

    pub fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid(i)), sig).map_err(|e| anyhow!("kill {sig}: {e}"))
    }

    /// Waits for exit; fails (after SIGKILL) when it takes longer than `timeout`.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status(i)? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.signal(i, Signal::SIGKILL);
                self.dump();
                bail!("{} did not exit within {timeout:?}", self.procs[i].name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, i: usize, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_status(i)? {
            return Ok(status);
        }
        self.signal(i, Signal::SIGTERM)?;
        self.wait_exit(i, grace)
    }

    /// Opens the instance's system database for direct checks.
    pub async fn db(&self) -> Result<Db> {
        Ok(match &self.backend {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.home().join("var/sluice.db"))
                    .busy_timeout(Duration::from_secs(10));
                Db::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(opts)
                        .await?,
                )
            }
            Backend::Postgres { admin_url, name } => Db::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&replace_db(admin_url, name))
                    .await?,
            ),
        })
    }

    /// Prints what a failing test needs to see: every process's command, status, stderr
    /// and log tails.
    pub fn dump(&mut self) {
        eprintln!(
            "---- e2e instance {} ({} process(es) started)",
            self.home().display(),
            self.procs.len()
        );
        for i in 0..self.procs.len() {
            let status = self.try_status(i).ok().flatten();
            let p = &self.procs[i];
            eprintln!("---- process {i}: {} (status {status:?})", p.command);
            eprintln!("---- stderr tail:\n{}", tail(&p.stderr, 40));
        }
        if let Ok(entries) = fs::read_dir(self.home().join("log")) {
            for entry in entries.flatten() {
                eprintln!(
                    "---- log {} tail:\n{}",
                    entry.path().display(),
                    tail(&entry.path(), 40)
                );
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Always: a test that fails by returning `Err` has dropped its instance before the
        // failure is known, and nextest (like libtest) prints a test's output only when
        // the test fails.
        self.dump();
        for p in &mut self.procs {
            if p.status.is_none() && matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        if let Backend::Postgres { admin_url, name } = &self.backend {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside or outside a runtime; a dedicated thread works in both.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(mut conn) = pg_connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// A directory of the test fixtures, `tests/fixtures/NAME`.
pub fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A directory of the shipped examples, `deploy/examples/NAME`: tests load them as users do.
pub fn examples(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name)
}

/// The definition files (`*.yaml`) in `dir`, sorted so that every run loads them in the
/// same order.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Asserts that `needles` occur in `haystack` in this order.
pub fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!(
                "expected {needle:?} after position {from} (in order {needles:?}) in:\n{haystack}"
            ),
        }
    }
}

/// Asserts that each of `needles` occurs in `haystack`, in any order.
#[track_caller]
pub fn assert_contains_all(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "missing {needle:?} in:\n{haystack}"
        );
    }
}

/// Ports the harness hands out: below the kernel's ephemeral range (32768-60999 on
/// Linux), so no outgoing connection of a parallel test (to PostgreSQL, to a gateway) can
/// take one between the moment it is chosen and the moment a Sluice process binds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Locks on the ports this test process reserved, held until it exits. One lock file
/// per port in a directory every test process shares, so two parallel tests never get
/// the same port.
static RESERVED_PORTS: std::sync::Mutex<Vec<nix::fcntl::Flock<fs::File>>> =
    std::sync::Mutex::new(Vec::new());

/// A TCP port on 127.0.0.1 that is free and reserved for this test process: no other
/// test gets it while this one runs (see [`TEST_PORTS`]). Falls back to a port the
/// kernel picks when the reservation directory cannot be used.
pub fn free_port() -> u16 {
    use nix::fcntl::{Flock, FlockArg};
    use rand::Rng;

    let dir = std::env::temp_dir().join("sluice-e2e-ports");
    if fs::create_dir_all(&dir).is_ok() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let port = rng.random_range(TEST_PORTS);
            let Ok(file) = fs::File::create(dir.join(port.to_string())) else {
                continue;
            };
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue; // another test process holds it
            };
            // A port that a process outside the harness listens on is skipped too.
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            if let Ok(mut held) = RESERVED_PORTS.lock() {
                held.push(lock);
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Whether a process is still running (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of the running process with this network id, from the master's log lines
/// (`started BINARY` / `adopted`) — the log is the operator's view, so tests use it too.
pub fn child_pid_from_log(log: &str, network_id: &str) -> Option<i32> {
    log.lines()
        .rev()
        .filter(|l| {
            l.contains(&format!("network_id={network_id}"))
                || l.contains(&format!("network_id=\"{network_id}\""))
        })
        .find(|l| l.contains("started sluice-") || l.contains("adopted a running"))
        .and_then(|l| leading_number(&l[l.find("pid=")? + 4..]))
}

/// The number `text` starts with, as in the rest of a log line after `pid `.
pub fn leading_number(text: &str) -> Option<i32> {
    text.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

impl Instance {
    /// A client certificate registered for user `admin`, made on first use: what cluster
    /// API commands (`sluice status --key FILE`, `sluice order ...`) authenticate with.
    pub fn admin_key(&self) -> Result<PathBuf> {
        let path = self.home().join("admin.cert");
        if path.exists() {
            return Ok(path);
        }
        let out = self.sluice(&["keys", "gen", "--out", &path.display().to_string()])?;
        if !out.status.success() {
            bail!("sluice keys gen: {}", output_text(&out));
        }
        let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = self.sluice(&["keys", "register", "admin", &public])?;
        if !out.status.success() {
            bail!("sluice keys register: {}", output_text(&out));
        }
        Ok(path)
    }

    /// Runs `sluice` and requires success; its stdout and stderr.
    pub fn sluice_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.sluice(args)?;
        let text = output_text(&out);
        if !out.status.success() {
            bail!("sluice {} failed:\n{text}", args.join(" "));
        }
        Ok(text)
    }

    /// `sluice --key ADMIN-KEY ARGS`: a command over the cluster API, as user `admin`.
    pub fn admin_cli(&self, args: &[&str]) -> Result<std::process::Output> {
        let key = self.admin_key()?.display().to_string();
        let mut all = vec!["--key", key.as_str()];
        all.extend_from_slice(args);
        self.sluice(&all)
    }

    /// `sluice schema create`, which must succeed.
    pub fn create_schema(&self) -> Result<()> {
        self.sluice_ok(&["schema", "create"]).map(drop)
    }

    /// `sluice load FILES`, whether it succeeds or not.
    pub fn load_output(&self, files: &[PathBuf]) -> Result<std::process::Output> {
        let mut args = vec!["load".to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sluice(&args)
    }

    /// `sluice load FILES`, which must succeed.
    pub fn load(&self, files: &[PathBuf]) -> Result<()> {
        let out = self.load_output(files)?;
        if !out.status.success() {
            bail!("sluice load: {}", output_text(&out));
        }
        Ok(())
    }

    /// Runs the `sluice` CLI against this instance and returns its output.
    pub fn sluice(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(bin("sluice")?)
            .args(args)
            .env("OMQ_DIR", self.home())
            .output()?)
    }
}

/// A command's stdout and stderr, for assertions and failure messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
