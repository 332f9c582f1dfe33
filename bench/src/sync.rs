//! What one synced event costs in DynamoDB requests, end to end: ingest (the claim, with
//! its delivery-log entry and its person) plus, per vendor message, the worker's store
//! calls — the link lease and the commit carrying the attempt's log record (a record
//! written alone, on the event's item, counts as `log`) — and its limiter reservations,
//! counted apart. Ingest and worker are assembled as in
//! production (delivery log on, production rate-limit schedules, `MAX_SLOT_WAIT`), the
//! vendors are the strict sandbox (`relay_sandbox`), which records every request and checks
//! it against the vendor docs.
//!
//! Messages are processed one at a time so each count belongs to one message and no
//! contention inflates it (the limiter bench measures contention). Three rounds: new
//! contacts, an update of each, and a redelivery of an already applied message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{TimeDelta, Utc};
use relay_sandbox::{Sandbox, SandboxOptions};
use relay_shared::delivery::DeliveryMessage;
use relay_shared::ingress::ingest::Recording;
use relay_shared::ingress::{Ingest, RouterConfig, router};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{Queue, ReceivedMessage};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, LimiterKey, RateLimiter, SystemClock};
use relay_shared::vendors::Vendor;
use relay_shared::worker::setup::{VendorConfigs, build_targets, default_limits, gate};
use relay_shared::worker::{Metrics, MetricsOutput, RetryPolicy, Worker};
use relay_tests::webhooks;
use serde::Serialize;
use tower::ServiceExt;

use crate::dynamo::{self, Counter, ItemKind};
use crate::ingest::{SOURCE, Signer};
use crate::stats::round;

/// Per vendor message, averaged over the round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VendorCost {
    pub messages: usize,
    /// DynamoDB requests of the store: `link_calls + log_calls`.
    pub store_calls: f64,
    /// DynamoDB requests on the link item (lease, commit, abandon).
    pub link_calls: f64,
    /// DynamoDB requests on the event's item: the delivery-log record of the attempt.
    pub log_calls: f64,
    /// DynamoDB requests on the limiter item (reservations, two when stale).
    pub limiter_calls: f64,
    /// All DynamoDB requests of the message (`store_calls + limiter_calls`).
    pub ddb_calls: f64,
    /// HTTP requests the vendor received.
    pub vendor_calls: f64,
    /// Outcome counts as the worker counted them (`synced`, `duplicate`, ...).
    pub outcomes: BTreeMap<String, u64>,
}

/// One round: DynamoDB requests at ingest per event, and per vendor at the worker.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub events: usize,
    pub ingest_ddb_calls_per_event: f64,
    pub per_vendor: BTreeMap<&'static str, VendorCost>,
    /// The most DynamoDB requests one (event, vendor) delivery cost on average, over the
    /// vendors (the goal is ≤ 3).
    pub max_ddb_calls_per_delivery: f64,
    /// Ingest + every vendor's worker calls: what one event costs in all.
    pub ddb_calls_per_event_in_all: f64,
}

/// New contacts delivered as Lambda gets them from SQS: batches of 10 handled together
/// (the deliveries of a batch run concurrently, so their Hood lookups share list calls).
#[derive(Debug, Clone, Serialize)]
pub struct BatchedRound {
    pub contacts: usize,
    pub batch_size: usize,
    /// Hood HTTP requests per new contact: lookups (shared) + creates (+ patches).
    pub hood_calls_per_contact: f64,
    /// Of those, list calls (lookups) per contact.
    pub hood_lookups_per_contact: f64,
    /// Seconds from the first batch to the last Hood sync.
    pub seconds: f64,
    /// New contacts synced into Hood per minute under its production schedule.
    pub hood_contacts_per_minute: f64,
    /// Hood's limit in one-call contacts per minute (150/min).
    pub physical_limit_per_minute: f64,
    /// Every DynamoDB request of the worker over the round (all three vendors' messages,
    /// deliveries handed on to wait included) per (event, vendor) message ingested.
    pub ddb_calls_per_delivery: f64,
    /// Those requests by operation and item kind, in all.
    pub ddb_calls_by_operation: BTreeMap<String, u64>,
}

