//! The bus: ZeroMQ with CURVE on every socket, carrying one protobuf [`Envelope`] per
//! message. This module is the only code that touches socket options; `docs/bus.md`
//! describes the sockets, the frames and the security model.
//!
//! - [`Bus::new`] makes a context with a ZAP handler that asks an [`Authenticator`] about
//!   every client key; a process that serves anything uses it. [`Bus::client`] makes one
//!   that can only connect.
//! - [`Bus::serve`] binds a ROUTER ([`Server`], answered through a [`Replier`]);
//!   [`Bus::connect`] a DEALER ([`Client`]: many calls in flight, correlated by id, plus
//!   the requests and events its server sends down unasked).
//! - [`Bus::publisher`] binds a PUB, [`Bus::subscribe`] connects a SUB.
//!
//! Sockets are awaited on the tokio reactor from the task that uses them (see `socket.rs`),
//! so they must be made inside a tokio runtime with I/O enabled.

mod socket;
mod zap;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message as _;
use sluice_proto::v1::{envelope::Kind, Envelope};
use tokio::sync::{mpsc, oneshot};

use crate::keys::KeyPair;
use socket::{drain, AsyncSocket};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("this libzmq has no CURVE support (build it with libsodium); Sluice never runs the bus in plaintext")]
    NoCurve,
    #[error("zmq {context}: {source}")]
    Zmq { context: String, source: zmq::Error },
    #[error("no reply to {method} within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("the bus socket is closed")]
    Closed,
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("bus sockets must be made inside a tokio runtime with I/O enabled")]
    NoRuntime,
    #[error("this bus was made by Bus::client(), which has no ZAP handler and cannot serve: a serving process uses Bus::new")]
    NoAuthenticator,
    #[error("cannot send now: no peer is connected, or its queue is full")]
    Unavailable,
    #[error("the peer is no longer connected")]
    PeerGone,
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl BusError {
    fn zmq(context: &str, source: zmq::Error) -> BusError {
        BusError::Zmq {
            context: context.to_string(),
            source,
        }
    }
}

/// The ZAP domain of every server socket; setting one makes libzmq consult the handler.
pub const ZAP_DOMAIN: &str = "sluice";
/// How long closing a socket may wait for its queued messages to leave.
pub const LINGER: Duration = Duration::from_millis(1000);
/// Messages queued per peer in each direction before a sender waits (or gets `Unavailable`).
pub const HIGH_WATER_MARK: i32 = 10_000;
/// ZMTP heartbeats on connecting sockets, so a silently dead peer is noticed and redialled.
const HEARTBEAT_IVL_MS: i32 = 5_000;
const HEARTBEAT_TIMEOUT_MS: i32 = 15_000;
/// Messages taken from a socket per lock, so a busy socket is drained in batches.
const BATCH: usize = 64;
/// Unasked messages (requests and events from the server) a client queues for its reader.
const INCOMING_QUEUE: usize = 1024;
/// libzmq's `ZMQ_ZAP_ENFORCE_DOMAIN` (a draft option Debian's build has): with it, a server
/// socket refuses every client should the ZAP handler be missing, instead of admitting all.
const ZMQ_ZAP_ENFORCE_DOMAIN: std::os::raw::c_int = 93;

/// Whether this libzmq can do CURVE (it needs libsodium). Sluice refuses to run without it.
pub fn curve_available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

/// Decides, during the CURVE handshake, whether a client key may connect.
///
/// Called on the ZAP handler's own thread, one handshake at a time; it may block briefly.
/// It must not hold the [`Bus`] it authenticates for (that would keep the bus alive).
pub trait Authenticator: Send + Sync + 'static {
    /// The user id to attach to the connection (ZAP `User-Id`), or `None` to refuse.
    fn authenticate(&self, client_public: &[u8; 32], peer_address: &str) -> Option<String>;
}

/// The context and, for a serving process, the ZAP handler; shared by every socket.
pub(crate) struct BusCore {
    // Field order is drop order: the handler's socket closes before the context terminates.
    zap: Option<zap::ZapHandler>,
    ctx: zmq::Context,
}

