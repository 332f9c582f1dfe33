//! The whole pipeline in one process: the shared webhook router, ingest, an embedded store
//! and queue — on disk ([`Storage::Disk`], `relay serve`'s default) or in memory — and the
//! worker delivering in the background: the same code the Lambda functions run, wired to
//! in-process adapters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{TimeDelta, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::LocalConfig;
use super::disk::{Db, DiskError, DiskQueue, DiskStore};
use relay_shared::assembly::{
    AssemblyError, LimiterStore, WorkerParts, build_ingest, build_worker, load_mappings,
};
use relay_shared::ingress::{Ingest, IngestMetrics, RouterConfig, router};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{Queue, QueueError, receive_gathering};
use relay_shared::store::Journal;
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{
    Clock, IdempotencyStore, IdentityKey, IdentityStore, LinkStore, SystemClock,
};
use relay_shared::worker::{Metrics, MetricsOutput, RetryPolicy, Worker};

/// How long a delivery stays invisible after it is taken from the local queue.
const VISIBILITY: Duration = Duration::from_secs(60);

/// How long a worker loop goes on gathering a batch after its first message, as the event
/// source mapping's batching window does in AWS: changes of one person that arrive within
/// it can be delivered as one call per vendor (`relay_shared::worker`'s coalescing). Short:
/// every delivery may wait up to this long, and one machine's loops pick up a burst
/// within milliseconds anyway.
pub const BATCHING_WINDOW: Duration = Duration::from_millis(250);

/// Receives after which the on-disk queue moves a delivery to the dead letters (the
/// template's `maxReceiveCount`): only copies that keep failing to be processed at all,
/// such as one that crashes the relay each time.
pub const MAX_RECEIVES: u32 = 5;

/// The queue names in the database file.
const QUEUE: &str = "deliveries";
const DEAD_LETTERS: &str = "dead-letters";

/// Where the relay keeps claims, links, limiters, the queue and the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In this process only: everything is lost when it stops (tests, `relay demo`,
    /// `relay serve --memory`).
    Memory,
    /// In `relay.sqlite3` in this directory (created when absent), kept across restarts and
    /// crashes; one relay per directory.
    Disk(PathBuf),
}

/// Why the local relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Mappings(#[from] relay_shared::mapping::LoadError),
    #[error("{0}")]
    Secrets(#[from] relay_shared::ingress::ingest::SetupError),
    #[error("vendor client: {0}")]
    Client(#[from] AssemblyError),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("local store: {0}")]
    Store(#[from] DiskError),
    #[error("local store: {0}")]
    Recover(String),
}

/// What was left when the relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Deliveries still queued when the drain timeout ran out: lost with the process in
    /// memory, kept for the next start on disk (`persistent`).
    pub undelivered: usize,
    pub dead_letters: usize,
    /// True when the store is on disk.
    pub persistent: bool,
}

/// What an on-disk relay found at start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resumed {
    /// The database file.
    pub file: PathBuf,
    /// Deliveries queued (including the recovered ones).
    pub queued: usize,
    /// Deliveries the previous run had taken but not finished, visible again at once.
    pub recovered: usize,
    /// Link leases the previous run held, released.
    pub leases_released: usize,
    /// Ingest claims the previous run held mid-request, whose senders may retry at once.
    pub claims_freed: usize,
    pub dead_letters: usize,
}

/// The adapters of one [`Storage`].
enum Backing {
    Memory {
        queue: Arc<MemoryQueue>,
        dead_letters: Arc<MemoryQueue>,
    },
    Disk {
        queue: Arc<DiskQueue>,
        dead_letters: Arc<DiskQueue>,
    },
}

impl Backing {
    /// Deliveries held by the queue (`Err` when the store cannot be read).
    async fn queued(&self) -> Result<usize, QueueError> {
        match self {
            Backing::Memory { queue, .. } => Ok(queue.len()),
            Backing::Disk { queue, .. } => queue.len().await,
        }
    }

