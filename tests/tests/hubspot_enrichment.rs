//! HubSpot changes completed from the CRM (`relay_shared::enrich`): the reader's exact
//! request and its answers against a mock of HubSpot's CRM API v3 (`vendor-notes.md`,
//! "Reading from a source"), then the whole pipeline — ingest and worker on DynamoDB Local,
//! the stateful vendors — where a property change of a contact the relay has never seen
//! is completed, joins the person who signed up through Typeform, and leaves one record
//! per vendor, after one read.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use http::StatusCode;
use relay_shared::enrich::hubspot::{HubspotCrm, HubspotCrmConfig};
use relay_shared::enrich::{ReadError, SourceReader, read_contact};
use relay_shared::model::{ChangeKind, Contact, ContactChange, ContactKey, SyncEvent};
use relay_tests::pipeline::{HUBSPOT_TOKEN, Pipeline};
use relay_tests::stateful_vendors::Faults;
use relay_tests::webhooks;
use secrecy::SecretString;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROPERTIES: &str = "email,phone,mobilephone,firstname,lastname,company,lifecyclestage";

/// HubSpot's answer for a contact, shaped as its API reference shows it: the asked-for
/// properties (unset ones `null`) plus the ones it always adds.
fn contact_object(id: u64, email: &str, first: &str, last: &str, phone: &str) -> Value {
    json!({
        "id": id.to_string(),
        "properties": {
            "company": null,
            "createdate": "2026-11-19T09:12:44.310Z",
            "email": email,
            "firstname": first,
            "hs_object_id": id.to_string(),
            "lastmodifieddate": "2026-11-20T15:05:00.000Z",
            "lastname": last,
            "lifecyclestage": "lead",
            "mobilephone": null,
            "phone": phone
        },
        "createdAt": "2026-11-19T09:12:44.310Z",
        "updatedAt": "2026-11-20T15:05:00.000Z",
        "archived": false
    })
}

fn reader(server: &MockServer) -> HubspotCrm {
    let mut config = HubspotCrmConfig::new(server.uri(), SecretString::from(HUBSPOT_TOKEN));
    config.http.timeout_ms = 300;
    HubspotCrm::new(&config).unwrap()
}

fn hubspot_change(object: u64) -> ContactChange {
    ContactChange {
        event: SyncEvent {
            source: "hubspot".into(),
            event_id: "3999000101".into(),
            occurred_at: Utc::now(),
            kind: ChangeKind::Updated,
        },
        contact: Contact::new(ContactKey::external("hubspot", &object.to_string()).unwrap()),
        versions: Default::default(),
    }
}

#[tokio::test]
async fn a_read_is_one_get_with_the_token_and_its_properties_map_like_the_webhooks() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_object(
            7001,
            "Juergen.Weiss+CRM@Web.de",
            "Jürgen",
            "Weiß-Schmidt",
            "+49 151 2345 6789",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let payload = reader(&server).read("7001").await.unwrap().unwrap();

    let requests = server.received_requests().await.unwrap();
    let [request] = requests.as_slice() else {
        panic!("one request: {requests:?}")
    };
    let pairs: Vec<(String, String)> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs, [("properties".to_owned(), PROPERTIES.to_owned())]);
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        &format!("Bearer {HUBSPOT_TOKEN}")
    );
    assert_eq!(request.headers.get("accept").unwrap(), "application/json");
    assert!(
        request
            .headers
            .get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("profile-relay/")
    );
    assert!(request.body.is_empty(), "a GET has no body");

    let mappings = webhooks::mappings();
    let source = mappings.source("hubspot").unwrap();
    let contact = read_contact(source, &hubspot_change(7001), &payload).unwrap();
    assert_eq!(
        contact.email.as_ref().map(|e| e.as_str()),
        Some("juergen.weiss+crm@web.de")
    );
    assert_eq!(
        contact.phone.as_ref().map(|p| p.as_str()),
        Some("+4915123456789")
    );
    assert_eq!(contact.full_name.as_deref(), Some("Jürgen Weiß-Schmidt"));
    assert_eq!(contact.custom["lifecycle_stage"], json!("lead"));
    assert_eq!(
        contact.organization, None,
        "an unset property maps to nothing"
    );
}