/// A ZeroMQ context with the cluster's security policy. Cheap to clone; the context, and
/// the ZAP handler with it, end when the last `Bus` and the last socket made from it are
/// dropped (after each socket's queued messages left or [`LINGER`] passed).
#[derive(Clone)]
pub struct Bus {
    core: Arc<BusCore>,
}

impl Bus {
    /// A bus that can serve: every client key is put to `auth` before the handshake ends.
    pub fn new(auth: Arc<dyn Authenticator>) -> Result<Bus, BusError> {
        if !curve_available() {
            return Err(BusError::NoCurve);
        }
        let ctx = zmq::Context::new();
        let zap = zap::ZapHandler::start(&ctx, auth)?;
        Ok(Bus {
            core: Arc::new(BusCore {
                zap: Some(zap),
                ctx,
            }),
        })
    }

    /// A bus that only connects (the CLI, tools). It cannot serve: with no ZAP handler
    /// libzmq would admit any key.
    pub fn client() -> Result<Bus, BusError> {
        if !curve_available() {
            return Err(BusError::NoCurve);
        }
        Ok(Bus {
            core: Arc::new(BusCore {
                zap: None,
                ctx: zmq::Context::new(),
            }),
        })
    }

    fn socket(&self, kind: zmq::SocketType) -> Result<zmq::Socket, BusError> {
        let s = self
            .core
            .ctx
            .socket(kind)
            .map_err(|e| BusError::zmq("socket", e))?;
        let linger = i32::try_from(LINGER.as_millis()).unwrap_or(i32::MAX);
        s.set_linger(linger)
            .map_err(|e| BusError::zmq("ZMQ_LINGER", e))?;
        Ok(s)
    }

    /// A CURVE server socket of `kind`, bound to `endpoint`; returns it with the endpoint
    /// it really bound (an ephemeral port resolved).
    fn server_socket(
        &self,
        kind: zmq::SocketType,
        endpoint: &str,
        key: &KeyPair,
    ) -> Result<(zmq::Socket, String), BusError> {
        if self.core.zap.is_none() {
            return Err(BusError::NoAuthenticator);
        }
        let mut s = self.socket(kind)?;
        enforce_zap_domain(&mut s);
        let opt = |what: &str, r: zmq::Result<()>| r.map_err(|e| BusError::zmq(what, e));
        opt("ZMQ_SNDHWM", s.set_sndhwm(HIGH_WATER_MARK))?;
        opt("ZMQ_RCVHWM", s.set_rcvhwm(HIGH_WATER_MARK))?;
        opt("ZMQ_ZAP_DOMAIN", s.set_zap_domain(ZAP_DOMAIN))?;
        opt("ZMQ_CURVE_SERVER", s.set_curve_server(true))?;
        opt("ZMQ_CURVE_SECRETKEY", s.set_curve_secretkey(key.secret()))?;
        s.bind(bind_address(endpoint).as_ref())
            .map_err(|e| BusError::zmq(&format!("bind {endpoint}"), e))?;
        let bound = last_endpoint(&s)?;
        Ok((s, bound))
    }

    /// A CURVE client socket of `kind` for `server_public`, not yet connected.
    fn client_socket(
        &self,
        kind: zmq::SocketType,
        server_public: &[u8; 32],
        key: &KeyPair,
    ) -> Result<zmq::Socket, BusError> {
        let s = self.socket(kind)?;
        let opt = |what: &str, r: zmq::Result<()>| r.map_err(|e| BusError::zmq(what, e));
        opt("ZMQ_SNDHWM", s.set_sndhwm(HIGH_WATER_MARK))?;
        opt("ZMQ_RCVHWM", s.set_rcvhwm(HIGH_WATER_MARK))?;
        opt("ZMQ_HEARTBEAT_IVL", s.set_heartbeat_ivl(HEARTBEAT_IVL_MS))?;
        opt(
            "ZMQ_HEARTBEAT_TIMEOUT",
            s.set_heartbeat_timeout(HEARTBEAT_TIMEOUT_MS),
        )?;
        opt("ZMQ_CURVE_SERVERKEY", s.set_curve_serverkey(server_public))?;
        opt("ZMQ_CURVE_PUBLICKEY", s.set_curve_publickey(key.public()))?;
        opt("ZMQ_CURVE_SECRETKEY", s.set_curve_secretkey(key.secret()))?;
        Ok(s)
    }

