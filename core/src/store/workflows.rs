//! Workflows as operators see and control them: the loaded definitions with their order
//! counts, one workflow's step graph and declared errors, and the two switches the system
//! API turns (`enabled`, `autostart`). Which process runs a workflow is the master's
//! business; this module only reads and writes the rows.

use std::collections::BTreeMap;

use serde::Serialize;

use super::orders::{status_name, STATUSES};
use super::{on_pool, Store, StoreError};

/// A loaded workflow as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowSummary {
    pub workflowid: i64,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    /// Qorus's autostart: how many execution instances start with the system; 0 = none
    /// (Sluice runs one process per workflow, started when this is above 0).
    pub autostart: i64,
    pub max_instances: i64,
    pub enabled: bool,
    /// The names of the order keys.
    pub keylist: Vec<String>,
    pub groups: Vec<String>,
    /// Orders of this workflow by status name (every status, 0 when none), and `TOTAL`.
    pub order_counts: BTreeMap<String, i64>,
}

/// One step of a workflow's graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowStep {
    pub stepid: i64,
    pub name: String,
    pub version: String,
    pub steptype: String,
    /// The stepids that must be COMPLETE before this step runs.
    pub depends_on: Vec<i64>,
}

/// An error a workflow declares (its own, or a global definition it does not override).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowErrorDef {
    pub error: String,
    pub description: Option<String>,
    pub severity: String,
    /// `ERROR` or `RETRY`: the order's status after the error.
    pub status: String,
    pub business_error: bool,
    pub retry_delay_secs: Option<i64>,
    /// `AUTO`, `WORKFLOW` or `GLOBAL` (a definition shared by every workflow).
    pub level: String,
}

type SummaryRow = (
    i64,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<String>,
);

const SUMMARY_SELECT: &str = "SELECT workflowid, name, version, description, autostart, \
     max_instances, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT), keylist \
     FROM workflows";

