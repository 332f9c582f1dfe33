//! The delivery-log conformance suite against the local relay's on-disk adapter (SQLite).

use relay_tests::journal_conformance::Fixture;

relay_tests::journal_conformance_tests!(Fixture::disk());
