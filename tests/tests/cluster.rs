//! End-to-end tests of supervision, the cluster API and bus security, with the real
//! binaries over real CURVE sockets.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_e2e::{
    alive, assert_in_order, child_pid_from_log, eventually, free_port, output_text, Backend,
    Instance,
};

const GW: &str = "http-gateway";
const STOP_GRACE: Duration = Duration::from_secs(30);

fn instance(key: &str, extra: &[&str]) -> Result<(Instance, u16)> {
    let port = free_port();
    let mut options = vec![format!("qorus.cluster-api: tcp://127.0.0.1:{port}")];
    options.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = options.iter().map(String::as_str).collect();
    Ok((Instance::new(Backend::Sqlite, key, &refs)?, port))
}

fn gateway_pid(inst: &Instance, not: Option<i32>) -> Result<i32> {
    eventually(
        Duration::from_secs(10),
        "the gateway's pid in the master log",
        || child_pid_from_log(&inst.log("master"), GW).filter(|p| Some(*p) != not),
    )
}

fn wait_registered(inst: &Instance, count: usize) -> Result<()> {
    eventually(Duration::from_secs(10), "gateway registration", || {
        (inst.log("master").matches("event PROCESS_STARTED").count() >= count).then_some(())
    })
}

/// An instance with its master started (creating the schema) and ready; returns the
/// instance, its cluster API port and the master's index.
fn running(key: &str, extra: &[&str]) -> Result<(Instance, u16, usize)> {
    let (mut inst, port) = instance(key, extra)?;
    let m = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(m)?;
    Ok((inst, port, m))
}

/// [`running`], once the gateway has registered; also the gateway's pid.
fn running_gateway(key: &str, extra: &[&str]) -> Result<(Instance, u16, usize, i32)> {
    let (inst, port, m) = running(key, extra)?;
    wait_registered(&inst, 1)?;
    let gw = gateway_pid(&inst, None)?;
    Ok((inst, port, m, gw))
}

/// A master crash: SIGKILL, which leaves its children running.
fn kill_master(inst: &mut Instance, m: usize) -> Result<()> {
    inst.signal(m, Signal::SIGKILL)?;
    inst.wait_exit(m, STOP_GRACE)?;
    Ok(())
}

/// A client certificate registered (or not) for `user`.
fn client_key(inst: &Instance, name: &str, register_as: Option<&str>) -> Result<(String, String)> {
    let path = inst.home().join(format!("{name}.cert"));
    let out = inst.sluice(&["keys", "gen", "--out", path.to_str().context("path")?])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if let Some(user) = register_as {
        let out = inst.sluice(&["keys", "register", user, &public])?;
        assert!(out.status.success(), "{}", output_text(&out));
    }
    Ok((path.display().to_string(), public))
}

#[test]
fn killed_child_is_restarted_and_registered_within_two_seconds() -> Result<()> {
    let key = "e2e-child-restart";
    let (mut inst, _, m, first) = running_gateway(key, &[])?;

    let killed_at = Instant::now();
    kill(Pid::from_raw(first), Signal::SIGKILL)?;
    wait_registered(&inst, 2)?;
    let took = killed_at.elapsed();
    let second = gateway_pid(&inst, Some(first))?;
    assert_ne!(first, second);
    assert!(alive(second));
    assert!(
        took < Duration::from_secs(2),
        "back and registered after {took:?}"
    );

    let log = inst.log("master");
    assert_in_order(
        &log,
        &[
            "event PROCESS_STARTED",
            "event PROCESS_STOPPED",
            "killed by SIGKILL",
            "event PROCESS_STARTED",
        ],
    );
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    assert!(!alive(second), "the master's stop stops its children");
    Ok(())
}

