//! Omnivibe agent profile client and sync against a wiremock server
//! (`vendor-docs/omnivibe-update-profile.txt`).

use relay_shared::plan::{OmnivibePlan, SkipReason};
use relay_shared::vendors::omnivibe::wire::{AgentProfile, UpdateProfile};
use relay_shared::vendors::{ErrorClass, SyncOutcome, VendorError, VendorSync};
use relay_tests::vendors::{json_body, omnivibe, omnivibe_auth};
use serde_json::json;
use wiremock::matchers::{any, body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn agent_answer() -> serde_json::Value {
    json!({
        "id": 123, "access_token": "<not ours>", "account_id": 1, "available_name": "Ana",
        "confirmed": true, "display_name": "Ana S.", "email": "ana@example.com", "name": "Ana Souza",
        "role": "agent", "ui_settings": {}, "custom_attributes": {},
        "accounts": [{"id": 1, "name": "Acme", "role": "administrator", "permissions": []}]
    })
}

fn update() -> UpdateProfile {
    UpdateProfile {
        profile: AgentProfile {
            name: Some("Ana Souza".into()),
            email: Some("ana@example.com".into()),
            display_name: Some("Ana S.".into()),
            message_signature: Some("-- Ana".into()),
            phone_number: Some("+5511999990000".into()),
            ui_settings: Some(serde_json::Map::new()),
        },
    }
}

fn update_json() -> serde_json::Value {
    json!({"profile": {
        "name": "Ana Souza",
        "email": "ana@example.com",
        "display_name": "Ana S.",
        "message_signature": "-- Ana",
        "phone_number": "+5511999990000",
        "ui_settings": {}
    }})
}

#[tokio::test]
async fn update_profile_puts_the_documented_body() {
    let server = MockServer::start().await;
    omnivibe_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/profile")),
    ))
    .and(body_json(update_json()))
    .respond_with(ResponseTemplate::new(200).set_body_json(agent_answer()))
    .expect(1)
    .mount(&server)
    .await;
    let r = omnivibe(&server)
        .update_profile(&update())
        .await
        .expect("updated");
    assert_eq!((r.value.id, r.status), (123, 200));
}

#[tokio::test]
async fn sync_puts_the_profile_and_returns_the_agent_id() {
    let server = MockServer::start().await;
    omnivibe_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/profile")),
    ))
    .and(body_json(json!({"profile": {"display_name": "Ana S."}})))
    .respond_with(ResponseTemplate::new(200).set_body_json(agent_answer()))
    .expect(1)
    .mount(&server)
    .await;
    let plan = OmnivibePlan::Update(UpdateProfile {
        profile: AgentProfile {
            display_name: Some("Ana S.".into()),
            ..AgentProfile::default()
        },
    });
    let out = omnivibe(&server).sync(&plan).await.expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("123"), 1));
}

#[tokio::test]
async fn sync_sends_nothing_for_an_empty_profile_or_a_skip() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = omnivibe(&server);
    let empty = OmnivibePlan::Update(UpdateProfile::default());
    assert_eq!(
        client.sync(&empty).await.expect("skipped"),
        SyncOutcome::default()
    );
    let skip = OmnivibePlan::Skip(SkipReason::DeletionNotSupported);
    assert_eq!(
        client.sync(&skip).await.expect("skipped"),
        SyncOutcome::default()
    );
}

#[tokio::test]
async fn sync_401_is_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/profile"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "You need to sign in or sign up before continuing."}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = omnivibe(&server)
        .sync(&OmnivibePlan::Update(update()))
        .await
        .expect_err("401");
    assert_eq!((err.calls, err.error.class()), (1, ErrorClass::Auth));
    assert!(
        matches!(*err.error, VendorError::Auth { status: 401, ref message, .. }
        if message.as_deref() == Some("You need to sign in or sign up before continuing."))
    );
}

/// Two agents, each with its own token: a staff member's change goes only to that staff
/// member's profile, and a staff id with no agent is skipped — never sent with someone
/// else's token (`PUT /api/v1/profile` changes the token owner's profile).
#[tokio::test]
async fn each_staff_members_change_reaches_only_their_own_agent_profile() {
    use relay_shared::mapping::{EventDefaults, Mappings};
    use relay_shared::plan::VendorState;
    use relay_shared::vendors::{OmnivibeAgent, OmnivibeConfig, Vendor};
    use relay_shared::worker::setup::{VendorConfigs, build_targets};
    use secrecy::SecretString;
    use wiremock::matchers::header;

    let server = MockServer::start().await;
    for (token, id, name) in [("tok-hana", 7, "Hana Kim"), ("tok-joao", 9, "João Silva")] {
        Mock::given(method("PUT"))
            .and(path("/api/v1/profile"))
            .and(header("api_access_token", token))
            .and(body_json(json!({"profile": {"name": name}})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": id, "name": name, "role": "agent"})),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let agent = |staff: &str, token: &str| OmnivibeAgent {
        staff_id: staff.into(),
        api_access_token: SecretString::from(token.to_string()),
    };
    let mut config = OmnivibeConfig::new(server.uri(), "s_7", SecretString::from("tok-hana"));
    config.agents.push(agent("s_9", "tok-joao"));
    let configs = VendorConfigs {
        omnivibe: Some(config.clone()),
        ..VendorConfigs::default()
    };
    let targets = build_targets(&configs, &relay_shared::vendors::sync::open_gate()).unwrap();
    // Only the name is mapped to a field here, so each body is exactly `{"profile": {"name"}}`.
    let text = relay_shared::mapping::BUILTIN_MAPPINGS.replace(
        "[vendors.omnivibe.fields]\nfull_name = \"name\"\nphone = \"phone_number\"\n\"custom.display_name\" = \"display_name\"\n\"custom.message_signature\" = \"message_signature\"\n",
        "[vendors.omnivibe.fields]\nfull_name = \"name\"\n",
    );
    let mappings = Mappings::from_toml("agents.toml", &text).unwrap();
    let staff_event = |staff: &str, name: &str| {
        let mut event: serde_json::Value =
            serde_json::from_str(relay_sandbox::samples::sample("app-staff").unwrap().body)
                .unwrap();
        event["detail"]["staffId"] = json!(staff);
        event["detail"]["name"] = json!(name);
        mappings
            .source("app-staff")
            .unwrap()
            .extract(
                &event,
                &EventDefaults {
                    event_id: "e".into(),
                    received_at: chrono::Utc::now(),
                },
            )
            .unwrap()
            .remove(0)
    };
    for (staff, name, agent_id) in [("s_7", "Hana Kim", "7"), ("s_9", "João Silva", "9")] {
        let delivered = targets
            .deliver(
                &mappings,
                Vendor::Omnivibe,
                &staff_event(staff, name),
                &VendorState::default(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivered.vendor_id.as_deref(), Some(agent_id), "{staff}");
        assert_eq!(delivered.calls, 1);
    }
    let other = targets
        .deliver(
            &mappings,
            Vendor::Omnivibe,
            &staff_event("s_11", "Eve Park"),
            &VendorState::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.skipped, Some(SkipReason::AgentNotConfigured));
    assert_eq!(other.calls, 0);
    server.verify().await;

    // One token for every staff id is refused at start-up, saying what to write instead.
    let mut lone = config;
    lone.agents.clear();
    lone.api_access_token = Some(SecretString::from("tok-hana"));
    let error = build_targets(
        &VendorConfigs {
            omnivibe: Some(lone),
            ..VendorConfigs::default()
        },
        &relay_shared::vendors::sync::open_gate(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("staff_id"), "{error}");
    assert!(!error.contains("tok-hana"), "{error}");
}
