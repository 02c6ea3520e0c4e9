//! The cluster's bus state in the database: registered client keys (`cluster_keys`) and the
//! processes each master runs (`cluster_processes`), which a restarted master reads to adopt
//! the children that are still alive.

use super::{on_pool, Store, StoreError};

/// A registered cluster API client key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClusterKey {
    /// Z85 text, 40 characters.
    pub public_key: String,
    pub username: String,
    pub description: Option<String>,
    pub created: i64,
    pub revoked: Option<i64>,
}

/// One row of `cluster_processes`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProcessRow {
    pub process_network_id: String,
    pub host: String,
    pub node: String,
    pub pid: i64,
    pub process_type: String,
    /// JSON array.
    pub interfaces: Option<String>,
    /// JSON array.
    pub endpoints: String,
    /// Z85 public key the process authenticates with.
    pub public_key: Option<String>,
    pub sessionid: i64,
    pub status: String,
    pub started: i64,
    pub heartbeat: i64,
}

impl Store {
    /// Registers `public_key` for `username`. The user row is created when missing (with no
    /// password, so it cannot log in over HTTP) until RBAC administration exists. A key that
    /// was revoked stays revoked: register a new key instead.
    pub async fn register_cluster_key(
        &self,
        public_key: &str,
        username: &str,
        description: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = crate::now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (username, provider, description, created, modified) \
                 VALUES ($1, 'cluster-key', 'created by sluice keys register', $2, $2) \
                 ON CONFLICT (username) DO NOTHING",
            )
            .bind(username)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO cluster_keys (public_key, username, description, created) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (public_key) DO NOTHING",
            )
            .bind(public_key)
            .bind(username)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Invalid(format!(
                    "key {public_key} is already registered (or was revoked); generate a new one"
                )));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes a key; returns false when no such unrevoked key exists.
    pub async fn revoke_cluster_key(&self, public_key: &str) -> Result<bool, StoreError> {
        let now = crate::now_ms();
        let n = on_pool!(self, |pool| sqlx::query(
            "UPDATE cluster_keys SET revoked = $1 WHERE public_key = $2 AND revoked IS NULL"
        )
        .bind(now)
        .bind(public_key)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    pub async fn list_cluster_keys(&self) -> Result<Vec<ClusterKey>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT public_key, username, description, created, revoked \
             FROM cluster_keys ORDER BY created, public_key"
        )
        .fetch_all(pool)
        .await?))
    }

    /// The user of an unrevoked registered key, if any.
    pub async fn cluster_key_user(&self, public_key: &str) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT username FROM cluster_keys WHERE public_key = $1 AND revoked IS NULL"
        )
        .bind(public_key)
        .fetch_optional(pool)
        .await?))
    }

    /// Inserts or replaces a process row.
    pub async fn upsert_process(&self, row: &ProcessRow) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO cluster_processes (process_network_id, host, node, pid, process_type, \
             interfaces, endpoints, public_key, sessionid, status, started, heartbeat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (process_network_id) DO UPDATE SET host = excluded.host, \
             node = excluded.node, pid = excluded.pid, process_type = excluded.process_type, \
             interfaces = excluded.interfaces, endpoints = excluded.endpoints, \
             public_key = excluded.public_key, sessionid = excluded.sessionid, \
             status = excluded.status, started = excluded.started, heartbeat = excluded.heartbeat"
        )
        .bind(&row.process_network_id)
        .bind(&row.host)
        .bind(&row.node)
        .bind(row.pid)
        .bind(&row.process_type)
        .bind(&row.interfaces)
        .bind(&row.endpoints)
        .bind(&row.public_key)
        .bind(row.sessionid)
        .bind(&row.status)
        .bind(row.started)
        .bind(row.heartbeat)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Records a registration (endpoints) or a heartbeat (status, time) of a process.
    pub async fn update_process(
        &self,
        network_id: &str,
        status: &str,
        endpoints: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = crate::now_ms();
        on_pool!(self, |pool| sqlx::query(
            "UPDATE cluster_processes SET status = $1, heartbeat = $2, \
             endpoints = COALESCE($3, endpoints) WHERE process_network_id = $4"
        )
        .bind(status)
        .bind(now)
        .bind(endpoints)
        .bind(network_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn delete_process(&self, network_id: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM cluster_processes WHERE process_network_id = $1"
        )
        .bind(network_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The processes recorded for `node` (this host's master), any session.
    pub async fn list_processes(&self, node: &str) -> Result<Vec<ProcessRow>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT process_network_id, host, node, pid, process_type, interfaces, endpoints, \
             public_key, sessionid, status, started, heartbeat FROM cluster_processes \
             WHERE node = $1 ORDER BY process_network_id"
        )
        .bind(node)
        .fetch_all(pool)
        .await?))
    }

    /// Moves adopted processes to the session of the master that adopted them.
    pub async fn adopt_process(&self, network_id: &str, session: i64) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE cluster_processes SET sessionid = $1 WHERE process_network_id = $2"
        )
        .bind(session)
        .bind(network_id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }
}

/// A loaded interface definition, as the master starts and lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRow {
    /// `workflow`, `service` or `job`.
    pub kind: String,
    pub id: i64,
    pub name: String,
    pub version: String,
    /// Workflows: autostart > 0; services: autostart; jobs: active.
    pub autostart: bool,
    pub enabled: bool,
    /// Kept from starting: a member of a disabled interface group, or a job past its
    /// expiry date.
    pub blocked: bool,
}

impl InterfaceRow {
    /// Whether the system starts it by itself (startup step 6, a group enabled again).
    pub fn starts_by_itself(&self) -> bool {
        self.autostart && self.enabled && !self.blocked
    }
}

impl Store {
    /// Every loaded workflow, service and job (all versions), by kind, name and version.
    pub async fn list_interfaces(&self) -> Result<Vec<InterfaceRow>, StoreError> {
        // CASE turns BOOLEAN (PostgreSQL) and 0/1 (SQLite) columns into one integer type, so
        // one statement serves both backends.
        const SQL: &str = "SELECT 'workflow' AS kind, workflowid AS id, name, version, \
                 CAST(CASE WHEN autostart > 0 THEN 1 ELSE 0 END AS BIGINT) AS autostart, \
                 CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) AS enabled, \
                 CAST(0 AS BIGINT) AS expired FROM workflows \
             UNION ALL SELECT 'service', serviceid, name, version, \
                 CAST(CASE WHEN autostart THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(0 AS BIGINT) FROM services \
             UNION ALL SELECT 'job', jobid, name, version, \
                 CAST(CASE WHEN active THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN expiry_date IS NOT NULL AND expiry_date <= $1 THEN 1 ELSE 0 END \
                      AS BIGINT) FROM jobs \
             ORDER BY 1, 3, 4";
        // Members of disabled groups, by (type, id).
        let disabled: Vec<(String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT m.object_type, m.object_id FROM group_members m \
             JOIN groups g ON g.name = m.group_name WHERE NOT g.enabled"
        )
        .fetch_all(pool)
        .await?);
        let rows: Vec<(String, i64, String, String, i64, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(SQL)
                .bind(crate::now_ms())
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(kind, id, name, version, autostart, enabled, expired)| InterfaceRow {
                    blocked: expired != 0 || disabled.iter().any(|(t, i)| *t == kind && *i == id),
                    kind,
                    id,
                    name,
                    version,
                    autostart: autostart != 0,
                    enabled: enabled != 0,
                },
            )
            .collect())
    }
}
