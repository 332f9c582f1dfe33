//! The whole pipeline in one process: the shared webhook router, ingest, an embedded
//! in-memory store and queue, and the worker delivering in the background — the same code
//! the Lambda functions run, wired to in-process adapters.

use std::net::SocketAddr;
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
use relay_shared::assembly::{
    AssemblyError, DEFAULT_LIMITS, WorkerParts, build_ingest, build_worker, load_mappings,
};
use relay_shared::ingress::{Ingest, IngestMetrics, RouterConfig, router};
use relay_shared::queue::Queue;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{Clock, SystemClock};
use relay_shared::worker::{Metrics, MetricsOutput, RetryPolicy, Worker};

/// How long a delivery stays invisible after it is taken from the local queue.
const VISIBILITY: Duration = Duration::from_secs(60);

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
}

/// What was left when the relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Deliveries still queued when the drain timeout ran out (lost with the process).
    pub undelivered: usize,
    pub dead_letters: usize,
}

/// A running local relay.
pub struct LocalRelay {
    addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub queue: Arc<MemoryQueue>,
    pub dead_letters: Arc<MemoryQueue>,
    pub metrics: Arc<Metrics>,
    /// Sources that have no secret and therefore answer 404.
    pub disabled_sources: Vec<String>,
    stop_http: watch::Sender<bool>,
    stop_workers: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
}

impl LocalRelay {
    /// Binds, then serves and delivers in background tasks until [`LocalRelay::shutdown`].
    pub async fn start(config: LocalConfig) -> Result<LocalRelay, StartError> {
        let mappings = Arc::new(load_mappings(config.mappings.as_deref())?);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = MemoryStore::new(clock.clone());
        let dead_letters = Arc::new(MemoryQueue::new(VISIBILITY));
        let queue = Arc::new(MemoryQueue::new(VISIBILITY));
        let (ingest, disabled_sources) = build_ingest(
            mappings.clone(),
            &config.source_secrets(),
            Arc::new(store.clone()),
            queue.clone(),
            clock.clone(),
            Arc::new(IngestMetrics::in_memory()),
        )?;
        let ingest = Arc::new(ingest);
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let worker = Arc::new(build_worker(WorkerParts {
            mappings,
            vendors: &config.vendors,
            links: Arc::new(store.clone()),
            limiter_store: &store,
            limiter_account: "local",
            limits: DEFAULT_LIMITS,
            queue: queue.clone(),
            dead_letters: dead_letters.clone(),
            clock,
            policy: RetryPolicy::default(),
            metrics: metrics.clone(),
        })?);

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
        );
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
        let workers = (0..config.worker.concurrency.max(1))
            .map(|_| tokio::spawn(work(worker.clone(), queue.clone(), stopped.clone())))
            .collect();
        Ok(LocalRelay {
            addr,
            ingest,
            queue,
            dead_letters,
            metrics,
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
        while !self.queue.is_empty() {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops accepting requests, lets in-flight requests finish, delivers what is queued
    /// (up to the drain timeout), then stops the worker.
    pub async fn shutdown(mut self) -> Stopped {
        let _ = self.stop_http.send(true);
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = server.await;
        if !self.idle(self.drain_timeout).await {
            tracing::warn!(
                queued = self.queue.len(),
                "drain timeout reached with deliveries still queued"
            );
        }
        let _ = self.stop_workers.send(true);
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        Stopped {
            undelivered: self.queue.len(),
            dead_letters: self.dead_letters.len(),
        }
    }
}

/// One worker loop: takes batches until told to stop; a batch in progress always finishes.
async fn work(worker: Arc<Worker>, queue: Arc<MemoryQueue>, mut stop: watch::Receiver<bool>) {
    loop {
        let batch = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            batch = queue.receive(10, Duration::from_millis(500)) => batch,
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

/// `POST /events`: an EventBridge event as the user's apps would put it on the bus, handed
/// to the same ingest code as the event-sync function.
async fn put_event(State(ingest): State<Arc<Ingest>>, Json(event): Json<Value>) -> Response {
    match ingest.accept_event(&event, None).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(e) => (e.status(), Json(e.body())).into_response(),
    }
}
