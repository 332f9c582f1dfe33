//! A vendor left out of the settings is decided at start-up: every source's changes are
//! synced into the configured vendors and skipped for the one left out — never
//! dead-lettered event by event.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use relay_local::{LocalRelay, Storage};
use relay_sandbox::Sandbox;
use relay_sandbox::samples::sample;
use relay_shared::mapping::Mappings;
use relay_shared::vendors::{Vendor, VendorConfigs};
use relay_tests::local;

const SECRET: &str = "tf-left-out-secret";

#[test]
fn the_vendors_sources_list_but_the_settings_leave_out_are_known_at_start_up() {
    let m = Mappings::builtin().unwrap();
    let left = relay_shared::assembly::left_out(
        &m,
        &VendorConfigs {
            hood: None,
            ..VendorConfigs::default()
        },
    );
    // Every vendor some source lists, with those sources.
    assert_eq!(left.keys().copied().collect::<Vec<_>>(), Vendor::ALL);
    assert!(left[&Vendor::Hood].contains(&"typeform".to_string()));
    assert!(!left[&Vendor::Omnivibe].contains(&"typeform".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_left_out_is_skipped_for_every_event_and_nothing_is_dead_lettered() {
    let sandbox = Sandbox::start().await.unwrap();
    // Typeform's mapping syncs into Hood, Channel.io and Chatwoot; Channel.io is left out.
    let config = local::config(
        "typeform",
        SECRET,
        VendorConfigs {
            hood: Some(sandbox.hood_config()),
            chatwoot: Some(sandbox.chatwoot_config()),
            ..VendorConfigs::default()
        },
    );
    let m = Mappings::builtin().unwrap();
    assert!(
        m.source("typeform")
            .unwrap()
            .vendors
            .contains(&Vendor::Channelio),
        "the test needs a source that lists the vendor left out"
    );
    let relay = LocalRelay::start(config, Storage::Memory).await.unwrap();
    let template = sample("typeform").unwrap().body;
    for i in 0..3 {
        // Three different people (their own event ids, e-mail addresses and phones).
        let body = template
            .replace(
                "01JD8Z9K3M4N5P6Q7R8S9T0V1W",
                &format!("01JD8Z9K3M4N5P6Q7R8S9T0V{i}X"),
            )
            .replace(
                "a3a12ec67a1365927098a606107fac15",
                &format!("a3a12ec67a1365927098a606107fac1{i}"),
            )
            .replace("Ann.Lee@Example.com", &format!("Ann.Lee+{i}@Example.com"))
            .replace("+14155552671", &format!("+1415555267{i}"));
        assert_ne!(body, template);
        let status = local::post_signed(relay.addr(), "typeform", SECRET, &body)
            .await
            .status();
        assert_eq!(status, 202);
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    assert_eq!(sandbox.hood_profiles().len(), 3);
    assert_eq!(sandbox.chatwoot_contacts().len(), 3);
    assert!(sandbox.requests_of(Vendor::Channelio).is_empty());
    let stopped = relay.shutdown().await;
    // Nothing dead-lettered, nothing left.
    assert_eq!((stopped.undelivered, stopped.dead_letters), (0, 0));
}
