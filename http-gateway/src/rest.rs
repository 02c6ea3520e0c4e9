//! The REST API: the axum router built from [`crate::routes::ROUTES`], and what each route
//! does — collect its arguments, call the master over the bus, shape the reply.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use serde_json::{json, Map, Value};
use sluice_core::events::EventCode;
use sluice_proto::v1::{
    EventList, EventQuery, InterfaceList, InterfaceRef, RegistryEntry, SystemStatus,
};

use crate::args::{self, ACTION};
use crate::errors::ApiError;
use crate::format::{self, Format};
use crate::routes::{
    self, Handler, Method, Route, Scope, StatusView, WorkflowAction, LATEST_PREFIXES, ROUTES,
};
use crate::rpc::methods::MAX_EVENT_WAIT;
use crate::Gateway;

/// Largest request body; a larger one is refused with 413.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long the master may take to answer a reading route, and a changing one (a job run,
/// a service load or a group change waits for processes).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(15);
pub(crate) const CHANGE_TIMEOUT: Duration = Duration::from_secs(110);
/// How long `execSynchronous` lets the master wait for its order.
const SYNC_WAIT: Duration = Duration::from_secs(60);
/// Most orders one bulk action takes.
const MAX_BULK: usize = 1000;

/// The REST router: every route of the table under its scope's prefixes, a JSON 404 for
/// everything else.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let mut public: Router<Arc<Gateway>> = Router::new();
    let mut latest: Router<Arc<Gateway>> = Router::new();
    let mut seen: Vec<(Scope, &str)> = Vec::new();
    for route in ROUTES {
        if seen.contains(&(route.scope, route.path)) {
            continue;
        }
        seen.push((route.scope, route.path));
        let mut methods: Vec<Method> = ROUTES
            .iter()
            .filter(|r| r.scope == route.scope && r.path == route.path)
            .map(|r| r.method)
            .collect();
        methods.dedup();
        let mut endpoint: MethodRouter<Arc<Gateway>> = MethodRouter::new();
        for method in methods {
            let (scope, path) = (route.scope, route.path);
            let filter = match method {
                Method::Get => MethodFilter::GET,
                Method::Put => MethodFilter::PUT,
                Method::Post => MethodFilter::POST,
            };
            endpoint = endpoint.on(
                filter,
                move |State(gateway): State<Arc<Gateway>>,
                      params: Result<Path<Vec<(String, String)>>, PathRejection>,
                      request: Request| async move {
                    gateway.serve(scope, method, path, params, request).await
                },
            );
        }
        match route.scope {
            Scope::Public => public = public.route(route.path, endpoint),
            Scope::Latest => latest = latest.route(route.path, endpoint),
        }
    }
    let public = public.method_not_allowed_fallback(method_not_allowed);
    let latest = latest.method_not_allowed_fallback(method_not_allowed);
    let mut app = Router::new().nest(Scope::Public.prefix(), public);
    for prefix in LATEST_PREFIXES {
        app = app.nest(prefix, latest.clone());
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
}

async fn not_found(request: Request) -> Response {
    let error = ApiError::new(
        "NOT-FOUND",
        format!(
            "no route {} {}; GET /api/latest/openapi.json lists them all",
            request.method(),
            request.uri().path()
        ),
    );
    format::respond_error(format::reply_format(request.headers()), &error)
}

pub(crate) async fn method_not_allowed(request: Request) -> Response {
    let error = ApiError::new(
        "METHOD-NOT-ALLOWED",
        format!(
            "{} does not take {}",
            request.uri().path(),
            request.method()
        ),
    );
    format::respond_error(format::reply_format(request.headers()), &error)
}

