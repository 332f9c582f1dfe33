//! Chatwoot contacts client and sync against a wiremock server. Answers use Chatwoot's
//! `payload` wrapping (its jbuilder views) and, where tolerated, the bare shape.

use relay_shared::plan::{ChatwootPlan, SkipReason};
use relay_shared::vendors::chatwoot::wire::ContactBody;
use relay_shared::vendors::{ErrorClass, SyncOutcome, Vendor, VendorError, VendorSync};
use relay_tests::vendors::{NoBody, RawQuery, chatwoot, chatwoot_auth, common, json_body};
use serde_json::{Value, json};
use wiremock::matchers::{any, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CONTACTS: &str = "/api/v1/accounts/7/contacts";
const SEARCH: &str = "/api/v1/accounts/7/contacts/search";
const EMAIL: &str = "jane+1@example.com";
const EMAIL_Q: &str = "q=jane%2B1%40example.com";

fn body() -> ContactBody {
    ContactBody {
        name: Some("Jane Roe".into()),
        email: Some(EMAIL.into()),
        phone_number: Some("+4915112345678".into()),
        identifier: Some("c-123".into()),
        custom_attributes: Some(serde_json::from_value(json!({"plan": "pro"})).expect("object")),
        additional_attributes: Some(
            serde_json::from_value(json!({"company_name": "Acme"})).expect("object"),
        ),
    }
}

fn body_json_value() -> Value {
    json!({
        "name": "Jane Roe",
        "email": "jane+1@example.com",
        "phone_number": "+4915112345678",
        "identifier": "c-123",
        "custom_attributes": {"plan": "pro"},
        "additional_attributes": {"company_name": "Acme"}
    })
}

fn contact(id: u64, email: &str) -> Value {
    json!({"id": id, "name": "Jane Roe", "email": email, "phone_number": null, "identifier": null,
           "thumbnail": "", "additional_attributes": {}, "contact_inboxes": []})
}

async fn mount_search(server: &MockServer, answer: Value, times: u64) {
    chatwoot_auth(common(Mock::given(method("GET")).and(path(SEARCH))))
        .and(RawQuery(EMAIL_Q))
        .and(query_param("q", EMAIL))
        .and(NoBody)
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .up_to_n_times(times)
        .expect(times)
        .mount(server)
        .await;
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn create_contact_reads_the_wrapped_answer() {
    let server = MockServer::start().await;
    chatwoot_auth(json_body(Mock::given(method("POST")).and(path(CONTACTS))))
        .and(body_json(body_json_value()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "payload": {"contact": contact(41, EMAIL), "contact_inbox": {"inbox": null, "source_id": null}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = chatwoot(&server)
        .create_contact(&body())
        .await
        .expect("created");
    assert_eq!(r.value.id, 41);
    assert_eq!(r.value.email.as_deref(), Some(EMAIL));
}

#[tokio::test]
async fn create_contact_reads_a_bare_answer() {
    let server = MockServer::start().await;
    chatwoot_auth(json_body(Mock::given(method("POST")).and(path(CONTACTS))))
        .and(body_json(json!({"email": "jane+1@example.com"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(contact(42, EMAIL)))
        .expect(1)
        .mount(&server)
        .await;
    let b = ContactBody {
        email: Some(EMAIL.into()),
        ..ContactBody::default()
    };
    assert_eq!(
        chatwoot(&server)
            .create_contact(&b)
            .await
            .expect("created")
            .value
            .id,
        42
    );
}

#[tokio::test]
async fn update_contact_puts_to_the_contact_path() {
    let server = MockServer::start().await;
    chatwoot_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/accounts/7/contacts/43")),
    ))
    .and(body_json(body_json_value()))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": contact(43, EMAIL)})))
    .expect(1)
    .mount(&server)
    .await;
    let r = chatwoot(&server)
        .update_contact(43, &body())
        .await
        .expect("updated");
    assert_eq!(r.value.id, 43);
}

#[tokio::test]
async fn search_contacts_reads_wrapped_and_bare_lists() {
    let server = MockServer::start().await;
    mount_search(
        &server,
        json!({"meta": {"count": 2, "current_page": 1}, "payload": [contact(1, EMAIL), contact(2, "x@example.com")]}),
        1,
    )
    .await;
    mount_search(&server, json!([contact(3, EMAIL)]), 1).await;
    let client = chatwoot(&server);
    let wrapped = client.search_contacts(EMAIL).await.expect("searched");
    assert_eq!(
        wrapped.value.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let bare = client.search_contacts(EMAIL).await.expect("searched");
    assert_eq!(bare.value.iter().map(|c| c.id).collect::<Vec<_>>(), vec![3]);
}

// ---------------------------------------------------------------- sync

#[tokio::test]
async fn sync_updates_the_exact_search_hit() {
    let server = MockServer::start().await;
    // Chatwoot searches substrings: "xjane+1@example.com" also matches; only the exact one counts.
    mount_search(
        &server,
        json!({"payload": [contact(50, "xjane+1@example.com"), contact(51, "Jane+1@Example.com")]}),
        1,
    )
    .await;
    chatwoot_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/accounts/7/contacts/51")),
    ))
    .and(body_json(body_json_value()))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": contact(51, EMAIL)})))
    .expect(1)
    .mount(&server)
    .await;
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into()],
            body: body(),
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("51"), 2));
}

#[tokio::test]
async fn sync_creates_when_search_has_no_exact_hit() {
    let server = MockServer::start().await;
    mount_search(
        &server,
        json!({"payload": [contact(50, "xjane+1@example.com")]}),
        1,
    )
    .await;
    chatwoot_auth(json_body(Mock::given(method("POST")).and(path(CONTACTS))))
        .and(body_json(body_json_value()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"payload": {"contact": contact(60, EMAIL)}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into()],
            body: body(),
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("60"), 2));
}

#[tokio::test]
async fn sync_resolves_a_422_conflict_by_searching_again_and_updating() {
    let server = MockServer::start().await;
    mount_search(&server, json!({"payload": []}), 1).await;
    chatwoot_auth(json_body(Mock::given(method("POST")).and(path(CONTACTS))))
        .and(body_json(body_json_value()))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({"message": "Email has already been taken", "attributes": ["email"]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    mount_search(&server, json!({"payload": [contact(70, EMAIL)]}), 1).await;
    chatwoot_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/accounts/7/contacts/70")),
    ))
    .and(body_json(body_json_value()))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": contact(70, EMAIL)})))
    .expect(1)
    .mount(&server)
    .await;
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into()],
            body: body(),
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("70"), 4));
}