    async fn dead(&self) -> Result<usize, QueueError> {
        match self {
            Backing::Memory { dead_letters, .. } => Ok(dead_letters.len()),
            Backing::Disk { dead_letters, .. } => dead_letters.len().await,
        }
    }
}

/// The store and queues of `storage`, recovered from the previous run on disk.
struct Opened {
    idempotency: Arc<dyn IdempotencyStore>,
    /// The delivery log, in the same store as the claims it rides on.
    journal: Arc<dyn Journal>,
    links: Arc<dyn LinkStore>,
    identity: Arc<dyn IdentityStore>,
    limiters: Box<dyn LimiterStore + Send + Sync>,
    queue: Arc<dyn Queue>,
    dead_letters: Arc<dyn Queue>,
    backing: Backing,
    resumed: Option<Resumed>,
    /// The on-disk store, swept of expired claims while the relay runs.
    sweep: Option<DiskStore>,
}

/// The file in a data directory that keeps the local relay's identity key.
pub const IDENTITY_KEY_FILE: &str = "identity.key";

/// The identity key (`store::identity`): `RELAY_IDENTITY_KEY` when set; else, on disk, the
/// one kept in the data directory (made on the first run, readable by its owner only), so
/// persons survive a restart; in memory, a new one per run.
fn identity_key(storage: &Storage) -> Result<IdentityKey, StartError> {
    use secrecy::ExposeSecret;
    let invalid =
        |what: &str, e: &dyn std::fmt::Display| StartError::Invalid(format!("{what}: {e}"));
    if let Ok(text) = std::env::var("RELAY_IDENTITY_KEY")
        && !text.is_empty()
    {
        return IdentityKey::from_base64(&secrecy::SecretString::from(text))
            .map_err(|e| invalid("RELAY_IDENTITY_KEY", &e));
    }
    let Storage::Disk(dir) = storage else {
        return Ok(IdentityKey::generate());
    };
    let path = dir.join(IDENTITY_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => IdentityKey::from_base64(&secrecy::SecretString::from(text))
            .map_err(|e| invalid(&path.display().to_string(), &e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = IdentityKey::generate();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&path)
                .map_err(|e| invalid(&path.display().to_string(), &e))?;
            std::io::Write::write_all(&mut file, key.to_base64().expose_secret().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| invalid(&path.display().to_string(), &e))?;
            Ok(key)
        }
        Err(error) => Err(invalid(&path.display().to_string(), &error)),
    }
}

/// How often a long-running relay deletes claims past their retention.
const SWEEP_EVERY: Duration = Duration::from_secs(60 * 60);

async fn open(storage: &Storage, clock: &Arc<dyn Clock>) -> Result<Opened, StartError> {
    match storage {
        Storage::Memory => {
            let store = MemoryStore::new(clock.clone());
            let dead_letters = Arc::new(MemoryQueue::new(VISIBILITY));
            let queue = Arc::new(MemoryQueue::new(VISIBILITY));
            Ok(Opened {
                idempotency: Arc::new(store.clone()),
                journal: Arc::new(store.clone()),
                links: Arc::new(store.clone()),
                identity: Arc::new(store.clone()),
                limiters: Box::new(store),
                queue: queue.clone(),
                dead_letters: dead_letters.clone(),
                backing: Backing::Memory {
                    queue,
                    dead_letters,
                },
                resumed: None,
                sweep: None,
            })
        }
        Storage::Disk(dir) => {
            let dir = dir.clone();
            // Opening creates the file and applies the schema: blocking work.
            let db = tokio::task::spawn_blocking(move || Db::open(&dir))
                .await
                .map_err(|e| StartError::Recover(e.to_string()))??;
            let file = db.file().to_path_buf();
            let store = DiskStore::new(db.clone(), clock.clone());
            let dead_letters = DiskQueue::new(db.clone(), DEAD_LETTERS, VISIBILITY, clock.clone());
            let queue = DiskQueue::new(db, QUEUE, VISIBILITY, clock.clone())
                .with_dead_letter(&dead_letters, MAX_RECEIVES);
            // We hold the directory's lock, so the run that took these has ended.
            let recover = |e: &dyn std::fmt::Display| StartError::Recover(e.to_string());
            let recovered = queue.recover_in_flight().await.map_err(|e| recover(&e))?;
            let leases_released = store.release_all_leases().await.map_err(|e| recover(&e))?;
            let claims_freed = store.end_claim_leases().await.map_err(|e| recover(&e))?;
            store.sweep_expired().await.map_err(|e| recover(&e))?;
            let resumed = Resumed {
                file,
                queued: queue.len().await.map_err(|e| recover(&e))?,
                recovered,
                leases_released,
                claims_freed,
                dead_letters: dead_letters.len().await.map_err(|e| recover(&e))?,
            };
            Ok(Opened {
                idempotency: Arc::new(store.clone()),
                journal: Arc::new(store.clone()),
                links: Arc::new(store.clone()),
                identity: Arc::new(store.clone()),
                limiters: Box::new(store.clone()),
                sweep: Some(store),
                queue: Arc::new(queue.clone()),
                dead_letters: Arc::new(dead_letters.clone()),
                backing: Backing::Disk {
                    queue: Arc::new(queue),
                    dead_letters: Arc::new(dead_letters),
                },
                resumed: Some(resumed),
            })
        }
    }
}

