//! Interface definitions in the database: what `sluice load` writes, lists and deletes.
//!
//! A load is one transaction: every definition of the batch is written, or none. References
//! (a workflow's steps, its errors definition) are resolved against the batch first, then
//! against what earlier loads stored; an unresolved one fails the load with the file and
//! line that names it. Code is stored once per content hash.

use std::collections::HashMap;

use sqlx::Row;

use crate::interfaces::{
    Code, Definition, Diagnostic, ErrorsDef, JobDef, Loaded, ServiceDef, StepDef, WorkflowDef,
};
use crate::schedule::Schedule;

use super::params::{row_holds, BindParams, Param};
use super::{on_pool, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// References that neither the batch nor the database defines.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Unresolved(Vec<Diagnostic>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DefinitionError {
    fn from(err: sqlx::Error) -> Self {
        DefinitionError::Store(StoreError::Sql(err))
    }
}

/// What a load did, one line per definition, e.g. `created step Validate:1.0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub lines: Vec<String>,
}

/// A stored definition, for `sluice load --list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDefinition {
    pub kind: String,
    pub name: String,
    pub version: String,
    pub modified: i64,
}

fn change(existing: bool, same: bool) -> &'static str {
    match (existing, same) {
        (false, _) => "created",
        (true, true) => "unchanged",
        (true, false) => "updated",
    }
}

fn errors_json(def: &ErrorsDef) -> String {
    serde_json::Value::Array(
        def.errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "desc": e.desc, "severity": e.severity, "status": e.status,
                    "business": e.business, "retry_delay_secs": e.retry_delay_secs, "level": e.level,
                })
            })
            .collect(),
    )
    .to_string()
}

/// The first 12 hex digits of a code hash, as load reports show it.
fn short_hash(code: &Code) -> &str {
    &code.hash[..12.min(code.hash.len())]
}

type MethodRow = (String, Option<String>, String, bool, bool);

fn method_rows(svc: &ServiceDef) -> Vec<MethodRow> {
    let mut rows: Vec<MethodRow> = svc
        .methods
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.desc.clone(),
                m.lock.clone(),
                m.internal,
                m.write,
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A job's schedule as the jobs table holds it: the five cron fields as written, or the
/// period in seconds.
struct ScheduleColumns {
    cron: [Option<String>; 5],
    recurring: Option<i64>,
}

fn schedule_columns(schedule: &Schedule) -> ScheduleColumns {
    match schedule {
        Schedule::Cron(cron) => ScheduleColumns {
            cron: cron.fields().map(|f| Some(f.to_string())),
            recurring: None,
        },
        Schedule::Recurring(period) => ScheduleColumns {
            cron: Default::default(),
            recurring: Some(i64::try_from(period.as_secs()).unwrap_or(i64::MAX)),
        },
    }
}

// Shared by loads, which replace what these delete, and by `delete_definition`.
const DELETE_SERVICE_METHODS: &str = "DELETE FROM service_methods WHERE serviceid = $1";
const DELETE_WORKFLOW_GROUPS: &str =
    "DELETE FROM group_members WHERE object_type = 'workflow' AND object_id = $1";
const DELETE_SERVICE_GROUPS: &str =
    "DELETE FROM group_members WHERE object_type = 'service' AND object_id = $1";
const DELETE_JOB_GROUPS: &str =
    "DELETE FROM group_members WHERE object_type = 'job' AND object_id = $1";

/// A definition's row in its table, found by name and version. `columns` are what a load
/// writes besides `name`, `version`, `created` and `modified`: the insert, the update and
/// the "unchanged" check are all made from this one list, so they cannot disagree.
struct DefinitionRow<'a> {
    /// 'step', 'service', 'job' or 'workflow', as load reports and group members name it.
    kind: &'static str,
    table: &'static str,
    /// The id column, e.g. `stepid`.
    id: &'static str,
    name: &'a str,
    version: &'a str,
    columns: Vec<(&'static str, Param)>,
    /// More of the update's SET list: state of the stored row that a new definition voids.
    reset: &'static [&'static str],
    /// Run after the update with the row's id as `$1`: they delete the rows that the new
    /// definition's replace.
    replaced: &'static [&'static str],
}

