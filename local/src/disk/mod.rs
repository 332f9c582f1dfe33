//! The local relay's embedded on-disk store and queue: one SQLite file in the data
//! directory, so claims, links, the rate limiters, the queue and the dead letters survive a
//! restart or a crash of `relay serve` (see `docs/local-store.md`).
//!
//! * [`Db`] owns the file: it takes the data directory's lock (one relay per directory),
//!   applies the schema ([`MIGRATIONS`], numbered by SQLite's `user_version`) and runs every
//!   operation on one dedicated thread that holds the connection, each operation one
//!   transaction. Async callers wait on a oneshot answer, so no blocking SQLite call runs on
//!   a tokio worker thread, and every conditional write (a claim, a lease, a limiter
//!   permit, a receive) is atomic: nothing else runs between its read and its write.
//! * [`DiskStore`] implements the store traits (`IdempotencyStore`, `LinkStore`, the rate
//!   limiters), [`DiskQueue`] the `Queue` trait, with the rules the memory and AWS adapters
//!   follow; the conformance suites in `tests/` run against them.
//!
//! Adding a table (e.g. the delivery journal) is one more entry in [`MIGRATIONS`] and an
//! adapter over [`Db::write`] / [`Db::read`].

mod identity;
mod journal;
mod queue;
mod store;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

pub use queue::DiskQueue;
pub use store::{DiskRateLimiter, DiskStore};

/// The database file inside the data directory.
pub const DB_FILE: &str = "relay.sqlite3";
/// The lock file inside the data directory: held (an OS file lock) while a relay uses it.
pub const LOCK_FILE: &str = "relay.lock";

/// The schema, one migration per version: version `n` is `MIGRATIONS[n - 1]`. Append new
/// tables at the end; never edit a migration that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: claims, links, limiters, both queues.
    "CREATE TABLE claims (
         pk TEXT PRIMARY KEY,
         payload_hash TEXT NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed', 'released')),
         lease_until INTEGER,
         token TEXT,
         result TEXT,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX claims_expiry ON claims (expires_at);
     CREATE TABLE links (
         pk TEXT PRIMARY KEY,
         vendor_id TEXT,
         fields TEXT NOT NULL,
         recent TEXT NOT NULL,
         lease_token TEXT,
         lease_until INTEGER
     ) WITHOUT ROWID;
     CREATE TABLE limiters (
         pk TEXT PRIMARY KEY,
         tat INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         queue TEXT NOT NULL,
         message_id TEXT NOT NULL UNIQUE,
         body TEXT NOT NULL,
         attributes TEXT NOT NULL,
         sent_at INTEGER NOT NULL,
         visible_at INTEGER NOT NULL,
         receive_count INTEGER NOT NULL DEFAULT 0,
         receipt TEXT UNIQUE
     );
     CREATE INDEX messages_visible ON messages (queue, visible_at, seq);",
    // 2: the delivery log (one row per logged event, written with its claim) and the
    // sealed raw requests a replay maps again.
    "CREATE TABLE journal (
         pk TEXT PRIMARY KEY,
         entry TEXT NOT NULL,
         deliveries TEXT NOT NULL,
         received_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX journal_recent ON journal (received_at);
     CREATE TABLE raw_requests (
         pk TEXT PRIMARY KEY,
         source TEXT NOT NULL,
         fallback_event_id TEXT NOT NULL,
         received_at INTEGER NOT NULL,
         sealed BLOB NOT NULL,
         expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 3: identity resolution: where each identifier hash points (`idn#<hash>`) and each
    // person's identifiers, version and merge (`per#<person id>`). `IF NOT EXISTS`, so a
    // data directory that already has them keeps them.
    "CREATE TABLE IF NOT EXISTS identifiers (
         pk TEXT PRIMARY KEY,
         person TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS persons (
         pk TEXT PRIMARY KEY,
         ids TEXT NOT NULL,
         version INTEGER NOT NULL,
         merged_into TEXT
     ) WITHOUT ROWID;",
];

/// Why the on-disk store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("data directory {dir}: {error}")]
    Io {
        dir: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "data directory {dir} is in use by another relay (its {LOCK_FILE} is locked); stop it or choose another data_dir"
    )]
    Locked { dir: PathBuf },
    #[error(
        "{file}: schema version {found} is newer than this relay knows ({known}); use a newer relay"
    )]
    NewerSchema {
        file: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("SQLite {operation}: {error}")]
    Sqlite {
        operation: &'static str,
        #[source]
        error: rusqlite::Error,
    },
    #[error("a stored {what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("the database thread has stopped")]
    Closed,
}