/// Middleware before routing: Qorus's `PATH/ACTION` becomes `PATH?action=ACTION`, unless
/// the query names an action already.
pub async fn action_suffix(mut request: Request, next: Next) -> Response {
    let has_action = query_pairs(request.uri())
        .iter()
        .any(|(name, _)| name == ACTION);
    if !has_action {
        if let Some(method) = Method::from_http(request.method()) {
            if let Some((parent, action)) = routes::action_suffix(method, request.uri().path()) {
                let query = match request.uri().query() {
                    Some(q) if !q.is_empty() => format!("{q}&{ACTION}={action}"),
                    _ => format!("{ACTION}={action}"),
                };
                if let Ok(uri) = format!("{parent}?{query}").parse::<Uri>() {
                    *request.uri_mut() = uri;
                }
            }
        }
    }
    next.run(request).await
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A successful reply.
struct Reply {
    status: StatusCode,
    value: Value,
    /// The OpenAPI document is JSON whatever the request asks.
    always_json: bool,
}

/// How long `/api/public/info` answers from the status it last read: monitors and load
/// balancers poll it, and a master round trip per poll would make the cheapest route cost
/// as much as any other. Everything else reads the status afresh.
const INFO_FRESH: Duration = Duration::from_millis(500);

/// The master's status as last read, and when.
#[derive(Default)]
pub struct StatusCache(std::sync::Mutex<Option<(std::time::Instant, Arc<SystemStatus>)>>);

impl Gateway {
    /// The master's status; with `cached`, one read in the last [`INFO_FRESH`] will do.
    async fn system_status(&self, cached: bool) -> Result<Arc<SystemStatus>, ApiError> {
        if cached {
            let kept = self
                .status
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some((at, status)) = kept.filter(|(at, _)| at.elapsed() < INFO_FRESH) {
                let mut status = (*status).clone();
                // The uptime as of now, not as of the read.
                status.uptime_ms += at.elapsed().as_millis() as u64;
                return Ok(Arc::new(status));
            }
        }
        let reply = self
            .call("omq.system.get-status", Vec::new(), READ_TIMEOUT, 0)
            .await?;
        let status = Arc::new(SystemStatus::decode(reply.as_slice()).map_err(|e| {
            ApiError::new(
                "INTERNAL-ERROR",
                format!("the master's status is malformed: {e}"),
            )
        })?);
        *self.status.0.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), status.clone()));
        Ok(status)
    }

    async fn serve(
        &self,
        scope: Scope,
        method: Method,
        path: &'static str,
        params: Result<Path<Vec<(String, String)>>, PathRejection>,
        request: Request,
    ) -> Response {
        let format = format::reply_format(request.headers());
        match self.answer(scope, method, path, params, request).await {
            Ok(reply) if reply.always_json => {
                format::respond(Format::Json, reply.status, &reply.value)
            }
            Ok(reply) => format::respond(format, reply.status, &reply.value),
            Err(error) => format::respond_error(format, &error),
        }
    }

    async fn answer(
        &self,
        scope: Scope,
        method: Method,
        path: &'static str,
        params: Result<Path<Vec<(String, String)>>, PathRejection>,
        request: Request,
    ) -> Result<Reply, ApiError> {
        let params = params
            .map(|Path(p)| p)
            .map_err(|e| ApiError::invalid(format!("malformed path: {}", e.body_text())))?;
        let query = query_pairs(request.uri());
        let mut actions = query.iter().filter(|(name, _)| name == ACTION);
        let action = actions.next().map(|(_, a)| a.as_str());
        if actions.next().is_some() {
            return Err(ApiError::invalid(
                "the query string names more than one action",
            ));
        }
        let route = select(scope, method, path, action)?;
        let headers = request.headers().clone();
        let body = read_body(&headers, request.into_body()).await?;
        let body = format::parse_body(format::request_format(&headers), &body)?;
        let args = args::collect(route, &params, &query, body)?;
        let status = if route.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let value = self.run_route(route, args).await?;
        Ok(Reply {
            status,
            value,
            always_json: route.handler == Handler::OpenApi,
        })
    }

    async fn run_route(&self, route: &Route, args: Map<String, Value>) -> Result<Value, ApiError> {
        let timeout = if route.method == Method::Get {
            READ_TIMEOUT
        } else {
            CHANGE_TIMEOUT
        };
        match route.handler {
            Handler::Verb(verb) => {
                let body = Value::Object(args).to_string().into_bytes();
                let reply = self.call(verb, body, timeout, 0).await?;
                json_reply(verb, &reply)
            }
            Handler::Status(view) => {
                let status = self.system_status(view == StatusView::Info).await?;
                Ok(status_view(view, &status))
            }
            Handler::Events => self.events(&args).await,
            Handler::CallService => self.call_service(args).await,
            Handler::OpenApi => Ok(routes::openapi()),
            Handler::WsToken => Ok(Value::String(self.local.tokens.issue())),
            Handler::VerbWith(verb, field, value) => {
                let mut args = args;
                args.insert(field.to_string(), Value::Bool(value));
                let body = Value::Object(args).to_string().into_bytes();
                let reply = self.call(verb, body, timeout, 0).await?;
                json_reply(verb, &reply)
            }
            Handler::Workflow(action) => self.workflow_action(action, &args).await,
            Handler::Shutdown => {
                self.call("omq.system.shutdown", Vec::new(), timeout, 0)
                    .await?;
                Ok(json!({
                    "shutdown": true,
                    "message": "the master is shutting down: it stops every process of the \
                                node, this gateway among them, then exits",
                }))
            }
            Handler::ExecSynchronous => {
                // The master answers TIMEOUT itself just before the deadline, naming the
                // order; the bus waits a little longer so that answer arrives.
                let body = Value::Object(args).to_string().into_bytes();
                let deadline_ms = sluice_core::now_ms() + SYNC_WAIT.as_millis() as i64;
                let verb = "omq.system.exec-synchronous";
                let reply = self
                    .call(verb, body, SYNC_WAIT + Duration::from_secs(5), deadline_ms)
                    .await?;
                json_reply(verb, &reply)
            }
            Handler::Bulk(verb) => self.bulk(verb, &args).await,
            Handler::Log => self.log_lines(&args).await,
        }
    }

    /// `start-interface`, `stop-interface` or `reset-workflow` on the workflow the route
    /// names (by name, or by workflowid: looked up among the loaded interfaces).
    async fn workflow_action(
        &self,
        action: WorkflowAction,
        args: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let version = args
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let wanted = match (
            args.get("name").and_then(Value::as_str),
            args.get("workflowid"),
        ) {
            (Some(name), _) => InterfaceRef {
                r#type: "workflow".into(),
                name: name.to_string(),
                version,
            },
            (None, Some(id)) => {
                let id = id.as_i64().unwrap_or_default();
                let reply = self
                    .call("omq.system.list-interfaces", Vec::new(), READ_TIMEOUT, 0)
                    .await?;
                let list = InterfaceList::decode(reply.as_slice()).map_err(|e| {
                    ApiError::new(
                        "INTERNAL-ERROR",
                        format!("the master's interface list is malformed: {e}"),
                    )
                })?;
                let found = list
                    .interfaces
                    .iter()
                    .find(|i| i.r#type == "workflow" && i.id == id)
                    .ok_or_else(|| {
                        ApiError::new(
                            "NOT-FOUND",
                            format!("no workflow with workflowid {id} is loaded"),
                        )
                    })?;
                InterfaceRef {
                    r#type: "workflow".into(),
                    name: found.name.clone(),
                    version: found.version.clone(),
                }
            }
            (None, None) => return Err(ApiError::invalid("the request names no workflow")),
        };
        let reply = self
            .call(action.verb(), wanted.encode_to_vec(), CHANGE_TIMEOUT, 0)
            .await?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        Ok(match action {
            WorkflowAction::Start => json!({"network_id": text, "status": "starting"}),
            WorkflowAction::Stop => json!({"network_id": text, "status": "stopped"}),
            WorkflowAction::Reset => json!({"message": text}),
        })
    }

    /// A single-order verb once per id, in order; each failure is reported with its id
    /// and does not stop the others (Qorus's bulk APIs answer per item).
    async fn bulk(&self, verb: &str, args: &Map<String, Value>) -> Result<Value, ApiError> {
        let ids: Vec<i64> = args
            .get("ids")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(ApiError::invalid("ids names no order"));
        }
        if ids.len() > MAX_BULK {
            return Err(ApiError::invalid(format!(
                "at most {MAX_BULK} orders at once, not {}",
                ids.len()
            )));
        }
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let body = json!({"workflow_instanceid": id}).to_string().into_bytes();
            let outcome = match self.call(verb, body, CHANGE_TIMEOUT, 0).await {
                Ok(reply) => json_reply(verb, &reply),
                Err(error) => Err(error),
            };
            results.push(match outcome {
                Ok(result) => json!({"workflow_instanceid": id, "result": result}),
                Err(error) => {
                    json!({"workflow_instanceid": id, "err": error.code, "desc": error.desc})
                }
            });
        }
        Ok(Value::Array(results))
    }

    /// The last `lines` lines of the log file a source names.
    async fn log_lines(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        use crate::ws::log::{Follower, DEFAULT_LINES, MAX_LINES};
        let source = args
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lines = match args.get("lines").and_then(Value::as_i64) {
            None => DEFAULT_LINES,
            Some(n) if (0..=MAX_LINES as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::invalid(format!(
                    "lines must be a number from 0 to {MAX_LINES}, not {n}"
                )))
            }
        };
        let path = crate::ws::log::resolve(self, source).await?;
        let tail = Follower::new(path).start(lines).await.map_err(|e| {
            ApiError::new(
                "INTERNAL-ERROR",
                format!("cannot read the log of {source}: {e}"),
            )
        })?;
        Ok(Value::Array(
            String::from_utf8_lossy(&tail)
                .lines()
                .map(|l| Value::String(l.to_string()))
                .collect(),
        ))
    }

    /// Calls the master; a bus failure is `MASTER-UNAVAILABLE` (503).
    pub(crate) async fn call(
        &self,
        method: &str,
        body: Vec<u8>,
        timeout: Duration,
        deadline_ms: i64,
    ) -> Result<Vec<u8>, ApiError> {
        if method == crate::rpc::methods::CALL_SERVICE {
            if let Some(direct) = &self.direct {
                match direct.call_service(&body, timeout, deadline_ms).await {
                    Some(Ok(reply)) => {
                        return match reply.error {
                            Some(error) => Err(ApiError::from_bus(error)),
                            None => Ok(reply.body),
                        }
                    }
                    Some(Err(err)) => return Err(ApiError::new(err.code(), err.to_string())),
                    None => {}
                }
            }
        }
        // The master records where a change came from with its audit records.
        let principal = crate::hygiene::ORIGIN
            .try_with(|origin| sluice_proto::v1::Principal {
                source: origin.source(),
                reason: origin.reason(),
                ..Default::default()
            })
            .ok();
        let request = sluice_proto::v1::Envelope {
            method: method.to_string(),
            body,
            deadline_ms,
            principal,
            ..Default::default()
        };
        match self.master.call(request, timeout).await {
            Ok(reply) => match reply.error {
                Some(error) => Err(ApiError::from_bus(error)),
                None => Ok(reply.body),
            },
            Err(sluice_core::bus::BusError::Timeout { .. }) => Err(ApiError::new(
                "MASTER-UNAVAILABLE",
                format!(
                    "the master did not answer {method} within {} s",
                    timeout.as_secs()
                ),
            )),
            Err(err) => Err(ApiError::new(
                "MASTER-UNAVAILABLE",
                format!("cannot reach the master for {method}: {err}"),
            )),
        }
    }

    async fn events(&self, args: &Map<String, Value>) -> Result<Value, ApiError> {
        let number = |name: &str| -> Result<u64, ApiError> {
            match args.get(name) {
                None => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    ApiError::invalid(format!("{name} must be an integer >= 0, not {v}"))
                }),
            }
        };
        let query = EventQuery {
            since_id: number("since_id")?,
            class_code: match args.get("class").and_then(Value::as_str) {
                Some(text) => class_code(text)?,
                None => 0,
            },
            event_code: match args.get("event").and_then(Value::as_str) {
                Some(text) => event_code(text)?,
                None => 0,
            },
            limit: u32::try_from(number("limit")?).unwrap_or(u32::MAX),
            wait_ms: u32::try_from(number("wait_ms")?).unwrap_or(u32::MAX),
        };
        let list = self.poll_events(query).await?;
        Ok(Value::Array(list.events.iter().map(event_json).collect()))
    }

    /// `omq.system.get-events`, waiting up to the query's `wait_ms` (at most
    /// [`MAX_EVENT_WAIT`]) for the first matching event: REST's `/system/events` and
    /// gRPC's `GetEvents` and `WatchEvents` poll with it.
    pub(crate) async fn poll_events(&self, mut query: EventQuery) -> Result<EventList, ApiError> {
        let wait = Duration::from_millis(u64::from(query.wait_ms)).min(MAX_EVENT_WAIT);
        query.wait_ms = wait.as_millis() as u32;
        let timeout = READ_TIMEOUT + wait;
        let reply = self
            .call(
                "omq.system.get-events",
                query.encode_to_vec(),
                timeout,
                sluice_core::now_ms() + timeout.as_millis() as i64,
            )
            .await?;
        EventList::decode(reply.as_slice()).map_err(|e| {
            ApiError::new(
                "INTERNAL-ERROR",
                format!("the master's events are malformed: {e}"),
            )
        })
    }

    /// A service method call from outside the system: `internal` methods are refused.
    async fn call_service(&self, mut args: Map<String, Value>) -> Result<Value, ApiError> {
        let call_args = match (args.remove("args"), args.remove("parse_args")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "give the method's arguments as args or as parse_args, not both",
                ))
            }
            (Some(value), None) => value,
            (None, Some(Value::String(text))) => format::from_yaml(&text).map_err(|e| {
                ApiError::invalid(format!("parse_args is not valid YAML or JSON: {e}"))
            })?,
            (None, Some(_)) => return Err(ApiError::invalid("parse_args must be text")),
            (None, None) => Value::Array(Vec::new()),
        };
        let call_args = match call_args {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut body = json!({
            "name": args.remove("name").unwrap_or(Value::Null),
            "method": args.remove("method").unwrap_or(Value::Null),
            "args": call_args,
            "external": true,
        });
        if let Some(version) = args.remove("version") {
            body["version"] = version;
        }
        let allowed = sluice_core::host_api::SERVICE_CALL_TIMEOUT;
        // The service answers TIMEOUT itself at the deadline, naming the method; the bus
        // waits a little longer so that answer arrives.
        let deadline_ms = sluice_core::now_ms() + allowed.as_millis() as i64;
        let reply = self
            .call(
                "omq.system.call-service",
                body.to_string().into_bytes(),
                allowed + Duration::from_secs(5),
                deadline_ms,
            )
            .await?;
        json_reply("omq.system.call-service", &reply)
    }
}

