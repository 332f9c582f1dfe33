//! The delivery-log conformance suite against DynamoDB Local (the exact calls are the
//! log's cost).

use relay_tests::journal_conformance::Fixture;

relay_tests::journal_conformance_tests!(Fixture::dynamodb());
