//! The Lambda functions' mappings from an SSM parameter (the stack's `MappingsParameter`),
//! on moto's SSM: the same file `relay check-config --mappings` accepts loads, a version
//! selector picks that version, and a broken file stops start-up with the loader's message.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use relay_shared::runtime::mappings_from_parameter;

async fn ssm() -> aws_sdk_ssm::Client {
    let endpoint = tokio::task::spawn_blocking(relay_tests::moto::sqs_endpoint)
        .await
        .unwrap()
        .unwrap();
    aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "relay-tests"))
            .endpoint_url(endpoint)
            .build(),
    )
}

async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) -> i64 {
    ssm.put_parameter()
        .name(name)
        .r#type(ParameterType::String)
        .value(value)
        .overwrite(true)
        .send()
        .await
        .unwrap()
        .version
}

const EXAMPLE: &str = include_str!("../../docs/examples/typeform-mappings.toml");

#[tokio::test]
async fn the_worked_examples_file_loads_from_ssm_pinned_to_a_version() {
    let ssm = ssm().await;
    let name = format!("/relay-tests/{}/mappings", uuid::Uuid::new_v4().simple());
    let first = put(&ssm, &name, EXAMPLE).await;
    // A later version without the HubSpot source.
    let (head, rest) = EXAMPLE.split_once("# HubSpot webhooks v3").unwrap();
    let (_, vendors) = rest.split_once("[vendors.hood.fields]").unwrap();
    let second = put(
        &ssm,
        &name,
        &format!("{head}[vendors.hood.fields]{vendors}"),
    )
    .await;
    assert!(second > first);

    let pinned = mappings_from_parameter(&ssm, &format!("{name}:{first}"))
        .await
        .unwrap();
    let names = |m: &relay_shared::mapping::Mappings| {
        let mut n: Vec<String> = m.sources().map(|s| s.name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&pinned), ["hubspot", "typeform"]);
    let latest = mappings_from_parameter(&ssm, &name).await.unwrap();
    assert_eq!(names(&latest), ["typeform"]);
}

#[tokio::test]
async fn a_broken_file_in_the_parameter_is_refused_with_the_loaders_message() {
    let ssm = ssm().await;
    let name = format!("/relay-tests/{}/mappings", uuid::Uuid::new_v4().simple());
    let broken = EXAMPLE.replace(
        "answers[?field.ref=='work_email'].email",
        "answers[?field.ref=='work_email'.email",
    );
    put(&ssm, &name, &broken).await;
    let err = mappings_from_parameter(&ssm, &name)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "ssm:{name}: source \"typeform\", field \"email\": invalid JMESPath expression"
        )),
        "{err}"
    );
}
