//! `bench-startup`: how fast the master starts and recovers, and how much memory it idles at.
//!
//! Prints one JSON line:
//! - `first_start_ms`: exec to `SYSTEM_STARTUP` on an empty home (schema creation included);
//! - `start_ms_median`: exec to `SYSTEM_STARTUP` on an existing home, median of several;
//! - `idle_rss_kib`: the master's resident memory one second after it is ready;
//! - `recover_orders`, `recovery_ms`: a master is killed with that many IN-PROGRESS orders
//!   (one segment and two steps each) in its session; the next master's recovery time as it
//!   logs it, and `restart_to_ready_ms`, exec to ready including that recovery.
//!
//! Run: `cargo build --release --bins && target/release/bench-startup [ORDERS]` (or
//! `bench/run startup`). With `SLUICE_TEST_PG_URL` set it measures PostgreSQL too and
//! prints a second line.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::Signal;
use sluice_e2e::{Backend, Instance};

const STARTS: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let orders: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("ORDERS must be a number")?,
        None => 100_000,
    };
    println!("{}", measure(Backend::Sqlite, "sqlite", orders).await?);
    if let Some(pg) = Backend::postgres().await? {
        println!("{}", measure(pg, "postgres", orders).await?);
    }
    Ok(())
}

async fn measure(backend: Backend, name: &str, orders: u64) -> Result<serde_json::Value> {
    let key = "bench-startup";
    let mut inst = Instance::new(backend, key, &[])?;

    let (first, first_ms) = start_timed(&mut inst, &["--create-schema", "--quiet"])?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_kib = rss_kib(inst.pid(first))?;
    inst.stop(first, Duration::from_secs(20))?;

    let mut times = Vec::new();
    for _ in 0..STARTS {
        let (m, ms) = start_timed(&mut inst, &["--quiet"])?;
        times.push(ms);
        inst.stop(m, Duration::from_secs(20))?;
    }
    times.sort_by(f64::total_cmp);

    // A master dies holding `orders` IN-PROGRESS orders.
    let (victim, _) = start_timed(&mut inst, &["--quiet"])?;
    let db = inst.db().await?;
    let session = db
        .scalar_i64(&format!(
            "SELECT sessionid FROM sessions WHERE instance_key = '{key}' AND status = 'ACTIVE'"
        ))
        .await?;
    let series = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {orders})"
    );
    for sql in [
        "INSERT INTO workflows (workflowid, name, version, created, modified) VALUES (1, 'BENCH', '1.0', 0, 0)".to_string(),
        "INSERT INTO steps (stepid, name, version, created, modified) VALUES (1, 'a', '1.0', 0, 0), (2, 'b', '1.0', 0, 0)".to_string(),
        format!("{series} INSERT INTO workflow_instance (workflow_instanceid, workflowid, workflowstatus, sessionid, started, created, modified) SELECT i, 1, 'I', {session}, 0, 0, 0 FROM n"),
        format!("{series} INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, created, modified) SELECT i, 0, 'I', 0, 0 FROM n"),
        format!("{series} INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) SELECT i, 1, 0, 'C', 0, 0 FROM n"),
        format!("{series} INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, started, modified) SELECT i, 2, 0, 'I', 0, 0 FROM n"),
    ] {
        db.execute(&sql).await?;
    }
    inst.signal(victim, Signal::SIGKILL)?;
    inst.wait_exit(victim, Duration::from_secs(20))?;

    let (m, restart_ms) = start_timed(&mut inst, &["--quiet"])?;
    let recovered = db
        .scalar_i64("SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'R'")
        .await?;
    db.close().await;
    inst.stop(m, Duration::from_secs(20))?;
    let log = std::fs::read_to_string(inst.log_file(key, "master"))?;
    let recovery_ms = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("session {session} recovered")))
        .and_then(|l| field(l, "elapsed_ms="))
        .ok_or_else(|| anyhow!("no recovery line in the master log"))?;

    Ok(serde_json::json!({
        "bench": "startup",
        "backend": name,
        "first_start_ms": round(first_ms),
        "start_ms_median": round(times[times.len() / 2]),
        "starts": STARTS,
        "idle_rss_kib": idle_rss_kib,
        "recover_orders": orders,
        "recovered_orders": recovered,
        "recovery_ms": recovery_ms,
        "restart_to_ready_ms": round(restart_ms),
    }))
}

/// Starts the master and returns its index and the milliseconds from exec to
/// `SYSTEM_STARTUP` (polled every millisecond from its log file).
fn start_timed(inst: &mut Instance, args: &[&str]) -> Result<(usize, f64)> {
    let log = inst.log_file("bench-startup", "master");
    let before = std::fs::read_to_string(&log)
        .map(|s| s.matches("event SYSTEM_STARTUP").count())
        .unwrap_or(0);
    let t0 = Instant::now();
    let m = inst.start_master(args)?;
    loop {
        let seen = std::fs::read_to_string(&log)
            .map(|s| s.matches("event SYSTEM_STARTUP").count())
            .unwrap_or(0);
        if seen > before {
            return Ok((m, t0.elapsed().as_secs_f64() * 1000.0));
        }
        if let Some(status) = inst.try_status(m)? {
            inst.dump();
            return Err(anyhow!("master exited ({status}) before it was ready"));
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(anyhow!("master not ready after 300 s"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rss_kib(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))
}

fn field(line: &str, name: &str) -> Option<u64> {
    let rest = &line[line.find(name)? + name.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}
