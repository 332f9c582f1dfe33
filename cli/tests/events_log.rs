//! The delivery log and the replay after a mapping fix, end to end: ingest and the worker
//! on DynamoDB Local (and moto SQS for the replay), the stateful mock vendors, and the
//! built `relay` binary reading the table and the queues as a person would.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::StatusCode;
use relay_shared::ingress::ingest::Recording;
use relay_shared::ingress::{Ingest, RouterConfig, router};
use relay_shared::mapping::Mappings;
use relay_shared::queue::Queue;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::sqs::SqsQueue;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, RawKey, SystemClock};
use relay_shared::worker::{Metrics, MetricsOutput, Worker};
use relay_tests::dynamodb_local::{self, LocalTable, fresh_table};
use relay_tests::pipeline::{contact_event, worker_for};
use relay_tests::stateful_vendors::{Faults, StatefulVendors};
use relay_tests::{moto, webhooks};
use secrecy::ExposeSecret;
use tower::ServiceExt;

/// The raw-event key of these tests, base64 (32 bytes of 7).
const RAW_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn raw_key() -> RawKey {
    RawKey::from_bytes(&[7; 32]).unwrap()
}

async fn relay(args: &[&str]) -> (bool, String, String) {
    let dynamo = dynamodb_local::endpoint().await.unwrap();
    let sqs = tokio::task::spawn_blocking(moto::sqs_endpoint)
        .await
        .unwrap()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .env("DYNAMODB_ENDPOINT", dynamo)
        .env("AWS_ENDPOINT_URL_SQS", sqs)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("RELAY_RAW_KEY", RAW_KEY)
        // The deployment's identity key: the one the tests' ingest uses.
        .env(
            "RELAY_IDENTITY_KEY",
            webhooks::identity_key().to_base64().expose_secret(),
        )
        .env_remove("RELAY_MAPPINGS")
        .env_remove("RELAY_TABLE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn app(mappings: Arc<Mappings>, store: &DynamoStore, queue: Arc<dyn Queue>) -> axum::Router {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (ingest, _) = Ingest::new(
        mappings,
        &webhooks::source_secrets(),
        Arc::new(store.clone()),
        relay_shared::ingress::Identity {
            store: Arc::new(store.clone()),
            key: webhooks::identity_key(),
        },
        queue,
        clock,
    )
    .unwrap();
    let ingest = ingest.with_recording(Recording::new(Arc::new(store.clone()), Some(raw_key())));
    router(
        Arc::new(ingest),
        RouterConfig {
            default_scheme: "https",
        },
    )
}

