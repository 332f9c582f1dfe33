//! The pipeline with production queue semantics: signed webhooks through the real ingest
//! router into moto SQS, a delivery queue and its dead-letter queue created with the
//! template's settings (visibility timeout, redrive after `maxReceiveCount` receives), and
//! several concurrent pollers acting as the Lambda event source mapping — each receives a
//! batch of the mapping's `BatchSize`, hands it to the real sync-worker handler
//! ([`relay_shared::lambda::handle_sqs`]) with the function's timeout as deadline, and
//! deletes every message the handler does not report in `batchItemFailures`, leaving those
//! to SQS. Links, idempotency claims and the shared limiters live in DynamoDB Local; the
//! vendors are the stateful mocks, with every request's arrival time recorded so limits can
//! be checked in sliding windows.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{TimeDelta, Utc};
use http::StatusCode;
use lambda_runtime::{Context, LambdaEvent};
use relay_shared::assembly::{WorkerParts, build_worker};
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::queue::{Queue, receive_gathering};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, GcraParams, SystemClock};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Metrics, MetricsOutput, RetryPolicy, Worker};
use serde_json::json;
use tower::ServiceExt;
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::dynamodb_local::{LocalTable, fresh_table};
use crate::moto;
use crate::stateful_vendors::{Faults, StatefulVendors};
use crate::webhooks;

/// The production settings of the delivery path, as `template.yaml` sets them (the tests
/// read them from it).
#[derive(Debug, Clone, Copy)]
pub struct TemplateQueue {
    /// `Queue.VisibilityTimeout`.
    pub visibility: Duration,
    /// `Queue.RedrivePolicy.maxReceiveCount`.
    pub max_receives: u32,
    /// `SyncWorkerQueueMapping.BatchSize`.
    pub batch_size: u16,
    /// `SyncWorkerQueueMapping.MaximumBatchingWindowInSeconds` (the parameter's default):
    /// how long the mapping gathers a batch before invoking the worker.
    pub batching_window: Duration,
    /// Whether the mapping has `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub partial_batch_responses: bool,
    /// `WorkerMaxConcurrency`'s default: how many invocations the mapping runs at once.
    pub max_concurrency: usize,
    /// `SyncWorkerFunction.Timeout`: each invocation's deadline.
    pub function_timeout: Duration,
}

/// A wiremock matcher that matches nothing and records when each request arrived: mounted
/// in front of a stateful vendor, it sees every request before the vendor answers it.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<Mutex<Vec<(Instant, String)>>>);

impl Arrivals {
    async fn mount(server: &MockServer) -> Arrivals {
        let arrivals = Arrivals::default();
        Mock::given(arrivals.clone())
            .respond_with(ResponseTemplate::new(599))
            .with_priority(1)
            .mount(server)
            .await;
        arrivals
    }

