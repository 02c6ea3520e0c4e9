//! `bench-gateway`: HTTP requests through the gateway, next to a bare axum handler.
//!
//! One JSON line. Each scenario runs `SECONDS` (default 5) with 64 connections, each
//! sending a request and waiting for its answer before the next (HTTP/1.1 keep-alive):
//! - `bare_hello`: an axum handler answering "hello", in its own runtime in this process:
//!   the ceiling this machine and this client reach;
//! - `public_info`: `GET /api/public/info` through the gateway;
//! - `service_rest`: `PUT /api/latest/services/BENCH-SVC/echo?action=call` (gateway →
//!   service process → Python and back: the gateway's direct route);
//! - `service_jsonrpc`: the same call as JSON-RPC 2.0 on `/JSON`;
//! - `create_order`: `POST /api/latest/workflows/BENCH-ORDERS?action=createOrder`, each
//!   order committed before the reply (SQLite, `synchronous=FULL`).
//!
//! The client runs on the same 2 cores as the node, so every figure includes its cost;
//! the bare handler's figure, measured with the same client in the same run, says how
//! much that is.
//!
//! Run: `bench/run gateway [SECONDS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use sluice_e2e::{free_port, output_text, Backend, Instance};

const KEY: &str = "bench-gateway";
const CONNECTIONS: usize = 64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("SECONDS must be a number")?,
        None => 5,
    };
    let run = Duration::from_secs(seconds);
    let port = free_port();
    let mut inst = Instance::new(
        Backend::Sqlite,
        KEY,
        &[&format!("qorus.http-server: 127.0.0.1:{port}")],
    )?;
    let out = inst.sluice(&["schema", "create"])?;
    if !out.status.success() {
        bail!("schema create: {}", output_text(&out));
    }
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    for dir in ["services", "orders"] {
        for entry in std::fs::read_dir(fixtures.join(dir))? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".yaml") {
                files.push(path.display().to_string());
            }
        }
    }
    let mut args = vec!["load"];
    args.extend(files.iter().map(String::as_str));
    let out = inst.sluice(&args)?;
    if !out.status.success() {
        bail!("load: {}", output_text(&out));
    }
    let m = inst.start_master(&[])?;
    inst.wait_ready(m)?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let base = format!("http://127.0.0.1:{port}");
    // Wait until the gateway listens and the autostart service answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client
            .put(format!(
                "{base}/api/latest/services/BENCH-SVC/echo?action=call"
            ))
            .json(&json!({"args": [0]}))
            .send()
            .await;
        if matches!(&answer, Ok(r) if r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the gateway did not serve BENCH-SVC within 60 s: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let bare = bare_server()?;
    let bare_url = format!("http://{bare}/");
    let hello = drive(run, {
        let (c, url) = (client.clone(), bare_url);
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move { ok(c.get(url).send().await) }
        }
    })
    .await?;
    let info = drive(run, {
        let (c, url) = (client.clone(), format!("{base}/api/public/info"));
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move { ok(c.get(url).send().await) }
        }
    })
    .await?;
    let rest = drive(run, {
        let (c, url) = (
            client.clone(),
            format!("{base}/api/latest/services/BENCH-SVC/echo?action=call"),
        );
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move { ok(c.put(url).json(&json!({"args": [1]})).send().await) }
        }
    })
    .await?;
    let jsonrpc = drive(run, {
        let (c, url) = (client.clone(), format!("{base}/JSON"));
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let body = json!({"jsonrpc": "2.0", "id": 1,
                                  "method": "omq.user.service.BENCH-SVC.echo", "params": [1]});
                match c.post(url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v.get("result").is_some()),
                    _ => false,
                }
            }
        }
    })
    .await?;
    let orders = drive(run, {
        let (c, url) = (
            client.clone(),
            format!("{base}/api/latest/workflows/BENCH-ORDERS?action=createOrder"),
        );
        move || {
            let (c, url) = (c.clone(), url.clone());
            async move {
                ok(c.post(url)
                    .json(&json!({"staticdata": {"n": 1}}))
                    .send()
                    .await)
            }
        }
    })
    .await?;
    inst.stop(m, Duration::from_secs(60))?;
    let ratio = |a: &serde_json::Value| {
        let (x, y) = (
            a["requests_per_s"].as_f64().unwrap_or(0.0),
            hello["requests_per_s"].as_f64().unwrap_or(1.0),
        );
        ((x / y) * 1000.0).round() / 1000.0
    };
    println!(
        "{}",
        json!({
            "bench": "gateway",
            "connections": CONNECTIONS,
            "seconds_per_scenario": seconds,
            "public_info_vs_bare": ratio(&info),
            "bare_hello": hello,
            "public_info": info,
            "service_rest": rest,
            "service_jsonrpc": jsonrpc,
            "create_order": orders,
        })
    );
    Ok(())
}

fn ok(answer: reqwest::Result<reqwest::Response>) -> bool {
    matches!(answer, Ok(r) if r.status().is_success())
}

/// A bare axum "hello" on its own 2-thread runtime: the ceiling.
fn bare_server() -> Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build();
        let Ok(rt) = rt else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(addr)
}

/// Runs `CONNECTIONS` loops of `request` for `run`; requests/s and latency.
async fn drive<F, Fut>(run: Duration, request: F) -> Result<serde_json::Value>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let until = start + run;
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (request, errors) = (request.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                if request().await {
                    latencies.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(i).copied().unwrap_or_default() as f64 / 1000.0
    };
    Ok(json!({
        "requests": all.len(),
        "errors": errors.load(std::sync::atomic::Ordering::Relaxed),
        "requests_per_s": (all.len() as f64 / elapsed).round(),
        "latency_ms_median": pct(0.5),
        "latency_ms_p99": pct(0.99),
    }))
}