#[tokio::test]
async fn each_answer_becomes_what_the_worker_does_next() {
    let server = MockServer::start().await;
    let at = |id: &str, response: ResponseTemplate| {
        Mock::given(method("GET"))
            .and(path(format!("/crm/v3/objects/contacts/{id}")))
            .respond_with(response)
    };
    at(
        "404",
        ResponseTemplate::new(404).set_body_json(json!({
            "status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"
        })),
    )
    .mount(&server)
    .await;
    at("401", ResponseTemplate::new(401).set_body_json(json!({
        "status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"
    })))
    .mount(&server)
    .await;
    at("403", ResponseTemplate::new(403)).mount(&server).await;
    at(
        "429",
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "7")
            .insert_header("X-HubSpot-RateLimit-Remaining", "0")
            .set_body_json(json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})),
    )
    .mount(&server)
    .await;
    at("502", ResponseTemplate::new(502)).mount(&server).await;
    at("400", ResponseTemplate::new(400)).mount(&server).await;
    at(
        "slow",
        ResponseTemplate::new(200)
            .set_delay(Duration::from_secs(2))
            .set_body_json(contact_object(1, "a@example.com", "A", "B", "")),
    )
    .mount(&server)
    .await;
    at(
        "junk",
        ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
    )
    .mount(&server)
    .await;
    let r = reader(&server);
    assert_eq!(r.read("404").await, Ok(None), "gone: nothing to complete");
    assert_eq!(r.read("401").await, Err(ReadError::Auth(401)));
    assert_eq!(r.read("403").await, Err(ReadError::Auth(403)));
    assert_eq!(
        r.read("429").await,
        Err(ReadError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
    assert!(matches!(r.read("502").await, Err(ReadError::Transient(_))));
    assert!(matches!(r.read("400").await, Err(ReadError::Permanent(_))));
    assert_eq!(
        r.read("slow").await,
        Err(ReadError::Transient(
            "HubSpot CRM read failed: timeout".into()
        ))
    );
    assert!(matches!(r.read("junk").await, Err(ReadError::Transient(_))));
    // No message quotes the token.
    for id in ["401", "429", "502", "slow"] {
        let message = r.read(id).await.unwrap_err().to_string();
        assert!(!message.contains(HUBSPOT_TOKEN), "{message}");
    }
}

// ---- The pipeline ----

async fn post(p: &Pipeline, source: &str, body: String) -> StatusCode {
    let request = webhooks::signed_with(source, &webhooks::secret(source), &body, Utc::now(), None);
    relay_shared::lambda::webhook_service(p.app.clone())
        .oneshot(request)
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn typeform_signup(at: chrono::DateTime<Utc>) -> String {
    json!({
        "event_id": "01JDTF00000000000000000777",
        "event_type": "form_response",
        "form_response": {
            "form_id": "lT4Z3j",
            "token": "tok00000777",
            "submitted_at": at.to_rfc3339(),
            "hidden": { "utm_source": "newsletter" },
            "answers": [
                { "type": "text", "text": "Jürgen Weiß", "field": { "id": "JwWggjAKtOkA", "type": "short_text", "ref": "full_name" } },
                { "type": "email", "email": "juergen.weiss+crm@Web.de", "field": { "id": "SMEUb7VJz92Q", "type": "email", "ref": "email" } },
                { "type": "phone_number", "phone_number": "+49 151 23456789", "field": { "id": "pn48RmPazVdM", "type": "phone_number", "ref": "phone" } }
            ]
        }
    })
    .to_string()
}

/// One HubSpot event: a property change of `object`.
fn property_change(
    object: u64,
    n: u64,
    at: chrono::DateTime<Utc>,
    name: &str,
    value: &str,
) -> Value {
    json!({
        "eventId": 3_999_100_000u64 + n, "subscriptionId": 2200413, "portalId": 62515,
        "appId": 1160452, "occurredAt": at.timestamp_millis(),
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": object,
        "propertyName": name, "propertyValue": value,
        "changeSource": "CRM_UI", "sourceId": "userId:100"
    })
}

fn text<'a>(record: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

/// A person signs up through Typeform; later a HubSpot user changes the last name of a
/// contact the relay has never seen (HubSpot's own id, no e-mail in the event). The worker
/// reads the contact from the CRM, finds the person's e-mail, merges the two persons, and
/// updates the person's one record at each vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crm_edit_of_a_contact_never_seen_is_completed_and_joins_the_person() {
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_object(
            7001,
            "JUERGEN.WEISS+crm@web.de",
            "Jürgen",
            "Weiß-Schmidt",
            "+49 151 2345 6789",
        )))
        .mount(&crm)
        .await;
    let p = Pipeline::start(Faults::default(), Duration::from_secs(30))
        .await
        .with_hubspot_crm(&crm.uri());
    let at = Utc::now() - TimeDelta::minutes(30);
    assert_eq!(
        post(&p, "typeform", typeform_signup(at)).await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    assert!(
        crm.received_requests().await.unwrap().is_empty(),
        "a change with an e-mail is not read"
    );

    let edit = json!([property_change(
        7001,
        1,
        at + TimeDelta::minutes(10),
        "lastname",
        "Weiß-Schmidt"
    )]);
    assert_eq!(
        post(&p, "hubspot", edit.to_string()).await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    assert!(p.dead_letters.is_empty(), "nothing dead-lettered");

    {
        // The world is locked while it is looked at.
        let w = p.vendors.world();
        assert_eq!(
            (
                w.hood_profiles.len(),
                w.channel_users.len(),
                w.chatwoot_contacts.len()
            ),
            (1, 1, 1),
            "one record per vendor: the HubSpot contact is the Typeform person"
        );
        let hood = w.hood_profiles.values().next().unwrap();
        assert_eq!(text(hood, "full_name"), Some("Jürgen Weiß-Schmidt"));
        assert_eq!(text(hood, "email"), Some("juergen.weiss+crm@web.de"));
        let user = w.channel_users.values().next().unwrap();
        assert_eq!(text(user, "name"), Some("Jürgen Weiß-Schmidt"));
        let contact = w.chatwoot_contacts.values().next().unwrap();
        assert_eq!(text(contact, "name"), Some("Jürgen Weiß-Schmidt"));
        assert_eq!(text(contact, "phone_number"), Some("+4915123456789"));
    }
    // The three vendor deliveries of the edit share one read (the exact request).
    let reads = crm.received_requests().await.unwrap();
    println!(
        "CRM reads for one edit of a contact never seen: {}",
        reads.len()
    );
    assert_eq!(reads.len(), 1, "one read for the three vendors");
    for read in &reads {
        assert_eq!(read.url.path(), "/crm/v3/objects/contacts/7001");
        assert_eq!(read.url.query_pairs().count(), 1);
        assert_eq!(
            read.headers.get("authorization").unwrap(),
            &format!("Bearer {HUBSPOT_TOKEN}")
        );
    }

    // A later edit of the same contact finds the person's records: no read.
    let again = json!([property_change(
        7001,
        2,
        at + TimeDelta::minutes(20),
        "company",
        "Weiß & Söhne GmbH"
    )]);
    assert_eq!(
        post(&p, "hubspot", again.to_string()).await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    assert_eq!(
        crm.received_requests().await.unwrap().len(),
        1,
        "no new read"
    );
    let w = p.vendors.world();
    assert_eq!(w.hood_profiles.len(), 1);
    assert_eq!(w.channel_users.len(), 1);
    assert_eq!(w.chatwoot_contacts.len(), 1);
}

/// The CRM says 429 with `Retry-After` once: the delivery waits for it (no failure), then
/// completes; a contact the CRM no longer has is skipped at every vendor, creating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_is_waited_out_and_a_contact_gone_from_the_crm_is_skipped() {
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7002"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&crm)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7002"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_object(
            7002,
            "Chloe.Lefevre@Orange.fr",
            "Chloé",
            "Lefèvre",
            "+33 6 12 34 56 78",
        )))
        .with_priority(2)
        .mount(&crm)
        .await;
    Mock::given(method("GET"))
        .and(path("/crm/v3/objects/contacts/7003"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&crm)
        .await;
    let p = Pipeline::start(Faults::default(), Duration::from_secs(30))
        .await
        .with_hubspot_crm(&crm.uri());
    let at = Utc::now() - TimeDelta::minutes(5);
    let body = json!([
        property_change(7002, 11, at, "lifecyclestage", "customer"),
        property_change(7003, 12, at, "lifecyclestage", "customer"),
    ]);
    assert_eq!(
        post(&p, "hubspot", body.to_string()).await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    assert!(p.dead_letters.is_empty(), "nothing dead-lettered");
    let w = p.vendors.world();
    assert_eq!(
        (
            w.hood_profiles.len(),
            w.channel_users.len(),
            w.chatwoot_contacts.len()
        ),
        (1, 1, 1),
        "Chloé synced once at each vendor; the contact gone from the CRM nowhere"
    );
    let hood = w.hood_profiles.values().next().unwrap();
    assert_eq!(text(hood, "email"), Some("chloe.lefevre@orange.fr"));
    assert_eq!(text(hood, "full_name"), Some("Chloé Lefèvre"));
    let failed = p.metrics.total(relay_shared::worker::Counter::Retried);
    assert_eq!(failed, 0, "a 429 is a wait, not a failure");
    assert!(p.metrics.total(relay_shared::worker::Counter::Throttled) >= 1);
}
