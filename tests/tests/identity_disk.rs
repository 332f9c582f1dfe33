//! The identity conformance suite against the local relay's on-disk (SQLite) adapter, plus
//! what only its files can show: no personal data in the data directory.

use relay_tests::identity_conformance::{EMAIL, Fixture, HUBSPOT, PHONE};

relay_tests::identity_conformance_tests!(Fixture::disk());

/// After resolving Ann by e-mail, phone and HubSpot id, the data directory's files (the
/// database and its write-ahead log) hold the identifiers' hashes and none of them.
#[tokio::test]
async fn the_data_directory_holds_hashes_and_no_identifiers() {
    let fx = Fixture::disk().await;
    let identifiers = [EMAIL, PHONE, HUBSPOT].map(str::to_owned);
    let resolved = relay_shared::store::identity::resolve(&*fx.store, &fx.key, &identifiers)
        .await
        .unwrap();
    let dir = fx.keep.as_ref().unwrap().path();
    let mut at_rest = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        at_rest.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let at_rest = String::from_utf8_lossy(&at_rest);
    assert!(
        at_rest.contains(fx.h(EMAIL).as_hex()),
        "the hashes are where we look"
    );
    assert!(at_rest.contains(resolved.person.as_str()));
    for personal in [
        "neil",
        "example.co",
        "4915123456789",
        "hubspot:",
        "email:",
        "phone:",
    ] {
        assert!(!at_rest.contains(personal), "{personal} found at rest");
    }
}
