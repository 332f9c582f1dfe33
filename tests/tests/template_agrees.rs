//! `template.yaml` and the code cannot drift: the table the template declares is the table
//! `create_table` makes (keys, attributes, TTL, billing, indexes), and each ingest
//! function's HTTP route in the template is the route its binary serves.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use http::{Request, StatusCode};
use relay_shared::ingress::{RouterConfig, router_for};
use relay_shared::mapping::Route;
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::runtime::{CRM_CHANGE_ROUTES, FORM_SIGNUP_ROUTES};
use relay_shared::store::SystemClock;
use relay_shared::store::dynamo::{TABLE, create_table};
use relay_shared::store::memory::MemoryStore;
use relay_tests::dynamodb_local::fresh_table;
use serde_norway::Value;
use tower::ServiceExt;

fn template() -> Value {
    let text = include_str!("../../template.yaml");
    serde_norway::from_str(text).unwrap()
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["Resources"][name]
}

#[test]
fn the_template_declares_the_table_create_table_makes() {
    let t = template();
    let table = resource(&t, "Table");
    assert_eq!(table["Type"].as_str(), Some("AWS::DynamoDB::Table"));
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"].as_str(), Some(TABLE.billing_mode));
    let attributes: Vec<(&str, &str)> = p["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap(),
                a["AttributeType"].as_str().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![(TABLE.partition_key, "S")];
    for index in TABLE.global_secondary_indexes {
        expected.push((index.partition_key, "S"));
        expected.push((index.sort_key, "N"));
    }
    assert_eq!(attributes, expected, "the key and the indexes' keys only");
    let keys = p["KeySchema"].as_sequence().unwrap();
    assert_eq!(keys.len(), 1, "no sort key");
    assert_eq!(keys[0]["AttributeName"].as_str(), Some(TABLE.partition_key));
    assert_eq!(keys[0]["KeyType"].as_str(), Some("HASH"));
    assert_eq!(
        p["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TABLE.ttl_attribute)
    );
    assert_eq!(
        p["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    let gsis: Vec<_> = p["GlobalSecondaryIndexes"]
        .as_sequence()
        .map(|s| s.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let keys: Vec<(&str, &str)> = g["KeySchema"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|k| {
                    (
                        k["AttributeName"].as_str().unwrap(),
                        k["KeyType"].as_str().unwrap(),
                    )
                })
                .collect();
            (
                g["IndexName"].as_str().unwrap(),
                keys,
                g["Projection"]["ProjectionType"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<_> = TABLE
        .global_secondary_indexes
        .iter()
        .map(|i| {
            (
                i.name,
                vec![(i.partition_key, "HASH"), (i.sort_key, "RANGE")],
                i.projection,
            )
        })
        .collect();
    assert_eq!(gsis, expected);
    assert!(p.get("LocalSecondaryIndexes").is_none());
}

#[tokio::test]
async fn create_table_makes_the_declared_table_on_dynamodb_local() {
    let local = fresh_table().await.unwrap();
    // Creating it again is harmless, and this is the code path under test.
    create_table(&local.client, &local.name).await.unwrap();
    let described = local
        .client
        .describe_table()
        .table_name(&local.name)
        .send()
        .await
        .unwrap();
    let d = described.table().unwrap();
    let keys: Vec<_> = d
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [(TABLE.partition_key.to_string(), "HASH".to_string())]
    );
    let attributes: Vec<_> = d
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_string(),
                a.attribute_type().as_str().to_string(),
            )
        })
        .collect();
    let mut expected = vec![(TABLE.partition_key.to_string(), "S".to_string())];
    for index in TABLE.global_secondary_indexes {
        expected.push((index.partition_key.to_string(), "S".to_string()));
        expected.push((index.sort_key.to_string(), "N".to_string()));
    }
    assert_eq!(attributes, expected);
    assert_eq!(
        d.billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str()),
        Some(TABLE.billing_mode)
    );
    let gsis: Vec<_> = d
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let keys: Vec<(String, String)> = g
                .key_schema()
                .iter()
                .map(|k| {
                    (
                        k.attribute_name().to_string(),
                        k.key_type().as_str().to_string(),
                    )
                })
                .collect();
            (
                g.index_name().unwrap_or_default().to_string(),
                keys,
                g.projection()
                    .and_then(|p| p.projection_type())
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<_> = TABLE
        .global_secondary_indexes
        .iter()
        .map(|i| {
            (
                i.name.to_string(),
                vec![
                    (i.partition_key.to_string(), "HASH".to_string()),
                    (i.sort_key.to_string(), "RANGE".to_string()),
                ],
                i.projection.to_string(),
            )
        })
        .collect();
    assert_eq!(gsis, expected);
    let ttl = local
        .client
        .describe_time_to_live()
        .table_name(&local.name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|t| t.attribute_name()),
        Some(TABLE.ttl_attribute)
    );
}

/// The HttpApi event paths of one function in the template.
fn template_paths(t: &Value, function: &str) -> Vec<String> {
    let events = resource(t, function)["Properties"]["Events"]
        .as_mapping()
        .unwrap();
    events
        .values()
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| {
            assert_eq!(e["Properties"]["Method"].as_str(), Some("POST"));
            e["Properties"]["Path"].as_str().unwrap().to_string()
        })
        .collect()
}

fn paths(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .filter_map(|r| r.path())
        .map(str::to_string)
        .collect()
}

#[test]
fn each_ingest_function_serves_the_routes_the_template_gives_it() {
    let t = template();
    assert_eq!(
        template_paths(&t, "FormSignupFunction"),
        paths(FORM_SIGNUP_ROUTES)
    );
    assert_eq!(
        template_paths(&t, "CrmChangeFunction"),
        paths(CRM_CHANGE_ROUTES)
    );
}

async fn status(app: &axum::Router, path: &str) -> StatusCode {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_function_answers_not_found_for_the_other_functions_route() {
    let clock = Arc::new(SystemClock);
    let (ingest, _) = relay_shared::ingress::Ingest::new(
        relay_tests::webhooks::mappings(),
        &relay_tests::webhooks::source_secrets(),
        Arc::new(MemoryStore::new(clock.clone())),
        relay_tests::webhooks::identity(Arc::new(MemoryStore::new(clock.clone()))),
        Arc::new(MemoryQueue::new(std::time::Duration::from_secs(30))),
        clock,
    )
    .unwrap();
    let ingest = Arc::new(ingest);
    let config = || RouterConfig {
        default_scheme: "https",
    };
    let forms = router_for(ingest.clone(), config(), FORM_SIGNUP_ROUTES);
    let crm = router_for(ingest, config(), CRM_CHANGE_ROUTES);
    // Unsigned: its own route refuses the signature (401), the other route does not exist.
    assert_eq!(
        status(&forms, "/hooks/forms/typeform").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&forms, "/hooks/crm/hubspot").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(&crm, "/hooks/crm/hubspot").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&crm, "/hooks/forms/typeform").await,
        StatusCode::NOT_FOUND
    );
}

