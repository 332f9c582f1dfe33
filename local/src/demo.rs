//! `relay demo`: the whole pipeline against sandbox vendors, from every built-in source.
//!
//! Starts the strict sandbox vendors and a local relay wired to them, sends every built-in
//! sample — signed as its sender signs it, each delivered more than once, some copies at the
//! same time — waits until everything is delivered, and reports what each vendor received,
//! what idempotency absorbed and how the rate limiter paced Hood.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use futures::future::join_all;
use http::Method;
use secrecy::SecretString;
use serde_json::Value;

use super::config::{LocalConfig, ServerSection, SourceSection, WorkerSection};
use super::relay::{LocalRelay, StartError, Storage};
use relay_sandbox::samples::SAMPLES;
use relay_sandbox::{Sandbox, SandboxError};
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::mapping::{Mappings, Route};
use relay_shared::vendors::Vendor;
use relay_shared::worker::Counter;
use relay_shared::worker::setup::VendorConfigs;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("relay: {0}")]
    Relay(#[from] StartError),
    #[error("{0}")]
    Setup(String),
}

/// One sample as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub source: String,
    /// HTTP status of every copy, in order.
    pub statuses: Vec<u16>,
    pub accepted: u64,
    pub duplicates: u64,
}

/// What the demo saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub sent: Vec<Sent>,
    /// Requests each vendor received, by method, route and status.
    pub vendor_requests: BTreeMap<(Vendor, String, u16), u64>,
    /// Requests breaking a vendor rule (must be 0).
    pub violations: usize,
    /// Requests over Hood's limits (must be 0).
    pub rate_limit_violations: usize,
    /// Most Hood requests in any 1 s and any 60 s (sliding).
    pub hood_max_per_second: usize,
    pub hood_max_per_minute: usize,
    /// Worker counts per vendor.
    pub deliveries: BTreeMap<(Vendor, Counter), u64>,
    pub dead_letters: usize,
    pub undelivered: usize,
    pub hood_profiles: usize,
    pub channelio_users: usize,
    pub chatwoot_contacts: usize,
    pub agent_updates: u64,
    pub elapsed: Duration,
}

impl DemoReport {
    /// Everything accepted, delivered, within the rules and the limits.
    pub fn ok(&self) -> bool {
        self.violations == 0
            && self.rate_limit_violations == 0
            && self.dead_letters == 0
            && self.undelivered == 0
            && self.sent.iter().all(|s| {
                s.statuses
                    .iter()
                    .all(|st| (200..300).contains(st) || *st == 409)
            })
    }
}

/// Copies of each sample: one, then two more at the same time (a sender retrying while
/// the first is still in flight), then one later.
const COPIES: usize = 4;

