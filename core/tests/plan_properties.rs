//! Property tests: whatever the contact, the state and the change kind, planning never yields
//! a request the vendor pages forbid — no empty PATCH, no create without e-mail and phone,
//! no more than 20 tags or a tag with a forbidden character, no phone outside E.164, no
//! password field, no field a vendor does not document.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use relay_core::mapping::{EventDefaults, Mappings};
use relay_core::model::tags::is_valid_channel_tag;
use relay_core::model::{
    ChangeKind, Contact, ContactChange, ContactKey, Email, PhoneE164, PhoneRegion, SyncEvent,
};
use relay_core::plans::{
    PlanError, PlannedRequest, VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
use relay_core::vendors::channelio::wire::MAX_TAGS;
use relay_core::vendors::hood::wire::{CREATE_FIELDS, UPDATABLE_FIELDS};
use relay_core::vendors::omnivibe::wire::PROFILE_FIELDS;
use serde_json::{Value, json};

const PHONES: [&str; 3] = ["+14155552671", "+442079460958", "+4930901820"];
const CUSTOM: [&str; 6] = [
    "plan",
    "utm_source",
    "lifecycle_stage",
    "display_name",
    "message_signature",
    "first_name",
];

fn mappings() -> &'static Mappings {
    static M: std::sync::OnceLock<Mappings> = std::sync::OnceLock::new();
    M.get_or_init(|| Mappings::builtin().expect("built-in mappings load"))
}

fn custom_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from)
    ]
}