    /// Binds a ROUTER with the server keypair. `tcp://127.0.0.1:0` (or `:*`) takes an
    /// ephemeral port; [`Server::endpoint`] tells which.
    pub fn serve(&self, endpoint: &str, server_key: &KeyPair) -> Result<Server, BusError> {
        let (s, bound) = self.server_socket(zmq::ROUTER, endpoint, server_key)?;
        // A reply to a peer that left fails (PeerGone) instead of vanishing.
        s.set_router_mandatory(true)
            .map_err(|e| BusError::zmq("ZMQ_ROUTER_MANDATORY", e))?;
        let sock = AsyncSocket::new(s, self.core.clone())?;
        Ok(Server {
            sock,
            endpoints: vec![bound],
            batch: VecDeque::with_capacity(BATCH),
        })
    }

    /// Connects a DEALER to a server whose public key is `server_public`, authenticating
    /// with `client_key`. Returns at once; the connection and handshake happen in the
    /// background and calls made meanwhile are queued.
    pub fn connect(
        &self,
        endpoint: &str,
        server_public: &[u8; 32],
        client_key: &KeyPair,
    ) -> Result<Client, BusError> {
        let s = self.client_socket(zmq::DEALER, server_public, client_key)?;
        s.connect(endpoint)
            .map_err(|e| BusError::zmq(&format!("connect {endpoint}"), e))?;
        let sock = AsyncSocket::new(s, self.core.clone())?;
        let pending: Arc<Pending> = Arc::default();
        let (tx, rx) = mpsc::channel(INCOMING_QUEUE);
        let taken = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive_client(
            sock.clone(),
            pending.clone(),
            tx,
            taken.clone(),
            endpoint.to_string(),
        ));
        Ok(Client {
            inner: Arc::new(ClientInner {
                sock,
                pending,
                next_id: AtomicU64::new(1),
                incoming: Mutex::new(Some(rx)),
                incoming_taken: taken,
            }),
        })
    }

    /// Binds a PUB with the server keypair (events, registry changes).
    pub fn publisher(&self, endpoint: &str, server_key: &KeyPair) -> Result<Publisher, BusError> {
        let (s, bound) = self.server_socket(zmq::PUB, endpoint, server_key)?;
        Ok(Publisher {
            socket: Mutex::new(s),
            endpoint: bound,
            _core: self.core.clone(),
        })
    }

    /// Connects a SUB receiving the messages whose topic starts with one of `topics` (`""`
    /// takes everything).
    pub fn subscribe(
        &self,
        endpoint: &str,
        server_public: &[u8; 32],
        client_key: &KeyPair,
        topics: &[&str],
    ) -> Result<Subscriber, BusError> {
        let s = self.client_socket(zmq::SUB, server_public, client_key)?;
        for topic in topics {
            s.set_subscribe(topic.as_bytes())
                .map_err(|e| BusError::zmq("ZMQ_SUBSCRIBE", e))?;
        }
        s.connect(endpoint)
            .map_err(|e| BusError::zmq(&format!("connect {endpoint}"), e))?;
        Ok(Subscriber {
            sock: AsyncSocket::new(s, self.core.clone())?,
            batch: VecDeque::with_capacity(BATCH),
        })
    }
}

/// libzmq takes `*` for an ephemeral port; `:0` is the spelling the rest of Sluice (and
/// every other server) uses.
fn bind_address(endpoint: &str) -> std::borrow::Cow<'_, str> {
    match endpoint.strip_suffix(":0") {
        Some(head) if endpoint.starts_with("tcp://") => format!("{head}:*").into(),
        _ => endpoint.into(),
    }
}

fn last_endpoint(s: &zmq::Socket) -> Result<String, BusError> {
    match s.get_last_endpoint() {
        Ok(Ok(text)) => Ok(text.trim_end_matches('\0').to_string()),
        Ok(Err(raw)) => Ok(String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .to_string()),
        Err(e) => Err(BusError::zmq("ZMQ_LAST_ENDPOINT", e)),
    }
}

