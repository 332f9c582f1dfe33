//! Lambda entry point for EventBridge events from the user's own apps: builds the ingest
//! service once per cold start and hands each event to it.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use relay_shared::runtime::{IngestFunction, ingest_from_env};
use relay_shared::{lambda, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::detect());
    let ingest = ingest_from_env(IngestFunction::Events).await?;
    let ingest = &*ingest;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| async move {
            lambda::handle_event(ingest, event).await
        },
    ))
    .await
}
