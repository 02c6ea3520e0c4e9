//! What a workflow process reads and writes while it runs orders.
//!
//! - [`Store::load_program`]: a workflow's steps, their code and dependencies, and the
//!   errors it declares, as one snapshot (a reset loads it again).
//! - [`Store::claim_orders`]: takes a batch of runnable orders for one process, atomically,
//!   so two processes of one workflow never run the same order.
//! - [`Store::commit_transitions`]: writes the outcome of many orders' steps in one
//!   transaction (group commit). Nothing is acted upon before its transition is committed.
//!
//! Every write is guarded by ownership (`sessionid` and `owner`): an order that recovery
//! took from this process (because the master thought it dead) is not written to, and the
//! caller learns it lost the order.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{on_pool, Store, StoreError};

/// One step of a workflow as the engine runs it.
#[derive(Debug, Clone)]
pub struct ProgramStep {
    pub stepid: i64,
    pub name: String,
    pub version: String,
    pub steptype: String,
    pub class_name: String,
    pub base_class_name: String,
    pub code_hash: String,
    pub source: String,
    /// Steps that must be COMPLETE before this one runs.
    pub depends_on: Vec<i64>,
}

/// How the engine treats an error raised by a step: a declared error of the workflow, a
/// global one, or the default for an unknown name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPolicy {
    pub name: String,
    pub description: Option<String>,
    pub severity: String,
    /// RETRY (true) or ERROR.
    pub retry: bool,
    pub business: bool,
    pub retry_delay_secs: Option<i64>,
}

/// A loaded workflow: what its process runs.
#[derive(Debug, Clone)]
pub struct WorkflowProgram {
    pub workflowid: i64,
    pub name: String,
    pub version: String,
    pub keylist: Vec<String>,
    pub steps: Vec<ProgramStep>,
    /// Declared errors by name: the workflow's own, then global definitions it does not
    /// override.
    pub errors: HashMap<String, ErrorPolicy>,
}

impl WorkflowProgram {
    pub fn step(&self, stepid: i64) -> Option<&ProgramStep> {
        self.steps.iter().find(|s| s.stepid == stepid)
    }
}

/// A step's row as a claimed order has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepState {
    pub stepid: i64,
    pub ind: i64,
    pub status: String,
    pub retries: i64,
    pub skip: bool,
}

/// An order this process now owns.
#[derive(Debug, Clone)]
pub struct ClaimedOrder {
    pub id: i64,
    /// The owner token this claim stamped (what [`OrderTransition::claim`] repeats).
    pub claim: String,
    pub priority: i64,
    /// The status the order had before the claim (READY, RETRY or SCHEDULED).
    pub previous_status: String,
    pub staticdata: Value,
    pub dynamicdata: Value,
    pub keys: BTreeMap<String, Vec<String>>,
    /// Steps that ran before (rows exist only for steps that were started).
    pub steps: Vec<StepState>,
}

/// A step row to write.
#[derive(Debug, Clone)]
pub struct StepWrite {
    pub stepid: i64,
    pub ind: i64,
    pub status: &'static str,
    pub retries: i64,
    pub skip: bool,
    pub started: i64,
    pub completed: Option<i64>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub error_info: Option<String>,
    pub business_error: bool,
}

/// An error_instance row to add.
#[derive(Debug, Clone)]
pub struct ErrorWrite {
    pub stepid: i64,
    pub ind: i64,
    pub error: String,
    pub description: Option<String>,
    pub info: Option<String>,
    pub severity: String,
    pub retry: bool,
    pub business: bool,
}

/// A change of the order's own status.
#[derive(Debug, Clone)]
pub struct OrderWrite {
    pub status: &'static str,
    /// For RETRY: when it may run again; `None` means at once.
    pub retry_trigger: Option<i64>,
    pub completed: Option<i64>,
    pub business_error: bool,
    /// Gives the order up (sessionid 0, no owner): it ends here for this process.
    pub release: bool,
}

