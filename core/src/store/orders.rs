//! Workflow orders: creation, reading and searching, and the operator's actions on them.
//!
//! A workflow process claims runnable orders (`engine.rs`) by setting `sessionid` and
//! `owner`; while it owns an order it may write the order's status, steps, dynamic data and
//! keys at any moment. So every operator action here changes *unowned* orders only, and the
//! check is part of the statement that takes the row: the first statement of an action's
//! transaction is `UPDATE workflow_instance ... WHERE workflow_instanceid = $1 AND
//! sessionid = 0 AND <the statuses the action accepts>`. Being a write, it makes SQLite take
//! its write lock at once and PostgreSQL lock the row (a claim skips locked rows), so no
//! process can claim the order until the action commits, and no action can touch an order a
//! process holds. When that statement changes no row, the order is read once to say why:
//! it does not exist, a process works on it, or its status does not allow the action.
//!
//! Uniqueness of orders (`DUPLICATE-ORDER-KEY`) rests on the primary key of
//! `workflow_instance_unique_keys`, never on a look-up first; see [`Store::create_order`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::params::{BindParams, Param};
use super::{on_pool, Store, StoreError};

/// Qorus's order (and step) statuses: the one-letter code stored in the database and the
/// name the API shows.
pub const STATUSES: &[(&str, &str)] = &[
    ("Y", "READY"),
    ("S", "SCHEDULED"),
    ("I", "IN-PROGRESS"),
    ("C", "COMPLETE"),
    ("E", "ERROR"),
    ("R", "RETRY"),
    ("W", "WAITING"),
    ("A", "ASYNC-WAITING"),
    ("V", "EVENT-WAITING"),
    ("N", "INCOMPLETE"),
    ("X", "CANCELED"),
    ("B", "BLOCKED"),
];

/// The Qorus name of a status letter (`E` → `ERROR`); `UNKNOWN` for anything else.
pub fn status_name(letter: &str) -> &'static str {
    STATUSES
        .iter()
        .find(|(l, _)| *l == letter)
        .map_or("UNKNOWN", |(_, name)| name)
}

/// The letter of a status given by its Qorus name (any case) or by its letter.
pub fn status_letter(name: &str) -> Option<&'static str> {
    let name = name.trim();
    STATUSES
        .iter()
        .find(|(l, n)| l.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(name))
        .map(|(l, _)| *l)
}

/// The highest priority; orders run in ascending priority order.
pub const PRIORITY_HIGHEST: i64 = 0;
/// The lowest priority.
pub const PRIORITY_LOWEST: i64 = 999;
/// Qorus's default priority.
pub const DEFAULT_PRIORITY: i64 = 500;
/// Orders a search returns when it names no limit.
pub const DEFAULT_SEARCH_LIMIT: u32 = 100;
/// The most orders one search returns.
pub const MAX_SEARCH_LIMIT: u32 = 10_000;

/// How often an action is tried again when the order changed between the action's update
/// and the read that explains why the update changed nothing.
const ACTION_ATTEMPTS: usize = 3;

/// A time given as milliseconds since the epoch, an RFC 3339 date-time, or `now`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(crate::now_ms());
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!(
                "{text:?} is not a time: give RFC 3339 (2030-01-31T12:00:00Z), milliseconds \
                 since the epoch, or `now` ({e})"
            )
        })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is out of range"))
}

/// A time for people: RFC 3339 in UTC (`2030-01-31T12:00:00.5Z`).
pub fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// A new order, in the shape Qorus's `createOrder` takes (plus the workflow's name and
/// version). Order key values may be given as strings, numbers or lists of them; times as
/// milliseconds since the epoch or RFC 3339 text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The workflow's name.
    pub name: String,
    /// The workflow's version; `None` means the newest loaded one (the highest workflowid
    /// of that name).
    #[serde(default)]
    pub version: Option<String>,
    /// The order's input: a JSON object, immutable once created.
    #[serde(default)]
    pub staticdata: Value,
    #[serde(default)]
    pub dynamicdata: Option<Value>,
    /// Searchable keys: name → values. Names must be in the workflow's keylist.
    #[serde(default, deserialize_with = "key_lists")]
    pub orderkeys: BTreeMap<String, Vec<String>>,
    /// 0 (highest) .. 999 (lowest); default 500.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Do not run before this time (ms since the epoch); a future time makes the order
    /// SCHEDULED.
    #[serde(default, deserialize_with = "opt_time")]
    pub scheduled: Option<i64>,
    /// `READY` (the default) or `BLOCKED`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub parent_workflow_instanceid: Option<i64>,
    #[serde(default)]
    pub external_order_instanceid: Option<String>,
    /// Unique among all orders of all workflows.
    #[serde(default, deserialize_with = "key_scalars")]
    pub global_unique_key: BTreeMap<String, String>,
    /// Unique among the orders of every version of this workflow.
    #[serde(default, deserialize_with = "key_scalars")]
    pub workflow_specific_unique_key: BTreeMap<String, String>,
    /// Unique among the orders of this workflow version.
    #[serde(default, deserialize_with = "key_scalars")]
    pub workflow_unique_key: BTreeMap<String, String>,
}

fn scalar(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "an order key value must be a string or a number, not {other}"
        )),
    }
}

/// Order keys as JSON gives them (name → a string, a number, or a list of them) as name →
/// values.
pub fn order_keys_from_json(
    keys: serde_json::Map<String, Value>,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    keys.into_iter()
        .map(|(name, value)| {
            let values = match value {
                Value::Array(items) => items.into_iter().map(scalar).collect(),
                one => scalar(one).map(|v| vec![v]),
            };
            values
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("order key {name}: {e}"))
        })
        .collect()
}

fn key_lists<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let raw: Option<serde_json::Map<String, Value>> = Option::deserialize(d)?;
    order_keys_from_json(raw.unwrap_or_default()).map_err(serde::de::Error::custom)
}

fn key_scalars<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            scalar(value)
                .map(|v| (name.clone(), v))
                .map_err(|e| serde::de::Error::custom(format!("unique key {name}: {e}")))
        })
        .collect()
}

fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a time in ms"))),
        Some(Value::String(s)) => parse_time(&s).map(Some).map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "{other} is not a time: give ms since the epoch or RFC 3339 text"
        ))),
    }
}