impl DefinitionRow<'_> {
    /// A line of the load report, e.g. `created step Validate:1.0 (code 0123abcd4567)`.
    fn report(&self, existing: bool, same: bool, detail: &str) -> String {
        format!(
            "{} {} {}:{} ({detail})",
            change(existing, same),
            self.kind,
            self.name,
            self.version
        )
    }

    fn values(&self) -> impl Iterator<Item = &Param> {
        self.columns.iter().map(|(_, value)| value)
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(column, _)| *column).collect();
        names.join(", ")
    }

    /// The stored row (its id, then the columns); takes name and version.
    fn select_sql(&self) -> String {
        format!(
            "SELECT {}, {} FROM {} WHERE name = $1 AND version = $2",
            self.id,
            self.column_list(),
            self.table
        )
    }

    /// Takes the columns, the time (`modified`) and the row's id.
    fn update_sql(&self) -> String {
        let n = self.columns.len();
        let set: Vec<String> = (1..)
            .zip(&self.columns)
            .map(|(i, (column, _))| format!("{column} = ${i}"))
            .chain(self.reset.iter().map(|s| s.to_string()))
            .collect();
        format!(
            "UPDATE {} SET {}, modified = ${} WHERE {} = ${}",
            self.table,
            set.join(", "),
            n + 1,
            self.id,
            n + 2
        )
    }

    /// Takes name, version, the columns and the time (`created` and `modified`); returns
    /// the new row's id.
    fn insert_sql(&self) -> String {
        let now = self.columns.len() + 3;
        let values: Vec<String> = (1..now).map(|i| format!("${i}")).collect();
        format!(
            "INSERT INTO {} (name, version, {}, created, modified) \
             VALUES ({}, ${now}, ${now}) RETURNING {}",
            self.table,
            self.column_list(),
            values.join(", "),
            self.id
        )
    }
}

fn step_row(step: &StepDef) -> DefinitionRow<'_> {
    DefinitionRow {
        kind: "step",
        table: "steps",
        id: "stepid",
        name: &step.name,
        version: &step.version,
        columns: vec![
            ("description", Param::Text(step.desc.clone())),
            ("steptype", Param::text(&step.steptype)),
            ("lang", Param::text(&step.lang)),
            ("base_class_name", Param::text(&step.base_class_name)),
            ("class_name", Param::text(&step.class_name)),
            ("code_hash", Param::text(&step.code.hash)),
        ],
        reset: &[],
        replaced: &[],
    }
}

fn service_row(svc: &ServiceDef) -> DefinitionRow<'_> {
    DefinitionRow {
        kind: "service",
        table: "services",
        id: "serviceid",
        name: &svc.name,
        version: &svc.version,
        columns: vec![
            ("description", Param::Text(svc.desc.clone())),
            ("service_type", Param::text(&svc.servicetype)),
            ("autostart", Param::Bool(svc.autostart)),
            ("lang", Param::text(&svc.lang)),
            ("class_name", Param::text(&svc.class_name)),
            ("code_hash", Param::text(&svc.code.hash)),
        ],
        reset: &[],
        // The service's state data stays.
        replaced: &[DELETE_SERVICE_METHODS, DELETE_SERVICE_GROUPS],
    }
}

fn job_row(job: &JobDef) -> DefinitionRow<'_> {
    let ScheduleColumns { cron, recurring } = schedule_columns(&job.schedule);
    let [minute, hour, day, month, wday] = cron.map(Param::Text);
    DefinitionRow {
        kind: "job",
        table: "jobs",
        id: "jobid",
        name: &job.name,
        version: &job.version,
        columns: vec![
            ("description", Param::Text(job.desc.clone())),
            ("lang", Param::text(&job.lang)),
            ("class_name", Param::text(&job.class_name)),
            ("code_hash", Param::text(&job.code.hash)),
            ("active", Param::Bool(job.active)),
            ("run_skipped", Param::Bool(job.run_skipped)),
            ("minute", minute),
            ("hour", hour),
            ("day", day),
            ("month", month),
            ("wday", wday),
            ("recurring", Param::Int(recurring)),
            ("expiry_date", Param::Int(job.expiry_date)),
        ],
        // The run history (last_executed, ...) stays; next_trigger is cleared so that the
        // job engine computes it from the new schedule.
        reset: &["next_trigger = NULL"],
        replaced: &[DELETE_JOB_GROUPS],
    }
}

