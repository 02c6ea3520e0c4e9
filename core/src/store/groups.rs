//! Interface groups (`groups`, `group_members`): which workflows, services and jobs each
//! holds, and whether it is enabled. A disabled group's members do not start, and its jobs
//! do not run; `DEFAULT` cannot be disabled.

use super::{on_pool, Store, StoreError};

/// The group every interface is implicitly in; it cannot be disabled.
pub const DEFAULT_GROUP: &str = "DEFAULT";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupMember {
    /// `workflow`, `service` or `job`.
    pub r#type: String,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub name: String,
    pub desc: Option<String>,
    pub enabled: bool,
    pub members: Vec<GroupMember>,
}

impl Store {
    /// Every group with its members.
    pub async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        let groups: Vec<(String, Option<String>, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, description, CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) \
             FROM groups ORDER BY name"
        )
        .fetch_all(pool)
        .await?);
        let members: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT group_name, object_type, object_id FROM group_members \
             ORDER BY group_name, object_type, object_id"
        )
        .fetch_all(pool)
        .await?);
        Ok(groups
            .into_iter()
            .map(|(name, desc, enabled)| Group {
                members: members
                    .iter()
                    .filter(|(g, _, _)| *g == name)
                    .map(|(_, t, id)| GroupMember {
                        r#type: t.clone(),
                        id: *id,
                    })
                    .collect(),
                name,
                desc,
                enabled: enabled != 0,
            })
            .collect())
    }

    /// Enables or disables a group; `Ok(None)` when there is no such group, else whether
    /// the status changed.
    pub async fn set_group_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<bool>, StoreError> {
        if name == DEFAULT_GROUP && !enabled {
            return Err(StoreError::Invalid(
                "the DEFAULT group cannot be disabled".into(),
            ));
        }
        let exists: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) FROM groups \
             WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(pool)
        .await?);
        let Some(was) = exists else {
            return Ok(None);
        };
        if (was != 0) == enabled {
            return Ok(Some(false));
        }
        on_pool!(self, |pool| sqlx::query(
            "UPDATE groups SET enabled = $1, modified = $2 WHERE name = $3"
        )
        .bind(enabled)
        .bind(crate::now_ms())
        .bind(name)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(Some(true))
    }
}
