//! Qorus's `AUDIT_EVENTS`: one row per audited action.

use super::{on_pool, AuditEvent, Store, StoreError};

/// The objects an audit event is about; every field is optional (all `None` by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditTarget {
    pub related_audit_eventid: Option<i64>,
    pub workflowid: Option<i64>,
    pub workflow_instanceid: Option<i64>,
    pub stepid: Option<i64>,
    pub ind: Option<i64>,
    pub jobid: Option<i64>,
    pub job_instanceid: Option<i64>,
    pub serviceid: Option<i64>,
}

impl Store {
    /// Writes an audit event that names no object and returns its `audit_eventid`.
    pub async fn insert_audit_event(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        self.insert_audit_event_for(event, &AuditTarget::default())
            .await
    }

    /// Writes an audit event about the objects in `target` and returns its `audit_eventid`.
    pub async fn insert_audit_event_for(
        &self,
        event: &AuditEvent,
        target: &AuditTarget,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "INSERT INTO audit_events (related_audit_eventid, workflowid, \
             workflow_instanceid, stepid, ind, jobid, job_instanceid, serviceid, \
             audit_event_code, audit_user_event, reason, who, source, info1, info2, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING audit_eventid";
        let id = on_pool!(self, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .bind(target.related_audit_eventid)
            .bind(target.workflowid)
            .bind(target.workflow_instanceid)
            .bind(target.stepid)
            .bind(target.ind)
            .bind(target.jobid)
            .bind(target.job_instanceid)
            .bind(target.serviceid)
            .bind(event.code)
            .bind(event.user_event.as_deref())
            .bind(event.reason.as_deref())
            .bind(event.who.as_str())
            .bind(event.source.as_str())
            .bind(event.info1.as_deref())
            .bind(event.info2.as_deref())
            .bind(crate::now_ms())
            .fetch_one(pool)
            .await?);
        Ok(id)
    }
}