/// A running local relay.
pub struct LocalRelay {
    addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub metrics: Arc<Metrics>,
    /// What the on-disk store held at start (`None` in memory).
    pub resumed: Option<Resumed>,
    backing: Backing,
    /// Sources that have no secret and therefore answer 404.
    pub disabled_sources: Vec<String>,
    stop_http: watch::Sender<bool>,
    stop_workers: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl LocalRelay {
    /// Opens `storage` (on disk: takes the directory's lock and gives back what the
    /// previous run held), binds, then serves and delivers in background tasks until
    /// [`LocalRelay::shutdown`].
    pub async fn start(config: LocalConfig, storage: Storage) -> Result<LocalRelay, StartError> {
        let mappings = Arc::new(load_mappings(config.mappings.as_deref())?);
        let limits = config
            .vendor_limits()
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let Opened {
            idempotency,
            journal,
            links,
            identity,
            limiters,
            queue,
            dead_letters,
            backing,
            resumed,
            sweep,
        } = open(&storage, &clock).await?;
        let identity = relay_shared::ingress::Identity {
            store: identity,
            key: identity_key(&storage)?,
        };
        let enrichment = relay_shared::assembly::build_enrichment(
            &mappings,
            &config.vendors,
            Some(identity.clone()),
            limiters.as_ref(),
            "local",
        )?;
        let (ingest, disabled_sources) = build_ingest(
            mappings.clone(),
            &config.source_secrets(),
            idempotency,
            identity,
            queue.clone(),
            clock.clone(),
            Arc::new(IngestMetrics::in_memory()),
        )?;
        // Every accepted event is logged (`/ui`); its raw request is kept, sealed, when a
        // key is set (RELAY_RAW_KEY), for a replay that maps it again.
        let raw_key = match std::env::var("RELAY_RAW_KEY") {
            Ok(text) if !text.is_empty() => Some(
                relay_shared::store::RawKey::from_base64(&secrecy::SecretString::from(text))
                    .map_err(|e| StartError::Invalid(format!("RELAY_RAW_KEY: {e}")))?,
            ),
            _ => None,
        };
        let ingest = Arc::new(ingest.with_recording(
            relay_shared::ingress::ingest::Recording::new(journal.clone(), raw_key),
        ));
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let worker = build_worker(WorkerParts {
            mappings,
            vendors: &config.vendors,
            links,
            limiter_store: limiters.as_ref(),
            limiter_account: "local",
            limits: &|vendor| limits.params(vendor),
            queue: queue.clone(),
            dead_letters: dead_letters.clone(),
            clock,
            policy: RetryPolicy::default(),
            metrics: metrics.clone(),
        })?
        .with_journal(journal.clone());
        let worker = Arc::new(match enrichment {
            Some(enrichment) => worker.with_enrichment(enrichment),
            None => worker,
        });
        let dashboard = crate::ui::RelayDashboard {
            journal,
            queue: queue.clone(),
            dead_letters: dead_letters.clone(),
            limiters: worker
                .limiters
                .iter()
                .map(|(v, l)| (*v, (limits.params(*v), l.clone())))
                .collect(),
        };
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|error| StartError::Listen {
                addr: config.server.listen,
                error,
            })?;
        let addr = listener.local_addr().map_err(|error| StartError::Listen {
            addr: config.server.listen,
            error,
        })?;
        let app = router(
            ingest.clone(),
            RouterConfig {
                default_scheme: "http",
            },
        )
        .merge(
            axum::Router::new()
                .route("/events", post(put_event))
                .with_state(ingest.clone()),
        )
        .merge(crate::ui::router(Arc::new(dashboard)));
        let (stop_http, mut http_stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = http_stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "local server failed");
            }
        });

        let (stop_workers, stopped) = watch::channel(false);
        let mut workers: Vec<JoinHandle<()>> = (0..config.worker.concurrency.max(1))
            .map(|_| tokio::spawn(work(worker.clone(), queue.clone(), stopped.clone())))
            .collect();
        if let Some(store) = sweep {
            workers.push(tokio::spawn(sweep_claims(store, stopped)));
        }
        Ok(LocalRelay {
            addr,
            ingest,
            queue,
            dead_letters,
            metrics,
            resumed,
            backing,
            disabled_sources,
            stop_http,
            stop_workers,
            server,
            workers,
            drain_timeout: Duration::from_secs(config.worker.drain_timeout_secs),
        })
    }

    /// The address the routes listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until every accepted delivery is done (queue empty), at most `timeout`.
    /// Answers whether it got there.
    pub async fn idle(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match self.backing.queued().await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the local queue"),
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deliveries held by the queue now, visible or not.
    pub async fn queued(&self) -> Result<usize, QueueError> {
        self.backing.queued().await
    }

    /// Stops accepting requests, lets in-flight requests finish, delivers what is queued
    /// (up to the drain timeout), then stops the worker.
    pub async fn shutdown(mut self) -> Stopped {
        let _ = self.stop_http.send(true);
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = server.await;
        if !self.idle(self.drain_timeout).await {
            tracing::warn!(
                queued = self.backing.queued().await.unwrap_or_default(),
                "drain timeout reached with deliveries still queued"
            );
        }
        let _ = self.stop_workers.send(true);
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        Stopped {
            undelivered: self.backing.queued().await.unwrap_or_default(),
            dead_letters: self.backing.dead().await.unwrap_or_default(),
            persistent: matches!(self.backing, Backing::Disk { .. }),
        }
    }
}

/// One worker loop: takes batches until told to stop; a batch in progress always finishes.
async fn work(worker: Arc<Worker>, queue: Arc<dyn Queue>, mut stop: watch::Receiver<bool>) {
    loop {
        let batch = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            batch = receive_gathering(queue.as_ref(), 10, Duration::from_millis(500), BATCHING_WINDOW) => batch,
        };
        match batch {
            Ok(batch) if !batch.is_empty() => {
                let deadline = Utc::now() + TimeDelta::from_std(VISIBILITY).unwrap_or_default();
                worker.handle_batch(&batch, deadline, true).await;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "local queue failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Deletes expired claims every [`SWEEP_EVERY`] until told to stop (they already count as
/// absent; this keeps the file from growing with every event).
async fn sweep_claims(store: DiskStore, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        if let Err(error) = store.sweep_expired().await {
            tracing::warn!(%error, "could not delete expired claims");
        }
    }
}

/// `POST /events`: an EventBridge event as the user's apps would put it on the bus, handed
/// to the same ingest code as the event-sync function.
async fn put_event(State(ingest): State<Arc<Ingest>>, Json(event): Json<Value>) -> Response {
    match ingest.accept_event(&event, None).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(e) => (e.status(), Json(e.body())).into_response(),
    }
}
