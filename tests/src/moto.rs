//! A real local SQS for tests: moto's server (`moto[server]`, speaks the SQS JSON protocol).
//!
//! `SQS_ENDPOINT` wins when set (CI can start moto itself, or point at LocalStack).
//! Otherwise one server on `127.0.0.1:$MOTO_PORT` (default [`DEFAULT_PORT`]) is shared by
//! every test process: nextest runs each test in its own process, so the first one to find
//! the port silent takes a file lock under `<workspace>/.cache/`, starts moto's server
//! detached (installing `moto[server]` with pip if absent) and the others wait on the lock,
//! then reuse it. The server outlives the test run; `scripts/moto.sh stop` ends it.
//!
//! moto's server is started through `scripts/moto_server.py`, which serialises each
//! queue's message operations: moto's own lose a message sent while two deletes overlap
//! (the launcher's `--self-check` shows it, `tests/tests/queue_sqs.rs` runs it).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;

/// Port used when neither `SQS_ENDPOINT` nor `MOTO_PORT` is set (same as `scripts/moto.sh`).
pub const DEFAULT_PORT: u16 = 5320;

/// The workspace root (the tests crate's parent).
fn workspace_root() -> anyhow::Result<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .context("tests crate has a parent directory")
}

/// `scripts/moto_server.py`: moto's server with each queue's message operations serialised.
pub fn launcher() -> anyhow::Result<PathBuf> {
    Ok(workspace_root()?.join("scripts").join("moto_server.py"))
}

/// `<workspace root>/.cache`, created on demand.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let dir = workspace_root()?.join(".cache");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The SQS endpoint URL, starting a shared moto server if needed. Blocking; call it from
/// `spawn_blocking` in async code (as [`sqs_client`] does).
pub fn sqs_endpoint() -> anyhow::Result<String> {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    if let Some(url) = ENDPOINT.get() {
        return Ok(url.clone());
    }
    let url = match std::env::var("SQS_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let port = match std::env::var("MOTO_PORT") {
                Ok(p) => p
                    .parse()
                    .with_context(|| format!("MOTO_PORT={p} is not a port"))?,
                Err(_) => DEFAULT_PORT,
            };
            ensure_moto(port)?;
            format!("http://127.0.0.1:{port}")
        }
    };
    Ok(ENDPOINT.get_or_init(|| url).clone())
}

fn ensure_moto(port: u16) -> anyhow::Result<()> {
    if answers(port) {
        return Ok(());
    }
    let cache = cache_dir()?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("moto.lock"))
        .context("opening moto lock file")?;
    lock.lock().context("locking moto lock file")?; // released when `lock` drops
    if answers(port) {
        return Ok(());
    }
    install_if_missing()?;
    let log_path = cache.join("moto.log");
    let log = File::create(&log_path).context("creating moto log")?;
    let child = Command::new("python3")
        .arg(launcher()?)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0) // detached from the test's process group: it outlives the test
        .spawn()
        .context("starting moto_server")?;
    fs::write(cache.join("moto.pid"), child.id().to_string()).context("writing moto pid")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if answers(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    bail!("moto_server did not answer on port {port} within 60 s; log:\n{log}")
}

fn install_if_missing() -> anyhow::Result<()> {
    // The launcher runs moto's server in this python3, so moto must be importable here.
    let present = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "moto[server]"])
        .status()
        .context("running python3 -m pip")?;
    if !status.success() {
        bail!("`python3 -m pip install \"moto[server]\"` failed ({status})");
    }
    Ok(())
}

/// True when an HTTP server answers on the port.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// An SQS client for the local endpoint (dummy credentials, `us-east-1`).
pub async fn sqs_client() -> anyhow::Result<Client> {
    let endpoint = tokio::task::spawn_blocking(sqs_endpoint)
        .await
        .context("endpoint task")??;
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "relay-tests"))
        .endpoint_url(endpoint)
        .build();
    Ok(Client::from_conf(config))
}

/// Creates a queue with a random name and returns its URL.
pub async fn create_queue(client: &Client, visibility: Duration) -> anyhow::Result<String> {
    create(client, visibility, None).await
}

/// Creates a queue and a dead-letter queue it redrives to after `max_receives` receives;
/// returns `(queue url, dlq url)`.
pub async fn create_queue_with_dlq(
    client: &Client,
    visibility: Duration,
    max_receives: u32,
) -> anyhow::Result<(String, String)> {
    let dlq = create(client, visibility, None).await?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .context("GetQueueAttributes")?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("dead-letter queue has no ARN")?;
    let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives.to_string() });
    let queue = create(client, visibility, Some(policy.to_string())).await?;
    Ok((queue, dlq))
}

async fn create(
    client: &Client,
    visibility: Duration,
    redrive: Option<String>,
) -> anyhow::Result<String> {
    let name = format!("relay-test-{}", uuid::Uuid::new_v4().simple());
    let mut request = client.create_queue().queue_name(&name).attributes(
        QueueAttributeName::VisibilityTimeout,
        visibility.as_secs().to_string(),
    );
    if let Some(policy) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let out = request
        .send()
        .await
        .with_context(|| format!("CreateQueue {name}"))?;
    out.queue_url()
        .map(str::to_owned)
        .context("CreateQueue returned no URL")
}