    /// Arrival times in milliseconds since `origin`, with `METHOD path`.
    pub fn since(&self, origin: Instant) -> Vec<(i64, String)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(at, what)| {
                let ms = at.saturating_duration_since(origin).as_millis();
                (i64::try_from(ms).unwrap_or(i64::MAX), what.clone())
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Match for Arrivals {
    fn matches(&self, request: &Request) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push((
            Instant::now(),
            format!("{} {}", request.method, request.url.path()),
        ));
        false
    }
}

/// The most timestamps (milliseconds) inside any window of `width_ms`, however placed.
pub fn max_in_window(times: &[i64], width_ms: i64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= width_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// How the pipeline's worker is set up.
#[derive(Clone, Copy)]
pub struct Settings {
    pub faults: Faults,
    /// Each vendor's limiter schedule ([`relay_shared::assembly::DEFAULT_LIMITS`] in
    /// production).
    pub limits: fn(Vendor) -> GcraParams,
    pub policy: RetryPolicy,
}

/// What the pollers did.
#[derive(Debug, Default)]
pub struct PollCounts {
    /// Handler invocations (non-empty batches).
    pub invocations: AtomicU64,
    /// Messages received (every receive, so a message received twice counts twice).
    pub received: AtomicU64,
    /// Messages deleted after the handler returned.
    pub deleted: AtomicU64,
    /// Messages the handler reported in `batchItemFailures` (left to SQS).
    pub reported: AtomicU64,
    /// Handler invocations that returned an error (the whole batch is left to SQS).
    pub handler_errors: AtomicU64,
    /// The highest `ApproximateReceiveCount` seen on a received message.
    pub max_receive_count: AtomicU64,
}

impl PollCounts {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

/// The whole pipeline of one test.
pub struct SqsPipeline {
    pub template: TemplateQueue,
    pub table: LocalTable,
    pub sqs: aws_sdk_sqs::Client,
    pub queue: SqsQueue,
    pub dead_letters: SqsQueue,
    pub app: axum::Router,
    pub worker: Arc<Worker>,
    pub metrics: Arc<Metrics>,
    pub vendors: StatefulVendors,
    pub hood_arrivals: Arrivals,
    pub channel_arrivals: Arrivals,
    pub chatwoot_arrivals: Arrivals,
    pub counts: Arc<PollCounts>,
}

impl SqsPipeline {
    pub async fn start(template: TemplateQueue, settings: Settings) -> SqsPipeline {
        assert!(
            template.partial_batch_responses,
            "the event source mapping reports batch item failures"
        );
        let sqs = moto::sqs_client().await.expect("moto SQS");
        let (url, dlq_url) =
            moto::create_queue_with_dlq(&sqs, template.visibility, template.max_receives)
                .await
                .expect("queues");
        let queue = SqsQueue::new(sqs.clone(), url);
        // The worker's own dead-letter queue is the one SQS redrives to, as in the template.
        let dead_letters = SqsQueue::new(sqs.clone(), dlq_url);
        let table = fresh_table().await.expect("DynamoDB Local table");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
        let app = webhooks::app(
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            clock.clone(),
        );
        let vendors = StatefulVendors::start(settings.faults).await;
        let hood_arrivals = Arrivals::mount(&vendors.hood).await;
        let channel_arrivals = Arrivals::mount(&vendors.channel).await;
        let chatwoot_arrivals = Arrivals::mount(&vendors.chatwoot).await;
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let configs = crate::pipeline::vendor_configs(&vendors);
        let worker = build_worker(WorkerParts {
            mappings: webhooks::mappings(),
            vendors: &configs,
            links: Arc::new(store.clone()),
            limiter_store: &store,
            limiter_account: "test",
            limits: &settings.limits,
            queue: Arc::new(queue.clone()),
            dead_letters: Arc::new(dead_letters.clone()),
            clock,
            policy: settings.policy,
            metrics: metrics.clone(),
        })
        .expect("clients build");
        SqsPipeline {
            template,
            table,
            sqs,
            queue,
            dead_letters,
            app,
            worker: Arc::new(worker),
            metrics,
            vendors,
            hood_arrivals,
            channel_arrivals,
            chatwoot_arrivals,
            counts: Arc::new(PollCounts::default()),
        }
    }

    /// Posts a signed Standard Webhooks delivery through the ingest router (which writes
    /// its claim to DynamoDB Local and sends the deliveries to the moto queue); answers the
    /// HTTP status.
    pub async fn post(&self, delivery_id: &str, body: &str) -> StatusCode {
        post_to(self.app.clone(), delivery_id, body).await
    }

    /// Starts `n` pollers acting as the event source mapping; they run until
    /// [`Pollers::drain`] or [`Pollers::stop`].
    pub fn start_pollers(&self, n: usize) -> Pollers {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let handles = (0..n)
            .map(|_| {
                let poller = Poller {
                    queue: self.queue.clone(),
                    worker: self.worker.clone(),
                    counts: self.counts.clone(),
                    batch_size: self.template.batch_size,
                    batching_window: self.template.batching_window,
                    timeout: self.template.function_timeout,
                    busy: busy.clone(),
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        poller.poll().await;
                    }
                })
            })
            .collect();
        Pollers {
            started: Instant::now(),
            sqs: self.sqs.clone(),
            url: self.queue.url().to_string(),
            stop,
            busy,
            handles,
        }
    }

    /// Every message in the dead-letter queue, taken out of it: `(body, attributes)`.
    pub async fn take_dead_letters(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let batch = self
                .dead_letters
                .receive(10, Duration::from_millis(200))
                .await
                .expect("receive from the DLQ");
            if batch.is_empty() {
                return bodies;
            }
            for m in batch {
                bodies.push(format!("{:?} {}", m.attributes, m.body));
                self.dead_letters.delete(&m.receipt).await.expect("delete");
            }
        }
    }
}

