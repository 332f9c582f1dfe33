//! A rotated vendor token is used without a restart: the worker re-reads its vendor
//! settings parameter when a vendor refuses the token in use, rebuilds that client and
//! tries the delivery once more — against the sandbox's real credential checks.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use relay_sandbox::Sandbox;
use relay_sandbox::samples::sample;
use relay_shared::assembly::{DEFAULT_LIMITS, WorkerParts, build_rotating_worker};
use relay_shared::delivery::DeliveryMessage;
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{OutboundMessage, Queue};
use relay_shared::runtime::parse_vendor_settings;
use relay_shared::secrets::{MemoryParameter, RefreshPolicy, RefreshingParameter};
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{Clock, SystemClock};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Counter, Metrics, MetricsOutput, RetryPolicy};
use secrecy::ExposeSecret;

fn hood_settings(sandbox: &Sandbox, token: &str) -> String {
    serde_json::json!({"hood": {"base_url": sandbox.hood_url(), "token": token}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_re_read_and_the_delivery_succeeds_with_the_new_one() {
    let sandbox = Sandbox::start().await.unwrap();
    let good = sandbox.credentials().hood_token.expose_secret().to_string();
    let parameter = Arc::new(MemoryParameter::new(
        "/relay/vendor-secrets",
        hood_settings(&sandbox, "revoked-token"),
    ));
    let settings = Arc::new(
        RefreshingParameter::load(
            parameter.clone(),
            RefreshPolicy {
                min_forced_gap: Duration::ZERO,
                ..RefreshPolicy::DEFAULT
            },
            parse_vendor_settings,
        )
        .await
        .unwrap(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = MemoryStore::new(clock.clone());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let dead_letters = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
    let mappings = Arc::new(Mappings::builtin().unwrap());
    let worker = build_rotating_worker(
        WorkerParts {
            mappings: mappings.clone(),
            vendors: &settings.current(),
            links: Arc::new(store.clone()),
            limiter_store: &store,
            limiter_account: "default",
            limits: &DEFAULT_LIMITS,
            queue: queue.clone(),
            dead_letters: dead_letters.clone(),
            clock,
            policy: RetryPolicy::default(),
            metrics: metrics.clone(),
        },
        settings.clone(),
    )
    .unwrap();

    // The operator rotates the token: the parameter holds the new one; the worker still
    // has the old one in use.
    parameter.set(hood_settings(&sandbox, &good));
    let reads_before = parameter.reads();

    let body: serde_json::Value = serde_json::from_str(sample("typeform").unwrap().body).unwrap();
    let change = mappings
        .source("typeform")
        .unwrap()
        .extract(
            &body,
            &EventDefaults {
                event_id: "rotation".into(),
                received_at: Utc::now(),
            },
        )
        .unwrap()
        .remove(0);
    let message = DeliveryMessage::new(Vendor::Hood, change);
    queue
        .send_batch(&[OutboundMessage::new("m1", message.to_body())])
        .await
        .unwrap();
    let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    worker
        .handle_batch(&batch, Utc::now() + TimeDelta::seconds(30), true)
        .await;

    // The first call was refused (401 with the old token), the parameter was re-read once,
    // and the profile was created with the new token.
    let hood = sandbox.requests_of(Vendor::Hood);
    assert_eq!(hood.first().map(|r| r.status), Some(401), "{hood:?}");
    assert_eq!(parameter.reads(), reads_before + 1);
    assert_eq!(sandbox.hood_profiles().len(), 1);
    assert_eq!(
        sandbox.hood_profiles()[0].email.as_deref(),
        Some("ann.lee@example.com")
    );
    assert_eq!(dead_letters.len(), 0);
    assert_eq!(metrics.total(Counter::Synced), 1);
    // The next delivery uses the new client straight away: no refused call, no re-read.
    let reads_after = parameter.reads();
    let second = sample("typeform")
        .unwrap()
        .body
        .replace("01JD8Z9K3M4N5P6Q7R8S9T0V1W", "01JD8Z9K3M4N5P6Q7R8S9T0V2X")
        .replace("Ann.Lee@Example.com", "Bo.Chen@Example.com")
        .replace("+14155552671", "+442071838750");
    let change = mappings
        .source("typeform")
        .unwrap()
        .extract(
            &serde_json::from_str(&second).unwrap(),
            &EventDefaults {
                event_id: "rotation-2".into(),
                received_at: Utc::now(),
            },
        )
        .unwrap()
        .remove(0);
    queue
        .send_batch(&[OutboundMessage::new(
            "m2",
            DeliveryMessage::new(Vendor::Hood, change).to_body(),
        )])
        .await
        .unwrap();
    let batch = queue.receive(10, Duration::from_secs(30)).await.unwrap();
    worker
        .handle_batch(&batch, Utc::now() + TimeDelta::seconds(30), true)
        .await;
    assert_eq!(sandbox.hood_profiles().len(), 2);
    let refused = sandbox
        .requests_of(Vendor::Hood)
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(refused, 1);
    assert_eq!(parameter.reads(), reads_after);
}
