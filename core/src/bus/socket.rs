//! One zmq socket made awaitable on tokio, with no thread of its own.
//!
//! The task that wants a message calls libzmq itself (non-blocking) and, when nothing is
//! there, waits on the socket's `ZMQ_FD` through [`AsyncFd`]. That fd is edge-triggered and
//! belongs to the socket's command mailbox, not to its messages: any call into the socket
//! (a send from another task included) may consume the edge that announced new messages.
//! So every operation ends by asking `ZMQ_EVENTS` on behalf of whoever is parked (the one
//! reader, or writers waiting for room) and kicks them when their condition holds; a
//! parked party therefore wakes either on the fd or on a kick, and re-checks the socket
//! before it parks again (the reader skips that look when nothing touched the socket
//! since its last one ended at `EAGAIN`, or since a `ZMQ_EVENTS` asked on its behalf found
//! nothing: a look that finds nothing costs libzmq a pair of system calls).

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::{BusCore, BusError};

/// The socket's signalling fd; libzmq owns it, so this never closes it.
struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

pub(super) struct AsyncSocket {
    // Field order is drop order: the fd leaves epoll while the socket that owns it is still
    // open, the socket closes before the context (held by `core`) terminates.
    fd: AsyncFd<ZmqFd>,
    socket: Mutex<zmq::Socket>,
    reader_parked: AtomicBool,
    writers_parked: AtomicUsize,
    read_kick: Kick,
    write_kick: Notify,
    closed: AtomicBool,
    /// Bumped by every operation on the socket and by the reader when it wakes, so the
    /// reader can tell that nothing happened since a look (its own drain ending at
    /// `EAGAIN`, or a `ZMQ_EVENTS` finding nothing to read) left the socket clean
    /// (`clean_at`): then libzmq's mailbox is still armed and it may wait without looking.
    ops: AtomicU64,
    clean_at: AtomicU64,
    _core: Arc<BusCore>,
}