/// One run of the mixed storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormRound {
    /// `alone` (every message its own delivery) or `coalesced` (the messages of one batch
    /// for one person at one vendor delivered as one).
    pub worker: &'static str,
    pub persons: usize,
    /// Contact changes ingested (three per person).
    pub changes: usize,
    /// HTTP requests the vendor received per contact change.
    pub vendor_calls_per_change: BTreeMap<&'static str, f64>,
    /// All vendors' requests per contact change.
    pub vendor_calls_per_change_in_all: f64,
    /// Messages handed on to wait (mostly for another delivery's lease on the record).
    pub deferred: u64,
    /// Seconds from the first batch to an empty queue.
    pub seconds: f64,
}

/// The sync part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub contacts: usize,
    pub vendors: Vec<&'static str>,
    /// New contacts: Hood looks the profile up (by e-mail, then phone) and creates it, and
    /// lists the account's custom properties once per process; Channel.io upserts;
    /// Chatwoot searches and creates.
    pub new_contact: Round,
    /// The same contacts again with a changed name (ingested by the instance that
    /// resolved them: its guess of each person is checked in the claim's one write).
    pub update: Round,
    /// Ingest's DynamoDB requests per event for another update of each, through a second
    /// ingest instance that has resolved none of them (a fresh Lambda instance): its
    /// new-person write is refused, saying whose the identifiers are, then the claim.
    pub update_ingest_cold_instance: f64,
    /// A message already applied, received again (SQS at-least-once): per vendor.
    pub redelivery: BTreeMap<&'static str, VendorCost>,
    /// Other new contacts, in batches of 10 as SQS hands them to the worker.
    pub new_contact_batched: BatchedRound,
    /// A storm of mixed changes (signup, rename, plan and tags change of each person, sent
    /// back to back), in batches of 10: delivered one by one, then coalesced.
    pub mixed_storm: Vec<StormRound>,
    /// Requests the sandbox vendors found breaking a documented rule (must be 0).
    pub vendor_rule_violations: usize,
    pub dead_letters: usize,
}

/// A vendor account in use for a while: Hood already has the custom properties the
/// built-in mappings define (the first sync ever would create them, once).
pub fn established_account() -> SandboxOptions {
    SandboxOptions {
        hood_properties: vec!["company_name".into(), "plan".into(), "utm_source".into()],
        ..SandboxOptions::default()
    }
}

struct Rig {
    app: axum::Router,
    /// A second ingest instance (its own person cache) over the same table.
    app_cold: axum::Router,
    queue: Arc<MemoryQueue>,
    dead_letters: Arc<MemoryQueue>,
    worker: Worker,
    /// The same worker without coalescing (how it ran before; the storm's comparison).
    worker_alone: Worker,
    metrics: Arc<Metrics>,
    sandbox: Sandbox,
    counter: Counter,
    signer: Signer,
}

