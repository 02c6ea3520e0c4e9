//! Interface definitions in the database: what `sluice load` writes, lists and deletes.
//!
//! A load is one transaction: every definition of the batch is written, or none. References
//! (a workflow's steps, its errors definition) are resolved against the batch first, then
//! against what earlier loads stored; an unresolved one fails the load with the file and
//! line that names it. Code is stored once per content hash.

use std::collections::HashMap;

use crate::interfaces::{
    Code, Definition, Diagnostic, ErrorsDef, JobDef, Loaded, ServiceDef, StepDef, WorkflowDef,
};
use crate::schedule::Schedule;

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

/// A stored service's columns, methods and groups, to tell "unchanged" from "updated".
type ServiceRow = (
    Option<String>,
    String,
    bool,
    String,
    Option<String>,
    Option<String>,
);
type MethodRow = (String, Option<String>, String, bool, bool);

fn service_row(svc: &ServiceDef) -> ServiceRow {
    (
        svc.desc.clone(),
        svc.servicetype.clone(),
        svc.autostart,
        svc.lang.clone(),
        Some(svc.class_name.clone()),
        Some(svc.code.hash.clone()),
    )
}

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

/// A stored job's definition columns (not its run state), to tell "unchanged" from "updated".
#[derive(PartialEq, sqlx::FromRow)]
struct JobRow {
    description: Option<String>,
    lang: String,
    class_name: Option<String>,
    code_hash: Option<String>,
    active: bool,
    run_skipped: bool,
    minute: Option<String>,
    hour: Option<String>,
    day: Option<String>,
    month: Option<String>,
    wday: Option<String>,
    recurring: Option<i64>,
    expiry_date: Option<i64>,
}

fn job_row(job: &JobDef) -> JobRow {
    let ScheduleColumns { cron, recurring } = schedule_columns(&job.schedule);
    let [minute, hour, day, month, wday] = cron;
    JobRow {
        description: job.desc.clone(),
        lang: job.lang.clone(),
        class_name: Some(job.class_name.clone()),
        code_hash: Some(job.code.hash.clone()),
        active: job.active,
        run_skipped: job.run_skipped,
        minute,
        hour,
        day,
        month,
        wday,
        recurring,
        expiry_date: job.expiry_date,
    }
}

/// Stores code once per hash (`$tx` is a transaction of either backend).
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

