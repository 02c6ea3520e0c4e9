//! End-to-end tests of the workflow engine: the real master, workflow process and Python
//! runner, a workflow in Qorus's YAML format (`tests/fixtures/flow`), orders created and
//! handled with the `sluice` CLI over the cluster API, on SQLite and PostgreSQL.

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_e2e::flow::{order_id, Flow, DONE, WF};
use sluice_e2e::{eventually, examples, fixtures, on_both, yaml_files, Backend};

/// How many times step Left of order `id` was retried.
async fn left_retries(flow: &Flow, id: i64) -> Result<i64> {
    flow.db
        .scalar_i64(&format!(
            "SELECT s.retries FROM step_instance s JOIN steps t ON t.stepid = s.stepid \
             WHERE s.workflow_instanceid = {id} AND t.name = 'Left'"
        ))
        .await
}

/// The errors recorded for order `id`, oldest first, as `ERROR:retry` or `ERROR:error`.
async fn recorded_errors(flow: &Flow, id: i64) -> Result<Vec<String>> {
    flow.db
        .strings(&format!(
            "SELECT error || ':' || CASE WHEN retry THEN 'retry' ELSE 'error' END \
             FROM error_instance WHERE workflow_instanceid = {id} ORDER BY errorid"
        ))
        .await
}

async fn parallel_branches_complete_in_order(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-flow", &[]).await?;
    let id = flow.create(serde_json::json!({}))?;
    flow.wait_status(id, "C").await?;
    let effects = flow.effects(id);
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert_eq!(effects[0], "Prepare");
    assert_eq!(effects[3], "Finish");
    let mut middle = effects[1..3].to_vec();
    middle.sort();
    assert_eq!(middle, vec!["Left", "Right"]);
    let steps = flow
        .db
        .strings(&format!(
            "SELECT stepstatus FROM step_instance WHERE workflow_instanceid = {id}"
        ))
        .await?;
    assert_eq!(steps, vec!["C"; 4]);
    let dynamic = flow
        .db
        .strings(&format!(
            "SELECT dynamicdata FROM order_instance WHERE workflow_instanceid = {id}"
        ))
        .await?
        .join("");
    for step in ["Prepare", "Left", "Right", "Finish"] {
        assert!(
            dynamic.contains(&format!("\"{step}\":\"done\"")),
            "{dynamic}"
        );
    }
    let shown = flow.order(&["show", &id.to_string()])?;
    assert!(shown.contains("COMPLETE"), "{shown}");
    flow.stop().await
}

async fn retry_error_is_retried_after_its_delay(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-retry", &[]).await?;
    let id = flow.create(serde_json::json!({"fail": {"Left": "retry"}}))?;
    flow.wait_status(id, "C").await?;
    let errors = recorded_errors(&flow, id).await?;
    assert_eq!(errors, vec!["TEST-RETRY:retry"]);
    let retries = left_retries(&flow, id).await?;
    assert_eq!(retries, 1);
    assert_eq!(flow.effects(id).len(), 4, "{:?}", flow.effects(id));
    flow.stop().await
}

/// A retry error that keeps happening becomes ERROR after qorus.max-retries retries.
async fn retries_stop_at_max_retries(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-max-retries", &["qorus.max-retries: 2"]).await?;
    let id = flow.create(serde_json::json!({"fail": {"Left": "retry-always"}}))?;
    flow.wait_status(id, "E").await?;
    let retries = left_retries(&flow, id).await?;
    assert_eq!(retries, 2, "two retries, then ERROR");
    let errors = recorded_errors(&flow, id).await?;
    assert_eq!(
        errors,
        vec!["TEST-RETRY:retry", "TEST-RETRY:retry", "TEST-RETRY:error"]
    );
    flow.stop().await
}

