//! `relay replay`: move dead-lettered deliveries back to the delivery queue.

/// Move dead-lettered deliveries back to the delivery queue (after fixing their cause).
/// Safe to repeat: a delivery already applied is recognised by the worker.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// URL of the dead-letter queue (stack output DeadLetterQueueUrl).
    #[arg(long, env = "RELAY_DLQ_URL")]
    pub dead_letter_queue: String,
    /// URL of the delivery queue (stack output QueueUrl).
    #[arg(long, env = "RELAY_QUEUE_URL")]
    pub queue: String,
    /// Move at most this many.
    #[arg(long)]
    pub max: Option<usize>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    replay(args.dead_letter_queue, args.queue, args.max).await
}

async fn replay(
    dead_letter_queue: String,
    queue: String,
    max: Option<usize>,
) -> anyhow::Result<()> {
    use relay_shared::queue::sqs::SqsQueue;

    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (from, to) = (
        SqsQueue::new(sqs.clone(), dead_letter_queue),
        SqsQueue::new(sqs, queue),
    );
    let bar = match max {
        Some(n) => indicatif::ProgressBar::new(u64::try_from(n).unwrap_or(u64::MAX)),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} replayed {wide_bar} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = relay_shared::replay::redrive(&from, &to, max, |moved| {
        bar.set_position(u64::try_from(moved).unwrap_or(u64::MAX));
    })
    .await?;
    bar.finish_and_clear();
    println!("replayed {} message(s)", report.moved);
    for (reason, count) in &report.reasons {
        println!("  {count:>5}  {reason}");
    }
    Ok(())
}
