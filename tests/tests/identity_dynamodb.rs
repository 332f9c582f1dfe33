//! The identity conformance suite against DynamoDB Local (the exact calls are its cost),
//! plus what only the real table can show: the items' shape, with no personal data.

use aws_sdk_dynamodb::types::AttributeValue;
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::identity::resolve;
use relay_shared::store::{IdentityKey, SystemClock};
use relay_tests::dynamodb_local::fresh_table;
use relay_tests::identity_conformance::{EMAIL, Fixture, HUBSPOT, PHONE, STANDARD};
use std::sync::Arc;

relay_tests::identity_conformance_tests!(Fixture::dynamodb());

/// Two persons, merged: `idn#<hash>` items hold only `pk` and `person`, `per#<id>` items
/// `pk`, `ids` (a string set of hashes), `version` and, merged, `merged_into`. No
/// identifier is at rest, only its HMAC.
#[tokio::test]
async fn items_hold_hashes_and_person_ids_only() {
    let table = fresh_table().await.unwrap();
    let store = DynamoStore::new(table.client.clone(), &table.name, Arc::new(SystemClock));
    let key = IdentityKey::from_bytes(&[0x42; 32]).unwrap();
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let ann = resolve(&store, &key, &ids(&[EMAIL, HUBSPOT]))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let dup = resolve(&store, &key, &ids(&[PHONE, STANDARD]))
        .await
        .unwrap();
    let merged = resolve(&store, &key, &ids(&[EMAIL, PHONE])).await.unwrap();
    assert_eq!(merged.merged, vec![dup.person.clone()]);

    let scan = table
        .client
        .scan()
        .table_name(&table.name)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let items = scan.items();
    assert_eq!(items.len(), 4 + 2);
    for item in items {
        let pk = item["pk"].as_s().unwrap().as_str();
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        if let Some(hash) = pk.strip_prefix("idn#") {
            assert_eq!(hash.len(), 64);
            assert_eq!(names, ["person", "pk"]);
            assert_eq!(item["person"], AttributeValue::S(ann.person.to_string()));
        } else if pk == format!("per#{}", ann.person) {
            assert_eq!(names, ["ids", "pk", "version"]);
            assert_eq!(item["version"], AttributeValue::N("2".into()));
            let AttributeValue::Ss(set) = &item["ids"] else {
                panic!("ids is a string set: {item:?}")
            };
            assert_eq!(set.len(), 4);
            assert!(set.contains(&key.hash(PHONE).as_hex().to_owned()));
        } else {
            assert_eq!(pk, format!("per#{}", dup.person));
            assert_eq!(names, ["ids", "merged_into", "pk", "version"]);
            assert_eq!(
                item["merged_into"],
                AttributeValue::S(ann.person.to_string())
            );
        }
    }
    let at_rest = format!("{items:?}");
    for personal in ["neil", "example.co", "4915123456789", "hubspot", "ct_7f3a"] {
        assert!(
            !at_rest.contains(personal),
            "{personal} found at rest: {at_rest}"
        );
    }
}
