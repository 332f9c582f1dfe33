//! Ingest: signed Standard Webhooks deliveries through the real Lambda HTTP service (the
//! shared axum router behind `lambda::webhook_service`), in process with `oneshot`, on a
//! DynamoDB Local table and the in-memory queue — first deliveries, then the same
//! deliveries again (duplicates). Latency is the handler's, per request (signing and
//! building the request are outside the timing); DynamoDB calls are counted per event.
//! Ingest writes each claim once and never confirms it, so a duplicate enqueues its own
//! copy (the worker recognises it): the messages duplicates enqueue are counted too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use http::Method;
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::mapping::Mappings;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, SystemClock};
use relay_tests::webhooks;
use serde::Serialize;
use tower::ServiceExt;

use crate::dynamo::{self, Counter, Counts};
use crate::stats::{percentile, round};

/// The source the ingest bench posts as (a Standard Webhooks contact envelope, three
/// vendors per event).
pub const SOURCE: &str = "standard";

/// Settings of the ingest bench.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Events per phase.
    pub events: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Events of the untimed warm-up (JIT of DynamoDB Local, connection pool).
    pub warmup: usize,
}

/// One phase's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub events_per_s: f64,
    /// DynamoDB requests per event, all operations.
    pub ddb_calls_per_event: f64,
    /// `"<operation> <item kind>"` → requests in the phase.
    pub ddb_calls: BTreeMap<String, u64>,
    /// HTTP status → responses.
    pub statuses: BTreeMap<u16, usize>,
    /// Responses whose body did not say what the phase expects (`accepted: 1` for first
    /// deliveries, `duplicates: 1` for duplicates).
    pub unexpected: usize,
}

/// The ingest part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub source: &'static str,
    pub concurrency: usize,
    pub warmup_events: usize,
    pub first_delivery: Phase,
    pub duplicate: Phase,
    /// Messages the first deliveries put on the queue (one per event and vendor).
    pub messages_enqueued: usize,
    /// Messages the duplicates put on the queue (one per duplicate and vendor: the claims
    /// are never confirmed, so a duplicate enqueues its own copy).
    pub messages_enqueued_by_duplicates: usize,
    /// A flood of refused requests on one core.
    pub flood: Flood,
}

/// A flood of requests that fail the signature check, sent one after another on a
/// single-threaded runtime (one core): how many are refused per second, and what they cost.
#[derive(Debug, Clone, Serialize)]
pub struct Flood {
    /// Requests per kind.
    pub requests: usize,
    /// Signed with a wrong secret: refused per second on one core.
    pub wrong_signature_per_s: f64,
    /// No signature headers at all: refused per second on one core.
    pub unsigned_per_s: f64,
    /// DynamoDB requests the whole flood caused (the goal is 0).
    pub ddb_calls: u64,
    /// Messages the flood put on the queue (the goal is 0).
    pub messages_enqueued: usize,
    /// HTTP status → responses.
    pub statuses: BTreeMap<u16, usize>,
}

/// Signs Standard Webhooks deliveries as a sender would, and wraps them as API Gateway
/// v2 events the way Lambda delivers them.
pub struct Signer {
    verifier: Verifier,
}

impl Signer {
    pub fn new(mappings: &Mappings, source: &str) -> anyhow::Result<Signer> {
        let scheme = mappings
            .source(source)
            .and_then(|s| s.signature.clone())
            .with_context(|| format!("{source} is not a signed webhook source"))?;
        let verifier = Verifier::new(&scheme, &[webhooks::secret(source)])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Signer { verifier })
    }

    /// The Lambda HTTP request of one signed delivery of `body` to `/hooks/<segment>/<source>`.
    pub fn request(
        &self,
        source: &str,
        delivery_id: &str,
        body: &str,
    ) -> anyhow::Result<lambda_http::Request> {
        let segment = webhooks::route_segment(source);
        let uri = format!("https://{}/hooks/{segment}/{source}", webhooks::HOST);
        let headers = self
            .verifier
            .sign(&SignRequest {
                method: &Method::POST,
                uri: &uri,
                body: body.as_bytes(),
                now: Utc::now(),
                delivery_id: Some(delivery_id),
            })
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        let event = webhooks::apigw_event(source, segment, &headers, body);
        lambda_http::request::from_str(&event.to_string()).context("building the Lambda request")
    }
}

/// What the phase expects each response body to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accepted,
    Duplicate,
}

/// The ingest bench's assembled pipeline.
struct Rig {
    app: axum::Router,
    queue: Arc<MemoryQueue>,
    counter: Counter,
    signer: Signer,
}

