//! The REST route table: every route the gateway serves, once. It drives the axum router
//! (`crate::rest`), the OpenAPI document (`GET /api/latest/openapi.json`) and the route
//! list of `docs/rest.md`; tests check that the three agree.
//!
//! Paths are relative to their scope: `/api/public` (no authentication) or `/api/latest`
//! (also served as `/api/v1` ... `/api/v7`). A route with an action is reached as
//! `PATH?action=ACTION` or, equivalently, `PATH/ACTION` (Qorus's convention); the OpenAPI
//! document lists the second form, which is a path of its own.

use serde_json::{json, Map, Value};

/// The HTTP methods routes use. `GET` never changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Put,
    Post,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }

    pub fn from_http(method: &axum::http::Method) -> Option<Method> {
        match *method {
            axum::http::Method::GET => Some(Method::Get),
            axum::http::Method::PUT => Some(Method::Put),
            axum::http::Method::POST => Some(Method::Post),
            _ => None,
        }
    }
}

/// Where a route lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `/api/public`: answered without authentication.
    Public,
    /// `/api/latest` and its aliases.
    Latest,
}

impl Scope {
    pub fn prefix(self) -> &'static str {
        match self {
            Scope::Public => "/api/public",
            Scope::Latest => "/api/latest",
        }
    }

    /// Every prefix the scope is served under.
    pub fn prefixes(self) -> &'static [&'static str] {
        match self {
            Scope::Public => &["/api/public"],
            Scope::Latest => LATEST_PREFIXES,
        }
    }
}

/// `/api/latest` and the versioned aliases Qorus clients use.
pub const LATEST_PREFIXES: &[&str] = &[
    "/api/latest",
    "/api/v7",
    "/api/v6",
    "/api/v5",
    "/api/v4",
    "/api/v3",
    "/api/v2",
    "/api/v1",
];

/// How an argument is written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
    /// Any JSON value; in the query string, JSON text (else the text as a string).
    Any,
    /// A JSON object; in the query string, JSON or YAML text.
    Object,
    /// A list of strings: an array, or comma-separated text (the query may repeat it).
    StrList,
    /// A list of integers: an array, or comma-separated text (the query may repeat it).
    IntList,
    /// A time: ms since the epoch, RFC 3339 text, or null.
    Time,
    /// A name, or a number that names the thing by its id under the given key instead.
    NameOrId(&'static str),
}

impl Kind {
    /// The OpenAPI schema of the kind.
    fn schema(self) -> Value {
        match self {
            Kind::Str => json!({"type": "string"}),
            Kind::Int => json!({"type": "integer", "format": "int64"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Any => json!({}),
            Kind::Object => json!({"type": "object"}),
            Kind::StrList => json!({"type": "array", "items": {"type": "string"}}),
            Kind::IntList => {
                json!({"type": "array", "items": {"type": "integer", "format": "int64"}})
            }
            Kind::Time => json!({"oneOf": [
                {"type": "integer", "format": "int64", "description": "ms since the epoch"},
                {"type": "string", "format": "date-time"}
            ], "nullable": true}),
            Kind::NameOrId(_) => json!({"type": "string"}),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Str | Kind::NameOrId(_) => "string",
            Kind::Int => "integer",
            Kind::Bool => "bool",
            Kind::Any => "any JSON value",
            Kind::Object => "object",
            Kind::StrList => "list of strings",
            Kind::IntList => "list of integers",
            Kind::Time => "time",
        }
    }
}

/// Where an argument comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// A `{name}` segment of the path.
    Path,
    /// The query string or the body (the body's value wins).
    Args,
}

/// One argument of a route; its name is the key in the master verb's JSON body.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub location: In,
    pub required: bool,
    pub description: &'static str,
}

const fn path(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        location: In::Path,
        required: true,
        description,
    }
}

const fn arg(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        location: In::Args,
        required: false,
        description,
    }
}

const fn required(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        location: In::Args,
        required: true,
        description,
    }
}

/// The views of `omq.system.get-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusView {
    Info,
    System,
    Health,
    Processes,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A JSON verb of the master; the route's arguments are its body, its reply the
    /// route's reply.
    Verb(&'static str),
    /// `omq.system.get-status` (protobuf `SystemStatus`), shown as JSON.
    Status(StatusView),
    /// `omq.system.get-events` (protobuf `EventQuery` / `EventList`).
    Events,
    /// `omq.system.call-service` as an external caller.
    CallService,
    /// The OpenAPI document, made from this table.
    OpenApi,
    /// A WebSocket token, made and held by the gateway itself (`crate::ws::token`).
    WsToken,
    /// A JSON verb whose body gets one more boolean field: `(verb, field, value)`
    /// (`?action=enable` is `set-workflow-enabled` with `"enabled": true`).
    VerbWith(&'static str, &'static str, bool),
    /// A protobuf `InterfaceRef` verb on a workflow (`start-interface`, ...).
    Workflow(WorkflowAction),
    /// `omq.system.shutdown` (no body either way).
    Shutdown,
    /// `omq.system.exec-synchronous`, with a deadline the master waits out at most.
    ExecSynchronous,
    /// A single-order JSON verb run once per id of `ids`, each with its own result.
    Bulk(&'static str),
    /// The last lines of a log file, read by the gateway (`crate::ws::log` finds it).
    Log,
}

/// What `PUT /workflows/NAME?action=start|stop|reset` asks the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowAction {
    Start,
    Stop,
    Reset,
}

impl WorkflowAction {
    pub fn verb(self) -> &'static str {
        match self {
            WorkflowAction::Start => "omq.system.start-interface",
            WorkflowAction::Stop => "omq.system.stop-interface",
            WorkflowAction::Reset => "omq.system.reset-workflow",
        }
    }
}

