//! `bench-bus`: the bus over CURVE on loopback, through Sluice's wrapper and through the
//! bare `zmq` crate, in the same run.
//!
//! Both sides use the same pattern: a DEALER client and a ROUTER server over
//! `tcp://127.0.0.1`, CURVE on both, each side with its own ZeroMQ context (as two
//! processes would have), the same high-water marks, and the same bytes on the wire (the
//! bare run sends the encoded Envelope the wrapper would send). The bare run uses blocking
//! sockets on two threads; the wrapper runs each side on its own single-threaded tokio
//! runtime, on two threads.
//!
//! - round trip: sequential echo calls after a warm-up; median and p99 in µs;
//! - throughput: one-way DEALER -> ROUTER messages, timed until a request sent after the
//!   last one is answered (the connection keeps order), in messages per second.
//!
//! Each side runs several times, taking turns with the other, so that load from elsewhere
//! on the machine falls on both alike; round trips are pooled over the runs, throughput is
//! the median run.
//!
//! Prints one JSON line. Run: `cargo build --release -p sluice-bench --bin bench-bus &&
//! target/release/bench-bus [RTT_CALLS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use prost::Message as _;
use serde_json::json;
use sluice_core::bus::{Authenticator, Bus, HIGH_WATER_MARK, LINGER};
use sluice_core::keys::KeyPair;
use sluice_proto::v1::{envelope::Kind, Envelope};

const WARMUP: usize = 1_000;
/// Runs per side and case; round trips are split over them.
const ROUNDS: usize = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Case {
    name: &'static str,
    body: usize,
    tput_messages: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "100B",
        body: 100,
        tput_messages: 200_000,
    },
    Case {
        name: "10KiB",
        body: 10 * 1024,
        tput_messages: 20_000,
    },
];

/// One run of one side: every round-trip time, and the throughput.
struct Samples {
    rtt: Vec<Duration>,
    tput: f64,
}

/// Several runs of one side: round trips pooled, throughput the median of the runs.
struct Measured {
    rtt_median_us: f64,
    rtt_p99_us: f64,
    tput_msgs_per_s: f64,
}