impl Rig {
    async fn start(endpoint: &str) -> anyhow::Result<Rig> {
        let counter = Counter::default();
        let client = dynamo::client(endpoint, &counter);
        let table = dynamo::fresh_table(&client, "ingest").await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(client, table, clock.clone());
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(300)));
        let app = webhooks::app(Arc::new(store), queue.clone(), clock);
        let signer = Signer::new(&webhooks::mappings(), SOURCE)?;
        Ok(Rig {
            app,
            queue,
            counter,
            signer,
        })
    }

    /// Sends every `(delivery id, body)` with `concurrency` requests in flight.
    async fn phase(
        &self,
        deliveries: &[(String, String)],
        concurrency: usize,
        expect: Expect,
    ) -> anyhow::Result<Phase> {
        // Built before the clock starts; the signatures are minutes-tolerant.
        let mut requests = VecDeque::with_capacity(deliveries.len());
        for (id, body) in deliveries {
            requests.push_back(self.signer.request(SOURCE, id, body)?);
        }
        let requests = Arc::new(Mutex::new(requests));
        let service = relay_shared::lambda::webhook_service(self.app.clone());
        let before = self.counter.snapshot();
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let requests = requests.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let next = requests
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .pop_front();
                        let Some(request) = next else { break };
                        let sent = Instant::now();
                        let response = service.clone().oneshot(request).await;
                        let latency = sent.elapsed();
                        let Ok(response) = response;
                        let status = response.status().as_u16();
                        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
                            .await
                            .unwrap_or_default();
                        seen.push((latency, status, body));
                    }
                    seen
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(deliveries.len());
        let mut statuses = BTreeMap::new();
        let mut unexpected = 0;
        for task in tasks {
            for (latency, status, body) in task.await.context("an ingest task panicked")? {
                latencies.push(latency.as_secs_f64() * 1_000.0);
                *statuses.entry(status).or_insert(0) += 1;
                if !says(&body, expect) {
                    unexpected += 1;
                }
            }
        }
        let wall = started.elapsed();
        let calls = self.counter.snapshot().since(&before);
        Ok(phase_report(&latencies, wall, &calls, statuses, unexpected))
    }
}

fn says(body: &[u8], expect: Expect) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let n = |field: &str| value.get(field).and_then(serde_json::Value::as_u64);
    match expect {
        Expect::Accepted => n("accepted") == Some(1) && n("duplicates") == Some(0),
        Expect::Duplicate => n("accepted") == Some(0) && n("duplicates") == Some(1),
    }
}

fn phase_report(
    latencies_ms: &[f64],
    wall: Duration,
    calls: &Counts,
    statuses: BTreeMap<u16, usize>,
    unexpected: usize,
) -> Phase {
    let events = latencies_ms.len();
    let per_event = if events == 0 {
        0.0
    } else {
        calls.total() as f64 / events as f64
    };
    Phase {
        events,
        p50_ms: round(percentile(latencies_ms, 50.0).unwrap_or(0.0), 2),
        p99_ms: round(percentile(latencies_ms, 99.0).unwrap_or(0.0), 2),
        max_ms: round(percentile(latencies_ms, 100.0).unwrap_or(0.0), 2),
        events_per_s: round(events as f64 / wall.as_secs_f64().max(1e-9), 1),
        ddb_calls_per_event: round(per_event, 3),
        ddb_calls: calls.labelled(),
        statuses,
        unexpected,
    }
}

/// `count` deliveries of distinct contacts, with delivery ids unique to this run.
pub fn deliveries(run: &str, from: usize, count: usize) -> Vec<(String, String)> {
    let at = Utc::now();
    (from..from + count)
        .map(|i| {
            (
                format!("msg_{run}_{i}"),
                contact_event(i, &format!("Bench User {i}"), at),
            )
        })
        .collect()
}

/// A Standard Webhooks contact envelope for contact `i`, shaped like the built-in sample
/// (`shared/fixtures/standard.json`): e-mail, phone, organisation, tags, a list, consent
/// and two custom properties, so mapping does its full work (phone parsing included).
pub fn contact_event(i: usize, name: &str, at: DateTime<Utc>) -> String {
    serde_json::json!({
        "type": "contact.updated",
        "timestamp": at.to_rfc3339(),
        "data": {
            "id": format!("usr_{i}"),
            "email": format!("user{i}@example.com"),
            "phone": format!("+1 202-555-{:04}", i % 10_000),
            "name": name,
            "organization": "Bench Labs",
            "tags": ["trial", "bench"],
            "lists": ["1000102"],
            "consent": {"email": true, "sms": false},
            "properties": {"plan": "pro", "utm_source": "bench"}
        }
    })
    .to_string()
}

