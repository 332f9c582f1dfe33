//! The delivery-log conformance suite against the in-memory adapter.

use relay_tests::journal_conformance::Fixture;

relay_tests::journal_conformance_tests!(Fixture::memory());
