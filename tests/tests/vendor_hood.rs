//! Ocamba Hood client and sync against a wiremock server: method, path, auth, content type
//! and exact JSON body of every endpoint (`vendor-docs/hood-*.txt`), and the id-resolution
//! and custom-property flows of the sync.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use relay_shared::plan::{HoodLookup, HoodPlan, HoodProfileOp, SkipReason};
use relay_shared::vendors::hood::ProfileFilter;
use relay_shared::vendors::hood::wire::{
    CreateProfile, CreateProfileProperty, Flag, PatchProfile, Profile,
};
use relay_shared::vendors::{
    CallGate, ErrorClass, RateLimitInfo, Reset, SyncOutcome, TransientCause, Vendor, VendorError,
    VendorSync,
};
use relay_tests::vendors::{NoBody, RawQuery, common, hood, hood_auth, json_body};
use serde_json::json;
use wiremock::matchers::{any, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EMAIL: &str = "john.doe@example.com";
const PHONE: &str = "+49658245684";

fn create_body() -> CreateProfile {
    CreateProfile {
        mobile_phone_number: Some(PHONE.into()),
        email: Some(EMAIL.into()),
        full_name: Some("John Doe".into()),
    }
}

fn full_patch() -> PatchProfile {
    PatchProfile {
        email: Some(EMAIL.into()),
        mobile_phone_number: Some(PHONE.into()),
        full_name: Some("John Doe".into()),
        organization_id: Some("1000".into()),
        lists: Some(vec!["1000102".into()]),
        comment: Some("New comment for profile".into()),
        custom_properties: Some(BTreeMap::from([("clicker".to_owned(), "1".to_owned())])),
    }
}

fn property(label: &str) -> CreateProfileProperty {
    CreateProfileProperty {
        label: label.into(),
        data_type: "text".into(),
        example: "northern_europe".into(),
        description: "Custom region information".into(),
        export_alias: format!("{label}_alias"),
        pi_data: Flag::Yes,
        importable: Flag::Yes,
        exportable: Flag::No,
    }
}

fn property_json(label: &str) -> serde_json::Value {
    json!({
        "label": label,
        "data_type": "text",
        "example": "northern_europe",
        "description": "Custom region information",
        "export_alias": format!("{label}_alias"),
        "pi_data": 1,
        "importable": 1,
        "exportable": 0
    })
}

fn listed_property(id: &str, label: &str) -> serde_json::Value {
    json!({"id": id, "company_id": "7196310", "target": label, "label": label, "data_type": "text", "system": 0})
}

fn profile_json(id: &str) -> serde_json::Value {
    json!({"id": id, "email": EMAIL, "mobile_phone_number": PHONE, "full_name": "John Doe", "country": "DE"})
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn create_profile_201_with_body_returns_the_profile_and_rate_limit() {
    let server = MockServer::start().await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profiles")),
    ))
    .and(body_json(json!({
        "mobile_phone_number": "+49658245684",
        "email": "john.doe@example.com",
        "full_name": "John Doe"
    })))
    .respond_with(
        ResponseTemplate::new(201)
            .set_body_json(profile_json("1000200"))
            .insert_header("X-RateLimit-Limit", "150")
            .insert_header("X-RateLimit-Remaining", "148")
            .insert_header("X-RateLimit-Reset", "37"),
    )
    .expect(1)
    .mount(&server)
    .await;

    let r = hood(&server)
        .create_profile(&create_body())
        .await
        .expect("created");
    assert_eq!(r.status, 201);
    assert_eq!(r.value.map(|p| p.id), Some("1000200".to_owned()));
    assert_eq!(
        r.rate_limit,
        RateLimitInfo {
            limit: Some(150),
            remaining: Some(148),
            reset: Some(Reset::InSeconds(37)),
            retry_after: None
        }
    );
}

#[tokio::test]
async fn create_profile_201_without_body_returns_none() {
    let server = MockServer::start().await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profiles")),
    ))
    .and(body_json(json!({"email": "john.doe@example.com"})))
    .respond_with(ResponseTemplate::new(201).insert_header("Content-Type", "application/json"))
    .expect(1)
    .mount(&server)
    .await;
    let body = CreateProfile {
        email: Some(EMAIL.into()),
        ..CreateProfile::default()
    };
    let r = hood(&server).create_profile(&body).await.expect("created");
    assert_eq!((r.status, r.value), (201, None));
}

