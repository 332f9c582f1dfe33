//! Ingest and worker together on one DynamoDB Local table, with an in-process queue and
//! the stateful vendors: what the reliability tests drive.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::StatusCode;
use relay_shared::assembly::{WorkerParts, build_enrichment, build_worker};
use relay_shared::enrich::hubspot::HubspotCrmConfig;
use relay_shared::queue::Queue;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, GcraParams, SystemClock};
use relay_shared::vendors::{ChannelConfig, ChatwootConfig, HoodConfig, HttpSettings};
use relay_shared::worker::setup::VendorConfigs;
use relay_shared::worker::{Metrics, MetricsOutput, RetryPolicy, Worker};
use secrecy::SecretString;
use tower::ServiceExt;

use crate::dynamodb_local::{LocalTable, fresh_table};
use crate::stateful_vendors::{
    CHANNEL_KEY, CHANNEL_SECRET, CHATWOOT_ACCOUNT, CHATWOOT_TOKEN, Faults, HOOD_TOKEN,
    StatefulVendors,
};
use crate::webhooks;

/// The HubSpot private-app token the tests' CRM reader sends (as `Bearer`).
pub const HUBSPOT_TOKEN: &str = "pat-na1-0e1b7c2d-5f3a-4b9e-8c1d-2a6f9e0b7c31";

/// How long a vendor call may take before the client gives up (tests inject slower ones).
pub const CLIENT_TIMEOUT: Duration = Duration::from_millis(400);

/// The whole pipeline of one test.
pub struct Pipeline {
    pub table: LocalTable,
    pub queue: Arc<MemoryQueue>,
    pub dead_letters: Arc<MemoryQueue>,
    pub app: axum::Router,
    pub worker: Arc<Worker>,
    pub metrics: Arc<Metrics>,
    pub vendors: StatefulVendors,
}

