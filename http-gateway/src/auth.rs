//! Who is calling, and whether they may.
//!
//! RBAC is not implemented yet. With `qorus.rbac-security` off (the default) every request
//! is allowed and runs as the gateway itself (the master's child, so the master grants it
//! every verb). With it on, nothing is allowed but `/api/public/`: there are no users to
//! authenticate, and the gateway never lets a request through unauthenticated. Basic auth,
//! `Qorus-Token` and OAuth2 bearer tokens come with RBAC: this module is where the
//! request's principal will be established and passed on in the envelope.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::errors::ApiError;
use crate::format;
use crate::Gateway;

/// Paths served without authentication.
pub const PUBLIC_PREFIX: &str = "/api/public/";

/// Middleware before routing: refuses what needs authentication when RBAC is on.
pub async fn gate(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    if gateway.rbac_security && !request.uri().path().starts_with(PUBLIC_PREFIX) {
        let error = ApiError::new(
            "AUTHENTICATION-ERROR",
            "qorus.rbac-security is on and this request needs authentication, but RBAC users \
             are not implemented yet: only /api/public/ is served",
        );
        // A gRPC client reads a gRPC status (UNAUTHENTICATED), not a REST error.
        if crate::grpc::is_grpc(request.headers()) {
            return crate::grpc::refusal(&error);
        }
        return format::respond_error(format::reply_format(request.headers()), &error);
    }
    next.run(request).await
}