/// Best effort: a libzmq without the draft option still has the ZAP handler, which is
/// started before any server socket and stops only with the context.
fn enforce_zap_domain(s: &mut zmq::Socket) {
    let on: std::os::raw::c_int = 1;
    // SAFETY: the pointer is the live socket `s` owns, and the option value is a c_int,
    // as libzmq expects for this option.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            s.as_mut_ptr(),
            ZMQ_ZAP_ENFORCE_DOMAIN,
            (&on as *const std::os::raw::c_int).cast(),
            std::mem::size_of::<std::os::raw::c_int>(),
        )
    };
    if rc != 0 {
        tracing::debug!("this libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN; relying on the ZAP handler");
    }
}

fn encode(envelope: &Envelope) -> zmq::Message {
    let mut msg = zmq::Message::with_size(envelope.encoded_len());
    let mut buf: &mut [u8] = &mut msg;
    // Cannot fail: the buffer holds exactly `encoded_len` bytes.
    let _ = envelope.encode(&mut buf);
    msg
}

fn decode(frame: &[u8]) -> Result<Envelope, BusError> {
    Envelope::decode(frame).map_err(|e| BusError::Decode(e.to_string()))
}

// ---- ROUTER --------------------------------------------------------------------------

/// Who sent a message to a [`Server`]: the routing id to answer to, and the user id the
/// [`Authenticator`] gave the connection's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub routing_id: Vec<u8>,
    pub user_id: String,
}

pub struct Incoming {
    pub peer: Peer,
    pub envelope: Envelope,
}

/// A bound ROUTER. Frames on the wire: `[routing-id, envelope]` (the routing id is added
/// and removed by ZeroMQ; a DEALER sends and receives just `[envelope]`).
pub struct Server {
    sock: Arc<AsyncSocket>,
    endpoints: Vec<String>,
    batch: VecDeque<[zmq::Message; 2]>,
}

impl Server {
    /// The endpoint bound first, resolved (`tcp://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoints[0]
    }

    /// Every endpoint bound, resolved.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Binds one more endpoint (e.g. the cluster API's fixed port besides an ephemeral
    /// one); returns it resolved.
    pub fn bind(&mut self, endpoint: &str) -> Result<String, BusError> {
        let bound = self.sock.with(|s| {
            s.bind(bind_address(endpoint).as_ref())
                .map_err(|e| BusError::zmq(&format!("bind {endpoint}"), e))?;
            last_endpoint(s)
        })?;
        self.endpoints.push(bound.clone());
        Ok(bound)
    }

    /// The next well-formed message. Malformed ones (wrong number of frames, not an
    /// Envelope) and requests whose deadline already passed are logged and skipped.
    /// `None` only when the socket failed for good. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Incoming> {
        loop {
            while let Some([routing_id, mut body]) = self.batch.pop_front() {
                let envelope = match decode(&body) {
                    Ok(e) => e,
                    Err(err) => {
                        tracing::warn!(
                            "dropped a message on {} that is not an Envelope: {err}",
                            self.endpoints[0]
                        );
                        continue;
                    }
                };
                if expired(&envelope) {
                    tracing::debug!(
                        "dropped {} #{}: its deadline passed before it was read",
                        envelope.method,
                        envelope.id
                    );
                    continue;
                }
                let user_id = body.gets("User-Id").unwrap_or_default().to_string();
                return Some(Incoming {
                    peer: Peer {
                        routing_id: routing_id.to_vec(),
                        user_id,
                    },
                    envelope,
                });
            }
            let Server {
                sock,
                batch,
                endpoints,
            } = self;
            // One message at a time: looking for a second one costs a system call whenever
            // there is none, which a request/reply server would pay on every request, and
            // the next `recv` looks anyway (without one while messages keep coming).
            let drained = sock
                .read(false, |s, _| {
                    drain(s, 1, &endpoints[0], |frames| batch.push_back(frames))
                })
                .await;
            if let Err(e) = drained {
                tracing::error!("the bus server on {} failed: {e}", self.endpoints[0]);
                return None;
            }
        }
    }

    /// A handle that sends to this socket's peers, from any task.
    pub fn replier(&self) -> Replier {
        Replier {
            sock: self.sock.clone(),
        }
    }
}

fn expired(envelope: &Envelope) -> bool {
    envelope.kind == Kind::Request as i32
        && envelope.deadline_ms != 0
        && envelope.deadline_ms < crate::now_ms()
}