#[tokio::test]
async fn create_profile_201_with_numeric_id_and_extra_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profiles"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": 1000201, "lists": [], "extra": {"a": 1}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let r = hood(&server)
        .create_profile(&create_body())
        .await
        .expect("created");
    assert_eq!(r.value.map(|p| p.id), Some("1000201".to_owned()));
}

#[tokio::test]
async fn patch_profile_sends_the_documented_body_and_accepts_204() {
    let server = MockServer::start().await;
    hood_auth(json_body(
        Mock::given(method("PATCH")).and(path("/v1/hood/profiles/1000105")),
    ))
    .and(body_json(json!({
        "full_name": "John Doe",
        "mobile_phone_number": "+49658245684",
        "email": "john.doe@example.com",
        "organization_id": "1000",
        "lists": ["1000102"],
        "custom_properties": {"clicker": "1"},
        "comment": "New comment for profile"
    })))
    .respond_with(ResponseTemplate::new(204).insert_header("X-RateLimit-Remaining", "9"))
    .expect(1)
    .mount(&server)
    .await;
    let r = hood(&server)
        .patch_profile("1000105", &full_patch())
        .await
        .expect("patched");
    assert_eq!((r.status, r.rate_limit.remaining), (204, Some(9)));
}

#[tokio::test]
async fn list_profiles_by_email_encodes_the_filter_value() {
    let server = MockServer::start().await;
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(RawQuery("email=eq:john%2Bdoe%40example.com"))
    .and(query_param("email", "eq:john+doe@example.com"))
    .and(NoBody)
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([
        {"id": "1", "email": "john+doe@example.com", "unknown": true},
        {"id": 2}
    ])))
    .expect(1)
    .mount(&server)
    .await;
    let r = hood(&server)
        .list_profiles(ProfileFilter::Email("john+doe@example.com"))
        .await
        .expect("listed");
    let ids: Vec<String> = r.value.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, vec!["1", "2"]);
    assert_eq!(r.value[0].email.as_deref(), Some("john+doe@example.com"));
}

#[tokio::test]
async fn list_profiles_by_phone_encodes_the_plus() {
    let server = MockServer::start().await;
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(RawQuery("mobile_phone_number=eq:%2B49658245684"))
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
    .expect(1)
    .mount(&server)
    .await;
    let r = hood(&server)
        .list_profiles(ProfileFilter::MobilePhoneNumber(PHONE))
        .await
        .expect("listed");
    assert_eq!(r.value, Vec::<Profile>::new());
}

#[tokio::test]
async fn create_profile_property_sends_the_documented_body() {
    let server = MockServer::start().await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profile-properties")),
    ))
    .and(body_json(json!({
        "label": "my_region",
        "data_type": "text",
        "example": "northern_europe",
        "description": "Custom region information",
        "export_alias": "my_region_alias",
        "pi_data": 1,
        "importable": 1,
        "exportable": 0
    })))
    .respond_with(ResponseTemplate::new(201).set_body_json(json!({
        "id": "1000105", "company_id": "7196310", "target": "my_region", "label": "my_region",
        "data_type": "text", "import_aliases": ["region_name"], "pi_data": 1, "system": 1,
        "create_time": "2025-01-29 12:47:00"
    })))
    .expect(1)
    .mount(&server)
    .await;
    let r = hood(&server)
        .create_profile_property(&property("my_region"))
        .await
        .expect("created");
    let p = r.value.expect("property in answer");
    assert_eq!(
        (p.id.as_str(), p.label.as_str(), r.status),
        ("1000105", "my_region", 201)
    );
}

#[tokio::test]
async fn list_profile_properties_reads_the_array() {
    let server = MockServer::start().await;
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profile-properties")),
    ))
    .and(NoBody)
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([
        listed_property("1", "clicker"),
        listed_property("2", "my_region")
    ])))
    .expect(1)
    .mount(&server)
    .await;
    let r = hood(&server)
        .list_profile_properties()
        .await
        .expect("listed");
    let labels: Vec<&str> = r.value.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, vec!["clicker", "my_region"]);
}

