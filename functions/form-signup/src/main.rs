//! Lambda entry point for signed webhooks: builds the ingest service once per cold start and
//! serves the shared webhook router through `lambda_http`.

use relay_shared::ingress::{RouterConfig, router};
use relay_shared::runtime::{IngestFunction, ingest_from_env};
use relay_shared::{lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(telemetry::LogFormat::detect());
    let ingest = ingest_from_env(IngestFunction::Webhooks).await?;
    let app = router(
        ingest,
        RouterConfig {
            default_scheme: "https",
        },
    );
    lambda_http::run(lambda::webhook_service(app)).await
}
