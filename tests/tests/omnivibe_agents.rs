//! The worker with two Omnivibe agents configured through the vendor settings
//! parameter (the Lambda path: JSON, re-read on rotation): each staff member's
//! `StaffProfileUpdated` event reaches `PUT /api/v1/profile` with that agent's own token
//! and the documented body; a staff id with no agent is skipped, counted and settled
//! (never dead-lettered, never retried); a rotated token of one agent is used after the
//! refresh.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use relay_shared::assembly::{DEFAULT_LIMITS, WorkerParts, build_rotating_worker};
use relay_shared::delivery::DeliveryMessage;
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::model::ContactChange;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{OutboundMessage, Queue};
use relay_shared::runtime::parse_vendor_settings;
use relay_shared::secrets::{MemoryParameter, RefreshPolicy, RefreshingParameter};
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{Clock, SystemClock};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Counter, Metrics, MetricsOutput, RetryPolicy, Worker};
use relay_tests::vendors::{Capture, json_body};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The process's log output (this file's tests), set up by the first test that asks.
fn logs() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(EnvFilter::new("trace,wiremock=off"))
                .with_writer(capture.clone())
                .finish()
                .try_init()
                .expect("the only subscriber in this process");
            capture
        })
        .clone()
}

const HANA_TOKEN: &str = "omni-tok-hana-1f0c";
const HANA_ROTATED: &str = "omni-tok-hana-2b7e";
const JOAO_TOKEN: &str = "omni-tok-joao-9a41";

fn settings(server: &MockServer, hana_token: &str) -> String {
    json!({"omnivibe": {
        "base_url": server.uri(),
        "agents": [
            {"staff_id": "s_7", "api_access_token": hana_token},
            {"staff_id": "s_9", "api_access_token": JOAO_TOKEN}
        ]
    }})
    .to_string()
}

/// The built-in mappings with the agent's e-mail synced too, so the body carries every
/// profile field of the vendor page but the password ones.
fn mappings() -> Mappings {
    let text = relay_shared::mapping::BUILTIN_MAPPINGS.replace(
        "[vendors.omnivibe.fields]\nfull_name = \"name\"\n",
        "[vendors.omnivibe.fields]\nfull_name = \"name\"\nemail = \"email\"\n",
    );
    assert_ne!(text, relay_shared::mapping::BUILTIN_MAPPINGS);
    Mappings::from_toml("agents.toml", &text).unwrap()
}

/// A `StaffProfileUpdated` event as the app puts it on the bus, with the staff
/// member's record as they typed it.
fn staff_event(
    mappings: &Mappings,
    id: &str,
    staff: &str,
    detail: &[(&str, &str)],
) -> ContactChange {
    let mut event: Value =
        serde_json::from_str(relay_sandbox::samples::sample("app-staff").unwrap().body).unwrap();
    event["id"] = json!(id);
    event["detail"]["staffId"] = json!(staff);
    for (field, value) in detail {
        event["detail"][*field] = json!(value);
    }
    mappings
        .source("app-staff")
        .unwrap()
        .extract(
            &event,
            &EventDefaults {
                event_id: id.into(),
                received_at: Utc::now(),
            },
        )
        .unwrap()
        .remove(0)
}

fn hana(mappings: &Mappings, id: &str, signature: &str) -> ContactChange {
    staff_event(
        mappings,
        id,
        "s_7",
        &[
            ("name", "Hana Kim"),
            ("displayName", "하나"),
            ("email", "Hana.Kim+support@Example.com"),
            ("phone", "+1 (212) 555-0166"),
            ("signature", signature),
        ],
    )
}

fn joao(mappings: &Mappings) -> ContactChange {
    staff_event(
        mappings,
        "c1b2d3e4-0000-4b7c-8d9e-00000000009a",
        "s_9",
        &[
            ("name", "João Conceição"),
            ("displayName", "João C."),
            ("email", "JOAO.CONCEICAO@exemplo.com.br"),
            ("phone", "+55 11 98765-4321"),
            ("signature", "João · Suporte"),
        ],
    )
}

/// `PUT /api/v1/profile` with `token` and exactly `body` answers 200 with agent `id`.
async fn expect_put(server: &MockServer, token: &str, body: Value, id: u64, times: u64) {
    json_body(Mock::given(method("PUT")).and(path("/api/v1/profile")))
        .and(header("api_access_token", token))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": id, "account_id": 1, "role": "agent", "confirmed": true,
            "ui_settings": {}, "custom_attributes": {}, "accounts": []
        })))
        .expect(times)
        .mount(server)
        .await;
}

struct Rig {
    worker: Worker,
    queue: Arc<MemoryQueue>,
    dead_letters: Arc<MemoryQueue>,
    metrics: Arc<Metrics>,
    parameter: Arc<MemoryParameter>,
}

