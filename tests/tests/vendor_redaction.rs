//! Secrets and personal data stay out of logs and `Debug`: full syncs of all four vendors
//! (and a refused one) run under a TRACE-level subscriber that also receives `log` records
//! from dependencies; the captured output must not contain any credential, e-mail address,
//! phone number or name used in the requests.
//!
//! One test in this file on purpose: it installs the process-wide subscriber.

use std::collections::BTreeMap;

use relay_shared::plan::{
    ChannelPlan, ChatwootPlan, HoodLookup, HoodPlan, HoodProfileOp, OmnivibePlan,
};
use relay_shared::vendors::VendorSync;
use relay_shared::vendors::channelio::wire::UserBody;
use relay_shared::vendors::chatwoot::wire::ContactBody;
use relay_shared::vendors::hood::wire::{CreateProfile, CreateProfileProperty, Flag, PatchProfile};
use relay_shared::vendors::omnivibe::wire::{AgentProfile, UpdateProfile};
use relay_tests::vendors::{
    CHANNEL_KEY, CHANNEL_SECRET, CHATWOOT_TOKEN, Capture, HOOD_TOKEN, OMNIVIBE_TOKEN, channel,
    channel_config, chatwoot, chatwoot_config, hood, hood_config, omnivibe, omnivibe_config,
};
use serde_json::json;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EMAIL: &str = "secret.person@example.org";
const PHONE: &str = "+4915199887766";
const NAME: &str = "Zelda Quixote";