/// `qorus.max-retries` changed while the workflow process runs (`omq.system.set-option`)
/// applies to its next order; a startup-only option is refused and changes nothing.
async fn an_option_changed_while_running_applies(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-set-option", &["qorus.max-retries: 50"]).await?;
    let api = sluice_e2e::api::ApiClient::connect(&flow.inst)?;
    let timeout = Duration::from_secs(10);
    let set = api
        .call(
            "omq.system.set-option",
            serde_json::json!({"name": "qorus.max-retries", "value": 1}),
            timeout,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("set-option: {e}"))?;
    assert_eq!(set["value"], "1", "{set}");
    let shown = api
        .call(
            "omq.system.get-options",
            serde_json::json!({"name": "max-retries"}),
            timeout,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("get-options: {e}"))?;
    assert_eq!(shown["value"], "1", "{shown}");
    // The workflow process has it from its next heartbeat reply.
    flow.wait_log(WF, "options changed by the master")?;
    let id = flow.create(serde_json::json!({"fail": {"Left": "retry-always"}}))?;
    flow.wait_status(id, "E").await?;
    let retries = left_retries(&flow, id).await?;
    assert_eq!(
        retries, 1,
        "one retry under the new qorus.max-retries, then ERROR"
    );

    let refused = api
        .call(
            "omq.system.set-option",
            serde_json::json!({"name": "qorus.cluster-api", "value": "tcp://127.0.0.1:1"}),
            timeout,
        )
        .await?
        .expect_err("a startup-only option");
    assert_eq!(refused.code, "OPTION-ERROR", "{refused}");

    // The operator's command for the same.
    let out = flow
        .inst
        .admin_cli(&["option", "set", "recover_delay", "7"])?;
    let text = sluice_e2e::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("qorus.recover_delay: 7"), "{text}");
    let out = flow.inst.admin_cli(&["option", "show"])?;
    let text = sluice_e2e::output_text(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "qorus.recover_delay: 7",
        "qorus.max-retries: 1",
        "qorus.cluster-api: tcp://127.0.0.1:",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(text.contains("(startup only)"), "{text}");
    let out = flow
        .inst
        .admin_cli(&["option", "set", "qorus.systemdb", "sqlite:/tmp/x.db"])?;
    let text = sluice_e2e::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("OPTION-ERROR"), "{text}");
    flow.stop().await
}

