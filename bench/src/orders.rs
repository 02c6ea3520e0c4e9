//! `bench-orders`: durable workflow throughput and latency, against the disk's floor.
//!
//! One JSON line per backend:
//! - `orders_per_s`, `steps_per_s`: N orders of BENCH-ORDERS (three trivial Python steps in
//!   series, `bench/fixtures/orders`) are queued while the workflow is stopped, then the
//!   workflow is started; the rate is N over the time from the first step's start to the
//!   last order's completion, as the database records them. Every transition is committed
//!   (`synchronous=FULL` on SQLite) before the engine acts on it.
//! - `latency_ms_median`, `latency_ms_p99`: with the workflow running, `LATENCY_ORDERS`
//!   orders are created at a steady rate by concurrent clients; created to COMPLETE, from
//!   the database's timestamps.
//! - `floor_commits_per_s`: single-row commits per second on the same disk and settings
//!   (SQLite WAL + `synchronous=FULL` file beside the system database, or the same
//!   PostgreSQL server), and `orders_per_floor_commit`, the ratio: how much work one
//!   commit carries.
//!
//! Run: `bench/run orders [N]` (default 20,000). With `SLUICE_TEST_PG_URL` set it measures
//! PostgreSQL too.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sluice_core::store::orders::NewOrder;
use sluice_e2e::{output_text, Backend, Db, Instance};

const KEY: &str = "bench-orders";
const LATENCY_ORDERS: usize = 2000;
const LATENCY_RATE_PER_S: u64 = 500;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let orders: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("N must be a number")?,
        None => 20_000,
    };
    println!("{}", measure(Backend::Sqlite, "sqlite", orders).await?);
    if let Some(pg) = Backend::postgres().await? {
        println!("{}", measure(pg, "postgres", orders).await?);
    }
    Ok(())
}

fn fixture_files() -> Result<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/orders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    Ok(files)
}

async fn measure(backend: Backend, name: &str, n: usize) -> Result<serde_json::Value> {
    let mut inst = Instance::new(backend, KEY, &["qorus.autostart-interfaces: false"])?;
    let out = inst.sluice(&["schema", "create"])?;
    if !out.status.success() {
        bail!("schema create: {}", output_text(&out));
    }
    let mut args = vec!["load".to_string()];
    args.extend(fixture_files()?);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = inst.sluice(&refs)?;
    if !out.status.success() {
        bail!("load: {}", output_text(&out));
    }
    let db = inst.db().await?;
    let floor = floor_commits_per_s(&inst, &db).await?;
    let workflowid = db
        .scalar_i64("SELECT workflowid FROM workflows WHERE name = 'BENCH-ORDERS'")
        .await?;

    // Throughput: N orders queued, then the workflow started.
    queue_orders(&db, workflowid, n).await?;
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let t0 = Instant::now();
    let key = inst.admin_key()?.display().to_string();
    let out = inst.sluice(&["start", "--key", &key, "workflow", "BENCH-ORDERS", "1.0"])?;
    if !out.status.success() {
        bail!("start: {}", output_text(&out));
    }
    wait_complete(&db, n as i64, t0).await?;
    let (first_step, last_done) = span(&db, "1 = 1").await?;
    let seconds = (last_done - first_step) as f64 / 1000.0;
    let orders_per_s = n as f64 / seconds;

    // Latency: orders created while the workflow runs, at a steady rate.
    let before = db
        .scalar_i64("SELECT COALESCE(MAX(workflow_instanceid), 0) FROM workflow_instance")
        .await?;
    create_steadily(&inst, LATENCY_ORDERS, LATENCY_RATE_PER_S).await?;
    wait_complete(&db, (n + LATENCY_ORDERS) as i64, Instant::now()).await?;
    let mut latencies: Vec<i64> = db
        .strings(&format!(
            "SELECT CAST(completed - created AS TEXT) FROM workflow_instance \
             WHERE workflow_instanceid > {before}"
        ))
        .await?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    latencies.sort_unstable();
    let pct = |p: f64| -> i64 {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    db.close().await;
    inst.stop(m, Duration::from_secs(60))?;
    Ok(serde_json::json!({
        "bench": "orders",
        "backend": name,
        "orders": n,
        "steps_per_order": 3,
        "seconds": (seconds * 100.0).round() / 100.0,
        "orders_per_s": orders_per_s.round(),
        "steps_per_s": (orders_per_s * 3.0).round(),
        "latency_orders": LATENCY_ORDERS,
        "latency_rate_per_s": LATENCY_RATE_PER_S,
        "latency_ms_median": pct(0.5),
        "latency_ms_p99": pct(0.99),
        "floor_commits_per_s": floor.round(),
        "orders_per_floor_commit": ((orders_per_s / floor) * 100.0).round() / 100.0,
    }))
}

/// Queues `n` READY orders directly, in a few large transactions: the benchmark measures
/// running orders, and a queue built by `create-order` calls would take longer than the run.
async fn queue_orders(db: &Db, workflowid: i64, n: usize) -> Result<()> {
    let now = sluice_core::now_ms();
    let base = db
        .scalar_i64("SELECT COALESCE(MAX(workflow_instanceid), 0) FROM workflow_instance")
        .await?;
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(5000);
        let from = base + done as i64 + 1;
        let to = from + chunk as i64 - 1;
        let series = format!(
            "WITH RECURSIVE s(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM s WHERE i < {to})"
        );
        db.execute(&format!(
            "{series} INSERT INTO workflow_instance (workflow_instanceid, workflowid, \
             workflowstatus, priority, started, created, modified) \
             SELECT i, {workflowid}, 'Y', 500, {now}, {now}, {now} FROM s"
        ))
        .await?;
        db.execute(&format!(
            "{series} INSERT INTO order_instance (workflow_instanceid, staticdata) \
             SELECT i, '{{\"n\": ' || CAST(i AS TEXT) || '}}' FROM s"
        ))
        .await?;
        done += chunk;
    }
    if let Db::Postgres(_) = db {
        db.execute(&format!(
            "SELECT setval(pg_get_serial_sequence('workflow_instance', 'workflow_instanceid'), {})",
            base + n as i64
        ))
        .await?;
    }
    Ok(())
}

