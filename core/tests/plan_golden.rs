//! Golden tests: the exact vendor requests planned from each built-in sample, body by body,
//! as `../shared/vendor-docs/` defines them.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::{TimeZone, Utc};
use relay_core::mapping::{EventDefaults, Mappings};
use relay_core::model::{ChangeKind, ContactChange, PersonId};
use relay_core::plans::{
    ChannelPlan, ChatwootPlan, HoodProfileOp, OmnivibePlan, PlanError, PlannedRequest, SkipReason,
    VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
use relay_sandbox::samples::sample;
use serde_json::{Value, json};

fn mappings() -> Mappings {
    Mappings::builtin().unwrap()
}

fn changes(source: &str) -> Vec<ContactChange> {
    let body: Value = serde_json::from_str(sample(source).unwrap().body).unwrap();
    changes_of(source, &body)
}

fn changes_of(source: &str, body: &Value) -> Vec<ContactChange> {
    let defaults = EventDefaults {
        event_id: "msg_1".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap(),
    };
    mappings()
        .source(source)
        .unwrap()
        .extract(body, &defaults)
        .unwrap()
}

/// The person id ingest's identity step gave the contact.
const PERSON: &str = "p0190a3f2c4b17e3d9a5b6c7d8e9f0a1b";

fn typeform() -> ContactChange {
    let mut change = changes("typeform").remove(0);
    change.contact.person = Some(PersonId::parse(PERSON).unwrap());
    change
}

fn unknown() -> VendorState {
    VendorState::default()
}

fn known(id: &str) -> VendorState {
    VendorState {
        vendor_id: Some(id.into()),
        ..VendorState::default()
    }
}

fn shape(requests: &[PlannedRequest]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect()
}

fn s(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn hood_new_signup_defines_properties_then_looks_up_then_creates() {
    let m = mappings();
    let planned = plan_hood(
        &typeform(),
        &unknown(),
        m.vendors.hood().unwrap(),
        &BTreeSet::new(),
    )
    .unwrap();
    let plan = &planned.plan;

    let properties: Vec<Value> = plan
        .properties
        .iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    assert_eq!(
        properties,
        [
            json!({"label": "company_name", "data_type": "text", "example": "Acme Inc",
                   "description": "Company or organisation name given by the contact.", "export_alias": "company_name",
                   "pi_data": 0, "importable": 1, "exportable": 1}),
            json!({"label": "utm_source", "data_type": "text", "example": "newsletter",
                   "description": "Marketing source the contact signed up from.", "export_alias": "utm_source",
                   "pi_data": 0, "importable": 1, "exportable": 1}),
        ]
    );
    let HoodProfileOp::Resolve {
        lookup,
        patch,
        create,
        after_create,
    } = &plan.profile
    else {
        panic!("expected Resolve")
    };
    assert_eq!(lookup.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(lookup.mobile_phone_number.as_deref(), Some("+14155552671"));
    assert_eq!(
        serde_json::to_value(create).unwrap(),
        json!({"mobile_phone_number": "+14155552671", "email": "ann.lee@example.com", "full_name": "Ann Lee"})
    );
    assert_eq!(
        serde_json::to_value(after_create).unwrap(),
        json!({"custom_properties": {"company_name": "Acme Inc", "utm_source": "newsletter"}})
    );
    assert_eq!(
        serde_json::to_value(patch).unwrap(),
        json!({"email": "ann.lee@example.com", "mobile_phone_number": "+14155552671", "full_name": "Ann Lee",
               "custom_properties": {"company_name": "Acme Inc", "utm_source": "newsletter"}})
    );
    assert_eq!(
        shape(&plan.requests()),
        [
            s("GET", "/v1/hood/profiles?email=eq:ann.lee%40example.com"),
            s(
                "GET",
                "/v1/hood/profiles?mobile_phone_number=eq:%2B14155552671"
            ),
            s("POST", "/v1/hood/profile-properties"),
            s("POST", "/v1/hood/profile-properties"),
            s("POST", "/v1/hood/profiles"),
            s("PATCH", "/v1/hood/profiles/{id}"),
        ]
    );
    assert_eq!(
        planned.applied.len(),
        5,
        "one fingerprint per field sent: {:?}",
        planned.applied.keys()
    );
}

#[test]
fn hood_known_profile_is_one_patch_and_known_properties_are_not_redefined() {
    let m = mappings();
    let known_props: BTreeSet<String> =
        ["company_name".to_string(), "utm_source".to_string()].into();
    let planned = plan_hood(
        &typeform(),
        &known("1000105"),
        m.vendors.hood().unwrap(),
        &known_props,
    )
    .unwrap();
    assert!(planned.plan.properties.is_empty());
    let requests = planned.plan.requests();
    assert_eq!(shape(&requests), [s("PATCH", "/v1/hood/profiles/1000105")]);
    assert_eq!(
        requests[0].body,
        Some(
            json!({"email": "ann.lee@example.com", "mobile_phone_number": "+14155552671", "full_name": "Ann Lee",
                    "custom_properties": {"company_name": "Acme Inc", "utm_source": "newsletter"}})
        )
    );
}

#[test]
fn hood_sends_only_what_changed_and_nothing_when_nothing_did() {
    let m = mappings();
    let hood = m.vendors.hood().unwrap();
    let first = plan_hood(&typeform(), &known("1000105"), hood, &BTreeSet::new()).unwrap();

    let mut state = known("1000105");
    state.applied = first.applied;
    let again = plan_hood(&typeform(), &state, hood, &BTreeSet::new()).unwrap();
    assert_eq!(
        again.plan.profile,
        HoodProfileOp::Skip(SkipReason::NothingChanged)
    );
    assert!(again.plan.requests().is_empty());
    assert!(again.applied.is_empty(), "the same change confirms nothing");

    // A later submission renames the contact (a rename at the very same version would be
    // a tie, decided by fingerprint).
    let mut renamed = typeform();
    renamed.event.occurred_at += chrono::TimeDelta::minutes(1);
    renamed.contact.full_name = Some("Ann Lee-Park".into());
    let partial = plan_hood(&renamed, &state, hood, &BTreeSet::new()).unwrap();
    assert_eq!(
        partial.plan.requests()[0].body,
        Some(json!({"full_name": "Ann Lee-Park"}))
    );
    // The name is sent; the four unchanged fields are recorded at the newer version too.
    assert_eq!(
        partial
            .applied
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "custom_properties.company_name",
            "custom_properties.utm_source",
            "email",
            "full_name",
            "mobile_phone_number"
        ]
    );
}

#[test]
fn hood_cannot_create_without_email_or_phone() {
    let m = mappings();
    // HubSpot's contact.creation alone (the sample's first event) carries no identifier.
    let body: Value = serde_json::from_str(sample("hubspot").unwrap().body).unwrap();
    let creation = Value::Array(vec![body[0].clone()]);
    let mut change = changes_of("hubspot", &creation).remove(0);
    change.contact.organization = Some("Acme".into());
    let err = plan_hood(
        &change,
        &unknown(),
        m.vendors.hood().unwrap(),
        &BTreeSet::new(),
    )
    .unwrap_err();
    assert_eq!(err, PlanError::HoodCreateNeedsEmailOrPhone);
    assert_eq!(
        err.to_string(),
        "hood: cannot create a profile without an e-mail address or a mobile phone number"
    );
    // The same change for a known profile is a plain PATCH.
    let ok = plan_hood(
        &change,
        &known("7"),
        m.vendors.hood().unwrap(),
        &["company_name".to_string()].into(),
    )
    .unwrap();
    assert_eq!(
        ok.plan.requests()[0].body,
        Some(json!({"custom_properties": {"company_name": "Acme"}}))
    );
}

#[test]
fn a_hubspot_batch_plans_once_per_contact() {
    let m = mappings();
    let hood = m.vendors.hood().unwrap();
    // The sample: contact 901's creation, e-mail, first name and phone, and 902's deletion.
    let all = changes("hubspot");
    assert_eq!(all.len(), 2);
    // The combined change resolves the profile by e-mail, then phone, and creates it with
    // both in one call (the first name alone is not a full name, and not mapped to Hood).
    let dana = plan_hood(&all[0], &unknown(), hood, &BTreeSet::new()).unwrap();
    let requests = dana.plan.requests();
    assert_eq!(
        shape(&requests),
        [
            s("GET", "/v1/hood/profiles?email=eq:dana%40example.com"),
            s(
                "GET",
                "/v1/hood/profiles?mobile_phone_number=eq:%2B16175550121"
            ),
            s("POST", "/v1/hood/profiles"),
        ]
    );
    assert_eq!(
        requests[2].body,
        Some(json!({"email": "dana@example.com", "mobile_phone_number": "+16175550121"}))
    );
    // Deletion: Hood documents no delete.
    for planned in [
        plan_hood(&all[1], &known("9"), hood, &BTreeSet::new())
            .unwrap()
            .plan
            .requests(),
        plan_channelio(&all[1], &known("u"), m.vendors.channelio().unwrap())
            .unwrap()
            .plan
            .requests(),
        plan_chatwoot(&all[1], &known("3"), m.vendors.chatwoot().unwrap())
            .unwrap()
            .plan
            .requests(1),
    ] {
        assert!(planned.is_empty());
    }
    assert_eq!(all[1].event.kind, ChangeKind::Deleted);
}

#[test]
fn channelio_upserts_by_member_id_with_the_documented_body() {
    let m = mappings();
    let planned = plan_channelio(&typeform(), &unknown(), m.vendors.channelio().unwrap()).unwrap();
    let ChannelPlan::Upsert { member_id, .. } = &planned.plan else {
        panic!("expected upsert")
    };
    // The person id, never the e-mail: the memberId is part of the URL.
    assert_eq!(member_id, PERSON);
    let requests = planned.plan.requests();
    assert_eq!(
        shape(&requests),
        [s("PUT", &format!("/open/v5/users/@{PERSON}"))]
    );
    assert!(!requests[0].path.contains("ann"));
    assert_eq!(
        requests[0].body,
        Some(json!({
            "profile": {"name": "Ann Lee", "email": "ann.lee@example.com", "mobileNumber": "+14155552671", "companyName": "Acme Inc"},
            "profileOnce": {"utmSource": "newsletter"},
            "tags": ["Product_news", "Beta_program"],
            "unsubscribeEmail": false
        }))
    );
}

#[test]
fn channelio_without_a_person_id_patches_a_known_user_or_refuses() {
    // A change that did not pass the identity step (a message from before it) has no
    // memberId: a known user is patched, an unknown one cannot be planned.
    let m = mappings();
    let channel = m.vendors.channelio().unwrap();
    let mut change = typeform();
    change.contact.person = None;
    assert_eq!(
        shape(
            &plan_channelio(&change, &known("5ec3a01fe2b3f4d2cbc5"), channel)
                .unwrap()
                .plan
                .requests()
        ),
        [s("PATCH", "/open/v5/users/5ec3a01fe2b3f4d2cbc5")]
    );
    assert_eq!(
        plan_channelio(&change, &unknown(), channel).unwrap_err(),
        PlanError::ChannelNeedsUserIdentity
    );
}

#[test]
fn channelio_patches_a_known_user_when_no_member_id_is_mapped() {
    let m = mappings();
    let mut channel = m.vendors.channelio().unwrap().clone();
    channel.member_id = None;
    let channel = &channel;
    let planned = plan_channelio(&typeform(), &known("5ec3a01fe2b3f4d2cbc5"), channel).unwrap();
    assert_eq!(
        shape(&planned.plan.requests()),
        [s("PATCH", "/open/v5/users/5ec3a01fe2b3f4d2cbc5")]
    );
    assert_eq!(
        plan_channelio(&typeform(), &unknown(), channel).unwrap_err(),
        PlanError::ChannelNeedsUserIdentity
    );
}

#[test]
fn channelio_consent_is_sent_as_unsubscribe_flags() {
    let m = mappings();
    let mut change = changes("standard").remove(0);
    change.contact.person = Some(PersonId::parse(PERSON).unwrap());
    let body = plan_channelio(&change, &unknown(), m.vendors.channelio().unwrap())
        .unwrap()
        .plan
        .requests()[0]
        .body
        .clone()
        .unwrap();
    assert_eq!(body["unsubscribeEmail"], json!(false), "consent_email true");
    assert_eq!(
        body["unsubscribeTexting"],
        json!(true),
        "consent_texting false"
    );
    assert_eq!(body["tags"], json!(["trial", "eu_west"]));
    assert_eq!(
        body["profile"],
        json!({"name": "Fay Ito", "email": "fay@example.com", "mobileNumber": "+12025550143", "companyName": "Ito Labs", "plan": "pro"})
    );
}

#[test]
fn omnivibe_updates_the_agent_profile_without_passwords() {
    let m = mappings();
    let change = changes("app-staff").remove(0);
    let planned = plan_omnivibe(&change, &unknown(), m.vendors.omnivibe().unwrap()).unwrap();
    let requests = planned.plan.requests();
    assert_eq!(shape(&requests), [s("PUT", "/api/v1/profile")]);
    assert_eq!(
        requests[0].body,
        Some(
            json!({"profile": {"name": "Hana Kim", "display_name": "Hana", "message_signature": "Hana Kim · Support", "phone_number": "+12125550166"}})
        )
    );
    assert!(matches!(planned.plan, OmnivibePlan::Update(_)));
}

#[test]
fn chatwoot_searches_then_creates_an_unknown_contact_and_updates_a_known_one() {
    let m = mappings();
    let chatwoot = m.vendors.chatwoot().unwrap();
    let planned = plan_chatwoot(&typeform(), &unknown(), chatwoot).unwrap();
    let ChatwootPlan::Resolve { queries, .. } = &planned.plan else {
        panic!("expected Resolve")
    };
    assert_eq!(queries, &["ann.lee@example.com", "+14155552671", PERSON]);
    let requests = planned.plan.requests(1);
    assert_eq!(
        shape(&requests),
        [
            s(
                "GET",
                "/api/v1/accounts/1/contacts/search?q=ann.lee%40example.com"
            ),
            s("POST", "/api/v1/accounts/1/contacts")
        ]
    );
    let body = json!({
        "name": "Ann Lee", "email": "ann.lee@example.com", "phone_number": "+14155552671",
        "identifier": PERSON,
        "custom_attributes": {"utm_source": "newsletter"},
        "additional_attributes": {"company_name": "Acme Inc"}
    });
    assert_eq!(requests[1].body, Some(body.clone()));

    let update = plan_chatwoot(&typeform(), &known("88"), chatwoot)
        .unwrap()
        .plan
        .requests(1);
    assert_eq!(shape(&update), [s("PUT", "/api/v1/accounts/1/contacts/88")]);
    assert_eq!(update[0].body, Some(body));
}

#[test]
fn an_older_change_never_overwrites_a_newer_value_but_its_other_fields_apply() {
    let m = mappings();
    let hood = m.vendors.hood().unwrap();
    let newer = typeform();
    let mut state = known("1000105");
    state.applied = plan_hood(&newer, &state, hood, &BTreeSet::new())
        .unwrap()
        .applied;

    // A change made a minute earlier arrives late: its name must not win...
    let mut older = typeform();
    older.event.occurred_at -= chrono::TimeDelta::minutes(1);
    older.contact.full_name = Some("Ann Old-Name".into());
    let planned = plan_hood(&older, &state, hood, &BTreeSet::new()).unwrap();
    assert_eq!(
        planned.plan.profile,
        HoodProfileOp::Skip(SkipReason::OlderThanApplied)
    );

    // ...but a field the newer change did not set still applies.
    older.contact.custom.insert("plan".into(), json!("team"));
    let planned = plan_hood(&older, &state, hood, &["plan".to_string()].into()).unwrap();
    assert_eq!(
        planned.plan.requests()[0].body,
        Some(json!({"custom_properties": {"plan": "team"}}))
    );
}
