//! `relay events` and `relay event` read a running local relay's data directory: the
//! delivery log `relay serve` keeps on disk, read beside it (its lock held) with the built
//! binary.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use relay_local::{LocalRelay, Storage};
use relay_sandbox::Sandbox;
use relay_sandbox::samples::sample;
use relay_shared::vendors::VendorConfigs;
use relay_tests::local;

const SECRET: &str = "tf-events-local";

fn relay_cmd(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_of_a_running_local_relay_is_listed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start().await.unwrap();
    let mut config = local::config(
        "typeform",
        SECRET,
        VendorConfigs {
            hood: Some(sandbox.hood_config()),
            channelio: Some(sandbox.channelio_config()),
            chatwoot: Some(sandbox.chatwoot_config()),
            ..VendorConfigs::default()
        },
    );
    config.worker.drain_timeout_secs = 10;
    let relay = LocalRelay::start(config, Storage::Disk(dir.path().to_path_buf()))
        .await
        .unwrap();
    let body = sample("typeform").unwrap().body;
    let status = local::post_signed(relay.addr(), "typeform", SECRET, body)
        .await
        .status();
    assert_eq!(status, 202);
    assert!(relay.idle(Duration::from_secs(30)).await);

    // The relay still runs (its lock held): the log is read beside it.
    let data_dir = dir.path().to_str().unwrap();
    let (ok, out) = relay_cmd(&["events", "--data-dir", data_dir, "--json"]);
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = listed.as_array().unwrap();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["source"], "typeform");
    let id = events[0]["event_id"].as_str().unwrap().to_string();
    for vendor in ["hood", "channelio", "chatwoot"] {
        assert_eq!(events[0]["deliveries"][vendor]["status"], "synced", "{out}");
    }
    assert!(
        !out.contains("ann.lee@example.com"),
        "no personal data: {out}"
    );

    let (ok, out) = relay_cmd(&["event", &id, "--source", "typeform", "--data-dir", data_dir]);
    assert!(ok, "{out}");
    assert!(out.contains("synced"), "{out}");
    assert!(out.contains("hood"), "{out}");
    println!("{out}");

    // A directory no relay has used is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = relay_cmd(&["events", "--data-dir", empty.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("relay.sqlite3"), "{out}");
    relay.shutdown().await;
}
