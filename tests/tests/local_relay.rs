//! The local relay (`relay serve`) started in-process against the sandbox vendors: signed
//! events posted over real HTTP reach the vendors exactly as planned, duplicates do not,
//! and shutting down delivers what is queued.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use relay_local::{LocalRelay, Storage};
use relay_sandbox::Sandbox;
use relay_sandbox::samples::sample;
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::plan::{VendorState, plan_channelio};
use relay_shared::vendors::Vendor;
use relay_shared::worker::setup::VendorConfigs;
use relay_tests::local;
use serde_json::{Value, json};

const SECRET: &str = "tf-local-secret";

async fn relay(sandbox: &Sandbox) -> LocalRelay {
    let vendors = VendorConfigs {
        hubspot_crm: None,
        hood: Some(sandbox.hood_config()),
        channelio: Some(sandbox.channelio_config()),
        omnivibe: Some(sandbox.omnivibe_config()),
        chatwoot: Some(sandbox.chatwoot_config()),
    };
    LocalRelay::start(local::config("typeform", SECRET, vendors), Storage::Memory)
        .await
        .unwrap()
}

async fn post_typeform(relay: &LocalRelay, body: &str) -> (u16, Value) {
    let response = local::post_signed(relay.addr(), "typeform", SECRET, body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_signup_reaches_every_vendor_exactly_as_planned_and_a_duplicate_does_not() {
    let sandbox = Sandbox::start().await.unwrap();
    let relay = relay(&sandbox).await;
    let body = sample("typeform").unwrap().body;
    assert_eq!(
        post_typeform(&relay, body).await,
        (202, json!({"accepted": 1, "duplicates": 0}))
    );
    assert!(relay.idle(Duration::from_secs(30)).await);

    // Channel.io received exactly the planned upsert.
    let m = Mappings::builtin().unwrap();
    let change = m
        .source("typeform")
        .unwrap()
        .extract(
            &serde_json::from_str(body).unwrap(),
            &EventDefaults {
                event_id: "x".into(),
                received_at: Utc::now(),
            },
        )
        .unwrap()
        .remove(0);
    let got = sandbox.requests_of(Vendor::Channelio);
    assert_eq!(got.len(), 1);
    // The member id is the person id the relay's identity step gave Ann: a fresh one.
    let member = got[0].path.strip_prefix("/open/v5/users/@").unwrap();
    let person = relay_shared::model::PersonId::parse(member).expect("a person id, not an e-mail");
    let mut change = change;
    change.contact.person = Some(person.clone());
    let planned = plan_channelio(
        &change,
        &VendorState::default(),
        m.vendors.channelio().unwrap(),
    )
    .unwrap();
    let expected = &planned.plan.requests()[0];
    assert_eq!(
        (&got[0].method, &got[0].path),
        (&expected.method, &expected.path)
    );
    assert_eq!(got[0].body, expected.body);

    let profiles = sandbox.hood_profiles();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(profiles[0].full_name.as_deref(), Some("Ann Lee"));
    let contacts = sandbox.chatwoot_contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].identifier.as_deref(),
        Some(person.as_str()),
        "Chatwoot's identifier is the same person id"
    );
    assert_eq!(sandbox.violation_count(), 0);

    let before = sandbox.requests().len();
    assert_eq!(
        post_typeform(&relay, body).await,
        (202, json!({"accepted": 0, "duplicates": 1}))
    );
    assert!(relay.idle(Duration::from_secs(10)).await);
    assert_eq!(
        sandbox.requests().len(),
        before,
        "a duplicate delivery reaches no vendor"
    );
    let stopped = relay.shutdown().await;
    assert_eq!((stopped.undelivered, stopped.dead_letters), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_delivers_what_is_queued_first() {
    let sandbox = Sandbox::start().await.unwrap();
    let relay = relay(&sandbox).await;
    let body = sample("typeform").unwrap().body;
    assert_eq!(post_typeform(&relay, body).await.0, 202);
    // Stop at once, while the deliveries are queued or in flight.
    let stopped = relay.shutdown().await;
    assert_eq!((stopped.undelivered, stopped.dead_letters), (0, 0));
    assert_eq!(sandbox.hood_profiles().len(), 1);
    assert_eq!(sandbox.channelio_users().len(), 1);
    assert_eq!(sandbox.chatwoot_contacts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_clean() {
    let report = relay_local::demo::run().await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.violations + report.rate_limit_violations, 0);
    assert!(report.hood_max_per_second <= 10 && report.hood_max_per_minute <= 150);
    assert_eq!(
        (
            report.hood_profiles,
            report.channelio_users,
            report.chatwoot_contacts
        ),
        (7, 7, 7)
    );
    assert_eq!(report.agent_updates, 1);
    let accepted: u64 = report.sent.iter().map(|s| s.accepted).sum();
    let duplicates: u64 = report.sent.iter().map(|s| s.duplicates).sum();
    // Twelve events, nine contact changes (the HubSpot sample's four events of one contact
    // are one), each sent four times.
    assert_eq!((accepted, duplicates), (9, 27));
}

/// `relay serve` with `[vendors.hubspot_crm]`: a person signs up through Typeform, then a
/// HubSpot user edits the last name of a contact the relay has never seen. The worker reads
/// it from the CRM (a mock of HubSpot's API), finds the person's e-mail, and the edit lands
/// on the person's one record at each vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_serve_completes_a_never_seen_hubspot_contact_from_the_crm() {
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    const HUBSPOT_SECRET: &str = "hs-local-app-secret";
    const TOKEN: &str = "pat-na1-local-0e1b7c2d";

    let sandbox = Sandbox::start().await.unwrap();
    let signup = sample("typeform").unwrap().body;
    let m = Mappings::builtin().unwrap();
    let signed_up = m
        .source("typeform")
        .unwrap()
        .extract(
            &serde_json::from_str(signup).unwrap(),
            &EventDefaults {
                event_id: "x".into(),
                received_at: Utc::now(),
            },
        )
        .unwrap()
        .remove(0)
        .contact;
    let email = signed_up.email.as_ref().unwrap().as_str().to_owned();
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7001"))
        .and(query_param(
            "properties",
            "email,phone,mobilephone,firstname,lastname,company,lifecyclestage",
        ))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "7001",
            "properties": {
                "email": email.to_uppercase(), "firstname": "Ann", "lastname": "Old-Name",
                "phone": null, "mobilephone": null, "company": null, "lifecyclestage": "lead",
                "hs_object_id": "7001"
            },
            "createdAt": "2026-11-19T09:12:44.310Z",
            "updatedAt": "2026-11-20T15:05:00.000Z",
            "archived": false
        })))
        .expect(1)
        .mount(&crm)
        .await;

    let vendors = VendorConfigs {
        hubspot_crm: Some(relay_shared::enrich::hubspot::HubspotCrmConfig::new(
            crm.uri(),
            secrecy::SecretString::from(TOKEN),
        )),
        hood: Some(sandbox.hood_config()),
        channelio: Some(sandbox.channelio_config()),
        omnivibe: Some(sandbox.omnivibe_config()),
        chatwoot: Some(sandbox.chatwoot_config()),
    };
    let mut config = local::config("typeform", SECRET, vendors);
    config.sources.insert(
        "hubspot".into(),
        relay_local::config::SourceSection {
            secrets: vec![secrecy::SecretString::from(HUBSPOT_SECRET)],
        },
    );
    let relay = LocalRelay::start(config, Storage::Memory).await.unwrap();
    assert_eq!(post_typeform(&relay, signup).await.0, 202);
    assert!(relay.idle(Duration::from_secs(30)).await);

    let edit = json!([{
        "eventId": 3999200001u64, "subscriptionId": 2200413, "portalId": 62515,
        "appId": 1160452, "occurredAt": Utc::now().timestamp_millis(),
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 7001,
        "propertyName": "lastname", "propertyValue": "Lee-Łukasik",
        "changeSource": "CRM_UI", "sourceId": "userId:100"
    }])
    .to_string();
    let response = local::post_signed(relay.addr(), "hubspot", HUBSPOT_SECRET, &edit).await;
    assert_eq!(response.status().as_u16(), 202);
    assert!(relay.idle(Duration::from_secs(30)).await);

    let profiles = sandbox.hood_profiles();
    assert_eq!(
        profiles.len(),
        1,
        "the HubSpot contact is the Typeform person"
    );
    assert_eq!(profiles[0].full_name.as_deref(), Some("Ann Lee-Łukasik"));
    assert_eq!(profiles[0].email.as_deref(), Some(email.as_str()));
    let users = sandbox.channelio_users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].profile["name"], json!("Ann Lee-Łukasik"));
    assert_eq!(sandbox.chatwoot_contacts().len(), 1);
    assert_eq!(sandbox.violations().len(), 0, "{:?}", sandbox.violations());
    let _ = relay.shutdown().await;
    crm.verify().await;
}
