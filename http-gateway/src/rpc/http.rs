//! The RPC gateways on HTTP: `POST /JSON` (JSON-RPC 2.0 and 1.1), `POST /RPC2` (XML-RPC)
//! and `POST /YAML` (YAML-RPC), each decoding with its codec, resolving the method with
//! [`super::methods`], calling the master as the REST routes do, and encoding the outcome.
//!
//! Every answer is HTTP 200 with the protocol's own error or fault when something failed
//! (as Qorus does: an unknown method is still a 200 with error 105), but for a JSON-RPC
//! request of notifications only (204) and a body too large (413).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use super::methods::{self, Dispatch, Patience};
use super::{jsonrpc, xmlrpc, yamlrpc, RpcCall, RpcOutcome};
use crate::rest::{CHANGE_TIMEOUT, MAX_BODY, READ_TIMEOUT};
use crate::Gateway;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/JSON", post(json_rpc))
        .route("/RPC2", post(xml_rpc))
        .route("/YAML", post(yaml_rpc))
        .with_state(gateway)
}

fn answer(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn too_large() -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "application/json",
        serde_json::json!({"err": "PAYLOAD-TOO-LARGE",
                           "desc": format!("the request body is larger than {MAX_BODY} bytes")})
        .to_string()
        .into_bytes(),
    )
}

async fn body(request: Request) -> Option<axum::body::Bytes> {
    to_bytes(request.into_body(), MAX_BODY).await.ok()
}

async fn json_rpc(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let Some(bytes) = body(request).await else {
        return too_large();
    };
    let decoded = match jsonrpc::decode_request(&bytes) {
        Ok(decoded) => decoded,
        Err(err) => {
            return answer(
                StatusCode::OK,
                jsonrpc::CONTENT_TYPE,
                jsonrpc::encode_error(&err),
            )
        }
    };
    let mut outcomes = Vec::new();
    for call in decoded.calls() {
        outcomes.push(execute(&gateway, call).await);
    }
    match jsonrpc::encode_responses(&decoded, &outcomes) {
        Some(body) => answer(StatusCode::OK, jsonrpc::CONTENT_TYPE, body),
        None => answer(StatusCode::NO_CONTENT, jsonrpc::CONTENT_TYPE, Vec::new()),
    }
}

async fn xml_rpc(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let Some(bytes) = body(request).await else {
        return too_large();
    };
    let body = match xmlrpc::decode_request(&bytes) {
        Ok(call) => xmlrpc::encode_response(&execute(&gateway, &call).await),
        Err(err) => xmlrpc::encode_error(&err),
    };
    answer(StatusCode::OK, xmlrpc::CONTENT_TYPE, body)
}

async fn yaml_rpc(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let Some(bytes) = body(request).await else {
        return too_large();
    };
    let body = match yamlrpc::decode_request(&bytes) {
        Ok(call) => yamlrpc::encode_response(&call, &execute(&gateway, &call).await),
        Err(err) => yamlrpc::encode_error(&err),
    };
    answer(StatusCode::OK, yamlrpc::CONTENT_TYPE, body)
}

/// Carries out one call against the master (gRPC's `Call` too).
pub(crate) async fn execute(gateway: &Gateway, call: &RpcCall) -> RpcOutcome {
    let target = match methods::resolve(call) {
        Ok(Dispatch::Master(target)) => target,
        Ok(Dispatch::ListMethods) => return list_methods(gateway).await,
        Err(outcome) => return outcome,
    };
    let (timeout, deadline_ms) = match target.patience {
        Patience::Read => (READ_TIMEOUT, 0),
        Patience::Change => (CHANGE_TIMEOUT, 0),
        Patience::LongPoll(wait) => (READ_TIMEOUT + wait, 0),
        Patience::ServiceCall => {
            let limit = sluice_core::host_api::SERVICE_CALL_TIMEOUT;
            (
                limit + Duration::from_secs(1),
                sluice_core::now_ms() + limit.as_millis() as i64,
            )
        }
    };
    match gateway
        .call(target.verb, target.body.clone(), timeout, deadline_ms)
        .await
    {
        Ok(reply) => target.outcome(&reply),
        Err(err) => err.into(),
    }
}

/// `system.listMethods`: the system's methods and every exported method of every loaded
/// service (`internal` ones are not exported).
async fn list_methods(gateway: &Gateway) -> RpcOutcome {
    let listed = match gateway
        .call("omq.system.list-services", b"{}".to_vec(), READ_TIMEOUT, 0)
        .await
    {
        Ok(reply) => serde_json::from_slice::<Value>(&reply).unwrap_or(Value::Null),
        Err(err) => return err.into(),
    };
    let mut services = Vec::new();
    for name in methods::loaded_services(&listed) {
        let body = serde_json::json!({"name": name}).to_string().into_bytes();
        if let Ok(reply) = gateway
            .call("omq.system.get-service", body, READ_TIMEOUT, 0)
            .await
        {
            if let Some(exported) = serde_json::from_slice::<Value>(&reply)
                .ok()
                .as_ref()
                .and_then(methods::exported_methods)
            {
                services.push(exported);
            }
        }
    }
    RpcOutcome::Ok(Value::from(methods::list_methods(&services)))
}