#[test]
fn crash_loop_backs_off_then_gives_up_with_an_event() -> Result<()> {
    let key = "e2e-crash-loop";
    let (mut inst, _) = instance(
        key,
        &[
            "qorus.process-restart-limit: 4",
            "qorus.process-restart-window: 60",
            "qorus.process-restart-delay: 100",
        ],
    )?;
    // A bin dir whose gateway dies at once; everything else is the real thing.
    let bin = inst.home().join("bin");
    std::fs::create_dir_all(&bin)?;
    let gw = bin.join("sluice-http-gateway");
    std::fs::write(&gw, "#!/bin/sh\nexit 3\n")?;
    std::fs::set_permissions(&gw, std::fs::Permissions::from_mode(0o755))?;
    inst.env
        .push(("SLUICE_BIN_DIR".into(), bin.display().to_string()));
    let m = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(m)?;
    eventually(Duration::from_secs(20), "the crash-loop verdict", || {
        inst.log("master")
            .contains("event PROCESS_START_ERROR")
            .then_some(())
    })?;
    let log = inst.log("master");
    assert_in_order(
        &log,
        &[
            "exited with status 3",
            "restarting in 100 ms",
            "exited with status 3",
            "restarting in 200 ms",
            "exited with status 3",
            "restarting in 400 ms",
            "exited with status 3",
            "crashed 4 times within 60 s",
            "event PROCESS_START_ERROR",
        ],
    );
    assert_eq!(
        log.matches("process died: exited with status 3").count(),
        4,
        "no restart after giving up"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        inst.log("master")
            .matches("process died: exited with status 3")
            .count(),
        4
    );
    assert!(inst.try_status(m)?.is_none(), "the master itself stays up");
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

#[test]
fn restarted_master_adopts_running_children() -> Result<()> {
    let key = "e2e-adopt";
    let (mut inst, port, m, gw) = running_gateway(key, &["qorus.master-grace: 30"])?;

    kill_master(&mut inst, m)?;
    std::thread::sleep(Duration::from_millis(1500));
    assert!(alive(gw), "children keep running without the master");

    let m2 = inst.start_master(&[])?;
    inst.wait_ready(m2)?;
    let log = inst.log("master");
    assert!(
        log.contains("adopted a running http-gateway process"),
        "adoption logged"
    );
    assert_eq!(
        child_pid_from_log(&log, GW),
        Some(gw),
        "the same pid is adopted"
    );

    // The adopted child keeps serving: the status over the cluster API lists it running.
    let (cert, _) = client_key(&inst, "ops", Some("ops"))?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let status = eventually(
        Duration::from_secs(10),
        "the adopted gateway heartbeating",
        || {
            let out = inst
                .sluice(&["--cluster", &endpoint, "--key", &cert, "status"])
                .ok()?;
            let t = output_text(&out);
            (out.status.success() && t.contains(&format!("pid {gw}")) && t.contains("running"))
                .then_some(t)
        },
    )?;
    assert!(status.contains(key), "{status}");
    assert_eq!(inst.stop(m2, STOP_GRACE)?.code(), Some(0));
    assert!(!alive(gw), "the adopting master stops the adopted child");
    Ok(())
}

#[test]
fn children_stop_cleanly_when_no_master_returns() -> Result<()> {
    let key = "e2e-grace";
    let grace = 3;
    let (mut inst, _, m, gw) = running_gateway(key, &[&format!("qorus.master-grace: {grace}")])?;
    kill_master(&mut inst, m)?;
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(grace + 5),
        "the orphaned gateway to stop",
        || (!alive(gw)).then_some(()),
    )?;
    assert!(
        t0.elapsed() >= Duration::from_secs(grace - 1),
        "it waited for the grace period"
    );
    let gw_log = inst.log(GW);
    assert!(
        gw_log.contains("no master for"),
        "the child says why it stopped: {gw_log}"
    );
    Ok(())
}

#[test]
fn sigterm_stops_children_in_the_documented_order() -> Result<()> {
    let key = "e2e-stop-order";
    let (mut inst, _, m, gw) = running_gateway(key, &[])?;
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    assert!(!alive(gw));
    let log = inst.log("master");
    assert_in_order(
        &log,
        &[
            "shutdown step 1/6: stop all workflows",
            "shutdown step 2/6: stop all jobs",
            "shutdown step 3/6: stop and unload all services",
            "stopped (exited with status 0)",
            "shutdown step 4/6: stop the HTTP server (1 http-gateway process(es) stopped)",
            "shutdown step 5/6",
            "event SYSTEM_SHUTDOWN",
        ],
    );
    let gw_log = inst.log(GW);
    assert!(
        gw_log.contains("stopping at the master's request"),
        "{gw_log}"
    );
    Ok(())
}

