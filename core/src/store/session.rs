//! The application session: at most one live session per instance key, and recovery of a
//! session that died without closing.
//!
//! Liveness is an OS-level lock, never a timestamp, so a paused or slow process is not
//! mistaken for a dead one and a dead one is known dead the moment its lock is gone:
//! - SQLite: an exclusive `flock` on `<dbfile>.<instance key>.lock` beside the database;
//!   the kernel drops it when the holder's file descriptor closes, including on SIGKILL.
//! - PostgreSQL: a session-level advisory lock held by a dedicated connection (outside the
//!   pool, so the pool can recycle its connections freely); the server drops it when that
//!   connection ends. TCP keepalives on that connection make a vanished host's lock expire
//!   too, instead of lasting until the server is restarted.
//!
//! Whoever holds the lock knows that every other ACTIVE row for the key belongs to a
//! process that is gone, and recovers it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use super::{
    connect_pg, on_pool, CrashedSession, OpenedSession, Pool, RecoveryCounts, Session,
    SessionError, SessionHolder, SessionStatus, Store, StoreError,
};

/// A row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: i64,
    pub instance_key: String,
    pub status: SessionStatus,
    pub pid: i64,
    pub host: String,
    pub started_ms: i64,
    pub completed_ms: Option<i64>,
    pub heartbeat_ms: i64,
    /// The session that recovered this one, if it crashed and was recovered.
    pub recovered_by: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    sessionid: i64,
    instance_key: String,
    status: String,
    pid: i64,
    hostname: String,
    started: i64,
    completed: Option<i64>,
    heartbeat: i64,
    recovered_by: Option<i64>,
}

/// What keeps a session exclusive; releasing it (or dropping it) lets the next one in.
#[derive(Debug)]
pub(super) enum SessionLock {
    Sqlite {
        // Held only for its Drop, which unlocks.
        file: Flock<File>,
    },
    Postgres {
        conn: PgConnection,
        key: i64,
    },
}

impl SessionLock {
    async fn release(self) {
        match self {
            SessionLock::Sqlite { file } => drop(file),
            SessionLock::Postgres { mut conn, key } => {
                // Ending the connection would free the lock anyway; unlocking first frees it
                // even if the close handshake is slow.
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(key)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }
    }
}

enum LockAttempt {
    Acquired(SessionLock),
    /// Someone else holds it; for SQLite, what the lock file says about the holder.
    Busy {
        file_holder: Option<(i64, String)>,
    },
}

/// FNV-1a, 64 bits: written out because the advisory-lock key and lock-file names must not
/// change between Rust versions (std's hashers promise no stable output).
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The PostgreSQL advisory-lock key of an instance key's session.
pub(super) fn advisory_key(instance_key: &str) -> i64 {
    let hash = fnv1a64(format!("sluice-session:{instance_key}").as_bytes());
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The instance key as a file-name component: `[A-Za-z0-9._-]` only, with a hash of the raw
/// key appended whenever anything was replaced or cut, so distinct keys keep distinct files.
fn file_component(instance_key: &str) -> String {
    const MAX: usize = 64;
    let clean: String = instance_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == instance_key && !clean.is_empty() && clean.len() <= MAX {
        return clean;
    }
    let hash = fnv1a64(instance_key.as_bytes());
    let short = (hash ^ (hash >> 32)) as u32;
    let head: String = clean.chars().take(MAX).collect();
    format!("{head}-{short:08x}")
}

/// `<dbfile>.<instance key>.lock`, beside the database.
pub(super) fn lock_file_path(db: &Path, instance_key: &str) -> PathBuf {
    let mut name = db
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "sluice.db".into());
    name.push(".");
    name.push(file_component(instance_key));
    name.push(".lock");
    db.with_file_name(name)
}

fn lock_sqlite(path: &Path, holder: &SessionHolder) -> Result<LockAttempt, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    // No truncate on open: the current holder's "pid host" must survive for the error we
    // give the loser.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut file) => {
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            writeln!(file, "{} {}", holder.pid, holder.host).map_err(io_err)?;
            Ok(LockAttempt::Acquired(SessionLock::Sqlite { file }))
        }
        Err((mut file, errno)) if errno == Errno::EWOULDBLOCK => {
            let mut text = String::new();
            // Best effort: the file is only a diagnostic.
            let _ = file.read_to_string(&mut text);
            let file_holder = text.split_once(' ').and_then(|(pid, host)| {
                let pid = pid.trim().parse().ok()?;
                Some((pid, host.trim().to_string()))
            });
            Ok(LockAttempt::Busy { file_holder })
        }
        Err((_, errno)) => Err(io_err(std::io::Error::from(errno))),
    }
}

