//! Schema versions: the embedded migrations of each backend, the state of a database's
//! schema relative to them, and create / upgrade / drop.
//!
//! Applied migrations are recorded by sqlx in `_sqlx_migrations` (version, checksum of the
//! SQL text, success). A migration file must never change once released: its checksum is
//! how [`Store::schema_state`] tells a damaged or tampered schema from a current one.

use std::collections::BTreeSet;

use sqlx::migrate::Migrator;

use super::{on_pool, Pool, SchemaState, Store, StoreError};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static PG_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// sqlx's fixed name for its record of applied migrations.
const MIGRATION_TABLE: &str = "_sqlx_migrations";

/// Every table the migrations create, parents before children (foreign keys), so dropping in
/// reverse order never violates a constraint. A migration that adds a table adds it here;
/// the store tests check this list against a freshly created schema.
pub const SLUICE_TABLES: &[&str] = &[
    "sessions",
    "cluster_processes",
    "code",
    "workflows",
    "steps",
    "workflow_steps",
    "workflow_errors",
    "services",
    "service_methods",
    "service_state_data",
    "jobs",
    "workflow_instance",
    "order_instance",
    "order_instance_keys",
    "workflow_instance_unique_keys",
    "segment_instance",
    "step_instance",
    "order_instance_notes",
    "error_instance",
    "job_instance",
    "job_state_data",
    "users",
    "roles",
    "permissions",
    "role_permissions",
    "user_roles",
    "groups",
    "group_members",
    "role_groups",
    "audit_events",
    "oauth2_clients",
    "oauth2_tokens",
    "oauth2_codes",
    "cluster_keys",
    "error_definitions",
];

fn highest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

impl Store {
    /// The highest schema version this binary's migrations reach.
    pub fn known_schema_version() -> i64 {
        // Both backends carry the same version numbers (checked by a unit test).
        highest_version(&SQLITE_MIGRATOR)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.inner.pool {
            Pool::Sqlite { .. } => &SQLITE_MIGRATOR,
            Pool::Postgres { .. } => &PG_MIGRATOR,
        }
    }

    /// Names of the tables in the database (SQLite) or the current schema (PostgreSQL).
    async fn existing_tables(&self) -> Result<BTreeSet<String>, StoreError> {
        let names: Vec<String> = match &self.inner.pool {
            Pool::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(pool)
                    .await?
            }
            Pool::Postgres { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_catalog.pg_tables \
                     WHERE schemaname = current_schema()",
                )
                .fetch_all(pool)
                .await?
            }
        };
        Ok(names.into_iter().collect())
    }

    /// Where the database's schema stands relative to this binary's migrations.
    pub async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        let tables = self.existing_tables().await?;
        let present: Vec<&str> = SLUICE_TABLES
            .iter()
            .copied()
            .filter(|t| tables.contains(*t))
            .collect();
        let unrecorded = || SchemaState::Damaged {
            reason: format!(
                "Sluice tables exist ({}) but no migration is recorded in {MIGRATION_TABLE}",
                present.join(", ")
            ),
        };
        if !tables.contains(MIGRATION_TABLE) {
            return Ok(if present.is_empty() {
                SchemaState::Empty
            } else {
                unrecorded()
            });
        }

        let applied: Vec<(i64, bool, Vec<u8>)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version"
        )
        .fetch_all(pool)
        .await?);
        if applied.is_empty() {
            // An interrupted create may leave sqlx's table behind and nothing else.
            return Ok(if present.is_empty() {
                SchemaState::Empty
            } else {
                unrecorded()
            });
        }

        let migrator = self.migrator();
        let known = highest_version(migrator);
        if let Some((version, ..)) = applied.iter().find(|(_, success, _)| !success) {
            return Ok(SchemaState::Damaged {
                reason: format!("migration {version} did not complete"),
            });
        }
        for (version, _, checksum) in &applied {
            if let Some(m) = migrator.iter().find(|m| m.version == *version) {
                if m.checksum.as_ref() != checksum.as_slice() {
                    return Ok(SchemaState::Damaged {
                        reason: format!(
                            "migration {version} as applied differs from this Sluice's \
                             (checksum mismatch)"
                        ),
                    });
                }
            }
        }
        let version = applied.iter().map(|(v, ..)| *v).max().unwrap_or(0);
        if applied.iter().any(|(v, ..)| !migrator.version_exists(*v)) {
            return Ok(SchemaState::Newer { version, known });
        }
        let applied_versions: BTreeSet<i64> = applied.iter().map(|(v, ..)| *v).collect();
        if let Some(hole) = migrator
            .iter()
            .map(|m| m.version)
            .find(|v| *v < version && !applied_versions.contains(v))
        {
            return Ok(SchemaState::Damaged {
                reason: format!("migration {hole} was never applied but later ones were"),
            });
        }
        if version < known {
            return Ok(SchemaState::Older { version, known });
        }
        let missing: Vec<&str> = SLUICE_TABLES
            .iter()
            .copied()
            .filter(|t| !tables.contains(*t))
            .collect();
        if !missing.is_empty() {
            return Ok(SchemaState::Damaged {
                reason: format!("tables missing: {}", missing.join(", ")),
            });
        }
        Ok(SchemaState::Current { version })
    }

    /// Returns the schema version if it is the one this binary knows, else a
    /// [`StoreError::SchemaMismatch`] naming the command that fixes it.
    pub async fn ensure_schema_current(&self) -> Result<i64, StoreError> {
        match self.schema_state().await? {
            SchemaState::Current { version } => Ok(version),
            state => Err(StoreError::SchemaMismatch { state }),
        }
    }

    /// Creates the schema in an empty database and returns its version. Refuses a database
    /// that holds anything of Sluice's.
    pub async fn schema_create(&self) -> Result<i64, StoreError> {
        let state = self.schema_state().await?;
        if state != SchemaState::Empty {
            return Err(StoreError::SchemaNotEmpty { state });
        }
        self.run_migrations().await?;
        Ok(Self::known_schema_version())
    }

    /// Applies the migrations not yet applied and returns their versions (none when the
    /// schema is current). Refuses an empty, newer or damaged schema.
    pub async fn schema_upgrade(&self) -> Result<Vec<i64>, StoreError> {
        let from = match self.schema_state().await? {
            SchemaState::Current { .. } => return Ok(Vec::new()),
            SchemaState::Older { version, .. } => version,
            state => return Err(StoreError::SchemaMismatch { state }),
        };
        self.run_migrations().await?;
        Ok(self
            .migrator()
            .iter()
            .map(|m| m.version)
            .filter(|v| *v > from)
            .collect())
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        let migrator = self.migrator();
        on_pool!(self, |pool| migrator.run(pool).await?);
        Ok(())
    }

    /// Drops every Sluice table and the migration record, in one transaction. On PostgreSQL
    /// only the tables in the current schema go; the database itself stays.
    pub async fn schema_drop(&self) -> Result<(), StoreError> {
        let cascade = match self.backend() {
            super::Backend::Sqlite => "",
            // Later features may hang views or foreign keys of their own on these tables.
            super::Backend::Postgres => " CASCADE",
        };
        let statements: Vec<String> = SLUICE_TABLES
            .iter()
            .rev()
            .chain(std::iter::once(&MIGRATION_TABLE))
            .map(|t| format!("DROP TABLE IF EXISTS \"{t}\"{cascade}"))
            .collect();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in &statements {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_versions() {
        let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(&SQLITE_MIGRATOR), versions(&PG_MIGRATOR));
        assert!(Store::known_schema_version() >= 1);
    }
}