/// Sends to the peers of a [`Server`]: replies, and requests or events of its own (the
/// master calling a child down the child's DEALER). Never waits: a peer whose queue is
/// full gets [`BusError::Unavailable`], one that left [`BusError::PeerGone`].
#[derive(Clone)]
pub struct Replier {
    sock: Arc<AsyncSocket>,
}

impl Replier {
    pub fn reply(&self, peer: &Peer, envelope: Envelope) -> Result<(), BusError> {
        let body = encode(&envelope);
        self.sock.try_send(|s| {
            s.send(&peer.routing_id[..], zmq::SNDMORE | zmq::DONTWAIT)?;
            s.send(body, zmq::DONTWAIT)
        })
    }
}

// ---- DEALER --------------------------------------------------------------------------

type Pending = Mutex<HashMap<u64, oneshot::Sender<Envelope>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connected DEALER. Clone it freely: every clone shares the socket, and calls from any
/// number of tasks are in flight at once, matched to their replies by id.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    sock: Arc<AsyncSocket>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    incoming: Mutex<Option<mpsc::Receiver<Envelope>>>,
    incoming_taken: Arc<AtomicBool>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // Stops the reader task, which holds the last reference to the socket.
        self.sock.close();
    }
}

/// Forgets a pending call whose future is dropped or times out.
struct PendingEntry<'a> {
    pending: &'a Pending,
    id: u64,
    armed: bool,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.pending).remove(&self.id);
        }
    }
}

impl Client {
    /// Sends `request` and waits for its reply. The request gets a fresh `id` and kind
    /// `REQUEST`, and a deadline of now + `timeout` unless it carries one. A reply with
    /// `error` set is still `Ok`: the caller reads the error.
    pub async fn call(
        &self,
        mut request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, BusError> {
        let inner = &*self.inner;
        if inner.sock.is_closed() {
            return Err(BusError::Closed);
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        request.kind = Kind::Request as i32;
        if request.deadline_ms == 0 {
            let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            request.deadline_ms = crate::now_ms().saturating_add(ms);
        }
        let (tx, rx) = oneshot::channel();
        lock(&inner.pending).insert(id, tx);
        let mut entry = PendingEntry {
            pending: &inner.pending,
            id,
            armed: true,
        };
        let exchange = async {
            inner
                .sock
                .send(|s| s.send(encode(&request), zmq::DONTWAIT))
                .await?;
            rx.await.map_err(|_| BusError::Closed)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => {
                entry.armed = false;
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BusError::Timeout {
                method: request.method,
                after: timeout,
            }),
        }
    }

    /// Sends one message as it is (a reply to a request from the server, an event),
    /// without waiting: a full queue or no connection is [`BusError::Unavailable`].
    pub fn send(&self, envelope: Envelope) -> Result<(), BusError> {
        let body = encode(&envelope);
        self.inner.sock.try_send(|s| s.send(body, zmq::DONTWAIT))
    }

    /// Sends one message as it is, waiting while the queue is full or no peer is connected.
    pub async fn send_async(&self, envelope: &Envelope) -> Result<(), BusError> {
        self.inner
            .sock
            .send(|s| s.send(encode(envelope), zmq::DONTWAIT))
            .await
    }

    /// The messages the server sends this client unasked (kind `REQUEST` or `EVENT`, e.g.
    /// the master's `ping`, `get-info`, `stop`); answer a request with [`Client::send`],
    /// keeping its `id`. The receiver can be taken once; until it is, such messages are
    /// dropped (with a debug log), and when it falls behind by more than 1024 they are
    /// dropped with a warning.
    pub fn incoming(&self) -> Option<mpsc::Receiver<Envelope>> {
        let rx = lock(&self.inner.incoming).take();
        if rx.is_some() {
            self.inner.incoming_taken.store(true, Ordering::SeqCst);
        }
        rx
    }
}

/// The client's reader: dispatches replies to their calls and everything else to the
/// incoming channel. Ends when the client is dropped.
async fn drive_client(
    sock: Arc<AsyncSocket>,
    pending: Arc<Pending>,
    incoming: mpsc::Sender<Envelope>,
    taken: Arc<AtomicBool>,
    endpoint: String,
) {
    let mut batch: Vec<zmq::Message> = Vec::with_capacity(BATCH);
    loop {
        // The message that woke the reader is handed on before it looks for more, and it
        // lets the calls it woke run before it looks again: a call's request then looks
        // on its behalf (see `AsyncSocket::read`), which spares a look per round trip.
        let drained = sock
            .read(true, |s, woke| {
                let max = if woke { 1 } else { BATCH };
                drain(s, max, &endpoint, |[frame]: [zmq::Message; 1]| {
                    batch.push(frame)
                })
            })
            .await;
        match drained {
            Ok(_) => {}
            Err(BusError::Closed) => break,
            Err(e) => {
                tracing::error!("the bus client of {endpoint} failed: {e}");
                sock.close();
                break;
            }
        }
        for frame in batch.drain(..) {
            let envelope = match decode(&frame) {
                Ok(e) => e,
                Err(err) => {
                    tracing::warn!(
                        "dropped a message from {endpoint} that is not an Envelope: {err}"
                    );
                    continue;
                }
            };
            if envelope.kind == Kind::Reply as i32 {
                let waiter = lock(&pending).remove(&envelope.id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(envelope);
                    }
                    None => tracing::debug!(
                        "dropped a late reply to {} #{} from {endpoint}",
                        envelope.method,
                        envelope.id
                    ),
                }
            } else if !taken.load(Ordering::SeqCst) {
                tracing::debug!(
                    "dropped {} from {endpoint}: nobody takes this client's incoming messages",
                    envelope.method
                );
            } else {
                match incoming.try_send(envelope) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(e)) => tracing::warn!(
                        "dropped {} #{} from {endpoint}: {INCOMING_QUEUE} incoming messages are waiting",
                        e.method,
                        e.id
                    ),
                    Err(mpsc::error::TrySendError::Closed(e)) => tracing::debug!(
                        "dropped {} from {endpoint}: the incoming receiver is gone",
                        e.method
                    ),
                }
            }
        }
    }
    // Calls still waiting fail with Closed now rather than at their timeout.
    lock(&pending).clear();
}