#[test]
fn cluster_api_admits_only_registered_unrevoked_keys() -> Result<()> {
    let key = "e2e-security";
    let (mut inst, port, m) = running(key, &[])?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let status = |cert: &str, extra: &[&str]| -> Result<Output> {
        let mut args = vec!["--cluster", &endpoint, "--key", cert, "--timeout", "2"];
        args.extend_from_slice(extra);
        args.push("status");
        inst.sluice(&args)
    };

    let (good, _) = client_key(&inst, "good", Some("alice"))?;
    let out = status(&good, &[])?;
    assert!(
        out.status.success() && output_text(&out).contains(key),
        "{}",
        output_text(&out)
    );

    let (stranger, stranger_pub) = client_key(&inst, "stranger", None)?;
    let out = status(&stranger, &[])?;
    assert!(
        !out.status.success() && output_text(&out).contains("no answer"),
        "{}",
        output_text(&out)
    );
    let refused = format!("refused CURVE client {stranger_pub}");
    eventually(Duration::from_secs(5), "the refusal in the log", || {
        inst.log("master").contains(&refused).then_some(())
    })?;

    let (revoked, revoked_pub) = client_key(&inst, "revoked", Some("bob"))?;
    assert!(
        status(&revoked, &[])?.status.success(),
        "works before revocation"
    );
    let out = inst.sluice(&["keys", "revoke", &revoked_pub])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let out = status(&revoked, &[])?;
    assert!(
        !out.status.success(),
        "a revoked key gets no reply: {}",
        output_text(&out)
    );
    let refused = format!("refused CURVE client {revoked_pub}");
    eventually(Duration::from_secs(5), "the revoked key's refusal", || {
        inst.log("master").contains(&refused).then_some(())
    })?;

    // The wrong server public key: the handshake cannot complete, nothing is answered.
    let wrong = sluice_e2e_wrong_server_key();
    let out = status(&good, &["--server-key", &wrong])?;
    assert!(
        !out.status.success() && output_text(&out).contains("no answer"),
        "{}",
        output_text(&out)
    );

    let listed = output_text(&inst.sluice(&["keys", "list"])?);
    assert!(
        listed.contains("alice") && listed.contains("revoked"),
        "{listed}"
    );
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

/// A valid public key that is not the cluster's.
fn sluice_e2e_wrong_server_key() -> String {
    "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".to_string()
}

#[test]
fn shutdown_over_the_cluster_api_with_rbac_refused_then_allowed() -> Result<()> {
    let key = "e2e-api-shutdown";
    let (mut inst, port, m) = running(key, &["qorus.rbac-security: true"])?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let (cert, _) = client_key(&inst, "ops", Some("ops"))?;
    let out = inst.sluice(&["--cluster", &endpoint, "--key", &cert, "shutdown"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("AUTHORIZATION-ERROR"),
        "{}",
        output_text(&out)
    );
    assert!(inst.try_status(m)?.is_none(), "still running");
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));

    // Without RBAC the same key may stop the node.
    std::fs::write(
        inst.options_file(),
        format!(
            "qorus.instance-key: {key}\nqorus.cluster-api: tcp://127.0.0.1:{port}\n\
             qorus.http-server: 127.0.0.1:{}\n",
            sluice_e2e::free_port()
        ),
    )?;
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let out = inst.sluice(&["--cluster", &endpoint, "--key", &cert, "shutdown"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(inst.wait_exit(m, STOP_GRACE)?.code(), Some(0));
    assert!(inst
        .log("master")
        .contains("shutdown requested by shutdown API call by ops"));
    Ok(())
}

#[test]
fn world_readable_cluster_key_stops_the_start() -> Result<()> {
    let (mut inst, _) = instance("e2e-key-mode", &[])?;
    let key_file = inst.home().join("etc/cluster.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644))?;
    let (status, stderr) = inst.refused_start(&["--create-schema"], STOP_GRACE)?;
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("cluster.key") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn python_example_client_reads_status_using_only_the_docs() -> Result<()> {
    let key = "e2e-pyzmq";
    let (mut inst, port, m) = running(key, &[])?;
    wait_registered(&inst, 1)?;
    let (cert, _) = client_key(&inst, "py", Some("py"))?;
    let server = String::from_utf8_lossy(&inst.sluice(&["keys", "public"])?.stdout)
        .trim()
        .to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/cluster_api_client.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            "--endpoint",
            &format!("tcp://127.0.0.1:{port}"),
            "--cert",
            &cert,
            "--server-key",
            &server,
            "status",
        ])
        .output()?;
    let shown = output_text(&out);
    assert!(out.status.success(), "{shown}");
    let status: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    assert_eq!(status["instance_key"], key);
    assert_eq!(status["status"], "running");
    assert_eq!(status["processes"][0]["network_id"], GW, "{shown}");
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

/// Orders `ids` IN-PROGRESS (one segment, one step each) owned by `owner` in `session`.
async fn orders_in_progress(
    db: &sluice_e2e::Db,
    ids: std::ops::RangeInclusive<i64>,
    session: i64,
    owner: &str,
) -> Result<()> {
    db.execute("INSERT INTO workflows (workflowid, name, version, created, modified) \
                SELECT 1, 'WF', '1.0', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM workflows WHERE workflowid = 1)")
        .await?;
    db.execute(
        "INSERT INTO steps (stepid, name, version, created, modified) \
                SELECT 1, 's', '1.0', 0, 0 WHERE NOT EXISTS (SELECT 1 FROM steps WHERE stepid = 1)",
    )
    .await?;
    for id in ids {
        db.execute(&format!(
            "INSERT INTO workflow_instance (workflow_instanceid, workflowid, workflowstatus, sessionid, owner, started, created, modified) \
             VALUES ({id}, 1, 'I', {session}, '{owner}', 0, 0, 0)"
        ))
        .await?;
        db.execute(&format!(
            "INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, created, modified) VALUES ({id}, 0, 'I', 0, 0)"
        ))
        .await?;
        db.execute(&format!(
            "INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) VALUES ({id}, 1, 0, 'I', 0, 0)"
        ))
        .await?;
    }
    Ok(())
}

async fn order_states(db: &sluice_e2e::Db) -> Result<Vec<String>> {
    db.strings(
        "SELECT CAST(w.workflow_instanceid AS TEXT) || ':' || w.workflowstatus || ':' || CAST(w.sessionid AS TEXT) || ':' \
         || COALESCE(w.owner, '-') || ':' || s.stepstatus FROM workflow_instance w \
         JOIN step_instance s ON s.workflow_instanceid = w.workflow_instanceid ORDER BY w.workflow_instanceid",
    )
    .await
}

async fn active_session(db: &sluice_e2e::Db, key: &str) -> Result<i64> {
    db.scalar_i64(&format!(
        "SELECT sessionid FROM sessions WHERE instance_key = '{key}' AND status = 'ACTIVE'"
    ))
    .await
}

#[tokio::test]
async fn a_dead_childs_work_goes_back_to_retry() -> Result<()> {
    let key = "e2e-child-work";
    let (mut inst, _, m) = running(key, &[])?;
    wait_registered(&inst, 1)?;
    let db = inst.db().await?;
    let session = active_session(&db, key).await?;
    orders_in_progress(&db, 1..=2, session, GW).await?;
    orders_in_progress(&db, 3..=3, session, "wf-other").await?;

    let gw = gateway_pid(&inst, None)?;
    kill(Pid::from_raw(gw), Signal::SIGKILL)?;
    wait_registered(&inst, 2)?;
    assert_eq!(
        order_states(&db).await?,
        vec!["1:R:0:-:R", "2:R:0:-:R", format!("3:I:{session}:wf-other:I").as_str()],
        "the dead process's orders and steps are RETRY and unowned; another process's are untouched"
    );
    assert!(inst
        .log("master")
        .contains("recovered the work of the dead process: 2 orders"));
    db.close().await;
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn an_adopted_childs_work_survives_a_master_crash() -> Result<()> {
    let key = "e2e-adopt-work";
    let (mut inst, _, m) = running(key, &["qorus.master-grace: 30"])?;
    wait_registered(&inst, 1)?;
    let db = inst.db().await?;
    let first = active_session(&db, key).await?;
    // The gateway lives on; "wf-gone" stands for a process that died with the master.
    orders_in_progress(&db, 1..=2, first, GW).await?;
    orders_in_progress(&db, 3..=3, first, "wf-gone").await?;

    kill_master(&mut inst, m)?;
    let m2 = inst.start_master(&[])?;
    inst.wait_ready(m2)?;
    let second = active_session(&db, key).await?;
    assert_ne!(first, second);
    assert_eq!(
        order_states(&db).await?,
        vec![
            format!("1:I:{second}:{GW}:I"),
            format!("2:I:{second}:{GW}:I"),
            "3:R:0:-:R".to_string(),
        ],
        "the adopted process keeps its work under the new session; the gone one's is recovered"
    );
    db.close().await;
    assert_eq!(inst.stop(m2, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn interfaces_are_listed_autostarted_started_and_stopped() -> Result<()> {
    let key = "e2e-interfaces";
    let (mut inst, port) = instance(key, &[])?;
    let out = inst.sluice(&["schema", "create"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let db = inst.db().await?;
    for sql in [
        "INSERT INTO workflows (workflowid, name, version, autostart, created, modified) VALUES (1, 'ORDERS', '1.0', 1, 0, 0)",
        "INSERT INTO code (code_hash, lang, source, created) VALUES ('billing0', 'python', \
         'from svc import QorusService\nclass Billing(QorusService):\n    def ping(self):\n        return 1\n', 0)",
        "INSERT INTO services (serviceid, name, version, autostart, class_name, code_hash, created, modified) \
         VALUES (1, 'billing', '2.0', 0, 'Billing', 'billing0', 0, 0)",
        "INSERT INTO service_methods (serviceid, name) VALUES (1, 'ping')",
        "INSERT INTO jobs (jobid, name, version, active, created, modified) VALUES (1, 'cleanup', '1.0', 0, 0, 0)",
    ] {
        db.execute(sql).await?;
    }
    db.close().await;
    let wf = "workflow-ORDERS-1.0";
    let svc = "service-billing-2.0";

    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let registered = |id: &str| {
        let needle = format!("network_id={id} ");
        let quoted = format!("network_id=\"{id}\"");
        let id = id.to_string();
        let inst = &inst;
        move || {
            inst.log("master")
                .lines()
                .any(|l| {
                    l.contains("registered after") && (l.contains(&needle) || l.contains(&quoted))
                })
                .then(|| id.clone())
        }
    };
    eventually(
        Duration::from_secs(10),
        "the autostart workflow process",
        registered(wf),
    )?;

    let (cert, _) = client_key(&inst, "ops", Some("ops"))?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let cli = |args: &[&str]| -> Result<Output> {
        let mut all = vec!["--cluster", endpoint.as_str(), "--key", cert.as_str()];
        all.extend_from_slice(args);
        inst.sluice(&all)
    };
    let listing = output_text(&cli(&["interfaces"])?);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.contains(name))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(line("ORDERS").contains("running"), "{listing}");
    assert!(line("billing").contains("stopped"), "{listing}");
    assert!(
        line("cleanup").contains("stopped"),
        "inactive jobs are not autostarted: {listing}"
    );

    // An operator starts the service; its process registers.
    let out = cli(&["start", "service", "billing"])?;
    assert!(
        out.status.success() && output_text(&out).contains(svc),
        "{}",
        output_text(&out)
    );
    eventually(
        Duration::from_secs(10),
        "the service process",
        registered(svc),
    )?;

    // Qorus's restart rules: a workflow process always comes back, a non-autostart service not.
    let log = inst.log("master");
    let wf_pid = child_pid_from_log(&log, wf).context("workflow pid")?;
    let svc_pid = child_pid_from_log(&log, svc).context("service pid")?;
    kill(Pid::from_raw(svc_pid), Signal::SIGKILL)?;
    kill(Pid::from_raw(wf_pid), Signal::SIGKILL)?;
    eventually(Duration::from_secs(10), "the workflow process back", || {
        child_pid_from_log(&inst.log("master"), wf).filter(|p| *p != wf_pid && alive(*p))
    })?;
    eventually(Duration::from_secs(5), "the service left down", || {
        inst.log("master")
            .contains("not restarted: its interface is not autostart")
            .then_some(())
    })?;
    assert!(!alive(svc_pid));
    let listing = output_text(&cli(&["interfaces"])?);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("billing") && l.contains("failed")),
        "{listing}"
    );

    // Stop the workflow; stopping it twice, or starting what is not loaded, is a clear error.
    let out = cli(&["stop", "workflow", "ORDERS"])?;
    assert!(out.status.success(), "{}", output_text(&out));
    let out = cli(&["stop", "workflow", "ORDERS"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("STATUS-ERROR"),
        "{}",
        output_text(&out)
    );
    let out = cli(&["start", "workflow", "NOPE"])?;
    assert!(
        !out.status.success() && output_text(&out).contains("NOT-FOUND"),
        "{}",
        output_text(&out)
    );
    let listing = output_text(&cli(&["interfaces"])?);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("ORDERS") && l.contains("stopped")),
        "{listing}"
    );

    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn the_master_publishes_events_registry_and_process_aborts() -> Result<()> {
    use prost::Message;
    use sluice_core::keys;
    use sluice_proto::v1::{Event, ProcessAborted, Registry};

    let key = "e2e-pub";
    let (mut inst, _, m) = running(key, &[])?;
    wait_registered(&inst, 1)?;

    // A registered client key may subscribe; the master's PUB socket is CURVE like the rest.
    let (cert, public) = client_key(&inst, "watcher", Some("watcher"))?;
    let client = sluice_cli::keys::load_certificate(std::path::Path::new(&cert))?;
    assert_eq!(client.public_z85(), public);
    let server = keys::load_key_file(&inst.home().join("etc/cluster.key"))?;
    let bus = sluice_core::bus::Bus::client()?;
    let endpoint = format!("ipc://{}/var/{key}.events.ipc", inst.home().display());
    let mut sub = bus.subscribe(
        &endpoint,
        server.public(),
        &client,
        &["event", "registry", "process"],
    )?;
    // A subscription takes a moment to reach the publisher (ZeroMQ's slow joiner).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let gw = gateway_pid(&inst, None)?;
    kill(Pid::from_raw(gw), Signal::SIGKILL)?;

    let (mut aborted, mut stopped, mut restarted) = (None, false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(aborted.is_some() && stopped && restarted) {
        let Ok(Some((topic, envelope))) = tokio::time::timeout_at(deadline, sub.recv()).await
        else {
            anyhow::bail!("published messages missing: aborted={aborted:?} stopped={stopped} restarted={restarted}");
        };
        match topic.as_str() {
            "process" => aborted = Some(ProcessAborted::decode(envelope.body.as_slice())?),
            "event" => {
                let e = Event::decode(envelope.body.as_slice())?;
                stopped |= e.event_name == "PROCESS_STOPPED" && e.event_code == 6002;
            }
            "registry" => {
                let r = Registry::decode(envelope.body.as_slice())?;
                restarted |= r
                    .entries
                    .iter()
                    .any(|p| p.network_id == GW && p.status == "running" && p.pid as i32 != gw);
            }
            other => anyhow::bail!("unexpected topic {other}"),
        }
    }
    let aborted = aborted.context("process-aborted")?;
    assert_eq!(aborted.network_id, GW);
    assert_eq!(aborted.pid as i32, gw);
    assert!(
        aborted.restarting && aborted.reason.contains("SIGKILL"),
        "{aborted:?}"
    );
    drop(sub);
    drop(bus);
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    Ok(())
}
