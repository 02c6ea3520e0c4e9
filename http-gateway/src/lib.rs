//! The HTTP gateway: the only process of a node with HTTP listeners.
//!
//! It holds no business state. Each request is authenticated ([`auth`]), routed by the
//! REST route table ([`routes`]), and forwarded over the bus to the master as the system
//! API verb the route names; the master's reply (or error) becomes the HTTP reply. The
//! gateway calls the master as one of its children, so the master's permission checks
//! pass; the gateway itself decides what an HTTP caller may do. Service method calls go
//! straight to the running service's process instead ([`direct`]), found with the
//! master's registry.
//!
//! - [`listeners`]: HTTP and HTTPS listeners, per-address connection limits, graceful
//!   stop, and [`preflight`] (startup step 7's check the master runs before it starts
//!   this process);
//! - [`routes`]: the route table, the OpenAPI document made from it;
//! - `rest`: the axum router and the handlers; `args`: arguments from path, query, body;
//! - [`format`]: JSON and YAML bodies; [`errors`]: `{"err", "desc"}` and the status table;
//! - `hygiene`: request ids, time limit, access log, CORS; `auth`: RBAC's seam;
//! - [`compression`]: compressed bodies both ways; [`ws`]: the WebSockets (`/apievents`,
//!   `/log/SOURCE`, `/remote-command`) and their tokens; [`remote`]: `/raw/remote-file`;
//! - [`rpc`]: JSON-RPC, XML-RPC and YAML-RPC (`/JSON`, `/RPC2`, `/YAML`); [`grpc`]: the
//!   gRPC service `sluice.v1.SystemApi` (`/sluice.v1.SystemApi/*`, HTTP/2).
//!
//! Not here yet (it has its place): OAuth2 and RBAC users (`auth`).

pub mod compression;
pub mod direct;
pub mod errors;
pub mod format;
pub mod grpc;
pub mod listeners;
pub mod remote;
pub mod routes;
pub mod rpc;
pub mod ws;

mod args;
mod auth;
#[cfg(test)]
mod generated_docs;
mod hygiene;
mod rest;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use sluice_core::bus::{BusError, Client};
use sluice_core::child::ChildContext;
use sluice_core::keys::KeyPair;
use sluice_proto::v1::Envelope;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

pub use errors::ApiError;
pub use listeners::preflight;

/// Why the gateway cannot serve a listener. Each names the listener as the option wrote it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("HTTP listener {listener}: {message}")]
    Tls { listener: String, message: String },
    #[error("HTTP listener {listener}: cannot listen on {address}: {source}")]
    Bind {
        listener: String,
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP listener {listener}: cannot resolve {host}: {source}")]
    Resolve {
        listener: String,
        host: String,
        source: std::io::Error,
    },
}

/// How the gateway reaches the master: the child's bus connection (a stand-in in tests).
pub trait MasterLink: Send + Sync + 'static {
    fn call(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Envelope, BusError>> + Send + '_>>;
}

impl MasterLink for Client {
    fn call(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Envelope, BusError>> + Send + '_>> {
        Box::pin(Client::call(self, request, timeout))
    }
}

/// What every request handler shares. No business state: only the way to the master.
pub struct Gateway {
    pub master: Arc<dyn MasterLink>,
    /// `qorus.rbac-security`.
    pub rbac_security: bool,
    /// `qorus.cors-enable`.
    pub cors: bool,
    /// The master's status as last read, for `/api/public/info`.
    pub status: rest::StatusCache,
    /// The instance's directories and what the sockets share (tokens, the event feed).
    pub local: ws::Local,
    /// The way straight to service processes; `None` sends every call to the master.
    pub direct: Option<Arc<direct::Direct>>,
}

/// The whole HTTP application, as one cloneable service.
pub type App = BoxCloneSyncService<axum::extract::Request, Response, std::convert::Infallible>;

/// The HTTP application: hygiene, CORS, authentication, compressed bodies, then the routers.
pub fn app(gateway: Gateway) -> App {
    let cors = gateway.cors.then(hygiene::cors);
    let gateway = Arc::new(gateway);
    let service = ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            hygiene::panic_response,
        ))
        .layer(axum::middleware::from_fn(hygiene::track))
        .option_layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            auth::gate,
        ))
        // After authentication: nothing is decompressed for a caller refused anyway.
        .layer(axum::middleware::from_fn(compression::negotiate_bodies))
        .layer(axum::middleware::from_fn(rest::action_suffix))
        .service(
            rest::router(gateway.clone())
                .merge(ws::router(gateway.clone()))
                .merge(remote::router(gateway.clone()))
                .merge(grpc::router(gateway.clone()))
                .merge(rpc::http::router(gateway)),
        );
    BoxCloneSyncService::new(service)
}

/// The gateway's work beside the child loop: serve the listeners until the process stops.
pub async fn run(ctx: ChildContext) -> Result<(), String> {
    let ChildContext {
        boot,
        master,
        mut stopping,
        mut requests,
        ..
    } = ctx;
    let options = boot
        .options()
        .map_err(|e| format!("cannot read the options: {e}"))?;
    let bound = listeners::bind(&options).map_err(|e| e.to_string())?;
    let local = ws::Local::new(
        boot.instance_key.clone(),
        boot.home.clone(),
        boot.logdir.clone(),
        stopping.clone(),
    );
    let master: Arc<dyn MasterLink> = Arc::new(master);
    let direct = direct_route(&boot).map(Arc::new);
    if let Some(direct) = &direct {
        tokio::spawn(direct.clone().follow(
            master.clone(),
            options.local_endpoint("events"),
            stopping.clone(),
        ));
    }
    let app = app(Gateway {
        master,
        rbac_security: options.rbac_security(),
        status: Default::default(),
        cors: options.cors_enable(),
        local,
        direct,
    });
    if options.rbac_security() {
        tracing::warn!(
            "qorus.rbac-security is on and RBAC users are not implemented yet: the gateway \
             answers only /api/public/ and refuses every other request with 401"
        );
    }
    let server = tokio::spawn(listeners::serve_limited(
        bound,
        app,
        stopping.clone(),
        options.http_max_connections_per_address(),
    ));
    loop {
        tokio::select! {
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() {
                    break;
                }
            }
            // The master sends the gateway nothing of its own yet: dropping the request
            // answers UNKNOWN-METHOD.
            Some(request) = requests.recv() => drop(request),
        }
    }
    tracing::info!("HTTP gateway stopping: no new connections; finishing the requests in flight");
    server
        .await
        .map_err(|e| format!("the HTTP server failed: {e}"))?;
    tracing::info!("HTTP gateway stopped");
    Ok(())
}

/// The direct route to service processes, with this process's keys; `None` (every call
/// through the master, which is slower but works) when they cannot be read.
fn direct_route(boot: &sluice_core::child::Bootstrap) -> Option<direct::Direct> {
    use sluice_core::keys;
    let made = keys::load_key_file(&boot.network_key)
        .and_then(|cluster| {
            let own = KeyPair::try_from_secret(keys::z85_decode(boot.client_secret.expose())?)?;
            Ok((cluster, own))
        })
        .map_err(|e| e.to_string())
        .and_then(|(cluster, own)| {
            direct::Direct::new(own, *cluster.public()).map_err(|e| e.to_string())
        });
    match made {
        Ok(direct) => Some(direct),
        Err(err) => {
            tracing::warn!("service calls go through the master: {err}");
            None
        }
    }
}

/// Turns an axum body into bytes (tests and tools).
pub async fn body_bytes(body: Body) -> Vec<u8> {
    use http_body_util::BodyExt;
    body.collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