// ---- PUB / SUB -------------------------------------------------------------------------

/// A bound PUB. Frames on the wire: `[topic, envelope]`. Publishing never waits: a
/// subscriber that falls [`HIGH_WATER_MARK`] messages behind misses messages.
pub struct Publisher {
    socket: Mutex<zmq::Socket>,
    endpoint: String,
    _core: Arc<BusCore>,
}

impl Publisher {
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(), BusError> {
        let body = encode(envelope);
        let s = lock(&self.socket);
        s.send(topic.as_bytes(), zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| s.send(body, zmq::DONTWAIT))
            .map_err(|e| BusError::zmq("publish", e))
    }
}

/// A connected SUB.
pub struct Subscriber {
    sock: Arc<AsyncSocket>,
    batch: VecDeque<[zmq::Message; 2]>,
}

impl Subscriber {
    /// The next `(topic, envelope)`; malformed messages are logged and skipped. `None`
    /// only when the socket failed for good. Cancel-safe.
    pub async fn recv(&mut self) -> Option<(String, Envelope)> {
        loop {
            while let Some([topic, body]) = self.batch.pop_front() {
                let Some(topic) = topic.as_str() else {
                    tracing::warn!("dropped a published message whose topic is not UTF-8");
                    continue;
                };
                match decode(&body) {
                    Ok(envelope) => return Some((topic.to_string(), envelope)),
                    Err(err) => {
                        tracing::warn!(
                            "dropped a published {topic} message that is not an Envelope: {err}"
                        );
                    }
                }
            }
            let Subscriber { sock, batch } = self;
            let drained = sock
                .read(false, |s, _| {
                    drain(s, BATCH, "a subscriber", |frames| batch.push_back(frames))
                })
                .await;
            if let Err(e) = drained {
                tracing::error!("the bus subscriber failed: {e}");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl Authenticator for Nobody {
        fn authenticate(&self, _: &[u8; 32], _: &str) -> Option<String> {
            None
        }
    }

    struct Only([u8; 32]);
    impl Authenticator for Only {
        fn authenticate(&self, key: &[u8; 32], _: &str) -> Option<String> {
            (key == &self.0).then(|| "alice".to_string())
        }
    }

    struct Panics;
    impl Authenticator for Panics {
        fn authenticate(&self, _: &[u8; 32], _: &str) -> Option<String> {
            panic!("boom")
        }
    }

    fn request(key: &[u8; 32], mechanism: &str) -> Vec<Vec<u8>> {
        vec![
            b"1.0".to_vec(),
            b"42".to_vec(),
            ZAP_DOMAIN.as_bytes().to_vec(),
            b"127.0.0.1".to_vec(),
            Vec::new(),
            mechanism.as_bytes().to_vec(),
            key.to_vec(),
        ]
    }

    #[test]
    fn curve_is_there() {
        assert!(curve_available(), "libzmq must be built with libsodium");
    }

    #[test]
    fn zap_answers_by_the_authenticator() {
        let alice = KeyPair::generate();
        let auth = Only(*alice.public());
        let ok = zap::answer(&request(alice.public(), "CURVE"), &auth);
        assert_eq!(ok[0], b"1.0");
        assert_eq!(ok[1], b"42");
        assert_eq!(ok[2], b"200");
        assert_eq!(ok[4], b"alice");
        let other = KeyPair::generate();
        assert_eq!(
            zap::answer(&request(other.public(), "CURVE"), &auth)[2],
            b"400"
        );
        assert_eq!(
            zap::answer(&request(alice.public(), "PLAIN"), &auth)[2],
            b"400"
        );
        assert_eq!(
            zap::answer(&request(alice.public(), "CURVE"), &Nobody)[2],
            b"400"
        );
        assert_eq!(
            zap::answer(&request(alice.public(), "CURVE"), &Panics)[2],
            b"500"
        );
        assert_eq!(zap::answer(&[b"1.0".to_vec()], &auth)[2], b"500");
        let mut v2 = request(alice.public(), "CURVE");
        v2[0] = b"2.0".to_vec();
        assert_eq!(zap::answer(&v2, &auth)[2], b"500");
    }

    #[test]
    fn ephemeral_port_spellings() {
        assert_eq!(bind_address("tcp://127.0.0.1:0"), "tcp://127.0.0.1:*");
        assert_eq!(bind_address("tcp://127.0.0.1:*"), "tcp://127.0.0.1:*");
        assert_eq!(bind_address("tcp://127.0.0.1:8002"), "tcp://127.0.0.1:8002");
        assert_eq!(bind_address("tcp://127.0.0.1:8000"), "tcp://127.0.0.1:8000");
        assert_eq!(bind_address("ipc:///tmp/x:0"), "ipc:///tmp/x:0");
    }

    #[tokio::test]
    async fn a_client_bus_cannot_serve() {
        let bus = Bus::client().unwrap();
        let key = KeyPair::generate();
        assert!(matches!(
            bus.serve("tcp://127.0.0.1:0", &key),
            Err(BusError::NoAuthenticator)
        ));
        assert!(matches!(
            bus.publisher("tcp://127.0.0.1:0", &key),
            Err(BusError::NoAuthenticator)
        ));
    }

    #[test]
    fn sockets_need_a_runtime() {
        let bus = Bus::new(Arc::new(Nobody)).unwrap();
        let key = KeyPair::generate();
        assert!(matches!(
            bus.connect("tcp://127.0.0.1:1", key.public(), &key),
            Err(BusError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn resolves_the_ephemeral_port_and_drops_promptly() {
        let bus = Bus::new(Arc::new(Nobody)).unwrap();
        let key = KeyPair::generate();
        let mut server = bus.serve("tcp://127.0.0.1:0", &key).unwrap();
        let ep = server.endpoint().to_string();
        assert!(ep.starts_with("tcp://127.0.0.1:"), "{ep}");
        assert!(!ep.ends_with(":0") && !ep.ends_with(":*"), "{ep}");
        let second = server.bind("tcp://127.0.0.1:*").unwrap();
        assert_ne!(second, ep);
        assert_eq!(server.endpoints().len(), 2);
        let publisher = bus.publisher("tcp://127.0.0.1:0", &key).unwrap();
        assert!(publisher.endpoint().starts_with("tcp://127.0.0.1:"));
        let started = std::time::Instant::now();
        drop((server, publisher, bus));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
