//! SQL storage behind a small repository API.
//!
//! One [`Storage`] serves SQLite (embedded, the default) and PostgreSQL (for several nodes),
//! chosen by the URL. Queries are written once in the SQL both accept (`$1` placeholders, integer
//! milliseconds for times); each backend has its own migrations under `sql/`.

pub mod batched;
mod call_records;
mod registrations;
mod rooms;
mod trunks;
mod users;

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

pub use call_records::{CallRecord, Direction, IN_PROGRESS, LOST};
pub use registrations::{Binding, BindingWrites};
pub use rooms::{Dialled, Room, RoomUpdate};
pub use trunks::TrunkStatus;
pub use users::{is_user_part, SipUser};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../sql/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../sql/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL `{url}` is neither sqlite: nor postgres://")]
    UnknownBackend { url: String },
    #[error("cannot open database {url}: {error}")]
    Connect { url: String, error: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} `{key}` already exists")]
    Duplicate { what: &'static str, key: String },
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("the database look-ups have stopped")]
    Stopped,
}

/// Which SQL engine the URL selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The gateway's database: a connection pool and the repository methods in the submodules.
#[derive(Debug, Clone)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
    /// This gateway's name in a shared database: the rows it keeps open carry it.
    node: std::sync::Arc<str>,
}

impl Storage {
    /// Opens the database at `url`, creating an SQLite file if needed, and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Storage, StorageError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalize_url(url)?;
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|error| StorageError::Connect { url: redact(&url), error })?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // A connection to a server may have gone away while idle; a file cannot, and the
            // test would cost each SQLite statement a second round trip to its thread.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Writers wait for each other instead of failing with SQLITE_BUSY, and
                        // REFERENCES … ON DELETE CASCADE is enforced.
                        sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        // With WAL, NORMAL syncs at checkpoints rather than at every commit:
                        // a process crash loses nothing, a power cut at most the last commits.
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|error| StorageError::Connect { url: redact(&url), error })?;
        let storage = Storage { pool, backend, node: default_node_name().into() };
        if backend == Backend::Sqlite {
            // Readers do not block the writer; kept in the file, so once is enough.
            sqlx::query("PRAGMA journal_mode = WAL").execute(&storage.pool).await?;
        }
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&storage.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&storage.pool).await?,
        }
        Ok(storage)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Names this gateway in the database (`database.node`).
    pub fn set_node(&mut self, node: &str) {
        self.node = node.into();
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for queries in flight and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The host's name (Linux), or `gateway`.
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

/// Maps a unique-constraint violation to [`StorageError::Duplicate`].
fn duplicate<'a>(what: &'static str, key: &'a str) -> impl FnOnce(sqlx::Error) -> StorageError + 'a {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StorageError::Duplicate { what, key: key.to_string() }
        }
        _ => StorageError::Query(e),
    }
}

/// Rows (or names) per statement that a batch builds for its length: at most 12 values a
/// row, well inside both engines' limits on bound values (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 200;