fn workflow_row(wf: &WorkflowDef) -> DefinitionRow<'_> {
    let keylist = serde_json::to_string(&wf.keylist).unwrap_or_else(|_| "[]".into());
    let options = serde_json::Value::Object(wf.options.clone()).to_string();
    DefinitionRow {
        kind: "workflow",
        table: "workflows",
        id: "workflowid",
        name: &wf.name,
        version: &wf.version,
        columns: vec![
            ("description", Param::Text(wf.desc.clone())),
            ("autostart", Param::Int(Some(wf.autostart))),
            ("max_instances", Param::Int(Some(wf.max_instances))),
            ("keylist", Param::Text(Some(keylist))),
            ("options", Param::Text(Some(options))),
        ],
        reset: &[],
        // The new definition brings its own graph, errors and groups.
        replaced: &[
            "DELETE FROM workflow_steps WHERE workflowid = $1",
            "DELETE FROM workflow_errors WHERE workflowid = $1",
            DELETE_WORKFLOW_GROUPS,
        ],
    }
}

// The helpers below run in a load's transaction `$tx`, of either backend, so they are
// macros like `load_in_tx!`: the two backends' transactions share no type.

/// Stores code once per hash.
macro_rules! store_code {
    ($tx:ident, $lang:expr, $code:expr, $now:expr) => {{
        let code: &Code = $code;
        sqlx::query(
            "INSERT INTO code (code_hash, lang, source, created) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (code_hash) DO NOTHING",
        )
        .bind(&code.hash)
        .bind($lang)
        .bind(&code.source)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// The stored row of a [`DefinitionRow`]'s name and version, if any: its id, and whether it
/// holds the row's columns already.
macro_rules! stored_row {
    ($tx:ident, $row:expr) => {{
        let row: &DefinitionRow = $row;
        let sql = row.select_sql();
        let stored = sqlx::query(&sql)
            .bind(row.name)
            .bind(row.version)
            .fetch_optional(&mut *$tx)
            .await?;
        match stored {
            None => None,
            Some(stored) => Some((
                stored.try_get::<i64, _>(0)?,
                row_holds(&stored, 1, row.values())?,
            )),
        }
    }};
}

/// Writes a [`DefinitionRow`]: updates the stored row `$existing` and deletes what the new
/// definition replaces, or inserts a row. Evaluates to the row's id.
macro_rules! write_row {
    ($tx:ident, $row:expr, $existing:expr, $now:expr) => {{
        let (row, existing, now): (&DefinitionRow, Option<i64>, i64) = ($row, $existing, $now);
        match existing {
            Some(id) => {
                let sql = row.update_sql();
                sqlx::query(&sql)
                    .bind_params(row.values())
                    .bind(now)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                for sql in row.replaced {
                    sqlx::query(sql).bind(id).execute(&mut *$tx).await?;
                }
                id
            }
            None => {
                let sql = row.insert_sql();
                let id: i64 = sqlx::query_scalar(&sql)
                    .bind(row.name)
                    .bind(row.version)
                    .bind_params(row.values())
                    .bind(now)
                    .fetch_one(&mut *$tx)
                    .await?;
                id
            }
        }
    }};
}

/// Whether an interface belongs to exactly `$groups` (`$kind`: 'workflow', 'service' or
/// 'job').
macro_rules! in_groups {
    ($tx:ident, $kind:expr, $id:expr, $groups:expr) => {{
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM group_members WHERE object_type = $1 AND object_id = $2 \
             ORDER BY group_name",
        )
        .bind($kind)
        .bind($id)
        .fetch_all(&mut *$tx)
        .await?;
        let mut groups: Vec<&String> = $groups.iter().collect();
        groups.sort();
        stored.iter().eq(groups)
    }};
}

/// Makes an interface a member of each group, creating the groups that do not exist yet.
macro_rules! join_groups {
    ($tx:ident, $groups:expr, $kind:expr, $id:expr, $now:expr) => {{
        for group in $groups {
            let group: &String = group;
            sqlx::query(
                "INSERT INTO groups (name, description, enabled, created, modified) \
                 VALUES ($1, 'created by sluice load', TRUE, $2, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(group)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO group_members (group_name, object_type, object_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(group)
            .bind($kind)
            .bind($id)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

/// The body of a load, written once for both backends (`$tx` is a transaction of either).
macro_rules! load_in_tx {
    ($tx:ident, $store_steps:expr, $errors:expr, $services:expr, $jobs:expr, $workflows:expr, $now:expr) => {{
        let mut lines = Vec::new();
        let mut step_ids: HashMap<(String, String), i64> = HashMap::new();
        for step in $store_steps {
            let step: &StepDef = step;
            store_code!($tx, &step.lang, &step.code, $now);
            let existing: Option<(i64, Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT stepid, code_hash, class_name FROM steps WHERE name = $1 AND version = $2",
            )
            .bind(&step.name)
            .bind(&step.version)
            .fetch_optional(&mut *$tx)
            .await?;
            let row = step_row(step);
            let id = write_row!($tx, &row, existing.as_ref().map(|(id, _, _)| *id), $now);
            let same = existing.as_ref().is_some_and(|(_, hash, class)| {
                hash.as_deref() == Some(step.code.hash.as_str())
                    && class.as_deref() == Some(step.class_name.as_str())
            });
            lines.push(row.report(
                existing.is_some(),
                same,
                &format!("code {}", short_hash(&step.code)),
            ));
            step_ids.insert((step.name.clone(), step.version.clone()), id);
        }

        for def in $errors {
            let def: &ErrorsDef = def;
            let json = errors_json(def);
            let old: Option<String> =
                sqlx::query_scalar("SELECT errors FROM error_definitions WHERE name = $1")
                    .bind(&def.name)
                    .fetch_optional(&mut *$tx)
                    .await?;
            sqlx::query(
                "INSERT INTO error_definitions (name, errors, created, modified) \
                 VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE SET \
                 errors = excluded.errors, modified = excluded.modified",
            )
            .bind(&def.name)
            .bind(&json)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
            lines.push(format!(
                "{} errors {} ({} error(s))",
                change(old.is_some(), old.as_deref() == Some(json.as_str())),
                def.name,
                def.errors.len()
            ));
        }

        for svc in $services {
            let svc: &ServiceDef = svc;
            store_code!($tx, &svc.lang, &svc.code, $now);
            let row = service_row(svc);
            let stored = stored_row!($tx, &row);
            let same = match stored {
                None => false,
                Some((id, held)) => {
                    let methods: Vec<MethodRow> = sqlx::query_as(
                        "SELECT name, description, lock_type, internal, write \
                         FROM service_methods WHERE serviceid = $1 ORDER BY name",
                    )
                    .bind(id)
                    .fetch_all(&mut *$tx)
                    .await?;
                    held && methods == method_rows(svc) && in_groups!($tx, row.kind, id, svc.groups)
                }
            };
            let existing = stored.map(|(id, _)| id);
            if !same {
                let id = write_row!($tx, &row, existing, $now);
                for m in &svc.methods {
                    sqlx::query(
                        "INSERT INTO service_methods (serviceid, name, description, lock_type, \
                         internal, write) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(id)
                    .bind(&m.name)
                    .bind(&m.desc)
                    .bind(&m.lock)
                    .bind(m.internal)
                    .bind(m.write)
                    .execute(&mut *$tx)
                    .await?;
                }
                join_groups!($tx, &svc.groups, row.kind, id, $now);
            }
            lines.push(row.report(
                existing.is_some(),
                same,
                &format!(
                    "{} method(s), code {}",
                    svc.methods.len(),
                    short_hash(&svc.code)
                ),
            ));
        }

        for job in $jobs {
            let job: &JobDef = job;
            store_code!($tx, &job.lang, &job.code, $now);
            let row = job_row(job);
            let stored = stored_row!($tx, &row);
            let same = match stored {
                None => false,
                Some((id, held)) => held && in_groups!($tx, row.kind, id, job.groups),
            };
            let existing = stored.map(|(id, _)| id);
            if !same {
                let id = write_row!($tx, &row, existing, $now);
                join_groups!($tx, &job.groups, row.kind, id, $now);
            }
            lines.push(row.report(
                existing.is_some(),
                same,
                &format!(
                    "{}, code {}",
                    job.schedule.describe(),
                    short_hash(&job.code)
                ),
            ));
        }

        let mut unresolved = Vec::new();
        for wf in $workflows {
            let wf: &WorkflowDef = wf;
            // Resolve every step: the batch first, then earlier loads.
            let mut ids = HashMap::new();
            for r in wf.step_refs() {
                let key = (r.name.clone(), r.version.clone());
                let id = match step_ids.get(&key) {
                    Some(id) => Some(*id),
                    None => {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT stepid FROM steps WHERE name = $1 AND version = $2",
                        )
                        .bind(&r.name)
                        .bind(&r.version)
                        .fetch_optional(&mut *$tx)
                        .await?
                    }
                };
                match id {
                    Some(id) => {
                        ids.insert(key, id);
                    }
                    None => unresolved.push(Diagnostic {
                        origin: r.origin.clone(),
                        message: format!(
                            "step {}:{} is neither in the files loaded nor in the database; \
                             load its .qstep.yaml too",
                            r.name, r.version
                        ),
                    }),
                }
            }
            let errors: Option<String> = match &wf.errors {
                None => None,
                Some((name, origin)) => {
                    let found: Option<String> =
                        sqlx::query_scalar("SELECT errors FROM error_definitions WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&mut *$tx)
                            .await?;
                    if found.is_none() {
                        unresolved.push(Diagnostic {
                            origin: origin.clone(),
                            message: format!(
                                "errors definition {name} is neither in the files loaded nor \
                                 in the database; load its .qerrors.yaml too"
                            ),
                        });
                    }
                    found
                }
            };
            if !unresolved.is_empty() {
                continue;
            }
            let row = workflow_row(wf);
            let existing = stored_row!($tx, &row).map(|(id, _)| id);
            let wfid = write_row!($tx, &row, existing, $now);
            for (position, (step, before)) in wf.dependencies().into_iter().enumerate() {
                let id = ids[&(step.name.clone(), step.version.clone())];
                let depends: Vec<i64> = before
                    .iter()
                    .map(|b| ids[&(b.name.clone(), b.version.clone())])
                    .collect();
                sqlx::query(
                    "INSERT INTO workflow_steps (workflowid, stepid, position, depends_on) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(wfid)
                .bind(id)
                .bind(position as i64)
                .bind(serde_json::to_string(&depends).unwrap_or_else(|_| "[]".into()))
                .execute(&mut *$tx)
                .await?;
            }
            if let Some(errors) = errors {
                let list: Vec<serde_json::Value> =
                    serde_json::from_str(&errors).unwrap_or_default();
                for e in list {
                    let global = e["level"] == "GLOBAL";
                    let name = e["name"].as_str().unwrap_or_default().to_string();
                    if global {
                        sqlx::query(
                            "DELETE FROM workflow_errors WHERE workflowid IS NULL AND error = $1",
                        )
                        .bind(&name)
                        .execute(&mut *$tx)
                        .await?;
                    }
                    sqlx::query(
                        "INSERT INTO workflow_errors (workflowid, error, description, severity, \
                         status, business_error, retry_delay_secs, level) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(if global { None } else { Some(wfid) })
                    .bind(&name)
                    .bind(e["desc"].as_str())
                    .bind(e["severity"].as_str().unwrap_or("MAJOR"))
                    .bind(e["status"].as_str().unwrap_or("E"))
                    .bind(e["business"].as_bool().unwrap_or(false))
                    .bind(e["retry_delay_secs"].as_i64())
                    .bind(e["level"].as_str().unwrap_or("AUTO"))
                    .execute(&mut *$tx)
                    .await?;
                }
            }
            join_groups!($tx, &wf.groups, row.kind, wfid, $now);
            // Its graph and errors were rewritten whatever its row held, so a stored
            // workflow is reported updated, never unchanged.
            lines.push(row.report(existing.is_some(), false, &format!("{} step(s)", ids.len())));
        }
        if !unresolved.is_empty() {
            return Err(DefinitionError::Unresolved(unresolved));
        }
        lines
    }};
}

impl Store {
    /// Writes a validated batch in one transaction (see the module doc).
    pub async fn load_definitions(&self, loaded: &Loaded) -> Result<LoadReport, DefinitionError> {
        let now = crate::now_ms();
        // Steps and errors first: the workflows of the same batch refer to them.
        let (mut steps, mut errors, mut workflows) = (Vec::new(), Vec::new(), Vec::new());
        let (mut services, mut jobs) = (Vec::new(), Vec::new());
        for definition in &loaded.definitions {
            match definition {
                Definition::Step(s) => steps.push(s),
                Definition::Errors(e) => errors.push(e),
                Definition::Workflow(w) => workflows.push(w),
                Definition::Service(s) => services.push(s),
                Definition::Job(j) => jobs.push(j),
            }
        }
        let lines = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let lines = load_in_tx!(
                tx,
                steps.iter().copied(),
                errors.iter().copied(),
                services.iter().copied(),
                jobs.iter().copied(),
                workflows.iter().copied(),
                now
            );
            tx.commit().await?;
            lines
        });
        Ok(LoadReport { lines })
    }

    /// Every stored workflow, step, errors definition, service and job.
    pub async fn list_definitions(&self) -> Result<Vec<StoredDefinition>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT 'workflow', name, version, modified FROM workflows \
             UNION ALL SELECT 'step', name, version, modified FROM steps \
             UNION ALL SELECT 'errors', name, '', modified FROM error_definitions \
             UNION ALL SELECT 'service', name, version, modified FROM services \
             UNION ALL SELECT 'job', name, version, modified FROM jobs \
             ORDER BY 1, 2, 3"
        )
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(kind, name, version, modified)| StoredDefinition {
                kind,
                name,
                version,
                modified,
            })
            .collect())
    }

    /// Deletes a definition. A step some workflow uses, a workflow with orders, or a job
    /// that has run (has job instances) is refused with the reason; a service goes with its
    /// methods and state data. Returns false when there is no such definition.
    pub async fn delete_definition(
        &self,
        kind: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        // How to find it, what keeps it (and how that is counted), what goes with it.
        let (find, users, dependents): (&str, Option<(&str, &str)>, &[&str]) = match kind {
            "workflow" => (
                "SELECT workflowid FROM workflows WHERE name = $1 AND version = $2",
                Some((
                    "SELECT COUNT(*) FROM workflow_instance WHERE workflowid = $1",
                    "order(s)",
                )),
                &[
                    DELETE_WORKFLOW_GROUPS,
                    "DELETE FROM workflows WHERE workflowid = $1",
                ],
            ),
            "step" => (
                "SELECT stepid FROM steps WHERE name = $1 AND version = $2",
                Some((
                    "SELECT COUNT(*) FROM workflow_steps WHERE stepid = $1",
                    "workflow(s)",
                )),
                &["DELETE FROM steps WHERE stepid = $1"],
            ),
            "service" => (
                "SELECT serviceid FROM services WHERE name = $1 AND version = $2",
                None,
                &[
                    DELETE_SERVICE_METHODS,
                    "DELETE FROM service_state_data WHERE serviceid = $1",
                    DELETE_SERVICE_GROUPS,
                    "DELETE FROM services WHERE serviceid = $1",
                ],
            ),
            "job" => (
                "SELECT jobid FROM jobs WHERE name = $1 AND version = $2",
                Some((
                    "SELECT COUNT(*) FROM job_instance WHERE jobid = $1",
                    "job instance(s)",
                )),
                &[
                    "DELETE FROM job_state_data WHERE jobid = $1",
                    DELETE_JOB_GROUPS,
                    "DELETE FROM jobs WHERE jobid = $1",
                ],
            ),
            "errors" => {
                let n = on_pool!(self, |pool| sqlx::query(
                    "DELETE FROM error_definitions WHERE name = $1"
                )
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected());
                return Ok(n > 0);
            }
            other => {
                return Err(StoreError::Invalid(format!(
                    "cannot delete a {other:?}: expected workflow, step, errors, service or job"
                )))
            }
        };
        let Some(id) = on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(find)
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?)
        else {
            return Ok(false);
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Counted in the transaction that deletes, so nothing starts to use it between.
            if let Some((count, what)) = users {
                let used: i64 = sqlx::query_scalar(count)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                if used > 0 {
                    return Err(StoreError::Invalid(format!(
                        "{kind} {name}:{version} is still used ({used} {what}); \
                         nothing was deleted"
                    )));
                }
            }
            for sql in dependents {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }
}