/// Why an order operation was refused. [`OrderError::code`] gives the Qorus-style code
/// that leaves the process.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no workflow {name}{} is loaded", .version.as_deref().map(|v| format!(":{v}")).unwrap_or_default())]
    UnknownWorkflow {
        name: String,
        version: Option<String>,
    },
    #[error("workflow {name}:{version} is disabled and takes no new orders")]
    WorkflowDisabled { name: String, version: String },
    #[error("order {0} does not exist")]
    NotFound(i64),
    /// An order key the workflow does not declare.
    #[error("workflow {workflow} has no order key {key:?}; its keylist is [{}]", .allowed.join(", "))]
    BadKey {
        key: String,
        workflow: String,
        allowed: Vec<String>,
    },
    /// A unique key another order already holds.
    #[error("duplicate order key {key}={value:?}: order {existing} already has it")]
    DuplicateKey {
        key: String,
        value: String,
        existing: i64,
    },
    /// The order's status (or a step's) does not allow the action, or a workflow process
    /// works on the order.
    #[error("order {id} is {status}: {reason}")]
    Status {
        id: i64,
        /// The Qorus name of the status.
        status: String,
        reason: String,
    },
    /// Something wrong in a new order's content.
    #[error("{0}")]
    Data(String),
    /// An argument of an action out of range or of the wrong form.
    #[error("{0}")]
    Invalid(String),
    /// Concurrent changes kept the request from settling; trying again may succeed.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OrderError {
    fn from(err: sqlx::Error) -> Self {
        OrderError::Store(StoreError::Sql(err))
    }
}

impl OrderError {
    /// The code clients see (Qorus's where it has one).
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::UnknownWorkflow { .. } => "UNKNOWN-WORKFLOW",
            // As for starting a disabled interface.
            OrderError::WorkflowDisabled { .. } => "STATUS-ERROR",
            OrderError::NotFound(_) => "WORKFLOW-ORDER-NOT-FOUND",
            OrderError::BadKey { .. } => "ORDER-KEY-ERROR",
            OrderError::DuplicateKey { .. } => "DUPLICATE-ORDER-KEY",
            OrderError::Status { .. } | OrderError::Conflict(_) => "STATUS-ERROR",
            OrderError::Data(_) => "ORDER-DATA-ERROR",
            OrderError::Invalid(_) | OrderError::Store(StoreError::Invalid(_)) => {
                "INVALID-ARGUMENT"
            }
            OrderError::Store(_) => "DATABASE-ERROR",
        }
    }
}

/// An order as `get-order-info` shows it. Statuses come as the Qorus name and the letter;
/// times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub workflow_instanceid: i64,
    pub workflowid: i64,
    pub name: String,
    pub version: String,
    /// e.g. `ERROR`.
    pub workflowstatus: String,
    /// e.g. `E`.
    pub workflowstatus_code: String,
    /// The status a BLOCKED or CANCELED order returns to (its Qorus name).
    pub status_orig: Option<String>,
    pub custom_status: Option<String>,
    /// The session of the master whose process works on the order; 0 when none does.
    pub sessionid: i64,
    /// The network id of the process that works on the order.
    pub owner: Option<String>,
    pub priority: i64,
    pub scheduled: Option<i64>,
    /// When a RETRY order may run again; `None` means at once.
    pub retry_trigger: Option<i64>,
    pub started: i64,
    pub completed: Option<i64>,
    pub parent_workflow_instanceid: Option<i64>,
    pub external_order_instanceid: Option<String>,
    pub business_error: bool,
    pub retries: i64,
    pub created: i64,
    pub modified: i64,
    pub staticdata: Value,
    pub dynamicdata: Value,
    pub keys: BTreeMap<String, Vec<String>>,
    /// The steps that have started, in the order they started.
    pub steps: Vec<StepInfo>,
    /// Every error raised against the order, oldest first.
    pub errors: Vec<ErrorInfo>,
    pub notes: Vec<NoteInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub stepid: i64,
    pub name: String,
    pub version: String,
    pub ind: i64,
    pub stepstatus: String,
    pub stepstatus_code: String,
    pub custom_status: Option<String>,
    pub retries: i64,
    pub skip: bool,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub business_error: bool,
    pub started: i64,
    pub completed: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub errorid: i64,
    pub stepid: Option<i64>,
    pub ind: Option<i64>,
    pub error: String,
    pub description: Option<String>,
    pub info: Option<String>,
    pub severity: String,
    pub retry: bool,
    pub business_error: bool,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct NoteInfo {
    pub noteid: i64,
    pub username: String,
    pub note: String,
    pub created: i64,
}

/// A search for orders; every field narrows it. Dates are ms since the epoch or RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderQuery {
    /// The workflow's name.
    pub name: Option<String>,
    /// The workflow's version (only with `name`).
    pub version: Option<String>,
    /// Statuses by Qorus name or letter; empty means any.
    #[serde(alias = "statuses")]
    pub status: Vec<String>,
    /// Orders having this key ...
    pub keyname: Option<String>,
    /// ... with this value (only with `keyname`).
    pub keyvalue: Option<String>,
    /// Created at or after.
    #[serde(deserialize_with = "opt_time")]
    pub mindate: Option<i64>,
    /// Created at or before.
    #[serde(deserialize_with = "opt_time")]
    pub maxdate: Option<i64>,
    /// At most this many (default 100, at most 10,000).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// One order found by [`Store::search_orders`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub workflow_instanceid: i64,
    pub workflowid: i64,
    pub name: String,
    pub version: String,
    pub workflowstatus: String,
    pub workflowstatus_code: String,
    pub priority: i64,
    pub scheduled: Option<i64>,
    pub started: i64,
    pub completed: Option<i64>,
    pub parent_workflow_instanceid: Option<i64>,
    pub business_error: bool,
    pub retries: i64,
    pub created: i64,
    pub modified: i64,
}