impl Measured {
    fn of(runs: Vec<Samples>) -> Measured {
        let mut tputs: Vec<f64> = runs.iter().map(|r| r.tput).collect();
        tputs.sort_by(f64::total_cmp);
        let mut rtt: Vec<Duration> = runs.into_iter().flat_map(|r| r.rtt).collect();
        rtt.sort_unstable();
        Measured {
            rtt_median_us: percentile(&rtt, 0.5),
            rtt_p99_us: percentile(&rtt, 0.99),
            tput_msgs_per_s: tputs.get(tputs.len() / 2).copied().unwrap_or(0.0),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "rtt_median_us": round1(self.rtt_median_us),
            "rtt_p99_us": round1(self.rtt_p99_us),
            "tput_msgs_per_s": self.tput_msgs_per_s.round(),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> Result<()> {
    if !sluice_core::bus::curve_available() {
        bail!("this libzmq has no CURVE");
    }
    let rtt_calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("RTT_CALLS must be a number")?,
        None => 20_000,
    };
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), json!("bus"));
    out.insert("transport".into(), json!("tcp 127.0.0.1, CURVE"));
    out.insert("rtt_calls".into(), json!(rtt_calls));
    out.insert("rounds".into(), json!(ROUNDS));
    let mut aims_met = true;
    for case in &CASES {
        let payload = request(case.body);
        // The two sides take turns, so a neighbour's load on this machine falls on both.
        let per_round = rtt_calls.div_ceil(ROUNDS);
        let (mut bare_runs, mut sluice_runs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bare_runs.push(bare(&payload, per_round, case.tput_messages)?);
            sluice_runs.push(sluice(case.body, per_round, case.tput_messages)?);
        }
        let bare = Measured::of(bare_runs);
        let sluice = Measured::of(sluice_runs);
        let rtt_ratio = sluice.rtt_median_us / bare.rtt_median_us;
        let tput_ratio = sluice.tput_msgs_per_s / bare.tput_msgs_per_s;
        aims_met &= rtt_ratio <= 1.2 && tput_ratio >= 0.5;
        out.insert(
            case.name.into(),
            json!({
                "wire_bytes": payload.encoded_len(),
                "tput_messages": case.tput_messages,
                "sluice": sluice.json(),
                "bare": bare.json(),
                "rtt_ratio": round3(rtt_ratio),
                "tput_ratio": round3(tput_ratio),
            }),
        );
    }
    out.insert("aims_met".into(), json!(aims_met));
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn request(body: usize) -> Envelope {
    Envelope {
        id: 1,
        method: "bench.echo".into(),
        kind: Kind::Request as i32,
        deadline_ms: sluice_core::now_ms() + 3_600_000,
        body: vec![0x5a; body],
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

// ---- the wrapper ------------------------------------------------------------------------

struct One([u8; 32]);

impl Authenticator for One {
    fn authenticate(&self, key: &[u8; 32], _: &str) -> Option<String> {
        (key == &self.0).then(|| "bench".to_string())
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn sluice(body: usize, rtt_calls: usize, tput_messages: usize) -> Result<Samples> {
    let server_key = KeyPair::generate();
    let client_key = KeyPair::generate();
    let server_public = *server_key.public();
    let admit = *client_key.public();
    let (ep_tx, ep_rx) = std::sync::mpsc::channel::<Result<String>>();

    let server = std::thread::spawn(move || -> Result<()> {
        let rt = current_thread()?;
        rt.block_on(async move {
            let bus = Bus::new(Arc::new(One(admit)))?;
            let mut server = bus.serve("tcp://127.0.0.1:0", &server_key)?;
            let _ = ep_tx.send(Ok(server.endpoint().to_string()));
            let replier = server.replier();
            let mut events: u64 = 0;
            while let Some(incoming) = server.recv().await {
                let envelope = incoming.envelope;
                if envelope.kind == Kind::Event as i32 {
                    events += 1;
                    continue;
                }
                let mut reply = Envelope {
                    id: envelope.id,
                    kind: Kind::Reply as i32,
                    ..Default::default()
                };
                match envelope.method.as_str() {
                    "bench.sync" => {
                        reply.body = events.to_le_bytes().to_vec();
                        events = 0;
                    }
                    "bench.stop" => {
                        replier.reply(&incoming.peer, reply)?;
                        break;
                    }
                    _ => reply.body = envelope.body,
                }
                replier.reply(&incoming.peer, reply)?;
            }
            // Let the last reply leave before the socket closes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, anyhow::Error>(())
        })
    });
    let endpoint = ep_rx
        .recv()
        .map_err(|_| anyhow!("the server thread died"))??;

    let rt = current_thread()?;
    // The calls run in a spawned task, as they do in every Sluice process (a `block_on`
    // future woken by another task costs the runtime one more driver poll per wake).
    let measured = rt.block_on(async move {
        tokio::spawn(sluice_client(
            endpoint,
            server_public,
            client_key,
            body,
            rtt_calls,
            tput_messages,
        ))
        .await
        .map_err(|e| anyhow!("the client task failed: {e}"))?
    })?;
    server
        .join()
        .map_err(|_| anyhow!("the server thread panicked"))??;
    Ok(measured)
}

async fn sluice_client(
    endpoint: String,
    server_public: [u8; 32],
    client_key: KeyPair,
    body: usize,
    rtt_calls: usize,
    tput_messages: usize,
) -> Result<Samples> {
    {
        let bus = Bus::client()?;
        let client = bus.connect(&endpoint, &server_public, &client_key)?;
        let echo = request(body);
        let mut samples = Vec::with_capacity(rtt_calls);
        for i in 0..WARMUP + rtt_calls {
            let started = Instant::now();
            let reply = client.call(echo.clone(), CALL_TIMEOUT).await?;
            let took = started.elapsed();
            if reply.body.len() != body {
                bail!("echo came back with {} bytes", reply.body.len());
            }
            if i >= WARMUP {
                samples.push(took);
            }
        }

        let mut event = request(body);
        event.kind = Kind::Event as i32;
        let sync = || Envelope {
            method: "bench.sync".into(),
            ..Default::default()
        };
        client.call(sync(), CALL_TIMEOUT).await?;
        let started = Instant::now();
        for _ in 0..tput_messages {
            client.send_async(&event).await?;
        }
        let counted = client.call(sync(), Duration::from_secs(120)).await?;
        let took = started.elapsed();
        let got = u64::from_le_bytes(
            counted
                .body
                .as_slice()
                .try_into()
                .map_err(|_| anyhow!("bad sync reply"))?,
        );
        if got != tput_messages as u64 {
            bail!("the server counted {got} of {tput_messages} messages");
        }
        let stop = Envelope {
            method: "bench.stop".into(),
            ..Default::default()
        };
        client.call(stop, CALL_TIMEOUT).await?;
        Ok(Samples {
            rtt: samples,
            tput: tput_messages as f64 / took.as_secs_f64(),
        })
    }
}

// ---- the bare zmq crate -----------------------------------------------------------------

fn bare_socket(ctx: &zmq::Context, kind: zmq::SocketType) -> Result<zmq::Socket> {
    let s = ctx.socket(kind)?;
    s.set_linger(LINGER.as_millis() as i32)?;
    s.set_sndhwm(HIGH_WATER_MARK)?;
    s.set_rcvhwm(HIGH_WATER_MARK)?;
    Ok(s)
}

fn bare(request: &Envelope, rtt_calls: usize, tput_messages: usize) -> Result<Samples> {
    let server_key = KeyPair::generate();
    let client_key = KeyPair::generate();
    let payload = request.encode_to_vec();

    let server_ctx = zmq::Context::new();
    let router = bare_socket(&server_ctx, zmq::ROUTER)?;
    router.set_curve_server(true)?;
    router.set_curve_secretkey(server_key.secret())?;
    router.bind("tcp://127.0.0.1:*")?;
    let endpoint = router
        .get_last_endpoint()?
        .map_err(|_| anyhow!("endpoint"))?;

    let server = std::thread::spawn(move || -> Result<()> {
        let mut rid = zmq::Message::new();
        let mut body = zmq::Message::new();
        for _ in 0..WARMUP + rtt_calls {
            router.recv(&mut rid, 0)?;
            router.recv(&mut body, 0)?;
            router.send(
                std::mem::replace(&mut rid, zmq::Message::new()),
                zmq::SNDMORE,
            )?;
            router.send(std::mem::replace(&mut body, zmq::Message::new()), 0)?;
        }
        for _ in 0..tput_messages {
            router.recv(&mut rid, 0)?;
            router.recv(&mut body, 0)?;
        }
        // The sync request: answered once everything before it arrived.
        router.recv(&mut rid, 0)?;
        router.recv(&mut body, 0)?;
        router.send(
            std::mem::replace(&mut rid, zmq::Message::new()),
            zmq::SNDMORE,
        )?;
        router.send(&b"done"[..], 0)?;
        std::thread::sleep(Duration::from_millis(50));
        drop(router);
        drop(server_ctx);
        Ok(())
    });

    let client_ctx = zmq::Context::new();
    let dealer = bare_socket(&client_ctx, zmq::DEALER)?;
    dealer.set_curve_serverkey(server_key.public())?;
    dealer.set_curve_publickey(client_key.public())?;
    dealer.set_curve_secretkey(client_key.secret())?;
    dealer.set_rcvtimeo(CALL_TIMEOUT.as_millis() as i32)?;
    dealer.connect(&endpoint)?;
    let mut reply = zmq::Message::new();
    let mut samples = Vec::with_capacity(rtt_calls);
    for i in 0..WARMUP + rtt_calls {
        let started = Instant::now();
        dealer.send(&payload[..], 0)?;
        dealer.recv(&mut reply, 0)?;
        let took = started.elapsed();
        if reply.len() != payload.len() {
            bail!("bare echo came back with {} bytes", reply.len());
        }
        if i >= WARMUP {
            samples.push(took);
        }
    }
    let started = Instant::now();
    for _ in 0..tput_messages {
        dealer.send(&payload[..], 0)?;
    }
    dealer.send(&b"sync"[..], 0)?;
    dealer.recv(&mut reply, 0)?;
    let took = started.elapsed();
    server
        .join()
        .map_err(|_| anyhow!("the bare server thread panicked"))??;
    Ok(Samples {
        rtt: samples,
        tput: tput_messages as f64 / took.as_secs_f64(),
    })
}
