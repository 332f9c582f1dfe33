//! Amazon SQS adapter. One `SendMessageBatch` per chunk (chunks sent concurrently); entry
//! failures from SQS, chunks whose call failed outright, and entries refused before
//! sending are all reported per entry, so the caller releases exactly those claims.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::{
    FailedEntry, MAX_RECEIVE, MAX_VISIBILITY, MAX_WAIT, OutboundMessage, Queue, QueueError,
    ReceiptHandle, ReceivedMessage, batch,
};

/// A [`Queue`] backed by one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Uses `client` for the queue at `url` (from config; not looked up by name, which
    /// would cost a `GetQueueUrl` call per cold start).
    #[must_use]
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// The queue URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send_chunk(&self, chunk: &[&OutboundMessage]) -> Vec<FailedEntry> {
        let mut entries = Vec::with_capacity(chunk.len());
        let mut refused = Vec::new();
        for m in chunk {
            match entry(m) {
                Ok(e) => entries.push(e),
                Err(message) => refused.push(FailedEntry {
                    id: m.id.clone(),
                    code: "InvalidEntry".into(),
                    message,
                    sender_fault: true,
                }),
            }
        }
        if entries.is_empty() {
            return refused;
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id().to_owned()).collect();
        let result = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await;
        match result {
            Ok(out) => refused.extend(entry_failures(&ids, &out)),
            Err(err) => {
                let message = DisplayErrorContext(&err).to_string();
                tracing::warn!(queue = %self.url, error = %message, entries = ids.len(), "SendMessageBatch call failed");
                let code = err.code().unwrap_or("RequestFailed").to_owned();
                refused.extend(ids.into_iter().map(|id| FailedEntry {
                    id,
                    code: code.clone(),
                    message: message.clone(),
                    sender_fault: false,
                }));
            }
        }
        refused
    }
}

/// The entries of one successful call that were not enqueued: those SQS lists as failed,
/// and any it does not mention at all.
fn entry_failures(ids: &[String], out: &SendMessageBatchOutput) -> Vec<FailedEntry> {
    let mut failed: Vec<FailedEntry> = out
        .failed()
        .iter()
        .map(|f| FailedEntry {
            id: f.id().to_owned(),
            code: f.code().to_owned(),
            message: f.message().unwrap_or_default().to_owned(),
            sender_fault: f.sender_fault(),
        })
        .collect();
    let answered: HashSet<&str> = out
        .successful()
        .iter()
        .map(|s| s.id())
        .chain(out.failed().iter().map(|f| f.id()))
        .collect();
    for id in ids.iter().filter(|id| !answered.contains(id.as_str())) {
        failed.push(FailedEntry {
            id: id.clone(),
            code: "NoResult".into(),
            message: "SQS returned no result for this entry".into(),
            sender_fault: false,
        });
    }
    failed
}

fn entry(m: &OutboundMessage) -> Result<SendMessageBatchRequestEntry, String> {
    let mut builder = SendMessageBatchRequestEntry::builder()
        .id(&m.id)
        .message_body(&m.body);
    if let Some(delay) = m.delay {
        builder = builder.delay_seconds(whole_seconds_up(delay));
    }
    for (name, value) in &m.attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|e| e.to_string())?;
        builder = builder.message_attributes(name, value);
    }
    builder.build().map_err(|e| e.to_string())
}

/// SQS takes whole seconds; round up so a delay is never shorter than asked.
fn whole_seconds_up(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn service_error<E, R>(
    operation: &'static str,
    err: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or_default();
    if [
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "InvalidIdFormat",
    ]
    .iter()
    .any(|c| code.ends_with(c))
    {
        return QueueError::InvalidReceipt;
    }
    QueueError::Service {
        operation,
        message: DisplayErrorContext(err).to_string(),
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        let plan = batch::plan(messages);
        let sends = plan.chunks.iter().map(|chunk| self.send_chunk(chunk));
        let mut failed = plan.refused;
        failed.extend(futures::future::join_all(sends).await.into_iter().flatten());
        if failed.is_empty() {
            Ok(())
        } else {
            Err(QueueError::BatchFailed {
                failed,
                total: messages.len(),
            })
        }
    }

    async fn receive(&self, max: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.min(MAX_RECEIVE);
        if max == 0 {
            return Ok(Vec::new());
        }
        let wait = wait.min(MAX_WAIT).as_secs();
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::from(max))
            .wait_time_seconds(i32::try_from(wait).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| service_error("ReceiveMessage", &e))?;
        out.messages()
            .iter()
            .map(|m| {
                let missing = |what| QueueError::Service {
                    operation: "ReceiveMessage",
                    message: format!("message without {what}"),
                };
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| missing("ApproximateReceiveCount"))?;
                let attributes: BTreeMap<String, String> = m
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .filter_map(|(name, value)| {
                        Some((name.clone(), value.string_value()?.to_owned()))
                    })
                    .collect();
                Ok(ReceivedMessage {
                    message_id: m
                        .message_id()
                        .ok_or_else(|| missing("MessageId"))?
                        .to_owned(),
                    receipt: ReceiptHandle(
                        m.receipt_handle()
                            .ok_or_else(|| missing("ReceiptHandle"))?
                            .to_owned(),
                    ),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count,
                    attributes,
                })
            })
            .collect()
    }

    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .send()
            .await
            .map_err(|e| service_error("DeleteMessage", &e))?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        delay: Duration,
    ) -> Result<(), QueueError> {
        if delay > MAX_VISIBILITY {
            return Err(QueueError::InvalidArgument(
                "visibility longer than 12 hours",
            ));
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .visibility_timeout(whole_seconds_up(delay))
            .send()
            .await
            .map_err(|e| service_error("ChangeMessageVisibility", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};

    use super::*;

    #[test]
    fn entry_failures_lists_refused_and_unanswered_entries() {
        let ok = SendMessageBatchResultEntry::builder()
            .id("a")
            .message_id("m-a")
            .md5_of_message_body("x")
            .build()
            .unwrap();
        let refused = BatchResultErrorEntry::builder()
            .id("b")
            .code("InvalidParameterValue")
            .message("DelaySeconds is invalid")
            .sender_fault(true)
            .build()
            .unwrap();
        let out = SendMessageBatchOutput::builder()
            .successful(ok)
            .failed(refused)
            .build()
            .unwrap();
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(
            entry_failures(&ids, &out),
            [
                FailedEntry {
                    id: "b".into(),
                    code: "InvalidParameterValue".into(),
                    message: "DelaySeconds is invalid".into(),
                    sender_fault: true,
                },
                FailedEntry {
                    id: "c".into(),
                    code: "NoResult".into(),
                    message: "SQS returned no result for this entry".into(),
                    sender_fault: false,
                },
            ]
        );
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_secs(900)), 900);
        assert_eq!(whole_seconds_up(Duration::from_millis(900_001)), 901);
    }
}
