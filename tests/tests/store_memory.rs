//! The store conformance suite against the in-memory adapter.

use relay_tests::store_conformance::Fixture;

relay_tests::store_conformance_tests!(Fixture::memory());
