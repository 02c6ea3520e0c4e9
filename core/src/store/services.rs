//! Services in the system database: what a service process loads (its definition, methods
//! and code) and the state data it keeps across restarts (`saveStateData`).

use super::{on_pool, Store, StoreError};

/// How a method is serialised against the service's other calls (Qorus's service lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLock {
    /// Runs beside any call but a `write` one.
    None,
    /// Runs beside other `none` and `read` calls, never beside a `write` one.
    Read,
    /// Runs alone: no other call of the service runs meanwhile.
    Write,
}

impl MethodLock {
    pub fn parse(text: &str) -> MethodLock {
        match text {
            "write" => MethodLock::Write,
            "read" => MethodLock::Read,
            _ => MethodLock::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MethodLock::None => "none",
            MethodLock::Read => "read",
            MethodLock::Write => "write",
        }
    }
}

/// One method of a service as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMethod {
    pub name: String,
    pub description: Option<String>,
    pub lock: MethodLock,
    /// Not callable from outside the system (only by other interfaces' code).
    pub internal: bool,
    pub write: bool,
}

/// A service with its code, as its process runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProgram {
    pub serviceid: i64,
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub autostart: bool,
    pub enabled: bool,
    pub class_name: String,
    pub code_hash: String,
    pub source: String,
    pub methods: Vec<ServiceMethod>,
    pub groups: Vec<String>,
}

impl ServiceProgram {
    pub fn method(&self, name: &str) -> Option<&ServiceMethod> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// A loaded service as listed (no code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceSummary {
    pub serviceid: i64,
    pub name: String,
    pub version: String,
    pub desc: Option<String>,
    pub autostart: bool,
    pub enabled: bool,
    pub methods: Vec<String>,
    pub groups: Vec<String>,
}

type ProgramRow = (
    i64,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Store {
    /// The service `name:version` with its methods and code, or `None` when it is not
    /// loaded.
    pub async fn load_service(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ServiceProgram>, StoreError> {
        let row: Option<ProgramRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT s.serviceid, s.name, s.version, s.description, \
             CAST(CASE WHEN s.autostart THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN s.enabled THEN 1 ELSE 0 END AS BIGINT), \
             s.class_name, s.code_hash, c.source \
             FROM services s LEFT JOIN code c ON c.code_hash = s.code_hash \
             WHERE s.name = $1 AND s.version = $2"
        )
        .bind(name)
        .bind(version)
        .fetch_optional(pool)
        .await?);
        let Some((serviceid, name, version, description, autostart, enabled, class, hash, source)) =
            row
        else {
            return Ok(None);
        };
        let (Some(class_name), Some(code_hash), Some(source)) = (class, hash, source) else {
            return Err(StoreError::Invalid(format!(
                "service {name}:{version} has no code in the system database; load its \
                 .qsd.yaml again"
            )));
        };
        let methods = self.service_methods(serviceid).await?;
        let groups = self.groups_of("service", serviceid).await?;
        Ok(Some(ServiceProgram {
            serviceid,
            name,
            version,
            description,
            autostart: autostart != 0,
            enabled: enabled != 0,
            class_name,
            code_hash,
            source,
            methods,
            groups,
        }))
    }

    async fn service_methods(&self, serviceid: i64) -> Result<Vec<ServiceMethod>, StoreError> {
        let rows: Vec<(String, Option<String>, String, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT name, description, lock_type, \
                 CAST(CASE WHEN internal THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN write THEN 1 ELSE 0 END AS BIGINT) \
                 FROM service_methods WHERE serviceid = $1 ORDER BY name",
            )
            .bind(serviceid)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, description, lock, internal, write)| ServiceMethod {
                name,
                description,
                lock: MethodLock::parse(&lock),
                internal: internal != 0,
                write: write != 0,
            })
            .collect())
    }

    /// The groups an interface belongs to, by name.
    pub async fn groups_of(
        &self,
        object_type: &str,
        object_id: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT group_name FROM group_members WHERE object_type = $1 AND object_id = $2 \
             ORDER BY group_name"
        )
        .bind(object_type)
        .bind(object_id)
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }

    /// Every loaded service (all versions), with its method names and groups.
    pub async fn list_services(&self) -> Result<Vec<ServiceSummary>, StoreError> {
        let rows: Vec<(i64, String, String, Option<String>, i64, i64)> =
            on_pool!(self, |pool| sqlx::query_as(
                "SELECT serviceid, name, version, description, \
                 CAST(CASE WHEN autostart THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN enabled THEN 1 ELSE 0 END AS BIGINT) \
                 FROM services ORDER BY name, version"
            )
            .fetch_all(pool)
            .await?);
        let methods: Vec<(i64, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT serviceid, name FROM service_methods ORDER BY serviceid, name"
        )
        .fetch_all(pool)
        .await?);
        let groups: Vec<(i64, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT object_id, group_name FROM group_members WHERE object_type = 'service' \
             ORDER BY object_id, group_name"
        )
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(
                |(serviceid, name, version, desc, autostart, enabled)| ServiceSummary {
                    serviceid,
                    name,
                    version,
                    desc,
                    autostart: autostart != 0,
                    enabled: enabled != 0,
                    methods: methods
                        .iter()
                        .filter(|(id, _)| *id == serviceid)
                        .map(|(_, m)| m.clone())
                        .collect(),
                    groups: groups
                        .iter()
                        .filter(|(id, _)| *id == serviceid)
                        .map(|(_, g)| g.clone())
                        .collect(),
                },
            )
            .collect())
    }

    /// The service's saved state data (`getStateData`), `None` when never saved.
    pub async fn service_state(
        &self,
        serviceid: i64,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT data FROM service_state_data WHERE serviceid = $1"
        )
        .bind(serviceid)
        .fetch_optional(pool)
        .await?);
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                StoreError::Invalid(format!(
                    "the state data of service {serviceid} is not JSON: {e}"
                ))
            })
        })
        .transpose()
    }

    /// Replaces the service's state data (`saveStateData`), committed before it returns.
    pub async fn save_service_state(
        &self,
        serviceid: i64,
        data: &serde_json::Value,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO service_state_data (serviceid, data, modified) VALUES ($1, $2, $3) \
             ON CONFLICT (serviceid) DO UPDATE SET data = excluded.data, \
             modified = excluded.modified"
        )
        .bind(serviceid)
        .bind(data.to_string())
        .bind(crate::now_ms())
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Whether any group the interface belongs to is disabled (a member of a disabled group
    /// does not start, and a job in one does not run).
    pub async fn in_disabled_group(
        &self,
        object_type: &str,
        object_id: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM group_members m JOIN groups g ON g.name = m.group_name \
             WHERE m.object_type = $1 AND m.object_id = $2 AND NOT g.enabled"
        )
        .bind(object_type)
        .bind(object_id)
        .fetch_one(pool)
        .await?);
        Ok(n > 0)
    }
}