/// What an action did to an order's status (letters; equal when it kept the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub workflow_instanceid: i64,
    pub workflowid: i64,
    pub name: String,
    pub version: String,
    pub old: String,
    pub new: String,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    workflow_instanceid: i64,
    workflowid: i64,
    name: String,
    version: String,
    workflowstatus: String,
    status_orig: Option<String>,
    custom_status: Option<String>,
    sessionid: i64,
    owner: Option<String>,
    priority: i64,
    scheduled: Option<i64>,
    retry_trigger: Option<i64>,
    started: i64,
    completed: Option<i64>,
    parent_workflow_instanceid: Option<i64>,
    external_order_instanceid: Option<String>,
    business_error: bool,
    retries: i64,
    created: i64,
    modified: i64,
    staticdata: Option<String>,
    dynamicdata: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StepRow {
    stepid: i64,
    name: String,
    version: String,
    ind: i64,
    stepstatus: String,
    custom_status: Option<String>,
    retries: i64,
    skip: bool,
    error: Option<String>,
    error_description: Option<String>,
    business_error: bool,
    started: i64,
    completed: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct ErrorRow {
    errorid: i64,
    stepid: Option<i64>,
    ind: Option<i64>,
    error: String,
    description: Option<String>,
    info: Option<String>,
    severity: String,
    retry: bool,
    business_error: bool,
    created: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    workflow_instanceid: i64,
    workflowid: i64,
    name: String,
    version: String,
    workflowstatus: String,
    priority: i64,
    scheduled: Option<i64>,
    started: i64,
    completed: Option<i64>,
    parent_workflow_instanceid: Option<i64>,
    business_error: bool,
    retries: i64,
    created: i64,
    modified: i64,
}

const SUMMARY_SELECT: &str = "SELECT wi.workflow_instanceid, wi.workflowid, w.name, w.version, \
         wi.workflowstatus, wi.priority, wi.scheduled, wi.started, wi.completed, \
         wi.parent_workflow_instanceid, wi.business_error, wi.retries, wi.created, wi.modified \
     FROM workflow_instance wi JOIN workflows w ON w.workflowid = wi.workflowid";

impl SummaryRow {
    fn into_summary(self) -> OrderSummary {
        OrderSummary {
            workflow_instanceid: self.workflow_instanceid,
            workflowid: self.workflowid,
            name: self.name,
            version: self.version,
            workflowstatus: status_name(&self.workflowstatus).to_string(),
            workflowstatus_code: self.workflowstatus,
            priority: self.priority,
            scheduled: self.scheduled,
            started: self.started,
            completed: self.completed,
            parent_workflow_instanceid: self.parent_workflow_instanceid,
            business_error: self.business_error,
            retries: self.retries,
            created: self.created,
            modified: self.modified,
        }
    }
}

/// A workflow as order creation needs it.
struct Target {
    workflowid: i64,
    name: String,
    version: String,
    keylist: Vec<String>,
}

/// What an action does beyond its update of `workflow_instance`.
#[derive(Debug, Clone)]
enum Extra {
    None,
    /// Merge into the dynamic data: keys replace, null deletes.
    DynamicData(serde_json::Map<String, Value>),
    /// Replace the values of the named keys.
    Keys(BTreeMap<String, Vec<String>>),
    Skip {
        stepid: i64,
        ind: i64,
    },
}

/// An operator action on one unowned order.
struct Action {
    verb: &'static str,
    /// The condition on `workflow_instance` the order must meet besides being unowned.
    condition: &'static str,
    /// `condition` as an operator reads it.
    expected: &'static str,
    /// The SET list of the order's update, if it has one: `$1` is the order, `$2` now,
    /// `$3`... `binds`.
    set: Option<&'static str>,
    binds: Vec<Param>,
    /// More statements of the transaction, each taking (`$1` order, `$2` now).
    then: &'static [&'static str],
    extra: Extra,
}

impl Action {
    /// An action that does nothing but take the order; each action adds its own work with
    /// struct update syntax.
    fn new(verb: &'static str, condition: &'static str, expected: &'static str) -> Action {
        Action {
            verb,
            condition,
            expected,
            set: None,
            binds: Vec::new(),
            then: &[],
            extra: Extra::None,
        }
    }

    /// An action on what an order holds, not on its status: refused only while a process
    /// works on the order, whose running step owns that data.
    fn on_data(verb: &'static str, extra: Extra) -> Action {
        Action {
            extra,
            ..Action::new(verb, "workflowstatus <> 'I'", "any status but IN-PROGRESS")
        }
    }
}

/// Statuses an order can be canceled or blocked from, and have a step skipped in: any but
/// IN-PROGRESS, COMPLETE, CANCELED and BLOCKED (a blocked order is unblocked first, so
/// status_orig keeps one level).
const HOLDABLE: &str = "workflowstatus IN ('Y', 'S', 'E', 'R', 'W', 'A', 'V', 'N')";
const HOLDABLE_NAMES: &str =
    "READY, SCHEDULED, ERROR, RETRY, WAITING, ASYNC-WAITING, EVENT-WAITING or INCOMPLETE";

/// Step statuses a step can be skipped from.
const SKIPPABLE_STEP: &str = "('E', 'R', 'A', 'W', 'V')";

/// Adds a value to an order key; a value the key has already is left as it is, not an
/// error, since a value may be given twice (as an order key and as a unique key).
const INSERT_ORDER_KEY: &str =
    "INSERT INTO order_instance_keys (workflow_instanceid, keyname, value, created) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

fn parse_json(id: i64, what: &str, text: Option<String>) -> Value {
    match text {
        None => Value::Object(Default::default()),
        Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::error!("order {id}: unreadable {what} ({e}); showing it as text");
            Value::String(text)
        }),
    }
}

// The extra work of some actions, inside the action's transaction `$tx` (of either backend,
// so written once as macros, like `load_in_tx!` in definitions.rs). Each may return from the
// enclosing function with an error, which drops the transaction and so rolls it back.