impl Handler {
    /// The master verb behind the route, if any.
    pub fn verb(self) -> Option<&'static str> {
        match self {
            Handler::Verb(verb) => Some(verb),
            Handler::Status(_) => Some("omq.system.get-status"),
            Handler::Events => Some("omq.system.get-events"),
            Handler::CallService => Some("omq.system.call-service"),
            Handler::VerbWith(verb, ..) | Handler::Bulk(verb) => Some(verb),
            Handler::Workflow(action) => Some(action.verb()),
            Handler::Shutdown => Some("omq.system.shutdown"),
            Handler::ExecSynchronous => Some("omq.system.exec-synchronous"),
            Handler::OpenApi | Handler::WsToken | Handler::Log => None,
        }
    }
}

/// One REST route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    pub scope: Scope,
    /// Relative to the scope, axum's syntax: `/services/{name}`.
    pub path: &'static str,
    /// `?action=...` (or the last path segment).
    pub action: Option<&'static str>,
    pub handler: Handler,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// What a successful reply holds.
    pub reply: &'static str,
    /// Error codes this route may give besides the general ones (docs/rest.md).
    pub errors: &'static [&'static str],
    /// 201 Created instead of 200.
    pub created: bool,
}

const R: Route = Route {
    method: Method::Get,
    scope: Scope::Latest,
    path: "",
    action: None,
    handler: Handler::OpenApi,
    summary: "",
    params: &[],
    reply: "",
    errors: &[],
    created: false,
};

impl Route {
    /// The route's path under its scope's main prefix, e.g. `/api/latest/services/{name}`
    /// (a catch-all `{*source}` shown as `{source}`, as OpenAPI writes parameters).
    pub fn full_path(&self) -> String {
        format!("{}{}", self.scope.prefix(), self.path.replace("{*", "{"))
    }

    /// The path that names the route on its own: the action as a last segment.
    pub fn documented_path(&self) -> String {
        match self.action {
            Some(action) => format!("{}/{action}", self.full_path()),
            None => self.full_path(),
        }
    }

    /// How the route is written in docs: `PUT /api/latest/orders/{id}?action=retry`.
    pub fn title(&self) -> String {
        match self.action {
            Some(action) => format!(
                "{} {}?action={action}",
                self.method.name(),
                self.full_path()
            ),
            None => format!("{} {}", self.method.name(), self.full_path()),
        }
    }

