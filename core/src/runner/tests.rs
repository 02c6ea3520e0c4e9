//! Tests against a real `python3` running `python/sluice_runner`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python")
}

/// One recorded callback: the call's context, the api and its arguments.
type Recorded = (Value, String, Vec<Value>);

#[derive(Default)]
struct TestHost {
    callbacks: Mutex<Vec<Recorded>>,
    logs: Mutex<Vec<(String, String, Option<Value>)>>,
}

impl TestHost {
    fn callbacks(&self) -> Vec<Recorded> {
        lock(&self.callbacks).clone()
    }

    fn logged(&self, needle: &str) -> bool {
        lock(&self.logs).iter().any(|(_, m, _)| m.contains(needle))
    }
}

impl Host for TestHost {
    fn callback(&self, call_context: Value, api: String, args: Vec<Value>) -> CallbackFuture {
        lock(&self.callbacks).push((call_context, api.clone(), args.clone()));
        Box::pin(async move {
            match api.as_str() {
                "updateDynamicData" | "deleteDynamicDataKey" | "setOrderKeys" | "saveStateData" => {
                    Ok(Value::Null)
                }
                "createOrder" if args.first() == Some(&json!("MISSING")) => Err(
                    CallbackError::new("WORKFLOW-NOT-FOUND", "no workflow MISSING"),
                ),
                "createOrder" => Ok(json!(4242)),
                // Answers late, so callbacks of concurrent calls overlap.
                "callService" => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(json!({"echo": args.get(2).cloned().unwrap_or(Value::Null)}))
                }
                "panic" => panic!("host bug"),
                _ => Err(CallbackError::new("UNKNOWN-API", api)),
            }
        })
    }

    fn log(&self, level: &str, message: &str, call_context: Option<&Value>) {
        lock(&self.logs).push((
            level.to_string(),
            message.to_string(),
            call_context.cloned(),
        ));
    }
}

async fn start_with(workers: usize) -> (Runner, Arc<TestHost>) {
    let host = Arc::new(TestHost::default());
    let config = RunnerConfig {
        python: "python3".into(),
        python_dir: python_dir(),
        label: "test".into(),
        workers,
    };
    let runner = Runner::start(config, host.clone())
        .await
        .expect("runner starts");
    (runner, host)
}

async fn start() -> (Runner, Arc<TestHost>) {
    start_with(DEFAULT_WORKERS).await
}

const STEP: &str = r#"
import time
from wf import QorusNormalStep, StepError

class Reserve(QorusNormalStep):
    def primary(self):
        order = self.getStaticData()
        UserApi.logInfo("reserving %s", order["sku"])
        self.updateDynamicData({"reserved": True, "n": 1})
        return {
            "sku": self.getStaticData("sku"),
            "dynamic": self.getDynamicData(),
            "reserved": self.getDynamicData("reserved"),
            "keys": self.getOrderKeys(),
            "key": self.getOrderKey("customer"),
            "wfiid": self.getWfiid(),
            "stepid": self.getStepId(),
        }

    def validation(self):
        return "COMPLETE"

    def echo(self, *args):
        return list(args)

    def fail(self):
        order = {}
        return order["sku"]

    def named(self):
        raise StepError("STOCK-ERROR", "nothing left", {"sku": "A1"})

    def order(self, workflow):
        return UserApi.createOrder(workflow, {"staticdata": {"x": 1}})

    def caught(self):
        try:
            UserApi.createOrder("MISSING", {})
        except Exception as e:
            return [type(e).__name__, e.err]

    def unserialisable(self):
        return {1, 2, 3}

    def slow(self, secs):
        UserApi.logInfo("sleeping")
        time.sleep(secs)
        return "slept"

    def service(self, n):
        time.sleep(0.2)
        return UserApi.callService("echo", "m", n)["echo"] * 2

    def noisy(self):
        import os
        print("to stdout")
        os.system("echo from a subprocess")
        return "quiet"

    def hostbug(self):
        from sluice_runner import context
        return context.callback("panic", [])

    def slow_update(self, secs):
        UserApi.logInfo("sleeping")
        time.sleep(secs)
        self.updateDynamicData({"done": True})
        return "updated"
"#;