async fn rig(server: &MockServer, mappings: Arc<Mappings>) -> Rig {
    let parameter = Arc::new(MemoryParameter::new(
        "/relay/vendor-secrets",
        settings(server, HANA_TOKEN),
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
    let worker = build_rotating_worker(
        WorkerParts {
            mappings,
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
        settings,
    )
    .unwrap();
    Rig {
        worker,
        queue,
        dead_letters,
        metrics,
        parameter,
    }
}

impl Rig {
    /// Queues each change for Omnivibe and delivers them; the ids left in the queue.
    async fn deliver(&self, changes: Vec<ContactChange>) -> Vec<String> {
        let messages: Vec<OutboundMessage> = changes
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                OutboundMessage::new(
                    format!("m{i}"),
                    DeliveryMessage::new(Vendor::Omnivibe, c).to_body(),
                )
            })
            .collect();
        self.queue.send_batch(&messages).await.unwrap();
        let batch = self
            .queue
            .receive(10, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(batch.len(), messages.len());
        self.worker
            .handle_batch(&batch, Utc::now() + TimeDelta::seconds(30), true)
            .await
    }
}

fn profile(name: &str, email: &str, display: &str, signature: &str, phone: &str) -> Value {
    json!({"profile": {
        "name": name,
        "email": email,
        "display_name": display,
        "message_signature": signature,
        "phone_number": phone
    }})
}

#[tokio::test]
async fn each_staff_member_reaches_their_own_agent_an_unknown_one_is_skipped_and_a_rotated_token_is_used()
 {
    let capture = logs();
    let server = MockServer::start().await;
    let mappings = Arc::new(mappings());
    let rig = rig(&server, mappings.clone()).await;

    // Staff A and staff B: each body only with its own agent's token.
    expect_put(
        &server,
        HANA_TOKEN,
        profile(
            "Hana Kim",
            "hana.kim+support@example.com",
            "하나",
            "Hana Kim · Support",
            "+12125550166",
        ),
        7,
        1,
    )
    .await;
    expect_put(
        &server,
        JOAO_TOKEN,
        profile(
            "João Conceição",
            "joao.conceicao@exemplo.com.br",
            "João C.",
            "João · Suporte",
            "+5511987654321",
        ),
        9,
        1,
    )
    .await;
    // Staff C has no agent: no request at all may reach Omnivibe for it.
    let eve = staff_event(
        &mappings,
        "c1b2d3e4-0000-4b7c-8d9e-0000000000b1",
        "s_11",
        &[
            ("name", "Eve Park"),
            ("displayName", "Eve"),
            ("email", "Eve.Park@Example.org"),
            ("phone", "+44 20 7946 0958"),
            ("signature", "Eve · Sales"),
        ],
    );
    let left = rig
        .deliver(vec![
            hana(
                &mappings,
                "c1b2d3e4-0000-4b7c-8d9e-000000000071",
                "Hana Kim · Support",
            ),
            joao(&mappings),
            eve,
        ])
        .await;
    server.verify().await;
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    // Every message settled: none handed back, none retried, none dead-lettered.
    assert!(left.is_empty(), "{left:?}");
    assert_eq!((rig.queue.len(), rig.dead_letters.len()), (0, 0));
    // The skip is counted as skips are (with the settled deliveries), not as a failure.
    assert_eq!(rig.metrics.total(Counter::Synced), 3);
    for counter in [Counter::Retried, Counter::DeadLettered, Counter::AuthFailed] {
        assert_eq!(rig.metrics.total(counter), 0, "{counter:?}");
    }
    let logs = capture.contents();
    let skipped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"skipped\":\"agent_not_configured\""))
        .collect();
    assert_eq!(skipped.len(), 1, "one delivery line says why: {logs}");
    assert!(
        skipped[0].contains("\"outcome\":\"skipped\""),
        "{}",
        skipped[0]
    );
    assert!(
        logs.contains("\"reason\":\"agent_not_configured\""),
        "the adapter says why too: {logs}"
    );
    for private in [
        "s_11",
        "Eve Park",
        "eve.park",
        "Eve.Park",
        "+442079460958",
        HANA_TOKEN,
        JOAO_TOKEN,
    ] {
        assert!(!logs.contains(private), "`{private}` in the logs");
    }

    // Agent A's token is rotated: the parameter holds the new one, the old one is
    // refused from now on. A's next change is refused once, the parameter re-read, and
    // sent again with the new token.
    server.reset().await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/profile"))
        .and(header("api_access_token", HANA_TOKEN))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "You need to sign in or sign up before continuing."}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    expect_put(
        &server,
        HANA_ROTATED,
        json!({"profile": {"message_signature": "Hana · Support Lead"}}),
        7,
        1,
    )
    .await;
    rig.parameter.set(settings(&server, HANA_ROTATED));
    let reads = rig.parameter.reads();
    let left = rig
        .deliver(vec![hana(
            &mappings,
            "c1b2d3e4-0000-4b7c-8d9e-000000000072",
            "Hana · Support Lead",
        )])
        .await;
    server.verify().await;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(rig.parameter.reads(), reads + 1, "re-read once, on the 401");
    assert_eq!((rig.queue.len(), rig.dead_letters.len()), (0, 0));
    assert_eq!(rig.metrics.total(Counter::Synced), 4);
    let logs = capture.contents();
    assert!(!logs.contains(HANA_ROTATED), "no token in the logs");
}