// ---------------------------------------------------------------- sync

fn resolve(lookup: HoodLookup, patch: PatchProfile, after_create: PatchProfile) -> HoodPlan {
    HoodPlan {
        properties: vec![],
        profile: HoodProfileOp::Resolve {
            lookup,
            patch,
            create: create_body(),
            after_create,
        },
    }
}

fn lookup_both() -> HoodLookup {
    HoodLookup {
        email: Some(EMAIL.into()),
        mobile_phone_number: Some(PHONE.into()),
    }
}

async fn mount_lookup(
    server: &MockServer,
    raw_query: &'static str,
    answer: serde_json::Value,
    times: u64,
) {
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(RawQuery(raw_query))
    .respond_with(ResponseTemplate::new(200).set_body_json(answer))
    .up_to_n_times(times)
    .expect(times)
    .mount(server)
    .await;
}

const EMAIL_Q: &str = "email=eq:john.doe%40example.com";
const PHONE_Q: &str = "mobile_phone_number=eq:%2B49658245684";

async fn mount_patch(server: &MockServer, id: &str, body: serde_json::Value, times: u64) {
    hood_auth(json_body(
        Mock::given(method("PATCH")).and(path(format!("/v1/hood/profiles/{id}"))),
    ))
    .and(body_json(body))
    .respond_with(ResponseTemplate::new(204))
    .expect(times)
    .mount(server)
    .await;
}

#[tokio::test]
async fn sync_patches_a_known_profile_with_one_call() {
    let server = MockServer::start().await;
    mount_patch(&server, "55", json!({"full_name": "Jane"}), 1).await;
    let plan = HoodPlan {
        properties: vec![],
        profile: HoodProfileOp::Patch {
            profile_id: "55".into(),
            body: PatchProfile {
                full_name: Some("Jane".into()),
                ..PatchProfile::default()
            },
        },
    };
    let out = hood(&server).sync(&plan).await.expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("55"), 1));
}

#[tokio::test]
async fn sync_skips_an_empty_patch_and_a_skip_plan() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = hood(&server);
    let empty = HoodPlan {
        properties: vec![property("unused")],
        profile: HoodProfileOp::Patch {
            profile_id: "55".into(),
            body: PatchProfile::default(),
        },
    };
    let out = client.sync(&empty).await.expect("skipped");
    assert_eq!(
        out,
        SyncOutcome {
            vendor_id: Some("55".into()),
            calls: 0,
            rate_limit: None
        }
    );
    let skip = HoodPlan {
        properties: vec![],
        profile: HoodProfileOp::Skip(SkipReason::NothingChanged),
    };
    assert_eq!(
        client.sync(&skip).await.expect("skipped"),
        SyncOutcome::default()
    );
}

#[tokio::test]
async fn sync_finds_by_email_and_patches() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([profile_json("77")]), 1).await;
    mount_patch(&server, "77", json!({"comment": "hi"}), 1).await;
    let patch = PatchProfile {
        comment: Some("hi".into()),
        ..PatchProfile::default()
    };
    let out = hood(&server)
        .sync(&resolve(lookup_both(), patch, PatchProfile::default()))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("77"), 2));
}

#[tokio::test]
async fn sync_found_with_empty_patch_makes_only_the_lookup() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([profile_json("77")]), 1).await;
    let out = hood(&server)
        .sync(&resolve(
            lookup_both(),
            PatchProfile::default(),
            PatchProfile::default(),
        ))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("77"), 1));
}

#[tokio::test]
async fn sync_falls_back_to_phone_lookup() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([]), 1).await;
    mount_lookup(
        &server,
        PHONE_Q,
        json!([{"id": "88", "mobile_phone_number": PHONE}]),
        1,
    )
    .await;
    mount_patch(&server, "88", json!({"email": EMAIL}), 1).await;
    let patch = PatchProfile {
        email: Some(EMAIL.into()),
        ..PatchProfile::default()
    };
    let out = hood(&server)
        .sync(&resolve(lookup_both(), patch, PatchProfile::default()))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("88"), 3));
}