impl Rig {
    async fn start(endpoint: &str) -> anyhow::Result<Rig> {
        let counter = Counter::default();
        let client = dynamo::client(endpoint, &counter);
        let table = dynamo::fresh_table(&client, "sync").await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(client, table, clock.clone());
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(60)));
        let dead_letters = Arc::new(MemoryQueue::new(Duration::from_secs(60)));
        // As `runtime::ingest_from_env` builds it: the delivery log on (no raw requests kept,
        // the default). Each call is another ingest instance over the same table (a person
        // cache of its own).
        let ingest_instance = || -> anyhow::Result<axum::Router> {
            let (ingest, _) = Ingest::new(
                webhooks::mappings(),
                &webhooks::source_secrets(),
                Arc::new(store.clone()),
                relay_shared::ingress::Identity {
                    store: Arc::new(store.clone()),
                    key: webhooks::identity_key(),
                },
                queue.clone(),
                clock.clone(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let ingest = ingest.with_recording(Recording::new(Arc::new(store.clone()), None));
            Ok(router(
                Arc::new(ingest),
                RouterConfig {
                    default_scheme: "https",
                },
            ))
        };
        let app = ingest_instance()?;
        let app_cold = ingest_instance()?;

        let sandbox = Sandbox::start_with(established_account())
            .await
            .context("starting the sandbox vendors")?;
        let configs = VendorConfigs {
            hubspot_crm: None,
            hood: Some(sandbox.hood_config()),
            channelio: Some(sandbox.channelio_config()),
            omnivibe: None,
            chatwoot: Some(sandbox.chatwoot_config()),
        };
        let mut limiters: HashMap<Vendor, Arc<dyn RateLimiter>> = HashMap::new();
        for vendor in configs.vendors() {
            let key = LimiterKey::new(vendor, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
            limiters.insert(
                vendor,
                Arc::new(store.limiter(&key, default_limits(vendor))),
            );
        }
        let targets = build_targets(&configs, &gate(&limiters, clock.clone()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let worker = |targets| {
            Worker::new(
                webhooks::mappings(),
                Arc::new(store.clone()),
                targets,
                limiters.clone(),
                queue.clone(),
                dead_letters.clone(),
                clock.clone(),
                RetryPolicy::default(),
                metrics.clone(),
            )
            .with_journal(Arc::new(store.clone()))
        };
        let worker_alone = worker(targets.clone()).coalescing(false);
        let worker = worker(targets);
        Ok(Rig {
            app,
            app_cold,
            queue,
            dead_letters,
            worker,
            worker_alone,
            metrics,
            sandbox,
            counter,
            signer: Signer::new(&webhooks::mappings(), SOURCE)?,
        })
    }

    /// Posts the deliveries one by one; answers DynamoDB requests per event.
    async fn ingest(&self, deliveries: &[(String, String)]) -> anyhow::Result<f64> {
        self.ingest_into(&self.app, deliveries).await
    }

    /// [`Self::ingest`] through `app`.
    async fn ingest_into(
        &self,
        app: &axum::Router,
        deliveries: &[(String, String)],
    ) -> anyhow::Result<f64> {
        let before = self.counter.snapshot();
        let service = relay_shared::lambda::webhook_service(app.clone());
        for (id, body) in deliveries {
            let request = self.signer.request(SOURCE, id, body)?;
            let Ok(response) = service.clone().oneshot(request).await;
            if response.status().as_u16() != 202 {
                bail!("ingest answered {}", response.status());
            }
        }
        let calls = self.counter.snapshot().since(&before).total();
        Ok(calls as f64 / deliveries.len().max(1) as f64)
    }

    /// Processes one message with the worker; what it cost.
    async fn process(
        &self,
        message: &ReceivedMessage,
        settle: bool,
    ) -> anyhow::Result<(Vendor, Sample)> {
        let vendor = DeliveryMessage::from_body(&message.body)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .vendor;
        let deadline = Utc::now() + TimeDelta::seconds(60);
        let calls_before = self.counter.snapshot();
        let requests_before = self.sandbox.requests_of(vendor).len();
        let outcomes_before = self.metrics.snapshot();
        if settle {
            self.worker.handle(message, deadline, true).await;
        } else {
            self.worker.process(message, deadline).await;
        }
        let calls = self.counter.snapshot().since(&calls_before);
        let outcomes = self
            .metrics
            .snapshot()
            .into_iter()
            .filter_map(|((v, c), n)| {
                let was = outcomes_before.get(&(v, c)).copied().unwrap_or(0);
                (v == vendor && n > was).then(|| (c.name().to_string(), n - was))
            })
            .collect();
        Ok((
            vendor,
            Sample {
                link: calls.of_kind(ItemKind::Link),
                log: calls.of_kind(ItemKind::Claim),
                limiter: calls.of_kind(ItemKind::Limiter),
                total: calls.total(),
                vendor_calls: (self.sandbox.requests_of(vendor).len() - requests_before) as u64,
                outcomes,
            },
        ))
    }

    /// Works the queue empty, one message at a time; keeps one processed message per
    /// vendor for the redelivery round.
    async fn drain(
        &self,
        kept: &mut HashMap<Vendor, ReceivedMessage>,
    ) -> anyhow::Result<BTreeMap<&'static str, VendorCost>> {
        let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
        while !self.queue.is_empty() {
            if tokio::time::Instant::now() > give_up {
                bail!("the worker did not empty the queue within 5 minutes");
            }
            let batch = self
                .queue
                .receive(1, Duration::from_millis(200))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for message in batch {
                let (vendor, sample) = self.process(&message, true).await?;
                kept.entry(vendor).or_insert(message);
                samples.entry(vendor.as_str()).or_default().push(sample);
            }
        }
        Ok(samples
            .into_iter()
            .map(|(v, s)| (v, VendorCost::average(&s)))
            .collect())
    }
}

impl Rig {
    /// Works the queue empty in batches of `size` handled together, as Lambda does.
    async fn drain_batched(&self, size: u16) -> anyhow::Result<()> {
        self.drain_batched_by(&self.worker, size).await
    }

    /// [`Self::drain_batched`] with `worker`.
    async fn drain_batched_by(&self, worker: &Worker, size: u16) -> anyhow::Result<()> {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(600);
        while !self.queue.is_empty() {
            if tokio::time::Instant::now() > give_up {
                bail!("the worker did not empty the queue within 10 minutes");
            }
            let batch = self
                .queue
                .receive(size, Duration::from_millis(200))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let deadline = Utc::now() + TimeDelta::seconds(60);
            worker.handle_batch(&batch, deadline, true).await;
        }
        Ok(())
    }
}

/// What one message cost.
struct Sample {
    link: u64,
    log: u64,
    limiter: u64,
    total: u64,
    vendor_calls: u64,
    outcomes: BTreeMap<String, u64>,
}

impl VendorCost {
    fn average(samples: &[Sample]) -> VendorCost {
        let n = samples.len().max(1) as f64;
        let mean = |f: fn(&Sample) -> u64| round(samples.iter().map(f).sum::<u64>() as f64 / n, 3);
        let mut outcomes = BTreeMap::new();
        for s in samples {
            for (k, v) in &s.outcomes {
                *outcomes.entry(k.clone()).or_insert(0) += v;
            }
        }
        VendorCost {
            messages: samples.len(),
            store_calls: mean(|s| s.link + s.log),
            link_calls: mean(|s| s.link),
            log_calls: mean(|s| s.log),
            limiter_calls: mean(|s| s.limiter),
            ddb_calls: mean(|s| s.total),
            vendor_calls: mean(|s| s.vendor_calls),
            outcomes,
        }
    }
}

fn round_report(
    events: usize,
    ingest: f64,
    per_vendor: BTreeMap<&'static str, VendorCost>,
) -> Round {
    let worker: f64 = per_vendor.values().map(|c| c.ddb_calls).sum();
    let max = per_vendor.values().map(|c| c.ddb_calls).fold(0.0, f64::max);
    Round {
        events,
        ingest_ddb_calls_per_event: round(ingest, 3),
        max_ddb_calls_per_delivery: round(max, 3),
        per_vendor,
        ddb_calls_per_event_in_all: round(ingest + worker, 3),
    }
}

/// Runs the three rounds for `contacts` contacts.
pub async fn run(endpoint: &str, contacts: usize) -> anyhow::Result<Report> {
    let rig = Rig::start(endpoint).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut kept = HashMap::new();

    let created = crate::ingest::deliveries(&format!("{run_id}c"), 0, contacts);
    let ingest_new = rig.ingest(&created).await?;
    let new_contact = round_report(contacts, ingest_new, rig.drain(&mut kept).await?);

    // The same contacts, renamed a little later (newer `occurred_at`).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let at = Utc::now();
    let updated: Vec<(String, String)> = (0..contacts)
        .map(|i| {
            (
                format!("msg_{run_id}u_{i}"),
                crate::ingest::contact_event(i, &format!("Renamed User {i}"), at),
            )
        })
        .collect();
    let ingest_update = rig.ingest(&updated).await?;
    let mut ignored = HashMap::new();
    let update = round_report(contacts, ingest_update, rig.drain(&mut ignored).await?);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let at = Utc::now();
    let again: Vec<(String, String)> = (0..contacts)
        .map(|i| {
            (
                format!("msg_{run_id}v_{i}"),
                crate::ingest::contact_event(i, &format!("Renamed Again {i}"), at),
            )
        })
        .collect();
    let update_ingest_cold_instance = round(rig.ingest_into(&rig.app_cold, &again).await?, 3);
    rig.drain(&mut ignored).await?;

    let mut redelivery = BTreeMap::new();
    let mut kept: Vec<_> = kept.into_iter().collect();
    kept.sort_by_key(|(v, _)| v.as_str());
    for (vendor, message) in kept {
        let (_, sample) = rig.process(&message, false).await?;
        redelivery.insert(vendor.as_str(), VendorCost::average(&[sample]));
    }

    // Other new contacts, as SQS hands them to Lambda: ten at a time.
    let fresh = crate::ingest::deliveries(&format!("{run_id}b"), contacts, contacts);
    rig.ingest(&fresh).await?;
    let hood_before = rig.sandbox.requests_of(Vendor::Hood);
    let calls_before = rig.counter.snapshot();
    let started = std::time::Instant::now();
    rig.drain_batched(10).await?;
    let worker_counts = rig.counter.snapshot().since(&calls_before);
    let worker_calls = worker_counts.total() as f64;
    let hood: Vec<_> = rig.sandbox.requests_of(Vendor::Hood)[hood_before.len()..].to_vec();
    let seconds = started.elapsed().as_secs_f64();
    let n = contacts.max(1) as f64;
    let lookups = hood.iter().filter(|r| r.method == "GET").count() as f64;
    let new_contact_batched = BatchedRound {
        contacts,
        batch_size: 10,
        hood_calls_per_contact: round(hood.len() as f64 / n, 3),
        hood_lookups_per_contact: round(lookups / n, 3),
        seconds: round(seconds, 1),
        hood_contacts_per_minute: round(n / seconds * 60.0, 1),
        physical_limit_per_minute: 150.0,
        ddb_calls_per_delivery: round(worker_calls / (3.0 * n), 3),
        ddb_calls_by_operation: worker_counts.labelled(),
    };

    let vendors = ["hood", "channelio", "chatwoot"].to_vec();
    let persons = contacts.max(1);
    let mut mixed_storm = Vec::new();
    for (name, worker, from) in [
        ("alone", &rig.worker_alone, 2 * contacts),
        ("coalesced", &rig.worker, 3 * contacts),
    ] {
        mixed_storm.push(rig.storm(name, worker, &run_id, from, persons).await?);
    }
    let report = Report {
        contacts,
        vendors,
        new_contact,
        update,
        update_ingest_cold_instance,
        redelivery,
        new_contact_batched,
        mixed_storm,
        vendor_rule_violations: rig.sandbox.violation_count(),
        dead_letters: rig.dead_letters.len(),
    };
    rig.sandbox.shutdown().await;
    Ok(report)
}

/// Change `k` (0: the signup, 1: a rename, 2: a plan and tags change) of storm person `i`,
/// at `at`: the sender's whole contact each time, as Standard Webhooks senders send it.
fn storm_event(i: usize, k: usize, at: chrono::DateTime<Utc>) -> String {
    let name = if k == 0 {
        "Storm User"
    } else {
        "Storm Userová"
    };
    let mut event: serde_json::Value =
        serde_json::from_str(&crate::ingest::contact_event(i, &format!("{name} {i}"), at))
            .unwrap_or_default();
    event["type"] = serde_json::json!(if k == 0 {
        "contact.created"
    } else {
        "contact.updated"
    });
    if k == 2 {
        event["data"]["properties"]["plan"] = serde_json::json!("enterprise");
        event["data"]["tags"] = serde_json::json!(["trial", "bench", "storm"]);
    }
    event.to_string()
}

impl Rig {
    /// The mixed storm with `worker`: `persons` new persons (numbered from `from`), each
    /// with three changes posted back to back, then the queue worked empty in batches of
    /// 10 as Lambda gets them.
    async fn storm(
        &self,
        name: &'static str,
        worker: &Worker,
        run_id: &str,
        from: usize,
        persons: usize,
    ) -> anyhow::Result<StormRound> {
        let start = Utc::now();
        let mut deliveries = Vec::with_capacity(3 * persons);
        for i in from..from + persons {
            for k in 0..3 {
                let at = start + TimeDelta::seconds(i64::try_from(k).unwrap_or(0));
                deliveries.push((format!("msg_{run_id}s{i}_{k}"), storm_event(i, k, at)));
            }
        }
        let vendors = [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot];
        let before: Vec<usize> = vendors
            .iter()
            .map(|v| self.sandbox.requests_of(*v).len())
            .collect();
        let deferred_before = self.deferred();
        self.ingest(&deliveries).await?;
        let started = std::time::Instant::now();
        self.drain_batched_by(worker, 10).await?;
        let seconds = started.elapsed().as_secs_f64();
        let changes = deliveries.len();
        let mut per_change = BTreeMap::new();
        let mut all = 0;
        for (v, was) in vendors.iter().zip(before) {
            let calls = self.sandbox.requests_of(*v).len() - was;
            all += calls;
            per_change.insert(v.as_str(), round(calls as f64 / changes as f64, 3));
        }
        Ok(StormRound {
            worker: name,
            persons,
            changes,
            vendor_calls_per_change: per_change,
            vendor_calls_per_change_in_all: round(all as f64 / changes as f64, 3),
            deferred: self.deferred() - deferred_before,
            seconds: round(seconds, 1),
        })
    }

    fn deferred(&self) -> u64 {
        self.metrics
            .snapshot()
            .into_iter()
            .filter(|((_, c), _)| *c == relay_shared::worker::Counter::Deferred)
            .map(|(_, n)| n)
            .sum()
    }
}
