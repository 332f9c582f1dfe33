//! Lambda entry point. Thin by design: build dependencies once, hand them to a handler in
//! `relay_shared`. Until its handler lands this binary only starts up and refuses events.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use relay_shared::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(telemetry::LogFormat::detect());
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            let _ = event;
            Err::<serde_json::Value, Error>("this function is not wired to a handler yet".into())
        },
    ))
    .await
}
