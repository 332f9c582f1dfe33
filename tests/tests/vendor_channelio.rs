//! Channel.io client and sync against a wiremock server (`vendor-docs/channelio-update-user.txt`
//! and the upsert/read by member id of `vendor-notes.md`).

use relay_shared::plan::{ChannelPlan, SkipReason};
use relay_shared::vendors::channelio::wire::UserBody;
use relay_shared::vendors::{
    RateLimitInfo, Reset, RetryAfter, SyncOutcome, Vendor, VendorError, VendorSync,
};
use relay_tests::vendors::{NoBody, channel, channel_auth, common, json_body};
use serde_json::{Map, Value, json};
use wiremock::matchers::{any, body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn doc_body() -> UserBody {
    let profile: Map<String, Value> = serde_json::from_value(json!({
        "name": "test",
        "mobileNumber": "+821000000000",
        "property1": "value",
        "property2": 123
    }))
    .expect("object");
    UserBody {
        profile: Some(profile),
        profile_once: Some(Map::new()),
        tags: Some(vec!["tag1".into(), "tag2".into()]),
        unsubscribe_email: Some(false),
        unsubscribe_texting: Some(false),
    }
}

fn doc_body_json() -> Value {
    json!({
        "profile": {"name": "test", "mobileNumber": "+821000000000", "property1": "value", "property2": 123},
        "profileOnce": {},
        "tags": ["tag1", "tag2"],
        "unsubscribeEmail": false,
        "unsubscribeTexting": false
    })
}

/// The documented answer, trimmed, with the fields the relay ignores kept in.
fn user_answer(id: &str, member_id: &str) -> Value {
    json!({
        "user": {
            "id": id, "channelId": "c1", "memberId": member_id, "type": "member", "name": "test",
            "profile": {"name": "test", "mobileNumber": "+821000000000", "additionalProp1": {}},
            "tags": ["tag1", "tag2"], "alert": 0, "web": {"sessionsCount": 0}, "createdAt": 1656032153129_u64
        },
        "online": {"channelId": "c1", "personType": "user", "personId": id, "id": "o1"}
    })
}

#[tokio::test]
async fn patch_user_sends_the_documented_body_and_reads_lowercase_rate_limit_headers() {
    let server = MockServer::start().await;
    channel_auth(json_body(
        Mock::given(method("PATCH")).and(path("/open/v5/users/5ec3a01fe2b3f4d2cbc5")),
    ))
    .and(body_json(doc_body_json()))
    .respond_with(
        ResponseTemplate::new(200)
            .set_body_json(user_answer("5ec3a01fe2b3f4d2cbc5", "m-1"))
            .insert_header("x-ratelimit-limit", "1000")
            .insert_header("x-ratelimit-remaining", "999")
            .insert_header("x-ratelimit-reset", "1767225600"),
    )
    .expect(1)
    .mount(&server)
    .await;
    let r = channel(&server)
        .patch_user("5ec3a01fe2b3f4d2cbc5", &doc_body())
        .await
        .expect("patched");
    assert_eq!(r.value.user.id, "5ec3a01fe2b3f4d2cbc5");
    assert_eq!(r.value.user.member_id.as_deref(), Some("m-1"));
    assert_eq!(
        r.rate_limit,
        RateLimitInfo {
            limit: Some(1000),
            remaining: Some(999),
            reset: Some(Reset::EpochSeconds(1_767_225_600)),
            retry_after: None
        }
    );
}

#[tokio::test]
async fn upsert_user_percent_encodes_the_member_id() {
    let server = MockServer::start().await;
    channel_auth(json_body(
        Mock::given(method("PUT")).and(path("/open/v5/users/@crm%2F42%20a%3Fb")),
    ))
    .and(body_json(
        json!({"profile": {"email": "jane@example.com"}, "tags": ["lead"]}),
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(user_answer("u-9", "crm/42 a?b")))
    .expect(1)
    .mount(&server)
    .await;
    let body = UserBody {
        profile: Some(
            serde_json::from_value(json!({"email": "jane@example.com"})).expect("object"),
        ),
        tags: Some(vec!["lead".into()]),
        ..UserBody::default()
    };
    let r = channel(&server)
        .upsert_user("crm/42 a?b", &body)
        .await
        .expect("upserted");
    assert_eq!(r.value.user.id, "u-9");
}

#[tokio::test]
async fn get_user_by_member_id_reads_the_user_and_maps_404_to_none() {
    let server = MockServer::start().await;
    channel_auth(common(
        Mock::given(method("GET")).and(path("/open/v5/users/@m-1")),
    ))
    .and(NoBody)
    .respond_with(ResponseTemplate::new(200).set_body_json(user_answer("u-1", "m-1")))
    .expect(1)
    .mount(&server)
    .await;
    channel_auth(common(
        Mock::given(method("GET")).and(path("/open/v5/users/@m-404")),
    ))
    .respond_with(
        ResponseTemplate::new(404)
            .set_body_json(
                json!({"type": "error", "status": 404, "errors": [{"message": "user not found"}]}),
            )
            .insert_header("x-ratelimit-remaining", "12"),
    )
    .expect(1)
    .mount(&server)
    .await;
    let client = channel(&server);
    let found = client.get_user_by_member_id("m-1").await.expect("read");
    assert_eq!(found.value.map(|u| u.user.id), Some("u-1".to_owned()));
    let missing = client
        .get_user_by_member_id("m-404")
        .await
        .expect("404 is not an error");
    assert_eq!(
        (missing.value, missing.status, missing.rate_limit.remaining),
        (None, 404, Some(12))
    );
}

#[tokio::test]
async fn sync_upserts_by_member_id_and_returns_the_user_id() {
    let server = MockServer::start().await;
    channel_auth(json_body(
        Mock::given(method("PUT")).and(path("/open/v5/users/@m-7")),
    ))
    .and(body_json(doc_body_json()))
    .respond_with(
        ResponseTemplate::new(200)
            .set_body_json(user_answer("u-7", "m-7"))
            .insert_header("x-ratelimit-remaining", "3"),
    )
    .expect(1)
    .mount(&server)
    .await;
    let out = channel(&server)
        .sync(&ChannelPlan::Upsert {
            member_id: "m-7".into(),
            body: doc_body(),
        })
        .await
        .expect("synced");
    assert_eq!(
        out,
        SyncOutcome {
            vendor_id: Some("u-7".into()),
            calls: 1,
            rate_limit: Some(RateLimitInfo {
                remaining: Some(3),
                ..RateLimitInfo::default()
            })
        }
    );
}

#[tokio::test]
async fn sync_patches_a_known_user_id() {
    let server = MockServer::start().await;
    channel_auth(json_body(
        Mock::given(method("PATCH")).and(path("/open/v5/users/u-8")),
    ))
    .and(body_json(json!({"unsubscribeEmail": true})))
    .respond_with(ResponseTemplate::new(200).set_body_json(user_answer("u-8", "m-8")))
    .expect(1)
    .mount(&server)
    .await;
    let body = UserBody {
        unsubscribe_email: Some(true),
        ..UserBody::default()
    };
    let out = channel(&server)
        .sync(&ChannelPlan::Patch {
            user_id: "u-8".into(),
            body,
        })
        .await
        .expect("synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("u-8"), 1));
}

#[tokio::test]
async fn sync_sends_nothing_for_an_empty_patch_or_a_skip() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = channel(&server);
    let out = client
        .sync(&ChannelPlan::Patch {
            user_id: "u-8".into(),
            body: UserBody::default(),
        })
        .await
        .expect("skipped");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("u-8"), 0));
    let out = client
        .sync(&ChannelPlan::Skip(SkipReason::NoMappedFields))
        .await
        .expect("skipped");
    assert_eq!(out, SyncOutcome::default());
}

#[tokio::test]
async fn sync_429_reports_retry_after_and_the_epoch_reset() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/open/v5/users/@m-9"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "4")
                .insert_header("x-ratelimit-limit", "1000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "1767225600"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = channel(&server)
        .sync(&ChannelPlan::Upsert {
            member_id: "m-9".into(),
            body: doc_body(),
        })
        .await
        .expect_err("rate limited");
    assert_eq!(err.calls, 1);
    assert_eq!(
        *err.error,
        VendorError::RateLimited {
            vendor: Vendor::Channelio,
            op: "channelio.upsert_user",
            retry_after: std::time::Duration::from_secs(4),
            concurrency_limit: false,
            trace_id: None,
            rate_limit: RateLimitInfo {
                limit: Some(1000),
                remaining: Some(0),
                reset: Some(Reset::EpochSeconds(1_767_225_600)),
                retry_after: Some(RetryAfter::Seconds(4)),
            },
        }
    );
    assert_eq!(err.rate_limit.and_then(|r| r.remaining), Some(0));
}
