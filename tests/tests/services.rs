//! End-to-end tests of services: the real master, service process and Python runner, a
//! service in Qorus's YAML format (`tests/fixtures/services`) loaded with `sluice load`,
//! called over the cluster API (`omq.system.call-service`) and the `sluice` CLI.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sluice_e2e::api::ApiClient;
use sluice_e2e::{
    alive, child_pid_from_log, eventually, examples, fixtures, on_both, output_text, yaml_files,
    Backend, Instance,
};

const SVC: &str = "service-TEST-SVC-1.0";
const STOP_GRACE: Duration = Duration::from_secs(30);
const SOON: Duration = Duration::from_secs(60);

/// A copy of the service fixtures the test may change (a new version of the code).
fn fixture_copy(inst: &Instance) -> Result<PathBuf> {
    let dir = inst.home().join("svc-src");
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(fixtures("services"))? {
        let path = entry?.path();
        std::fs::copy(&path, dir.join(path.file_name().context("file name")?))?;
    }
    Ok(dir)
}

fn load(inst: &Instance, dir: &Path) -> Result<()> {
    inst.load(&yaml_files(dir)?)
}

struct Running {
    inst: Instance,
    master: usize,
    api: ApiClient,
    src: PathBuf,
}

impl Running {
    async fn start(backend: Backend, key: &str, extra_dirs: &[&str]) -> Result<Running> {
        let mut inst = Instance::new(backend, key, &[])?;
        inst.create_schema()?;
        let src = fixture_copy(&inst)?;
        load(&inst, &src)?;
        for dir in extra_dirs {
            load(&inst, &fixtures(dir))?;
        }
        let master = inst.start_master(&[])?;
        inst.wait_ready(master)?;
        let api = ApiClient::connect(&inst)?;
        let running = Running {
            inst,
            master,
            api,
            src,
        };
        running.wait_log(SVC, "ready:")?;
        Ok(running)
    }

    fn log(&self, process: &str) -> String {
        self.inst.log(process)
    }

    fn wait_log(&self, process: &str, text: &str) -> Result<()> {
        self.inst.wait_log(process, text, SOON)
    }

    fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        self.inst.admin_cli(args)
    }

    /// [`Running::cli`], which must succeed; its output.
    fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        Ok(text)
    }

    fn service_pid(&self, not: Option<i32>) -> Result<i32> {
        eventually(SOON, "the service process's pid", || {
            child_pid_from_log(&self.log("master"), SVC).filter(|p| Some(*p) != not && alive(*p))
        })
    }

    /// The system events named `name`, as `sluice events` prints them.
    fn events(&self, name: &str) -> Result<Vec<Value>> {
        let out = self.cli(&["events"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["eventstr"] == name)
            .collect())
    }

    async fn stop(mut self) -> Result<()> {
        let code = self.inst.stop(self.master, STOP_GRACE)?.code();
        assert_eq!(code, Some(0), "master exit");
        Ok(())
    }
}