/// The route of a group that has this action.
fn select(
    scope: Scope,
    method: Method,
    path: &str,
    action: Option<&str>,
) -> Result<&'static Route, ApiError> {
    let candidates = routes::group(scope, method, path);
    if let Some(route) = candidates.iter().find(|r| r.action == action) {
        return Ok(route);
    }
    let actions: Vec<&str> = candidates.iter().filter_map(|r| r.action).collect();
    let shown = format!("{} {}{}", method.name(), scope.prefix(), path);
    Err(match action {
        None => ApiError::invalid(format!(
            "{shown} needs an action: {} (as ?action=NAME or as a last path segment)",
            actions.join(", ")
        )),
        Some(action) if actions.is_empty() => {
            ApiError::invalid(format!("{shown} takes no action (given {action:?})"))
        }
        Some(action) => ApiError::invalid(format!(
            "{shown} has no action {action:?}; its actions: {}",
            actions.join(", ")
        )),
    })
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            "PAYLOAD-TOO-LARGE",
            format!("the request body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(err) => Err(ApiError::new(
            "BAD-REQUEST",
            format!("cannot read the request body: {err}"),
        )),
    }
}

fn json_reply(verb: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            "INTERNAL-ERROR",
            format!("the reply to {verb} is not JSON: {e}"),
        )
    })
}

