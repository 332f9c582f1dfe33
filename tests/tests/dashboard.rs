//! The local relay's dashboard in a real headless Chromium: `relay serve`'s `/ui` page
//! lists a dead-lettered event, its Replay button sends it back, and the page then shows
//! the delivery synced — while the vendor holds exactly one record. The page loads nothing
//! from outside the relay and shows no personal data.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fantoccini::Locator;
use relay_local::{LocalRelay, Storage};
use relay_sandbox::samples::sample;
use relay_shared::vendors::{HoodConfig, VendorConfigs};
use relay_tests::browser::Browser;
use relay_tests::local;
use relay_tests::stateful_vendors::{Faults, HOOD_TOKEN, StatefulVendors};
use secrecy::SecretString;

const SECRET: &str = "tf-dashboard-secret";

async fn post_typeform(relay: &LocalRelay, body: &str) -> u16 {
    local::post_signed(relay.addr(), "typeform", SECRET, body)
        .await
        .status()
        .as_u16()
}

/// Polls until `f` answers true or `within` passes.
async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_from_the_dashboard_and_shows_synced() {
    // Hood refuses everything at first (400: permanent), so the delivery dead-letters.
    let vendors = StatefulVendors::start(Faults {
        refuse_status: 400,
        ..Faults::default()
    })
    .await;
    let mut config = local::config(
        "typeform",
        SECRET,
        VendorConfigs {
            hood: Some(HoodConfig::new(
                vendors.hood.uri(),
                SecretString::from(HOOD_TOKEN),
            )),
            ..VendorConfigs::default()
        },
    );
    config.worker.drain_timeout_secs = 10;
    let relay = LocalRelay::start(config, Storage::Memory).await.unwrap();
    let body = sample("typeform").unwrap().body;
    assert_eq!(post_typeform(&relay, body).await, 202);
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert_eq!(vendors.world().hood_creates, 0);

    let browser = Browser::start().await.unwrap();
    let page = &browser.client;
    page.goto(&format!("http://{}/ui", relay.addr()))
        .await
        .unwrap();
    let replay = page
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(
            "#dead-letters tr[data-vendor='hood'] button.replay",
        ))
        .await
        .unwrap();
    let row = page
        .find(Locator::Css("#dead-letters tr[data-vendor='hood']"))
        .await
        .unwrap();
    let event = row.attr("data-event").await.unwrap().unwrap();
    assert!(event.starts_with("typeform#"), "{event}");
    let text = row.text().await.unwrap();
    assert!(text.contains("400"), "the reason is shown: {text}");
    // The event's delivery shows dead-lettered in the event list.
    let status = page
        .find(Locator::Css(&format!(
            "#events tr[data-event='{event}'] span[data-vendor='hood']"
        )))
        .await
        .unwrap()
        .attr("data-status")
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("dead_lettered"));

    // RELAY_SCREENSHOT=docs/dashboard.png: the picture in the README.
    if let Ok(path) = std::env::var("RELAY_SCREENSHOT") {
        std::fs::write(path, page.screenshot().await.unwrap()).unwrap();
    }

    // The cause is fixed; the operator presses Replay.
    vendors.set_faults(Faults::default());
    replay.click().await.unwrap();
    let synced = eventually(Duration::from_secs(30), async || {
        page.find(Locator::Css(&format!(
            "#events tr[data-event='{event}'] span[data-vendor='hood'][data-status='synced']"
        )))
        .await
        .is_ok()
    })
    .await;
    assert!(synced, "the page shows the replayed delivery synced");
    let left = page
        .find_all(Locator::Css("#dead-letters tr[data-id]"))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the dead-letter list is empty after the replay"
    );
    assert_eq!(vendors.world().hood_creates, 1, "one profile at Hood");

    // Masked identifiers only: the page never shows the contact's e-mail address or name.
    let html = page.source().await.unwrap();
    for personal in [
        "ann.lee@example.com",
        "Ann.Lee@Example.com",
        "Ann Lee",
        "+14155552671",
    ] {
        assert!(!html.contains(personal), "the page shows {personal}");
    }
    // The limiter and the rate chart are there for Hood.
    let vendor = page
        .find(Locator::Css("#vendors div[data-vendor='hood']"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(vendor.contains("limit 6/s, 150/min"), "{vendor}");
    browser.close().await;
    relay.shutdown().await;
}