    pub fn param(&self, name: &str) -> Option<&'static Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

const ORDER: &[Param] = &[path("workflow_instanceid", Kind::Int, "the order's id")];
const SERVICE: &[Param] = &[
    path("name", Kind::Str, "the service's name"),
    arg(
        "version",
        Kind::Str,
        "the service's version (default: the running one, else the newest loaded)",
    ),
];
const JOB: &[Param] = &[
    path(
        "name",
        Kind::NameOrId("jobid"),
        "the job's name, or its jobid (a number)",
    ),
    arg(
        "version",
        Kind::Str,
        "the job's version (default: the newest loaded)",
    ),
];

/// A new order's arguments: `createOrder` and `execSynchronous`.
const CREATE_ORDER: &[Param] = &[
    path("name", Kind::Str, "the workflow's name"),
    arg(
        "version",
        Kind::Str,
        "the workflow's version (default: the newest loaded)",
    ),
    required("staticdata", Kind::Object, "the order's input"),
    arg(
        "dynamicdata",
        Kind::Object,
        "initial dynamic data (default `{}`)",
    ),
    arg(
        "orderkeys",
        Kind::Object,
        "searchable keys: name -> string, number or list of them",
    ),
    arg("priority", Kind::Int, "0 (runs first) to 999; default 500"),
    arg(
        "scheduled",
        Kind::Time,
        "not before this time: a future time makes the order SCHEDULED",
    ),
    arg("status", Kind::Str, "`READY` (default) or `BLOCKED`"),
    arg(
        "parent_workflow_instanceid",
        Kind::Int,
        "the parent order (must exist)",
    ),
    arg("external_order_instanceid", Kind::Str, "an external id"),
    arg(
        "global_unique_key",
        Kind::Object,
        "name -> value, unique among all orders",
    ),
    arg(
        "workflow_specific_unique_key",
        Kind::Object,
        "name -> value, unique among all versions of the workflow",
    ),
    arg(
        "workflow_unique_key",
        Kind::Object,
        "name -> value, unique among the orders of this version",
    ),
];
const WORKFLOW: &[Param] = &[
    path(
        "name",
        Kind::NameOrId("workflowid"),
        "the workflow's name, or its workflowid (a number)",
    ),
    arg(
        "version",
        Kind::Str,
        "the workflow's version (default: the newest loaded)",
    ),
];
const BULK: &[Param] = &[required(
    "ids",
    Kind::IntList,
    "the orders' ids: `1,2,3`, a repeated parameter or a list (at most 1000)",
)];

/// Every route, in the order docs/rest.md lists them.
pub static ROUTES: &[Route] = &[
    // ---- system
    Route {
        scope: Scope::Public,
        path: "/info",
        handler: Handler::Status(StatusView::Info),
        summary: "What this instance is: key, version, master pid and host, uptime. No \
                  authentication needed.",
        reply: "`{\"instance-key\", \"omq-version\", \"session-id\", \"pid\", \"host\", \
                \"starttime\", \"uptime\", \"status\"}`; times in ms",
        ..R
    },
    Route {
        path: "/system",
        handler: Handler::Status(StatusView::System),
        summary: "The system's status: what `/api/public/info` says, and every process of \
                  the node.",
        reply: "the info object plus `\"processes\"`: a list as `/system/processes` gives",
        ..R
    },
    Route {
        path: "/system/health",
        handler: Handler::Status(StatusView::Health),
        summary: "The system's health: `GREEN` when the master runs and every process is \
                  running, `YELLOW` while one starts, restarts or stops, `RED` while the \
                  master shuts down or a process failed.",
        reply: "`{\"health\", \"status\", \"instance-key\", \"processes\": {STATUS: count}, \
                \"problems\": [{\"network_id\", \"status\"}]}`",
        ..R
    },
    Route {
        path: "/system/processes",
        handler: Handler::Status(StatusView::Processes),
        summary: "The node's processes: the master's registry.",
        reply: "a list of `{\"network_id\", \"process_type\", \"interfaces\", \"endpoints\", \
                \"pid\", \"status\"}`",
        ..R
    },
    Route {
        path: "/system/events",
        handler: Handler::Events,
        summary: "System events kept by the master, oldest first; a long poll with \
                  `wait_ms`.",
        params: &[
            arg(
                "since_id",
                Kind::Int,
                "only events with a greater id (the greatest id seen so far)",
            ),
            arg(
                "class",
                Kind::Str,
                "only this class: name (`WORKFLOW`) or code",
            ),
            arg(
                "event",
                Kind::Str,
                "only this event: name (`SYSTEM_STARTUP`) or code",
            ),
            arg(
                "limit",
                Kind::Int,
                "at most this many (default and most: 1000)",
            ),
            arg(
                "wait_ms",
                Kind::Int,
                "when none matches yet, wait up to this long (at most 60000) for one",
            ),
        ],
        reply: "a list of `{\"id\", \"time\", \"class\", \"classstr\", \"event\", \
                \"eventstr\", \"severity\", \"severitystr\", \"caller\", \"info\"}`",
        ..R
    },
    Route {
        path: "/system",
        action: Some("wstoken"),
        handler: Handler::WsToken,
        summary: "A token for opening a WebSocket (`/remote-command` needs one; see \
                  docs/websockets.md): random, good for one socket and for 60 s. The gateway \
                  keeps only its SHA-256 hash. With `qorus.rbac-security` on this route needs \
                  authentication like every other. Qorus's form; it changes nothing, so it \
                  is a `GET`.",
        reply: "the token, a JSON string (64 hex digits)",
        ..R
    },
    Route {
        path: "/system/options",
        handler: Handler::Verb("omq.system.get-options"),
        summary: "Every option with the value the master read at startup (secrets redacted: \
                  a database password shows as `***`), its type, default and description.",
        reply: "a list of `{\"name\", \"value\", \"type\", \"default\", \"startup_only\", \
                \"description\"}`, names as `qorus.NAME`",
        ..R
    },
    Route {
        path: "/system/options/{name}",
        handler: Handler::Verb("omq.system.get-options"),
        summary: "One option, as the list shows it.",
        params: &[path(
            "name",
            Kind::Str,
            "the option: `qorus.NAME` or `NAME`",
        )],
        reply: "`{\"name\", \"value\", \"type\", \"default\", \"startup_only\", \
                \"description\"}`",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/system/options/{name}",
        action: Some("set"),
        handler: Handler::Verb("omq.system.set-option"),
        summary: "Changes an option while Sluice runs. An option not marked startup-only \
                  takes effect at once in the master and within a heartbeat (a second) in \
                  every running process, and lasts until the master stops; the options file \
                  is never written. A startup-only option is 409 `OPTION-ERROR`, saying \
                  where its value goes; an unknown option or a bad value is 400 \
                  `INVALID-ARGUMENT` with the parser's message.",
        params: &[
            path("name", Kind::Str, "the option: `qorus.NAME` or `NAME`"),
            required(
                "value",
                Kind::Str,
                "the new value, as it would be written in the options file",
            ),
        ],
        reply: "the option as `GET` now shows it: `{\"name\", \"value\", \"type\", \
                \"default\", \"startup_only\", \"description\"}`",
        errors: &["OPTION-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/system",
        action: Some("shutdown"),
        handler: Handler::Shutdown,
        summary: "Shuts the node down, as SIGTERM to the master would: the reply goes out \
                  first, then the master stops every process (this gateway last but one) and \
                  exits with status 0.",
        reply: "`{\"shutdown\": true, \"message\"}`",
        ..R
    },
    Route {
        path: "/system/logs/{*source}",
        handler: Handler::Log,
        summary: "The last lines of a process's log file; `/log/SOURCE` streams the same file \
                  over a WebSocket (docs/websockets.md). The file is found as that socket \
                  finds it: always in the log directory, named from what the master knows.",
        params: &[
            path(
                "source",
                Kind::Str,
                "`system`, `http`, `workflows/NAME`, `services/NAME` or `jobs/NAME` (NAME or \
                 the interface's id; the `/` is written as it is)",
            ),
            arg(
                "lines",
                Kind::Int,
                "how many of the last lines (default 100, at most 10000)",
            ),
        ],
        reply: "a list of the lines (text, without their newlines), oldest first; `[]` while \
                the file does not exist",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        path: "/openapi.json",
        handler: Handler::OpenApi,
        summary: "This API as an OpenAPI 3 document, made from the gateway's route table.",
        reply: "the OpenAPI document (always JSON)",
        ..R
    },
    // ---- workflows and orders
    Route {
        path: "/workflows",
        handler: Handler::Verb("omq.system.list-workflows"),
        summary: "Every loaded workflow (all versions) with its process status and its orders \
                  counted by status.",
        reply: "a list of `{\"workflowid\", \"name\", \"version\", \"desc\", \"autostart\", \
                \"max_instances\", \"enabled\", \"blocked\", \"keylist\", \"groups\", \
                \"status\", \"network_id\", \"pid\", \"READY\", \"COMPLETE\", ..., \
                \"TOTAL\"}` (`status`: `stopped` or the process's; `blocked`: in a disabled \
                group)",
        ..R
    },
    Route {
        path: "/workflows/{name}",
        handler: Handler::Verb("omq.system.get-workflow"),
        summary: "One workflow: as listed, with its steps and declared errors.",
        params: WORKFLOW,
        reply: "the workflow with `steps` (`stepid`, `name`, `version`, `steptype`, \
                `depends_on`: stepids) and `errors` (`error`, `description`, `severity`, \
                `status`, `business_error`, `retry_delay_secs`, `level`)",
        errors: &["UNKNOWN-WORKFLOW"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("start"),
        handler: Handler::Workflow(WorkflowAction::Start),
        summary: "Starts the workflow's process (it must be enabled and in no disabled group); \
                  one that runs already goes on.",
        params: WORKFLOW,
        reply: "`{\"network_id\", \"status\": \"starting\"}`",
        errors: &["NOT-FOUND", "STATUS-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("stop"),
        handler: Handler::Workflow(WorkflowAction::Stop),
        summary: "Stops the workflow's process and waits until it has ended; its orders wait \
                  for the next start.",
        params: WORKFLOW,
        reply: "`{\"network_id\", \"status\": \"stopped\"}`",
        errors: &["NOT-FOUND", "STATUS-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("reset"),
        handler: Handler::Workflow(WorkflowAction::Reset),
        summary: "Makes the running workflow process load its newest definition and step code.",
        params: WORKFLOW,
        reply: "`{\"message\"}`: what was loaded, or that it is not running",
        errors: &["NOT-FOUND", "RESET-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("enable"),
        handler: Handler::VerbWith("omq.system.set-workflow-enabled", "enabled", true),
        summary: "Enables a workflow: it takes orders again, and its process starts when its \
                  autostart is above 0 and no group of it is disabled.",
        params: WORKFLOW,
        reply: WORKFLOW_ENABLED,
        errors: &["UNKNOWN-WORKFLOW"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("disable"),
        handler: Handler::VerbWith("omq.system.set-workflow-enabled", "enabled", false),
        summary: "Disables a workflow: it takes no new orders and its process stops.",
        params: WORKFLOW,
        reply: WORKFLOW_ENABLED,
        errors: &["UNKNOWN-WORKFLOW"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/workflows/{name}",
        action: Some("setAutostart"),
        handler: Handler::Verb("omq.system.set-workflow-autostart"),
        summary: "Sets a workflow's autostart: 0 stops its process and keeps it from starting \
                  with the system; above 0 starts it (when enabled and in no disabled group).",
        params: &[
            WORKFLOW[0],
            WORKFLOW[1],
            required(
                "autostart",
                Kind::Int,
                "0, or how many instances start (1 or more)",
            ),
        ],
        reply: "`{\"workflowid\", \"name\", \"version\", \"autostart\", \"changed\", \
                \"process\"}`",
        errors: &["UNKNOWN-WORKFLOW"],
        ..R
    },
    Route {
        method: Method::Post,
        path: "/workflows/{name}",
        action: Some("execSynchronous"),
        handler: Handler::ExecSynchronous,
        summary: "Creates an order and waits (up to 60 s) until it is COMPLETE, ERROR, CANCELED \
                  or BLOCKED.",
        params: CREATE_ORDER,
        reply: "the order as `GET /api/latest/orders/{workflow_instanceid}` shows it; still \
                running after 60 s: 409 `TIMEOUT` naming the order, which goes on",
        errors: &[
            "UNKNOWN-WORKFLOW",
            "ORDER-DATA-ERROR",
            "ORDER-KEY-ERROR",
            "DUPLICATE-ORDER-KEY",
            "STATUS-ERROR",
            "TIMEOUT",
        ],
        ..R
    },
    Route {
        method: Method::Post,
        path: "/workflows/{name}",
        action: Some("createOrder"),
        handler: Handler::Verb("omq.system.create-order"),
        summary: "Creates an order of the workflow.",
        params: CREATE_ORDER,
        reply: "`{\"workflow_instanceid\": N}` with status 201",
        errors: &[
            "UNKNOWN-WORKFLOW",
            "ORDER-DATA-ERROR",
            "ORDER-KEY-ERROR",
            "DUPLICATE-ORDER-KEY",
            "STATUS-ERROR",
        ],
        created: true,
        ..R
    },
    Route {
        path: "/orders",
        handler: Handler::Verb("omq.system.search-orders"),
        summary: "Searches orders, newest first.",
        params: &[
            arg("name", Kind::Str, "the workflow's name"),
            arg("version", Kind::Str, "the workflow's version (with `name`)"),
            arg(
                "status",
                Kind::StrList,
                "statuses, names or letters (`ERROR,RETRY` or `E,R`)",
            ),
            arg("keyname", Kind::Str, "orders with this key ..."),
            arg("keyvalue", Kind::Str, "... of this value (with `keyname`)"),
            arg("mindate", Kind::Time, "created at or after"),
            arg("maxdate", Kind::Time, "created at or before"),
            arg(
                "limit",
                Kind::Int,
                "at most this many (default 100, at most 10000)",
            ),
            arg("offset", Kind::Int, "skip this many"),
        ],
        reply: "a list of order summaries (`workflow_instanceid`, `name`, `version`, \
                `workflowstatus`, `priority`, `created`, ...)",
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders",
        action: Some("retry"),
        handler: Handler::Bulk("omq.system.retry-workflow-instance"),
        summary:
            "Retries several orders, each as `PUT /orders/{workflow_instanceid}?action=retry`.",
        params: BULK,
        reply: BULK_REPLY,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders",
        action: Some("cancel"),
        handler: Handler::Bulk("omq.system.cancel-workflow-instance"),
        summary: "Cancels several orders, each as `?action=cancel` on the order.",
        params: BULK,
        reply: BULK_REPLY,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders",
        action: Some("uncancel"),
        handler: Handler::Bulk("omq.system.uncancel-workflow-instance"),
        summary: "Returns several CANCELED orders to the status each had.",
        params: BULK,
        reply: BULK_REPLY,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders",
        action: Some("block"),
        handler: Handler::Bulk("omq.system.block-workflow-instance"),
        summary: "Blocks several orders, each as `?action=block` on the order.",
        params: BULK,
        reply: BULK_REPLY,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders",
        action: Some("unblock"),
        handler: Handler::Bulk("omq.system.unblock-workflow-instance"),
        summary: "Returns several BLOCKED orders to the status each had.",
        params: BULK,
        reply: BULK_REPLY,
        ..R
    },
    Route {
        path: "/orders/{workflow_instanceid}",
        handler: Handler::Verb("omq.system.get-order-info"),
        summary: "One order with its data, keys, steps, errors and notes.",
        params: ORDER,
        reply: "the order (see docs/cluster-api.md, `get-order-info`)",
        errors: &["WORKFLOW-ORDER-NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("retry"),
        handler: Handler::Verb("omq.system.retry-workflow-instance"),
        summary: "Retries an order in ERROR (or RETRY) now.",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("cancel"),
        handler: Handler::Verb("omq.system.cancel-workflow-instance"),
        summary: "Cancels an order.",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("uncancel"),
        handler: Handler::Verb("omq.system.uncancel-workflow-instance"),
        summary: "Returns a CANCELED order to the status it had.",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("block"),
        handler: Handler::Verb("omq.system.block-workflow-instance"),
        summary: "Blocks an order: it does not run until unblocked.",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("unblock"),
        handler: Handler::Verb("omq.system.unblock-workflow-instance"),
        summary: "Returns a BLOCKED order to the status it had.",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("setError"),
        handler: Handler::Verb("omq.system.set-workflow-instance-error"),
        summary: "Sets an order to ERROR (an operator takes it over).",
        params: ORDER,
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("reschedule"),
        handler: Handler::Verb("omq.system.reschedule-order"),
        summary: "Changes when an order may run.",
        params: &[
            ORDER[0],
            arg(
                "scheduled",
                Kind::Time,
                "not before this time; null or absent: as soon as it can",
            ),
        ],
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("setPriority"),
        handler: Handler::Verb("omq.system.set-order-priority"),
        summary: "Changes an order's priority.",
        params: &[
            ORDER[0],
            required("priority", Kind::Int, "0 (runs first) to 999"),
        ],
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("skipStep"),
        handler: Handler::Verb("omq.system.skip-step"),
        summary: "Marks a step of an order as skipped (COMPLETE without running it).",
        params: &[
            ORDER[0],
            required("stepid", Kind::Int, "the step (from the order's `steps`)"),
            arg("ind", Kind::Int, "the array index (default 0)"),
        ],
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("dynamicData"),
        handler: Handler::Verb("omq.system.update-dynamic-data"),
        summary: "Merges into an order's dynamic data (a null value deletes its key).",
        params: &[
            ORDER[0],
            required("data", Kind::Object, "the keys to set (null: delete)"),
        ],
        reply: ORDER_STATUS,
        errors: ORDER_ERRORS,
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("updateKeys"),
        handler: Handler::Verb("omq.system.set-order-keys"),
        summary: "Sets an order's searchable keys; each named key gets exactly the values \
                  given.",
        params: &[
            ORDER[0],
            required(
                "orderkeys",
                Kind::Object,
                "name -> value or list (an empty list removes the key)",
            ),
        ],
        reply: ORDER_STATUS,
        errors: &[
            "WORKFLOW-ORDER-NOT-FOUND",
            "ORDER-KEY-ERROR",
            "STATUS-ERROR",
        ],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/orders/{workflow_instanceid}",
        action: Some("notes"),
        handler: Handler::Verb("omq.system.add-order-note"),
        summary: "Adds a note to an order.",
        params: &[ORDER[0], required("note", Kind::Str, "the note's text")],
        reply: "`{\"workflow_instanceid\", \"noteid\"}`",
        errors: &["WORKFLOW-ORDER-NOT-FOUND"],
        ..R
    },
    // ---- services
    Route {
        path: "/services",
        handler: Handler::Verb("omq.system.list-services"),
        summary: "Every loaded service with its status (`unloaded`, `loaded`, `running`, \
                  ...).",
        reply: "a list of services",
        ..R
    },
    Route {
        path: "/services/{name}",
        handler: Handler::Verb("omq.system.get-service"),
        summary: "One service: its methods (lock, internal), process and state data.",
        params: SERVICE,
        reply: "the service",
        errors: &["SERVICE-NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/services/{name}",
        action: Some("load"),
        handler: Handler::Verb("omq.system.load-service"),
        summary: "Loads a service (starts its process) and waits until it serves.",
        params: SERVICE,
        reply: "`{\"status\": \"loaded\", \"already\", \"network_id\"}`",
        errors: &["SERVICE-NOT-FOUND", "SERVICE-LOAD-ERROR", "STATUS-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/services/{name}",
        action: Some("unload"),
        handler: Handler::Verb("omq.system.unload-service"),
        summary: "Unloads a service and waits until its process has ended.",
        params: SERVICE,
        reply: "`{\"status\": \"unloaded\", \"network_id\"}`",
        errors: &["SERVICE-NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/services/{name}",
        action: Some("reset"),
        handler: Handler::Verb("omq.system.reset-service"),
        summary: "Loads the newest code into a loaded service without failing a call.",
        params: SERVICE,
        reply: "`{\"reset\", \"message\"}`",
        errors: &["SERVICE-NOT-FOUND", "RESET-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/services/{name}/{method}",
        action: Some("call"),
        handler: Handler::CallService,
        summary: "Calls a service method (loading the service first if needed) and returns \
                  its value. `internal` methods cannot be called this way.",
        params: &[
            SERVICE[0],
            path("method", Kind::Str, "the method's name"),
            SERVICE[1],
            arg(
                "args",
                Kind::Any,
                "the arguments: a list, or one value for a single argument",
            ),
            arg(
                "parse_args",
                Kind::Str,
                "instead of `args`: text parsed as YAML (or JSON) giving the arguments",
            ),
        ],
        reply: "the method's return value; an exception is 409 with `{\"err\": TYPE, \
                \"desc\": MESSAGE, \"info\": {\"type\", \"message\", \"traceback\", \
                \"info\"}}`",
        errors: &[
            "SERVICE-NOT-FOUND",
            "UNKNOWN-METHOD",
            "AUTHORIZATION-ERROR",
            "STATUS-ERROR",
            "SERVICE-LOAD-ERROR",
            "TIMEOUT",
            "SERVICE-ERROR",
        ],
        ..R
    },
    // ---- jobs
    Route {
        path: "/jobs",
        handler: Handler::Verb("omq.system.list-jobs"),
        summary: "Every loaded job with its schedule, last and next run and process status.",
        reply: "a list of jobs (see docs/jobs.md)",
        ..R
    },
    Route {
        path: "/jobs/{name}",
        handler: Handler::Verb("omq.system.get-job"),
        summary: "One job and its 20 newest runs.",
        params: JOB,
        reply: "the job with `class_name`, `code_hash` and `instances`",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        path: "/jobs/{name}/instances",
        handler: Handler::Verb("omq.system.get-job-instances"),
        summary: "A job's runs, newest first.",
        params: &[
            JOB[0],
            JOB[1],
            arg(
                "limit",
                Kind::Int,
                "at most this many (default 100, at most 10000)",
            ),
            arg(
                "status",
                Kind::Str,
                "statuses, names or letters, comma-separated",
            ),
        ],
        reply: "a list of job instances",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/jobs/{name}",
        action: Some("run"),
        handler: Handler::Verb("omq.system.run-job"),
        summary: "Runs a job now and waits for the run to end (up to the request timeout).",
        params: JOB,
        reply: "`{\"job_instanceid\", \"status\", \"jobstatus\"[, \"error\", \
                \"error_description\"]}`",
        errors: &["NOT-FOUND", "STATUS-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/jobs/{name}",
        action: Some("setActive"),
        handler: Handler::Verb("omq.system.set-job-active"),
        summary: "Activates (starts) or deactivates (stops) a job.",
        params: &[
            JOB[0],
            JOB[1],
            required("active", Kind::Bool, "true to activate"),
        ],
        reply: "`{\"jobid\", \"name\", \"version\", \"active\", \"changed\", \"process\"}`",
        errors: &["NOT-FOUND", "STATUS-ERROR"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/jobs/{name}",
        action: Some("schedule"),
        handler: Handler::Verb("omq.system.schedule-job"),
        summary: "Changes a job's schedule: a cron line or a period.",
        params: &[
            JOB[0],
            JOB[1],
            arg("schedule", Kind::Str, "`M H D Mon DOW`"),
            arg(
                "recurring",
                Kind::Int,
                "instead of `schedule`: a period in seconds",
            ),
        ],
        reply: "`{\"jobid\", \"name\", \"version\", \"schedule\", \"recurring\", \
                \"next_trigger\"}`",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/jobs/{name}",
        action: Some("setExpiry"),
        handler: Handler::Verb("omq.system.set-job-expiry"),
        summary: "Sets or clears a job's expiry date.",
        params: &[
            JOB[0],
            JOB[1],
            required(
                "expiry_date",
                Kind::Time,
                "ms since the epoch, RFC 3339 text, `now`, or null (never expires)",
            ),
        ],
        reply: "`{\"jobid\", \"name\", \"version\", \"expiry_date\", \"process_told\"}`",
        errors: &["NOT-FOUND"],
        ..R
    },
    Route {
        method: Method::Put,
        path: "/jobs/{name}",
        action: Some("reset"),
        handler: Handler::Verb("omq.system.reset-job"),
        summary: "Makes a running job load its newest definition and code.",
        params: JOB,
        reply: "`{\"jobid\", \"name\", \"version\", \"reset\", \"message\", \"loaded\"}`",
        errors: &["NOT-FOUND"],
        ..R
    },
    // ---- interface groups
    Route {
        path: "/groups",
        handler: Handler::Verb("omq.system.list-groups"),
        summary: "Interface groups with `enabled` and their members.",
        reply: "a list of groups",
        ..R
    },
    Route {
        method: Method::Put,
        path: "/groups/{group}",
        action: Some("setStatus"),
        handler: Handler::Verb("omq.system.set-group-enabled"),
        summary: "Enables or disables a group: disabling stops its running members, \
                  enabling starts those that start with the system.",
        params: &[
            path("group", Kind::Str, "the group's name"),
            required("enabled", Kind::Bool, "true to enable"),
        ],
        reply: "`{\"changed\", \"stopped\": [network ids], \"started\": [...]}`",
        errors: &["GROUP-NOT-FOUND"],
        ..R
    },
];

const ORDER_STATUS: &str = "`{\"workflow_instanceid\", \"workflowstatus\", \
                            \"workflowstatus_code\", \"previous_workflowstatus\"}`";
const ORDER_ERRORS: &[&str] = &["WORKFLOW-ORDER-NOT-FOUND", "STATUS-ERROR"];
const WORKFLOW_ENABLED: &str = "`{\"workflowid\", \"name\", \"version\", \"enabled\", \
                                \"changed\", \"process\"}` (`process`: what became of it)";
const BULK_REPLY: &str = "a list in the order of `ids`: `{\"workflow_instanceid\", \"result\": \
                          {...the single action's reply}}`, or `{\"workflow_instanceid\", \
                          \"err\", \"desc\"}` for an order the action failed on; 200 even when \
                          some failed";

/// The routes of one scope, method and path, told apart by their action.
pub fn group(scope: Scope, method: Method, path: &str) -> Vec<&'static Route> {
    ROUTES
        .iter()
        .filter(|r| r.scope == scope && r.method == method && r.path == path)
        .collect()
}

/// Splits a request path into its scope and the path under it.
pub fn split_scope(full: &str) -> Option<(Scope, &str)> {
    [Scope::Public, Scope::Latest]
        .into_iter()
        .find_map(|scope| {
            scope.prefixes().iter().find_map(|prefix| {
                let rest = full.strip_prefix(prefix)?;
                (rest.is_empty() || rest.starts_with('/')).then_some((scope, rest))
            })
        })
}

/// Whether a relative request path fits a route pattern (`{x}` fits one segment, a last
/// `{*x}` the rest of the path).
pub fn fits(pattern: &str, path: &str) -> bool {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with("{*") => {
                return !s.is_empty() && pattern_segments.next().is_none()
            }
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                if s.is_empty() {
                    return false;
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// Qorus's `PATH/ACTION` form: when the last segment of `full` is an action of a route
/// (this method) whose pattern fits the rest, the path without it and the action.
pub fn action_suffix(method: Method, full: &str) -> Option<(String, &'static str)> {
    let (scope, rel) = split_scope(full)?;
    let (parent, last) = rel.rsplit_once('/')?;
    let route = ROUTES.iter().find(|r| {
        r.scope == scope && r.method == method && r.action == Some(last) && fits(r.path, parent)
    })?;
    let prefix = &full[..full.len() - rel.len()];
    Some((
        format!("{prefix}{parent}"),
        route.action.unwrap_or_default(),
    ))
}

/// The OpenAPI 3 document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.documented_path())
            .or_insert_with(|| json!({}));
        entry[route.method.name().to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice REST API",
            "version": sluice_core::VERSION,
            "description": "The system API of a Sluice node over HTTP, as Qorus's REST API. \
                Every `/api/latest` path is also served under `/api/v1` ... `/api/v7`. A \
                route with an action is `PATH/ACTION` (listed here) or `PATH?action=ACTION`. \
                Arguments go in the query string or in the body (a JSON object, or YAML with \
                `Content-Type: application/x-yaml`); replies are JSON, or YAML when `Accept` \
                asks for it. Errors are `{\"err\": CODE, \"desc\": TEXT}`.",
        },
        "paths": Value::Object(paths),
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["err", "desc"],
                    "properties": {
                        "err": {"type": "string", "description": "the error code"},
                        "desc": {"type": "string"},
                        "info": {"description": "details: a service method's exception \
                                                 {type, message, traceback, info}"}
                    }
                }
            }
        }
    })
}

fn operation(route: &Route) -> Value {
    let mut parameters = Vec::new();
    let mut properties = Map::new();
    let mut required_args = Vec::new();
    for param in route.params {
        match param.location {
            In::Path => parameters.push(json!({
                "name": param.name,
                "in": "path",
                "required": true,
                "description": param.description,
                "schema": param.kind.schema(),
            })),
            In::Args => {
                parameters.push(json!({
                    "name": param.name,
                    "in": "query",
                    "required": false,
                    "description": param.description,
                    "schema": param.kind.schema(),
                }));
                let mut schema = param.kind.schema();
                schema["description"] = json!(param.description);
                properties.insert(param.name.to_string(), schema);
                if param.required {
                    required_args.push(param.name);
                }
            }
        }
    }
    let ok = if route.created { "201" } else { "200" };
    let mut op = json!({
        "operationId": operation_id(route),
        "summary": route.summary,
        "parameters": parameters,
        "responses": {
            ok: {"description": route.reply},
            "default": {
                "description": "an error (docs/rest.md maps codes to statuses)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }
        },
        "x-sluice-verb": route.handler.verb(),
    });
    if let Some(action) = route.action {
        op["description"] = json!(format!(
            "Also `{} {}?action={action}`. {}",
            route.method.name(),
            route.full_path(),
            if required_args.is_empty() {
                String::new()
            } else {
                format!(
                    "Required arguments (query or body): {}.",
                    required_args.join(", ")
                )
            }
        ));
    }
    if route.method != Method::Get && !properties.is_empty() {
        let schema = json!({"type": "object", "properties": properties, "required": required_args});
        let schema = if required_args.is_empty() {
            let mut s = schema;
            if let Some(o) = s.as_object_mut() {
                o.remove("required");
            }
            s
        } else {
            schema
        };
        op["requestBody"] = json!({
            "required": false,
            "description": "the arguments as an object (instead of the query string)",
            "content": {
                "application/json": {"schema": schema.clone()},
                "application/x-yaml": {"schema": schema},
            }
        });
    }
    op
}

fn operation_id(route: &Route) -> String {
    let mut id = route.method.name().to_ascii_lowercase();
    for segment in route.documented_path().split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            segment
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
    }
    id
}

/// The route list of docs/rest.md (between its `routes` markers).
pub fn render_markdown() -> String {
    let mut out = String::new();
    let mut section = "";
    for route in ROUTES {
        let this = route
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let this = match (route.scope, this) {
            (Scope::Public, _) | (_, "system") | (_, "openapi.json") => "System",
            (_, "workflows") | (_, "orders") => "Workflows and orders",
            (_, "services") => "Services",
            (_, "jobs") => "Jobs",
            (_, "groups") => "Interface groups",
            _ => "Other",
        };
        if this != section {
            out.push_str(&format!("\n### {this}\n"));
            section = this;
        }
        out.push_str(&format!("\n#### `{}`\n\n", route.title()));
        if route.action.is_some() {
            out.push_str(&format!(
                "Also `{} {}`.\n\n",
                route.method.name(),
                route.documented_path()
            ));
        }
        out.push_str(route.summary);
        out.push_str("\n\n");
        if !route.params.is_empty() {
            out.push_str("| parameter | in | type | required | meaning |\n|---|---|---|---|---|\n");
            for p in route.params {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    p.name,
                    match p.location {
                        In::Path => "path",
                        In::Args => "query or body",
                    },
                    p.kind.label(),
                    if p.required { "yes" } else { "no" },
                    p.description.replace('|', "\\|"),
                ));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "Reply ({}): {}.",
            if route.created { 201 } else { 200 },
            route.reply
        ));
        if let Some(verb) = route.handler.verb() {
            out.push_str(&format!(" Master verb: `{verb}`."));
        }
        if !route.errors.is_empty() {
            let codes: Vec<String> = route.errors.iter().map(|c| format!("`{c}`")).collect();
            out.push_str(&format!(" Errors: {}.", codes.join(", ")));
        }
        out.push('\n');
    }
    out
}

/// The status table of docs/rest.md.
pub fn render_status_markdown() -> String {
    let mut out = String::from("| status | codes | when |\n|---|---|---|\n");
    for (codes, status, meaning) in crate::errors::STATUS_TABLE {
        let codes = match codes {
            crate::errors::Codes::Exact(codes) => codes
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            crate::errors::Codes::Suffix(suffix) => format!("`*{suffix}`"),
        };
        out.push_str(&format!("| {status} | {codes} | {meaning} |\n"));
    }
    out.push_str(
        "| 409 | every other code (`DUPLICATE-ORDER-KEY`, `STATUS-ERROR`, `TIMEOUT`, a service \
         method's exception such as `ValueError`, ...) | the request was refused |\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let doc = openapi();
        let paths = doc["paths"].as_object().expect("paths");
        let from_routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.documented_path(), r.method.name().to_ascii_lowercase()))
            .collect();
        assert_eq!(
            from_routes.len(),
            ROUTES.len(),
            "two routes document the same path"
        );
        let mut from_doc = BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                from_doc.insert((path.clone(), method.clone()));
                assert!(op["operationId"].is_string(), "{path} {method}");
                assert!(op["responses"].is_object(), "{path} {method}");
                // Every `{x}` of the path is a declared path parameter.
                for segment in path.split('/').filter(|s| s.starts_with('{')) {
                    let name = segment.trim_matches(|c| c == '{' || c == '}');
                    let declared = op["parameters"]
                        .as_array()
                        .expect("parameters")
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path");
                    assert!(declared, "{path} {method}: {name} is not declared");
                }
            }
        }
        assert_eq!(from_routes, from_doc);
        let ids: BTreeSet<_> = paths
            .values()
            .flat_map(|item| item.as_object().expect("item").values())
            .map(|op| op["operationId"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
    }

    #[test]
    fn routes_are_well_formed() {
        for route in ROUTES {
            assert!(route.path.starts_with('/'), "{}", route.title());
            assert!(!route.summary.is_empty(), "{}", route.title());
            assert!(!route.reply.is_empty(), "{}", route.title());
            // GET never changes anything: no GET route maps to a changing verb. (Qorus's
            // `GET /system?action=wstoken` only makes a token in the gateway's memory.)
            if route.method == Method::Get {
                assert!(
                    route.action.is_none() || route.handler == Handler::WsToken,
                    "{}",
                    route.title()
                );
            } else {
                assert!(route.action.is_some(), "{}", route.title());
            }
            let in_path: BTreeSet<&str> = route
                .path
                .split('/')
                .filter(|s| s.starts_with('{'))
                .map(|s| s.trim_matches(|c| c == '{' || c == '}' || c == '*'))
                .collect();
            let declared: BTreeSet<&str> = route
                .params
                .iter()
                .filter(|p| p.location == In::Path)
                .map(|p| p.name)
                .collect();
            assert_eq!(in_path, declared, "{}", route.title());
            let names: BTreeSet<&str> = route.params.iter().map(|p| p.name).collect();
            assert_eq!(names.len(), route.params.len(), "{}", route.title());
        }
        // One route per (scope, method, path, action).
        let keys: BTreeSet<_> = ROUTES
            .iter()
            .map(|r| (r.scope, r.method, r.path, r.action))
            .collect();
        assert_eq!(keys.len(), ROUTES.len());
    }

    #[test]
    fn action_suffixes() {
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/services/TEST-SVC/load"),
            Some(("/api/latest/services/TEST-SVC".to_string(), "load"))
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/v3/services/TEST-SVC/echo/call"),
            Some(("/api/v3/services/TEST-SVC/echo".to_string(), "call"))
        );
        assert_eq!(
            action_suffix(Method::Post, "/api/latest/workflows/W/createOrder"),
            Some(("/api/latest/workflows/W".to_string(), "createOrder"))
        );
        // A method that is not an action stays a method; GET has no actions.
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/services/S/echo"),
            None
        );
        assert_eq!(
            action_suffix(Method::Get, "/api/latest/services/S/load"),
            None
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/orders/1/nope"),
            None
        );
        assert_eq!(action_suffix(Method::Put, "/api/vx/services/S/load"), None);
        // Bulk order actions, workflow control, the system, an option.
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/orders/retry"),
            Some(("/api/latest/orders".to_string(), "retry"))
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/orders/7/retry"),
            Some(("/api/latest/orders/7".to_string(), "retry"))
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/workflows/W/setAutostart"),
            Some(("/api/latest/workflows/W".to_string(), "setAutostart"))
        );
        assert_eq!(
            action_suffix(Method::Post, "/api/latest/workflows/W/execSynchronous"),
            Some(("/api/latest/workflows/W".to_string(), "execSynchronous"))
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/system/shutdown"),
            Some(("/api/latest/system".to_string(), "shutdown"))
        );
        assert_eq!(
            action_suffix(
                Method::Put,
                "/api/latest/system/options/qorus.max-events/set"
            ),
            Some((
                "/api/latest/system/options/qorus.max-events".to_string(),
                "set"
            ))
        );
        assert_eq!(
            action_suffix(Method::Put, "/api/latest/services//load"),
            None
        );
    }

    #[test]
    fn scopes_and_patterns() {
        assert_eq!(
            split_scope("/api/latest/orders"),
            Some((Scope::Latest, "/orders"))
        );
        assert_eq!(
            split_scope("/api/v7/orders"),
            Some((Scope::Latest, "/orders"))
        );
        assert_eq!(
            split_scope("/api/public/info"),
            Some((Scope::Public, "/info"))
        );
        assert_eq!(split_scope("/api/latestx/orders"), None);
        assert_eq!(split_scope("/api/v8/orders"), None);
        assert!(fits("/orders/{id}", "/orders/5"));
        assert!(!fits("/orders/{id}", "/orders/"));
        assert!(!fits("/orders/{id}", "/orders/5/x"));
        assert!(!fits("/orders", "/jobs"));
        assert!(fits("/system/logs/{*source}", "/system/logs/system"));
        assert!(fits("/system/logs/{*source}", "/system/logs/workflows/W"));
        assert!(!fits("/system/logs/{*source}", "/system/logs/"));
        assert!(!fits("/system/logs/{*source}", "/system/logs"));
    }

    #[test]
    fn docs_rest_md_lists_every_route_and_the_status_table() {
        let actual = crate::generated_docs::check(
            "rest.md",
            &[
                ("routes", render_markdown()),
                ("statuses", render_status_markdown()),
            ],
            "docs_rest_md",
        );
        for route in ROUTES {
            assert!(actual.contains(&route.title()), "{}", route.title());
        }
    }
}
