//! End-to-end tests of the master's start, stop and session recovery, against the built
//! `sluice-master` binary, on SQLite and (when `SLUICE_TEST_PG_URL` is set) PostgreSQL.

use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;
use sluice_e2e::{assert_in_order, on_both_backends, Backend, Instance};

const STOP_GRACE: Duration = Duration::from_secs(20);

on_both_backends! {
    start_and_sigterm_stop_sqlite, start_and_sigterm_stop_postgres => start_and_sigterm_stop;
    second_master_is_refused_sqlite, second_master_is_refused_postgres
        => second_master_is_refused;
    kill9_then_restart_recovers_sqlite, kill9_then_restart_recovers_postgres
        => kill9_then_restart_recovers;
}

async fn start_and_sigterm_stop(backend: Backend) -> Result<()> {
    let key = "e2e-start-stop";
    let mut inst = Instance::new(backend, key, &["qorus.audit: system"])?;
    let m = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(m)?;

    inst.signal(m, Signal::SIGTERM)?;
    let status = inst.wait_exit(m, STOP_GRACE)?;
    assert_eq!(status.code(), Some(0), "clean stop exits 0");

    let log = std::fs::read_to_string(inst.log_file(key, "master"))?;
    assert_in_order(
        &log,
        &[
            "Sluice master starting",
            "startup step 1/7",
            "startup step 2/7",
            "startup step 3/7",
            "startup step 4/7",
            "startup step 5/7",
            "startup step 6/7",
            "startup step 7/7",
            "event SYSTEM_STARTUP",
            "shutdown requested by signal SIGTERM",
            "shutdown step 1/6: stop all workflows",
            "shutdown step 2/6: stop all jobs",
            "shutdown step 3/6: stop and unload all services",
            "shutdown step 4/6: stop the HTTP server",
            "shutdown step 5/6: application session",
            "event SYSTEM_SHUTDOWN",
            "shutdown step 6/6",
        ],
    );

    let db = inst.db().await?;
    let statuses = db
        .strings(&format!(
            "SELECT status FROM sessions WHERE instance_key = '{key}' ORDER BY sessionid"
        ))
        .await?;
    assert_eq!(statuses, vec!["COMPLETE"]);
    let codes = db
        .strings("SELECT CAST(audit_event_code AS TEXT) FROM audit_events ORDER BY audit_eventid")
        .await?;
    assert_eq!(
        codes,
        vec!["1", "2"],
        "SYSTEM-STARTUP then SYSTEM-SHUTDOWN audited"
    );
    db.close().await;

    // A second start of the same home reuses the schema and opens a new session.
    let m2 = inst.start_master(&[])?;
    inst.wait_ready(m2)?;
    inst.signal(m2, Signal::SIGINT)?;
    assert_eq!(inst.wait_exit(m2, STOP_GRACE)?.code(), Some(0));
    let db = inst.db().await?;
    let statuses = db
        .strings(&format!(
            "SELECT status FROM sessions WHERE instance_key = '{key}' ORDER BY sessionid"
        ))
        .await?;
    assert_eq!(statuses, vec!["COMPLETE", "COMPLETE"]);
    db.close().await;
    Ok(())
}