/// Runs the demo.
pub async fn run() -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let sandbox = Sandbox::start().await?;
    let mappings = Mappings::builtin().map_err(|e| DemoError::Setup(e.to_string()))?;
    let secrets: BTreeMap<String, SecretString> = mappings
        .sources()
        .filter(|s| s.signature.is_some())
        .map(|s| (s.name.clone(), demo_secret(&s.name)))
        .collect();
    let config = LocalConfig {
        server: ServerSection {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: None,
        },
        mappings: None,
        sources: secrets
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    SourceSection {
                        secrets: vec![s.clone()],
                    },
                )
            })
            .collect(),
        vendors: VendorConfigs {
            hood: Some(sandbox.hood_config()),
            channelio: Some(sandbox.channelio_config()),
            omnivibe: Some(sandbox.omnivibe_config()),
            chatwoot: Some(sandbox.chatwoot_config()),
            hubspot_crm: None,
        },
        worker: WorkerSection {
            concurrency: 4,
            drain_timeout_secs: 30,
        },
        limits: Default::default(),
    };
    let relay = LocalRelay::start(config, Storage::Memory).await?;
    let base = format!("http://{}", relay.addr());
    let client = reqwest::Client::new();

    let mut sent = Vec::new();
    for sample in SAMPLES {
        let Some(source) = mappings.source(sample.source) else {
            continue;
        };
        let (url, headers) = match (&source.signature, source.route) {
            (Some(scheme), route) => {
                let url = format!(
                    "{base}/hooks/{}/{}",
                    if route == Route::Forms {
                        "forms"
                    } else {
                        "crm"
                    },
                    source.name
                );
                let secret = secrets
                    .get(&source.name)
                    .cloned()
                    .ok_or_else(|| DemoError::Setup("no secret".into()))?;
                let verifier = Verifier::new(scheme, &[secret])
                    .map_err(|e| DemoError::Setup(e.to_string()))?;
                let delivery_id = format!("msg_demo_{}", source.name);
                let request = SignRequest {
                    method: &Method::POST,
                    uri: &url,
                    body: sample.body.as_bytes(),
                    now: Utc::now(),
                    delivery_id: Some(&delivery_id),
                };
                (
                    url.clone(),
                    verifier
                        .sign(&request)
                        .map_err(|e| DemoError::Setup(e.to_string()))?,
                )
            }
            (None, _) => (format!("{base}/events"), http::HeaderMap::new()),
        };
        let post = || {
            client
                .post(&url)
                .headers(headers.clone())
                .header("content-type", "application/json")
                .body(sample.body)
                .send()
        };
        let mut answers = vec![post().await];
        answers.extend(join_all([post(), post()]).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        answers.push(post().await);
        let mut s = Sent {
            source: source.name.clone(),
            statuses: Vec::new(),
            accepted: 0,
            duplicates: 0,
        };
        for answer in answers {
            let response =
                answer.map_err(|e| DemoError::Setup(format!("posting {}: {e}", source.name)))?;
            s.statuses.push(response.status().as_u16());
            let body: Value = response.json().await.unwrap_or_default();
            s.accepted += body["accepted"].as_u64().unwrap_or(0);
            s.duplicates += body["duplicates"].as_u64().unwrap_or(0);
        }
        debug_assert_eq!(s.statuses.len(), COPIES);
        sent.push(s);
    }

    relay.idle(Duration::from_secs(120)).await;
    let deliveries = relay.metrics.snapshot();
    let stopped = relay.shutdown().await;

    let requests = sandbox.requests();
    let mut vendor_requests = BTreeMap::new();
    for r in &requests {
        let route = format!(
            "{} {}",
            r.method,
            r.route.clone().unwrap_or_else(|| r.path.clone())
        );
        *vendor_requests
            .entry((r.vendor, route, r.status))
            .or_insert(0) += 1;
    }
    let hood_times: Vec<i64> = requests
        .iter()
        .filter(|r| r.vendor == Vendor::Hood)
        .map(|r| r.at.timestamp_millis())
        .collect();
    let report = DemoReport {
        sent,
        vendor_requests,
        violations: sandbox.violation_count(),
        rate_limit_violations: sandbox.rate_limit_violations(),
        hood_max_per_second: max_in_window(&hood_times, 1_000),
        hood_max_per_minute: max_in_window(&hood_times, 60_000),
        deliveries,
        dead_letters: stopped.dead_letters,
        undelivered: stopped.undelivered,
        hood_profiles: sandbox.hood_profiles().len(),
        channelio_users: sandbox.channelio_users().len(),
        chatwoot_contacts: sandbox.chatwoot_contacts().len(),
        agent_updates: sandbox.omnivibe_agent().updates,
        elapsed: started.elapsed(),
    };
    sandbox.shutdown().await;
    Ok(report)
}

/// A fresh secret in the form `source` expects.
fn demo_secret(source: &str) -> SecretString {
    let random = uuid::Uuid::new_v4();
    SecretString::from(match source {
        "standard" => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(random.as_bytes())
        ),
        "pipedrive" => format!("relay:{}", random.simple()),
        _ => random.simple().to_string(),
    })
}

/// Most timestamps (ms, any order) within any window of `width_ms`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_count_the_busiest_stretch() {
        assert_eq!(max_in_window(&[], 1000), 0);
        assert_eq!(max_in_window(&[0, 100, 999, 1000, 1500], 1000), 3);
        assert_eq!(max_in_window(&[5000, 0, 430, 860, 1290], 1000), 3);
    }
}