/// Merges `$patch` into the order's dynamic data: keys replace, null deletes.
macro_rules! merge_dynamic_data {
    ($tx:ident, $id:expr, $patch:expr) => {{
        let id: i64 = $id;
        let text: Option<String> = sqlx::query_scalar(
            "SELECT dynamicdata FROM order_instance WHERE workflow_instanceid = $1",
        )
        .bind(id)
        .fetch_optional(&mut *$tx)
        .await?;
        let mut data = match text.as_deref().map(serde_json::from_str) {
            Some(Ok(Value::Object(map))) => map,
            None => serde_json::Map::new(),
            Some(_) => {
                return Err(OrderError::Data(format!(
                    "order {id} has unreadable dynamic data; nothing was changed"
                )))
            }
        };
        for (key, value) in $patch {
            if value.is_null() {
                data.remove(key);
            } else {
                data.insert(key.clone(), value.clone());
            }
        }
        sqlx::query(
            "INSERT INTO order_instance (workflow_instanceid, dynamicdata) VALUES ($1, $2) \
             ON CONFLICT (workflow_instanceid) DO UPDATE SET dynamicdata = excluded.dynamicdata",
        )
        .bind(id)
        .bind(Value::Object(data).to_string())
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Gives each named key exactly the values listed.
macro_rules! replace_keys {
    ($tx:ident, $id:expr, $now:expr, $keys:expr) => {{
        for (name, values) in $keys {
            sqlx::query(
                "DELETE FROM order_instance_keys WHERE workflow_instanceid = $1 AND keyname = $2",
            )
            .bind($id)
            .bind(name)
            .execute(&mut *$tx)
            .await?;
            for value in values {
                sqlx::query(INSERT_ORDER_KEY)
                    .bind($id)
                    .bind(name)
                    .bind(value)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

/// Skips step `$stepid[$ind]` of an order whose status was `$old`; evaluates to the order's
/// new status when skipping released it as RETRY.
macro_rules! skip_in_tx {
    ($tx:ident, $id:expr, $now:expr, $stepid:expr, $ind:expr, $old:expr, $workflowid:expr) => {{
        let (id, now, stepid, ind): (i64, i64, i64, i64) = ($id, $now, $stepid, $ind);
        let old: &str = $old;
        let skipped = sqlx::query(&format!(
            "UPDATE step_instance SET stepstatus = 'C', skip = TRUE, completed = $2, modified = $2 \
             WHERE workflow_instanceid = $1 AND stepid = $3 AND ind = $4 \
             AND stepstatus IN {SKIPPABLE_STEP}"
        ))
        .bind(id)
        .bind(now)
        .bind(stepid)
        .bind(ind)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if skipped == 0 {
            let current: Option<String> = sqlx::query_scalar(
                "SELECT stepstatus FROM step_instance \
                 WHERE workflow_instanceid = $1 AND stepid = $2 AND ind = $3",
            )
            .bind(id)
            .bind(stepid)
            .bind(ind)
            .fetch_optional(&mut *$tx)
            .await?;
            if let Some(current) = current {
                return Err(OrderError::Status {
                    id,
                    status: status_name(old).to_string(),
                    reason: format!(
                        "its step {stepid}[{ind}] is {}; only a step in ERROR, RETRY or a \
                         waiting status, or one that has not started, can be skipped",
                        status_name(&current)
                    ),
                });
            }
            let in_workflow: Option<i64> = sqlx::query_scalar(
                "SELECT stepid FROM workflow_steps WHERE workflowid = $1 AND stepid = $2",
            )
            .bind($workflowid)
            .bind(stepid)
            .fetch_optional(&mut *$tx)
            .await?;
            if in_workflow.is_none() {
                return Err(OrderError::Invalid(format!(
                    "step {stepid} is not a step of order {id}'s workflow"
                )));
            }
            sqlx::query(
                "INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, skip, \
                     started, completed, modified) \
                 VALUES ($1, $2, $3, 'C', TRUE, $4, $4, $4)",
            )
            .bind(id)
            .bind(stepid)
            .bind(ind)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        }
        let blocking: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM step_instance \
             WHERE workflow_instanceid = $1 AND stepstatus IN {SKIPPABLE_STEP}"
        ))
        .bind(id)
        .fetch_one(&mut *$tx)
        .await?;
        // A READY or SCHEDULED order runs anyway and passes over the skipped step.
        if blocking == 0 && !matches!(old, "Y" | "S") {
            let new: String = sqlx::query_scalar(
                "UPDATE workflow_instance SET workflowstatus = 'R', retry_trigger = NULL, \
                     business_error = FALSE, modified = $2 \
                 WHERE workflow_instanceid = $1 RETURNING workflowstatus",
            )
            .bind(id)
            .bind(now)
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(
                "UPDATE segment_instance SET segmentstatus = 'R', retry_trigger = NULL, \
                     modified = $2 \
                 WHERE workflow_instanceid = $1 AND segmentstatus <> 'C'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
            Some(new)
        } else {
            None
        }
    }};
}

impl Store {
    /// Creates an order in one transaction: `workflow_instance`, `order_instance`, its keys
    /// and unique keys. Unique keys are also stored as order keys.
    ///
    /// A unique key another order holds is refused by the primary key of
    /// `workflow_instance_unique_keys` (`INSERT ... ON CONFLICT DO NOTHING`, then the holder
    /// is read in the same transaction): with concurrent creates of the same key exactly
    /// one succeeds, and the others learn the winner's id. Unique keys are inserted in one
    /// global order, so two creates sharing several keys cannot deadlock on PostgreSQL.
    pub async fn create_order(&self, req: &NewOrder) -> Result<i64, OrderError> {
        if !req.staticdata.is_object() {
            return Err(OrderError::Data(
                "staticdata is required and must be a JSON object".into(),
            ));
        }
        if req.dynamicdata.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(OrderError::Data("dynamicdata must be a JSON object".into()));
        }
        let priority = req.priority.unwrap_or(DEFAULT_PRIORITY);
        check_priority(priority).map_err(OrderError::Data)?;
        let blocked = match req.status.as_deref().map(status_letter) {
            None | Some(Some("Y")) => false,
            Some(Some("B")) => true,
            _ => {
                return Err(OrderError::Data(format!(
                    "status {:?} is not one a new order can have: give READY or BLOCKED",
                    req.status.as_deref().unwrap_or_default()
                )))
            }
        };
        let target = self.order_target(&req.name, req.version.as_deref()).await?;
        let mut unique: Vec<(String, &str, &str)> = Vec::new();
        for (scope, keys) in [
            ("global".to_string(), &req.global_unique_key),
            (
                format!("name:{}", target.name),
                &req.workflow_specific_unique_key,
            ),
            (
                format!("wf:{}", target.workflowid),
                &req.workflow_unique_key,
            ),
        ] {
            for (key, value) in keys {
                unique.push((scope.clone(), key.as_str(), value.as_str()));
            }
        }
        unique.sort();
        // Unique keys are order keys too; the primary key of order_instance_keys drops a
        // value given twice.
        let mut keys: Vec<(&str, &str)> = req
            .orderkeys
            .iter()
            .flat_map(|(k, values)| values.iter().map(move |v| (k.as_str(), v.as_str())))
            .chain(unique.iter().map(|(_, k, v)| (*k, *v)))
            .collect();
        keys.sort();
        keys.dedup();
        for (key, _) in &keys {
            if !target.keylist.iter().any(|k| k == key) {
                return Err(OrderError::BadKey {
                    key: key.to_string(),
                    workflow: format!("{}:{}", target.name, target.version),
                    allowed: target.keylist.clone(),
                });
            }
        }
        if let Some(parent) = req.parent_workflow_instanceid {
            let found: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
                "SELECT workflow_instanceid FROM workflow_instance \
                 WHERE workflow_instanceid = $1"
            )
            .bind(parent)
            .fetch_optional(pool)
            .await?);
            if found.is_none() {
                return Err(OrderError::Data(format!(
                    "parent order {parent} does not exist"
                )));
            }
        }

        let now = crate::now_ms();
        let runnable = match req.scheduled {
            Some(at) if at > now => "S",
            _ => "Y",
        };
        let (status, status_orig) = if blocked {
            ("B", Some(runnable))
        } else {
            (runnable, None)
        };
        let staticdata = req.staticdata.to_string();
        let dynamicdata = req
            .dynamicdata
            .as_ref()
            .map_or_else(|| "{}".to_string(), Value::to_string);
        let id = on_pool!(self, |pool| {
            // The first statement writes, so SQLite takes its write lock at the start of the
            // transaction instead of failing to upgrade a read lock.
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO workflow_instance (workflowid, workflowstatus, status_orig, \
                     sessionid, priority, scheduled, started, parent_workflow_instanceid, \
                     external_order_instanceid, created, modified) \
                 VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $6, $6) \
                 RETURNING workflow_instanceid",
            )
            .bind(target.workflowid)
            .bind(status)
            .bind(status_orig)
            .bind(priority)
            .bind(req.scheduled)
            .bind(now)
            .bind(req.parent_workflow_instanceid)
            .bind(req.external_order_instanceid.as_deref())
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO order_instance (workflow_instanceid, staticdata, dynamicdata) \
                 VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(&staticdata)
            .bind(&dynamicdata)
            .execute(&mut *tx)
            .await?;
            for (scope, key, value) in &unique {
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let inserted = sqlx::query(
                        "INSERT INTO workflow_instance_unique_keys \
                             (scope, keyname, value, workflow_instanceid) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(scope.as_str())
                    .bind(*key)
                    .bind(*value)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if inserted == 1 {
                        break;
                    }
                    // The conflict was with a committed row (PostgreSQL waits for a
                    // concurrent insert to commit or roll back first); read its order.
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT workflow_instanceid FROM workflow_instance_unique_keys \
                         WHERE scope = $1 AND keyname = $2 AND value = $3",
                    )
                    .bind(scope.as_str())
                    .bind(*key)
                    .bind(*value)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match existing {
                        // Dropping the transaction rolls the order back.
                        Some(existing) => {
                            return Err(OrderError::DuplicateKey {
                                key: key.to_string(),
                                value: value.to_string(),
                                existing,
                            })
                        }
                        // Its holder was deleted in between: the key is free again.
                        None if attempts < ACTION_ATTEMPTS => continue,
                        None => {
                            return Err(OrderError::Conflict(format!(
                                "unique key {key}={value:?} keeps changing hands; try again"
                            )))
                        }
                    }
                }
            }
            for (key, value) in &keys {
                sqlx::query(INSERT_ORDER_KEY)
                    .bind(id)
                    .bind(*key)
                    .bind(*value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// The workflow a new order is for: `name:version`, or the newest loaded version.
    async fn order_target(&self, name: &str, version: Option<&str>) -> Result<Target, OrderError> {
        let row: Option<(i64, String, String, bool, Option<String>)> = match version {
            Some(version) => on_pool!(self, |pool| sqlx::query_as(
                "SELECT workflowid, name, version, enabled, keylist FROM workflows \
                 WHERE name = $1 AND version = $2"
            )
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?),
            None => on_pool!(self, |pool| sqlx::query_as(
                "SELECT workflowid, name, version, enabled, keylist FROM workflows \
                 WHERE name = $1 ORDER BY workflowid DESC LIMIT 1"
            )
            .bind(name)
            .fetch_optional(pool)
            .await?),
        };
        let Some((workflowid, name, version, enabled, keylist)) = row else {
            return Err(OrderError::UnknownWorkflow {
                name: name.to_string(),
                version: version.map(str::to_string),
            });
        };
        if !enabled {
            return Err(OrderError::WorkflowDisabled { name, version });
        }
        let keylist = keylist
            .as_deref()
            .map(|text| {
                serde_json::from_str::<Vec<String>>(text).map_err(|e| {
                    StoreError::Invalid(format!(
                        "workflow {name}:{version} has an unreadable keylist {text:?}: {e}"
                    ))
                })
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Target {
            workflowid,
            name,
            version,
            keylist,
        })
    }

    /// Everything about one order; `None` when it does not exist.
    pub async fn get_order(&self, id: i64) -> Result<Option<OrderInfo>, StoreError> {
        let row: Option<OrderRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT wi.workflow_instanceid, wi.workflowid, w.name, w.version, \
                    wi.workflowstatus, wi.status_orig, wi.custom_status, wi.sessionid, wi.owner, \
                    wi.priority, wi.scheduled, wi.retry_trigger, wi.started, wi.completed, \
                    wi.parent_workflow_instanceid, wi.external_order_instanceid, \
                    wi.business_error, wi.retries, wi.created, wi.modified, \
                    oi.staticdata, oi.dynamicdata \
             FROM workflow_instance wi JOIN workflows w ON w.workflowid = wi.workflowid \
             LEFT JOIN order_instance oi ON oi.workflow_instanceid = wi.workflow_instanceid \
             WHERE wi.workflow_instanceid = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await?);
        let Some(row) = row else {
            return Ok(None);
        };
        let keys: Vec<(String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT keyname, value FROM order_instance_keys \
             WHERE workflow_instanceid = $1 ORDER BY keyname, value"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let steps: Vec<StepRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT si.stepid, s.name, s.version, si.ind, si.stepstatus, si.custom_status, \
                    si.retries, si.skip, si.error, si.error_description, si.business_error, \
                    si.started, si.completed \
             FROM step_instance si JOIN steps s ON s.stepid = si.stepid \
             WHERE si.workflow_instanceid = $1 ORDER BY si.started, si.stepid, si.ind"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let errors: Vec<ErrorRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT errorid, stepid, ind, error, description, info, severity, retry, \
                    business_error, created \
             FROM error_instance WHERE workflow_instanceid = $1 ORDER BY errorid"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let notes: Vec<NoteInfo> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT noteid, username, note, created FROM order_instance_notes \
             WHERE workflow_instanceid = $1 ORDER BY noteid"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let mut key_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in keys {
            key_map.entry(name).or_default().push(value);
        }
        Ok(Some(OrderInfo {
            workflow_instanceid: row.workflow_instanceid,
            workflowid: row.workflowid,
            name: row.name,
            version: row.version,
            workflowstatus: status_name(&row.workflowstatus).to_string(),
            workflowstatus_code: row.workflowstatus,
            status_orig: row
                .status_orig
                .as_deref()
                .map(|s| status_name(s).to_string()),
            custom_status: row.custom_status,
            sessionid: row.sessionid,
            owner: row.owner,
            priority: row.priority,
            scheduled: row.scheduled,
            retry_trigger: row.retry_trigger,
            started: row.started,
            completed: row.completed,
            parent_workflow_instanceid: row.parent_workflow_instanceid,
            external_order_instanceid: row.external_order_instanceid,
            business_error: row.business_error,
            retries: row.retries,
            created: row.created,
            modified: row.modified,
            staticdata: parse_json(id, "static data", row.staticdata),
            dynamicdata: parse_json(id, "dynamic data", row.dynamicdata),
            keys: key_map,
            steps: steps
                .into_iter()
                .map(|s| StepInfo {
                    stepid: s.stepid,
                    name: s.name,
                    version: s.version,
                    ind: s.ind,
                    stepstatus: status_name(&s.stepstatus).to_string(),
                    stepstatus_code: s.stepstatus,
                    custom_status: s.custom_status,
                    retries: s.retries,
                    skip: s.skip,
                    error: s.error,
                    error_description: s.error_description,
                    business_error: s.business_error,
                    started: s.started,
                    completed: s.completed,
                })
                .collect(),
            errors: errors
                .into_iter()
                .map(|e| ErrorInfo {
                    errorid: e.errorid,
                    stepid: e.stepid,
                    ind: e.ind,
                    error: e.error,
                    description: e.description,
                    info: e.info,
                    severity: e.severity,
                    retry: e.retry,
                    business_error: e.business_error,
                    created: e.created,
                })
                .collect(),
            notes,
        }))
    }

    /// Orders matching `q`, newest (highest id) first.
    pub async fn search_orders(&self, q: &OrderQuery) -> Result<Vec<OrderSummary>, StoreError> {
        let limit = match q.limit {
            None | Some(0) => DEFAULT_SEARCH_LIMIT,
            Some(n) if n > MAX_SEARCH_LIMIT => {
                return Err(StoreError::Invalid(format!(
                    "limit {n} is above the maximum of {MAX_SEARCH_LIMIT}"
                )))
            }
            Some(n) => n,
        };
        if q.version.is_some() && q.name.is_none() {
            return Err(StoreError::Invalid(
                "a version needs the workflow's name".into(),
            ));
        }
        if q.keyvalue.is_some() && q.keyname.is_none() {
            return Err(StoreError::Invalid(
                "a key value needs the key's name".into(),
            ));
        }
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<Param> = Vec::new();
        if let Some(name) = &q.name {
            let p = param(&mut binds, Param::text(name));
            conditions.push(format!("w.name = {p}"));
        }
        if let Some(version) = &q.version {
            let p = param(&mut binds, Param::text(version));
            conditions.push(format!("w.version = {p}"));
        }
        if !q.status.is_empty() {
            let mut list = Vec::new();
            for s in &q.status {
                let letter = status_letter(s).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "unknown status {s:?}; the statuses are {}",
                        STATUSES
                            .iter()
                            .map(|(_, n)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                list.push(param(&mut binds, Param::text(letter)));
            }
            conditions.push(format!("wi.workflowstatus IN ({})", list.join(", ")));
        }
        if let Some(key) = &q.keyname {
            let k = param(&mut binds, Param::text(key));
            let value = match &q.keyvalue {
                Some(v) => format!(" AND k.value = {}", param(&mut binds, Param::text(v))),
                None => String::new(),
            };
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM order_instance_keys k \
                 WHERE k.workflow_instanceid = wi.workflow_instanceid AND k.keyname = {k}{value})"
            ));
        }
        if let Some(min) = q.mindate {
            let p = param(&mut binds, Param::Int(Some(min)));
            conditions.push(format!("wi.created >= {p}"));
        }
        if let Some(max) = q.maxdate {
            let p = param(&mut binds, Param::Int(Some(max)));
            conditions.push(format!("wi.created <= {p}"));
        }
        let limit_p = param(&mut binds, Param::Int(Some(i64::from(limit))));
        let offset_p = param(
            &mut binds,
            Param::Int(Some(i64::from(q.offset.unwrap_or(0)))),
        );
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "{SUMMARY_SELECT} {filter} \
             ORDER BY wi.workflow_instanceid DESC LIMIT {limit_p} OFFSET {offset_p}"
        );
        let rows: Vec<SummaryRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind_params(&binds)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(SummaryRow::into_summary).collect())
    }

    /// One order's summary (one query, unlike [`Store::get_order`]); `None` when it does
    /// not exist.
    pub async fn order_summary(&self, id: i64) -> Result<Option<OrderSummary>, StoreError> {
        let sql = format!("{SUMMARY_SELECT} WHERE wi.workflow_instanceid = $1");
        let row: Option<SummaryRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(SummaryRow::into_summary))
    }

    /// ERROR, RETRY or ASYNC-WAITING → RETRY, to run at once: its steps in those statuses
    /// become RETRY and the business-error flag is cleared.
    pub async fn retry_order(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.act(
            id,
            Action {
                set: Some("workflowstatus = 'R', retry_trigger = NULL, business_error = FALSE"),
                then: &[
                    "UPDATE step_instance SET stepstatus = 'R', modified = $2 \
                     WHERE workflow_instanceid = $1 AND stepstatus IN ('E', 'R', 'A')",
                    "UPDATE segment_instance SET segmentstatus = 'R', retry_trigger = NULL, \
                         modified = $2 \
                     WHERE workflow_instanceid = $1 AND segmentstatus IN ('E', 'R', 'A')",
                ],
                ..Action::new(
                    "retry",
                    "workflowstatus IN ('E', 'R', 'A')",
                    "ERROR, RETRY or ASYNC-WAITING",
                )
            },
        )
        .await
    }

    /// Any status but IN-PROGRESS, COMPLETE, CANCELED and BLOCKED → CANCELED; the status it
    /// had is kept for [`Store::uncancel_order`].
    pub async fn cancel_order(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.hold(id, "cancel", "X").await
    }

    /// CANCELED → the status the order had before.
    pub async fn uncancel_order(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.release_hold(id, "uncancel", "workflowstatus = 'X'", "CANCELED")
            .await
    }

    /// Any status but IN-PROGRESS, COMPLETE, CANCELED and BLOCKED → BLOCKED; the status it
    /// had is kept for [`Store::unblock_order`].
    pub async fn block_order(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.hold(id, "block", "B").await
    }

    /// BLOCKED → the status the order had before.
    pub async fn unblock_order(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.release_hold(id, "unblock", "workflowstatus = 'B'", "BLOCKED")
            .await
    }

    async fn hold(
        &self,
        id: i64,
        verb: &'static str,
        to: &str,
    ) -> Result<StatusChange, OrderError> {
        self.act(
            id,
            Action {
                set: Some("status_orig = workflowstatus, workflowstatus = $3"),
                binds: vec![Param::text(to)],
                ..Action::new(verb, HOLDABLE, HOLDABLE_NAMES)
            },
        )
        .await
    }

    /// BLOCKED or CANCELED (`condition`) → the status kept in `status_orig`.
    async fn release_hold(
        &self,
        id: i64,
        verb: &'static str,
        condition: &'static str,
        expected: &'static str,
    ) -> Result<StatusChange, OrderError> {
        self.act(
            id,
            Action {
                set: Some("workflowstatus = COALESCE(status_orig, 'Y'), status_orig = NULL"),
                ..Action::new(verb, condition, expected)
            },
        )
        .await
    }

    /// READY, SCHEDULED, RETRY, WAITING, ASYNC-WAITING, EVENT-WAITING or INCOMPLETE → ERROR.
    pub async fn set_order_error(&self, id: i64) -> Result<StatusChange, OrderError> {
        self.act(
            id,
            Action {
                set: Some("workflowstatus = 'E', retry_trigger = NULL"),
                ..Action::new(
                    "set-error",
                    "workflowstatus IN ('Y', 'S', 'R', 'A', 'V', 'W', 'N')",
                    "READY, SCHEDULED, RETRY, WAITING, ASYNC-WAITING, EVENT-WAITING or \
                     INCOMPLETE",
                )
            },
        )
        .await
    }

    /// Sets when a READY or SCHEDULED order runs: a future time makes it SCHEDULED, a past
    /// time or `None` READY. A BLOCKED order that was READY or SCHEDULED stays BLOCKED and
    /// returns to the new status when unblocked.
    pub async fn reschedule_order(
        &self,
        id: i64,
        scheduled: Option<i64>,
    ) -> Result<StatusChange, OrderError> {
        let to = match scheduled {
            Some(at) if at > crate::now_ms() => "S",
            _ => "Y",
        };
        self.act(
            id,
            Action {
                set: Some(
                    "scheduled = $3, \
                     workflowstatus = CASE WHEN workflowstatus = 'B' THEN 'B' ELSE $4 END, \
                     status_orig = CASE WHEN workflowstatus = 'B' THEN $4 ELSE status_orig END",
                ),
                binds: vec![Param::Int(scheduled), Param::text(to)],
                ..Action::new(
                    "reschedule",
                    "workflowstatus IN ('Y', 'S') \
                     OR (workflowstatus = 'B' AND status_orig IN ('Y', 'S'))",
                    "READY, SCHEDULED, or BLOCKED from READY or SCHEDULED",
                )
            },
        )
        .await
    }

    /// Sets an order's priority (0 highest .. 999 lowest), whatever its status: the engine
    /// only reads the priority when it claims orders, so changing it never races a process
    /// working on the order.
    pub async fn set_order_priority(
        &self,
        id: i64,
        priority: i64,
    ) -> Result<StatusChange, OrderError> {
        check_priority(priority).map_err(OrderError::Invalid)?;
        let now = crate::now_ms();
        let row: Option<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "UPDATE workflow_instance SET priority = $2, modified = $3 \
             WHERE workflow_instanceid = $1 RETURNING workflowstatus, workflowid"
        )
        .bind(id)
        .bind(priority)
        .bind(now)
        .fetch_optional(pool)
        .await?);
        let (status, workflowid) = row.ok_or(OrderError::NotFound(id))?;
        self.status_change(id, workflowid, status.clone(), status)
            .await
    }

    /// Marks a step COMPLETE and skipped: one in ERROR, RETRY or a waiting status, or one
    /// that never started (its row is created). The order must not be IN-PROGRESS,
    /// COMPLETE, CANCELED or BLOCKED. When no step is left in error, retry or waiting, an
    /// order that was stopped (ERROR, RETRY, a waiting status, INCOMPLETE) becomes RETRY to
    /// run at once, so the engine goes on with the steps after the skipped one; a READY or
    /// SCHEDULED order keeps its status.
    pub async fn skip_step(
        &self,
        id: i64,
        stepid: i64,
        ind: i64,
    ) -> Result<StatusChange, OrderError> {
        if ind < 0 {
            return Err(OrderError::Invalid(format!("step index {ind} is negative")));
        }
        self.act(
            id,
            Action {
                extra: Extra::Skip { stepid, ind },
                ..Action::new("skip-step", HOLDABLE, HOLDABLE_NAMES)
            },
        )
        .await
    }

    /// Merges `patch` (a JSON object) into the order's dynamic data: each key replaces the
    /// one of that name, a null value deletes it. Refused while a process works on the
    /// order (its running step owns the dynamic data).
    pub async fn update_dynamic_data(
        &self,
        id: i64,
        patch: &Value,
    ) -> Result<StatusChange, OrderError> {
        let Value::Object(patch) = patch else {
            return Err(OrderError::Invalid(
                "dynamic data changes must be a JSON object".into(),
            ));
        };
        self.act(
            id,
            Action::on_data("update dynamic data", Extra::DynamicData(patch.clone())),
        )
        .await
    }

    /// Replaces the values of the named order keys (an empty list removes a key); names
    /// must be in the workflow's keylist. Unique keys recorded at creation are not changed.
    /// Refused while a process works on the order.
    pub async fn set_order_keys(
        &self,
        id: i64,
        keys: &BTreeMap<String, Vec<String>>,
    ) -> Result<StatusChange, OrderError> {
        let row: Option<(String, String, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT w.name, w.version, w.keylist FROM workflow_instance wi \
                 JOIN workflows w ON w.workflowid = wi.workflowid \
                 WHERE wi.workflow_instanceid = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        let (name, version, keylist) = row.ok_or(OrderError::NotFound(id))?;
        let allowed: Vec<String> = keylist
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        if let Some(bad) = keys.keys().find(|k| !allowed.contains(k)) {
            return Err(OrderError::BadKey {
                key: bad.clone(),
                workflow: format!("{name}:{version}"),
                allowed,
            });
        }
        self.act(
            id,
            Action::on_data("set order keys", Extra::Keys(keys.clone())),
        )
        .await
    }

    /// Adds an operator's note to an order, whatever its status; returns the note's id.
    pub async fn add_order_note(&self, id: i64, user: &str, text: &str) -> Result<i64, OrderError> {
        if text.trim().is_empty() {
            return Err(OrderError::Invalid("a note needs some text".into()));
        }
        let now = crate::now_ms();
        let noteid = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let found = sqlx::query(
                "UPDATE workflow_instance SET modified = $2 WHERE workflow_instanceid = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if found == 0 {
                return Err(OrderError::NotFound(id));
            }
            let noteid: i64 = sqlx::query_scalar(
                "INSERT INTO order_instance_notes (workflow_instanceid, username, note, created) \
                 VALUES ($1, $2, $3, $4) RETURNING noteid",
            )
            .bind(id)
            .bind(user)
            .bind(text)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            noteid
        });
        Ok(noteid)
    }

    /// Runs an action on an unowned order (see the module doc): the locking update with the
    /// action's precondition, then its changes, in one transaction.
    async fn act(&self, id: i64, action: Action) -> Result<StatusChange, OrderError> {
        let lock = format!(
            "UPDATE workflow_instance SET modified = $2 \
             WHERE workflow_instanceid = $1 AND sessionid = 0 AND ({}) \
             RETURNING workflowstatus, workflowid",
            action.condition
        );
        let update = action.set.map(|set| {
            format!(
                "UPDATE workflow_instance SET {set}, modified = $2 \
                 WHERE workflow_instanceid = $1 RETURNING workflowstatus"
            )
        });
        for _ in 0..ACTION_ATTEMPTS {
            let now = crate::now_ms();
            let done: Option<(String, String, i64)> = on_pool!(self, |pool| {
                let mut tx = pool.begin().await?;
                let locked: Option<(String, i64)> = sqlx::query_as(&lock)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                match locked {
                    // Dropping the transaction rolls back; refusal() says why.
                    None => None,
                    Some((old, workflowid)) => {
                        let mut new = old.clone();
                        if let Some(update) = &update {
                            new = sqlx::query_scalar(update)
                                .bind(id)
                                .bind(now)
                                .bind_params(&action.binds)
                                .fetch_one(&mut *tx)
                                .await?;
                        }
                        for sql in action.then {
                            sqlx::query(sql)
                                .bind(id)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                        }
                        match &action.extra {
                            Extra::None => {}
                            Extra::DynamicData(patch) => merge_dynamic_data!(tx, id, patch),
                            Extra::Keys(keys) => replace_keys!(tx, id, now, keys),
                            Extra::Skip { stepid, ind } => {
                                if let Some(status) =
                                    skip_in_tx!(tx, id, now, *stepid, *ind, &old, workflowid)
                                {
                                    new = status;
                                }
                            }
                        }
                        tx.commit().await?;
                        Some((old, new, workflowid))
                    }
                }
            });
            match done {
                Some((old, new, workflowid)) => {
                    return self.status_change(id, workflowid, old, new).await
                }
                None => {
                    if let Some(refused) = self.refusal(id, &action).await? {
                        return Err(refused);
                    }
                }
            }
        }
        Err(OrderError::Conflict(format!(
            "order {id} kept changing while trying to {}; try again",
            action.verb
        )))
    }

    /// Why an action's locking update matched no row; `None` when the order now meets the
    /// condition after all (it changed in between), so the action should be tried again.
    async fn refusal(&self, id: i64, action: &Action) -> Result<Option<OrderError>, OrderError> {
        let sql = format!(
            "SELECT workflowstatus, sessionid, owner, \
                    CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT) \
             FROM workflow_instance WHERE workflow_instanceid = $1",
            action.condition
        );
        let row: Option<(String, i64, Option<String>, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        let Some((status, session, owner, meets)) = row else {
            return Ok(Some(OrderError::NotFound(id)));
        };
        if session != 0 {
            return Ok(Some(OrderError::Status {
                id,
                status: status_name(&status).to_string(),
                reason: format!(
                    "a workflow process works on it ({} of session {session}); {} is refused \
                     until the process releases it",
                    owner.as_deref().unwrap_or("unknown process"),
                    action.verb
                ),
            }));
        }
        if meets == 1 {
            return Ok(None);
        }
        Ok(Some(OrderError::Status {
            id,
            status: status_name(&status).to_string(),
            reason: format!("{} needs {}", action.verb, action.expected),
        }))
    }

    async fn status_change(
        &self,
        id: i64,
        workflowid: i64,
        old: String,
        new: String,
    ) -> Result<StatusChange, OrderError> {
        let (name, version): (String, String) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, version FROM workflows WHERE workflowid = $1"
        )
        .bind(workflowid)
        .fetch_one(pool)
        .await?);
        Ok(StatusChange {
            workflow_instanceid: id,
            workflowid,
            name,
            version,
            old,
            new,
        })
    }
}