/// The groups an interface belongs to, sorted (`$kind`: 'workflow', 'service' or 'job').
macro_rules! member_groups {
    ($tx:ident, $kind:expr, $id:expr) => {{
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT group_name FROM group_members WHERE object_type = $1 AND object_id = $2 \
             ORDER BY group_name",
        )
        .bind($kind)
        .bind($id)
        .fetch_all(&mut *$tx)
        .await?;
        groups
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
            let id = match &existing {
                Some((id, _, _)) => {
                    sqlx::query(
                        "UPDATE steps SET description = $1, steptype = $2, lang = $3, \
                         base_class_name = $4, class_name = $5, code_hash = $6, modified = $7 \
                         WHERE stepid = $8",
                    )
                    .bind(&step.desc)
                    .bind(&step.steptype)
                    .bind(&step.lang)
                    .bind(&step.base_class_name)
                    .bind(&step.class_name)
                    .bind(&step.code.hash)
                    .bind($now)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                    *id
                }
                None => {
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO steps (name, version, description, steptype, lang, \
                         base_class_name, class_name, code_hash, created, modified) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING stepid",
                    )
                    .bind(&step.name)
                    .bind(&step.version)
                    .bind(&step.desc)
                    .bind(&step.steptype)
                    .bind(&step.lang)
                    .bind(&step.base_class_name)
                    .bind(&step.class_name)
                    .bind(&step.code.hash)
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?
                }
            };
            let same = existing.as_ref().is_some_and(|(_, hash, class)| {
                hash.as_deref() == Some(step.code.hash.as_str())
                    && class.as_deref() == Some(step.class_name.as_str())
            });
            lines.push(format!(
                "{} step {}:{} (code {})",
                change(existing.is_some(), same),
                step.name,
                step.version,
                short_hash(&step.code)
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
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT serviceid FROM services WHERE name = $1 AND version = $2",
            )
            .bind(&svc.name)
            .bind(&svc.version)
            .fetch_optional(&mut *$tx)
            .await?;
            let mut groups = svc.groups.clone();
            groups.sort();
            let same = match existing {
                None => false,
                Some(id) => {
                    let row: ServiceRow = sqlx::query_as(
                        "SELECT description, service_type, autostart, lang, class_name, \
                         code_hash FROM services WHERE serviceid = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *$tx)
                    .await?;
                    let methods: Vec<MethodRow> = sqlx::query_as(
                        "SELECT name, description, lock_type, internal, write \
                         FROM service_methods WHERE serviceid = $1 ORDER BY name",
                    )
                    .bind(id)
                    .fetch_all(&mut *$tx)
                    .await?;
                    row == service_row(svc)
                        && methods == method_rows(svc)
                        && member_groups!($tx, "service", id) == groups
                }
            };
            if !same {
                let id = match existing {
                    Some(id) => {
                        sqlx::query(
                            "UPDATE services SET description = $1, service_type = $2, \
                             autostart = $3, lang = $4, class_name = $5, code_hash = $6, \
                             modified = $7 WHERE serviceid = $8",
                        )
                        .bind(&svc.desc)
                        .bind(&svc.servicetype)
                        .bind(svc.autostart)
                        .bind(&svc.lang)
                        .bind(&svc.class_name)
                        .bind(&svc.code.hash)
                        .bind($now)
                        .bind(id)
                        .execute(&mut *$tx)
                        .await?;
                        // Methods and groups are replaced by the new definition's; the
                        // service's state data stays.
                        for sql in [
                            "DELETE FROM service_methods WHERE serviceid = $1",
                            "DELETE FROM group_members WHERE object_type = 'service' \
                             AND object_id = $1",
                        ] {
                            sqlx::query(sql).bind(id).execute(&mut *$tx).await?;
                        }
                        id
                    }
                    None => {
                        sqlx::query_scalar::<_, i64>(
                            "INSERT INTO services (name, version, description, service_type, \
                             autostart, lang, class_name, code_hash, created, modified) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING serviceid",
                        )
                        .bind(&svc.name)
                        .bind(&svc.version)
                        .bind(&svc.desc)
                        .bind(&svc.servicetype)
                        .bind(svc.autostart)
                        .bind(&svc.lang)
                        .bind(&svc.class_name)
                        .bind(&svc.code.hash)
                        .bind($now)
                        .fetch_one(&mut *$tx)
                        .await?
                    }
                };
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
                join_groups!($tx, &svc.groups, "service", id, $now);
            }
            lines.push(format!(
                "{} service {}:{} ({} method(s), code {})",
                change(existing.is_some(), same),
                svc.name,
                svc.version,
                svc.methods.len(),
                short_hash(&svc.code)
            ));
        }

        for job in $jobs {
            let job: &JobDef = job;
            store_code!($tx, &job.lang, &job.code, $now);
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT jobid FROM jobs WHERE name = $1 AND version = $2")
                    .bind(&job.name)
                    .bind(&job.version)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let new = job_row(job);
            let mut groups = job.groups.clone();
            groups.sort();
            let same = match existing {
                None => false,
                Some(id) => {
                    let row: JobRow = sqlx::query_as(
                        "SELECT description, lang, class_name, code_hash, active, run_skipped, \
                         minute, hour, day, month, wday, recurring, expiry_date \
                         FROM jobs WHERE jobid = $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *$tx)
                    .await?;
                    row == new && member_groups!($tx, "job", id) == groups
                }
            };
            if !same {
                let id = match existing {
                    Some(id) => {
                        // The run history (last_executed, ...) stays; next_trigger is
                        // cleared so that the job engine computes it from the new schedule.
                        sqlx::query(
                            "UPDATE jobs SET description = $1, lang = $2, class_name = $3, \
                             code_hash = $4, active = $5, run_skipped = $6, minute = $7, \
                             hour = $8, day = $9, month = $10, wday = $11, recurring = $12, \
                             expiry_date = $13, next_trigger = NULL, modified = $14 \
                             WHERE jobid = $15",
                        )
                        .bind(&new.description)
                        .bind(&new.lang)
                        .bind(&new.class_name)
                        .bind(&new.code_hash)
                        .bind(new.active)
                        .bind(new.run_skipped)
                        .bind(&new.minute)
                        .bind(&new.hour)
                        .bind(&new.day)
                        .bind(&new.month)
                        .bind(&new.wday)
                        .bind(new.recurring)
                        .bind(new.expiry_date)
                        .bind($now)
                        .bind(id)
                        .execute(&mut *$tx)
                        .await?;
                        sqlx::query(
                            "DELETE FROM group_members WHERE object_type = 'job' AND object_id = $1",
                        )
                        .bind(id)
                        .execute(&mut *$tx)
                        .await?;
                        id
                    }
                    None => {
                        sqlx::query_scalar::<_, i64>(
                            "INSERT INTO jobs (name, version, description, lang, class_name, \
                             code_hash, active, run_skipped, minute, hour, day, month, wday, \
                             recurring, expiry_date, created, modified) VALUES ($1, $2, $3, \
                             $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16) \
                             RETURNING jobid",
                        )
                        .bind(&job.name)
                        .bind(&job.version)
                        .bind(&new.description)
                        .bind(&new.lang)
                        .bind(&new.class_name)
                        .bind(&new.code_hash)
                        .bind(new.active)
                        .bind(new.run_skipped)
                        .bind(&new.minute)
                        .bind(&new.hour)
                        .bind(&new.day)
                        .bind(&new.month)
                        .bind(&new.wday)
                        .bind(new.recurring)
                        .bind(new.expiry_date)
                        .bind($now)
                        .fetch_one(&mut *$tx)
                        .await?
                    }
                };
                join_groups!($tx, &job.groups, "job", id, $now);
            }
            lines.push(format!(
                "{} job {}:{} ({}, code {})",
                change(existing.is_some(), same),
                job.name,
                job.version,
                job.schedule.describe(),
                short_hash(&job.code)
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
                    None => sqlx::query_scalar::<_, i64>(
                        "SELECT stepid FROM steps WHERE name = $1 AND version = $2",
                    )
                    .bind(&r.name)
                    .bind(&r.version)
                    .fetch_optional(&mut *$tx)
                    .await?,
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
            let keylist = serde_json::to_string(&wf.keylist).unwrap_or_else(|_| "[]".into());
            let options = serde_json::Value::Object(wf.options.clone()).to_string();
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT workflowid FROM workflows WHERE name = $1 AND version = $2",
            )
            .bind(&wf.name)
            .bind(&wf.version)
            .fetch_optional(&mut *$tx)
            .await?;
            let wfid = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE workflows SET description = $1, autostart = $2, \
                         max_instances = $3, keylist = $4, options = $5, modified = $6 \
                         WHERE workflowid = $7",
                    )
                    .bind(&wf.desc)
                    .bind(wf.autostart)
                    .bind(wf.max_instances)
                    .bind(&keylist)
                    .bind(&options)
                    .bind($now)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                    // The graph, errors and groups are replaced by the new definition's.
                    for sql in [
                        "DELETE FROM workflow_steps WHERE workflowid = $1",
                        "DELETE FROM workflow_errors WHERE workflowid = $1",
                        "DELETE FROM group_members WHERE object_type = 'workflow' AND object_id = $1",
                    ] {
                        sqlx::query(sql).bind(id).execute(&mut *$tx).await?;
                    }
                    id
                }
                None => {
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO workflows (name, version, description, autostart, \
                         max_instances, keylist, options, created, modified) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING workflowid",
                    )
                    .bind(&wf.name)
                    .bind(&wf.version)
                    .bind(&wf.desc)
                    .bind(wf.autostart)
                    .bind(wf.max_instances)
                    .bind(&keylist)
                    .bind(&options)
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?
                }
            };
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
            join_groups!($tx, &wf.groups, "workflow", wfid, $now);
            lines.push(format!(
                "{} workflow {}:{} ({} step(s))",
                if existing.is_some() { "updated" } else { "created" },
                wf.name,
                wf.version,
                ids.len()
            ));
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
                    "DELETE FROM group_members WHERE object_type = 'workflow' AND object_id = $1",
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
                    "DELETE FROM service_methods WHERE serviceid = $1",
                    "DELETE FROM service_state_data WHERE serviceid = $1",
                    "DELETE FROM group_members WHERE object_type = 'service' AND object_id = $1",
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
                    "DELETE FROM group_members WHERE object_type = 'job' AND object_id = $1",
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