/// Wakes the one reader: a flag plus its waker (lighter than a `Notify` on this path).
#[derive(Default)]
struct Kick {
    kicked: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Kick {
    fn kick(&self) {
        self.kicked.store(true, SeqCst);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether a kick came; otherwise registers `waker` for the next one.
    fn poll(&self, waker: &Waker) -> bool {
        if self.kicked.swap(false, SeqCst) {
            return true;
        }
        {
            let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        // A kick between the swap and the registration found no waker to wake.
        self.kicked.swap(false, SeqCst)
    }
}

/// Clears a parked mark even when the waiting future is dropped (a timeout, a `select!`).
struct ParkedReader<'a>(&'a AtomicBool);

impl Drop for ParkedReader<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

struct ParkedWriter<'a>(&'a AtomicUsize);

impl Drop for ParkedWriter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl AsyncSocket {
    pub(super) fn new(socket: zmq::Socket, core: Arc<BusCore>) -> Result<Arc<Self>, BusError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BusError::NoRuntime);
        }
        let raw = socket.get_fd().map_err(|e| BusError::zmq("ZMQ_FD", e))?;
        // SAFETY: the fd stays open as long as the AsyncFd: libzmq closes it with the
        // socket, and the socket is declared (so dropped) after the AsyncFd below.
        let fd = unsafe { AsyncFd::register_with_interest(ZmqFd(raw), Interest::READABLE) }
            .map_err(|e| BusError::Io {
                context: "register the socket with the tokio reactor".into(),
                source: e.into_parts().1,
            })?;
        Ok(Arc::new(AsyncSocket {
            fd,
            socket: Mutex::new(socket),
            reader_parked: AtomicBool::new(false),
            writers_parked: AtomicUsize::new(0),
            read_kick: Kick::default(),
            write_kick: Notify::new(),
            closed: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            clean_at: AtomicU64::new(u64::MAX),
            _core: core,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, zmq::Socket> {
        // A panic while holding the lock leaves the socket as usable as before.
        self.socket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the reader and every waiting writer return [`BusError::Closed`].
    pub(super) fn close(&self) {
        self.closed.store(true, SeqCst);
        self.read_kick.kick();
        self.write_kick.notify_waiters();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Runs `f` on the socket, for setup and queries that need no waiting.
    pub(super) fn with<R>(&self, f: impl FnOnce(&zmq::Socket) -> R) -> R {
        let s = self.lock();
        let r = f(&s);
        self.wake_others(&s, false);
        r
    }

    /// After an operation (under the lock), wakes parked parties whose fd edge it may have
    /// swallowed, asking `ZMQ_EVENTS` only when someone is parked (`by_reader`: the reader
    /// itself is the one operating, so only writers count).
    ///
    /// When libzmq then reports nothing to read, it has just processed every command and
    /// found every pipe empty (which re-arms both), so the socket is clean as of this
    /// operation: the reader may wait without looking, unless it woke since (it bumps
    /// `ops` when it does, after clearing the fd's readiness, so the `ops` taken here
    /// before asking no longer matches). A client's reader relies on this: the call that
    /// sends a request looks on its behalf, so it need not look itself before waiting.
    fn wake_others(&self, s: &zmq::Socket, by_reader: bool) -> Events {
        let now = self.ops.fetch_add(1, SeqCst) + 1;
        let reader = !by_reader && self.reader_parked.load(SeqCst);
        let writers = self.writers_parked.load(SeqCst) > 0;
        if !reader && !writers {
            return Events::NotAsked;
        }
        match s.get_events() {
            Ok(ev) => {
                let readable = ev.contains(zmq::POLLIN);
                if readable {
                    if reader {
                        self.read_kick.kick();
                    }
                } else {
                    self.clean_at.store(now, SeqCst);
                }
                if writers && ev.contains(zmq::POLLOUT) {
                    self.write_kick.notify_waiters();
                }
                if readable {
                    Events::Readable
                } else {
                    Events::Nothing
                }
            }
            Err(_) => {
                // Cannot tell: wake them all, they re-check for themselves.
                self.read_kick.kick();
                self.write_kick.notify_waiters();
                Events::Readable
            }
        }
    }

    /// Sends without waiting: `f` sends every frame of one message with `DONTWAIT`, and a
    /// full queue or no connected peer is [`BusError::Unavailable`].
    pub(super) fn try_send(
        &self,
        f: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
    ) -> Result<(), BusError> {
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let s = self.lock();
        let r = f(&s);
        self.wake_others(&s, false);
        drop(s);
        r.map_err(send_error)
    }

    /// Sends, waiting for room while the queue is full (or no peer is connected yet). `f`
    /// builds and sends the frames on each attempt, since libzmq consumes a frame even
    /// when it refuses it.
    pub(super) async fn send(
        &self,
        mut f: impl FnMut(&zmq::Socket) -> zmq::Result<()>,
    ) -> Result<(), BusError> {
        loop {
            if self.is_closed() {
                return Err(BusError::Closed);
            }
            let kicked = self.write_kick.notified();
            tokio::pin!(kicked);
            let parked = {
                let s = self.lock();
                match f(&s) {
                    Ok(()) => {
                        self.wake_others(&s, false);
                        return Ok(());
                    }
                    Err(zmq::Error::EAGAIN) => {}
                    Err(e) => {
                        self.wake_others(&s, false);
                        return Err(send_error(e));
                    }
                }
                // Registered under the socket lock, which every kick is sent under, so a
                // kick between here and the wait below is kept.
                kicked.as_mut().enable();
                self.ops.fetch_add(1, SeqCst);
                self.writers_parked.fetch_add(1, SeqCst);
                let parked = ParkedWriter(&self.writers_parked);
                // A send that fails does not process pending commands; this does, and one
                // of them may be the peer's "room again".
                let room = match s.get_events() {
                    Ok(ev) => {
                        if ev.contains(zmq::POLLIN) && self.reader_parked.load(SeqCst) {
                            self.read_kick.kick();
                        }
                        ev.contains(zmq::POLLOUT)
                    }
                    Err(_) => true,
                };
                if room {
                    continue;
                }
                parked
            };
            tokio::select! {
                biased;
                _ = &mut kicked => {}
                ready = self.fd.readable() => match ready {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(e) => return Err(BusError::Io { context: "wait for the socket".into(), source: e }),
                },
            }
            drop(parked);
        }
    }

    /// Receives: `drain` takes messages and says how many, and whether it stopped because
    /// none was left; this waits until it takes at least one. `drain` is told whether its
    /// look follows a wait (so it may take just the message that woke it and hand it on
    /// sooner). With `yield_first`, the reader lets the other ready tasks run once before
    /// it looks (parked meanwhile, so a task that touches the socket then looks on its
    /// behalf, and spares it the look if it finds nothing). Only one task may read a given
    /// socket.
    pub(super) async fn read(
        &self,
        yield_first: bool,
        mut drain: impl FnMut(&zmq::Socket, bool) -> zmq::Result<Drained>,
    ) -> Result<usize, BusError> {
        let mut yielded = !yield_first;
        let mut woke = false;
        loop {
            if self.is_closed() {
                return Err(BusError::Closed);
            }
            // Parked before looking, so a sender that runs between the look and the wait
            // checks on our behalf.
            self.reader_parked.store(true, SeqCst);
            let parked = ParkedReader(&self.reader_parked);
            if !yielded {
                yielded = true;
                yield_once().await;
            }
            if self.clean_at.load(SeqCst) != self.ops.load(SeqCst) {
                let (got, readable) = {
                    let s = self.lock();
                    let r = drain(&s, woke);
                    let events = self.wake_others(&s, true);
                    // libzmq said EAGAIN, having processed every command (unless the look
                    // on the writers' behalf processed more since, which says for itself).
                    if matches!(events, Events::NotAsked)
                        && matches!(r, Ok(Drained { empty: true, .. }))
                    {
                        self.clean_at.store(self.ops.load(SeqCst), SeqCst);
                    }
                    (r, matches!(events, Events::Readable))
                };
                woke = false;
                match got {
                    Ok(Drained { taken, .. }) if taken > 0 => return Ok(taken),
                    Ok(_) | Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {}
                    Err(e) => return Err(BusError::zmq("receive", e)),
                }
                if readable {
                    // A message came after the drain ended and the look on the writers'
                    // behalf took its edge: look again rather than wait.
                    continue;
                }
            }
            let ready = std::future::poll_fn(|cx| {
                if self.read_kick.poll(cx.waker()) {
                    return Poll::Ready(Ok(()));
                }
                match self.fd.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        guard.clear_ready();
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            // Something happened: look, whatever the counters say (this also voids a clean
            // mark from a look on our behalf that began before the readiness was cleared).
            self.ops.fetch_add(1, SeqCst);
            woke = true;
            if let Err(e) = ready {
                return Err(BusError::Io {
                    context: "wait for the socket".into(),
                    source: e,
                });
            }
            drop(parked);
        }
    }
}

/// Whether an operation asked `ZMQ_EVENTS` on behalf of parked parties, and what it found.
enum Events {
    NotAsked,
    Nothing,
    Readable,
}

/// Lets the other ready tasks run once: the task wakes itself, which puts it at the back
/// of the run queue (without waiting for the I/O driver, as `tokio::task::yield_now` does).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// What a drain did: how many messages it took, and whether it stopped at `EAGAIN`.
pub(super) struct Drained {
    pub taken: usize,
    pub empty: bool,
}

/// Takes up to `max` messages of `N` frames, handing each well-formed one to `take` and
/// logging the others (`what` names the socket).
pub(super) fn drain<const N: usize>(
    s: &zmq::Socket,
    max: usize,
    what: &str,
    mut take: impl FnMut([zmq::Message; N]),
) -> zmq::Result<Drained> {
    let mut taken = 0;
    while taken < max {
        let mut frames: [zmq::Message; N] = std::array::from_fn(|_| zmq::Message::new());
        match recv_parts(s, &mut frames)? {
            None => return Ok(Drained { taken, empty: true }),
            Some(true) => take(frames),
            Some(false) => tracing::warn!("dropped a message on {what} with other than {N} frames"),
        }
        taken += 1;
    }
    Ok(Drained {
        taken,
        empty: false,
    })
}

fn send_error(e: zmq::Error) -> BusError {
    match e {
        zmq::Error::EAGAIN => BusError::Unavailable,
        zmq::Error::EHOSTUNREACH => BusError::PeerGone,
        other => BusError::zmq("send", other),
    }
}

/// Receives one whole message into `frames`, which must have room for the expected number
/// of parts: `Ok(None)` when nothing is waiting, `Ok(Some(false))` when a message with
/// another number of parts arrived (it is consumed and must be dropped).
pub(super) fn recv_parts(
    s: &zmq::Socket,
    frames: &mut [zmq::Message],
) -> zmq::Result<Option<bool>> {
    match s.recv(&mut frames[0], zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut parts = 1;
    let mut more = frames[0].get_more();
    // The remaining parts of a message arrive with its first one.
    while more {
        if parts < frames.len() {
            s.recv(&mut frames[parts], zmq::DONTWAIT)?;
            more = frames[parts].get_more();
        } else {
            let mut extra = zmq::Message::new();
            s.recv(&mut extra, zmq::DONTWAIT)?;
            more = extra.get_more();
        }
        parts += 1;
    }
    Ok(Some(parts == frames.len()))
}