/// The session lock for `instance_key`, or `None` if another connection holds it.
async fn lock_postgres(
    options: &PgConnectOptions,
    instance_key: &str,
) -> Result<Option<SessionLock>, sqlx::Error> {
    // Server-side keepalives (seconds): the server notices a vanished client within about
    // idle + interval * count and ends the backend, which frees the lock.
    let options = options.clone().options([
        ("tcp_keepalives_idle", "30"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "3"),
    ]);
    let mut conn = connect_pg(&options).await?;
    let key = advisory_key(instance_key);
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    if got {
        Ok(Some(SessionLock::Postgres { conn, key }))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// How often a statement PostgreSQL aborted to break a deadlock is tried again.
const TRANSIENT_RETRIES: u64 = 5;

/// A deadlock (40P01) or serialization failure (40001): PostgreSQL rolled the transaction
/// back, and running it again is safe.
fn is_transient(err: &StoreError) -> bool {
    match err {
        StoreError::Sql(sqlx::Error::Database(e)) => {
            matches!(e.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

// Recovery takes a crashed session's orders in batches by id (keyset: the next `$3` ids
// above the previous batch), so finding a batch is a range scan on
// `workflow_instance (sessionid, workflow_instanceid)` however many orders came before.
// The updates then name the batch as "this session's orders in ids ($2, $3]": a set that
// stays the same until the final statement releases it, and whose id range lets every
// statement use the primary keys of step_instance and segment_instance whatever plan the
// database picks (an IN over a LIMIT subquery led PostgreSQL to scan whole tables).
/// Which rows a recovery covers: everything a dead session owned, or only what one dead
/// process of a live session owned.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Session(i64),
    Process { session: i64, owner: &'a str },
}

/// The recovery statements for a scope. `$1` is the session; a process scope adds the owner
/// as `$5` (`$3` for jobs), so the session-wide statements stay exactly as fast as before.
struct RecoverySql {
    next_batch: String,
    lock_orders: String,
    retry_steps: String,
    retry_segments: String,
    count_in_progress: String,
    retry_and_release: String,
    crash_jobs: String,
}

impl RecoverySql {
    fn new(scope: Scope<'_>) -> Self {
        // Each statement binds its own parameters in order (PostgreSQL wants every bound
        // parameter used): batches (session, after, upto, now, owner), the batch query and
        // the count (session, after, limit-or-upto, owner), jobs (session, limit, owner, now).
        let (orders, jobs, next, jobs_now) = match scope {
            Scope::Session(_) => ("sessionid = $1", "sessionid = $1", "sessionid = $1", "$3"),
            Scope::Process { .. } => (
                "sessionid = $1 AND owner = $5",
                "sessionid = $1 AND owner = $3",
                "sessionid = $1 AND owner = $4",
                "$4",
            ),
        };
        let batch = |table: &str, status: &str| {
            format!(
                "UPDATE {table} SET {status} = 'R', modified = $4 \
                 WHERE {status} = 'I' AND workflow_instanceid > $2 AND workflow_instanceid <= $3 \
                 AND workflow_instanceid IN (SELECT workflow_instanceid FROM workflow_instance \
                     WHERE {orders} AND workflow_instanceid > $2 AND workflow_instanceid <= $3)"
            )
        };
        RecoverySql {
            next_batch: format!(
                "SELECT workflow_instanceid FROM workflow_instance \
                 WHERE {next} AND workflow_instanceid > $2 ORDER BY workflow_instanceid LIMIT $3"
            ),
            // Locks the batch's orders first, in id order, as a workflow process's commit
            // does: without it PostgreSQL can deadlock recovery (steps, then orders) against
            // an adopted process committing the same orders (orders, then steps).
            lock_orders: format!(
                "SELECT workflow_instanceid FROM workflow_instance WHERE {next} \
                 AND workflow_instanceid > $2 AND workflow_instanceid <= $3 \
                 ORDER BY workflow_instanceid FOR UPDATE"
            ),
            retry_steps: batch("step_instance", "stepstatus"),
            retry_segments: batch("segment_instance", "segmentstatus"),
            count_in_progress: format!(
                "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'I' AND {next} \
                 AND workflow_instanceid > $2 AND workflow_instanceid <= $3"
            ),
            // Retries and releases in one statement (last in a batch: it empties the set the
            // others work on). One new row version per order instead of two roughly halves
            // PostgreSQL's work.
            retry_and_release: format!(
                "UPDATE workflow_instance SET \
                 workflowstatus = CASE WHEN workflowstatus = 'I' THEN 'R' ELSE workflowstatus END, \
                 modified = CASE WHEN workflowstatus = 'I' THEN $4 ELSE modified END, \
                 sessionid = 0, owner = NULL \
                 WHERE {orders} AND workflow_instanceid > $2 AND workflow_instanceid <= $3"
            ),
            // One statement per batch, so no stable batch is needed: crashed rows leave the set.
            crash_jobs: format!(
                "UPDATE job_instance SET jobstatus = 'Z', sessionid = 0, owner = NULL, \
                 completed = COALESCE(completed, {jobs_now}) \
                 WHERE job_instanceid IN (SELECT job_instanceid FROM job_instance \
                     WHERE {jobs} AND jobstatus = 'I' LIMIT $2)"
            ),
        }
    }
}

impl Store {
    /// Opens the application session for `instance_key`, or fails with
    /// [`SessionError::Held`] if a live process holds it. Sessions of the key that died
    /// without closing are returned in `crashed` for [`Store::recover_session`].
    pub async fn open_session(
        &self,
        instance_key: &str,
        holder: &SessionHolder,
    ) -> Result<OpenedSession, SessionError> {
        let attempt = match &self.inner.pool {
            Pool::Sqlite { path, .. } => lock_sqlite(&lock_file_path(path, instance_key), holder)?,
            Pool::Postgres { options, .. } => match lock_postgres(options, instance_key)
                .await
                .map_err(|source| StoreError::Connect {
                    db: self.inner.display.clone(),
                    source,
                })? {
                Some(lock) => LockAttempt::Acquired(lock),
                None => LockAttempt::Busy { file_holder: None },
            },
        };
        let lock = match attempt {
            LockAttempt::Acquired(lock) => lock,
            LockAttempt::Busy { file_holder } => {
                return Err(self.held_error(instance_key, file_holder).await?)
            }
        };

        // We hold the key: every other ACTIVE row for it belongs to a process that is gone.
        // If anything below fails, `lock` drops and the next attempt starts over cleanly.
        let now = crate::now_ms();
        let pid = i64::from(holder.pid);
        let (id, crashed) = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The write comes first so that SQLite takes its write lock at the start of the
            // transaction rather than upgrading a read lock (which can fail as busy at once).
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO sessions (instance_key, status, hostname, pid, started, heartbeat) \
                 VALUES ($1, 'ACTIVE', $2, $3, $4, $4) RETURNING sessionid",
            )
            .bind(instance_key)
            .bind(holder.host.as_str())
            .bind(pid)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let crashed: Vec<(i64, i64, String, i64)> = sqlx::query_as(
                "SELECT sessionid, pid, hostname, started FROM sessions \
                 WHERE instance_key = $1 AND status IN ('ACTIVE', 'ABNORMAL TERMINATION') \
                 AND sessionid <> $2 \
                 ORDER BY started, sessionid",
            )
            .bind(instance_key)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (id, crashed)
        });
        Ok(OpenedSession {
            session: Session {
                id,
                instance_key: instance_key.to_string(),
                lock,
            },
            crashed: crashed
                .into_iter()
                .map(|(id, pid, host, started_ms)| CrashedSession {
                    id,
                    pid,
                    host,
                    started_ms,
                })
                .collect(),
        })
    }

    /// The `Held` error for a key whose lock someone else has: the newest ACTIVE row, unless
    /// the SQLite lock file names a different holder (it took the lock but has not written
    /// its row yet).
    async fn held_error(
        &self,
        instance_key: &str,
        file_holder: Option<(i64, String)>,
    ) -> Result<SessionError, StoreError> {
        let row: Option<(i64, i64, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT sessionid, pid, hostname, started FROM sessions \
             WHERE instance_key = $1 AND status = 'ACTIVE' \
             ORDER BY sessionid DESC LIMIT 1"
        )
        .bind(instance_key)
        .fetch_optional(pool)
        .await?);
        let row = row.filter(|(_, pid, host, _)| match &file_holder {
            Some((fpid, fhost)) => fpid == pid && fhost == host,
            None => true,
        });
        let (session_id, pid, host, since) = match (row, file_holder) {
            (Some((id, pid, host, started)), _) => (id, pid, host, rfc3339(started)),
            (None, Some((pid, host))) => (0, pid, host, "unknown".to_string()),
            (None, None) => (0, 0, "unknown".to_string(), "unknown".to_string()),
        };
        Ok(SessionError::Held {
            instance_key: instance_key.to_string(),
            session_id,
            pid,
            host,
            since,
        })
    }

    /// Records the session's end and then releases its lock. `status` is normally
    /// `Complete`; `Active` is refused (use drop to simulate a crash).
    pub async fn close_session(
        &self,
        session: Session,
        status: SessionStatus,
    ) -> Result<(), StoreError> {
        if status == SessionStatus::Active {
            return Err(StoreError::Invalid(format!(
                "session {} cannot be closed with status ACTIVE",
                session.id
            )));
        }
        let Session { id, lock, .. } = session;
        let now = crate::now_ms();
        on_pool!(self, |pool| sqlx::query(
            "UPDATE sessions SET status = $1, completed = $2, heartbeat = $2 WHERE sessionid = $3"
        )
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        // Only now: until the row says closed, a successor must treat it as crashed.
        lock.release().await;
        Ok(())
    }

    /// Stamps the session's heartbeat. On PostgreSQL it also checks the lock connection: an
    /// error means the lock is gone and another process may already own the instance key.
    pub async fn session_heartbeat(&self, session: &mut Session) -> Result<(), StoreError> {
        if let SessionLock::Postgres { conn, .. } = &mut session.lock {
            conn.ping().await.map_err(|e| StoreError::SessionLockLost {
                session: session.id,
                instance_key: session.instance_key.clone(),
                reason: e.to_string(),
            })?;
        }
        let id = session.id;
        on_pool!(self, |pool| sqlx::query(
            "UPDATE sessions SET heartbeat = $1 WHERE sessionid = $2"
        )
        .bind(crate::now_ms())
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The `sessions` row with this id.
    pub async fn session_info(&self, id: i64) -> Result<Option<SessionInfo>, StoreError> {
        let row: Option<SessionRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT sessionid, instance_key, status, pid, hostname, started, completed, \
             heartbeat, recovered_by FROM sessions WHERE sessionid = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await?);
        let Some(row) = row else {
            return Ok(None);
        };
        let status = SessionStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Schema(format!(
                "session {id} has an unknown status '{}'",
                row.status
            ))
        })?;
        Ok(Some(SessionInfo {
            id: row.sessionid,
            instance_key: row.instance_key,
            status,
            pid: row.pid,
            host: row.hostname,
            started_ms: row.started,
            completed_ms: row.completed,
            heartbeat_ms: row.heartbeat,
            recovered_by: row.recovered_by,
        }))
    }

    /// Recovers a dead session: its IN-PROGRESS orders, segments and steps become RETRY and
    /// all its orders become unowned (session 0), then its IN-PROGRESS job instances become
    /// CRASH, and the session is marked RECOVERED. Work goes in transactions of at most
    /// `batch_size` orders (or job instances), each committed before the next, with
    /// `progress` called with the running totals after each; an interrupted recovery is
    /// finished by running it again. Returns the rows moved out of IN-PROGRESS.
    ///
    /// Pass only sessions known to be dead (from [`OpenedSession::crashed`]): a live
    /// session's work would be taken from it.
    pub async fn recover_session(
        &self,
        crashed_id: i64,
        batch_size: u32,
        progress: &mut (dyn FnMut(RecoveryCounts) + Send),
    ) -> Result<RecoveryCounts, StoreError> {
        if crashed_id == 0 {
            return Err(StoreError::Invalid(
                "session 0 stands for \"no owner\" and cannot be recovered".into(),
            ));
        }
        // Closed to new work first: a process still claiming under this session (one the
        // new master adopted, before it learnt the new session) stamps no order with it
        // once this commits (claims require an ACTIVE session, and on PostgreSQL hold its
        // row FOR SHARE, so this waits for a claim in flight), and every order stamped
        // before is visible to the scan below. An interrupted recovery leaves the session
        // ABNORMAL TERMINATION, which the next start recovers again.
        on_pool!(self, |pool| sqlx::query(
            "UPDATE sessions SET status = 'ABNORMAL TERMINATION' \
             WHERE sessionid = $1 AND status = 'ACTIVE'"
        )
        .bind(crashed_id)
        .execute(pool)
        .await?
        .rows_affected());
        let totals = self
            .recover_scope_retrying(Scope::Session(crashed_id), batch_size, progress)
            .await?;
        // recovered_by: the newest ACTIVE session of the same key, which is the caller's own
        // (it holds the key's lock, so every other ACTIVE one is dead and older).
        on_pool!(self, |pool| sqlx::query(
            "UPDATE sessions SET status = 'RECOVERED', completed = COALESCE(completed, $2), \
             recovered_by = COALESCE(recovered_by, (SELECT MAX(s.sessionid) FROM sessions s \
                 WHERE s.instance_key = sessions.instance_key AND s.status = 'ACTIVE' \
                 AND s.sessionid > sessions.sessionid)) \
             WHERE sessionid = $1"
        )
        .bind(crashed_id)
        .bind(crate::now_ms())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(totals)
    }

    /// Returns what one dead process of session `session` owned to RETRY (orders, their
    /// segments and steps IN-PROGRESS) or CRASH (job instances IN-PROGRESS), releasing it,
    /// in bounded batches like [`Store::recover_session`]. The supervisor calls it whenever
    /// a child exits, so nothing a dead process held stays IN-PROGRESS without an owner.
    pub async fn recover_process(
        &self,
        session: i64,
        network_id: &str,
        batch_size: u32,
        progress: &mut (dyn FnMut(RecoveryCounts) + Send),
    ) -> Result<RecoveryCounts, StoreError> {
        self.recover_scope_retrying(
            Scope::Process {
                session,
                owner: network_id,
            },
            batch_size,
            progress,
        )
        .await
    }

    /// Moves the work a process owned under a dead session to the live session of the master
    /// that adopted the process, so recovering the dead session leaves it alone. Returns the
    /// orders and job instances moved.
    pub async fn adopt_work(
        &self,
        from_session: i64,
        to_session: i64,
        network_id: &str,
    ) -> Result<(u64, u64), StoreError> {
        let mut attempt = 0;
        loop {
            match self
                .adopt_work_once(from_session, to_session, network_id)
                .await
            {
                Err(err) if is_transient(&err) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::warn!("adopting {network_id}'s work: {err}; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn adopt_work_once(
        &self,
        from_session: i64,
        to_session: i64,
        network_id: &str,
    ) -> Result<(u64, u64), StoreError> {
        // Rows locked in id order, as the adopted process's own commits lock them.
        let lock = match self.backend() {
            super::Backend::Sqlite => "",
            super::Backend::Postgres => " ORDER BY workflow_instanceid FOR UPDATE",
        };
        let move_orders = format!(
            "UPDATE workflow_instance SET sessionid = $1 WHERE workflow_instanceid IN \
             (SELECT workflow_instanceid FROM workflow_instance \
              WHERE sessionid = $2 AND owner = $3{lock})"
        );
        Ok(on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let orders = sqlx::query(&move_orders)
                .bind(to_session)
                .bind(from_session)
                .bind(network_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let jobs = sqlx::query(
                "UPDATE job_instance SET sessionid = $1 WHERE sessionid = $2 AND owner = $3",
            )
            .bind(to_session)
            .bind(from_session)
            .bind(network_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            (orders, jobs)
        }))
    }

    /// The batch loop shared by session and process recovery: each batch of orders is one
    /// transaction, so no recovery ever holds one giant transaction, and an interrupted one
    /// simply continues next time (recovered rows have left the scope).
    /// [`Store::recover_scope`], run again after a deadlock PostgreSQL broke by aborting
    /// it (a workflow process committing the same orders): recovery resumes where it was.
    async fn recover_scope_retrying(
        &self,
        scope: Scope<'_>,
        batch_size: u32,
        progress: &mut (dyn FnMut(RecoveryCounts) + Send),
    ) -> Result<RecoveryCounts, StoreError> {
        let mut attempt = 0;
        loop {
            match self.recover_scope(scope, batch_size, progress).await {
                // The counts are those of the last run: batches an aborted run committed
                // were logged by its progress callback.
                Ok(c) => return Ok(c),
                Err(err) if is_transient(&err) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::warn!("recovery: {err}; resuming");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn recover_scope(
        &self,
        scope: Scope<'_>,
        batch_size: u32,
        progress: &mut (dyn FnMut(RecoveryCounts) + Send),
    ) -> Result<RecoveryCounts, StoreError> {
        let sql = RecoverySql::new(scope);
        let (session, owner) = match scope {
            Scope::Session(id) => (id, None),
            Scope::Process { session, owner } => (session, Some(owner)),
        };
        let batch = i64::from(batch_size.max(1));
        let mut totals = RecoveryCounts::default();
        let mut after = 0_i64;
        loop {
            let ids: Vec<i64> = on_pool!(self, |pool| {
                let q = sqlx::query_scalar(&sql.next_batch)
                    .bind(session)
                    .bind(after)
                    .bind(batch);
                match owner {
                    Some(o) => q.bind(o).fetch_all(pool).await?,
                    None => q.fetch_all(pool).await?,
                }
            });
            let Some(&upto) = ids.last() else {
                break;
            };
            let now = crate::now_ms();
            // The batch statements take (session, after, upto, now[, owner]) as $1..$5.
            macro_rules! batch_update {
                ($tx:ident, $sql:expr) => {{
                    let q = sqlx::query($sql)
                        .bind(session)
                        .bind(after)
                        .bind(upto)
                        .bind(now);
                    match owner {
                        Some(o) => q.bind(o),
                        None => q,
                    }
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
                }};
            }
            let (steps, segments, orders) = on_pool!(self, |pool| {
                // Every statement writes, so SQLite takes its write lock at the first one.
                let mut tx = pool.begin().await?;
                if self.backend() == super::Backend::Postgres {
                    let lock = sqlx::query(&sql.lock_orders)
                        .bind(session)
                        .bind(after)
                        .bind(upto);
                    match owner {
                        Some(o) => lock.bind(o),
                        None => lock,
                    }
                    .execute(&mut *tx)
                    .await?;
                }
                let steps = batch_update!(tx, &sql.retry_steps);
                let segments = batch_update!(tx, &sql.retry_segments);
                let count = sqlx::query_scalar::<_, i64>(&sql.count_in_progress)
                    .bind(session)
                    .bind(after)
                    .bind(upto);
                let orders: i64 = match owner {
                    Some(o) => count.bind(o),
                    None => count,
                }
                .fetch_one(&mut *tx)
                .await?;
                batch_update!(tx, &sql.retry_and_release);
                tx.commit().await?;
                (steps, segments, orders)
            });
            after = upto;
            totals.steps += steps;
            totals.segments += segments;
            totals.orders += u64::try_from(orders).unwrap_or(0);
            progress(totals);
        }
        loop {
            let now = crate::now_ms();
            let crashed_jobs = on_pool!(self, |pool| {
                let q = sqlx::query(&sql.crash_jobs).bind(session).bind(batch);
                match owner {
                    Some(o) => q.bind(o),
                    None => q,
                }
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if crashed_jobs == 0 {
                break;
            }
            totals.job_instances += crashed_jobs;
            progress(totals);
        }
        Ok(totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn lock_file_names_are_safe_and_distinct() {
        let db = Path::new("/var/omq/var/sluice.db");
        assert_eq!(
            lock_file_path(db, "qorus-test-instance"),
            Path::new("/var/omq/var/sluice.db.qorus-test-instance.lock")
        );
        let a = lock_file_path(db, "a/b");
        let b = lock_file_path(db, "a b");
        assert_ne!(a, b);
        assert_eq!(a.parent(), db.parent());
        let name = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(name.starts_with("sluice.db.a_b-"), "{name}");
        let long = "k".repeat(300);
        let name = lock_file_path(db, &long);
        assert!(name.as_os_str().len() < 200);
        assert_ne!(lock_file_path(db, ""), lock_file_path(db, "_"));
    }
}