/// An event as Qorus shows it (`/system/events`, `/apievents`).
pub(crate) fn event_json(e: &sluice_proto::v1::Event) -> Value {
    json!({
        "id": e.id,
        "time": e.time_ms,
        "class": e.class_code,
        "classstr": e.class_name,
        "event": e.event_code,
        "eventstr": e.event_name,
        "severity": e.severity,
        "severitystr": e.severity_name,
        "caller": e.caller,
        "info": serde_json::from_slice::<Value>(&e.info_json).unwrap_or(Value::Null),
    })
}

/// An event class by name (`WORKFLOW`, any case) or code.
pub(crate) fn class_code(text: &str) -> Result<u32, ApiError> {
    if let Ok(code) = text.parse::<u32>() {
        return Ok(code);
    }
    EventCode::ALL
        .iter()
        .map(|e| e.class())
        .find(|c| c.name().eq_ignore_ascii_case(text))
        .map(|c| c.code())
        .ok_or_else(|| ApiError::invalid(format!("unknown event class {text:?}")))
}

/// An event by name (`USER_EVENT`, any case) or code.
pub(crate) fn event_code(text: &str) -> Result<u32, ApiError> {
    if let Ok(code) = text.parse::<u32>() {
        return Ok(code);
    }
    EventCode::ALL
        .iter()
        .find(|e| e.name().eq_ignore_ascii_case(text))
        .map(|e| e.code())
        .ok_or_else(|| ApiError::invalid(format!("unknown event {text:?}")))
}