impl Store {
    /// Every loaded workflow (all versions), by name and version.
    pub async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, StoreError> {
        let sql = format!("{SUMMARY_SELECT} ORDER BY name, version");
        let rows: Vec<SummaryRow> =
            on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await?);
        self.summaries(rows, None).await
    }

    /// The workflow `name` (`version`, else the newest loaded one: the highest workflowid).
    pub async fn find_workflow(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowSummary>, StoreError> {
        let rows: Vec<SummaryRow> = match version {
            Some(version) => {
                let sql = format!("{SUMMARY_SELECT} WHERE name = $1 AND version = $2");
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(name)
                    .bind(version)
                    .fetch_all(pool)
                    .await?)
            }
            None => {
                let sql =
                    format!("{SUMMARY_SELECT} WHERE name = $1 ORDER BY workflowid DESC LIMIT 1");
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(name)
                    .fetch_all(pool)
                    .await?)
            }
        };
        self.one(rows).await
    }

    pub async fn workflow_by_id(
        &self,
        workflowid: i64,
    ) -> Result<Option<WorkflowSummary>, StoreError> {
        let sql = format!("{SUMMARY_SELECT} WHERE workflowid = $1");
        let rows: Vec<SummaryRow> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(workflowid)
            .fetch_all(pool)
            .await?);
        self.one(rows).await
    }

    async fn one(&self, rows: Vec<SummaryRow>) -> Result<Option<WorkflowSummary>, StoreError> {
        let Some(id) = rows.first().map(|r| r.0) else {
            return Ok(None);
        };
        Ok(self.summaries(rows, Some(id)).await?.into_iter().next())
    }

    /// Rows with their groups and order counts (of workflow `only`, or of all).
    async fn summaries(
        &self,
        rows: Vec<SummaryRow>,
        only: Option<i64>,
    ) -> Result<Vec<WorkflowSummary>, StoreError> {
        let groups: Vec<(i64, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT object_id, group_name FROM group_members WHERE object_type = 'workflow' \
             AND ($1 IS NULL OR object_id = $1) ORDER BY object_id, group_name"
        )
        .bind(only)
        .fetch_all(pool)
        .await?);
        const COUNTS: &str = "SELECT workflowid, workflowstatus, CAST(COUNT(*) AS BIGINT) \
             FROM workflow_instance WHERE ($1 IS NULL OR workflowid = $1) \
             GROUP BY workflowid, workflowstatus";
        let counts: Vec<(i64, String, i64)> = on_pool!(self, |pool| sqlx::query_as(COUNTS)
            .bind(only)
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(
                |(workflowid, name, version, desc, autostart, max_instances, enabled, keylist)| {
                    let keylist = match keylist.as_deref() {
                        None | Some("") => Vec::new(),
                        Some(text) => serde_json::from_str(text).map_err(|e| {
                            StoreError::Invalid(format!(
                                "workflow {name}:{version} has an unreadable keylist \
                                 {text:?}: {e}"
                            ))
                        })?,
                    };
                    let mut order_counts: BTreeMap<String, i64> = STATUSES
                        .iter()
                        .map(|(_, status)| (status.to_string(), 0))
                        .collect();
                    let mut total = 0;
                    for (_, letter, n) in counts.iter().filter(|(id, _, _)| *id == workflowid) {
                        *order_counts
                            .entry(status_name(letter).to_string())
                            .or_default() += n;
                        total += n;
                    }
                    order_counts.insert("TOTAL".into(), total);
                    Ok(WorkflowSummary {
                        groups: groups
                            .iter()
                            .filter(|(id, _)| *id == workflowid)
                            .map(|(_, g)| g.clone())
                            .collect(),
                        workflowid,
                        name,
                        version,
                        desc,
                        autostart,
                        max_instances,
                        enabled: enabled != 0,
                        keylist,
                        order_counts,
                    })
                },
            )
            .collect()
    }

    /// A workflow's steps in graph order, each with the steps it waits for.
    pub async fn workflow_steps(&self, workflowid: i64) -> Result<Vec<WorkflowStep>, StoreError> {
        let rows: Vec<(i64, String, String, String, String)> =
            on_pool!(self, |pool| sqlx::query_as(
                "SELECT s.stepid, s.name, s.version, s.steptype, ws.depends_on \
                 FROM workflow_steps ws JOIN steps s ON s.stepid = ws.stepid \
                 WHERE ws.workflowid = $1 ORDER BY ws.position, s.stepid"
            )
            .bind(workflowid)
            .fetch_all(pool)
            .await?);
        rows.into_iter()
            .map(|(stepid, name, version, steptype, depends)| {
                let depends_on = serde_json::from_str(&depends).map_err(|e| {
                    StoreError::Invalid(format!(
                        "step {name}:{version} of workflow {workflowid} has unreadable \
                         dependencies {depends:?}: {e}"
                    ))
                })?;
                Ok(WorkflowStep {
                    stepid,
                    name,
                    version,
                    steptype,
                    depends_on,
                })
            })
            .collect()
    }

    /// The errors a workflow knows: its own definitions, and the global ones it does not
    /// define itself, by name.
    pub async fn workflow_errors(
        &self,
        workflowid: i64,
    ) -> Result<Vec<WorkflowErrorDef>, StoreError> {
        type Row = (
            Option<i64>,
            String,
            Option<String>,
            String,
            String,
            i64,
            Option<i64>,
            String,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT workflowid, error, description, severity, status, \
             CAST(CASE WHEN business_error THEN 1 ELSE 0 END AS BIGINT), retry_delay_secs, level \
             FROM workflow_errors WHERE workflowid = $1 OR workflowid IS NULL \
             ORDER BY error, workflowid"
        )
        .bind(workflowid)
        .fetch_all(pool)
        .await?);
        let own: Vec<String> = rows
            .iter()
            .filter(|r| r.0.is_some())
            .map(|r| r.1.clone())
            .collect();
        Ok(rows
            .into_iter()
            .filter(|r| r.0.is_some() || !own.contains(&r.1))
            .map(
                |(_, error, description, severity, status, business, retry_delay_secs, level)| {
                    WorkflowErrorDef {
                        error,
                        description,
                        severity,
                        status: status_name(&status).to_string(),
                        business_error: business != 0,
                        retry_delay_secs,
                        level,
                    }
                },
            )
            .collect())
    }

    /// Enables or disables a workflow; returns whether the column changed.
    pub async fn set_workflow_enabled(
        &self,
        workflowid: i64,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE workflows SET enabled = $1, modified = $2 \
             WHERE workflowid = $3 AND enabled <> $1"
        )
        .bind(enabled)
        .bind(crate::now_ms())
        .bind(workflowid)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Sets a workflow's autostart (0 or more); returns whether the column changed.
    pub async fn set_workflow_autostart(
        &self,
        workflowid: i64,
        autostart: i64,
    ) -> Result<bool, StoreError> {
        if autostart < 0 {
            return Err(StoreError::Invalid(format!(
                "autostart must be 0 or more, not {autostart}"
            )));
        }
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE workflows SET autostart = $1, modified = $2 \
             WHERE workflowid = $3 AND autostart <> $1"
        )
        .bind(autostart)
        .bind(crate::now_ms())
        .bind(workflowid)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n > 0)
    }
}
