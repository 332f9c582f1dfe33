//! The store conformance suite against the local relay's on-disk (SQLite) adapter.

use relay_tests::store_conformance::Fixture;

relay_tests::store_conformance_tests!(Fixture::disk());