/// Creates `n` orders at about `rate` per second from eight concurrent clients, through
/// the same store code the master's `create-order` runs (one transaction each).
async fn create_steadily(inst: &Instance, n: usize, rate: u64) -> Result<()> {
    let home = sluice_core::home::Home::new(inst.home().to_path_buf());
    let options = sluice_core::options::Options::load(&home, &[])?;
    let store = sluice_core::store::Store::open(&options.systemdb(), false).await?;
    let clients = 8usize;
    let interval = Duration::from_micros(1_000_000 * clients as u64 / rate);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for i in 0..n / clients {
                tick.tick().await;
                let order: NewOrder = serde_json::from_value(serde_json::json!({
                    "name": "BENCH-ORDERS",
                    "staticdata": {"client": c, "i": i},
                }))?;
                store.create_order(&order).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    store.close().await;
    Ok(())
}

async fn wait_complete(db: &Db, total: i64, t0: Instant) -> Result<()> {
    loop {
        let done = db
            .scalar_i64("SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'C'")
            .await?;
        if done >= total {
            return Ok(());
        }
        let bad = db
            .scalar_i64("SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus IN ('E', 'R')")
            .await?;
        if bad > 0 {
            return Err(anyhow!("{bad} order(s) in ERROR or RETRY"));
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            return Err(anyhow!(
                "only {done} of {total} orders complete after 30 min"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// First step start and last completion among orders matching `filter`.
async fn span(db: &Db, filter: &str) -> Result<(i64, i64)> {
    let first = db
        .scalar_i64(&format!(
            "SELECT MIN(s.started) FROM step_instance s JOIN workflow_instance w \
             ON w.workflow_instanceid = s.workflow_instanceid WHERE {filter}"
        ))
        .await?;
    let last = db
        .scalar_i64(&format!(
            "SELECT MAX(completed) FROM workflow_instance WHERE {filter}"
        ))
        .await?;
    Ok((first, last))
}

/// Single-row commits per second for two seconds, on the same disk and settings.
async fn floor_commits_per_s(inst: &Instance, db: &Db) -> Result<f64> {
    match db {
        Db::Sqlite(_) => {
            let path = inst.home().join("var/floor.db");
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?;
            sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, v TEXT)")
                .execute(&pool)
                .await?;
            let t0 = Instant::now();
            let mut n = 0u64;
            while t0.elapsed() < Duration::from_secs(2) {
                sqlx::query("INSERT INTO floor (v) VALUES ('x')")
                    .execute(&pool)
                    .await?;
                n += 1;
            }
            let rate = n as f64 / t0.elapsed().as_secs_f64();
            pool.close().await;
            Ok(rate)
        }
        Db::Postgres(_) => {
            db.execute("CREATE TABLE bench_floor (id BIGSERIAL PRIMARY KEY, v TEXT)")
                .await?;
            let t0 = Instant::now();
            let mut n = 0u64;
            while t0.elapsed() < Duration::from_secs(2) {
                db.execute("INSERT INTO bench_floor (v) VALUES ('x')")
                    .await?;
                n += 1;
            }
            let rate = n as f64 / t0.elapsed().as_secs_f64();
            db.execute("DROP TABLE bench_floor").await?;
            Ok(rate)
        }
    }
}
