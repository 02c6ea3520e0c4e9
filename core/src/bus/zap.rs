//! The ZAP handler (ZeroMQ RFC 27, ZAP 1.0): libzmq asks it, during each CURVE handshake
//! on a server socket of the same context, whether the client key may connect.
//!
//! Without a handler libzmq admits every client key, so the handler is bound before any
//! server socket exists and lives as long as the context; where libzmq supports
//! `ZMQ_ZAP_ENFORCE_DOMAIN` server sockets also refuse everyone should it ever be gone.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::{Authenticator, BusError};
use crate::keys::z85_encode;

pub(super) const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
const STOP_ENDPOINT: &str = "inproc://sluice.zap-stop";

/// The handler thread; dropping this stops and joins it.
pub(super) struct ZapHandler {
    stop: Mutex<zmq::Socket>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the ZAP endpoint on `ctx` (so it is in place when this returns) and starts
    /// answering on a thread of its own: authenticators may block (a database look-up), and
    /// the handshakes they hold up are not on any async task's path.
    pub(super) fn start(
        ctx: &zmq::Context,
        auth: Arc<dyn Authenticator>,
    ) -> Result<ZapHandler, BusError> {
        let zap = ctx
            .socket(zmq::REP)
            .map_err(|e| BusError::zmq("ZAP socket", e))?;
        zap.set_linger(0)
            .map_err(|e| BusError::zmq("ZAP socket", e))?;
        zap.bind(ZAP_ENDPOINT)
            .map_err(|e| BusError::zmq("bind the ZAP handler", e))?;
        let stop_rx = ctx
            .socket(zmq::PAIR)
            .map_err(|e| BusError::zmq("ZAP stop socket", e))?;
        stop_rx
            .bind(STOP_ENDPOINT)
            .map_err(|e| BusError::zmq("ZAP stop socket", e))?;
        let stop = ctx
            .socket(zmq::PAIR)
            .map_err(|e| BusError::zmq("ZAP stop socket", e))?;
        for s in [&stop_rx, &stop] {
            s.set_linger(0)
                .map_err(|e| BusError::zmq("ZAP stop socket", e))?;
        }
        stop.connect(STOP_ENDPOINT)
            .map_err(|e| BusError::zmq("ZAP stop socket", e))?;
        let thread = std::thread::Builder::new()
            .name("sluice-zap".into())
            .spawn(move || serve(zap, stop_rx, auth))
            .map_err(|e| BusError::Io {
                context: "start the ZAP handler thread".into(),
                source: e,
            })?;
        Ok(ZapHandler {
            stop: Mutex::new(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        let sent = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(&b""[..], zmq::DONTWAIT);
        if let Err(e) = sent {
            tracing::error!("cannot stop the ZAP handler: {e}; leaving its thread behind");
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(zap: zmq::Socket, stop: zmq::Socket, auth: Arc<dyn Authenticator>) {
    loop {
        let mut items = [
            zap.as_poll_item(zmq::POLLIN),
            stop.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                tracing::error!("the ZAP handler stopped: {e}; no new bus client can connect");
                return;
            }
        }
        if items[1].is_readable() {
            return;
        }
        if !items[0].is_readable() {
            continue;
        }
        loop {
            let request = match zap.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    tracing::error!("the ZAP handler stopped: {e}; no new bus client can connect");
                    return;
                }
            };
            let reply = answer(&request, &*auth);
            if let Err(e) = zap.send_multipart(reply, 0) {
                tracing::error!("the ZAP handler cannot answer libzmq: {e}");
            }
        }
    }
}

/// The reply frames to one ZAP request: version, request id, status code, status text,
/// user id, metadata.
pub(super) fn answer(request: &[Vec<u8>], auth: &dyn Authenticator) -> [Vec<u8>; 6] {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: String| {
        [
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.into_bytes(),
            Vec::new(),
        ]
    };
    // version, request id, domain, address, routing id, mechanism, credentials...
    if request.len() < 6 || request[0] != b"1.0" {
        tracing::error!("malformed ZAP request ({} frames)", request.len());
        return reply("500", "malformed ZAP request", String::new());
    }
    let address = String::from_utf8_lossy(&request[3]);
    if request[5] != b"CURVE" {
        tracing::warn!(
            "refused a {} client from {address}: only CURVE is accepted",
            String::from_utf8_lossy(&request[5])
        );
        return reply("400", "only CURVE is accepted", String::new());
    }
    let Some(key) = request
        .get(6)
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
    else {
        tracing::warn!("refused a CURVE client from {address}: no 32-byte public key");
        return reply("400", "no client key", String::new());
    };
    // A panicking authenticator must not take the handler (and with it every check) away.
    let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| auth.authenticate(&key, &address)));
    match verdict {
        Ok(Some(user)) => {
            tracing::debug!(
                "admitted CURVE client {} from {address} as {user:?}",
                z85_encode(&key)
            );
            reply("200", "OK", user)
        }
        Ok(None) => {
            tracing::warn!(
                "refused CURVE client {} from {address}: unknown or revoked key",
                z85_encode(&key)
            );
            reply("400", "unknown or revoked key", String::new())
        }
        Err(_) => {
            tracing::error!(
                "refused CURVE client {} from {address}: the authenticator panicked",
                z85_encode(&key)
            );
            reply("500", "authenticator failed", String::new())
        }
    }
}