/// Everything one commit writes for one order.
#[derive(Debug, Clone, Default)]
pub struct OrderTransition {
    pub id: i64,
    /// The token the order was claimed with ([`ClaimedOrder::claim`]); empty means the
    /// committing [`Owner`]'s token. The write happens only while the order still carries
    /// it, so the task of an earlier claim of the same order by the same process (recovery
    /// took it, and the process claimed it again) can never write.
    pub claim: String,
    pub steps: Vec<StepWrite>,
    pub errors: Vec<ErrorWrite>,
    /// The whole new dynamic data.
    pub dynamicdata: Option<String>,
    /// Order keys to set: each named key's values are replaced.
    pub keys: Vec<(String, Vec<String>)>,
    pub order: Option<OrderWrite>,
}

/// Who owns the orders a claim takes and a commit writes.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The master's live session (it changes when a new master adopts the process).
    pub session: i64,
    pub network_id: &'a str,
    /// The token a claim stamps on the orders it takes (see migration 0004): unique to the
    /// process incarnation and to the claim.
    pub token: &'a str,
}

/// Static and dynamic data, keys, and step rows of claimed orders.
type ClaimedRows = (
    Vec<(i64, String, String)>,
    Vec<(i64, String, String)>,
    Vec<(i64, i64, i64, String, i64, bool)>,
);

/// Rows one multi-row statement carries. Small on purpose: binding a `$n` parameter makes
/// SQLite search the statement's parameter names linearly (`sqlite3_bind_parameter_name`),
/// so a statement's binding cost grows with the square of its parameters; at 400 rows
/// that search was a quarter of the engine's CPU (perf), at 64 it is negligible.
const ROWS_PER_STATEMENT: usize = 64;

