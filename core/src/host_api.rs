//! The part of the system API that user code reaches the same way from a workflow step, a
//! service and a job: raising a user event, calling a service's method and creating a
//! workflow order (the runner's `raiseEvent`, `callService` and `createOrder` callbacks,
//! `docs/runner-protocol.md`). Each interface process's runner host serves its own APIs
//! (dynamic data, state data, ...) and hands these to [`HostApi::common`].
//!
//! It also raises the system events an interface process reports about itself
//! (`SERVICE_START`, `JOB_INSTANCE_STOP`, ...) through the master, which owns the event
//! sink and the audit trail.

use std::time::Duration;

use prost::Message;
use serde_json::Value;
use sluice_proto::v1::{Envelope, RaiseEvent, UserEvent};

use crate::bus::Client;
use crate::child::ChildContext;
use crate::events::{EventCode, Severity};
use crate::runner::CallbackError;
use crate::store::orders::NewOrder;
use crate::store::Store;

/// How long a call into the master (an event) may take.
const MASTER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `callService` waits for the method when the caller set no deadline; the master
/// and the service apply the same deadline, so the error names the real cause.
pub const SERVICE_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The JSON body of `omq.system.call-service`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServiceCall {
    /// The service's name.
    pub name: String,
    /// Empty or absent: the newest loaded version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub method: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
}

/// What one interface process offers its user code beside its own APIs.
#[derive(Clone)]
pub struct HostApi {
    pub store: Store,
    pub master: Client,
    /// The process's network id: the caller of the events it raises.
    pub caller: String,
}

fn refuse(err: &str, desc: impl Into<String>) -> CallbackError {
    CallbackError::new(err, desc)
}

/// The dict that `api` (`saveStateData`, ...) takes as its one argument.
pub fn dict_arg(args: Vec<Value>, api: &str) -> Result<Value, CallbackError> {
    match args.into_iter().next() {
        Some(data @ Value::Object(_)) => Ok(data),
        _ => Err(refuse("INVALID-ARGUMENT", format!("{api} takes a dict"))),
    }
}

impl HostApi {
    /// The API of the interface process `ctx` belongs to.
    pub fn new(ctx: &ChildContext, store: Store) -> Self {
        HostApi {
            store,
            master: ctx.master.clone(),
            caller: ctx.boot.network_id.clone(),
        }
    }

    /// [`HostApi::common`], with any other API refused as one `server` (e.g. "the job
    /// engine") does not have.
    pub async fn common_or_unknown(
        &self,
        api: &str,
        args: Vec<Value>,
        server: &str,
    ) -> Result<Value, CallbackError> {
        match self.common(api, args).await {
            Some(result) => result,
            None => Err(refuse(
                "UNKNOWN-API",
                format!("{server} has no API {api:?}"),
            )),
        }
    }

    /// Serves `raiseEvent`, `callService` and `createOrder`; `None` for any other API, which
    /// is the interface's own to serve (or refuse).
    pub async fn common(
        &self,
        api: &str,
        args: Vec<Value>,
    ) -> Option<Result<Value, CallbackError>> {
        Some(match api {
            "raiseEvent" => self.raise_user_event(args).await,
            "callService" => self.call_service(args).await,
            "createOrder" => self.create_order(args).await,
            _ => return None,
        })
    }

