//! Lambda shells: the thin layer between the Lambda runtime and the use cases. The webhook
//! functions run the shared axum router through `lambda_http`; event-sync hands EventBridge
//! events to the same ingest service.

use std::convert::Infallible;

use chrono::{DateTime, Utc};
use lambda_http::{Request, RequestExt};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;

use crate::ingress::{Accepted, Deadline, Ingest};

/// The invocation's deadline from the Lambda context (epoch milliseconds); a context
/// without one (0, as `Context::default()` has) has none, not one in 1970.
fn deadline_of(context: &lambda_runtime::Context) -> Option<DateTime<Utc>> {
    i64::try_from(context.deadline)
        .ok()
        .filter(|ms| *ms > 0)
        .and_then(DateTime::from_timestamp_millis)
}

/// The webhook router as a Lambda HTTP service: each request carries its invocation's
/// deadline, which bounds how long idempotency claims are held.
pub fn webhook_service(
    router: axum::Router,
) -> impl tower::Service<Request, Response = axum::response::Response, Error = Infallible, Future: Send>
+ Clone {
    ServiceBuilder::new()
        .layer(MapRequestLayer::new(|mut request: Request| {
            if let Some(deadline) = request.lambda_context_ref().and_then(deadline_of) {
                request.extensions_mut().insert(Deadline(deadline));
            }
            request
        }))
        .service(router)
}

/// Handles one EventBridge event (typed as `aws_lambda_events` defines it). Mapping
/// expressions are written against the event as EventBridge shows it (`detail-type`,
/// `detail.email`), so it is handed on as that JSON. Every failure is returned, never
/// swallowed: Lambda's asynchronous retries and the function's on-failure destination
/// keep the event.
pub async fn handle_event(
    ingest: &Ingest,
    event: LambdaEvent<aws_lambda_events::eventbridge::EventBridgeEvent<Value>>,
) -> Result<Accepted, lambda_runtime::Error> {
    let deadline = deadline_of(&event.context);
    let detail_type = event.payload.detail_type.clone();
    let json = serde_json::to_value(&event.payload)?;
    match ingest.accept_event(&json, deadline).await {
        Ok(accepted) => Ok(accepted),
        Err(e) => {
            tracing::error!(detail_type, code = e.code(), error = %e, "event not accepted");
            Err(Box::new(e))
        }
    }
}

/// Handles one SQS batch for the sync worker and reports the messages left in the queue as
/// `batchItemFailures` (the event source mapping has `ReportBatchItemFailures`), so SQS
/// deletes exactly the others.
pub async fn handle_sqs(
    worker: &crate::worker::Worker,
    event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>,
) -> Result<aws_lambda_events::sqs::SqsBatchResponse, lambda_runtime::Error> {
    use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};

    use crate::queue::{ReceiptHandle, ReceivedMessage};

    let deadline =
        deadline_of(&event.context).unwrap_or_else(|| Utc::now() + chrono::TimeDelta::seconds(60));
    let mut left = Vec::new();
    let mut messages = Vec::new();
    for record in event.payload.records {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        match (record.message_id, record.receipt_handle, record.body) {
            (Some(message_id), Some(receipt), Some(body)) => messages.push(ReceivedMessage {
                message_id,
                receipt: ReceiptHandle(receipt),
                body,
                receive_count,
                attributes: Default::default(),
            }),
            // A record without receipt or body cannot be processed: leave it to SQS.
            (Some(message_id), _, _) => left.push(message_id),
            (None, _, _) => tracing::error!("SQS record without a message id"),
        }
    }
    left.extend(worker.handle_batch(&messages, deadline, false).await);
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = left
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_without_a_deadline_has_none() {
        assert_eq!(deadline_of(&lambda_runtime::Context::default()), None);
        let mut context = lambda_runtime::Context::default();
        context.deadline = 1_764_000_000_000;
        assert_eq!(
            deadline_of(&context).map(|d| d.timestamp_millis()),
            Some(1_764_000_000_000)
        );
    }
}
