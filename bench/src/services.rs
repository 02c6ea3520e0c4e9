//! `bench-services`: service method calls through the system API.
//!
//! One JSON line: round trips per second and latency (median, p99) of a trivial method of
//! BENCH-SVC (`bench/fixtures/services`), called with `omq.system.call-service` over the
//! cluster API (client -> master -> service process -> Python runner and back, CURVE on
//! both bus hops) by 1 and by 16 concurrent callers, each waiting for its answer before
//! the next call. For comparison it also calls the service process's own socket directly
//! (the route the HTTP gateway takes), with 16 callers.
//!
//! Run: `bench/run services [SECONDS]` (default 5 s per measurement).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_e2e::api::ApiClient;
use sluice_e2e::{output_text, Backend, Instance};
use sluice_proto::v1::Envelope;

const KEY: &str = "bench-services";

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("SECONDS must be a number")?,
        None => 5,
    };
    let mut inst = Instance::new(Backend::Sqlite, KEY, &[])?;
    let out = inst.sluice(&["schema", "create"])?;
    if !out.status.success() {
        bail!("schema create: {}", output_text(&out));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/services");
    let yaml = dir.join("BENCH-SVC-1.0.qsd.yaml").display().to_string();
    let out = inst.sluice(&["load", &yaml])?;
    if !out.status.success() {
        bail!("load: {}", output_text(&out));
    }
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;
    let api = ApiClient::connect(&inst)?;
    // The first call waits for the autostart service to be ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    while api
        .try_service("BENCH-SVC", "echo", json!([0]))
        .await?
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("BENCH-SVC did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = Duration::from_secs(seconds);
    let one = measure(&api, 1, run).await?;
    let sixteen = measure(&api, 16, run).await?;
    let direct = measure_direct(&inst, 16, run).await?;
    inst.stop(m, Duration::from_secs(60))?;
    println!(
        "{}",
        json!({
            "bench": "services",
            "route": "cluster API client -> master -> service process -> Python runner",
            "seconds_per_measurement": seconds,
            "callers_1": one,
            "callers_16": sixteen,
            "direct_to_service_process_callers_16": direct,
        })
    );
    Ok(())
}

fn summary(mut latencies_us: Vec<u64>, elapsed: Duration, errors: usize) -> serde_json::Value {
    latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let i = ((latencies_us.len() as f64 - 1.0) * p).round() as usize;
        latencies_us.get(i).copied().unwrap_or_default() as f64 / 1000.0
    };
    json!({
        "calls": latencies_us.len(),
        "errors": errors,
        "calls_per_s": (latencies_us.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency_ms_median": pct(0.5),
        "latency_ms_p99": pct(0.99),
    })
}

/// Runs `callers` loops for `run`, each calling `call(n)` and waiting for it (true: the
/// call succeeded), and summarises what they measured.
async fn drive<F, Fut>(callers: usize, run: Duration, call: F) -> Result<serde_json::Value>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let until = start + run;
    let mut tasks = Vec::new();
    for n in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < until {
                let t = Instant::now();
                if call(n).await {
                    latencies.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    Ok(summary(all, start.elapsed(), errors))
}

async fn measure(api: &ApiClient, callers: usize, run: Duration) -> Result<serde_json::Value> {
    let api = api.clone();
    drive(callers, run, move |n| {
        let api = api.clone();
        async move {
            matches!(
                api.try_service("BENCH-SVC", "echo", json!([n])).await,
                Ok(Ok(_))
            )
        }
    })
    .await
}

/// The same calls straight to the service process's socket (the master's registry names
/// it), as the HTTP gateway routes them: one bus hop less.
async fn measure_direct(
    inst: &Instance,
    callers: usize,
    run: Duration,
) -> Result<serde_json::Value> {
    let api = ApiClient::connect(inst)?;
    let registry = api
        .call(
            "omq.system.list-services",
            json!({}),
            Duration::from_secs(10),
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let network_id = registry[0]["process"]["network_id"]
        .as_str()
        .context("no BENCH-SVC process")?
        .to_string();
    let log = std::fs::read_to_string(inst.log_file(KEY, &network_id))?;
    let endpoint = log
        .lines()
        .find_map(|l| {
            let at = l.find("endpoint=")? + "endpoint=".len();
            Some(l[at..].split_whitespace().next()?.to_string())
        })
        .context("no endpoint in the service log")?;
    // The service's socket admits the master's key only: the cluster key pair.
    let cluster = sluice_core::keys::load_key_file(&inst.home().join("etc/cluster.key"))?;
    let bus = sluice_core::bus::Bus::client()?;
    let client = Arc::new(bus.connect(&endpoint, cluster.public(), &cluster)?);
    let measured = drive(callers, run, move |n| {
        let client = client.clone();
        async move {
            let request = Envelope {
                method: "call".into(),
                body: json!({"method": "echo", "args": [n]})
                    .to_string()
                    .into_bytes(),
                ..Default::default()
            };
            matches!(
                client.call(request, Duration::from_secs(10)).await,
                Ok(reply) if reply.error.is_none()
            )
        }
    })
    .await;
    drop(bus);
    measured
}