fn contact() -> impl Strategy<Value = Contact> {
    (
        proptest::option::of("[a-z]{1,8}(\\.[a-z]{1,5})?@[a-z]{2,8}\\.(com|org|io)"),
        proptest::option::of(proptest::sample::select(PHONES.to_vec())),
        proptest::option::of(any::<String>()),
        proptest::option::of("\\PC{0,20}"),
        proptest::option::of(proptest::collection::vec("[a-zA-Z0-9 .$/_-]{0,12}", 0..40)),
        proptest::option::of(proptest::collection::vec("[0-9]{1,7}", 0..5)),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
        proptest::collection::btree_map(
            proptest::sample::select(CUSTOM.to_vec()),
            custom_value(),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(email, phone, name, org, tags, lists, consent, custom, external_key)| {
                let email = email.and_then(|e| Email::parse(&e).ok());
                let phone = phone.map(|p| {
                    PhoneE164::parse(p, PhoneRegion::default()).expect("listed phones are valid")
                });
                let key = match (&email, &phone, external_key) {
                    (Some(e), _, false) => ContactKey::from_email(e),
                    (None, Some(p), false) => ContactKey::from_phone(p),
                    _ => ContactKey::external("crm", "4711").expect("non-empty"),
                };
                let mut c = Contact::new(key);
                c.email = email;
                c.phone = phone;
                c.full_name = name;
                c.organization = org;
                c.tags = tags;
                c.lists = lists;
                c.consent.email = consent.0;
                c.consent.texting = consent.1;
                c.custom = custom
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<BTreeMap<_, _>>();
                c
            },
        )
}

fn kind() -> impl Strategy<Value = ChangeKind> {
    proptest::sample::select(vec![
        ChangeKind::Signup,
        ChangeKind::Created,
        ChangeKind::Updated,
        ChangeKind::Deleted,
    ])
}

fn change(mut contact: Contact, kind: ChangeKind) -> ContactChange {
    // As ingest's identity step leaves it.
    contact.person = Some(relay_core::model::PersonId::from_uuid_bytes([0x42; 16]));
    ContactChange {
        event: SyncEvent {
            source: "prop".into(),
            event_id: "e1".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            kind,
        },
        contact,
        versions: Default::default(),
    }
}

fn state() -> impl Strategy<Value = VendorState> {
    proptest::option::of("[1-9][0-9]{0,6}").prop_map(|vendor_id| VendorState {
        vendor_id,
        ..VendorState::default()
    })
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn assert_phone_fields_e164(body: &Value) {
    match body {
        Value::Object(map) => {
            for (k, v) in map {
                if matches!(
                    k.as_str(),
                    "mobile_phone_number" | "mobileNumber" | "phone_number"
                ) {
                    let s = v.as_str().unwrap_or_default();
                    assert!(PhoneE164::is_e164(s), "{k} not in E.164");
                }
                assert_phone_fields_e164(v);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_phone_fields_e164),
        _ => {}
    }
}

/// Checks every rule the vendor pages impose on one planned request.
fn assert_allowed(r: &PlannedRequest) {
    let body = r.body.clone().unwrap_or(Value::Null);
    assert_phone_fields_e164(&body);
    let method = r.method.as_str();
    if method == "GET" {
        assert!(r.body.is_none());
        return;
    }
    assert!(
        body.as_object().is_some_and(|o| !o.is_empty()),
        "{method} {} with an empty body",
        r.path
    );
    if r.path == "/v1/hood/profiles" {
        assert!(
            body.get("email").is_some() || body.get("mobile_phone_number").is_some(),
            "Hood create without e-mail and phone"
        );
        assert!(
            keys(&body)
                .iter()
                .all(|k| CREATE_FIELDS.contains(&k.as_str()))
        );
    } else if r.path.starts_with("/v1/hood/profiles/") {
        assert!(
            keys(&body)
                .iter()
                .all(|k| UPDATABLE_FIELDS.contains(&k.as_str())),
            "non-updatable Hood field"
        );
        if let Some(props) = body.get("custom_properties") {
            assert!(
                props
                    .as_object()
                    .is_some_and(|p| !p.is_empty() && p.values().all(Value::is_string))
            );
        }
    } else if r.path.starts_with("/open/v5/users/") {
        let allowed = [
            "profile",
            "profileOnce",
            "tags",
            "unsubscribeEmail",
            "unsubscribeTexting",
        ];
        assert!(keys(&body).iter().all(|k| allowed.contains(&k.as_str())));
        if let Some(tags) = body.get("tags").and_then(Value::as_array) {
            assert!(tags.len() <= MAX_TAGS, "{} tags", tags.len());
            assert!(
                tags.iter()
                    .all(|t| t.as_str().is_some_and(is_valid_channel_tag)),
                "bad tag in {tags:?}"
            );
        }
    } else if r.path == "/api/v1/profile" {
        assert_eq!(keys(&body), ["profile"]);
        let profile = &body["profile"];
        assert!(!keys(profile).is_empty(), "empty agent profile");
        assert!(
            keys(profile)
                .iter()
                .all(|k| PROFILE_FIELDS.contains(&k.as_str()) && !k.contains("password"))
        );
    }
}

fn check_all_vendors(change: &ContactChange, state: &VendorState) {
    let m = mappings();
    let has_identity = change.contact.email.is_some() || change.contact.phone.is_some();
    match plan_hood(change, state, m.vendors.hood().unwrap(), &BTreeSet::new()) {
        Ok(p) => p.plan.requests().iter().for_each(assert_allowed),
        Err(PlanError::HoodCreateNeedsEmailOrPhone) => {
            assert!(
                !has_identity && state.vendor_id.is_none(),
                "refused a contact Hood could take"
            )
        }
        Err(other) => panic!("unexpected {other}"),
    }
    let channel = plan_channelio(change, state, m.vendors.channelio().unwrap())
        .expect("member_id = person always plans");
    channel.plan.requests().iter().for_each(assert_allowed);
    let omni =
        plan_omnivibe(change, state, m.vendors.omnivibe().unwrap()).expect("omnivibe always plans");
    omni.plan.requests().iter().for_each(assert_allowed);
    let chatwoot = plan_chatwoot(change, state, m.vendors.chatwoot().unwrap())
        .expect("the person id always plans");
    chatwoot.plan.requests(1).iter().for_each(assert_allowed);
    if change.event.kind == ChangeKind::Deleted {
        assert!(
            channel.plan.requests().is_empty()
                && omni.plan.requests().is_empty()
                && chatwoot.plan.requests(1).is_empty()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn planned_requests_respect_the_vendor_docs(contact in contact(), kind in kind(), state in state()) {
        check_all_vendors(&change(contact, kind), &state);
    }

    #[test]
    fn replanning_after_success_sends_nothing(contact in contact(), id in "[1-9][0-9]{0,6}") {
        let m = mappings();
        let c = change(contact, ChangeKind::Updated);
        let hood = m.vendors.hood().unwrap();
        let first = plan_hood(&c, &VendorState { vendor_id: Some(id.clone()), ..VendorState::default() }, hood, &BTreeSet::new()).unwrap();
        let after = VendorState { vendor_id: Some(id), applied: first.applied };
        prop_assert!(plan_hood(&c, &after, hood, &BTreeSet::new()).unwrap().plan.requests().is_empty());
    }

    /// The whole way from an arbitrary sender payload: mapping either refuses it with an
    /// error or yields contacts whose plans obey the same rules. Never a panic.
    #[test]
    fn arbitrary_envelopes_map_and_plan_safely(
        email in proptest::option::of(prop_oneof!["[a-z]{1,6}@[a-z]{1,6}\\.com", "\\PC{0,16}"]),
        phone in proptest::option::of(prop_oneof!["\\+1 415 555 [0-9]{4}", "[0-9 ()+-]{0,16}"]),
        tags in proptest::collection::vec("\\PC{0,10}", 0..30),
        name in proptest::option::of("\\PC{0,20}"),
    ) {
        let payload = json!({"type": "contact.updated", "timestamp": "2026-01-01T00:00:00Z",
                             "data": {"id": "u1", "email": email, "phone": phone, "tags": tags, "name": name}});
        let defaults = EventDefaults { event_id: "m".into(), received_at: Utc::now() };
        if let Ok(changes) = mappings().source("standard").unwrap().extract(&payload, &defaults) {
            for mut c in changes {
                // Ingest's identity step gives every change its person before planning.
                c.contact.person = Some(relay_core::model::PersonId::from_uuid_bytes([0x42; 16]));
                check_all_vendors(&c, &VendorState::default());
            }
        }
    }
}
