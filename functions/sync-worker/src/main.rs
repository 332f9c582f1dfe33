//! Lambda entry point of the sync worker: builds the worker once per cold start and hands it
//! each SQS batch, answering partial batch failures.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use relay_shared::runtime::worker_from_env;
use relay_shared::{lambda, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(telemetry::LogFormat::detect());
    let worker = worker_from_env().await?;
    let worker = &*worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        lambda::handle_sqs(worker, event).await
    }))
    .await
}