/// Quick retries so faults resolve within a test's time: back-offs of at most 300 ms for a
/// minute after the first failure; a pause of 5 s after refused credentials (longer than a
/// call waits for its rate-limit slot, so deliveries during the pause are handed on).
pub fn test_policy() -> RetryPolicy {
    RetryPolicy {
        horizon: Duration::from_secs(60),
        base: Duration::from_millis(20),
        cap: Duration::from_millis(300),
        floor: Duration::from_millis(10),
        auth_pause: Duration::from_secs(5),
        // SQS delays are whole seconds: one wait for an identifier, then the dead letter.
        identity_retry: Duration::from_secs(1),
        identity_wait: Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

impl Pipeline {
    pub async fn start(faults: Faults, visibility: Duration) -> Pipeline {
        let table = fresh_table().await.expect("DynamoDB Local table");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
        let queue = Arc::new(MemoryQueue::new(visibility));
        let dead_letters = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let app = webhooks::app(Arc::new(store.clone()), queue.clone(), clock.clone());

        let vendors = StatefulVendors::start(faults).await;
        let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
        let worker = Arc::new(worker_for(
            &vendors,
            &store,
            queue.clone(),
            dead_letters.clone(),
            clock,
            metrics.clone(),
        ));
        Pipeline {
            table,
            queue,
            dead_letters,
            app,
            worker,
            metrics,
            vendors,
        }
    }

    /// The pipeline whose worker completes HubSpot changes from a CRM at `crm_base_url` (a
    /// mock's URI) with [`HUBSPOT_TOKEN`], resolving persons in the same table with the
    /// same key as ingest.
    pub fn with_hubspot_crm(mut self, crm_base_url: &str) -> Pipeline {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = DynamoStore::new(
            self.table.client.clone(),
            self.table.name.clone(),
            clock.clone(),
        );
        let mut configs = vendor_configs(&self.vendors);
        let mut crm = HubspotCrmConfig::new(crm_base_url, SecretString::from(HUBSPOT_TOKEN));
        crm.http.timeout_ms = u64::try_from(CLIENT_TIMEOUT.as_millis()).unwrap_or(400);
        configs.hubspot_crm = Some(crm);
        let identity = relay_shared::store::identity::Identity {
            store: Arc::new(store.clone()),
            key: webhooks::identity_key(),
        };
        let enrichment = build_enrichment(
            &webhooks::mappings(),
            &configs,
            Some(identity),
            &store,
            "test",
        )
        .expect("the reader builds")
        .expect("the hubspot source is signed as HubSpot");
        let worker = worker_for(
            &self.vendors,
            &store,
            self.queue.clone(),
            self.dead_letters.clone(),
            clock,
            self.metrics.clone(),
        )
        .with_enrichment(enrichment);
        self.worker = Arc::new(worker);
        self
    }

    /// Posts a signed Standard Webhooks delivery; answers the HTTP status.
    pub async fn post(&self, delivery_id: &str, body: &str) -> StatusCode {
        let request = webhooks::signed_with(
            "standard",
            &webhooks::secret("standard"),
            body,
            Utc::now(),
            Some(delivery_id),
        );
        let service = relay_shared::lambda::webhook_service(self.app.clone());
        service
            .oneshot(request)
            .await
            .map(|r| r.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Runs the worker until the queue is empty, or `within` passes. Answers whether it
    /// emptied.
    pub async fn drain(&self, within: Duration) -> bool {
        let until = tokio::time::Instant::now() + within;
        while !self.queue.is_empty() {
            if tokio::time::Instant::now() > until {
                return false;
            }
            let Ok(batch) = self.queue.receive(10, Duration::from_millis(100)).await else {
                return false;
            };
            let deadline = Utc::now() + TimeDelta::seconds(30);
            self.worker.handle_batch(&batch, deadline, true).await;
        }
        true
    }
}

/// The settings of the stateful vendors: Hood, Channel.io and Chatwoot with their test
/// credentials, every call held to [`CLIENT_TIMEOUT`] (tests inject slower answers).
pub fn vendor_configs(vendors: &StatefulVendors) -> VendorConfigs {
    let http = HttpSettings {
        timeout_ms: u64::try_from(CLIENT_TIMEOUT.as_millis()).unwrap_or(400),
        connect_timeout_ms: 200,
        ..HttpSettings::default()
    };
    VendorConfigs {
        hubspot_crm: None,
        hood: Some(HoodConfig {
            base_url: vendors.hood.uri(),
            token: SecretString::from(HOOD_TOKEN),
            http,
        }),
        channelio: Some(ChannelConfig {
            base_url: vendors.channel.uri(),
            access_key: SecretString::from(CHANNEL_KEY),
            access_secret: SecretString::from(CHANNEL_SECRET),
            http,
        }),
        omnivibe: None,
        chatwoot: Some(ChatwootConfig {
            base_url: vendors.chatwoot.uri(),
            api_access_token: SecretString::from(CHATWOOT_TOKEN),
            account_id: CHATWOOT_ACCOUNT,
            http,
        }),
    }
}

/// The worker of a pipeline: the stateful vendors behind a fast shared limiter in `store`,
/// the given queues (memory here, moto SQS in the tests of production queue semantics).
pub fn worker_for(
    vendors: &StatefulVendors,
    store: &DynamoStore,
    queue: Arc<dyn Queue>,
    dead_letters: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Worker {
    let configs = vendor_configs(vendors);
    build_worker(WorkerParts {
        mappings: webhooks::mappings(),
        vendors: &configs,
        links: Arc::new(store.clone()),
        limiter_store: store,
        limiter_account: "test",
        // A fast limiter: the production schedules are exercised by the limiter tests and
        // the storm through `relay serve`; here it must not be what the test waits for.
        limits: &|_| GcraParams::new(Duration::from_millis(1), 200),
        queue,
        dead_letters,
        clock,
        policy: test_policy(),
        metrics,
    })
    .expect("clients build")
}

/// A Standard Webhooks contact envelope for contact `i`.
pub fn contact_event(i: usize, name: &str, at: chrono::DateTime<Utc>) -> String {
    serde_json::json!({
        "type": "contact.updated",
        "timestamp": at.to_rfc3339(),
        "data": {
            "id": format!("usr_{i}"),
            "email": format!("user{i}@example.com"),
            "name": name,
            "properties": {"plan": "pro"}
        }
    })
    .to_string()
}