impl Rig {
    /// Sends `requests` one at a time on a runtime of its own, on one thread.
    fn flood_phase(
        &self,
        requests: Vec<lambda_http::Request>,
    ) -> anyhow::Result<(f64, BTreeMap<u16, usize>)> {
        let service = relay_shared::lambda::webhook_service(self.app.clone());
        let n = requests.len();
        let worker = std::thread::spawn(
            move || -> anyhow::Result<(Duration, BTreeMap<u16, usize>)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("a single-threaded runtime")?;
                runtime.block_on(async move {
                    let mut statuses = BTreeMap::new();
                    let started = Instant::now();
                    for request in requests {
                        let Ok(response) = service.clone().oneshot(request).await;
                        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
                    }
                    Ok((started.elapsed(), statuses))
                })
            },
        );
        let (wall, statuses) = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
        Ok((round(n as f64 / wall.as_secs_f64().max(1e-9), 0), statuses))
    }

    async fn flood(&self, requests: usize) -> anyhow::Result<Flood> {
        let queued_before = self.queue.len();
        let before = self.counter.snapshot();
        let wrong = Signer {
            verifier: Verifier::new(
                &webhooks::mappings()
                    .source(SOURCE)
                    .and_then(|s| s.signature.clone())
                    .context("standard source")?,
                &[secrecy::SecretString::from(
                    "whsec_QmFkU2VjcmV0Tm90VGhlUmVhbE9uZQ==",
                )],
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let bodies = deliveries("flood", 0, requests);
        let mut signed_wrong = Vec::with_capacity(requests);
        let mut unsigned = Vec::with_capacity(requests);
        for (id, body) in &bodies {
            signed_wrong.push(wrong.request(SOURCE, id, body)?);
            let event = webhooks::apigw_event(
                SOURCE,
                webhooks::route_segment(SOURCE),
                &http::HeaderMap::new(),
                body,
            );
            unsigned.push(
                lambda_http::request::from_str(&event.to_string())
                    .context("building the Lambda request")?,
            );
        }
        let (wrong_signature_per_s, mut statuses) = self.flood_phase(signed_wrong)?;
        let (unsigned_per_s, more) = self.flood_phase(unsigned)?;
        for (status, n) in more {
            *statuses.entry(status).or_insert(0) += n;
        }
        Ok(Flood {
            requests,
            wrong_signature_per_s,
            unsigned_per_s,
            ddb_calls: self.counter.snapshot().since(&before).total(),
            messages_enqueued: self.queue.len() - queued_before,
            statuses,
        })
    }
}

/// Runs warm-up, first deliveries and duplicates.
pub async fn run(endpoint: &str, options: Options) -> anyhow::Result<Report> {
    let rig = Rig::start(endpoint).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    let warmup = deliveries(&format!("{run_id}w"), 0, options.warmup);
    if !warmup.is_empty() {
        rig.phase(&warmup, options.concurrency, Expect::Accepted)
            .await?;
        rig.phase(&warmup, options.concurrency, Expect::Duplicate)
            .await?;
    }
    let queued_before = rig.queue.len();

    let measured = deliveries(&run_id, 0, options.events);
    let first = rig
        .phase(&measured, options.concurrency, Expect::Accepted)
        .await?;
    let messages_enqueued = rig.queue.len() - queued_before;
    let duplicate = rig
        .phase(&measured, options.concurrency, Expect::Duplicate)
        .await?;
    let messages_enqueued_by_duplicates = rig.queue.len() - queued_before - messages_enqueued;
    let flood = rig.flood(options.events.max(1) * 5).await?;
    if first.unexpected > 0 || duplicate.unexpected > 0 {
        bail!(
            "ingest answered unexpectedly: {} first deliveries and {} duplicates (statuses {:?} / {:?})",
            first.unexpected,
            duplicate.unexpected,
            first.statuses,
            duplicate.statuses
        );
    }
    Ok(Report {
        source: SOURCE,
        concurrency: options.concurrency,
        warmup_events: options.warmup,
        first_delivery: first,
        duplicate,
        messages_enqueued,
        messages_enqueued_by_duplicates,
        flood,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies_are_checked_exactly() {
        assert!(says(br#"{"accepted":1,"duplicates":0}"#, Expect::Accepted));
        assert!(!says(br#"{"accepted":0,"duplicates":1}"#, Expect::Accepted));
        assert!(says(br#"{"accepted":0,"duplicates":1}"#, Expect::Duplicate));
        assert!(!says(br#"{"code":"in_progress"}"#, Expect::Duplicate));
        assert!(!says(b"not json", Expect::Accepted));
    }

    #[test]
    fn bench_contacts_map_fully_with_distinct_phones() {
        let mappings = webhooks::mappings();
        let source = mappings.source(SOURCE).expect("standard source");
        let phone = |i: usize| {
            let payload: serde_json::Value =
                serde_json::from_str(&contact_event(i, "Ann", Utc::now())).expect("json");
            let defaults = relay_shared::mapping::EventDefaults {
                event_id: format!("e{i}"),
                received_at: Utc::now(),
            };
            let changes = source.extract(&payload, &defaults).expect("maps");
            assert_eq!(changes.len(), 1);
            let contact = &changes[0].contact;
            assert_eq!(
                contact.email.as_ref().map(|e| e.as_str().to_string()),
                Some(format!("user{i}@example.com"))
            );
            contact.phone.as_ref().map(|p| p.as_str().to_string())
        };
        assert_eq!(phone(7), Some("+12025550007".to_string()));
        assert_eq!(phone(1234), Some("+12025551234".to_string()));
    }
}