async fn second_master_is_refused(backend: Backend) -> Result<()> {
    let key = "e2e-twice";
    let mut inst = Instance::new(backend, key, &[])?;
    let first = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(first)?;

    let (status, stderr) = inst.refused_start(&[], STOP_GRACE)?;
    assert_eq!(status.code(), Some(75), "EX_TEMPFAIL for a held session");
    let holder_pid = inst.pid(first);
    assert!(
        stderr.contains(&format!("pid {holder_pid}")) && stderr.contains("host "),
        "the refusal names the holder's pid and host: {stderr}"
    );
    assert!(stderr.contains(key), "names the instance key: {stderr}");

    // The first master is undisturbed and still stops cleanly.
    assert!(
        inst.try_status(first)?.is_none(),
        "first master still running"
    );
    assert_eq!(inst.stop(first, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

async fn kill9_then_restart_recovers(backend: Backend) -> Result<()> {
    let key = "e2e-recovery";
    let mut inst = Instance::new(backend, key, &["qorus.audit: system"])?;
    let first = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(first)?;

    let db = inst.db().await?;
    let dead = db
        .scalar_i64(&format!(
            "SELECT sessionid FROM sessions WHERE instance_key = '{key}' AND status = 'ACTIVE'"
        ))
        .await?;
    // Work the dead master left half done, and rows recovery must leave alone.
    for sql in [
        "INSERT INTO workflows (workflowid, name, version, created, modified) VALUES (1, 'WF', '1.0', 0, 0)".to_string(),
        "INSERT INTO steps (stepid, name, version, created, modified) VALUES (1, 's1', '1.0', 0, 0), (2, 's2', '1.0', 0, 0)".to_string(),
        "INSERT INTO jobs (jobid, name, version, created, modified) VALUES (1, 'JOB', '1.0', 0, 0)".to_string(),
        format!(
            "INSERT INTO workflow_instance (workflow_instanceid, workflowid, workflowstatus, sessionid, started, created, modified) VALUES \
             (1, 1, 'I', {dead}, 0, 0, 0), (2, 1, 'I', {dead}, 0, 0, 0), (3, 1, 'E', {dead}, 0, 0, 0), (4, 1, 'Y', 0, 0, 0, 0)"
        ),
        "INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, created, modified) VALUES \
         (1, 0, 'I', 0, 0), (2, 0, 'I', 0, 0), (3, 0, 'E', 0, 0)".to_string(),
        "INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) VALUES \
         (1, 1, 0, 'C', 0, 0), (1, 2, 0, 'I', 0, 0), (2, 1, 0, 'I', 0, 0), (3, 1, 0, 'E', 0, 0)".to_string(),
        format!(
            "INSERT INTO job_instance (job_instanceid, jobid, jobstatus, sessionid, started) VALUES \
             (1, 1, 'I', {dead}, 0), (2, 1, 'C', {dead}, 0)"
        ),
    ] {
        db.execute(&sql).await?;
    }

    inst.signal(first, Signal::SIGKILL)?;
    inst.wait_exit(first, STOP_GRACE)?;
    assert_eq!(
        db.strings(&format!(
            "SELECT status FROM sessions WHERE sessionid = {dead}"
        ))
        .await?,
        vec!["ACTIVE"],
        "a killed master leaves its session ACTIVE"
    );

    let second = inst.start_master(&[])?;
    inst.wait_ready(second)?;

    let orders = db
        .strings("SELECT workflowstatus || ':' || CAST(sessionid AS TEXT) FROM workflow_instance ORDER BY workflow_instanceid")
        .await?;
    assert_eq!(orders, vec!["R:0", "R:0", "E:0", "Y:0"]);
    let segments = db
        .strings("SELECT segmentstatus FROM segment_instance ORDER BY workflow_instanceid")
        .await?;
    assert_eq!(segments, vec!["R", "R", "E"]);
    let steps = db
        .strings("SELECT stepstatus FROM step_instance ORDER BY workflow_instanceid, stepid")
        .await?;
    assert_eq!(steps, vec!["C", "R", "R", "E"]);
    let jobs = db
        .strings("SELECT jobstatus FROM job_instance ORDER BY job_instanceid")
        .await?;
    assert_eq!(jobs, vec!["Z", "C"]);
    assert_eq!(
        db.strings(&format!(
            "SELECT status FROM sessions WHERE sessionid = {dead}"
        ))
        .await?,
        vec!["RECOVERED"]
    );
    let codes = db
        .strings("SELECT CAST(audit_event_code AS TEXT) FROM audit_events ORDER BY audit_eventid")
        .await?;
    assert_eq!(
        codes,
        vec!["1", "3", "4", "1"],
        "startup, recovery start/complete, startup"
    );

    let log = std::fs::read_to_string(inst.log_file(key, "master"))?;
    assert!(
        log.contains(&format!(
            "session {dead} recovered: 2 orders, 2 segments, 2 steps set to RETRY; 1 job instances set to CRASH"
        )),
        "recovery counts are logged"
    );
    db.close().await;
    assert_eq!(inst.stop(second, STOP_GRACE)?.code(), Some(0));
    Ok(())
}

#[test]
fn bad_options_file_stops_the_start() -> Result<()> {
    let mut inst = Instance::new(
        Backend::Sqlite,
        "e2e-bad-options",
        &["# fine", "qorus.max-evnts: 10"],
    )?;
    let (status, stderr) = inst.refused_start(&["--create-schema"], STOP_GRACE)?;
    assert_eq!(status.code(), Some(64), "EX_USAGE for a bad option");
    let file = inst.options_file();
    let line = std::fs::read_to_string(&file)?
        .lines()
        .position(|l| l.contains("max-evnts"))
        .map(|i| i + 1)
        .unwrap_or(0);
    assert!(
        stderr.contains(&format!("{}:{line}:", file.display()))
            && stderr.contains("qorus.max-evnts"),
        "names the file, line and option: {stderr}"
    );
    assert!(
        stderr.contains("qorus.max-events"),
        "suggests the right name: {stderr}"
    );

    // A bad value is refused the same way, here from the command line.
    std::fs::write(&file, "qorus.instance-key: e2e-bad-options\n")?;
    let (status, stderr) =
        inst.refused_start(&["--create-schema", "qorus.max-events=lots"], STOP_GRACE)?;
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("command line") && stderr.contains("lots"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn missing_schema_is_refused_with_the_fixing_command() -> Result<()> {
    let mut inst = Instance::new(Backend::Sqlite, "e2e-no-schema", &[])?;
    // Without --create-schema the SQLite file is not created, and the operator is told how.
    let (status, stderr) = inst.refused_start(&[], STOP_GRACE)?;
    assert_ne!(status.code(), Some(0));
    assert!(stderr.contains("sluice schema create"), "{stderr}");
    assert!(
        !inst.home().join("var/sluice.db").exists(),
        "nothing created"
    );
    Ok(())
}

#[tokio::test]
async fn newer_schema_is_refused() -> Result<()> {
    let mut inst = Instance::new(Backend::Sqlite, "e2e-newer", &[])?;
    let m = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(m)?;
    assert_eq!(inst.stop(m, STOP_GRACE)?.code(), Some(0));
    let db = inst.db().await?;
    db.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .await?;
    db.close().await;
    let (status, stderr) = inst.refused_start(&[], STOP_GRACE)?;
    assert_eq!(status.code(), Some(78), "EX_CONFIG: {stderr}");
    assert!(
        stderr.contains("9999") && stderr.contains("newer"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn unopenable_log_directory_stops_the_start() -> Result<()> {
    let mut inst = Instance::new(Backend::Sqlite, "e2e-bad-logdir", &[])?;
    // A regular file where the log directory should be: no permission bit saves that,
    // not even for root.
    let blocker = inst.home().join("not-a-directory");
    std::fs::write(&blocker, "x")?;
    let arg = format!("qorus.logdir={}", blocker.join("log").display());
    let (status, stderr) = inst.refused_start(&["--create-schema", &arg], STOP_GRACE)?;
    assert_eq!(status.code(), Some(73), "EX_CANTCREAT: {stderr}");
    assert!(
        stderr.contains("startup step 3 failed") && stderr.contains("not-a-directory"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn repeated_signal_during_shutdown_is_not_a_crash() -> Result<()> {
    let key = "e2e-double-signal";
    let mut inst = Instance::new(Backend::Sqlite, key, &[])?;
    let m = inst.start_master(&["--create-schema"])?;
    inst.wait_ready(m)?;
    inst.signal(m, Signal::SIGTERM)?;
    // The process may already be gone (a zombie until reaped), which is fine.
    let _ = inst.signal(m, Signal::SIGTERM);
    let _ = inst.signal(m, Signal::SIGINT);
    assert_eq!(inst.wait_exit(m, STOP_GRACE)?.code(), Some(0));
    let db = inst.db().await?;
    assert_eq!(
        db.strings(&format!(
            "SELECT status FROM sessions WHERE instance_key = '{key}'"
        ))
        .await?,
        vec!["COMPLETE"]
    );
    db.close().await;
    Ok(())
}

#[test]
fn every_binary_answers_help_and_version() -> Result<()> {
    for name in [
        "sluice-master",
        "sluice",
        "sluice-workflow-proc",
        "sluice-service-proc",
        "sluice-job-proc",
        "sluice-http-gateway",
    ] {
        let bin = sluice_e2e::bin(name)?;
        let out = std::process::Command::new(&bin).arg("--version").output()?;
        assert!(out.status.success(), "{name} --version");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(name) && text.contains(env!("CARGO_PKG_VERSION")),
            "{text}"
        );
        let out = std::process::Command::new(&bin).arg("--help").output()?;
        assert!(out.status.success(), "{name} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{name} --help"
        );
    }
    Ok(())
}