impl DiskError {
    fn sqlite(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> DiskError {
        move |error| DiskError::Sqlite { operation, error }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The open database: a handle to the thread that owns the connection. Clones share it;
/// the thread ends (and the directory's lock is released) when the last clone is dropped.
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
    file: Arc<PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("file", &self.file).finish()
    }
}

impl Db {
    /// Opens (creating when needed) the data directory `dir` and its database, taking the
    /// directory's lock. Fails with [`DiskError::Locked`] while another relay holds it.
    pub fn open(dir: &Path) -> Result<Db, DiskError> {
        let io = |error| DiskError::Io {
            dir: dir.to_path_buf(),
            error,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(DiskError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let file = dir.join(DB_FILE);
        let mut conn = Connection::open(&file).map_err(DiskError::sqlite("open"))?;
        configure(&conn)?;
        migrate(&mut conn, &file)?;

        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("relay-sqlite".into())
            .spawn(move || run(conn, &queue, Some(lock)))
            .map_err(io)?;
        Ok(Db {
            jobs,
            file: Arc::new(file),
        })
    }

    /// Opens the database of the data directory `dir` for reading only, beside a running
    /// relay (WAL lets readers work while it writes): no lock is taken, no schema applied.
    /// For `relay events --data-dir`.
    pub fn open_read_only(dir: &Path) -> Result<Db, DiskError> {
        let file = dir.join(DB_FILE);
        if !file.exists() {
            return Err(DiskError::Io {
                dir: dir.to_path_buf(),
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no {DB_FILE}: has `relay serve` run with this data directory?"),
                ),
            });
        }
        let conn = Connection::open_with_flags(
            &file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(DiskError::sqlite("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(DiskError::sqlite("busy_timeout"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(DiskError::sqlite("user_version"))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version != known {
            return Err(DiskError::Malformed {
                what: "schema version",
                reason: format!(
                    "{} has version {version}, this relay reads {known}: start `relay serve` once with this relay",
                    file.display()
                ),
            });
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("relay-sqlite-reader".into())
            .spawn(move || run(conn, &queue, None))
            .map_err(|error| DiskError::Io {
                dir: dir.to_path_buf(),
                error,
            })?;
        Ok(Db {
            jobs,
            file: Arc::new(file),
        })
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`) on the database thread and
    /// commits it when `f` answers `Ok`; an `Err` rolls everything back.
    pub async fn write<T, E>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DiskError> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(DiskError::sqlite(operation))?;
            let out = f(&tx)?;
            tx.commit().map_err(DiskError::sqlite(operation))?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` in one read transaction on the database thread.
    pub async fn read<T, E>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DiskError> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(DiskError::sqlite(operation))?;
            f(&tx)
        })
        .await
    }

    async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DiskError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // The caller may have gone (its future dropped); the work is done regardless.
            let _ = answer.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| DiskError::Closed)?;
        answered.await.map_err(|_| DiskError::Closed)?
    }
}

/// The database thread: runs jobs in order until every handle is dropped.
fn run(mut conn: Connection, jobs: &mpsc::Receiver<Job>, lock: Option<File>) {
    while let Ok(job) = jobs.recv() {
        job(&mut conn);
    }
    drop(conn);
    // Closing the file releases the OS lock; unlocking first makes the order explicit.
    if let Some(lock) = lock {
        let _ = lock.unlock();
        drop(lock);
    }
}

/// WAL (readers never block the writer, a commit is one append), `synchronous = FULL` (a
/// committed transaction — an accepted webhook — survives a power cut, not only a crash),
/// and a busy timeout for tools such as `sqlite3` reading the file meanwhile.
fn configure(conn: &Connection) -> Result<(), DiskError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(DiskError::sqlite("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DiskError::Malformed {
            what: "journal mode",
            reason: format!("SQLite answered `{mode}` to WAL"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(DiskError::sqlite("synchronous"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(DiskError::sqlite("busy_timeout"))?;
    Ok(())
}

/// Brings the schema up to the newest version, each step in its own transaction.
fn migrate(conn: &mut Connection, file: &Path) -> Result<(), DiskError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(DiskError::sqlite("user_version"))?;
    let known = MIGRATIONS.len();
    let current = usize::try_from(version).unwrap_or(usize::MAX);
    if current > known {
        return Err(DiskError::NewerSchema {
            file: file.to_path_buf(),
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DiskError::sqlite("migrate"))?;
        tx.execute_batch(sql)
            .map_err(DiskError::sqlite("migrate"))?;
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.pragma_update(None, "user_version", version)
            .map_err(DiskError::sqlite("migrate"))?;
        tx.commit().map_err(DiskError::sqlite("migrate"))?;
    }
    Ok(())
}

/// Epoch milliseconds to an instant (a corrupted value clamps to the epoch).
pub(crate) fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::{Db, DiskError};

    /// Opens `dir` again once the previous handle's thread has let go of the lock (the
    /// thread ends shortly after its last handle is dropped).
    pub(crate) fn reopen(dir: &std::path::Path) -> Db {
        for _ in 0..1_000 {
            match Db::open(dir) {
                Ok(db) => return db,
                Err(DiskError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(other) => panic!("{other}"),
            }
        }
        panic!("the data directory stayed locked")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::reopen;
    use super::*;

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = Db::open(dir.path()).unwrap();
        assert!(matches!(
            Db::open(dir.path()),
            Err(DiskError::Locked { .. })
        ));
        drop(first);
        reopen(dir.path());
    }

    #[tokio::test]
    async fn the_schema_is_applied_once_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let version = |db: Db| async move {
            db.read("test", |tx| {
                tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
                    .map_err(DiskError::sqlite("test"))
            })
            .await
            .unwrap()
        };
        assert_eq!(version(db.clone()).await, MIGRATIONS.len() as i64);
        drop(db);
        // Opening again applies nothing twice.
        let db = reopen(dir.path());
        assert_eq!(version(db.clone()).await, MIGRATIONS.len() as i64);
        let newer = MIGRATIONS.len() as i64 + 1;
        db.write("test", move |tx| {
            tx.pragma_update(None, "user_version", newer)
                .map_err(DiskError::sqlite("test"))
        })
        .await
        .unwrap();
        drop(db);
        let mut outcome = Db::open(dir.path());
        for _ in 0..1_000 {
            if !matches!(outcome, Err(DiskError::Locked { .. })) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            outcome = Db::open(dir.path());
        }
        assert!(
            matches!(outcome, Err(DiskError::NewerSchema { found, .. }) if found == newer),
            "{outcome:?}"
        );
    }
}