#[tokio::test]
async fn sync_ignores_lookup_hits_whose_email_differs() {
    // A server that ignored the filter must not make us patch someone else's profile.
    let server = MockServer::start().await;
    mount_lookup(
        &server,
        "email=eq:john.doe%40example.com",
        json!([{"id": "1", "email": "other@example.com"}]),
        1,
    )
    .await;
    json_body(Mock::given(method("POST")).and(path("/v1/hood/profiles")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "2"})))
        .expect(1)
        .mount(&server)
        .await;
    let lookup = HoodLookup {
        email: Some(EMAIL.into()),
        mobile_phone_number: None,
    };
    let out = hood(&server)
        .sync(&resolve(
            lookup,
            PatchProfile::default(),
            PatchProfile::default(),
        ))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("2"), 2));
}

#[tokio::test]
async fn sync_creates_then_patches_the_fields_create_does_not_take() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([]), 1).await;
    mount_lookup(&server, PHONE_Q, json!([]), 1).await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profiles")),
    ))
    .and(body_json(
        json!({"mobile_phone_number": PHONE, "email": EMAIL, "full_name": "John Doe"}),
    ))
    .respond_with(
        ResponseTemplate::new(201)
            .set_body_json(profile_json("900"))
            .insert_header("X-RateLimit-Remaining", "5"),
    )
    .expect(1)
    .mount(&server)
    .await;
    mount_patch(
        &server,
        "900",
        json!({"lists": ["1000102"], "comment": "from form"}),
        1,
    )
    .await;
    let after = PatchProfile {
        lists: Some(vec!["1000102".into()]),
        comment: Some("from form".into()),
        ..PatchProfile::default()
    };
    let out = hood(&server)
        .sync(&resolve(lookup_both(), PatchProfile::default(), after))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("900"), 4));
    // The PATCH answered without headers; the last headers seen were the create's.
    assert_eq!(out.rate_limit.and_then(|r| r.remaining), Some(5));
}

#[tokio::test]
async fn sync_create_without_body_finds_the_new_id_by_lookup() {
    let server = MockServer::start().await;
    // First lookup: nothing. After the create: the new profile.
    mount_lookup(&server, EMAIL_Q, json!([]), 1).await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profiles")),
    ))
    .and(body_json(
        json!({"mobile_phone_number": PHONE, "email": EMAIL, "full_name": "John Doe"}),
    ))
    .respond_with(ResponseTemplate::new(201))
    .expect(1)
    .mount(&server)
    .await;
    mount_lookup(&server, EMAIL_Q, json!([profile_json("901")]), 1).await;
    let lookup = HoodLookup {
        email: Some(EMAIL.into()),
        mobile_phone_number: None,
    };
    let out = hood(&server)
        .sync(&resolve(
            lookup,
            PatchProfile::default(),
            PatchProfile::default(),
        ))
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("901"), 3));
}

#[tokio::test]
async fn sync_create_without_body_and_no_lookup_hit_is_an_unexpected_response() {
    let server = MockServer::start().await;
    mount_lookup(&server, PHONE_Q, json!([]), 2).await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profiles"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;
    let lookup = HoodLookup {
        email: None,
        mobile_phone_number: Some(PHONE.into()),
    };
    let err = hood(&server)
        .sync(&resolve(
            lookup,
            PatchProfile::default(),
            PatchProfile::default(),
        ))
        .await
        .expect_err("no id anywhere");
    assert_eq!(err.calls, 3);
    assert_eq!(err.error.class(), ErrorClass::Permanent);
    assert!(matches!(
        *err.error,
        VendorError::UnexpectedResponse {
            op: "hood.create_profile",
            status: 201,
            ..
        }
    ));
}

#[tokio::test]
async fn sync_failure_after_create_keeps_the_new_id() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([]), 1).await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profiles"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "902"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/hood/profiles/902"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"code": 503, "title": "Unavailable", "trace_id": "t-1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let lookup = HoodLookup {
        email: Some(EMAIL.into()),
        mobile_phone_number: None,
    };
    let after = PatchProfile {
        comment: Some("x".into()),
        ..PatchProfile::default()
    };
    let err = hood(&server)
        .sync(&resolve(lookup, PatchProfile::default(), after))
        .await
        .expect_err("patch failed");
    assert_eq!((err.vendor_id.as_deref(), err.calls), (Some("902"), 3));
    assert!(matches!(
        *err.error,
        VendorError::Transient {
            cause: TransientCause::Status(503),
            ref trace_id,
            ..
        } if trace_id.as_deref() == Some("t-1")
    ));
}

