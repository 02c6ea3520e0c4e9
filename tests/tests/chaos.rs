//! The chaos test: 1,000 orders of TEST-FLOW (four validation-guarded steps, each appending
//! "<order> <step>" to a file) run while the workflow process, the Python runner and the
//! master are each killed with SIGKILL at random moments. At the end every order must be
//! COMPLETE and every step's effect recorded exactly once.
//!
//! The kills are drawn from a seeded generator; the seed is printed, and
//! `SLUICE_CHAOS_SEED=N` replays a run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sluice_core::store::orders::NewOrder;
use sluice_e2e::flow::{Flow, STOP_GRACE};
use sluice_e2e::{alive, Backend};

const ORDERS: usize = 1000;
const STEPS: [&str; 4] = ["Finish", "Left", "Prepare", "Right"];
const KILLS_EACH: usize = 3;
const FINISH: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy)]
enum Kill {
    WorkflowProcess,
    Runner,
    Master,
}

async fn chaos(backend: Backend, key: &str) -> Result<()> {
    let seed: u64 = match std::env::var("SLUICE_CHAOS_SEED") {
        Ok(s) => s.parse().context("SLUICE_CHAOS_SEED")?,
        Err(_) => rand::random(),
    };
    eprintln!("chaos seed {seed} (replay with SLUICE_CHAOS_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    // Restarts are part of the test: the crash-loop limit must not stop the workflow.
    let mut flow = Flow::start(
        backend,
        key,
        &["qorus.process-restart-limit: 100", "qorus.master-grace: 60"],
    )
    .await?;

    // Orders are created through the store, the code the master's create-order runs, by
    // four concurrent clients, while the kills happen.
    let home = sluice_core::home::Home::new(flow.inst.home().to_path_buf());
    let options = sluice_core::options::Options::load(&home, &[])?;
    let store = sluice_core::store::Store::open(&options.systemdb(), false).await?;
    let out = flow.out.display().to_string();
    let mut creators = Vec::new();
    for c in 0..4 {
        let store = store.clone();
        let out = out.clone();
        creators.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..ORDERS / 4 {
                let order: NewOrder = serde_json::from_value(serde_json::json!({
                    "name": "TEST-FLOW",
                    "staticdata": {"out": out, "sleep": 0.002, "client": c, "i": i},
                }))?;
                ids.push(store.create_order(&order).await?);
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            anyhow::Ok(ids)
        }));
    }

    let mut kills: Vec<Kill> = [Kill::WorkflowProcess, Kill::Runner, Kill::Master]
        .into_iter()
        .flat_map(|k| std::iter::repeat_n(k, KILLS_EACH))
        .collect();
    kills.shuffle(&mut rng);
    for what in kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        match what {
            Kill::WorkflowProcess => {
                let pid = tokio::task::block_in_place(|| flow.workflow_pid(None))?;
                if alive(pid) {
                    eprintln!("chaos: kill -9 workflow process {pid}");
                    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
                }
            }
            Kill::Runner => {
                if let Some(pid) = flow.runner_pid().filter(|p| alive(*p)) {
                    eprintln!("chaos: kill -9 runner {pid}");
                    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
                }
            }
            Kill::Master => {
                eprintln!("chaos: kill -9 master");
                flow.inst.signal(flow.master, Signal::SIGKILL)?;
                let pause = Duration::from_millis(rng.random_range(0..500));
                // The harness waits by polling; off the runtime's threads, so the order
                // creators (which may hold SQLite's write lock) keep going meanwhile.
                let master = flow.master;
                let m = tokio::task::block_in_place(|| -> Result<usize> {
                    flow.inst.wait_exit(master, STOP_GRACE)?;
                    std::thread::sleep(pause);
                    let m = flow.inst.start_master(&[])?;
                    if let Err(err) = flow.inst.wait_ready(m) {
                        flow.inst.dump();
                        return Err(err);
                    }
                    Ok(m)
                })?;
                flow.master = m;
            }
        }
    }
    let mut ids = Vec::new();
    for c in creators {
        ids.extend(c.await??);
    }
    assert_eq!(ids.len(), ORDERS);
    store.close().await;

    let deadline = Instant::now() + FINISH;
    loop {
        let counts = flow
            .db
            .strings(
                "SELECT workflowstatus || ':' || CAST(COUNT(*) AS TEXT) FROM workflow_instance \
                 GROUP BY workflowstatus ORDER BY workflowstatus",
            )
            .await?;
        if counts == vec![format!("C:{ORDERS}")] {
            break;
        }
        if Instant::now() > deadline {
            let stuck = flow
                .db
                .strings(
                    "SELECT CAST(workflow_instanceid AS TEXT) || ' ' || workflowstatus || ' s=' \
                     || CAST(sessionid AS TEXT) || ' ' || COALESCE(owner_token, '-') \
                     FROM workflow_instance WHERE workflowstatus <> 'C' \
                     ORDER BY workflow_instanceid LIMIT 10",
                )
                .await?;
            let errors = flow
                .db
                .strings(
                    "SELECT CAST(e.workflow_instanceid AS TEXT) || ' ' || e.error || ': ' \
                     || COALESCE(e.description, '') FROM error_instance e \
                     JOIN workflow_instance w ON w.workflow_instanceid = e.workflow_instanceid \
                     WHERE w.workflowstatus <> 'C' ORDER BY e.errorid LIMIT 10",
                )
                .await?;
            let sessions = flow
                .db
                .strings(
                    "SELECT CAST(sessionid AS TEXT) || ' ' || status FROM sessions \
                     ORDER BY sessionid",
                )
                .await?;
            bail!(
                "orders not all COMPLETE after {FINISH:?}: {counts:?} (seed {seed})\n\
                 first unfinished: {stuck:?}\ntheir errors: {errors:?}\nsessions: {sessions:?}\n\
                 master log:\n{}\n{}",
                flow.log("master")
                    .lines()
                    .filter(|l| l.contains("WARN")
                        || l.contains("ERROR")
                        || l.contains("adopt")
                        || l.contains("started sluice-workflow"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                flow.log(sluice_e2e::flow::WF)
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every validation-guarded step's effect exactly once.
    let text = std::fs::read_to_string(&flow.out)?;
    let mut effects: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (id, step) = line.split_once(' ').context("effect line")?;
        effects
            .entry(id.parse()?)
            .or_default()
            .push(step.to_string());
    }
    let mut bad = Vec::new();
    for id in &ids {
        let mut got = effects.remove(id).unwrap_or_default();
        got.sort();
        if got != STEPS {
            bad.push(format!("order {id}: {got:?}"));
        }
    }
    assert!(
        bad.is_empty() && effects.is_empty(),
        "effects not exactly once (seed {seed}): {:?} ; unexpected orders {:?}",
        &bad[..bad.len().min(20)],
        effects.keys().take(20).collect::<Vec<_>>()
    );
    let errors = flow
        .db
        .scalar_i64("SELECT COUNT(*) FROM error_instance")
        .await?;
    eprintln!(
        "chaos: {ORDERS} orders COMPLETE, every effect once; {errors} step error(s) recorded"
    );
    flow.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sqlite() -> Result<()> {
    chaos(Backend::Sqlite, "e2e-chaos").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() -> Result<()> {
    let Some(pg) = Backend::postgres().await? else {
        eprintln!("skipped: {} is not set", sluice_e2e::PG_URL_ENV);
        return Ok(());
    };
    chaos(pg, "e2e-chaos-pg").await
}
