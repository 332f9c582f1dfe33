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