/// One registry entry as JSON, as `/system/processes` and `omq.system.get-registry` show it.
pub(crate) fn process(entry: &RegistryEntry) -> Value {
    json!({
        "network_id": entry.network_id,
        "process_type": entry.process_type,
        "interfaces": entry.interfaces,
        "endpoints": entry.endpoints,
        "pid": entry.pid,
        "status": entry.status,
    })
}

/// One of the shapes `omq.system.get-status` is shown in.
pub fn status_view(view: StatusView, status: &SystemStatus) -> Value {
    let info = || {
        json!({
            "instance-key": status.instance_key,
            "omq-version": status.version,
            "session-id": status.session_id,
            "pid": status.master_pid,
            "host": status.host,
            "starttime": status.started_ms,
            "uptime": status.uptime_ms,
            "status": status.status,
        })
    };
    match view {
        StatusView::Info => info(),
        StatusView::System => {
            let mut value = info();
            value["processes"] = status.processes.iter().map(process).collect();
            value
        }
        StatusView::Processes => status.processes.iter().map(process).collect(),
        StatusView::Health => {
            let mut counts = Map::new();
            for entry in &status.processes {
                let n = counts
                    .get(&entry.status)
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                counts.insert(entry.status.clone(), Value::from(n + 1));
            }
            let problems: Vec<Value> = status
                .processes
                .iter()
                .filter(|e| e.status != "running")
                .map(|e| json!({"network_id": e.network_id, "status": e.status}))
                .collect();
            let health = if status.status != "running"
                || status.processes.iter().any(|e| e.status == "failed")
            {
                "RED"
            } else if !problems.is_empty() {
                "YELLOW"
            } else {
                "GREEN"
            };
            json!({
                "health": health,
                "status": status.status,
                "instance-key": status.instance_key,
                "processes": counts,
                "problems": problems,
            })
        }
    }
}