#[tokio::test]
async fn sync_creates_missing_properties_once_per_client() {
    let server = MockServer::start().await;
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profile-properties")),
    ))
    .respond_with(
        ResponseTemplate::new(200).set_body_json(json!([listed_property("1", "clicker")])),
    )
    .expect(1)
    .mount(&server)
    .await;
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profile-properties")),
    ))
    .and(body_json(property_json("my_region")))
    .respond_with(ResponseTemplate::new(201).set_body_json(listed_property("2", "my_region")))
    .expect(1)
    .mount(&server)
    .await;
    let body = PatchProfile {
        custom_properties: Some(BTreeMap::from([
            ("clicker".to_owned(), "1".to_owned()),
            ("my_region".to_owned(), "north".to_owned()),
        ])),
        ..PatchProfile::default()
    };
    mount_patch(
        &server,
        "55",
        json!({"custom_properties": {"clicker": "1", "my_region": "north"}}),
        2,
    )
    .await;
    let plan = HoodPlan {
        properties: vec![property("clicker"), property("my_region")],
        profile: HoodProfileOp::Patch {
            profile_id: "55".into(),
            body,
        },
    };
    let client = hood(&server);
    let first = client.sync(&plan).await.expect("first sync");
    assert_eq!(first.calls, 3, "list properties, create my_region, patch");
    let second = client.sync(&plan).await.expect("second sync");
    assert_eq!(second.calls, 1, "properties are cached: only the patch");
}

#[tokio::test]
async fn sync_tolerates_a_property_created_concurrently() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profile-properties"))
        .and(body_json(property_json("my_region")))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 400, "title": "Bad request.", "message": "Label already exists.", "trace_id": "t-2"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([listed_property("3", "my_region")])),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_patch(
        &server,
        "55",
        json!({"custom_properties": {"my_region": "north"}}),
        1,
    )
    .await;
    let plan = HoodPlan {
        properties: vec![property("my_region")],
        profile: HoodProfileOp::Patch {
            profile_id: "55".into(),
            body: PatchProfile {
                custom_properties: Some(BTreeMap::from([(
                    "my_region".to_owned(),
                    "north".to_owned(),
                )])),
                ..PatchProfile::default()
            },
        },
    };
    let out = hood(&server).sync(&plan).await.expect("synced");
    assert_eq!(out.calls, 4);
}

#[tokio::test]
async fn sync_property_refusal_that_is_not_a_duplicate_fails_permanently() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 400, "title": "Bad request.", "message": "The request is not valid.", "trace_id": "t-3"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&server)
        .await;
    let plan = HoodPlan {
        properties: vec![property("bad label")],
        profile: HoodProfileOp::Patch {
            profile_id: "55".into(),
            body: PatchProfile {
                comment: Some("x".into()),
                ..PatchProfile::default()
            },
        },
    };
    let err = hood(&server).sync(&plan).await.expect_err("refused");
    assert_eq!(err.calls, 3);
    assert_eq!(
        *err.error,
        VendorError::Permanent {
            vendor: Vendor::Hood,
            op: "hood.create_profile_property",
            status: 400,
            message: Some("The request is not valid.".into()),
            trace_id: Some("t-3".into()),
            rate_limit: RateLimitInfo::default(),
        }
    );
}

/// Counts permits and observations, to prove every call goes through the gate.
#[derive(Default)]
struct CountingGate {
    acquired: AtomicU32,
    observed: AtomicU32,
    errors: AtomicU32,
    /// Reservations of several slots, and the slots booked by them used.
    booked_together: AtomicU32,
    booked_used: AtomicU32,
}