/// [`SqsPipeline::post`] through a clone of the ingest router (for posts spawned as their
/// own tasks, as concurrent Lambda invocations of ingest are).
pub async fn post_to(app: axum::Router, delivery_id: &str, body: &str) -> StatusCode {
    let request = webhooks::signed_with(
        "standard",
        &webhooks::secret("standard"),
        body,
        Utc::now(),
        Some(delivery_id),
    );
    let service = relay_shared::lambda::webhook_service(app);
    service
        .oneshot(request)
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// One poller of the event source mapping.
struct Poller {
    queue: SqsQueue,
    worker: Arc<Worker>,
    counts: Arc<PollCounts>,
    batch_size: u16,
    batching_window: Duration,
    timeout: Duration,
    busy: Arc<AtomicUsize>,
}

impl Poller {
    /// One poll: a long-polling receive of up to `BatchSize` messages gathered for the
    /// batching window, handed to the sync-worker handler with the function's timeout, then
    /// every message it did not report as failed deleted — what the event source mapping
    /// does with `ReportBatchItemFailures`.
    async fn poll(&self) {
        let batch = match receive_gathering(
            &self.queue,
            self.batch_size,
            Duration::from_secs(1),
            self.batching_window,
        )
        .await
        {
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("poller: receive failed: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            return;
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        let c = &self.counts;
        c.invocations.fetch_add(1, Ordering::SeqCst);
        c.received
            .fetch_add(u64::try_from(batch.len()).unwrap_or(0), Ordering::SeqCst);
        for m in &batch {
            c.max_receive_count
                .fetch_max(u64::from(m.receive_count), Ordering::SeqCst);
        }
        let records: Vec<serde_json::Value> = batch
            .iter()
            .map(|m| {
                json!({"messageId": m.message_id, "receiptHandle": m.receipt.as_str(), "body": m.body,
                       "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                       "messageAttributes": {}, "eventSource": "aws:sqs",
                       "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:relay-queue",
                       "awsRegion": "eu-west-1"})
            })
            .collect();
        let event = serde_json::from_value(json!({"Records": records})).expect("an SQS event");
        let mut context = Context::default();
        let deadline = Utc::now() + TimeDelta::from_std(self.timeout).unwrap_or(TimeDelta::MAX);
        context.deadline = u64::try_from(deadline.timestamp_millis()).unwrap_or(0);
        match relay_shared::lambda::handle_sqs(&self.worker, LambdaEvent::new(event, context)).await
        {
            Ok(response) => {
                for m in &batch {
                    let failed = response
                        .batch_item_failures
                        .iter()
                        .any(|f| f.item_identifier == m.message_id);
                    if failed {
                        c.reported.fetch_add(1, Ordering::SeqCst);
                    } else if self.queue.delete(&m.receipt).await.is_ok() {
                        c.deleted.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) => {
                eprintln!("poller: the handler failed: {e}");
                c.handler_errors.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Running pollers.
pub struct Pollers {
    started: Instant,
    sqs: aws_sdk_sqs::Client,
    url: String,
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Pollers {
    /// Messages in the queue: visible, in flight and delayed (SQS's approximate counts).
    pub async fn depth(&self) -> Option<u64> {
        self.depths().await.map(|d| d.iter().sum())
    }

    /// `[visible, in flight, delayed]`, as SQS counts them.
    pub async fn depths(&self) -> Option<[u64; 3]> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let mut request = self.sqs.get_queue_attributes().queue_url(&self.url);
        for name in &names {
            request = request.attribute_names(name.clone());
        }
        let out = request.send().await.ok()?;
        let attributes = out.attributes()?;
        let mut depths = [0; 3];
        for (depth, name) in depths.iter_mut().zip(&names) {
            *depth = attributes.get(name)?.parse::<u64>().ok()?;
        }
        Some(depths)
    }

    /// Lets the pollers run until the queue is empty — no message visible or delayed, none
    /// in flight, no poller inside the handler, on three checks in a row — or `within`
    /// passes; then stops them. Answers how long after the pollers started the queue was
    /// found empty, and how many messages were in flight then.
    ///
    /// A message in flight that no poller holds (moto under this load now and then leaves
    /// one: a receive whose answer did not arrive) comes back only after the visibility
    /// timeout (minutes); it is tolerated once `settled()` says every expected delivery is
    /// done, and reported.
    pub async fn drain(
        self,
        within: Duration,
        settled: impl Fn() -> bool,
    ) -> (Option<Duration>, u64) {
        let started = Instant::now();
        let mut quiet = 0;
        let mut drained = None;
        let mut in_flight = 0;
        while started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let idle = self.busy.load(Ordering::SeqCst) == 0;
            let empty = match self.depths().await {
                Some([0, flying, 0]) if flying == 0 || settled() => {
                    in_flight = flying;
                    true
                }
                _ => false,
            };
            if idle && empty {
                quiet += 1;
                if quiet == 3 {
                    drained = Some(self.started.elapsed());
                    break;
                }
            } else {
                quiet = 0;
            }
        }
        if drained.is_none() {
            eprintln!(
                "not drained: [visible, in flight, delayed] = {:?}, pollers in the handler {}",
                self.depths().await,
                self.busy.load(Ordering::SeqCst)
            );
        }
        self.stop().await;
        (drained, in_flight)
    }

    /// Stops the pollers (each finishes the batch it holds).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}