/// The `dynamodb:LeadingKeys` and actions of one table statement of the template.
fn table_access(statement: &Value) -> (Vec<String>, Vec<String>) {
    let actions = match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(s) => s.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        other => panic!("Action: {other:?}"),
    };
    let leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{:?} has no LeadingKeys condition", statement["Sid"]))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    (actions, leading)
}

fn statement<'a>(statements: &'a Value, sid: &str) -> &'a Value {
    statements
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"].as_str() == Some(sid))
        .unwrap_or_else(|| panic!("no statement {sid}"))
}

fn allowed(prefixes: &[String], key: &str) -> bool {
    prefixes
        .iter()
        .any(|p| key.starts_with(p.trim_end_matches('*')))
}

#[test]
fn each_function_may_write_only_its_own_items() {
    use relay_shared::store::{ContactKeyHash, IdempotencyKey, LimiterKey, LinkKey, RawId};
    use relay_shared::vendors::Vendor;

    let t = template();
    let ingest = statement(
        &resource(&t, "StoreAndEnqueuePolicy")["Properties"]["PolicyDocument"]["Statement"],
        "IdempotencyClaims",
    );
    let worker_policies = resource(&t, "SyncWorkerFunction")["Properties"]["Policies"]
        .as_sequence()
        .unwrap();
    let worker = worker_policies
        .iter()
        .find_map(|p| {
            p["Statement"].as_sequence().and_then(|s| {
                s.iter()
                    .find(|s| s["Sid"].as_str() == Some("DeliveryState"))
                    .cloned()
            })
        })
        .unwrap();

    // The store calls the conformance suites allow (PutItem, UpdateItem): no reads or
    // deletes from the functions; the worker only updates.
    let (ingest_actions, ingest_keys) = table_access(ingest);
    assert_eq!(ingest_actions, ["dynamodb:PutItem", "dynamodb:UpdateItem"]);
    let (worker_actions, worker_keys) = table_access(&worker);
    assert_eq!(worker_actions, ["dynamodb:UpdateItem"]);

    // The items each function writes, as the code names them.
    let claim = IdempotencyKey::inbound("typeform", "01JD8Z9K3M4N5P6Q7R8S9T0V1W").unwrap();
    let raw = RawId::of("typeform", b"{}").pk();
    let link = LinkKey::new(Vendor::Hood, &ContactKeyHash::of("email:ann@example.com"));
    let limiter = LimiterKey::new(Vendor::Hood, "default").unwrap();
    for key in [claim.as_str(), raw.as_str()] {
        assert!(allowed(&ingest_keys, key), "ingest must write {key}");
    }
    for key in [link.as_str(), limiter.as_str()] {
        assert!(!allowed(&ingest_keys, key), "ingest must not write {key}");
        assert!(allowed(&worker_keys, key), "the worker must write {key}");
    }
    // A claim's transaction checks that a known person's identifiers still point to
    // them: a condition check on identifier items only.
    let checks = statement(
        &resource(&t, "StoreAndEnqueuePolicy")["Properties"]["PolicyDocument"]["Statement"],
        "IdentityChecks",
    );
    let (check_actions, check_keys) = table_access(checks);
    assert_eq!(check_actions, ["dynamodb:ConditionCheckItem"]);
    let identifier = relay_tests::webhooks::identity_key()
        .hash("email:ann@example.com")
        .pk();
    assert!(allowed(&check_keys, &identifier));
    assert!(!allowed(&check_keys, claim.as_str()));
    // The worker records each delivery's outcome on the event's item (with the link's
    // commit, in one transaction: an UpdateItem of each).
    assert!(allowed(&worker_keys, claim.as_str()));
    assert!(
        !allowed(&worker_keys, raw.as_str()),
        "the worker never writes raw requests"
    );
}