/// `n` rows of a VALUES list; `row(p)` writes one row whose first parameter is `$p`. The
/// first row's parameters start at `$first`, each row takes `per_row` parameters.
fn values(n: usize, first: usize, row: impl Fn(usize) -> String, per_row: usize) -> String {
    (0..n)
        .map(|i| row(first + i * per_row))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most ids one `IN (...)` list carries.
const MAX_IDS_PER_STATEMENT: usize = 500;

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Loads workflow `name:version` with its steps' code and its errors. `None` when no
    /// such workflow is loaded.
    pub async fn load_program(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<WorkflowProgram>, StoreError> {
        let row: Option<(i64, Option<String>)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT workflowid, keylist FROM workflows WHERE name = $1 AND version = $2"
        )
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await?);
        let Some((workflowid, keylist)) = row else {
            return Ok(None);
        };
        type StepRow = (
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let rows: Vec<StepRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT s.stepid, s.name, s.version, s.steptype, s.class_name, s.base_class_name, \
                    s.code_hash, c.source, ws.depends_on \
             FROM workflow_steps ws JOIN steps s ON s.stepid = ws.stepid \
             LEFT JOIN code c ON c.code_hash = s.code_hash \
             WHERE ws.workflowid = $1 ORDER BY ws.position, s.stepid"
        )
        .bind(workflowid)
        .fetch_all(pool)
        .await?);
        let mut steps = Vec::with_capacity(rows.len());
        for (stepid, sname, sversion, steptype, class, base, hash, source, deps) in rows {
            let depends_on: Vec<i64> = serde_json::from_str(&deps).map_err(|e| {
                StoreError::Invalid(format!(
                    "step {sname}:{sversion} of workflow {name}:{version} has unreadable \
                     dependencies {deps:?}: {e}"
                ))
            })?;
            let missing = |what: &str| {
                StoreError::Invalid(format!(
                    "step {sname}:{sversion} of workflow {name}:{version} has no {what}; \
                     load it again with `sluice load`"
                ))
            };
            steps.push(ProgramStep {
                stepid,
                class_name: class.ok_or_else(|| missing("class name"))?,
                base_class_name: base.unwrap_or_else(|| "QorusNormalStep".into()),
                code_hash: hash.ok_or_else(|| missing("code"))?,
                source: source.ok_or_else(|| missing("code"))?,
                name: sname,
                version: sversion,
                steptype,
                depends_on,
            });
        }
        type ErrorRow = (
            Option<i64>,
            String,
            Option<String>,
            String,
            String,
            bool,
            Option<i64>,
        );
        let rows: Vec<ErrorRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT workflowid, error, description, severity, status, business_error, \
                    retry_delay_secs \
             FROM workflow_errors WHERE workflowid = $1 OR workflowid IS NULL \
             ORDER BY workflowid NULLS FIRST"
        )
        .bind(workflowid)
        .fetch_all(pool)
        .await?);
        // Global definitions first, so the workflow's own replace them.
        let mut errors = HashMap::new();
        for (_, error, description, severity, status, business, delay) in rows {
            errors.insert(
                error.clone(),
                ErrorPolicy {
                    name: error,
                    description,
                    severity,
                    retry: status == "R",
                    business,
                    retry_delay_secs: delay,
                },
            );
        }
        let keylist = match keylist {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Some(WorkflowProgram {
            workflowid,
            name: name.to_string(),
            version: version.to_string(),
            keylist,
            steps,
            errors,
        }))
    }

    /// Claims up to `limit` runnable orders of `workflowid` for `owner`: READY, SCHEDULED
    /// whose time has come, and RETRY whose retry time has come, by priority then age. Each
    /// becomes IN-PROGRESS with its segment, in one transaction. On PostgreSQL, rows another
    /// process is claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`); on
    /// SQLite the single UPDATE statement is atomic against every other writer.
    pub async fn claim_orders(
        &self,
        workflowid: i64,
        owner: Owner<'_>,
        limit: u32,
    ) -> Result<Vec<ClaimedOrder>, StoreError> {
        let now = crate::now_ms();
        let (lock, materialized, share) = match self.backend() {
            super::Backend::Sqlite => ("", "", ""),
            super::Backend::Postgres => (" FOR UPDATE SKIP LOCKED", "MATERIALIZED", " FOR SHARE"),
        };
        // The inner query repeats workflow_instance_runnable's condition verbatim. Orders
        // are stamped only with a live session: a process that has not yet learnt the
        // session of the master that adopted it claims nothing, rather than stamping orders
        // with a recovered session that no recovery would look at again.
        // The pick is a materialized CTE: as a plain `IN (SELECT ... LIMIT n FOR UPDATE
        // SKIP LOCKED)` PostgreSQL may run the subquery once per row, each run skipping
        // the rows already locked, and so claim far more than `limit`.
        let claim = format!(
            "WITH picked AS {materialized} (SELECT workflow_instanceid FROM workflow_instance \
                 WHERE workflowid = $4 AND sessionid = 0 AND workflowstatus IN ('Y', 'R', 'S') \
                 AND (retry_trigger IS NULL OR retry_trigger <= $3) \
                 AND (scheduled IS NULL OR scheduled <= $3) \
                 ORDER BY priority, workflow_instanceid LIMIT $5{lock}) \
             UPDATE workflow_instance SET workflowstatus = 'I', \
                 status_orig = workflowstatus, sessionid = $1, owner = $2, owner_token = $6, \
                 retry_trigger = NULL, modified = $3 \
             WHERE workflow_instanceid IN (SELECT workflow_instanceid FROM picked) \
             AND sessionid = 0 \
             AND EXISTS (SELECT 1 FROM sessions WHERE sessionid = $1 AND status = 'ACTIVE'{share}) \
             RETURNING workflow_instanceid, priority, status_orig"
        );
        let mut claimed: Vec<(i64, i64, Option<String>)> = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let rows: Vec<(i64, i64, Option<String>)> = sqlx::query_as(&claim)
                .bind(owner.session)
                .bind(owner.network_id)
                .bind(now)
                .bind(workflowid)
                .bind(i64::from(limit))
                .bind(owner.token)
                .fetch_all(&mut *tx)
                .await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let list = values(chunk.len(), 2, |p| format!("(${p}, 0, 'I', $1, $1)"), 1);
                let sql = format!(
                    "INSERT INTO segment_instance \
                         (workflow_instanceid, segmentid, segmentstatus, created, modified) \
                     VALUES {list} \
                     ON CONFLICT (workflow_instanceid, segmentid) \
                     DO UPDATE SET segmentstatus = 'I', modified = excluded.modified"
                );
                let mut q = sqlx::query(&sql).bind(now);
                for (id, _, _) in chunk {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            rows
        });
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        claimed.sort_by_key(|(id, priority, _)| (*priority, *id));
        let ids: Vec<i64> = claimed.iter().map(|(id, _, _)| *id).collect();
        let mut data: HashMap<i64, (String, String)> = HashMap::with_capacity(ids.len());
        let mut keys: HashMap<i64, BTreeMap<String, Vec<String>>> = HashMap::new();
        let mut steps: HashMap<i64, Vec<StepState>> = HashMap::new();
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            let list = placeholders(1, chunk.len());
            let data_sql = format!(
                "SELECT workflow_instanceid, staticdata, dynamicdata FROM order_instance \
                 WHERE workflow_instanceid IN ({list})"
            );
            let keys_sql = format!(
                "SELECT workflow_instanceid, keyname, value FROM order_instance_keys \
                 WHERE workflow_instanceid IN ({list}) ORDER BY keyname, value"
            );
            let steps_sql = format!(
                "SELECT workflow_instanceid, stepid, ind, stepstatus, retries, skip \
                 FROM step_instance WHERE workflow_instanceid IN ({list})"
            );
            let (d, k, s): ClaimedRows = on_pool!(self, |pool| {
                let mut q1 = sqlx::query_as(&data_sql);
                let mut q2 = sqlx::query_as(&keys_sql);
                let mut q3 = sqlx::query_as(&steps_sql);
                for id in chunk {
                    q1 = q1.bind(id);
                    q2 = q2.bind(id);
                    q3 = q3.bind(id);
                }
                (
                    q1.fetch_all(pool).await?,
                    q2.fetch_all(pool).await?,
                    q3.fetch_all(pool).await?,
                )
            });
            for (id, staticdata, dynamicdata) in d {
                data.insert(id, (staticdata, dynamicdata));
            }
            for (id, name, value) in k {
                keys.entry(id)
                    .or_default()
                    .entry(name)
                    .or_default()
                    .push(value);
            }
            for (id, stepid, ind, status, retries, skip) in s {
                steps.entry(id).or_default().push(StepState {
                    stepid,
                    ind,
                    status,
                    retries,
                    skip,
                });
            }
        }
        let parse = |id: i64, what: &str, text: &str| -> Value {
            serde_json::from_str(text).unwrap_or_else(|e| {
                tracing::error!("order {id}: unreadable {what} ({e}); using an empty object");
                Value::Object(Default::default())
            })
        };
        Ok(claimed
            .into_iter()
            .map(|(id, priority, previous)| {
                let (staticdata, dynamicdata) = data.remove(&id).unwrap_or_default();
                ClaimedOrder {
                    id,
                    claim: owner.token.to_string(),
                    priority,
                    previous_status: previous.unwrap_or_else(|| "Y".into()),
                    staticdata: parse(id, "static data", &staticdata),
                    dynamicdata: parse(id, "dynamic data", &dynamicdata),
                    keys: keys.remove(&id).unwrap_or_default(),
                    steps: steps.remove(&id).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Writes `transitions` in one transaction. Returns the ids of orders this process no
    /// longer owns (nothing was written for them); the caller must stop working on them.
    ///
    /// A handful of statements per transaction, whatever the number of orders: each kind of
    /// row (orders, segments, steps, errors, dynamic data) is written by one multi-row
    /// statement per chunk. A statement per row made the round trips to SQLite's worker
    /// thread, not the disk, the engine's bottleneck.
    pub async fn commit_transitions(
        &self,
        owner: Owner<'_>,
        transitions: &[OrderTransition],
    ) -> Result<Vec<i64>, StoreError> {
        if transitions.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::now_ms();
        // Per order, the last of each kind of write wins: transitions arrive in the order
        // they were made.
        let mut ids: Vec<i64> = transitions.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut orders: HashMap<i64, &OrderWrite> = HashMap::new();
        let mut claims: HashMap<i64, &str> = HashMap::new();
        let mut data: HashMap<i64, &str> = HashMap::new();
        let mut steps: BTreeMap<(i64, i64, i64), &StepWrite> = BTreeMap::new();
        for t in transitions {
            let claim = if t.claim.is_empty() {
                owner.token
            } else {
                t.claim.as_str()
            };
            claims.insert(t.id, claim);
            if let Some(o) = &t.order {
                orders.insert(t.id, o);
            }
            if let Some(d) = &t.dynamicdata {
                data.insert(t.id, d);
            }
            for step in &t.steps {
                steps.insert((t.id, step.stepid, step.ind), step);
            }
        }
        let lost = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // 1. Ownership and the orders' own status, in id order (recovery locks in the
            // same order). RETURNING names the orders still ours; nothing else is written
            // for the others.
            let mut owned: std::collections::HashSet<i64> = std::collections::HashSet::new();
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let rows = values(
                    chunk.len(),
                    3,
                    |p| {
                        format!(
                            "(CAST(${} AS BIGINT), CAST(${} AS BOOLEAN), CAST(${} AS TEXT), \
                         CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BOOLEAN), \
                         CAST(${} AS BOOLEAN), CAST(${} AS TEXT))",
                            p,
                            p + 1,
                            p + 2,
                            p + 3,
                            p + 4,
                            p + 5,
                            p + 6,
                            p + 7
                        )
                    },
                    8,
                );
                let sql = format!(
                    "UPDATE workflow_instance AS w SET \
                         workflowstatus = CASE WHEN v.column2 THEN v.column3 ELSE w.workflowstatus END, \
                         retry_trigger = CASE WHEN v.column2 THEN v.column4 ELSE w.retry_trigger END, \
                         completed = COALESCE(v.column5, w.completed), \
                         business_error = CASE WHEN v.column2 THEN v.column6 ELSE w.business_error END, \
                         status_orig = CASE WHEN v.column2 THEN NULL ELSE w.status_orig END, \
                         sessionid = CASE WHEN v.column7 THEN 0 ELSE w.sessionid END, \
                         owner = CASE WHEN v.column7 THEN NULL ELSE w.owner END, \
                         owner_token = CASE WHEN v.column7 THEN NULL ELSE w.owner_token END, \
                         modified = $1 \
                     FROM (VALUES {rows}) AS v \
                     WHERE w.workflow_instanceid = v.column1 AND w.owner_token = v.column8 \
                         AND w.owner = $2 \
                     RETURNING workflow_instanceid"
                );
                let mut q = sqlx::query_scalar::<_, i64>(&sql)
                    .bind(now)
                    .bind(owner.network_id);
                for id in chunk {
                    let o = orders.get(id);
                    q = q
                        .bind(*id)
                        .bind(o.is_some())
                        .bind(o.map(|o| o.status))
                        .bind(o.and_then(|o| o.retry_trigger))
                        .bind(o.and_then(|o| o.completed))
                        .bind(o.is_some_and(|o| o.business_error))
                        .bind(o.is_some_and(|o| o.release))
                        .bind(claims.get(id).copied().unwrap_or(owner.token));
                }
                owned.extend(q.fetch_all(&mut *tx).await?);
            }
            // 2. Segments follow their order's status.
            let seg: Vec<(i64, &str)> = ids
                .iter()
                .filter(|id| owned.contains(id))
                .filter_map(|id| orders.get(id).map(|o| (*id, o.status)))
                .collect();
            for chunk in seg.chunks(ROWS_PER_STATEMENT) {
                let rows = values(
                    chunk.len(),
                    2,
                    |p| format!("(CAST(${p} AS BIGINT), CAST(${} AS TEXT))", p + 1),
                    2,
                );
                let sql = format!(
                    "UPDATE segment_instance AS s SET segmentstatus = v.column2, modified = $1 \
                     FROM (VALUES {rows}) AS v \
                     WHERE s.workflow_instanceid = v.column1 AND s.segmentid = 0"
                );
                let mut q = sqlx::query(&sql).bind(now);
                for (id, status) in chunk {
                    q = q.bind(*id).bind(*status);
                }
                q.execute(&mut *tx).await?;
            }
            // 3. Steps.
            let step_rows: Vec<(&(i64, i64, i64), &&StepWrite)> = steps
                .iter()
                .filter(|((id, _, _), _)| owned.contains(id))
                .collect();
            for chunk in step_rows.chunks(ROWS_PER_STATEMENT / 4) {
                let rows = values(
                    chunk.len(),
                    2,
                    |p| {
                        let cols: Vec<String> = (p..p + 12).map(|i| format!("${i}")).collect();
                        format!("({}, $1)", cols.join(", "))
                    },
                    12,
                );
                let sql = format!(
                    "INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, \
                         retries, skip, started, completed, error, error_description, error_info, \
                         business_error, modified) \
                     VALUES {rows} \
                     ON CONFLICT (workflow_instanceid, stepid, ind) DO UPDATE SET \
                         stepstatus = excluded.stepstatus, retries = excluded.retries, \
                         skip = excluded.skip, started = excluded.started, \
                         completed = excluded.completed, error = excluded.error, \
                         error_description = excluded.error_description, \
                         error_info = excluded.error_info, \
                         business_error = excluded.business_error, modified = excluded.modified"
                );
                let mut q = sqlx::query(&sql).bind(now);
                for ((id, _, _), s) in chunk {
                    q = q
                        .bind(*id)
                        .bind(s.stepid)
                        .bind(s.ind)
                        .bind(s.status)
                        .bind(s.retries)
                        .bind(s.skip)
                        .bind(s.started)
                        .bind(s.completed)
                        .bind(&s.error)
                        .bind(&s.error_description)
                        .bind(&s.error_info)
                        .bind(s.business_error);
                }
                q.execute(&mut *tx).await?;
            }
            // 4. Error history.
            let errors: Vec<(i64, &ErrorWrite)> = transitions
                .iter()
                .filter(|t| owned.contains(&t.id))
                .flat_map(|t| t.errors.iter().map(move |e| (t.id, e)))
                .collect();
            for chunk in errors.chunks(ROWS_PER_STATEMENT / 4) {
                let rows = values(
                    chunk.len(),
                    2,
                    |p| {
                        let cols: Vec<String> = (p..p + 9).map(|i| format!("${i}")).collect();
                        format!("({}, $1)", cols.join(", "))
                    },
                    9,
                );
                let sql = format!(
                    "INSERT INTO error_instance (workflow_instanceid, stepid, ind, error, \
                         description, info, severity, retry, business_error, created) \
                     VALUES {rows}"
                );
                let mut q = sqlx::query(&sql).bind(now);
                for (id, e) in chunk {
                    q = q
                        .bind(*id)
                        .bind(e.stepid)
                        .bind(e.ind)
                        .bind(&e.error)
                        .bind(&e.description)
                        .bind(&e.info)
                        .bind(&e.severity)
                        .bind(e.retry)
                        .bind(e.business);
                }
                q.execute(&mut *tx).await?;
            }
            // 5. Dynamic data.
            let mut dyn_rows: Vec<(i64, &str)> = data
                .iter()
                .filter(|(id, _)| owned.contains(id))
                .map(|(id, d)| (*id, *d))
                .collect();
            dyn_rows.sort_unstable_by_key(|(id, _)| *id);
            for chunk in dyn_rows.chunks(ROWS_PER_STATEMENT) {
                let rows = values(
                    chunk.len(),
                    1,
                    |p| format!("(CAST(${p} AS BIGINT), CAST(${} AS TEXT))", p + 1),
                    2,
                );
                let sql = format!(
                    "UPDATE order_instance AS o SET dynamicdata = v.column2 \
                     FROM (VALUES {rows}) AS v WHERE o.workflow_instanceid = v.column1"
                );
                let mut q = sqlx::query(&sql);
                for (id, d) in chunk {
                    q = q.bind(*id).bind(*d);
                }
                q.execute(&mut *tx).await?;
            }
            // 6. Order keys (rare: setOrderKeys from user code).
            let del_key_sql = "DELETE FROM order_instance_keys \
                 WHERE workflow_instanceid = $1 AND keyname = $2";
            let key_sql = "INSERT INTO order_instance_keys \
                 (workflow_instanceid, keyname, value, created) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            for t in transitions.iter().filter(|t| owned.contains(&t.id)) {
                for (name, vals) in &t.keys {
                    sqlx::query(del_key_sql)
                        .bind(t.id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    for value in vals {
                        sqlx::query(key_sql)
                            .bind(t.id)
                            .bind(name)
                            .bind(value)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
            ids.iter()
                .copied()
                .filter(|id| !owned.contains(id))
                .collect::<Vec<i64>>()
        });
        Ok(lost)
    }

    /// Hands back every order `owner` holds that is still IN-PROGRESS, as RETRY to run again
    /// at once: what a process does when it stops with work claimed but not finished.
    pub async fn release_orders(&self, owner: Owner<'_>) -> Result<u64, StoreError> {
        let counts = self
            .recover_process(owner.session, owner.network_id, 5000, &mut |_| {})
            .await?;
        Ok(counts.orders)
    }
}
