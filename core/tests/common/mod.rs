//! What the store's integration tests share: a system database that exists for one test
//! (an SQLite file in a temporary directory, or a PostgreSQL database of its own on the
//! server `SLUICE_TEST_PG_URL` names, dropped afterwards), and `on_both_backends!`, which
//! runs each test body on both.

use std::sync::Once;

use anyhow::{Context, Result};
use sluice_core::options::SystemDb;
use sluice_core::secret::Secret;
use sqlx::{Connection, Executor};

const PG_URL_VAR: &str = "SLUICE_TEST_PG_URL";

pub struct TestDb {
    pub db: SystemDb,
    _cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    PgDatabase { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Cleanup::PgDatabase { admin_url, name } = self else {
            return;
        };
        let (admin_url, db_name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot block on itself.
        let dropped = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)").as_str())
                    .await?;
                admin.close().await?;
                Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {name}: {dropped:?}");
        }
    }
}

pub fn sqlite_db() -> Result<TestDb> {
    let dir = tempfile::tempdir()?;
    let db = SystemDb::Sqlite {
        path: dir.path().join("var").join("sluice.db"),
    };
    Ok(TestDb {
        db,
        _cleanup: Cleanup::Dir(dir),
    })
}

pub async fn pg_db() -> Result<Option<TestDb>> {
    static SKIP_NOTICE: Once = Once::new();
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        SKIP_NOTICE.call_once(|| {
            eprintln!("{PG_URL_VAR} not set; skipping the PostgreSQL variants of these tests")
        });
        return Ok(None);
    };
    let name = format!("sluice_t_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connecting to {PG_URL_VAR}"))?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    admin.close().await?;
    let cleanup = Cleanup::PgDatabase {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok(Some(TestDb {
        db: SystemDb::Postgres {
            url: Secret::new(url.to_string()),
        },
        _cleanup: cleanup,
    }))
}

/// Two tests per body: `<body>::sqlite` and `<body>::postgres`.
macro_rules! on_both_backends {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() -> anyhow::Result<()> {
                let t = $crate::common::sqlite_db()?;
                super::$body(&t.db).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() -> anyhow::Result<()> {
                let Some(t) = $crate::common::pg_db().await? else { return Ok(()) };
                super::$body(&t.db).await
            }
        }
    )*};
}