/// A rotation that would give two staff ids one token is refused: agent A's token is
/// revoked and the operator pastes B's token for A by mistake. A's change is refused
/// with A's old token and waits; it is never sent with B's token (that would change B's
/// profile), and B's changes still go with B's own token.
#[tokio::test]
async fn a_rotation_that_would_give_two_agents_one_token_is_refused() {
    let capture = logs();
    let server = MockServer::start().await;
    let mappings = Arc::new(mappings());
    let rig = rig(&server, mappings.clone()).await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/profile"))
        .and(header("api_access_token", HANA_TOKEN))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "You need to sign in or sign up before continuing."}),
            ),
        )
        .mount(&server)
        .await;
    expect_put(
        &server,
        JOAO_TOKEN,
        profile(
            "João Conceição",
            "joao.conceicao@exemplo.com.br",
            "João C.",
            "João · Suporte",
            "+5511987654321",
        ),
        9,
        1,
    )
    .await;
    rig.parameter.set(settings(&server, JOAO_TOKEN));
    let reads = rig.parameter.reads();

    assert!(rig.deliver(vec![joao(&mappings)]).await.is_empty());
    rig.deliver(vec![hana(
        &mappings,
        "c1b2d3e4-0000-4b7c-8d9e-000000000073",
        "Hana Kim · Support",
    )])
    .await;
    server.verify().await;
    assert_eq!(rig.parameter.reads(), reads + 1, "re-read once, on the 401");
    let requests = server.received_requests().await.unwrap();
    let with = |token: &str| {
        requests
            .iter()
            .filter(|r| {
                r.headers
                    .get("api_access_token")
                    .is_some_and(|v| v.as_bytes() == token.as_bytes())
            })
            .count()
    };
    assert_eq!(
        (with(HANA_TOKEN), with(JOAO_TOKEN)),
        (1, 1),
        "requests per token (A's old one, B's)"
    );
    assert_eq!(rig.metrics.total(Counter::Synced), 1);
    assert_eq!(rig.metrics.total(Counter::AuthFailed), 1);
    // A's change waits for a good token: handed on, not dead-lettered.
    assert_eq!((rig.queue.len(), rig.dead_letters.len()), (1, 0));
    let logs = capture.contents();
    assert!(
        logs.contains("the re-read vendor settings do not build clients; keeping the ones in use"),
        "{logs}"
    );
    assert!(
        !logs.contains(HANA_TOKEN) && !logs.contains(JOAO_TOKEN),
        "no token in the logs"
    );
}