async fn business_error_waits_for_an_operator(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-business", &[]).await?;
    let id = flow.create(serde_json::json!({"fail": {"Right": "business"}}))?;
    flow.wait_status(id, "E").await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(flow.status(id).await?, "E", "ERROR waits for an operator");
    let business = flow
        .db
        .scalar_i64(&format!(
            "SELECT CAST(business_error AS INTEGER) + CAST(0 AS BIGINT) FROM workflow_instance \
             WHERE workflow_instanceid = {id}"
        ))
        .await?;
    assert_eq!(business, 1);
    // A retry without fixing the cause fails the same way.
    flow.order(&["retry", &id.to_string()])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    flow.wait_status(id, "E").await?;
    flow.order(&["dynamic-data", &id.to_string(), r#"{"approved": true}"#])?;
    flow.order(&["retry", &id.to_string()])?;
    flow.wait_status(id, "C").await?;
    let mut effects = flow.effects(id);
    effects.sort();
    assert_eq!(effects, vec!["Finish", "Left", "Prepare", "Right"]);
    flow.stop().await
}

/// A step whose effect happened just before its process died is not run again: its
/// validation code sees the effect and completes it.
async fn validation_prevents_a_double_effect(b: Backend, kill_runner: bool) -> Result<()> {
    let key = if kill_runner {
        "e2e-wf-kill-runner"
    } else {
        "e2e-wf-kill-proc"
    };
    let flow = Flow::start(b, key, &[]).await?;
    let first_pid = flow.workflow_pid(None)?;
    let id = flow.create(serde_json::json!({"sleep_after": {"Prepare": 30}}))?;
    eventually(DONE, "Prepare's effect", || {
        (flow.effects(id) == vec!["Prepare".to_string()]).then_some(())
    })?;
    if kill_runner {
        let runner = flow.runner_pid().context("runner pid in the log")?;
        kill(Pid::from_raw(runner), Signal::SIGKILL)?;
    } else {
        kill(Pid::from_raw(first_pid), Signal::SIGKILL)?;
    }
    flow.wait_status(id, "C").await?;
    let mut effects = flow.effects(id);
    effects.sort();
    assert_eq!(
        effects,
        vec!["Finish", "Left", "Prepare", "Right"],
        "every effect exactly once"
    );
    if !kill_runner {
        assert_ne!(flow.workflow_pid(Some(first_pid))?, first_pid);
    }
    flow.stop().await
}

/// A new version of the code is loaded while the workflow runs: nothing changes until the
/// workflow is reset; then new steps run the new code, and an order in flight across the
/// reset loses and repeats nothing.
async fn reset_loads_new_code(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-reset", &[]).await?;
    let before = flow.create(serde_json::json!({}))?;
    flow.wait_status(before, "C").await?;

    // The same steps with new code: each effect line says "v2".
    let v2 = flow.inst.home().join("flow-v2");
    std::fs::create_dir_all(&v2)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(fixtures("flow"))? {
        let path = entry?.path();
        let name = path.file_name().context("file name")?.to_owned();
        let mut text = std::fs::read_to_string(&path)?;
        if name == "steps.py" {
            text = text.replace(r#""%d %s\n""#, r#""%d %s v2\n""#);
            assert!(
                text.contains("v2"),
                "the fixture's effect line changed shape"
            );
        }
        std::fs::write(v2.join(&name), text)?;
        if !name.to_string_lossy().ends_with(".py") {
            files.push(v2.join(&name));
        }
    }
    flow.inst.load(&files)?;

    let unchanged = flow.create(serde_json::json!({}))?;
    flow.wait_status(unchanged, "C").await?;
    assert_eq!(flow.effects(unchanged).len(), 4);
    assert!(
        flow.effects(unchanged).iter().all(|e| !e.ends_with("v2")),
        "loading does not disturb the running workflow: {:?}",
        flow.effects(unchanged)
    );

    // An order in flight across the reset: Prepare runs (old code) while the reset happens.
    let across = flow.create(serde_json::json!({"sleep_after": {"Prepare": 2}}))?;
    eventually(DONE, "Prepare's effect", || {
        (!flow.effects(across).is_empty()).then_some(())
    })?;
    let key = flow.inst.admin_key()?.display().to_string();
    let out = flow
        .inst
        .sluice(&["reset", "--key", &key, "workflow", "TEST-FLOW"])?;
    let text = sluice_e2e::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reset: 4 step(s)"), "{text}");
    flow.wait_status(across, "C").await?;
    let effects = flow.effects(across);
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert_eq!(effects[0], "Prepare", "{effects:?}");
    assert!(
        effects[1..].iter().all(|e| e.ends_with(" v2")),
        "{effects:?}"
    );

    let after = flow.create(serde_json::json!({}))?;
    flow.wait_status(after, "C").await?;
    assert!(flow.effects(after).iter().all(|e| e.ends_with(" v2")));
    flow.stop().await
}

/// The system events named `name`, as `sluice events` prints them.
fn events(flow: &Flow, name: &str) -> Result<Vec<serde_json::Value>> {
    let key = flow.inst.admin_key()?.display().to_string();
    let out = flow.inst.sluice_ok(&["events", "--key", &key])?;
    Ok(out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["eventstr"] == name)
        .collect())
}

/// The workflow process raises `WORKFLOW_START` once it serves and `WORKFLOW_STOP` when it
/// is stopped, and with `qorus.audit: workflows` each is an audit record.
async fn start_and_stop_are_events_and_audited(b: Backend) -> Result<()> {
    let flow = Flow::start(b, "e2e-wf-events", &["qorus.audit: workflows"]).await?;
    let started = eventually(DONE, "WORKFLOW_START", || {
        events(&flow, "WORKFLOW_START")
            .ok()
            .filter(|e| !e.is_empty())
    })?;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["event"], 2001);
    assert_eq!(started[0]["info"]["name"], "TEST-FLOW");
    assert_eq!(started[0]["info"]["version"], "1.0");
    assert!(
        started[0]["info"]["workflowid"].as_i64() > Some(0),
        "{started:?}"
    );
    assert_eq!(started[0]["caller"], WF);

    let key = flow.inst.admin_key()?.display().to_string();
    flow.inst
        .sluice_ok(&["stop", "--key", &key, "workflow", "TEST-FLOW"])?;
    let stopped = eventually(DONE, "WORKFLOW_STOP", || {
        events(&flow, "WORKFLOW_STOP")
            .ok()
            .filter(|e| !e.is_empty())
    })?;
    assert_eq!(stopped[0]["event"], 2002);
    assert_eq!(stopped[0]["info"], started[0]["info"]);
    let audited = flow
        .db
        .strings(
            "SELECT CAST(audit_event_code AS TEXT) FROM audit_events \
             WHERE audit_event_code IN (7, 8) ORDER BY audit_eventid",
        )
        .await?;
    assert_eq!(
        audited,
        vec!["7", "8"],
        "WORKFLOW-START, then WORKFLOW-STOP"
    );
    flow.stop().await
}

on_both!(start_and_stop => start_and_stop_are_events_and_audited);
on_both!(parallel_branches => parallel_branches_complete_in_order);
on_both!(retry_error => retry_error_is_retried_after_its_delay);
on_both!(max_retries => retries_stop_at_max_retries);
on_both!(set_option => an_option_changed_while_running_applies);
on_both!(business_error => business_error_waits_for_an_operator);
async fn killed_workflow_process(b: Backend) -> Result<()> {
    validation_prevents_a_double_effect(b, false).await
}

async fn killed_runner(b: Backend) -> Result<()> {
    validation_prevents_a_double_effect(b, true).await
}

on_both!(kill_workflow_process => killed_workflow_process);
on_both!(kill_runner => killed_runner);
on_both!(reset => reset_loads_new_code);

/// The shipped example (`deploy/examples/order`, what `scripts/run` loads) runs an order to
/// COMPLETE, and an order it rejects waits in ERROR with the Python error recorded.
async fn shipped_example_runs(b: Backend) -> Result<()> {
    let key = "e2e-wf-example";
    let mut inst = sluice_e2e::Instance::new(b, key, &[])?;
    inst.create_schema()?;
    inst.load(&yaml_files(&examples("order"))?)?;
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let cert = inst.admin_key()?.display().to_string();
    let create = |data: &str| -> Result<i64> {
        order_id(&inst.sluice_ok(&[
            "order",
            "--key",
            &cert,
            "create",
            "EXAMPLE-ORDER",
            "--data",
            data,
        ])?)
    };
    let good = create(
        r#"{"staticdata": {"order_id": "A-1", "lines": [{"sku": "WIDGET", "qty": 2, "price": 5}, {"sku": "GADGET", "qty": 1, "price": 12}]}, "orderkeys": {"order_id": "A-1"}}"#,
    )?;
    let bad = create(r#"{"staticdata": {"order_id": "A-2", "lines": []}}"#)?;
    let db = inst.db().await?;
    let status = |id: i64| {
        let db = &db;
        async move {
            db.strings(&format!(
                "SELECT workflowstatus FROM workflow_instance WHERE workflow_instanceid = {id}"
            ))
            .await
            .map(|v| v.join(""))
        }
    };
    let deadline = std::time::Instant::now() + DONE;
    while status(good).await? != "C" || status(bad).await? != "E" {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "orders are {:?} and {:?}",
                status(good).await?,
                status(bad).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dynamic = db
        .strings(&format!(
            "SELECT dynamicdata FROM order_instance WHERE workflow_instanceid = {good}"
        ))
        .await?
        .join("");
    let data: serde_json::Value = serde_json::from_str(&dynamic)?;
    assert_eq!(data["charged"], 22, "{data}");
    assert_eq!(
        data["reserved"],
        serde_json::json!(["WIDGET", "GADGET"]),
        "{data}"
    );
    assert_eq!(data["validated"], true, "{data}");
    let error = db
        .strings(&format!(
            "SELECT error || ': ' || COALESCE(description, '') FROM error_instance \
             WHERE workflow_instanceid = {bad}"
        ))
        .await?;
    assert_eq!(error.len(), 1, "{error:?}");
    assert!(
        error[0].starts_with("ValueError: an order needs"),
        "{error:?}"
    );
    db.close().await;
    assert_eq!(inst.stop(m, sluice_e2e::flow::STOP_GRACE)?.code(), Some(0));
    Ok(())
}

on_both!(shipped_example => shipped_example_runs);
