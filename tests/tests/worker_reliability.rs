//! Reliability of the whole pipeline — ingest and worker together on DynamoDB Local,
//! against stateful wiremock vendors: exactly one effect per event and vendor under
//! concurrent duplicate deliveries (ingest writes each claim once and never confirms it, so
//! a duplicate puts its own copy on the queue: the worker must make the copies harmless),
//! injected faults, a worker dying mid-call, and out-of-order updates.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use http::StatusCode;
use relay_shared::queue::Queue;
use relay_shared::worker::Counter;
use relay_tests::pipeline::{Pipeline, contact_event};
use relay_tests::stateful_vendors::Faults;
use serde_json::json;

const EVENTS: usize = 100;

/// Posts every event `copies` times, all at once (bounded to 64 in flight).
async fn deliver_all(p: &Pipeline, copies: usize) -> Vec<StatusCode> {
    let at = Utc::now();
    let bodies: Vec<(String, String)> = (0..EVENTS)
        .map(|i| {
            (
                format!("msg_{i}"),
                contact_event(i, &format!("User {i}"), at),
            )
        })
        .collect();
    let posts = (0..copies)
        .flat_map(|_| bodies.iter())
        .map(|(id, body)| p.post(id, body));
    futures::stream::iter(posts)
        .buffer_unordered(64)
        .collect()
        .await
}