/// The local relay (`relay serve`) reads the same agents from `relay.toml` (tokens from
/// the environment): its apps' `StaffProfileUpdated` events on `POST /events` reach each
/// agent with its own token, and an unknown staff id is shown skipped with its reason in
/// the delivery log (the dashboard's overview), nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_relay_reads_the_agents_from_its_config_and_logs_the_skip() {
    let server = MockServer::start().await;
    expect_put(
        &server,
        HANA_TOKEN,
        profile(
            "Hana Kim",
            "hana.kim+support@example.com",
            "하나",
            "Hana Kim · Support",
            "+12125550166",
        ),
        7,
        1,
    )
    .await;
    expect_put(
        &server,
        JOAO_TOKEN,
        profile(
            "João Conceição",
            "joao.conceicao@exemplo.com.br",
            "João C.",
            "João · Suporte",
            "+5511987654321",
        ),
        9,
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mapping_file = dir.path().join("mappings.toml");
    std::fs::write(
        &mapping_file,
        relay_shared::mapping::BUILTIN_MAPPINGS.replace(
            "[vendors.omnivibe.fields]\nfull_name = \"name\"\n",
            "[vendors.omnivibe.fields]\nfull_name = \"name\"\nemail = \"email\"\n",
        ),
    )
    .unwrap();
    let text = format!(
        r#"mappings = "{}"

[server]
listen = "127.0.0.1:0"

[vendors.omnivibe]
base_url = "{}"
agents = [
  {{ staff_id = "s_7", api_access_token = "${{OMNIVIBE_TOKEN_HANA}}" }},
  {{ staff_id = "s_9", api_access_token = "${{OMNIVIBE_TOKEN_JOAO}}" }},
]
"#,
        mapping_file.display(),
        server.uri()
    );
    let config = relay_local::LocalConfig::parse("relay.toml", &text, |name| match name {
        "OMNIVIBE_TOKEN_HANA" => Some(HANA_TOKEN.into()),
        "OMNIVIBE_TOKEN_JOAO" => Some(JOAO_TOKEN.into()),
        _ => None,
    })
    .unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains("s_7") && !shown.contains(HANA_TOKEN),
        "{shown}"
    );
    let relay = relay_local::LocalRelay::start(config, relay_local::Storage::Memory)
        .await
        .unwrap();

    let event = |id: &str, staff: &str, detail: &[(&str, &str)]| {
        let mut event: Value =
            serde_json::from_str(relay_sandbox::samples::sample("app-staff").unwrap().body)
                .unwrap();
        event["id"] = json!(id);
        event["detail"]["staffId"] = json!(staff);
        for (field, value) in detail {
            event["detail"][*field] = json!(value);
        }
        event
    };
    let events = [
        event(
            "c1b2d3e4-0000-4b7c-8d9e-000000000171",
            "s_7",
            &[
                ("name", "Hana Kim"),
                ("displayName", "하나"),
                ("email", "Hana.Kim+support@Example.com"),
                ("phone", "+1 (212) 555-0166"),
                ("signature", "Hana Kim · Support"),
            ],
        ),
        event(
            "c1b2d3e4-0000-4b7c-8d9e-00000000019a",
            "s_9",
            &[
                ("name", "João Conceição"),
                ("displayName", "João C."),
                ("email", "JOAO.CONCEICAO@exemplo.com.br"),
                ("phone", "+55 11 98765-4321"),
                ("signature", "João · Suporte"),
            ],
        ),
        event(
            "c1b2d3e4-0000-4b7c-8d9e-0000000001b1",
            "s_11",
            &[
                ("name", "Eve Park"),
                ("email", "Eve.Park@Example.org"),
                ("phone", "+44 20 7946 0958"),
            ],
        ),
    ];
    let http = reqwest::Client::new();
    for e in &events {
        let status = http
            .post(format!("http://{}/events", relay.addr()))
            .json(e)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 202);
    }
    assert!(relay.idle(Duration::from_secs(30)).await);
    server.verify().await;
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    let overview: Value = http
        .get(format!("http://{}/ui/api/overview", relay.addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delivery = |sender_event_id: &str| {
        let event = overview["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["sender_event_id"] == sender_event_id)
            .unwrap_or_else(|| panic!("{sender_event_id} in {overview}"));
        let [d] = event["deliveries"].as_array().unwrap().as_slice() else {
            panic!("one delivery: {event}");
        };
        (
            d["vendor"].as_str().unwrap().to_string(),
            d["status"].as_str().unwrap().to_string(),
            d["reason"].as_str().map(str::to_string),
            d["calls"].as_u64().unwrap(),
        )
    };
    let synced = |calls| ("omnivibe".to_string(), "synced".to_string(), None, calls);
    assert_eq!(delivery("c1b2d3e4-0000-4b7c-8d9e-000000000171"), synced(1));
    assert_eq!(delivery("c1b2d3e4-0000-4b7c-8d9e-00000000019a"), synced(1));
    assert_eq!(
        delivery("c1b2d3e4-0000-4b7c-8d9e-0000000001b1"),
        (
            "omnivibe".to_string(),
            "skipped".to_string(),
            Some("agent_not_configured".to_string()),
            0
        )
    );
    let stopped = relay.shutdown().await;
    assert_eq!((stopped.undelivered, stopped.dead_letters), (0, 0));
}

/// The vendor credentials JSON that docs/deploy.md tells operators to store is what the
/// worker reads: it parses, builds every client, and lists the agents by staff id.
#[test]
fn the_documented_vendor_secrets_json_is_what_the_worker_reads() {
    let doc = include_str!("../../docs/deploy.md");
    let after = doc
        .split_once("**Vendor credentials**")
        .expect("docs/deploy.md documents the vendor credentials")
        .1;
    let json = after
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a JSON block")
        .0;
    let configs = parse_vendor_settings("/profile-relay/vendor-secrets", json).unwrap();
    assert_eq!(configs.vendors(), Vendor::ALL);
    let omnivibe = configs.omnivibe.as_ref().unwrap();
    let staff: Vec<&str> = omnivibe
        .agents
        .iter()
        .map(|a| a.staff_id.as_str())
        .collect();
    assert_eq!(staff, ["s_7", "s_9"]);
    assert!(omnivibe.problems().is_empty(), "{:?}", omnivibe.problems());
    relay_shared::worker::setup::build_targets(&configs, &relay_shared::vendors::sync::open_gate())
        .unwrap();
}
