//! End-to-end tests of jobs: the real master, job process and Python runner, jobs in
//! Qorus's YAML format (`tests/fixtures/jobs`) loaded with `sluice load`, driven with the
//! `sluice job` CLI over the cluster API, on SQLite and PostgreSQL.
//!
//! Timing is never what a test asserts, beyond generous bounds: what runs, in which order,
//! and what the database records.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sluice_e2e::{
    child_pid_from_log, eventually, fixtures, leading_number, on_both, output_text, Backend, Db,
    Instance,
};

const STOP_GRACE: Duration = Duration::from_secs(30);
const DONE: Duration = Duration::from_secs(60);

/// A running master with some of the fixture jobs loaded and their processes up.
struct Jobs {
    inst: Instance,
    master: usize,
    db: Db,
    /// Where the jobs write what they did (the fixture's `@OUT@`).
    out: PathBuf,
    cert: String,
}

impl Jobs {
    /// Loads `jobs` (fixture names, e.g. "TICK") and starts the master; returns once each
    /// job's process has loaded its code.
    async fn start(backend: Backend, key: &str, jobs: &[&str]) -> Result<Jobs> {
        let inst = Instance::new(backend, key, &[])?;
        let out = inst.home().join("job-out");
        std::fs::create_dir_all(&out)?;
        // The fixtures, with the jobs' output directory filled in.
        let copy = inst.home().join("job-defs");
        std::fs::create_dir_all(&copy)?;
        for entry in std::fs::read_dir(fixtures("jobs"))? {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?.replace("@OUT@", &out.display().to_string());
            std::fs::write(copy.join(path.file_name().context("file name")?), text)?;
        }
        inst.create_schema()?;
        let files: Vec<PathBuf> = jobs
            .iter()
            .map(|j| copy.join(format!("{j}-1.0.qjob.yaml")))
            .collect();
        inst.load(&files)?;
        let cert = inst.admin_key()?.display().to_string();
        let mut inst = inst;
        let master = inst.start_master(&[])?;
        inst.wait_ready(master)?;
        let db = inst.db().await?;
        let jobs_up = Jobs {
            inst,
            master,
            db,
            out,
            cert,
        };
        for job in jobs {
            jobs_up.wait_log(&net(job), "ready:")?;
        }
        Ok(jobs_up)
    }

    fn log(&self, process: &str) -> String {
        self.inst.log(process)
    }

    fn wait_log(&self, process: &str, text: &str) -> Result<()> {
        self.inst.wait_log(process, text, DONE)
    }

    /// `sluice job ARGS` over the cluster API.
    fn job(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["--key", self.cert.as_str(), "job"];
        all.extend_from_slice(args);
        self.inst.sluice(&all)
    }

