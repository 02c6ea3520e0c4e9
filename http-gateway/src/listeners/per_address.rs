//! Per-address connection limits (`qorus.http-max-connections-per-address`): one listener
//! lets each client address hold at most N connections open at once.
//!
//! A connection past the limit never reaches HTTP. On a plain listener it is answered with
//! a fixed `HTTP/1.1 503` (`Retry-After`, a JSON `{"err": "TOO-MANY-CONNECTIONS", ...}`
//! body, `Connection: close`) and closed; on an HTTPS listener it is closed before the TLS
//! handshake (answering would mean doing the handshake the limit is there to spare). Each
//! address's refusals are logged once a minute at most, with how many there were.
//!
//! A connection counts from its accept until it closes; one upgraded to a WebSocket counts
//! until the upgrade.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often one address's refusals are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses whose last log line is remembered; past it, the old ones are forgotten.
const MAX_REMEMBERED: usize = 4096;
/// Refusals being written at once; past it a refused connection is just closed.
const MAX_REFUSING: usize = 128;
/// How long a refusal may take to write, and to read what the client sent meanwhile.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// `Retry-After`, seconds.
const RETRY_AFTER: u32 = 2;

static REFUSING: AtomicUsize = AtomicUsize::new(0);

/// The connections open per address on one listener.
#[derive(Clone)]
pub struct PerAddress {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    /// The listener as the option wrote it, for log lines.
    listener: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: HashMap<IpAddr, usize>,
    /// When each address's refusals were last logged, and how many came since.
    logged: HashMap<IpAddr, (Instant, u64)>,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(n) = state.open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.open.remove(&self.ip);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An IPv4 client on an IPv6 socket (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl PerAddress {
    pub fn new(listener: impl Into<String>, limit: usize) -> PerAddress {
        PerAddress {
            inner: Arc::new(Inner {
                limit: limit.max(1),
                listener: listener.into(),
                state: Mutex::default(),
            }),
        }
    }

    /// A place for one more connection from `ip`, or `None` when it has `limit` open.
    pub fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let ip = canonical(ip);
        let mut state = self.inner.lock();
        let open = state.open.entry(ip).or_default();
        if *open < self.inner.limit {
            *open += 1;
            return Some(Slot {
                inner: self.inner.clone(),
                ip,
            });
        }
        let now = Instant::now();
        if state.logged.len() >= MAX_REMEMBERED {
            state
                .logged
                .retain(|_, (at, _)| now.duration_since(*at) < LOG_EVERY);
        }
        let limit = self.inner.limit;
        match state.logged.get_mut(&ip) {
            Some((at, since)) if now.duration_since(*at) < LOG_EVERY => *since += 1,
            entry => {
                let before = entry.map_or(0, |(_, since)| *since);
                tracing::warn!(
                    listener = %self.inner.listener,
                    %ip,
                    "refusing connections from {ip}: it has {limit} open on this listener, the \
                     most qorus.http-max-connections-per-address allows ({before} more were \
                     refused since the last such line; the next minute's are only counted)"
                );
                state.logged.insert(ip, (now, 0));
            }
        }
        None
    }

    /// Connections open from `ip` (tests).
    pub fn open(&self, ip: IpAddr) -> usize {
        self.inner
            .lock()
            .open
            .get(&canonical(ip))
            .copied()
            .unwrap_or(0)
    }
}

/// The fixed answer to a connection past the limit.
fn refusal(limit: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "err": "TOO-MANY-CONNECTIONS",
        "desc": format!(
            "this address has {limit} connections open on this listener, the most \
             qorus.http-max-connections-per-address allows; close one or try again later"
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Turns away a connection past the limit: 503 on plain HTTP, closed at once for TLS.
/// Never blocks the accept loop: the answer is written by a task of its own, bounded in
/// time, and only so many at once.
pub fn refuse(mut stream: TcpStream, tls: bool, limit: &PerAddress) {
    if tls || REFUSING.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        if !tls {
            REFUSING.fetch_sub(1, Ordering::AcqRel);
        }
        drop(stream);
        return;
    }
    let answer = refusal(limit.inner.limit);
    tokio::spawn(async move {
        let written = tokio::time::timeout(REFUSAL_WRITE, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await
        })
        .await;
        if matches!(written, Ok(Ok(()))) {
            // Read what the client sent (its request) before closing: closing with unread
            // data makes the kernel send a reset, which may destroy the answer in flight.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                let mut read = 0usize;
                while read < 64 * 1024 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n,
                    }
                }
            })
            .await;
        }
        REFUSING.fetch_sub(1, Ordering::AcqRel);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_limit_and_a_closed_connection_frees_its_place() {
        let limits = PerAddress::new("127.0.0.1:8001", 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limits.admit(a).expect("first");
        let second = limits.admit(a).expect("second");
        assert!(limits.admit(a).is_none(), "a third from the same address");
        // The same address written as IPv4-mapped IPv6 is the same client.
        assert!(limits.admit("::ffff:10.0.0.1".parse().unwrap()).is_none());
        let other = limits.admit(b).expect("another address has its own limit");
        assert_eq!(limits.open(a), 2);
        drop(first);
        assert_eq!(limits.open(a), 1);
        let again = limits.admit(a).expect("a place came free");
        // Many refusals in a row log once and count the rest.
        for _ in 0..10 {
            assert!(limits.admit(a).is_none());
        }
        // The first refusal was logged; the IPv4-mapped one and these ten were counted.
        assert_eq!(
            limits.inner.lock().logged.get(&a).map(|(_, n)| *n),
            Some(11)
        );
        drop((second, again, other));
        assert_eq!(limits.open(a), 0);
        assert!(limits.inner.lock().open.is_empty(), "no entry stays behind");
    }

    #[tokio::test]
    async fn a_refused_plain_connection_reads_503() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = PerAddress::new("test", 1);
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        });
        let (stream, _) = listener.accept().await.unwrap();
        refuse(stream, false, &limits);
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(answer.contains("Retry-After: 2\r\n"), "{answer}");
        assert!(answer.ends_with("}"), "{answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["err"], "TOO-MANY-CONNECTIONS");
    }
}