impl Storage {
    /// `count` placeholders for values `first`… in a statement made for its length: `$3, $4,
    /// $5` for PostgreSQL, and `?, ?, ?` for SQLite, which looks each `$N` up by name in a
    /// list, a cost that grows with the square of a batch's values.
    fn params(&self, first: usize, count: usize) -> String {
        match self.backend {
            Backend::Sqlite => vec!["?"; count].join(", "),
            Backend::Postgres => {
                (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
            }
        }
    }

    /// `rows` groups of `columns` placeholders from value `first`: `($1, $2), ($3, $4)`.
    fn rows(&self, first: usize, columns: usize, rows: usize) -> String {
        (0..rows)
            .map(|row| format!("({})", self.params(first + row * columns, columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Picks the backend, and lets SQLite create its file (`mode=rwc`) unless the URL says otherwise.
fn normalize_url(url: &str) -> Result<(Backend, String), StorageError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    if url.starts_with("sqlite:") {
        if url.contains("mode=") || url.contains(":memory:") {
            return Ok((Backend::Sqlite, url.to_string()));
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        return Ok((Backend::Sqlite, format!("{url}{sep}mode=rwc")));
    }
    Err(StorageError::UnknownBackend { url: redact(url) })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! The repository tests run against every backend: SQLite always, PostgreSQL when
    //! `GATEWAY_TEST_POSTGRES_URL` names a server (ops/test.sh starts one and sets
    //! `GATEWAY_REQUIRE_POSTGRES=1`, which turns its absence into a failure).

    use super::*;

    pub const POSTGRES_URL_VAR: &str = "GATEWAY_TEST_POSTGRES_URL";

    /// A fresh, empty database of each available backend. Dropping the guard removes it.
    pub async fn databases() -> Vec<(Storage, TestDb)> {
        let mut out = Vec::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        out.push((Storage::connect(&url, 4).await.expect("sqlite opens"), TestDb::Sqlite(dir)));
        match std::env::var(POSTGRES_URL_VAR) {
            Ok(admin_url) => {
                let (storage, name) = fresh_postgres(&admin_url).await;
                out.push((storage, TestDb::Postgres { admin_url, name }));
            }
            Err(_) if std::env::var("GATEWAY_REQUIRE_POSTGRES").is_ok() => {
                panic!("GATEWAY_REQUIRE_POSTGRES is set but {POSTGRES_URL_VAR} is not")
            }
            Err(_) => eprintln!("{POSTGRES_URL_VAR} not set: PostgreSQL half of the test skipped"),
        }
        out
    }

    pub enum TestDb {
        Sqlite(#[allow(dead_code)] tempfile::TempDir),
        Postgres { admin_url: String, name: String },
    }

    impl TestDb {
        /// Drops a PostgreSQL test database (SQLite's goes with its temp dir).
        pub async fn cleanup(self, storage: Storage) {
            storage.close().await;
            if let TestDb::Postgres { admin_url, name } = self {
                let admin = sqlx::AnyPool::connect(&admin_url).await.expect("admin connection");
                // FORCE: a backend of the just-closed pool may still be exiting (PostgreSQL 13+).
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await
                    .expect("drop test database");
                admin.close().await;
            }
        }
    }

    async fn fresh_postgres(admin_url: &str) -> (Storage, String) {
        sqlx::any::install_default_drivers();
        let name = format!("gw_test_{:016x}", rand::random::<u64>());
        let admin = sqlx::AnyPool::connect(admin_url).await.expect("PostgreSQL admin connection");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("create db");
        admin.close().await;
        let (base, _) = admin_url.rsplit_once('/').expect("URL has a database path");
        let storage = Storage::connect(&format!("{base}/{name}"), 4).await.expect("postgres opens");
        (storage, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("sqlite://gateway.db").unwrap(),
            (Backend::Sqlite, "sqlite://gateway.db?mode=rwc".into())
        );
        assert_eq!(normalize_url("sqlite://x.db?mode=ro").unwrap().1, "sqlite://x.db?mode=ro");
        assert_eq!(normalize_url("postgres://a@b/c").unwrap().0, Backend::Postgres);
        assert!(matches!(normalize_url("mysql://x"), Err(StorageError::UnknownBackend { .. })));
    }

    #[tokio::test]
    async fn placeholders_suit_each_engine() {
        for (storage, db) in testing::databases().await {
            let (one, rows) = (storage.params(3, 3), storage.rows(1, 2, 2));
            match storage.backend() {
                Backend::Sqlite => assert_eq!((one.as_str(), rows.as_str()), ("?, ?, ?", "(?, ?), (?, ?)")),
                Backend::Postgres => {
                    assert_eq!((one.as_str(), rows.as_str()), ("$3, $4, $5", "($1, $2), ($3, $4)"))
                }
            }
            db.cleanup(storage).await;
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://gw:secret@db:5432/gw"), "postgres://gw:***@db:5432/gw");
        assert_eq!(redact("sqlite://gateway.db"), "sqlite://gateway.db");
    }

    #[tokio::test]
    async fn migrations_are_idempotent() {
        for (storage, db) in testing::databases().await {
            match storage.backend() {
                Backend::Sqlite => SQLITE_MIGRATIONS.run(&storage.pool).await.unwrap(),
                Backend::Postgres => POSTGRES_MIGRATIONS.run(&storage.pool).await.unwrap(),
            }
            storage.ping().await.unwrap();
            db.cleanup(storage).await;
        }
    }
}
