//! Lambda entry point for CRM webhooks (HubSpot, Pipedrive, Standard Webhooks senders): `POST /hooks/crm/{source}` only. Builds the ingest service once per cold start and
//! serves its route of the shared webhook router through `lambda_http`.

use relay_shared::ingress::{RouterConfig, router_for};
use relay_shared::runtime::{CRM_CHANGE_ROUTES, IngestFunction, ingest_from_env};
use relay_shared::{lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init(telemetry::LogFormat::detect());
    let ingest = ingest_from_env(IngestFunction::Webhooks(CRM_CHANGE_ROUTES)).await?;
    let app = router_for(
        ingest,
        RouterConfig {
            default_scheme: "https",
        },
        CRM_CHANGE_ROUTES,
    );
    lambda_http::run(lambda::webhook_service(app)).await
}
