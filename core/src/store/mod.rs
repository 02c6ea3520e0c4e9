//! The system database: SQLite (embedded default) or PostgreSQL behind one API.
//!
//! - [`Store`] is a cheap-to-clone handle on a connection pool of either backend.
//! - Schema: versioned migrations per backend (`core/migrations/{sqlite,postgres}`), embedded
//!   in the binary; see [`Store::schema_state`] and the `schema_*` methods.
//! - The application session: one live session per instance key, guarded by an OS file
//!   lock (SQLite) or an advisory lock (PostgreSQL), with crash recovery of a dead
//!   session's orders and job instances; see [`Store::open_session`].
//! - Auditing: [`Store::insert_audit_event`] writes Qorus's `AUDIT_EVENTS` rows.
//!
//! Every timestamp in the database is BIGINT milliseconds since the Unix epoch, UTC
//! ([`crate::now_ms`]).
//!
//! SQL that is identical on both backends is written once with `$n` placeholders (SQLite
//! accepts them as numbered parameters) and run through [`on_pool!`]; only what must differ
//! (catalog queries, advisory locks, `DROP ... CASCADE`) is written per backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::options::SystemDb;

mod audit;
mod cluster;
mod definitions;
pub mod engine;
pub mod groups;
pub mod jobs;
pub mod orders;
mod params;
mod schema;
pub mod services;
mod session;
pub mod workflows;

pub use audit::AuditTarget;
pub use cluster::{ClusterKey, InterfaceRow, ProcessRow};
pub use definitions::{DefinitionError, LoadReport, StoredDefinition};
pub use orders::{
    status_letter, status_name, NewOrder, OrderError, OrderInfo, OrderQuery, OrderSummary,
    StatusChange,
};
pub use schema::SLUICE_TABLES;
pub use session::SessionInfo;

/// Runs `$body` once per backend with `$pool` bound to that backend's pool, so SQL that is
/// the same on both is written once. Both arms must produce the same type.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.inner.pool {
            $crate::store::Pool::Sqlite { pool: $pool, .. } => $body,
            $crate::store::Pool::Postgres { pool: $pool, .. } => $body,
        }
    };
}
pub(crate) use on_pool;