#[tokio::test]
async fn no_secret_or_personal_data_in_logs_or_debug() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        // Everything at TRACE, ours and our dependencies' (reqwest, hyper, rustls); only the
        // mock server's own logs are off: it is the vendor here, not part of the relay.
        .with_env_filter(EnvFilter::new("trace,wiremock=off"))
        .with_writer(capture.clone())
        .finish()
        .try_init() // also routes `log` records into tracing
        .expect("first subscriber in this process");

    let server = MockServer::start().await;
    let answer = |v: serde_json::Value| ResponseTemplate::new(200).set_body_json(v);

    // Hood: property list + create, lookups miss, create without body, lookup, patch.
    Mock::given(method("GET"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(answer(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profile-properties"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "1", "label": "region"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/hood/profiles"))
        .respond_with(answer(json!([])))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/hood/profiles"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/hood/profiles"))
        .respond_with(answer(
            json!([{"id": "500", "email": EMAIL, "full_name": NAME}]),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/hood/profiles/500"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // Channel.io upsert (member id is the e-mail: it must not leak through the path either).
    Mock::given(method("PUT"))
        .and(path(format!("/open/v5/users/@{EMAIL}")))
        .respond_with(answer(
            json!({"user": {"id": "u-1", "memberId": EMAIL, "profile": {"name": NAME}}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Omnivibe PUT.
    Mock::given(method("PUT"))
        .and(path("/api/v1/profile"))
        .respond_with(answer(
            json!({"id": 3, "email": EMAIL, "name": NAME, "access_token": "x"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    // Chatwoot: search misses, create refused with the e-mail echoed, search hits, update.
    Mock::given(method("GET"))
        .and(path("/api/v1/accounts/7/contacts/search"))
        .respond_with(answer(json!({"payload": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/accounts/7/contacts"))
        .respond_with(ResponseTemplate::new(422).set_body_json(
            json!({"message": format!("Email {EMAIL} has already been taken"), "attributes": ["email"]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/accounts/7/contacts/search"))
        .respond_with(answer(
            json!({"payload": [{"id": 9, "email": EMAIL, "name": NAME}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api/v1/accounts/7/contacts/9"))
        .respond_with(answer(json!({"payload": {"id": 9, "email": EMAIL}})))
        .expect(1)
        .mount(&server)
        .await;
    // A refused Hood call echoing personal data, to cover the error path.
    Mock::given(method("PATCH"))
        .and(path("/v1/hood/profiles/666"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"code": 400, "title": "Bad request.", "message": format!("{EMAIL} / {PHONE} invalid"), "trace_id": "t"}),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let hood_client = hood(&server);
    let hood_plan = HoodPlan {
        properties: vec![CreateProfileProperty {
            label: "region".into(),
            data_type: "text".into(),
            example: "north".into(),
            description: "Region".into(),
            export_alias: "region".into(),
            pi_data: Flag::No,
            importable: Flag::Yes,
            exportable: Flag::Yes,
        }],
        profile: HoodProfileOp::Resolve {
            lookup: HoodLookup {
                email: Some(EMAIL.into()),
                mobile_phone_number: Some(PHONE.into()),
            },
            patch: PatchProfile::default(),
            create: CreateProfile {
                mobile_phone_number: Some(PHONE.into()),
                email: Some(EMAIL.into()),
                full_name: Some(NAME.into()),
            },
            after_create: PatchProfile {
                comment: Some(format!("{NAME} signed up")),
                custom_properties: Some(BTreeMap::from([(
                    "region".to_owned(),
                    "north".to_owned(),
                )])),
                ..PatchProfile::default()
            },
        },
    };
    let out = hood_client.sync(&hood_plan).await.expect("hood synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("500"), 7));

    let profile =
        serde_json::from_value(json!({"name": NAME, "email": EMAIL, "mobileNumber": PHONE}))
            .expect("map");
    let channel_client = channel(&server);
    let out = channel_client
        .sync(&ChannelPlan::Upsert {
            member_id: EMAIL.into(),
            body: UserBody {
                profile: Some(profile),
                ..UserBody::default()
            },
        })
        .await
        .expect("channel.io synced");
    assert_eq!(out.vendor_id.as_deref(), Some("u-1"));

    let omnivibe_client = omnivibe(&server);
    let out = omnivibe_client
        .sync(&OmnivibePlan::Update(UpdateProfile {
            profile: AgentProfile {
                name: Some(NAME.into()),
                email: Some(EMAIL.into()),
                phone_number: Some(PHONE.into()),
                ..AgentProfile::default()
            },
        }))
        .await
        .expect("omnivibe synced");
    assert_eq!(out.vendor_id.as_deref(), Some("3"));

    let chatwoot_client = chatwoot(&server);
    let out = chatwoot_client
        .sync(&ChatwootPlan::Resolve {
            queries: vec![EMAIL.into()],
            body: ContactBody {
                name: Some(NAME.into()),
                email: Some(EMAIL.into()),
                phone_number: Some(PHONE.into()),
                ..ContactBody::default()
            },
        })
        .await
        .expect("chatwoot synced");
    assert_eq!((out.vendor_id.as_deref(), out.calls), (Some("9"), 4));

    let refused = hood_client
        .sync(&HoodPlan {
            properties: vec![],
            profile: HoodProfileOp::Patch {
                profile_id: "666".into(),
                body: PatchProfile {
                    email: Some(EMAIL.into()),
                    ..PatchProfile::default()
                },
            },
        })
        .await
        .expect_err("refused");
    tracing::error!(error = %refused, debug = ?refused, "as the worker would log it");

    let logs = capture.contents();
    // The capture really saw the syncs, at every level down to TRACE.
    for expected in [
        "hood sync done",
        "channelio sync done",
        "omnivibe sync done",
        "chatwoot sync done",
        "hood sync failed",
        "hood.create_profile_property",
        "chatwoot.create_contact",
        "\"level\":\"DEBUG\"",
        "\"level\":\"TRACE\"",
    ] {
        assert!(
            logs.contains(expected),
            "missing `{expected}` in captured logs"
        );
    }

    let debug_output = [
        format!("{hood_client:?}"),
        format!("{channel_client:?}"),
        format!("{omnivibe_client:?}"),
        format!("{chatwoot_client:?}"),
        format!("{:?}", hood_config(&server)),
        format!("{:?}", channel_config(&server)),
        format!("{:?}", omnivibe_config(&server)),
        format!("{:?}", chatwoot_config(&server)),
        format!("{hood_plan:?}"),
        format!("{refused:?}"),
    ];
    assert!(debug_output[0].contains("HoodClient") && debug_output[4].contains("<redacted>"));

    let encoded_email = EMAIL.replace('@', "%40");
    let forbidden = [
        HOOD_TOKEN,
        CHANNEL_KEY,
        CHANNEL_SECRET,
        OMNIVIBE_TOKEN,
        CHATWOOT_TOKEN,
        EMAIL,
        encoded_email.as_str(),
        "secret.person",
        PHONE,
        "15199887766",
        NAME,
        "Zelda",
    ];
    for needle in forbidden {
        assert!(!logs.contains(needle), "`{needle}` leaked into the logs");
        for d in &debug_output {
            assert!(
                !d.contains(needle),
                "`{needle}` leaked into Debug output: {d}"
            );
        }
    }
}