fn assert_exactly_once(p: &Pipeline) {
    let w = p.vendors.world();
    assert_eq!(
        w.hood_creates, EVENTS as u64,
        "one Hood profile created per contact"
    );
    assert_eq!(w.hood_profiles.len(), EVENTS);
    let mut emails: Vec<_> = w
        .hood_profiles
        .values()
        .filter_map(|p| p.get("email").cloned())
        .collect();
    emails.dedup();
    assert_eq!(emails.len(), EVENTS, "no contact twice at Hood");
    assert_eq!(
        w.channel_users.len(),
        EVENTS,
        "one Channel.io user per contact"
    );
    assert_eq!(
        w.chatwoot_creates, EVENTS as u64,
        "one Chatwoot contact created per contact"
    );
    assert_eq!(w.chatwoot_contacts.len(), EVENTS);
    for i in 0..EVENTS {
        let user = w
            .channel_user_by_email(&format!("user{i}@example.com"))
            .unwrap();
        assert_eq!(user["name"], json!(format!("User {i}")));
        assert_eq!(user["plan"], json!("pro"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_events_delivered_five_times_concurrently_take_effect_once_per_vendor() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(5)).await;
    let statuses = deliver_all(&p, 5).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "every copy answered 2xx: {statuses:?}"
    );
    // Every copy's messages are on the queue: five per event and vendor.
    assert_eq!(p.queue.len(), EVENTS * 3 * 5);
    assert!(p.drain(Duration::from_secs(120)).await, "the queue empties");
    assert_exactly_once(&p);
    assert_eq!(p.metrics.total(Counter::Synced), (EVENTS * 3) as u64);
    assert_eq!(
        p.metrics.total(Counter::Duplicate),
        (EVENTS * 3 * 4) as u64,
        "the other four copies recognised at the link lease"
    );
    assert_eq!(
        p.vendors.world().channel_upserts,
        EVENTS as u64,
        "one Channel.io call per contact, whatever the copies"
    );
    assert!(p.dead_letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_500s_timeouts_and_429_bursts_every_event_syncs_once_and_none_is_lost() {
    let faults = Faults {
        fail_percent: 20,
        slow_percent: 5,
        slow_by: Duration::from_secs(1),
        throttle_every: 50,
        throttle_burst: 4,
        ..Faults::default()
    };
    let p = Pipeline::start(faults, Duration::from_secs(5)).await;
    let statuses = deliver_all(&p, 1).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    assert!(p.drain(Duration::from_secs(240)).await, "the queue empties");
    assert_exactly_once(&p);
    assert!(
        p.dead_letters.is_empty(),
        "nothing dead-lettered: every fault was transient"
    );
    let w = p.vendors.world();
    let (retried, throttled) = (
        p.metrics.total(Counter::Retried),
        p.metrics.total(Counter::Throttled),
    );
    println!(
        "faults injected: {} × 500, {} slow answers, {} × 429; deliveries retried {retried}, throttled {throttled}, \
         synced {}, vendor requests {}",
        w.injected_500,
        w.injected_slow,
        w.injected_429,
        p.metrics.total(Counter::Synced),
        w.requests
    );
    assert!(
        w.injected_500 > 0 && w.injected_slow > 0 && w.injected_429 > 0,
        "every fault kind happened"
    );
    assert!(throttled > 0 && retried > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_mid_call_leaves_the_event_to_sync_once_after_the_lease_ends() {
    // Creates are applied at once but answered after 3 s: the first worker is killed while
    // its creates are in flight — after the vendors applied them.
    let slow_creates = Faults {
        slow_percent: 100,
        slow_by: Duration::from_secs(3),
        slow_creates_only: true,
        ..Faults::default()
    };
    let p = Pipeline::start(slow_creates, Duration::from_secs(2)).await;
    assert_eq!(
        p.post("msg_dies", &contact_event(7, "User 7", Utc::now()))
            .await,
        StatusCode::ACCEPTED
    );
    let batch = p
        .queue
        .receive(10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(batch.len(), 3, "one message per vendor");
    // A short invocation, so its leases end soon after it dies — yet long enough for its
    // calls to start (no call starts without the client's timeout and the worker's 2 s
    // margin left before the deadline).
    let lease_deadline = Utc::now() + TimeDelta::seconds(4);
    let dying = tokio::spawn({
        let worker = p.worker.clone();
        async move { worker.handle_batch(&batch, lease_deadline, true).await }
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    dying.abort();
    {
        let w = p.vendors.world();
        assert_eq!(
            (w.hood_creates, w.chatwoot_creates),
            (1, 1),
            "the dead worker's creates reached the vendors"
        );
    }

    // The vendors answer promptly again. The messages reappear after their visibility
    // timeout, the leases have ended, and the next worker finds the created records.
    p.vendors.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(p.drain(Duration::from_secs(60)).await);
    let w = p.vendors.world();
    assert_eq!(
        (w.hood_creates, w.hood_profiles.len()),
        (1, 1),
        "one Hood profile, though the first create's answer was lost"
    );
    assert_eq!(
        (w.chatwoot_creates, w.chatwoot_contacts.len()),
        (1, 1),
        "one Chatwoot contact"
    );
    assert_eq!(w.channel_users.len(), 1);
    let profile = w.hood_profiles.values().next().unwrap();
    assert_eq!(
        profile["custom_properties"],
        json!({"plan": "pro"}),
        "the retry finished the sync"
    );
    assert!(p.dead_letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_updates_of_one_contact_end_with_the_newest_value() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(5)).await;
    let t0 = Utc::now() - TimeDelta::minutes(10);
    let versions = [(3, "Newest Name"), (1, "Oldest Name"), (2, "Middle Name")];
    for (minute, name) in versions {
        let body = contact_event(42, name, t0 + TimeDelta::minutes(minute));
        assert_eq!(
            p.post(&format!("msg_{minute}"), &body).await,
            StatusCode::ACCEPTED
        );
        assert!(p.drain(Duration::from_secs(60)).await);
    }
    let w = p.vendors.world();
    assert_eq!(
        w.channel_user_by_email("user42@example.com").unwrap()["name"],
        json!("Newest Name")
    );
    let hood: Vec<_> = w.hood_profiles.values().collect();
    assert_eq!(hood.len(), 1);
    assert_eq!(hood[0]["full_name"], json!("Newest Name"));
    let chatwoot: Vec<_> = w.chatwoot_contacts.values().collect();
    assert_eq!(chatwoot[0]["name"], json!("Newest Name"));
    assert_eq!(
        w.channel_upserts, 1,
        "the two older changes sent nothing: their only field is newer at the vendor"
    );
}

/// Ingest writes a claim once and never confirms it, so a sender's duplicate enqueues its
/// own copy: two copies processed at once, and a copy arriving after a newer change was
/// applied, must leave one record per vendor, send nothing twice and undo nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_copies_of_an_event_call_no_vendor_again_and_undo_no_update() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(5)).await;
    let t0 = Utc::now() - TimeDelta::minutes(10);
    let first = contact_event(9, "Zoë Ångström", t0);
    // The sender delivers the event twice at once (a timeout retry racing the original).
    let (a, b) = tokio::join!(p.post("msg_dup", &first), p.post("msg_dup", &first));
    assert_eq!((a, b), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(p.queue.len(), 2 * 3, "both copies enqueued");
    // One batch: the two copies for each vendor are handled concurrently.
    assert!(p.drain(Duration::from_secs(60)).await);
    let after_first = {
        let w = p.vendors.world();
        assert_eq!((w.hood_creates, w.hood_profiles.len()), (1, 1));
        assert_eq!((w.chatwoot_creates, w.chatwoot_contacts.len()), (1, 1));
        assert_eq!((w.channel_upserts, w.channel_users.len()), (1, 1));
        w.requests
    };
    assert_eq!(p.metrics.total(Counter::Synced), 3);
    assert_eq!(p.metrics.total(Counter::Duplicate), 3);

    // A newer change of the same contact is applied.
    let newer = contact_event(9, "Zoë Ångström-Lee", t0 + TimeDelta::minutes(1));
    assert_eq!(p.post("msg_newer", &newer).await, StatusCode::ACCEPTED);
    assert!(p.drain(Duration::from_secs(60)).await);
    let after_update = p.vendors.world().requests;
    assert!(after_update > after_first, "the update reached the vendors");

    // The sender retries the first event once more, late: its copy changes nothing.
    assert_eq!(p.post("msg_dup", &first).await, StatusCode::ACCEPTED);
    assert_eq!(p.queue.len(), 3, "enqueued again");
    assert!(p.drain(Duration::from_secs(60)).await);
    let w = p.vendors.world();
    assert_eq!(w.requests, after_update, "no vendor call for a copy");
    assert_eq!(
        w.channel_user_by_email("user9@example.com").unwrap()["name"],
        json!("Zoë Ångström-Lee")
    );
    let hood: Vec<_> = w.hood_profiles.values().collect();
    assert_eq!(hood.len(), 1);
    assert_eq!(hood[0]["full_name"], json!("Zoë Ångström-Lee"));
    let chatwoot: Vec<_> = w.chatwoot_contacts.values().collect();
    assert_eq!(chatwoot.len(), 1);
    assert_eq!(chatwoot[0]["name"], json!("Zoë Ångström-Lee"));
    assert_eq!(p.metrics.total(Counter::Synced), 6);
    assert_eq!(p.metrics.total(Counter::Duplicate), 6);
    assert!(p.dead_letters.is_empty());
}