/// How long to wait for a connection (PostgreSQL connect, pool acquire) before failing
/// with an error instead of hanging on a dead server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an SQLite statement waits for another writer before failing with "busy".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const PG_MAX_CONNECTIONS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the system database {db}: {}", describe_connect(.source))]
    Connect { db: String, source: sqlx::Error },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Schema(String),
    /// The schema is not the version this binary works with; the message names the command
    /// that fixes it.
    #[error("{}", mismatch_message(.state))]
    SchemaMismatch { state: SchemaState },
    /// `schema create` on a database that already holds something.
    #[error("the system database is not empty ({}): use `sluice schema upgrade` to apply new migrations or `sluice schema verify` to check it", state_summary(.state))]
    SchemaNotEmpty { state: SchemaState },
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A caller passed an argument the store refuses (for example recovering session 0).
    #[error("{0}")]
    Invalid(String),
    /// The PostgreSQL connection holding the session's advisory lock is gone, so another
    /// master may now own the instance key.
    #[error(
        "session {session} lost its lock connection to PostgreSQL ({reason}); another master \
         may now hold instance key '{instance_key}'"
    )]
    SessionLockLost {
        session: i64,
        instance_key: String,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("instance '{instance_key}' is already running: session {session_id} is held by pid {pid} on host {host} (since {since})")]
    Held {
        instance_key: String,
        session_id: i64,
        pid: i64,
        host: String,
        since: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for SessionError {
    fn from(e: sqlx::Error) -> Self {
        SessionError::Store(StoreError::Sql(e))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// No migration table and no Sluice table.
    Empty,
    Current {
        version: i64,
    },
    /// Migrations this binary knows are not applied yet.
    Older {
        version: i64,
        known: i64,
    },
    /// The database has migrations applied that this binary does not know.
    Newer {
        version: i64,
        known: i64,
    },
    /// A failed migration, a changed migration (checksum mismatch), Sluice tables without a
    /// migration record, or a table missing.
    Damaged {
        reason: String,
    },
}

fn state_summary(state: &SchemaState) -> String {
    match state {
        SchemaState::Empty => "no schema".into(),
        SchemaState::Current { version } => format!("schema version {version}"),
        SchemaState::Older { version, .. } | SchemaState::Newer { version, .. } => {
            format!("schema version {version}")
        }
        SchemaState::Damaged { reason } => format!("damaged schema: {reason}"),
    }
}

fn mismatch_message(state: &SchemaState) -> String {
    match state {
        SchemaState::Empty => "the system database has no Sluice schema: run `sluice schema create` (or start the master with `--create-schema`)".into(),
        SchemaState::Current { version } => format!("the system schema is version {version}, as expected"),
        SchemaState::Older { version, known } => format!(
            "the system schema is version {version} but this Sluice knows up to {known}: run `sluice schema upgrade`"
        ),
        SchemaState::Newer { version, known } => format!(
            "the system schema is version {version} but this Sluice knows only up to {known}: run a newer Sluice against this database"
        ),
        SchemaState::Damaged { reason } => format!(
            "the system schema is damaged: {reason}; inspect it with `sluice schema verify` and restore the database from a backup (or `sluice schema drop` and `sluice schema create` if its data may be lost)"
        ),
    }
}

/// sqlx's configuration errors carry a prefix that adds nothing for an operator.
fn describe_connect(source: &sqlx::Error) -> String {
    match source {
        sqlx::Error::Configuration(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// The SQLite file is absent and the caller did not ask for it to be created.
#[derive(Debug, thiserror::Error)]
#[error("the database {} does not exist: run `sluice schema create` (or start the master with `--create-schema`)", .0.display())]
struct DatabaseMissing(PathBuf);

#[derive(Debug, Clone)]
pub struct SessionHolder {
    pub pid: u32,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashedSession {
    pub id: i64,
    pub pid: i64,
    pub host: String,
    pub started_ms: i64,
}

/// Rows moved out of IN-PROGRESS by [`Store::recover_session`], per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryCounts {
    pub orders: u64,
    pub segments: u64,
    pub steps: u64,
    pub job_instances: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Complete,
    AbnormalTermination,
    Recovered,
}

impl SessionStatus {
    /// The value stored in `sessions.status` (Qorus's names).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "ACTIVE",
            SessionStatus::Complete => "COMPLETE",
            SessionStatus::AbnormalTermination => "ABNORMAL TERMINATION",
            SessionStatus::Recovered => "RECOVERED",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStatus> {
        match s {
            "ACTIVE" => Some(SessionStatus::Active),
            "COMPLETE" => Some(SessionStatus::Complete),
            "ABNORMAL TERMINATION" => Some(SessionStatus::AbnormalTermination),
            "RECOVERED" => Some(SessionStatus::Recovered),
            _ => None,
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live application session. It holds the instance key's lock for as long as it exists:
/// dropping it without [`Store::close_session`] releases the lock but leaves the row
/// ACTIVE, exactly as a crash would, so the next session recovers it.
#[derive(Debug)]
pub struct Session {
    pub id: i64,
    pub instance_key: String,
    lock: session::SessionLock,
}

#[derive(Debug)]
pub struct OpenedSession {
    pub session: Session,
    /// Sessions of the same instance key that died without closing, oldest first; pass each
    /// to [`Store::recover_session`].
    pub crashed: Vec<CrashedSession>,
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub code: i64,
    pub user_event: Option<String>,
    pub reason: Option<String>,
    pub who: String,
    pub source: String,
    pub info1: Option<String>,
    pub info2: Option<String>,
}

/// A handle on the system database. Cloning shares the pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// `SystemDb`'s `Display`: safe to log (a PostgreSQL password is redacted).
    display: String,
}

pub(crate) enum Pool {
    Sqlite {
        pool: SqlitePool,
        path: PathBuf,
    },
    Postgres {
        pool: PgPool,
        /// Kept to open the session's dedicated lock connection outside the pool.
        options: Box<PgConnectOptions>,
    },
}

impl std::fmt::Debug for Store {
    // Hand-written: PgConnectOptions' Debug would print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("db", &self.inner.display)
            .finish()
    }
}

impl Store {
    /// Opens a pool on the system database. With `create_if_missing` an absent SQLite file
    /// (and its directory) is created; PostgreSQL databases are never created.
    pub async fn open(db: &SystemDb, create_if_missing: bool) -> Result<Store, StoreError> {
        let display = db.to_string();
        let pool = match db {
            SystemDb::Sqlite { path } => open_sqlite(path, create_if_missing, &display).await?,
            SystemDb::Postgres { url } => open_postgres(url.expose(), &display).await?,
        };
        Ok(Store {
            inner: Arc::new(Inner { pool, display }),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pool {
            Pool::Sqlite { .. } => Backend::Sqlite,
            Pool::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Closes the pool; later calls on any clone fail.
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// The system database as it may be logged (no password).
    pub fn describe(&self) -> &str {
        &self.inner.display
    }

    /// The pool, when the backend is SQLite: for code in this crate's store and for tests
    /// that need queries the store API does not offer.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.inner.pool {
            Pool::Sqlite { pool, .. } => Some(pool),
            Pool::Postgres { .. } => None,
        }
    }

    /// The pool, when the backend is PostgreSQL; see [`Store::sqlite_pool`].
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.inner.pool {
            Pool::Postgres { pool, .. } => Some(pool),
            Pool::Sqlite { .. } => None,
        }
    }

    /// Runs SQL without parameters (several statements allowed) and returns the rows
    /// affected. Meant for test fixtures and tools, not for code paths fed by user input.
    pub async fn execute_sql(&self, sql: &str) -> Result<u64, StoreError> {
        let affected = on_pool!(self, |pool| sqlx::raw_sql(sql)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(affected)
    }

    /// Runs a query returning one integer (a count, an id), or `None` when it returns no
    /// row or NULL. Meant for tests and tools, like [`Store::execute_sql`].
    pub async fn query_i64(&self, sql: &str) -> Result<Option<i64>, StoreError> {
        let value = on_pool!(self, |pool| sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_optional(pool)
            .await?
            .flatten());
        Ok(value)
    }

    /// The database server's clock minus ours, in milliseconds (PostgreSQL); `None` for
    /// SQLite, which has no clock of its own. Useful to warn when nodes of a cluster
    /// disagree about time, since every node writes its own timestamps.
    pub async fn clock_skew_ms(&self) -> Result<Option<i64>, StoreError> {
        let Pool::Postgres { pool, .. } = &self.inner.pool else {
            return Ok(None);
        };
        let before = crate::now_ms();
        let server: i64 = sqlx::query_scalar(
            "SELECT CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT)",
        )
        .fetch_one(pool)
        .await?;
        let after = crate::now_ms();
        // Compare with the middle of the round trip, when the server most likely read its clock.
        Ok(Some(server - (before + (after - before) / 2)))
    }
}

async fn open_sqlite(path: &Path, create: bool, display: &str) -> Result<Pool, StoreError> {
    if create {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    } else if !path.exists() {
        return Err(StoreError::Connect {
            db: display.to_string(),
            source: sqlx::Error::Configuration(Box::new(DatabaseMissing(path.to_path_buf()))),
        });
    }
    // Set on the connect options, not by a one-off PRAGMA, so every pooled connection
    // (including ones opened later) gets them.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT + SQLITE_BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            db: display.to_string(),
            source,
        })?;
    Ok(Pool::Sqlite {
        pool,
        path: path.to_path_buf(),
    })
}

async fn open_postgres(url: &str, display: &str) -> Result<Pool, StoreError> {
    let connect_err = |source| StoreError::Connect {
        db: display.to_string(),
        source,
    };
    let options: PgConnectOptions = url.parse().map_err(connect_err)?;
    let options = options.application_name("sluice");
    // One direct connection first: the pool retries a refused connection until its acquire
    // timeout and then reports only "pool timed out", hiding the real cause.
    let probe = connect_pg(&options).await.map_err(connect_err)?;
    let _ = probe.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(PG_MAX_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(connect_err)?;
    Ok(Pool::Postgres {
        pool,
        options: Box::new(options),
    })
}

/// A single PostgreSQL connection, bounded by [`CONNECT_TIMEOUT`].
async fn connect_pg(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from the server within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ))),
    }
}