async fn post(app: &axum::Router, delivery_id: &str, body: &str) -> StatusCode {
    let request = webhooks::signed_with(
        "standard",
        &webhooks::secret("standard"),
        body,
        Utc::now(),
        Some(delivery_id),
    );
    relay_shared::lambda::webhook_service(app.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

/// Handles what the queue holds until it has been empty for three 1 s long polls (SQS
/// waits in whole seconds; a delay of 1 s, such as a wait for an identifier, outlasts one).
async fn drain(worker: &Worker, queue: &dyn Queue) {
    let mut idle = 0;
    while idle < 3 {
        let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
        if batch.is_empty() {
            idle += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        idle = 0;
        worker
            .handle_batch(&batch, Utc::now() + TimeDelta::seconds(30), true)
            .await;
    }
}

async fn scan_text(table: &LocalTable) -> String {
    let items = table
        .client
        .scan()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    format!("{:?}", items.items())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_event_shows_a_delivery_that_was_retried_then_synced() {
    let table = fresh_table().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(5)));
    let dead_letters = Arc::new(MemoryQueue::new(Duration::from_secs(5)));
    let app = app(webhooks::mappings(), &store, queue.clone());
    // Every vendor answers 503 at first: each delivery is retried.
    let vendors = StatefulVendors::start(Faults {
        refuse_status: 503,
        ..Faults::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new(MetricsOutput::Memory));
    let worker = worker_for(
        &vendors,
        &store,
        queue.clone(),
        dead_letters.clone(),
        clock,
        metrics.clone(),
    )
    .with_journal(Arc::new(store.clone()));

    let occurred = Utc::now() - TimeDelta::seconds(2);
    assert_eq!(
        post(&app, "msg_retry", &contact_event(1, "Ann Lee", occurred)).await,
        StatusCode::ACCEPTED
    );
    let first = queue.receive(10, Duration::from_millis(200)).await.unwrap();
    assert_eq!(first.len(), 3, "one delivery per vendor");
    worker
        .handle_batch(&first, Utc::now() + TimeDelta::seconds(30), true)
        .await;

    let (ok, retrying, err) = relay(&["event", "msg_retry", "--table", &table.name]).await;
    assert!(ok, "{err}");
    println!("--- after the first attempt ---\n{retrying}");
    assert!(
        retrying.contains("event     standard / msg_retry"),
        "{retrying}"
    );
    for vendor in ["hood", "channelio", "chatwoot"] {
        let line = retrying
            .lines()
            .find(|l| l.starts_with(vendor))
            .unwrap_or_else(|| panic!("no line for {vendor}: {retrying}"));
        assert!(line.contains("retrying"), "{line}");
        assert!(line.contains("next "), "{line}");
        assert!(line.contains("HTTP 503"), "{line}");
    }

    vendors.set_faults(Faults::default());
    drain(&worker, queue.as_ref()).await;

    let (ok, synced, err) = relay(&[
        "event",
        "msg_retry",
        "--source",
        "standard",
        "--table",
        &table.name,
    ])
    .await;
    assert!(ok, "{err}");
    println!("--- after the retry ---\n{synced}");
    for vendor in ["hood", "channelio", "chatwoot"] {
        let line = synced.lines().find(|l| l.starts_with(vendor)).unwrap();
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "synced", "{line}");
        assert_eq!(cols[2], "2", "two attempts: {line}");
    }
    assert!(synced.contains("contact   standard:#"), "{synced}");
    assert!(synced.contains("raw       kept, sealed"), "{synced}");
    assert!(!synced.contains("user1@example.com"), "{synced}");

    // The listing, for scripts, with filters.
    let (ok, listed, err) = relay(&[
        "events",
        "--table",
        &table.name,
        "--json",
        "--since",
        "1h",
        "--vendor",
        "hood",
    ])
    .await;
    assert!(ok, "{err}");
    let events: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(events[0]["event_id"], "msg_retry");
    assert_eq!(events[0]["deliveries"]["hood"]["status"], "synced");
    assert_eq!(events[0]["deliveries"]["hood"]["attempts"], 2);
    let (ok, none, _) = relay(&[
        "events",
        "--table",
        &table.name,
        "--status",
        "dead_lettered",
    ])
    .await;
    assert!(ok);
    assert!(none.starts_with("no events since"), "{none}");
    let (ok, table_out, _) = relay(&["events", "--table", &table.name]).await;
    assert!(ok);
    println!("--- relay events ---\n{table_out}");
    assert!(
        table_out.contains("hood:synced channelio:synced chatwoot:synced"),
        "{table_out}"
    );

    // The end-to-end lag was measured per synced delivery.
    let p50 = metrics
        .lag_percentile(relay_shared::vendors::Vendor::Hood, 50.0)
        .unwrap();
    assert!(p50 >= 2000, "occurred 2 s before receipt: {p50}");
    // Nothing personal at rest: the raw request is sealed, the contact masked.
    let at_rest = scan_text(&table).await;
    assert!(!at_rest.contains("user1@example.com"), "{at_rest}");
    assert!(!at_rest.contains("Ann Lee"), "{at_rest}");
    assert!(dead_letters.is_empty());
}

/// The `standard` source with a mistake: the e-mail is read from a field that does not
/// exist, so Hood (which needs an e-mail or phone to create a profile) waits for an event
/// that brings one (1 s in the test policy), then dead-letters with that reason.
fn mapping_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let fixed = std::fs::read_to_string(format!(
        "{}/../core/mappings/default.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let broken = fixed.replacen("email = \"data.email\"", "email = \"data.mail\"", 1);
    assert_ne!(broken, fixed);
    let (b, f) = (dir.join("broken.toml"), dir.join("fixed.toml"));
    std::fs::write(&b, broken).unwrap();
    std::fs::write(&f, fixed).unwrap();
    (b, f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_mapping_fix_maps_again_and_the_vendor_gets_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (broken, fixed) = mapping_files(dir.path());
    let table = fresh_table().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(table.client.clone(), table.name.clone(), clock.clone());
    let sqs = moto::sqs_client().await.unwrap();
    let queue_url = moto::create_queue(&sqs, Duration::from_secs(5))
        .await
        .unwrap();
    let dlq_url = moto::create_queue(&sqs, Duration::from_secs(5))
        .await
        .unwrap();
    let queue = Arc::new(SqsQueue::new(sqs.clone(), queue_url.clone()));
    let dead_letters = Arc::new(SqsQueue::new(sqs.clone(), dlq_url.clone()));
    let broken_mappings =
        Arc::new(relay_shared::assembly::load_mappings(Some(broken.as_path())).unwrap());
    let app = app(broken_mappings, &store, queue.clone());
    let vendors = StatefulVendors::start(Faults::default()).await;
    let worker = worker_for(
        &vendors,
        &store,
        queue.clone(),
        dead_letters.clone(),
        clock,
        Arc::new(Metrics::new(MetricsOutput::Memory)),
    )
    .with_journal(Arc::new(store.clone()));

    assert_eq!(
        post(&app, "msg_fix", &contact_event(1, "Ann Lee", Utc::now())).await,
        StatusCode::ACCEPTED
    );
    drain(&worker, queue.as_ref()).await;
    assert!(vendors.world().hood_profiles.is_empty(), "Hood got nothing");

    // The dead letters, listed twice: listing takes none.
    for _ in 0..2 {
        let (ok, listed, err) = relay(&["dlq", "list", "--dead-letter-queue", &dlq_url]).await;
        assert!(ok, "{err}");
        println!("--- relay dlq list ---\n{listed}");
        let line = listed.lines().find(|l| l.contains("hood")).unwrap();
        assert!(line.trim_start().starts_with("1 "), "{line}");
        assert!(
            line.contains("cannot create a profile without an e-mail"),
            "{line}"
        );
        assert!(!listed.contains("user1@example.com"), "{listed}");
    }
    let (_, journey, _) = relay(&["event", "msg_fix", "--table", &table.name]).await;
    assert!(
        journey
            .lines()
            .any(|l| l.starts_with("hood") && l.contains("dead_lettered")),
        "{journey}"
    );

    // Sent again as it is, the old mapping would fail again; re-mapped with the fix:
    let replay_args = |dry: bool| {
        let mut a = vec![
            "replay".to_string(),
            "--remap".into(),
            "--mappings".into(),
            fixed.display().to_string(),
            "--table".into(),
            table.name.clone(),
            "--dead-letter-queue".into(),
            dlq_url.clone(),
            "--queue".into(),
            queue_url.clone(),
            "--vendor".into(),
            "hood".into(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };
    let dry: Vec<String> = replay_args(true);
    let (ok, out, err) = relay(&dry.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok, "{err}");
    println!("--- relay replay --remap --dry-run ---\n{out}");
    assert!(
        out.starts_with("would replay 1 message(s) (1 mapped again"),
        "{out}"
    );
    assert!(
        queue
            .receive(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );

    let real: Vec<String> = replay_args(false);
    let (ok, out, err) = relay(&real.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok, "{err}");
    println!("--- relay replay --remap ---\n{out}");
    assert!(
        out.starts_with("replayed 1 message(s) (1 mapped again"),
        "{out}"
    );
    assert!(
        out.contains("cannot create a profile without an e-mail"),
        "{out}"
    );

    drain(&worker, queue.as_ref()).await;
    {
        let world = vendors.world();
        assert_eq!(world.hood_creates, 1, "Hood created the profile once");
        let profile = world.hood_profiles.values().next().unwrap();
        assert_eq!(profile["email"], "user1@example.com", "{profile:?}");
    }
    let (_, journey, _) = relay(&["event", "msg_fix", "--table", &table.name]).await;
    println!("--- relay event msg_fix ---\n{journey}");
    assert!(
        journey
            .lines()
            .any(|l| l.starts_with("hood") && l.contains(" synced ")),
        "{journey}"
    );

    // Replaying again finds nothing; the vendor still saw it once.
    let (ok, out, _) = relay(&real.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok);
    assert!(out.starts_with("replayed 0 message(s)"), "{out}");
    let (_, listed, _) = relay(&["dlq", "list", "--dead-letter-queue", &dlq_url]).await;
    assert_eq!(listed, "no dead letters\n");
    drain(&worker, queue.as_ref()).await;
    assert_eq!(vendors.world().hood_creates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_sync_failure_queue_is_ingested_again_with_the_current_mappings() {
    let table = fresh_table().await.unwrap();
    let sqs = moto::sqs_client().await.unwrap();
    let queue_url = moto::create_queue(&sqs, Duration::from_secs(5))
        .await
        .unwrap();
    let failed_url = moto::create_queue(&sqs, Duration::from_secs(5))
        .await
        .unwrap();
    let failed = SqsQueue::new(sqs.clone(), failed_url.clone());
    // What Lambda's on-failure destination keeps: the event, and the error as attributes.
    let event = serde_json::json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "ContactUpserted", "source": "com.example.app",
        "account": "111122223333", "time": "2026-12-01T10:00:00Z", "region": "eu-west-1",
        "resources": [],
        "detail": {"userId": "u-42", "email": "ann@example.com", "name": "Ann"}
    });
    let mut m = relay_shared::queue::OutboundMessage::new("e0", event.to_string());
    m.attributes.insert("ERROR_CODE".into(), "Unhandled".into());
    failed.send_batch(&[m]).await.unwrap();

    let (ok, listed, err) = relay(&["dlq", "list", "--dead-letter-queue", &failed_url]).await;
    assert!(ok, "{err}");
    assert!(listed.contains("Unhandled"), "{listed}");
    assert!(!listed.contains("ann@example.com"), "{listed}");

    let args = [
        "replay",
        "--from",
        "events",
        "--dead-letter-queue",
        &failed_url,
        "--queue",
        &queue_url,
        "--table",
        &table.name,
    ];
    let (ok, out, err) = relay(&args).await;
    assert!(ok, "{err}");
    println!("--- relay replay --from events ---\n{out}");
    assert!(
        out.starts_with("replayed 1 message(s) (ingested again"),
        "{out}"
    );
    let queue = SqsQueue::new(sqs, queue_url.clone());
    let mut enqueued = Vec::new();
    loop {
        let batch = queue.receive(10, Duration::from_millis(500)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        enqueued.extend(batch);
    }
    assert_eq!(enqueued.len(), 3, "one delivery per vendor of app-contact");
    let (ok, journey, err) = relay(&[
        "event",
        "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "--source",
        "app-contact",
        "--table",
        &table.name,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(journey.contains("hood       pending"), "{journey}");
    // Again: the queue is empty, and the event would be a duplicate anyway.
    let (ok, out, _) = relay(&args).await;
    assert!(ok);
    assert!(out.starts_with("replayed 0 message(s)"), "{out}");
}