    /// `sluice job ARGS`, which must succeed; its output.
    fn job_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.job(args)?;
        let text = output_text(&out);
        if !out.status.success() {
            bail!("sluice job {} failed:\n{text}", args.join(" "));
        }
        Ok(text)
    }

    async fn count(&self, sql: &str) -> Result<i64> {
        self.db.scalar_i64(sql).await
    }

    /// Waits until `sql` (a count) is above zero.
    async fn wait_count(&self, sql: &str, what: &str) -> Result<()> {
        let deadline = Instant::now() + DONE;
        while self.count(sql).await? == 0 {
            if Instant::now() > deadline {
                bail!("{what}: not after {DONE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The statuses of a job's instances, oldest first, as `ID:STATUS`.
    async fn instances(&self, job: &str) -> Result<Vec<(i64, String)>> {
        let rows = self
            .db
            .strings(&format!(
                "SELECT CAST(i.job_instanceid AS TEXT) || ':' || i.jobstatus FROM job_instance i \
                 JOIN jobs j ON j.jobid = i.jobid WHERE j.name = '{job}' \
                 ORDER BY i.job_instanceid"
            ))
            .await?;
        rows.iter()
            .map(|r| {
                let (id, status) = r.split_once(':').context("id:status")?;
                Ok((id.parse()?, status.to_string()))
            })
            .collect()
    }

    /// Waits until GATE has a run in progress (held at its gate); the id of its first run.
    async fn gate_run(&self) -> Result<i64> {
        let runs = self
            .wait_instances("GATE", "a run in progress", |i| {
                i.iter().any(|(_, s)| s == "I")
            })
            .await?;
        Ok(runs[0].0)
    }

    async fn wait_instances(
        &self,
        job: &str,
        what: &str,
        mut done: impl FnMut(&[(i64, String)]) -> bool,
    ) -> Result<Vec<(i64, String)>> {
        let deadline = Instant::now() + DONE;
        loop {
            let now = self.instances(job).await?;
            if done(&now) {
                return Ok(now);
            }
            if Instant::now() > deadline {
                bail!(
                    "{job}: {what} not reached after {DONE:?}: {now:?}\njob log:\n{}",
                    self.log(&net(job))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The lines a job wrote to `file` in the output directory.
    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.out.join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn job_pid(&self, job: &str, not: Option<i32>) -> Result<i32> {
        eventually(DONE, &format!("{job}'s process pid"), || {
            child_pid_from_log(&self.log("master"), &net(job)).filter(|p| Some(*p) != not)
        })
    }

    async fn stop(mut self) -> Result<()> {
        self.db.close().await;
        let code = self.inst.stop(self.master, STOP_GRACE)?.code();
        assert_eq!(code, Some(0), "master exit");
        Ok(())
    }
}

fn net(job: &str) -> String {
    format!("job-{job}-1.0")
}

fn count_status(instances: &[(i64, String)], status: &str) -> usize {
    instances.iter().filter(|(_, s)| s == status).count()
}

/// A job recurring every second runs about once a second and records COMPLETE runs with
/// what they saved; its process raises the job events.
async fn recurring_job_runs_on_schedule(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-recurring", &["TICK"]).await?;
    jobs.wait_instances("TICK", "a first COMPLETE run", |i| {
        count_status(i, "C") >= 1
    })
    .await?;
    let before = count_status(&jobs.instances("TICK").await?, "C");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let instances = jobs.instances("TICK").await?;
    let runs = count_status(&instances, "C") - before;
    assert!(
        (3..=7).contains(&runs),
        "{runs} runs in 5 s with recurring: 1: {instances:?}"
    );
    assert_eq!(count_status(&instances, "E"), 0, "{instances:?}");
    // Every run is in the file and saved its info; the schedule fired them, not a person.
    let (last, _) = instances.last().context("an instance")?.clone();
    let info = jobs
        .db
        .strings(&format!(
            "SELECT info FROM job_instance WHERE job_instanceid = {}",
            instances[0].0
        ))
        .await?
        .join("");
    let info: serde_json::Value = serde_json::from_str(&info)?;
    assert_eq!(info["tick"], instances[0].0);
    assert_eq!(info["trigger"], "schedule");
    assert!(jobs.lines("tick.txt").len() as i64 >= last - instances[0].0);
    let job = jobs
        .db
        .strings(
            "SELECT CAST(last_executed_job_instanceid AS TEXT) || ' ' || \
             CAST(next_trigger - last_executed AS TEXT) FROM jobs WHERE name = 'TICK'",
        )
        .await?
        .join("");
    assert!(
        !job.is_empty(),
        "last_executed and next_trigger are recorded"
    );
    for event in [
        "event JOB_START",
        "event JOB_INSTANCE_START",
        "event JOB_INSTANCE_STOP",
    ] {
        jobs.wait_log("master", event)?;
    }
    let listed = jobs.job_ok(&["list"])?;
    assert!(
        listed.contains("TICK") && listed.contains("every 1 s") && listed.contains("running"),
        "{listed}"
    );
    jobs.stop().await
}

/// A job slower than its period: a trigger that comes due during a run waits for it, so
/// runs never overlap (in the job's own record and in the database).
async fn slow_job_never_overlaps(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-slow", &["SLOW"]).await?;
    let deadline = Instant::now() + Duration::from_secs(9);
    let mut most_in_progress = 0;
    while Instant::now() < deadline {
        let n = jobs
            .count("SELECT COUNT(*) FROM job_instance WHERE jobstatus = 'I'")
            .await?;
        most_in_progress = most_in_progress.max(n);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        most_in_progress <= 1,
        "{most_in_progress} runs IN-PROGRESS at once"
    );
    jobs.wait_instances("SLOW", "three COMPLETE runs", |i| count_status(i, "C") >= 3)
        .await?;
    // Each run's start and end, from the job's own lines "start ID T" / "end ID T".
    let mut runs: Vec<(i64, f64, Option<f64>)> = Vec::new();
    for line in jobs.lines("slow.txt") {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [what, id, at] = parts[..] else {
            bail!("bad line {line:?}");
        };
        let (id, at): (i64, f64) = (id.parse()?, at.parse()?);
        match what {
            "start" => runs.push((id, at, None)),
            "end" => {
                let run = runs
                    .iter_mut()
                    .find(|r| r.0 == id)
                    .context("an end without a start")?;
                run.2 = Some(at);
            }
            _ => bail!("bad line {line:?}"),
        }
    }
    assert!(runs.len() >= 3, "{runs:?}");
    for pair in runs.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        let end = earlier
            .2
            .context("a run that started another before it ended")?;
        assert!(
            later.1 >= end,
            "run {} started at {} before run {} ended at {end}",
            later.0,
            later.1,
            earlier.0
        );
        // The due trigger fired when the run ended: once, not after a further period.
        assert!(
            later.1 - end < 1.5,
            "run {} waited {} s after run {} ended",
            later.0,
            later.1 - end,
            earlier.0
        );
    }
    let instances = jobs.instances("SLOW").await?;
    assert!(
        instances.iter().all(|(_, s)| s == "C" || s == "I"),
        "{instances:?}"
    );
    jobs.stop().await
}

/// `sluice job run` runs a job now and returns the run; a bad cron line names its field;
/// a new schedule takes effect at once.
async fn run_now_and_schedule(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-run-now", &["RUNNOW"]).await?;
    let text = jobs.job_ok(&["run", "RUNNOW"])?;
    assert!(text.contains("COMPLETE"), "{text}");
    let id: i64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.trim_end_matches(':').parse().ok())
        .with_context(|| format!("no instance id in {text:?}"))?;
    assert_eq!(jobs.instances("RUNNOW").await?, vec![(id, "C".to_string())]);
    let info = jobs
        .db
        .strings(&format!(
            "SELECT info FROM job_instance WHERE job_instanceid = {id}"
        ))
        .await?
        .join("");
    let info: serde_json::Value = serde_json::from_str(&info)?;
    assert_eq!(info["trigger"], "manual");
    let shown = jobs.job_ok(&["show", "RUNNOW"])?;
    assert!(
        shown.contains("0 0 1 1 *")
            && shown.contains(&id.to_string())
            && shown.contains("COMPLETE"),
        "{shown}"
    );

    // New code loaded while the job runs: a reset makes the next run use it.
    let defs = jobs.inst.home().join("job-defs");
    let code = std::fs::read_to_string(defs.join("jobs.py"))?;
    let v2 = code.replace(r#""%d %d" % (me,"#, r#""%d %d v2" % (me,"#);
    assert_ne!(v2, code, "the fixture's tick line changed shape");
    std::fs::write(defs.join("jobs.py"), v2)?;
    jobs.inst.load(&[defs.join("RUNNOW-1.0.qjob.yaml")])?;
    let text = jobs.job_ok(&["reset", "RUNNOW"])?;
    assert!(text.contains("reset"), "{text}");
    jobs.job_ok(&["run", "RUNNOW"])?;
    let ticks = jobs.lines("tick.txt");
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert!(
        !ticks[0].ends_with(" v2") && ticks[1].ends_with(" v2"),
        "{ticks:?}"
    );

    let bad = jobs.job(&["schedule", "RUNNOW", "61 * * * *"])?;
    let text = output_text(&bad);
    assert!(!bad.status.success(), "{text}");
    assert!(
        text.contains("INVALID-ARGUMENT") && text.contains("minutes"),
        "{text}"
    );
    let unknown = jobs.job(&["run", "NO-SUCH-JOB"])?;
    assert!(
        output_text(&unknown).contains("NOT-FOUND"),
        "{}",
        output_text(&unknown)
    );

    // Every second from now on: it runs by itself.
    let text = jobs.job_ok(&["schedule", "RUNNOW", "--every", "1"])?;
    assert!(text.contains("every 1 s"), "{text}");
    jobs.wait_instances("RUNNOW", "two scheduled runs after the two by hand", |i| {
        count_status(i, "C") >= 4
    })
    .await?;
    jobs.stop().await
}

/// A job process killed in the middle of a run: the run is recorded as CRASH, and the job
/// runs again at its next time in the restarted process.
async fn killed_job_process_run_is_crash(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-kill", &["GATE"]).await?;
    let running = jobs.gate_run().await?;
    eventually(DONE, "the run's start line", || {
        jobs.lines("gate.txt")
            .contains(&format!("start {running}"))
            .then_some(())
    })?;
    let pid = jobs.job_pid("GATE", None)?;
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    jobs.wait_instances("GATE", "the killed run CRASH", |i| {
        i.iter().any(|(id, s)| *id == running && s == "Z")
    })
    .await?;
    std::fs::write(jobs.out.join("open"), "")?;
    let after = jobs
        .wait_instances("GATE", "a later COMPLETE run", |i| {
            i.iter().any(|(id, s)| *id > running && s == "C")
        })
        .await?;
    assert_eq!(after[0], (running, "Z".to_string()), "{after:?}");
    assert_ne!(
        jobs.job_pid("GATE", Some(pid))?,
        pid,
        "a new process runs it"
    );
    assert!(
        !jobs.lines("gate.txt").contains(&format!("end {running}")),
        "the killed run never ended"
    );
    jobs.stop().await
}

/// The runner dies in the middle of a run: the run ends in ERROR with the runner's death as
/// its error, a new runner starts, and the job runs on in the same process.
async fn killed_runner_run_is_error(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-kill-runner", &["GATE"]).await?;
    let pid = jobs.job_pid("GATE", None)?;
    let running = jobs.gate_run().await?;
    let log = jobs.log(&net("GATE"));
    let runner: i32 = log
        .lines()
        .find_map(|l| l.split("runner pid ").nth(1))
        .and_then(leading_number)
        .with_context(|| format!("no runner pid in\n{log}"))?;
    kill(Pid::from_raw(runner), Signal::SIGKILL)?;
    jobs.wait_instances("GATE", "the interrupted run ERROR", |i| {
        i.iter().any(|(id, s)| *id == running && s == "E")
    })
    .await?;
    let error = jobs
        .db
        .strings(&format!(
            "SELECT error || ': ' || error_description FROM job_instance \
             WHERE job_instanceid = {running}"
        ))
        .await?
        .join("");
    assert!(
        error.starts_with("RUNNER-DIED: ") && error.contains("SIGKILL"),
        "{error}"
    );
    std::fs::write(jobs.out.join("open"), "")?;
    jobs.wait_instances("GATE", "a later COMPLETE run", |i| {
        i.iter().any(|(id, s)| *id > running && s == "C")
    })
    .await?;
    jobs.wait_log(&net("GATE"), "Python runner restarted")?;
    assert_eq!(jobs.job_pid("GATE", None)?, pid, "the same job process");
    jobs.stop().await
}

/// Deactivated with the CLI: no run starts after the command returned (its commit came
/// before), the process stops; activated again, it runs again.
async fn deactivation_stops_the_job(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-deactivate", &["TICK"]).await?;
    jobs.wait_instances("TICK", "two COMPLETE runs", |i| count_status(i, "C") >= 2)
        .await?;
    let text = jobs.job_ok(&["deactivate", "TICK"])?;
    assert!(text.contains("inactive"), "{text}");
    let deactivated = sluice_core::now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = jobs
        .count(&format!(
            "SELECT COUNT(*) FROM job_instance WHERE started > {deactivated}"
        ))
        .await?;
    assert_eq!(late, 0, "a run started after the deactivation returned");
    jobs.wait_log("master", "event JOB_STOP")?;
    eventually(DONE, "TICK listed as inactive", || {
        jobs.job_ok(&["list"])
            .ok()
            .filter(|l| l.contains("inactive"))
    })?;
    let running = jobs
        .count("SELECT COUNT(*) FROM job_instance WHERE jobstatus = 'I'")
        .await?;
    assert_eq!(running, 0);

    let text = jobs.job_ok(&["activate", "TICK"])?;
    assert!(text.contains("active"), "{text}");
    let activated = sluice_core::now_ms();
    jobs.wait_count(
        &format!(
            "SELECT COUNT(*) FROM job_instance WHERE started > {activated} AND jobstatus = 'C'"
        ),
        "a run after the activation",
    )
    .await?;
    jobs.stop().await
}

/// The race Qorus leaves open, made deterministic: the job is deactivated in the database
/// (as another node's master, or an operator just before a trigger, would) while a run is in
/// progress and the next trigger is already due. The process has not been told; the due
/// trigger still must not run once the run in progress ends.
async fn deactivation_just_before_a_trigger_prevents_it(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-race", &["GATE"]).await?;
    let running = jobs.gate_run().await?;
    // The period is 1 s: the next trigger comes due while the gate is shut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    jobs.db
        .execute("UPDATE jobs SET active = FALSE WHERE name = 'GATE'")
        .await?;
    std::fs::write(jobs.out.join("open"), "")?;
    jobs.wait_instances("GATE", "the run COMPLETE", |i| {
        i.iter().any(|(id, s)| *id == running && s == "C")
    })
    .await?;
    jobs.wait_log(&net("GATE"), "not running the job: the job is inactive")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        jobs.instances("GATE").await?,
        vec![(running, "C".to_string())],
        "only the run that began before the deactivation"
    );
    jobs.stop().await
}

/// An exception in run(): an ERROR run with the error recorded, a JOB_ERROR event, and the
/// job keeps running on its schedule in the same process.
async fn exception_gives_an_error_run(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-error", &["FAIL"]).await?;
    let pid = jobs.job_pid("FAIL", None)?;
    jobs.wait_instances("FAIL", "three ERROR runs", |i| count_status(i, "E") >= 3)
        .await?;
    let errors = jobs
        .db
        .strings(
            "SELECT error || ': ' || error_description FROM job_instance \
             WHERE jobstatus = 'E' ORDER BY job_instanceid",
        )
        .await?;
    assert!(
        errors.iter().all(|e| e == "ValueError: no luck this time"),
        "{errors:?}"
    );
    let info = jobs
        .db
        .strings("SELECT error_info FROM job_instance WHERE jobstatus = 'E'")
        .await?;
    let info: serde_json::Value = serde_json::from_str(&info[0])?;
    assert!(
        info["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("raise ValueError")),
        "{info}"
    );
    jobs.wait_log("master", "event JOB_ERROR")?;
    assert_eq!(jobs.job_pid("FAIL", None)?, pid, "the same process goes on");
    jobs.stop().await
}

/// State data lives until a COMPLETE run clears it; persistent state data stays.
async fn state_data_across_runs(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-state", &["STATE"]).await?;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let out = jobs.job(&["run", "STATE"])?;
        codes.push(out.status.code());
        let text = output_text(&out);
        assert!(text.contains("job instance"), "{text}");
    }
    assert_eq!(
        codes,
        vec![Some(1), Some(0), Some(1)],
        "ERROR, COMPLETE, ERROR"
    );
    let seen: Vec<serde_json::Value> = jobs
        .lines("state.txt")
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let view: Vec<(serde_json::Value, serde_json::Value)> = seen
        .iter()
        .map(|s| (s["state"].clone(), s["persistent"].clone()))
        .collect();
    use serde_json::json;
    assert_eq!(
        view,
        vec![
            (json!(null), json!(null)),
            (json!({"step": 1}), json!({"runs": 1})),
            (json!(null), json!({"runs": 2})),
        ]
    );
    let stored = jobs
        .db
        .strings("SELECT COALESCE(data, '-') || ' ' || persistent_data FROM job_state_data")
        .await?;
    assert_eq!(stored, vec![r#"{"step":1} {"runs":3}"#]);
    let statuses: Vec<String> = jobs
        .instances("STATE")
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(statuses, ["E", "C", "E"]);
    jobs.stop().await
}

/// A job whose expiry date passes stops running for good: its process retires and the
/// master does not start it again.
async fn expiry_retires_the_job(b: Backend) -> Result<()> {
    let jobs = Jobs::start(b, "e2e-job-expiry", &["TICK"]).await?;
    jobs.wait_instances("TICK", "a COMPLETE run", |i| count_status(i, "C") >= 1)
        .await?;
    let at = sluice_core::now_ms() + 2_000;
    let text = jobs.job_ok(&["expiry", "TICK", &at.to_string()])?;
    assert!(text.contains("expires"), "{text}");
    jobs.wait_log(&net("TICK"), "the job expired at")?;
    jobs.wait_log("master", "the process has nothing more to do")?;
    eventually(DONE, "TICK listed as expired", || {
        jobs.job_ok(&["list"])
            .ok()
            .filter(|l| l.contains("expired"))
    })?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let late = jobs
        .count(&format!(
            "SELECT COUNT(*) FROM job_instance WHERE started >= {at}"
        ))
        .await?;
    assert_eq!(late, 0, "no run after the expiry date");
    let refused = jobs.job(&["activate", "TICK"])?;
    assert!(
        output_text(&refused).contains("STATUS-ERROR"),
        "{}",
        output_text(&refused)
    );
    jobs.stop().await
}

on_both! {
    (flavor = "multi_thread", worker_threads = 2)
    recurring => recurring_job_runs_on_schedule,
    no_overlap => slow_job_never_overlaps,
    run_now => run_now_and_schedule,
    kill_job_process => killed_job_process_run_is_crash,
    kill_runner => killed_runner_run_is_error,
    deactivate => deactivation_stops_the_job,
    deactivation_race => deactivation_just_before_a_trigger_prevents_it,
    exception => exception_gives_an_error_run,
    state_data => state_data_across_runs,
    expiry => expiry_retires_the_job,
}