#[async_trait]
impl CallGate for CountingGate {
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError> {
        assert_eq!(vendor, Vendor::Hood);
        self.acquired.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn acquire_many(
        &self,
        vendor: Vendor,
        calls: u32,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, VendorError> {
        self.acquire(vendor).await?;
        self.booked_together.fetch_add(1, Ordering::SeqCst);
        Ok(vec![chrono::Utc::now(); calls as usize - 1])
    }
    async fn wait_booked(
        &self,
        _vendor: Vendor,
        _at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), VendorError> {
        self.booked_used.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn observe(&self, _vendor: Vendor, _rl: &RateLimitInfo, error: Option<&VendorError>) {
        self.observed.fetch_add(1, Ordering::SeqCst);
        if error.is_some() {
            self.errors.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn every_call_of_a_sync_passes_the_gate() {
    let server = MockServer::start().await;
    mount_lookup(&server, EMAIL_Q, json!([]), 1).await;
    mount_lookup(&server, PHONE_Q, json!([]), 1).await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profiles"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "903"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/hood/profiles/903"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let gate = Arc::new(CountingGate::default());
    let client = hood(&server).with_gate(gate.clone());
    let after = PatchProfile {
        comment: Some("x".into()),
        ..PatchProfile::default()
    };
    let err = client
        .sync(&resolve(lookup_both(), PatchProfile::default(), after))
        .await
        .expect_err("500");
    assert_eq!(err.calls, 4);
    // Two lookups one by one, then the create and the PATCH after it in one reservation.
    assert_eq!(gate.acquired.load(Ordering::SeqCst), 3);
    assert_eq!(gate.booked_together.load(Ordering::SeqCst), 1);
    assert_eq!(gate.booked_used.load(Ordering::SeqCst), 1);
    assert_eq!(gate.observed.load(Ordering::SeqCst), 4);
    assert_eq!(gate.errors.load(Ordering::SeqCst), 1);
}

/// A gate that refuses: the sync makes no call and reports the refusal.
struct ClosedGate;

#[async_trait]
impl CallGate for ClosedGate {
    async fn acquire(&self, vendor: Vendor) -> Result<(), VendorError> {
        Err(VendorError::RateLimited {
            vendor,
            op: "limiter",
            retry_after: std::time::Duration::from_millis(430),
            concurrency_limit: false,
            trace_id: None,
            rate_limit: RateLimitInfo::default(),
        })
    }
    async fn observe(&self, _vendor: Vendor, _rl: &RateLimitInfo, _error: Option<&VendorError>) {}
}

#[tokio::test]
async fn a_refusing_gate_stops_the_sync_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&server)
        .await;
    let client = hood(&server).with_gate(Arc::new(ClosedGate));
    let err = client
        .sync(&resolve(
            lookup_both(),
            PatchProfile::default(),
            PatchProfile::default(),
        ))
        .await
        .expect_err("refused by the gate");
    assert_eq!(err.calls, 0);
    assert_eq!(
        err.error.retry_after(),
        Some(std::time::Duration::from_millis(430))
    );
}

/// The values of one `field=in:v1,v2,…` filter of the request, as a sorted list.
fn in_values(request: &wiremock::Request, field: &str) -> Option<Vec<String>> {
    let (_, value) = request.url.query_pairs().find(|(k, _)| k == field)?;
    let mut values: Vec<String> = value
        .strip_prefix("in:")?
        .split(',')
        .map(String::from)
        .collect();
    values.sort();
    Some(values)
}

#[tokio::test]
async fn concurrent_new_contacts_share_one_lookup_per_field() {
    // Three deliveries of one batch, three new people: one e-mail lookup and one phone
    // lookup for all three (Hood's `in` operator), then three creates.
    let server = MockServer::start().await;
    let people = [
        ("ann.lee+news@example.com", "+14155552671", "Ann Lee"),
        ("bo.chen@example.co.uk", "+442071838750", "Bo Chen"),
        ("zoë@exämple.de", "+4915123456789", "Zoë Müller"),
    ];
    let emails = {
        let mut v: Vec<String> = people.iter().map(|p| p.0.to_string()).collect();
        v.sort();
        v
    };
    let phones = {
        let mut v: Vec<String> = people.iter().map(|p| p.1.to_string()).collect();
        v.sort();
        v
    };
    let raw_email_values: Vec<String> = people
        .iter()
        .map(|p| url::form_urlencoded::byte_serialize(p.0.as_bytes()).collect())
        .collect();
    let e = emails.clone();
    let raw = raw_email_values.clone();
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(NoBody)
    .and(move |r: &wiremock::Request| {
        // Each value form-encoded, the commas between them literal.
        let q = r.url.query().unwrap_or_default();
        in_values(r, "email").as_ref() == Some(&e)
            && raw.iter().all(|v| q.contains(v.as_str()))
            && q.matches(',').count() == 2
    })
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
    .expect(1)
    .mount(&server)
    .await;
    let p = phones.clone();
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(move |r: &wiremock::Request| {
        in_values(r, "mobile_phone_number").as_ref() == Some(&p)
            && r.url
                .query()
                .unwrap_or_default()
                .contains("%2B4915123456789")
    })
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
    .expect(1)
    .mount(&server)
    .await;
    let created = Arc::new(AtomicU32::new(0));
    let counter = created.clone();
    hood_auth(json_body(
        Mock::given(method("POST")).and(path("/v1/hood/profiles")),
    ))
    .respond_with(move |r: &wiremock::Request| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1000;
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        ResponseTemplate::new(201)
            .set_body_json(json!({"id": n.to_string(), "email": body["email"]}))
    })
    .expect(3)
    .mount(&server)
    .await;

    let client = Arc::new(hood(&server));
    let plans: Vec<HoodPlan> = people
        .iter()
        .map(|(email, phone, name)| HoodPlan {
            properties: vec![],
            profile: HoodProfileOp::Resolve {
                lookup: HoodLookup {
                    email: Some((*email).into()),
                    mobile_phone_number: Some((*phone).into()),
                },
                patch: PatchProfile::default(),
                create: CreateProfile {
                    email: Some((*email).into()),
                    mobile_phone_number: Some((*phone).into()),
                    full_name: Some((*name).into()),
                },
                after_create: PatchProfile::default(),
            },
        })
        .collect();
    let outcomes = futures::future::join_all(plans.iter().map(|p| client.sync(p))).await;
    let calls: u32 = outcomes.iter().map(|o| o.as_ref().unwrap().calls).sum();
    // 2 shared lookups + 3 creates, counted once each (by the delivery that made them).
    assert_eq!(calls, 5);
    let mut ids: Vec<String> = outcomes
        .into_iter()
        .map(|o| o.unwrap().vendor_id.unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1000", "1001", "1002"]);
}

#[tokio::test]
async fn a_shared_lookup_finds_each_contact_by_its_own_value_only() {
    // One shared answer lists two profiles; each delivery patches its own, and a profile
    // without the e-mail field is not taken for anyone (it could be any of them).
    let server = MockServer::start().await;
    hood_auth(common(
        Mock::given(method("GET")).and(path("/v1/hood/profiles")),
    ))
    .and(|r: &wiremock::Request| in_values(r, "email").is_some())
    .respond_with(ResponseTemplate::new(200).set_body_json(json!([
        {"id": "7", "email": "bo.chen@example.co.uk"},
        {"id": "8"},
        {"id": "9", "email": "ann.lee@example.com"}
    ])))
    .expect(1)
    .mount(&server)
    .await;
    mount_patch(&server, "9", json!({"full_name": "Ann Lee"}), 1).await;
    mount_patch(&server, "7", json!({"full_name": "Bo Chen"}), 1).await;
    let client = Arc::new(hood(&server));
    let plan = |email: &str, name: &str| HoodPlan {
        properties: vec![],
        profile: HoodProfileOp::Resolve {
            lookup: HoodLookup {
                email: Some(email.into()),
                mobile_phone_number: None,
            },
            patch: PatchProfile {
                full_name: Some(name.into()),
                ..PatchProfile::default()
            },
            create: CreateProfile {
                email: Some(email.into()),
                mobile_phone_number: None,
                full_name: Some(name.into()),
            },
            after_create: PatchProfile::default(),
        },
    };
    let (a, b) = (
        plan("ann.lee@example.com", "Ann Lee"),
        plan("bo.chen@example.co.uk", "Bo Chen"),
    );
    let (ra, rb) = tokio::join!(client.sync(&a), client.sync(&b));
    assert_eq!(ra.unwrap().vendor_id.as_deref(), Some("9"));
    assert_eq!(rb.unwrap().vendor_id.as_deref(), Some("7"));
}