fn step_context() -> Value {
    json!({
        "wfiid": 17, "stepid": 3, "stepname": "Reserve", "ind": 0, "retries": 0,
        "staticdata": {"sku": "A1", "qty": 2},
        "dynamicdata": {"old": "x"},
        "keys": {"customer": "C9"},
    })
}

async fn loaded() -> (Runner, Arc<TestHost>) {
    let (runner, host) = start().await;
    let info = runner
        .load("step_Reserve_1_0_abcd1234", "Reserve", STEP)
        .await
        .expect("loads");
    assert_eq!(info.base, "QorusNormalStep");
    assert!(info.has("primary") && info.has("validation"));
    assert!(
        !info.has("getStaticData"),
        "API methods of the base are not the class's: {info:?}"
    );
    (runner, host)
}

async fn call(runner: &Runner, method: &str, args: Vec<Value>) -> Result<Value, UserError> {
    runner
        .call("Reserve", method, args, step_context())
        .await
        .expect("runner alive")
}

#[tokio::test]
async fn runner_load_and_call_return_values() {
    let (runner, _) = loaded().await;
    assert_eq!(
        call(&runner, "validation", vec![]).await,
        Ok(json!("COMPLETE"))
    );
    assert_eq!(
        call(&runner, "echo", vec![json!(1), json!({"a": [null, "é"]})]).await,
        Ok(json!([1, {"a": [null, "é"]}]))
    );
    let ping = runner.ping().await.expect("ping");
    assert_eq!(ping["pid"], json!(runner.pid().expect("alive")));
    assert!(ping["python"].as_str().is_some_and(|v| v.starts_with('3')));
}

#[tokio::test]
async fn runner_step_api_reads_context_and_commits_through_host() {
    let (runner, host) = loaded().await;
    let result = call(&runner, "primary", vec![])
        .await
        .expect("primary returns");
    assert_eq!(
        result,
        json!({
            "sku": "A1",
            // The update reached the local copy after the host accepted it.
            "dynamic": {"old": "x", "reserved": true, "n": 1},
            "reserved": true,
            "keys": {"customer": "C9"},
            "key": "C9",
            "wfiid": 17,
            "stepid": 3,
        })
    );
    let callbacks = host.callbacks();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    let (context, api, args) = &callbacks[0];
    assert_eq!(api, "updateDynamicData");
    assert_eq!(args, &vec![json!({"reserved": true, "n": 1})]);
    assert_eq!(
        context["wfiid"],
        json!(17),
        "the host learns which call asked"
    );
    let logs = lock(&host.logs).clone();
    assert!(
        logs.iter().any(|(level, msg, ctx)| level == "info"
            && msg == "reserving A1"
            && ctx.as_ref().is_some_and(|c| c["stepid"] == json!(3))),
        "{logs:?}"
    );
}

