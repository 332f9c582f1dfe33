//! Every built-in source mapping applied to its sender's documented payload, field by field.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use relay_core::mapping::{
    EventDefaults, EventOutcome, FieldWarning, MappedChange, MappedEvent, Mappings,
};
use relay_core::model::{ChangeKind, ContactChange};
use relay_sandbox::samples::sample;
use serde_json::{Value, json};

fn mappings() -> Mappings {
    Mappings::builtin().expect("built-in mappings load")
}

fn defaults() -> EventDefaults {
    EventDefaults {
        event_id: "msg_2fX9".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap(),
    }
}

fn extract(source: &str) -> Vec<ContactChange> {
    let body: Value = serde_json::from_str(sample(source).expect("sample exists").body).unwrap();
    mappings()
        .source(source)
        .expect("source mapped")
        .extract(&body, &defaults())
        .expect("sample maps")
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn custom(change: &ContactChange) -> Value {
    serde_json::to_value(&change.contact.custom).unwrap()
}

#[test]
fn typeform_form_response() {
    let [c] = extract("typeform").try_into().unwrap();
    assert_eq!(c.event.source, "typeform");
    assert_eq!(c.event.event_id, "01JD8Z9K3M4N5P6Q7R8S9T0V1W");
    assert_eq!(c.event.occurred_at, at("2026-11-20T14:03:21Z"));
    assert_eq!(c.event.kind, ChangeKind::Signup);
    let p = &c.contact;
    assert_eq!(p.key.as_str(), "email:ann.lee@example.com");
    assert_eq!(p.email.as_ref().unwrap().as_str(), "ann.lee@example.com");
    assert_eq!(p.phone.as_ref().unwrap().as_str(), "+14155552671");
    assert_eq!(p.full_name.as_deref(), Some("Ann Lee"));
    assert_eq!(p.organization.as_deref(), Some("Acme Inc"));
    assert_eq!(
        p.tags,
        Some(vec!["Product_news".to_string(), "Beta_program".to_string()])
    );
    assert_eq!(p.lists, None);
    assert_eq!((p.consent.email, p.consent.texting), (Some(true), None));
    assert_eq!(custom(&c), json!({"utm_source": "newsletter"}));
}

#[test]
fn tally_form_response() {
    let [c] = extract("tally").try_into().unwrap();
    assert_eq!(c.event.event_id, "a4cb511e-d513-4fa5-baee-b815d718dfd1");
    assert_eq!(c.event.occurred_at, at("2026-11-20T14:05:00Z"));
    assert_eq!(c.event.kind, ChangeKind::Signup);
    let p = &c.contact;
    assert_eq!(p.key.as_str(), "email:bo@example.org");
    assert_eq!(p.phone.as_ref().unwrap().as_str(), "+442079460958");
    assert_eq!(p.full_name.as_deref(), Some("Bo Chen"));
    assert_eq!(p.organization.as_deref(), Some("Chen & Co"));
    assert_eq!(p.consent.email, Some(true));
    assert_eq!(p.tags, None);
    assert_eq!(custom(&c), json!({"utm_source": "twitter"}));
}

#[test]
fn webflow_form_submission() {
    let [c] = extract("webflow").try_into().unwrap();
    assert_eq!(c.event.event_id, "6321ca84df3949bfc6752327");
    assert_eq!(c.event.occurred_at, at("2026-11-20T14:07:45.117Z"));
    let p = &c.contact;
    assert_eq!(p.email.as_ref().unwrap().as_str(), "cy@example.net");
    assert_eq!(
        p.phone.as_ref().unwrap().as_str(),
        "+13125550187",
        "national number read in the default region"
    );
    assert_eq!(p.full_name.as_deref(), Some("Cy Diaz"));
    assert_eq!(p.organization.as_deref(), Some("Diaz Design"));
    assert_eq!(p.consent.email, Some(true), "checkbox value \"true\"");
    assert_eq!(custom(&c), json!({}));
}

#[test]
fn a_hubspot_batch_yields_one_change_per_contact() {
    let changes = extract("hubspot");
    // Four events for contact 901 (creation, e-mail, first name, phone) are one change; the
    // deletion of 902 stays its own.
    let [dana, gone] = changes.try_into().unwrap();
    assert_eq!(gone.event.event_id, "3817289205");
    assert_eq!(gone.event.kind, ChangeKind::Deleted);
    assert_eq!(gone.contact.key.as_str(), "hubspot:902");

    assert!(
        dana.event.event_id.starts_with("3817289201+3~"),
        "{}",
        dana.event.event_id
    );
    assert_eq!(
        dana.event.kind,
        ChangeKind::Created,
        "it was created in this batch"
    );
    assert_eq!(
        dana.event.occurred_at,
        Utc.timestamp_millis_opt(1_763_647_201_500).unwrap(),
        "when the newest of its events happened"
    );
    let p = &dana.contact;
    assert_eq!(p.key.as_str(), "hubspot:901");
    assert_eq!(p.email.as_ref().unwrap().as_str(), "dana@example.com");
    assert_eq!(p.phone.as_ref().unwrap().as_str(), "+16175550121");
    assert_eq!(custom(&dana), json!({"first_name": "Dana"}));
    assert_eq!(
        p.full_name, None,
        "a first name alone does not replace the whole name at a vendor"
    );
}

#[test]
fn pipedrive_person_change() {
    let [c] = extract("pipedrive").try_into().unwrap();
    assert_eq!(c.event.event_id, "6c8a3b1e-2f4d-4a5b-9c6d-7e8f9a0b1c2d:2.0");
    assert_eq!(c.event.occurred_at, at("2026-11-20T14:10:00Z"));
    assert_eq!(c.event.kind, ChangeKind::Updated);
    let p = &c.contact;
    assert_eq!(p.key.as_str(), "pipedrive:42");
    assert_eq!(
        p.email.as_ref().unwrap().as_str(),
        "eve@example.io",
        "the primary address, not the first"
    );
    assert_eq!(p.phone.as_ref().unwrap().as_str(), "+4930901820");
    assert_eq!(p.full_name.as_deref(), Some("Eve Park"));
}

#[test]
fn standard_webhooks_envelope() {
    let [c] = extract("standard").try_into().unwrap();
    assert_eq!(
        c.event.event_id, "msg_2fX9",
        "the webhook-id header, given as the default"
    );
    assert_eq!(c.event.kind, ChangeKind::Updated);
    let p = &c.contact;
    assert_eq!(p.key.as_str(), "standard:usr_8812");
    assert_eq!(p.email.as_ref().unwrap().as_str(), "fay@example.com");
    assert_eq!(p.phone.as_ref().unwrap().as_str(), "+12025550143");
    assert_eq!(p.organization.as_deref(), Some("Ito Labs"));
    assert_eq!(
        p.tags,
        Some(vec!["trial".to_string(), "eu_west".to_string()]),
        "cleaned and de-duplicated"
    );
    assert_eq!(p.lists, Some(vec!["1000102".to_string()]));
    assert_eq!(
        (p.consent.email, p.consent.texting),
        (Some(true), Some(false))
    );
    assert_eq!(custom(&c), json!({"plan": "pro", "utm_source": "ads"}));
}

#[test]
fn eventbridge_events_by_detail_type() {
    let m = mappings();
    assert_eq!(
        m.source_for_detail_type("ContactUpserted").unwrap().name,
        "app-contact"
    );
    assert_eq!(
        m.source_for_detail_type("StaffProfileUpdated")
            .unwrap()
            .name,
        "app-staff"
    );
    assert!(m.source_for_detail_type("OrderPlaced").is_none());

    let [c] = extract("app-contact").try_into().unwrap();
    assert_eq!(c.event.event_id, "7bf73129-1428-4cd3-a780-95db273d1602");
    assert_eq!(c.event.occurred_at, at("2026-11-20T14:12:00Z"));
    assert_eq!(c.contact.key.as_str(), "app-contact:u_1001");
    assert_eq!(c.contact.phone.as_ref().unwrap().as_str(), "+49891234567");
    assert_eq!(c.contact.tags, Some(vec!["customer".to_string()]));
    assert_eq!(
        (c.contact.consent.email, c.contact.consent.texting),
        (Some(true), Some(false))
    );
    assert_eq!(custom(&c), json!({"plan": "team"}));

    let [s] = extract("app-staff").try_into().unwrap();
    assert_eq!(s.contact.key.as_str(), "app-staff:s_7");
    assert_eq!(
        custom(&s),
        json!({"display_name": "Hana", "message_signature": "Hana Kim · Support", "staff_id": "s_7"})
    );
}

#[test]
fn a_form_without_email_or_phone_is_unidentifiable_and_says_which_fields_were_tried() {
    let mut body: Value = serde_json::from_str(sample("typeform").unwrap().body).unwrap();
    body["form_response"]["answers"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["type"] == "text");
    let err = mappings()
        .source("typeform")
        .unwrap()
        .extract(&body, &defaults())
        .unwrap_err();
    assert_eq!(err.code(), "contact_unidentifiable");
    assert_eq!(
        err.to_string(),
        "source \"typeform\": found neither e-mail nor phone (email: form_response.answers[?type=='email'].email | [0]; \
         phone: form_response.answers[?type=='phone_number'].phone_number | [0]); a contact needs one of them"
    );
}

fn map(source: &str, body: &Value) -> Vec<MappedEvent> {
    mappings()
        .source(source)
        .unwrap()
        .map(body, &defaults())
        .unwrap()
}

fn change(event: &MappedEvent) -> &MappedChange {
    match &event.outcome {
        EventOutcome::Change(mapped) => mapped,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn an_invalid_address_costs_only_the_address_and_the_warning_names_the_field_not_the_value() {
    let mut body: Value = serde_json::from_str(sample("webflow").unwrap().body).unwrap();
    body["payload"]["data"]["Email"] = json!("cy(at)example.net");
    let events = map("webflow", &body);
    let mapped = change(&events[0]);
    assert_eq!(
        mapped.warnings,
        [FieldWarning {
            field: "email".into(),
            code: "email_invalid",
            event: None,
        }]
    );
    let contact = &mapped.change.contact;
    assert_eq!(contact.email, None);
    assert_eq!(contact.phone.as_ref().unwrap().as_str(), "+13125550187");
    assert_eq!(contact.full_name.as_deref(), Some("Cy Diaz"));
    assert_eq!(contact.key.as_str(), "phone:+13125550187");
    assert!(!format!("{events:?}").contains("cy(at)"));
}

#[test]
fn an_invalid_phone_costs_only_the_phone() {
    let mut body: Value = serde_json::from_str(sample("webflow").unwrap().body).unwrap();
    body["payload"]["data"]["Phone"] = json!("555-01");
    let events = map("webflow", &body);
    let mapped = change(&events[0]);
    assert_eq!(
        mapped.warnings,
        [FieldWarning {
            field: "phone".into(),
            code: "phone_invalid",
            event: None,
        }]
    );
    assert_eq!(mapped.change.contact.phone, None);
    assert_eq!(
        mapped.change.contact.email.as_ref().unwrap().as_str(),
        "cy@example.net"
    );
    assert!(mapped.occurred_at_given);
}

#[test]
fn unreadable_tags_cost_only_themselves() {
    let mut body: Value = serde_json::from_str(sample("standard").unwrap().body).unwrap();
    body["data"]["tags"] = json!(["vip", {"name": "x"}, "$$$", "beta tester"]);
    let events = map("standard", &body);
    let mapped = change(&events[0]);
    assert_eq!(
        mapped.warnings,
        [FieldWarning {
            field: "tags".into(),
            code: "tags_invalid",
            event: None,
        }]
    );
    assert_eq!(
        mapped.change.contact.tags,
        Some(vec!["vip".to_string(), "beta_tester".to_string()])
    );
}

#[test]
fn a_value_of_the_wrong_type_costs_only_its_field() {
    let mut body: Value = serde_json::from_str(sample("standard").unwrap().body).unwrap();
    body["data"]["name"] = json!({"first": "Ann"});
    body["data"]["consent"]["email"] = json!("maybe");
    body["data"]["properties"]["plan"] = json!({"tier": "pro"});
    let events = map("standard", &body);
    let mapped = change(&events[0]);
    let mut codes: Vec<_> = mapped
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("consent_email", "consent_email_invalid"),
            ("custom.plan", "custom_invalid"),
            ("full_name", "full_name_invalid"),
        ]
    );
    let contact = &mapped.change.contact;
    assert!(contact.email.is_some() && contact.phone.is_some());
    assert_eq!(
        (contact.full_name.as_ref(), contact.consent.email),
        (None, None)
    );
    assert!(!contact.custom.contains_key("plan"));
}

#[test]
fn a_hubspot_batch_judges_each_event_alone() {
    let body = json!([
        {"eventId": 11, "subscriptionType": "contact.propertyChange", "objectId": 901, "occurredAt": 1763647200000_i64, "attemptNumber": 0, "propertyName": "phone", "propertyValue": "call me"},
        {"eventId": 12, "subscriptionType": "deal.creation", "objectId": 77, "occurredAt": 1763647200000_i64, "attemptNumber": 0},
        {"eventId": 13, "subscriptionType": "contact.propertyChange", "objectId": 902, "occurredAt": 1763647200000_i64, "attemptNumber": 0, "propertyName": "email", "propertyValue": "Eve+News@Example.COM"},
        {"eventId": {"nested": true}, "subscriptionType": "contact.creation", "objectId": 903, "occurredAt": 1763647200000_i64, "attemptNumber": 0}
    ]);
    let events = map("hubspot", &body);
    assert_eq!(events.len(), 4);
    // A bad phone costs the phone: the change still carries its HubSpot key.
    let first = change(&events[0]);
    assert_eq!(first.change.contact.key.as_str(), "hubspot:901");
    assert_eq!(first.warnings[0].code, "phone_invalid");
    assert!(
        matches!(&events[1].outcome, EventOutcome::Ignored { kind } if kind == "deal.creation")
    );
    assert_eq!(events[1].event_id, "12");
    assert_eq!(
        change(&events[2])
            .change
            .contact
            .email
            .as_ref()
            .unwrap()
            .as_str(),
        "eve+news@example.com"
    );
    assert!(matches!(&events[3].outcome, EventOutcome::Refused(e) if e.code() == "field_invalid"));
    assert_eq!(events[3].event_id, "msg_2fX9-3");
}

#[test]
fn pipedrive_events_of_other_entities_are_ignored_not_mapped_as_people() {
    let mut deal: Value = serde_json::from_str(sample("pipedrive").unwrap().body).unwrap();
    deal["meta"]["entity"] = json!("deal");
    deal["meta"]["entity_id"] = json!("5501");
    deal["data"] = json!({"id": 5501, "title": "Acme renewal", "value": 12000, "currency": "EUR", "person_id": 42, "org_id": 7, "status": "open"});
    let events = map("pipedrive", &deal);
    assert!(
        matches!(&events[0].outcome, EventOutcome::Ignored { kind } if kind == "deal.change"),
        "{events:?}"
    );
    // The person event itself still maps.
    let person: Value = serde_json::from_str(sample("pipedrive").unwrap().body).unwrap();
    assert_eq!(
        change(&map("pipedrive", &person)[0])
            .change
            .contact
            .key
            .as_str(),
        "pipedrive:42"
    );
}

#[test]
fn a_change_with_no_usable_identifier_is_refused_alone() {
    let mut body: Value = serde_json::from_str(sample("webflow").unwrap().body).unwrap();
    body["payload"]["data"]["Email"] = json!("cy(at)example.net");
    body["payload"]["data"]["Phone"] = json!("n/a");
    let events = map("webflow", &body);
    assert!(
        matches!(&events[0].outcome, EventOutcome::Refused(e) if e.code() == "contact_unidentifiable"),
        "{events:?}"
    );
}

#[test]
fn a_source_may_read_national_numbers_in_its_own_region() {
    let text = mappings_text().replace(
        "[sources.webflow]\n",
        "[sources.webflow]\nphone_region = \"DE\"\n",
    );
    let m = Mappings::from_toml("test.toml", &text).unwrap();
    let mut body: Value = serde_json::from_str(sample("webflow").unwrap().body).unwrap();
    body["payload"]["data"]["Phone"] = json!("(030) 1234567");
    let changes = m
        .source("webflow")
        .unwrap()
        .extract(&body, &defaults())
        .unwrap();
    assert_eq!(
        changes[0].contact.phone.as_ref().unwrap().as_str(),
        "+49301234567"
    );
    // Other sources keep the file's default region.
    body["payload"]["data"]["Phone"] = json!("(312) 555-0187");
    let us = mappings()
        .source("webflow")
        .unwrap()
        .extract(&body, &defaults())
        .unwrap();
    assert_eq!(
        us[0].contact.phone.as_ref().unwrap().as_str(),
        "+13125550187"
    );

    let bad = mappings_text().replace(
        "[sources.webflow]\n",
        "[sources.webflow]\nphone_region = \"Germany\"\n",
    );
    let err = Mappings::from_toml("test.toml", &bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("source \"webflow\", field \"phone_region\""),
        "{err}"
    );
}

fn mappings_text() -> String {
    relay_core::mapping::BUILTIN_MAPPINGS.to_string()
}

#[test]
fn an_unmapped_event_kind_is_an_error_naming_the_known_ones() {
    let body = json!([{"eventId": 1, "subscriptionType": "contact.merge", "objectId": 5, "occurredAt": 1}]);
    let err = mappings()
        .source("hubspot")
        .unwrap()
        .extract(&body, &defaults())
        .unwrap_err();
    assert_eq!(err.code(), "event_kind_unmapped");
    assert!(err.to_string().contains("`contact.merge`"), "{err}");
}

#[test]
fn a_batch_source_refuses_a_non_list() {
    let err = mappings()
        .source("hubspot")
        .unwrap()
        .extract(&json!({"eventId": 1}), &defaults())
        .unwrap_err();
    assert_eq!(err.code(), "payload_not_event_list");
}

fn hubspot_event(id: u64, object: u64, at_ms: i64, property: Option<(&str, &str)>) -> Value {
    let mut event = json!({
        "eventId": id, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
        "occurredAt": at_ms, "attemptNumber": 0, "objectId": object,
        "subscriptionType": "contact.propertyChange", "changeSource": "CRM_UI",
        "sourceId": "userId:100"
    });
    match property {
        Some((name, value)) => {
            event["propertyName"] = json!(name);
            event["propertyValue"] = json!(value);
        }
        None => event["subscriptionType"] = json!("contact.deletion"),
    }
    event
}

const T0: i64 = 1_763_647_200_000;

#[test]
fn a_hubspot_edit_of_four_properties_is_one_change_with_the_full_name() {
    let body = json!([
        hubspot_event(51, 7001, T0, Some(("firstname", "Zoë"))),
        hubspot_event(52, 7001, T0 + 3, Some(("lastname", "Åström-Núñez"))),
        hubspot_event(53, 7002, T0 + 4, Some(("firstname", "山田"))),
        hubspot_event(
            54,
            7001,
            T0 + 5,
            Some(("email", "Zoe.Astrom+crm@Example.SE"))
        ),
        hubspot_event(55, 7001, T0 + 9, Some(("mobilephone", "+46 70-123 45 67"))),
        hubspot_event(56, 7002, T0 + 6, Some(("lastname", "太郎"))),
    ]);
    let events = map("hubspot", &body);
    let [zoe, yamada] = events.as_slice() else {
        panic!("two contacts, two changes: {events:?}")
    };
    let z = &change(zoe).change;
    assert!(zoe.event_id.starts_with("51+3~"), "{}", zoe.event_id);
    assert_eq!(z.event.event_id, zoe.event_id);
    assert_eq!(z.event.kind, ChangeKind::Updated);
    assert_eq!(
        z.event.occurred_at,
        Utc.timestamp_millis_opt(T0 + 9).unwrap()
    );
    assert_eq!(z.contact.full_name.as_deref(), Some("Zoë Åström-Núñez"));
    assert_eq!(
        z.contact.email.as_ref().unwrap().as_str(),
        "zoe.astrom+crm@example.se"
    );
    assert_eq!(z.contact.phone.as_ref().unwrap().as_str(), "+46701234567");
    let y = &change(yamada).change;
    assert_eq!(y.contact.key.as_str(), "hubspot:7002");
    assert_eq!(y.contact.full_name.as_deref(), Some("山田 太郎"));
    assert_eq!(
        y.event.occurred_at,
        Utc.timestamp_millis_opt(T0 + 6).unwrap()
    );
}

#[test]
fn combined_hubspot_changes_keep_the_newest_value_and_a_retry_has_the_same_id() {
    // Two e-mail changes of one contact in one batch, the newer one first in the array.
    let body = json!([
        hubspot_event(62, 7003, T0 + 2_000, Some(("email", "new@example.com"))),
        hubspot_event(61, 7003, T0, Some(("email", "old@example.com"))),
        hubspot_event(63, 7003, T0 + 2_000, Some(("company", "Nordwind GmbH"))),
    ]);
    let first = map("hubspot", &body);
    let [only] = first.as_slice() else {
        panic!("{first:?}")
    };
    let c = &change(only).change.contact;
    assert_eq!(c.email.as_ref().unwrap().as_str(), "new@example.com");
    assert_eq!(c.organization.as_deref(), Some("Nordwind GmbH"));
    // HubSpot's retry: the same events, attempt counters raised and the order changed.
    let mut retried = body.as_array().unwrap().clone();
    retried.reverse();
    for e in &mut retried {
        e["attemptNumber"] = json!(1);
    }
    let again = map("hubspot", &Value::Array(retried));
    let [again] = again.as_slice() else {
        panic!("{again:?}")
    };
    assert!(only.event_id.starts_with("61+2~"), "{}", only.event_id);
    assert_eq!(
        again.event_id, only.event_id,
        "the same events in another order: the same id"
    );
    assert_eq!(
        change(again)
            .change
            .contact
            .email
            .as_ref()
            .unwrap()
            .as_str(),
        "new@example.com",
        "newest wins whatever the order in the array"
    );
    // Other events (one more property) are another change.
    let mut more = body.as_array().unwrap().clone();
    more.push(hubspot_event(
        64,
        7003,
        T0 + 2_100,
        Some(("phone", "030 901820")),
    ));
    let other = map("hubspot", &Value::Array(more));
    assert_ne!(change(&other[0]).change.event.event_id, only.event_id);
}

/// A combined change keeps each field at the time of the event that set it: a later
/// delivery with a value set between two of its events must still win at the vendor.
/// (Before per-field versions every field took the newest member's time, and Hood kept the
/// older company name.)
#[test]
fn a_combined_change_keeps_each_fields_own_time_so_a_later_delivery_still_wins() {
    use relay_core::plans::{VendorState, plan_hood, record_applied};
    use std::collections::BTreeSet;
    let first = json!([
        hubspot_event(81, 7005, T0, Some(("company", "Acme"))),
        hubspot_event(
            83,
            7005,
            T0 + 2_000,
            Some(("email", "Mia.Lopez+crm@Example.MX"))
        ),
        hubspot_event(84, 7005, T0 + 2_500, Some(("firstname", "Mía"))),
        hubspot_event(85, 7005, T0 + 2_600, Some(("lastname", "López"))),
    ]);
    let [combined] = map("hubspot", &first).try_into().unwrap();
    let combined = change(&combined).change.clone();
    assert_eq!(combined.version(), T0 + 2_600);
    assert_eq!(combined.version_of("organization"), T0);
    assert_eq!(combined.version_of("email"), T0 + 2_000);
    assert_eq!(
        combined.version_of("full_name"),
        T0 + 2_600,
        "a composed name is as new as its newest part"
    );
    // Sent by HubSpot a moment later, in its own request: a company change made at T0 + 1 s.
    let later = json!([hubspot_event(
        82,
        7005,
        T0 + 1_000,
        Some(("company", "Acme Corp"))
    )]);
    let [later] = map("hubspot", &later).try_into().unwrap();
    let later = change(&later).change.clone();

    let m = mappings();
    let hood = m.vendors.hood().unwrap();
    let mut state = VendorState {
        vendor_id: Some("1000105".into()),
        ..VendorState::default()
    };
    let planned = plan_hood(&combined, &state, hood, &BTreeSet::new()).unwrap();
    state.applied = record_applied(&state.applied, &planned.applied);
    let planned = plan_hood(&later, &state, hood, &BTreeSet::new()).unwrap();
    let requests = planned.plan.requests();
    let patch = requests
        .iter()
        .find(|r| r.method == "PATCH")
        .unwrap_or_else(|| panic!("the newer company name is sent: {requests:?}"));
    assert_eq!(
        patch.body.as_ref().unwrap()["custom_properties"]["company_name"],
        json!("Acme Corp")
    );
}

#[test]
fn a_deletion_is_not_combined_and_splits_the_changes_around_it() {
    let body = json!([
        hubspot_event(71, 7004, T0, Some(("email", "ivo@example.hr"))),
        hubspot_event(72, 7004, T0 + 1, None),
        hubspot_event(73, 7004, T0 + 2, Some(("email", "ivo.novi@example.hr"))),
        hubspot_event(74, 7004, T0 + 3, Some(("firstname", "Ivo"))),
    ]);
    let events = map("hubspot", &body);
    let kinds: Vec<(String, ChangeKind)> = events
        .iter()
        .map(|e| (e.event_id.clone(), change(e).change.event.kind))
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[0], ("71".to_string(), ChangeKind::Updated));
    assert_eq!(kinds[1], ("72".to_string(), ChangeKind::Deleted));
    assert!(kinds[2].0.starts_with("73+1~"), "{kinds:?}");
    assert_eq!(
        change(&events[2])
            .change
            .contact
            .email
            .as_ref()
            .unwrap()
            .as_str(),
        "ivo.novi@example.hr"
    );
}

#[test]
fn a_bad_field_in_a_combined_change_costs_that_field_and_other_events_keep_their_places() {
    let mut body = vec![
        hubspot_event(81, 7005, T0, Some(("phone", "call me"))),
        hubspot_event(82, 7005, T0 + 1, Some(("email", "Mia@Example.it"))),
    ];
    body.insert(
        1,
        json!({"eventId": 90, "subscriptionType": "deal.creation", "objectId": 77, "occurredAt": T0, "attemptNumber": 0}),
    );
    let events = map("hubspot", &Value::Array(body));
    assert_eq!(events.len(), 2);
    let mia = change(&events[0]);
    assert!(events[0].event_id.starts_with("81+1~"));
    assert_eq!(
        mia.change.contact.email.as_ref().unwrap().as_str(),
        "mia@example.it"
    );
    assert_eq!(mia.change.contact.phone, None);
    assert_eq!(mia.warnings.len(), 1);
    assert_eq!(mia.warnings[0].code, "phone_invalid");
    assert_eq!(
        mia.warnings[0].event.as_deref(),
        Some("81"),
        "the sender's own event the field came from"
    );
    assert!(
        matches!(&events[1].outcome, EventOutcome::Ignored { kind } if kind == "deal.creation")
    );
}