    /// `UserApi.raiseEvent(info, severity="INFO")`: a USER_EVENT in the master's sink.
    async fn raise_user_event(&self, args: Vec<Value>) -> Result<Value, CallbackError> {
        let mut args = args.into_iter();
        let info = args.next().unwrap_or(Value::Null);
        let severity = args
            .next()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "INFO".into());
        let event = UserEvent {
            severity,
            info_json: info.to_string().into_bytes(),
            caller: self.caller.clone(),
        };
        self.master_call("omq.system.raise-user-event", event.encode_to_vec())
            .await?;
        Ok(Value::Null)
    }

    /// `UserApi.callService(name, method, *args)`: through the master, which loads the
    /// service first when it is not running, and routes the call to its process.
    async fn call_service(&self, args: Vec<Value>) -> Result<Value, CallbackError> {
        let mut args = args.into_iter();
        let (Some(Value::String(name)), Some(Value::String(method))) = (args.next(), args.next())
        else {
            return Err(refuse(
                "INVALID-ARGUMENT",
                "callService takes the service name, the method name, then the method's arguments",
            ));
        };
        let call = ServiceCall {
            name,
            version: None,
            method,
            args: args.collect(),
        };
        let body = serde_json::to_vec(&call)
            .map_err(|e| refuse("INVALID-ARGUMENT", format!("cannot encode the call: {e}")))?;
        let request = Envelope {
            method: "omq.system.call-service".into(),
            deadline_ms: crate::now_ms() + SERVICE_CALL_TIMEOUT.as_millis() as i64,
            body,
            ..Default::default()
        };
        let reply = self
            .master
            .call(request, SERVICE_CALL_TIMEOUT + Duration::from_secs(1))
            .await
            .map_err(|e| refuse("SERVICE-CALL-ERROR", e.to_string()))?;
        if let Some(e) = reply.error {
            return Err(refuse(&e.code, e.description));
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            refuse(
                "SERVICE-CALL-ERROR",
                format!("the service's reply is not JSON: {e}"),
            )
        })
    }

    /// `UserApi.createOrder(name, data, version=None)`: `data` holds Qorus's createOrder
    /// keys (staticdata, dynamicdata, orderkeys, priority, scheduled, status, the unique
    /// keys). Written straight to the system database, committed before it returns.
    async fn create_order(&self, args: Vec<Value>) -> Result<Value, CallbackError> {
        let mut args = args.into_iter();
        let name = match args.next() {
            Some(Value::String(name)) => name,
            _ => {
                return Err(refuse(
                    "INVALID-ARGUMENT",
                    "createOrder takes the workflow name, then a dict of order data",
                ))
            }
        };
        let mut request = match args.next() {
            Some(Value::Object(map)) => map,
            Some(Value::Null) | None => Default::default(),
            Some(other) => {
                return Err(refuse(
                    "INVALID-ARGUMENT",
                    format!("createOrder's order data must be a dict, not {other}"),
                ))
            }
        };
        request.insert("name".into(), Value::String(name));
        if let Some(version) = args.next().filter(|v| !v.is_null()) {
            request.insert("version".into(), version);
        }
        let order: NewOrder = serde_json::from_value(Value::Object(request))
            .map_err(|e| refuse("ORDER-DATA-ERROR", e.to_string()))?;
        let id = self
            .store
            .create_order(&order)
            .await
            .map_err(|e| refuse(e.code(), e.to_string()))?;
        Ok(Value::from(id))
    }

    /// Raises a system event about this process's interface through the master. A master
    /// that cannot be reached is logged, not fatal: the event is lost, the work is not.
    pub async fn raise_event(&self, code: EventCode, severity: Severity, info: Value) {
        let event = RaiseEvent {
            event_code: code.code(),
            severity: severity.code(),
            info_json: info.to_string().into_bytes(),
        };
        if let Err(err) = self
            .master_call("omq.system.raise-event", event.encode_to_vec())
            .await
        {
            tracing::warn!(
                "cannot raise {} through the master: {}: {}",
                code.name(),
                err.err,
                err.desc
            );
        }
    }

    async fn master_call(&self, method: &str, body: Vec<u8>) -> Result<Vec<u8>, CallbackError> {
        let request = Envelope {
            method: method.into(),
            body,
            ..Default::default()
        };
        let reply = self
            .master
            .call(request, MASTER_CALL_TIMEOUT)
            .await
            .map_err(|e| refuse("MASTER-UNAVAILABLE", e.to_string()))?;
        match reply.error {
            Some(e) => Err(refuse(&e.code, e.description)),
            None => Ok(reply.body),
        }
    }
}