#[tokio::test]
async fn sync_422_that_search_cannot_explain_is_permanent() {
    let server = MockServer::start().await;
    mount_search(&server, json!({"payload": []}), 2).await;
    Mock::given(method("POST"))
        .and(path(CONTACTS))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"message": "Phone number should be in e164 format", "attributes": ["phone_number"]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = chatwoot(&server)
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into()],
            body: body(),
        })
        .await
        .expect_err("unresolved conflict");
    assert_eq!(err.calls, 3);
    assert_eq!(err.error.class(), ErrorClass::Permanent);
    assert_eq!(
        err.error.to_string(),
        "chatwoot chatwoot.create_contact: HTTP 422 (permanent): Phone number should be in e164 format (attributes: phone_number)"
    );
    assert_eq!(err.error.vendor(), Vendor::Chatwoot);
}

#[tokio::test]
async fn sync_updates_a_known_contact_without_searching() {
    let server = MockServer::start().await;
    chatwoot_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/accounts/7/contacts/80")),
    ))
    .and(body_json(json!({"name": "Jane Roe"})))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": contact(80, EMAIL)})))
    .expect(1)
    .mount(&server)
    .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let b = ContactBody {
        name: Some("Jane Roe".into()),
        ..ContactBody::default()
    };
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Update {
            contact_id: 80,
            body: b,
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("80"), 1));
}

#[tokio::test]
async fn sync_skip_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Skip(SkipReason::NothingChanged))
        .await
        .expect("skipped");
    assert_eq!(out, SyncOutcome::default());
}

#[tokio::test]
async fn a_success_without_a_contact_is_an_unexpected_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONTACTS))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"payload": {"contact_inbox": {}}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = chatwoot(&server)
        .create_contact(&body())
        .await
        .expect_err("no contact");
    assert!(
        matches!(err, VendorError::UnexpectedResponse { status: 200, ref detail, .. } if detail == "no contact in the answer")
    );
}

#[tokio::test]
async fn sync_422_on_a_phone_held_by_another_contact_finds_it_by_phone_and_updates_it() {
    const PHONE: &str = "+14155552671";
    let server = MockServer::start().await;
    // The e-mail finds nothing, before the create and after it.
    mount_search(&server, json!({"payload": []}), 2).await;
    chatwoot_auth(json_body(Mock::given(method("POST")).and(path(CONTACTS))))
        .and(body_json(body_json_value()))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({"message": "Phone number has already been taken", "attributes": ["phone_number"]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let by_phone = json!({"id": 91, "name": "J. Roe", "email": null, "phone_number": PHONE, "identifier": null});
    chatwoot_auth(common(Mock::given(method("GET")).and(path(SEARCH))))
        .and(RawQuery("q=%2B14155552671"))
        .and(NoBody)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": [by_phone]})))
        .expect(1)
        .mount(&server)
        .await;
    chatwoot_auth(json_body(
        Mock::given(method("PUT")).and(path("/api/v1/accounts/7/contacts/91")),
    ))
    .and(body_json(body_json_value()))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"payload": by_phone})))
    .expect(1)
    .mount(&server)
    .await;
    let out = chatwoot(&server)
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into(), PHONE.into()],
            body: body(),
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("91"), 5));
}
