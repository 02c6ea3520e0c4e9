//! The gateway's listeners: `qorus.http-server` (HTTP) and `qorus.http-secure-server`
//! (HTTPS, rustls, each listener with its own certificate chain and key), HTTP/1.1 and
//! HTTP/2 on each, and a graceful stop: when the process stops, no new connection is
//! accepted and the requests in flight complete. Each listener limits the connections one
//! client address may have open ([`per_address`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_core::options::{HttpListener, Options, TlsFiles};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::hygiene::{Listener, Peer};
use crate::{App, GatewayError};

pub mod per_address;
use per_address::PerAddress;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the requests in flight may take to finish once the gateway stops (the master
/// signals a child that has not stopped after 10 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(9);
/// Pending connections per listening socket.
const BACKLOG: u32 = 1024;

/// One configured listener with its sockets.
pub struct Bound {
    pub listener: HttpListener,
    pub sockets: Vec<TcpListener>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The rustls configuration of an HTTPS listener: its certificate chain and key, checked
/// to belong together.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("cannot read certificate file {}: {e}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "certificate file {} is not valid PEM: {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "certificate file {} holds no PEM certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "key file {} holds no usable PEM private key: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "certificate {} and key {} cannot be used: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The socket addresses of a listener: all interfaces (IPv4) without a host, else what
/// the host resolves to.
pub fn addresses(listener: &HttpListener) -> Result<Vec<SocketAddr>, GatewayError> {
    let host = listener.host.as_deref().unwrap_or("0.0.0.0");
    let mut found: Vec<SocketAddr> = (host, listener.port)
        .to_socket_addrs()
        .map_err(|source| GatewayError::Resolve {
            listener: listener.to_string(),
            host: host.to_string(),
            source,
        })?
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(GatewayError::Resolve {
            listener: listener.to_string(),
            host: host.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        });
    }
    Ok(found)
}

/// Startup step 7's check, run by the master before it starts the gateway: every
/// certificate and key loads, and every address can be bound (it is released again).
pub fn preflight(options: &Options) -> Result<(), GatewayError> {
    for listener in options.http_listeners() {
        if let Some(files) = &listener.tls {
            tls_config(files).map_err(|message| GatewayError::Tls {
                listener: listener.to_string(),
                message,
            })?;
        }
        for address in addresses(&listener)? {
            std::net::TcpListener::bind(address).map_err(|source| GatewayError::Bind {
                listener: listener.to_string(),
                address,
                source,
            })?;
        }
    }
    Ok(())
}

/// Opens every listener of the options.
pub fn bind(options: &Options) -> Result<Vec<Bound>, GatewayError> {
    let mut bound = Vec::new();
    for listener in options.http_listeners() {
        let tls = match &listener.tls {
            Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls_config(files).map_err(
                |message| GatewayError::Tls {
                    listener: listener.to_string(),
                    message,
                },
            )?)),
            None => None,
        };
        let mut sockets = Vec::new();
        for address in addresses(&listener)? {
            let fail = |source| GatewayError::Bind {
                listener: listener.to_string(),
                address,
                source,
            };
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(fail)?;
            socket.set_reuseaddr(true).map_err(fail)?;
            socket.bind(address).map_err(fail)?;
            sockets.push(socket.listen(BACKLOG).map_err(fail)?);
        }
        bound.push(Bound {
            listener,
            sockets,
            tls,
        });
    }
    Ok(bound)
}

/// [`serve_limited`] with the default of `qorus.http-max-connections-per-address`.
pub async fn serve(bound: Vec<Bound>, app: App, stopping: watch::Receiver<bool>) {
    let default = sluice_core::options::find("http-max-connections-per-address")
        .and_then(|def| def.default.parse().ok())
        .unwrap_or(256);
    serve_limited(bound, app, stopping, default).await
}

/// Serves every bound listener until `stopping` turns true, then refuses new connections
/// and waits (up to [`DRAIN_TIMEOUT`]) for the requests in flight. Each listener admits at
/// most `max_per_address` open connections per client address (its sockets together).
pub async fn serve_limited(
    bound: Vec<Bound>,
    app: App,
    stopping: watch::Receiver<bool>,
    max_per_address: usize,
) {
    let mut loops = JoinSet::new();
    for b in bound {
        let limits = PerAddress::new(b.listener.to_string(), max_per_address);
        for socket in b.sockets {
            let scheme = if b.tls.is_some() { "https" } else { "http" };
            match socket.local_addr() {
                Ok(addr) => tracing::info!(
                    listener = %b.listener,
                    "HTTP gateway listening on {scheme}://{addr}"
                ),
                Err(err) => tracing::warn!("a listener has no address: {err}"),
            }
            loops.spawn(accept_loop(
                socket,
                b.tls.clone(),
                app.clone(),
                stopping.clone(),
                limits.clone(),
            ));
        }
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(
    socket: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: App,
    mut stopping: watch::Receiver<bool>,
    limits: PerAddress,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        if *stopping.borrow() {
            break;
        }
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: wait, then try again.
                    tracing::warn!("cannot accept a connection: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            changed = stopping.changed() => {
                if changed.is_err() { break; }
                continue;
            }
        };
        let Some(slot) = limits.admit(peer.ip()) else {
            per_address::refuse(stream, tls.is_some(), &limits);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let app = app.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            // The connection's place among its address's, until the task ends.
            let _slot = slot;
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(Body::new);
                    request.extensions_mut().insert(Peer(peer));
                    if let Some(local) = local {
                        request.extensions_mut().insert(Listener(local));
                    }
                    tower::ServiceExt::oneshot(app.clone(), request)
                },
            );
            match tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(err) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {err}");
                    }
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {err}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(err) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {err}");
                    }
                }
            }
        });
    }
    // New connections are refused from here on; those open finish their requests.
    drop(socket);
    let open = graceful.count();
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "{open} connection(s) still busy after {} s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
    }
}