/// The autostart service is up after the master starts, answers, reports exceptions as
/// structured errors and stays up, refuses what it must, keeps its state across a reload.
async fn autostart_service_answers(b: Backend) -> Result<()> {
    let svc = Running::start(b, "e2e-svc-basic", &[]).await?;
    let api = &svc.api;
    assert_eq!(
        api.call_service("TEST-SVC", "echo", json!([1, "a", {"b": null}]))
            .await?,
        json!([1, "a", {"b": null}])
    );

    let err = api
        .try_service("TEST-SVC", "fail", json!(["boom"]))
        .await?
        .expect_err("fail raises");
    assert_eq!(err.code, "ValueError", "{err}");
    assert_eq!(err.description, "boom");
    assert_eq!(err.info["type"], "ValueError");
    let traceback = err.info["traceback"].as_str().unwrap_or_default();
    assert!(traceback.contains("in fail"), "{traceback}");
    assert_eq!(
        api.call_service("TEST-SVC", "echo", json!(["still up"]))
            .await?,
        json!(["still up"]),
        "the service survives its method's exception"
    );

    for (method, args, code) in [
        ("secret", json!([]), "AUTHORIZATION-ERROR"),
        ("nope", json!([]), "UNKNOWN-METHOD"),
    ] {
        let err = api
            .try_service("TEST-SVC", method, args)
            .await?
            .expect_err(method);
        assert_eq!(err.code, code, "{method}: {err}");
    }
    let err = api
        .try_service("NO-SUCH-SVC", "echo", json!([]))
        .await?
        .expect_err("unknown service");
    assert_eq!(err.code, "SERVICE-NOT-FOUND", "{err}");
    // Every call has a deadline: past it the caller gets TIMEOUT, and the service serves on.
    let err = api
        .call(
            "omq.system.call-service",
            json!({"name": "TEST-SVC", "method": "slow", "args": [3]}),
            Duration::from_millis(500),
        )
        .await?
        .expect_err("past its deadline");
    assert_eq!(err.code, "TIMEOUT", "{err}");
    assert!(err.description.contains("slow"), "{err}");
    assert_eq!(
        api.call_service("TEST-SVC", "echo", json!([0])).await?,
        json!([0])
    );
    // A service that cannot load: the caller learns it, and SERVICE_ERROR says why.
    let err = api
        .try_service("BROKEN-SVC", "ping", json!([]))
        .await?
        .expect_err("init() raises");
    assert_eq!(err.code, "SERVICE-LOAD-ERROR", "{err}");
    let errors = svc.events("SERVICE_ERROR")?;
    assert!(
        errors.iter().any(|e| e["info"]["name"] == "BROKEN-SVC"
            && e["info"]["desc"]
                .as_str()
                .unwrap_or_default()
                .contains("not configured")),
        "{errors:?}"
    );
    // An interface may call an internal method: through another service's code.
    assert_eq!(
        api.call_service("TEST-SVC", "relay", json!(["TEST-SVC", "secret"]))
            .await?,
        json!("internal")
    );
    assert_eq!(
        api.call_service("TEST-SVC", "started", json!([])).await?,
        json!(true),
        "start() runs in the background after init()"
    );

    // State data survives an unload and a load on the next call.
    assert_eq!(
        api.call_service("TEST-SVC", "count_up", json!([])).await?,
        1
    );
    assert_eq!(
        api.call_service("TEST-SVC", "count_up", json!([])).await?,
        2
    );
    let listed = api
        .call("omq.system.list-services", json!({}), SOON)
        .await?
        .expect("list");
    let status = |listed: &Value, name: &str| {
        listed
            .as_array()
            .and_then(|l| l.iter().find(|s| s["name"] == name))
            .map(|s| s["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(status(&listed, "TEST-SVC"), "running", "{listed}");
    assert_eq!(status(&listed, "BROKEN-SVC"), "failed", "{listed}");
    svc.cli_ok(&["service", "unload", "TEST-SVC"])?;
    let listed = api
        .call("omq.system.list-services", json!({}), SOON)
        .await?
        .expect("list");
    assert_eq!(status(&listed, "TEST-SVC"), "unloaded", "{listed}");
    assert_eq!(
        api.call_service("TEST-SVC", "count_up", json!([])).await?,
        3,
        "a call loads the service, which finds its saved state"
    );
    let out = svc.cli(&["service", "call", "TEST-SVC", "echo", "7", "x"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(printed, json!([7, "x"]));
    let out = svc.cli(&["service", "call", "TEST-SVC", "fail", "bad"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        output_text(&out).contains("ValueError: bad"),
        "{}",
        output_text(&out)
    );
    svc.stop().await
}
on_both!((flavor = "multi_thread", worker_threads = 4) autostart => autostart_service_answers);

/// `kill -9` of the service process: the master restarts it (the service is autostart)
/// and the next call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_service_process_is_restarted() -> Result<()> {
    let svc = Running::start(Backend::Sqlite, "e2e-svc-kill", &[]).await?;
    assert_eq!(
        svc.api.call_service("TEST-SVC", "echo", json!([1])).await?,
        json!([1])
    );
    let pid = svc.service_pid(None)?;
    // A call in flight when the process dies fails at once (not at its deadline).
    let in_flight = {
        let api = svc.api.clone();
        tokio::spawn(async move { api.try_service("TEST-SVC", "slow", json!([20])).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let err = in_flight.await??.expect_err("the process died");
    assert_eq!(err.code, "SERVICE-ERROR", "{err}");
    let new = svc.service_pid(Some(pid))?;
    assert_ne!(new, pid);
    // The restart may still be loading: the call waits for it (or loads it).
    let answer = eventually(SOON, "a call to the restarted service", || {
        let api = svc.api.clone();
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async { api.try_service("TEST-SVC", "echo", json!([2])).await })
        });
        r.ok().and_then(|r| r.ok())
    })?;
    assert_eq!(answer, json!([2]));
    svc.stop().await
}

/// A reset swaps the code while 16 callers call without pause: no call fails, and every
/// caller ends up on the new code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_swaps_code_under_concurrent_callers() -> Result<()> {
    let svc = Running::start(Backend::Sqlite, "e2e-svc-reset", &[]).await?;
    let code = svc.src.join("test_svc.py");
    let text = std::fs::read_to_string(&code)?;
    std::fs::write(&code, text.replace("VERSION = \"v1\"", "VERSION = \"v2\""))?;
    load(&svc.inst, &svc.src)?;

    let failures = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for n in 0..16 {
        let api = svc.api.clone();
        let (failures, calls, stop) = (failures.clone(), calls.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut seen_v2 = false;
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                // Half the callers take a while, so calls are in flight during the swap.
                let r = if n % 2 == 0 {
                    api.try_service("TEST-SVC", "version", json!([])).await
                } else {
                    api.try_service("TEST-SVC", "slow", json!([0.05]))
                        .await
                        .map(|r| r.map(|_| json!("slow")))
                };
                calls.fetch_add(1, Ordering::SeqCst);
                match r {
                    Ok(Ok(v)) => seen_v2 |= v == "v2",
                    Ok(Err(e)) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        errors.push(e.to_string());
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        errors.push(e.to_string());
                    }
                }
            }
            (seen_v2, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = calls.load(Ordering::SeqCst);
    let out = svc.cli(&["service", "reset", "TEST-SVC"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("reset"), "{}", output_text(&out));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all_errors = Vec::new();
    for (n, caller) in callers.into_iter().enumerate() {
        let (seen_v2, errors) = caller.await?;
        if n % 2 == 0 {
            assert!(seen_v2, "caller {n} never saw the new code");
        }
        all_errors.extend(errors);
    }
    assert!(
        before > 16,
        "the callers were calling before the reset ({before})"
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed calls during the reset: {all_errors:?}"
    );
    assert_eq!(
        svc.api
            .call_service("TEST-SVC", "version", json!([]))
            .await?,
        "v2"
    );
    svc.stop().await
}

/// A `lock: write` method never runs beside another call; the other methods do run side
/// by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_locked_methods_run_alone() -> Result<()> {
    let svc = Running::start(Backend::Sqlite, "e2e-svc-lock", &[]).await?;
    let mut tasks = Vec::new();
    for n in 0..12 {
        let api = svc.api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let method = if n % 4 == 0 { "exclusive" } else { "shared" };
                api.call_service("TEST-SVC", method, json!([15])).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let report = svc
        .api
        .call_service("TEST-SVC", "report", json!([]))
        .await?;
    assert_eq!(report["violations"], 0, "{report}");
    assert!(
        report["max_active"].as_i64().unwrap_or(0) >= 2,
        "shared calls ran side by side: {report}"
    );
    svc.stop().await
}

/// Calls between interfaces (a user event, another service's method, a workflow order)
/// and interface groups (disabling stops the service and refuses calls; enabling starts
/// it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interfaces_call_each_other_and_groups_stop_and_start_them() -> Result<()> {
    let svc = Running::start(Backend::Sqlite, "e2e-svc-groups", &["flow"]).await?;
    let api = &svc.api;
    assert_eq!(
        api.call_service("TEST-SVC", "announce", json!([{"hello": "world"}]))
            .await?,
        json!(true)
    );
    // A service creates an order whose first step calls the service back.
    let out = svc.inst.home().join("effects.txt").display().to_string();
    let staticdata = json!({"out": out, "call": {"Prepare": ["TEST-SVC", "echo", "from a step"]}});
    let id = api
        .call_service("TEST-SVC", "order", json!(["TEST-FLOW", staticdata]))
        .await?;
    let id = id.as_i64().context("an order id")?;
    let db = svc.inst.db().await?;
    let done = eventually(SOON, "the order created by the service COMPLETE", || {
        let status = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(db.strings(&format!(
                "SELECT workflowstatus FROM workflow_instance WHERE workflow_instanceid = {id}"
            )))
        });
        status.ok().filter(|s| s.join("") == "C")
    });
    done.with_context(|| svc.log("workflow-TEST-FLOW-1.0"))?;
    let dynamic = db
        .strings(&format!(
            "SELECT dynamicdata FROM order_instance WHERE workflow_instanceid = {id}"
        ))
        .await?
        .join("");
    let dynamic: Value = serde_json::from_str(&dynamic)?;
    assert_eq!(
        dynamic["Prepare_called"],
        json!(["from a step"]),
        "{dynamic}"
    );
    let user = svc.events("USER_EVENT")?;
    assert!(
        user.iter()
            .any(|e| e["info"]["hello"] == "world" && e["caller"] == SVC),
        "{user:?}"
    );
    let started = svc.events("SERVICE_START")?;
    assert_eq!(started[0]["event"], 3001, "{started:?}");
    assert_eq!(started[0]["info"]["name"], "TEST-SVC", "{started:?}");

    // A job calls the service too.
    svc.wait_log("job-CALLER-1.0", "ready:")?;
    svc.cli_ok(&["job", "run", "CALLER"])?;
    let info = db
        .strings("SELECT info FROM job_instance WHERE jobstatus = 'C'")
        .await?
        .join("");
    let info: Value = serde_json::from_str(&info).with_context(|| info.clone())?;
    assert_eq!(info["answer"], json!(["from a job"]), "{info}");
    let user = svc.events("USER_EVENT")?;
    assert!(
        user.iter()
            .any(|e| e["info"]["job_called"] == json!(["from a job"])
                && e["caller"] == "job-CALLER-1.0"),
        "{user:?}"
    );

    // Disabling the group stops its members, the service and the job; a job in a disabled
    // group does not run, and its service refuses calls.
    let pid = svc.service_pid(None)?;
    let text = svc.cli_ok(&["group", "disable", "TEST-GROUP"])?;
    assert!(text.contains("2 stopped"), "{text}");
    eventually(SOON, "the service process gone", || {
        (!alive(pid)).then_some(())
    })?;
    let out = svc.cli(&["job", "run", "CALLER"])?;
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("STATUS-ERROR"),
        "{}",
        output_text(&out)
    );
    let err = api
        .try_service("TEST-SVC", "echo", json!([]))
        .await?
        .expect_err("disabled");
    assert_eq!(err.code, "STATUS-ERROR", "{err}");
    let text = svc.cli_ok(&["group", "enable", "TEST-GROUP"])?;
    assert!(text.contains("2 started"), "{text}");
    eventually(SOON, "the job loaded again", || {
        (svc.log("job-CALLER-1.0").matches("ready:").count() >= 2).then_some(())
    })?;
    svc.service_pid(Some(pid))?;
    assert_eq!(
        api.call_service("TEST-SVC", "echo", json!(["back"]))
            .await?,
        json!(["back"])
    );
    db.close().await;
    let stopped = svc.events("SERVICE_STOP")?;
    assert_eq!(stopped.len(), 1, "the disable stopped it once: {stopped:?}");
    assert_eq!(stopped[0]["event"], 3002);
    svc.stop().await
}

/// The example service shipped in deploy/examples (what `scripts/run` loads) answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_example_service_answers() -> Result<()> {
    let mut inst = Instance::new(Backend::Sqlite, "e2e-svc-example", &[])?;
    inst.create_schema()?;
    for dir in ["order", "services", "jobs"] {
        load(&inst, &examples(dir))?;
    }
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let api = ApiClient::connect(&inst)?;
    assert_eq!(
        api.call_service("EXAMPLE-SERVICE", "echo", json!(["hi"]))
            .await?,
        json!(["hi"])
    );
    let info = api
        .call_service("EXAMPLE-SERVICE", "info", json!([]))
        .await?;
    assert_eq!(info["calls"], 1, "{info}");
    assert_eq!(info["service"]["name"], "EXAMPLE-SERVICE", "{info}");
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}
