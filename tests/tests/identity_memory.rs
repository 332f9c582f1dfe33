//! The identity conformance suite against the in-memory adapter.

use relay_tests::identity_conformance::Fixture;

relay_tests::identity_conformance_tests!(Fixture::memory());