#[tokio::test]
async fn runner_user_exception_becomes_user_error() {
    let (runner, _) = loaded().await;
    let e = call(&runner, "fail", vec![]).await.expect_err("raises");
    assert_eq!(e.r#type, "KeyError");
    assert_eq!(e.message, "'sku'");
    // The user's file and line, with the source text, and none of the runner's frames.
    assert!(
        e.traceback
            .contains("step_Reserve_1_0_abcd1234.py\", line 28, in fail"),
        "{}",
        e.traceback
    );
    assert!(
        e.traceback.contains("return order[\"sku\"]"),
        "{}",
        e.traceback
    );
    assert!(!e.traceback.contains("server.py"), "{}", e.traceback);

    let e = call(&runner, "named", vec![]).await.expect_err("raises");
    assert_eq!(
        (e.r#type.as_str(), e.message.as_str()),
        ("STOCK-ERROR", "nothing left")
    );
    assert_eq!(e.info, json!({"sku": "A1"}));

    let e = call(&runner, "nosuch", vec![])
        .await
        .expect_err("no such method");
    assert_eq!(e.r#type, METHOD_NOT_FOUND);
    let e = runner
        .call("Nobody", "primary", vec![], json!({}))
        .await
        .expect("runner alive")
        .expect_err("no such class");
    assert_eq!(e.r#type, CLASS_NOT_FOUND);
}

#[tokio::test]
async fn runner_refused_callback_raises_the_hosts_error_in_user_code() {
    let (runner, host) = loaded().await;
    assert_eq!(
        call(&runner, "order", vec![json!("ORDERS")]).await,
        Ok(json!(4242))
    );
    let e = call(&runner, "order", vec![json!("MISSING")])
        .await
        .expect_err("refused");
    assert_eq!(
        (e.r#type.as_str(), e.message.as_str()),
        ("WORKFLOW-NOT-FOUND", "no workflow MISSING")
    );
    // The traceback ends at the user's line, not inside the API.
    assert!(e.traceback.contains("in order\n"), "{}", e.traceback);
    assert!(!e.traceback.contains("context.py"), "{}", e.traceback);
    assert_eq!(
        call(&runner, "caught", vec![]).await,
        Ok(json!(["QorusException", "WORKFLOW-NOT-FOUND"]))
    );
    let e = call(&runner, "hostbug", vec![])
        .await
        .expect_err("host panicked");
    assert_eq!(e.r#type, "INTERNAL-ERROR");
    let (_, api, args) = &host.callbacks()[0];
    assert_eq!(
        (api.as_str(), args),
        (
            "createOrder",
            &vec![
                json!("ORDERS"),
                json!({"staticdata": {"x": 1}}),
                Value::Null
            ]
        )
    );
}

#[tokio::test]
async fn runner_load_errors_are_user_errors() {
    let (runner, _) = start().await;
    match runner
        .load(
            "bad_1",
            "Bad",
            "class Bad:\n    def primary(self)\n        pass\n",
        )
        .await
    {
        Err(RunnerError::User(e)) => {
            assert_eq!(e.r#type, "SyntaxError");
            assert!(e.message.contains("bad_1.py, line 2"), "{e}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match runner
        .load("bad_2", "Bad", "import no_such_module_here\n")
        .await
    {
        Err(RunnerError::User(e)) => {
            assert_eq!(e.r#type, "ModuleNotFoundError");
            assert!(e.message.contains("no_such_module_here"), "{e}");
        }
        other => panic!("expected an import error, got {other:?}"),
    }
    match runner.load("bad_3", "Bad", "class Good: pass\n").await {
        Err(RunnerError::User(e)) => assert_eq!(e.r#type, CLASS_NOT_FOUND),
        other => panic!("expected a missing class, got {other:?}"),
    }
    // The runner is unharmed, and a reload replaces the class.
    runner
        .load("m", "C", "class C:\n    def v(self): return 1\n")
        .await
        .expect("loads");
    runner
        .load("m", "C", "class C:\n    def v(self): return 2\n")
        .await
        .expect("reloads");
    assert_eq!(
        runner
            .call("C", "v", vec![], json!({}))
            .await
            .expect("alive"),
        Ok(json!(2))
    );
}

#[tokio::test]
async fn runner_unserialisable_result_is_an_error_not_a_crash() {
    let (runner, _) = loaded().await;
    let e = call(&runner, "unserialisable", vec![])
        .await
        .expect_err("not JSON");
    assert_eq!(e.r#type, SERIALIZATION_ERROR);
    assert!(e.message.contains("Reserve.unserialisable"), "{e}");
    // Output to stdout from user code and its subprocesses cannot corrupt the protocol.
    assert_eq!(call(&runner, "noisy", vec![]).await, Ok(json!("quiet")));
    assert_eq!(
        call(&runner, "validation", vec![]).await,
        Ok(json!("COMPLETE"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runner_pipelines_many_calls_and_slow_ones_do_not_block() {
    let (runner, _) = start_with(256).await;
    runner
        .load("step_Reserve_1_0_abcd1234", "Reserve", STEP)
        .await
        .expect("loads");

    // 200 calls that each sleep 0.2 s and make a callback the host answers late: run one
    // after another they would take over 40 s.
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..200 {
        let runner = runner.clone();
        calls.spawn(async move { (n, call(&runner, "service", vec![json!(n)]).await) });
    }
    while let Some(joined) = calls.join_next().await {
        let (n, result) = joined.expect("task");
        assert_eq!(
            result,
            Ok(json!(n * 2)),
            "call {n} got another call's answer"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let slow = tokio::spawn({
        let runner = runner.clone();
        async move { call(&runner, "slow", vec![json!(3)]).await }
    });
    let fast_started = Instant::now();
    for n in 0..20 {
        assert_eq!(call(&runner, "echo", vec![json!(n)]).await, Ok(json!([n])));
    }
    assert!(
        fast_started.elapsed() < Duration::from_secs(2),
        "fast calls waited for the slow one"
    );
    assert!(!slow.is_finished());
    assert_eq!(slow.await.expect("task"), Ok(json!("slept")));
}

#[tokio::test]
async fn runner_killed_mid_call_resolves_calls_as_died() {
    let (runner, host) = loaded().await;
    let pid = runner.pid().expect("alive");
    let in_flight = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .call("Reserve", "slow", vec![json!(60)], step_context())
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host.logged("sleeping") {
        assert!(Instant::now() < deadline, "the slow call never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Instant::now();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");

    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the call resolves promptly")
        .expect("task");
    match outcome {
        Err(RunnerError::Died { how, .. }) => assert!(how.contains("SIGKILL"), "{how}"),
        other => panic!("expected Died, got {other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), runner.exited())
        .await
        .expect("exited() resolves");
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert!(!runner.is_alive() && runner.pid().is_none());
    // Later calls fail at once.
    let later = runner
        .call("Reserve", "validation", vec![], json!({}))
        .await;
    assert!(matches!(later, Err(RunnerError::Died { .. })), "{later:?}");
}

#[tokio::test]
async fn runner_stop_lets_calls_in_flight_finish() {
    let (runner, host) = loaded().await;
    let in_flight = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .call("Reserve", "slow_update", vec![json!(0.5)], step_context())
                .await
        }
    });
    while !host.logged("sleeping") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn({
        let runner = runner.clone();
        async move { runner.stop(Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = runner
        .call("Reserve", "validation", vec![], json!({}))
        .await;
    assert!(
        matches!(refused, Err(RunnerError::Died { .. })),
        "{refused:?}"
    );
    stopping.await.expect("task");
    // The call finished, including the callback it made after the stop began.
    assert_eq!(
        in_flight.await.expect("task").expect("answered"),
        Ok(json!("updated"))
    );
    assert_eq!(
        host.callbacks().last().map(|c| c.1.clone()).as_deref(),
        Some("updateDynamicData")
    );
    assert_eq!(
        runner.exit_status().as_deref(),
        Some("exited with status 0")
    );
}

#[tokio::test]
async fn runner_stop_kills_after_the_grace_period() {
    let (runner, host) = loaded().await;
    let in_flight = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .call("Reserve", "slow", vec![json!(60)], step_context())
                .await
        }
    });
    while !host.logged("sleeping") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    runner.stop(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        in_flight.await.expect("task"),
        Err(RunnerError::Died { .. })
    ));
}

#[tokio::test]
async fn runner_instances_live_across_calls() {
    let (runner, host) = start().await;
    let source = r#"
from svc import QorusService

class Counter(QorusService):
    def __init__(self):
        self.n = 0
        self.name = self.getServiceInfo()["name"]

    def inc(self, by):
        self.n += by
        self.saveStateData({"n": self.n})
        return [self.name, self.n]
"#;
    let info = runner
        .load("svc_Counter_1_0", "Counter", source)
        .await
        .expect("loads");
    assert_eq!(info.base, "QorusService");
    let handle = runner
        .create("Counter", json!({"name": "counter"}))
        .await
        .expect("alive")
        .expect("created");
    for n in 1..=3 {
        let got = runner
            .call_instance(&handle, "inc", vec![json!(1)])
            .await
            .expect("alive");
        assert_eq!(got, Ok(json!(["counter", n])));
    }
    let (context, api, _) = host.callbacks().pop().expect("callback");
    assert_eq!(
        (context, api.as_str()),
        (json!({"name": "counter"}), "saveStateData")
    );
    assert!(runner.drop_instance(&handle).await.expect("alive"));
    let gone = runner
        .call_instance(&handle, "inc", vec![json!(1)])
        .await
        .expect("alive");
    assert_eq!(gone.expect_err("dropped").r#type, INSTANCE_NOT_FOUND);
}

#[tokio::test]
async fn runner_start_reports_a_missing_interpreter_or_package() {
    let host = Arc::new(TestHost::default());
    let config = RunnerConfig {
        python: "/nonexistent/python3".into(),
        python_dir: python_dir(),
        label: "test".into(),
        workers: 1,
    };
    let started = Runner::start(config.clone(), host.clone()).await;
    assert!(
        matches!(started, Err(RunnerError::Spawn { .. })),
        "{:?}",
        started.err()
    );
    let config = RunnerConfig {
        python: "python3".into(),
        python_dir: std::env::temp_dir(),
        ..config
    };
    let started = Runner::start(config.clone(), host.clone()).await;
    assert!(
        matches!(started, Err(RunnerError::PythonDir { .. })),
        "{:?}",
        started.err()
    );
    // An interpreter that dies at once: the error says how, with what it printed.
    let config = RunnerConfig {
        python: "sh".into(),
        python_dir: python_dir(),
        ..config
    };
    match Runner::start(config, host).await {
        Err(RunnerError::Died { how, .. }) => {
            assert!(how.starts_with("exited with status 2: "), "{how}");
            assert!(how.contains("sluice_runner"), "{how}");
        }
        other => panic!("expected Died, got {:?}", other.err()),
    }
}

/// Set in the environment of the helper process `runner_dies_with_its_parent` starts.
const ORPHAN_HELPER: &str = "SLUICE_TEST_RUNNER_ORPHAN";

/// Not a test: the process `runner_dies_with_its_parent` starts and SIGKILLs.
#[tokio::test]
#[ignore = "a helper process for runner_dies_with_its_parent"]
async fn runner_orphan_helper() {
    if std::env::var_os(ORPHAN_HELPER).is_none() {
        return;
    }
    let (runner, host) = loaded().await;
    // A call in flight: without PR_SET_PDEATHSIG the runner would see EOF on stdin but wait
    // for it (10 s) before exiting.
    let _in_flight = tokio::spawn({
        let runner = runner.clone();
        async move {
            runner
                .call("Reserve", "slow", vec![json!(60)], step_context())
                .await
        }
    });
    while !host.logged("sleeping") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("RUNNER_PID={}", runner.pid().expect("alive"));
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn runner_dies_with_its_parent() {
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "runner::tests::runner_orphan_helper",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(ORPHAN_HELPER, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("helper starts");
    let stdout = helper.stdout.take().expect("piped");
    let pid = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("RUNNER_PID=").map(str::to_string))
        .and_then(|pid| pid.parse::<i32>().ok())
        .expect("the helper reports its runner's pid");
    helper.kill().expect("SIGKILL the helper");
    helper.wait().expect("reaped");
    // Dead means gone, or a zombie where nothing reaps orphans (a container's PID 1).
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dead() {
        assert!(
            Instant::now() < deadline,
            "runner {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runner_locate_python_dir_prefers_the_home() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let make = |dir: &Path| {
        std::fs::create_dir_all(dir.join("sluice_runner")).expect("mkdir");
        std::fs::write(dir.join("sluice_runner/__main__.py"), "").expect("write");
    };
    let home = tmp.path().join("omq");
    let bin = tmp.path().join("prefix/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    assert_eq!(locate_python_dir(&home, &bin), None);
    make(&tmp.path().join("python"));
    assert_eq!(
        locate_python_dir(&home, &bin),
        Some(bin.join("../../python"))
    );
    make(&tmp.path().join("prefix/share/sluice/python"));
    assert_eq!(
        locate_python_dir(&home, &bin),
        Some(bin.join("../share/sluice/python"))
    );
    make(&home.join("python"));
    assert_eq!(locate_python_dir(&home, &bin), Some(home.join("python")));
}

/// The Python package's own tests (`python/tests`), which speak the protocol directly.
#[test]
fn runner_python_unit_tests() {
    let output = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(python_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python3 -m unittest discover -s tests (in {}) failed:\n{}{}",
        python_dir().display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Throughput: `cargo test --release -p sluice-core runner -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check"]
async fn runner_throughput() {
    const CALLS: usize = 10_000;
    const IN_FLIGHT: usize = 64;
    let (runner, _) = loaded().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let runner = runner.clone();
        tasks.spawn(async move {
            for n in 0..CALLS / IN_FLIGHT {
                let got = runner
                    .call("Reserve", "echo", vec![json!(n)], json!({"wfiid": 1}))
                    .await;
                assert_eq!(got.expect("alive"), Ok(json!([n])));
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    let calls = CALLS / IN_FLIGHT * IN_FLIGHT;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "runner throughput: {calls} calls, {IN_FLIGHT} in flight, {secs:.2} s, {:.0} calls/s",
        calls as f64 / secs
    );
}