/// Adds a parameter and returns its placeholder.
fn param(binds: &mut Vec<Param>, bind: Param) -> String {
    binds.push(bind);
    format!("${}", binds.len())
}

fn check_priority(priority: i64) -> Result<(), String> {
    if (PRIORITY_HIGHEST..=PRIORITY_LOWEST).contains(&priority) {
        Ok(())
    } else {
        Err(format!(
            "priority {priority} is out of range: {PRIORITY_HIGHEST} (highest) to \
             {PRIORITY_LOWEST} (lowest)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_by_name_or_letter() {
        assert_eq!(status_name("E"), "ERROR");
        assert_eq!(status_name("?"), "UNKNOWN");
        assert_eq!(status_letter("async-waiting"), Some("A"));
        assert_eq!(status_letter("x"), Some("X"));
        assert_eq!(status_letter(" READY "), Some("Y"));
        assert_eq!(status_letter("DONE"), None);
        for (letter, name) in STATUSES {
            assert_eq!(status_letter(name), Some(*letter));
            assert_eq!(status_name(letter), *name);
        }
    }

    #[test]
    fn new_orders_take_qorus_shapes() {
        let order: NewOrder = serde_json::from_value(serde_json::json!({
            "name": "WF",
            "staticdata": {"a": 1},
            "orderkeys": {"order_id": 42, "tags": ["x", "y"]},
            "scheduled": "2030-01-01T00:00:00Z",
            "global_unique_key": {"order_id": "42"},
        }))
        .expect("valid");
        assert_eq!(order.orderkeys["order_id"], vec!["42"]);
        assert_eq!(order.orderkeys["tags"], vec!["x", "y"]);
        assert_eq!(order.scheduled, Some(1_893_456_000_000));
        assert_eq!(order.global_unique_key["order_id"], "42");

        for bad in [
            serde_json::json!({"name": "WF", "orderkey": {}}),
            serde_json::json!({"name": "WF", "orderkeys": {"k": {"nested": 1}}}),
            serde_json::json!({"name": "WF", "scheduled": "tomorrow"}),
        ] {
            assert!(
                serde_json::from_value::<NewOrder>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1000"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(parse_time("now").is_ok_and(|t| t > 0));
        assert!(parse_time("soon").is_err());
        assert_eq!(format_time(1000), "1970-01-01T00:00:01Z");
        let now = crate::now_ms();
        assert_eq!(parse_time(&format_time(now)), Ok(now));
    }
}
