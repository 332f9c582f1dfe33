//! Cold starts of the four Lambda binaries (release builds), each run as Lambda runs it:
//! a fresh process whose environment points `AWS_LAMBDA_RUNTIME_API` at a local emulator
//! of the Lambda Runtime API (`GET …/invocation/next`, `POST …/response|error`,
//! `POST …/init/error`).
//!
//! * init: from just before the process is spawned to the arrival of its first `next`
//!   call — what Lambda bills as the init phase (exec, logging, SDK configuration, the SSM
//!   read of the worker, mappings, clients).
//! * first event: from handing out the first event to its response — a real event each:
//!   a signed webhook (DynamoDB claim + SQS enqueue), an EventBridge contact event, an SQS
//!   batch of one message per vendor (link lease, limiter, vendor calls, commit).
//! * peak RSS: `VmHWM` of `/proc/<pid>/status` once the function asks for its second event.
//!
//! AWS is local: DynamoDB Local; SSM (`GetParameter`) and SQS (`SendMessageBatch`) from a
//! small fake speaking the SDK's JSON protocols; vendors from the sandbox. Plain HTTP, so
//! TLS (handshakes, root certificates) is not part of these numbers.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use relay_sandbox::Sandbox;
use relay_shared::delivery::DeliveryMessage;
use relay_shared::mapping::EventDefaults;
use relay_shared::vendors::Vendor;
use relay_tests::webhooks;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use crate::dynamo::{self, Counter};
use crate::stats::{median, round};

/// The Lambda binaries, in the order reported.
pub const FUNCTIONS: [&str; 4] = ["form-signup", "crm-change", "event-sync", "sync-worker"];

/// How long one start may take before it counts as failed.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The SSM parameter name the worker is given.
const VENDOR_SECRETS_PARAMETER: &str = "/profile-relay/bench/vendor-secrets";

/// Settings of the cold-start bench.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    /// Where the release binaries are; built there first unless `build` is false.
    pub bin_dir: PathBuf,
    pub build: bool,
}

/// One function's numbers over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionReport {
    pub name: &'static str,
    pub binary_bytes: u64,
    pub binary_mib: f64,
    pub runs: usize,
    pub init_ms_median: f64,
    pub init_ms_runs: Vec<f64>,
    pub first_event_ms_median: f64,
    pub first_event_ms_runs: Vec<f64>,
    /// The same for the second event: the handler warm, lazily loaded data in memory.
    pub second_event_ms_median: f64,
    pub second_event_ms_runs: Vec<f64>,
    pub peak_rss_mib_median: f64,
    pub peak_rss_mib_max: f64,
    /// "ok" when both events got the expected answer, else what they got.
    pub outcome: String,
    pub failed_runs: usize,
}

/// The cold-start part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bin_dir: String,
    pub functions: Vec<FunctionReport>,
    /// Messages the ingest functions sent to the fake SQS (3 per event: one per vendor).
    pub sqs_messages_received: u64,
}

// ------------------------------------------------------------------ Runtime API emulator --

/// The Lambda Runtime API for one process: hands out the queued events in order, records
/// when each went out and when (and how) it was answered.
#[derive(Default)]
struct Emulator {
    events: Mutex<VecDeque<Value>>,
    handed_out: Mutex<Vec<Instant>>,
    /// (when, was an error, body), in order.
    answers: Mutex<Vec<(Instant, bool, Bytes)>>,
    init_error: Mutex<Option<Bytes>>,
    /// Signalled when the function asks for an event after the last one (it is idle) or
    /// reports an init error.
    idle: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn next(State(emu): State<Arc<Emulator>>) -> Response {
    let arrived = Instant::now();
    let event = lock(&emu.events).pop_front();
    let Some(event) = event else {
        emu.idle.notify_one();
        // Long poll, as Lambda does between invocations: the process is stopped meanwhile.
        return std::future::pending().await;
    };
    lock(&emu.handed_out).push(arrived);
    let deadline = Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(
        "lambda-runtime-aws-request-id",
        uuid::Uuid::new_v4().to_string(),
    );
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
    );
    set("content-type", "application/json".into());
    (StatusCode::OK, headers, event.to_string()).into_response()
}

async fn response(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    lock(&emu.answers).push((Instant::now(), false, body));
    StatusCode::ACCEPTED
}

async fn error(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    lock(&emu.answers).push((Instant::now(), true, body));
    StatusCode::ACCEPTED
}

async fn init_error(State(emu): State<Arc<Emulator>>, body: Bytes) -> StatusCode {
    *lock(&emu.init_error) = Some(body);
    emu.idle.notify_one();
    StatusCode::ACCEPTED
}

/// A server on a free loopback port; stops when the returned sender is dropped or fired.
async fn serve(app: Router) -> anyhow::Result<(String, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding a local server")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr.to_string(), stop))
}

fn emulator_app(emu: Arc<Emulator>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(emu)
}

// ------------------------------------------------------------------------ fake SSM + SQS --

/// SSM `GetParameter` and SQS `SendMessageBatch` over the SDK's JSON protocols.
struct FakeAws {
    /// The worker's vendor settings, pointed at the sandbox of the current run.
    vendor_secrets: Mutex<String>,
    sqs_messages: AtomicU64,
}

async fn aws(State(fake): State<Arc<FakeAws>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (content_type, answer) = match target {
        "AmazonSSM.GetParameter" => {
            let name = request["Name"].as_str().unwrap_or_default();
            if name != VENDOR_SECRETS_PARAMETER {
                return (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
                    json!({"__type": "ParameterNotFound", "message": name}).to_string(),
                )
                    .into_response();
            }
            (
                "application/x-amz-json-1.1",
                json!({"Parameter": {
                    "Name": name,
                    "Type": "SecureString",
                    "Value": lock(&fake.vendor_secrets).clone(),
                    "Version": 1,
                    "DataType": "text",
                    "ARN": format!("arn:aws:ssm:us-east-1:000000000000:parameter{name}"),
                }}),
            )
        }
        "AmazonSQS.SendMessageBatch" => {
            let entries = request["Entries"].as_array().cloned().unwrap_or_default();
            fake.sqs_messages
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            let successful: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "Id": e["Id"],
                        "MessageId": uuid::Uuid::new_v4().to_string(),
                        "MD5OfMessageBody": "00000000000000000000000000000000",
                    })
                })
                .collect();
            (
                "application/x-amz-json-1.0",
                json!({"Successful": successful, "Failed": []}),
            )
        }
        // A worker handing a message back (a retry): nothing to keep.
        "AmazonSQS.ChangeMessageVisibility" => ("application/x-amz-json-1.0", json!({})),
        other => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
                json!({"__type": "UnknownOperationException", "message": other}).to_string(),
            )
                .into_response();
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        answer.to_string(),
    )
        .into_response()
}

/// The worker's vendor settings as the SSM parameter holds them, pointed at the sandbox.
fn vendor_secrets(sandbox: &Sandbox) -> String {
    let c = sandbox.credentials();
    json!({
        "hood": {"base_url": sandbox.hood_url(), "token": c.hood_token.expose_secret()},
        "channelio": {
            "base_url": sandbox.channelio_url(),
            "access_key": c.channel_access_key.expose_secret(),
            "access_secret": c.channel_access_secret.expose_secret(),
        },
        "chatwoot": {
            "base_url": sandbox.chatwoot_url(),
            "api_access_token": c.chatwoot_token.expose_secret(),
            "account_id": c.chatwoot_account_id,
        },
    })
    .to_string()
}

// ------------------------------------------------------------------------------- events --

/// The two events of run `run` of `function`: real ones, unique per run. The second is
/// of the same kind for another contact, except for the worker: there it updates the
/// first event's contact at Channel.io and Chatwoot only, so it does not wait for Hood's
/// schedule (the first event used Hood's burst of 5).
fn events(function: &str, run: usize) -> anyhow::Result<[Value; 2]> {
    if function == "sync-worker" {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let contact = 10_000 + run;
        let at = Utc::now();
        return Ok([
            sqs_event(contact, "Cold Start", at, &format!("{tag}a"), &[])?,
            sqs_event(
                contact,
                "Warm Start",
                at + chrono::TimeDelta::seconds(1),
                &format!("{tag}b"),
                &[Vendor::Channelio, Vendor::Chatwoot],
            )?,
        ]);
    }
    Ok([event(function, 2 * run)?, event(function, 2 * run + 1)?])
}

/// One event for an ingest function, for contact `n`.
fn event(function: &str, n: usize) -> anyhow::Result<Value> {
    let tag = format!("{}-{n}", uuid::Uuid::new_v4().simple());
    match function {
        "form-signup" => {
            let mut body: Value = serde_json::from_str(sample("typeform")?)?;
            body["event_id"] = json!(format!("cold-{tag}"));
            let body = body.to_string();
            let headers = webhooks::signature_headers(
                "typeform",
                &webhooks::secret("typeform"),
                body.as_bytes(),
                Utc::now(),
                None,
            );
            Ok(webhooks::apigw_event("typeform", "forms", &headers, &body))
        }
        "crm-change" => {
            let body = crate::ingest::contact_event(n, "Cold Start", Utc::now());
            let headers = webhooks::signature_headers(
                "standard",
                &webhooks::secret("standard"),
                body.as_bytes(),
                Utc::now(),
                Some(&format!("msg_cold_{tag}")),
            );
            Ok(webhooks::apigw_event("standard", "crm", &headers, &body))
        }
        "event-sync" => {
            let mut event: Value = serde_json::from_str(sample("app-contact")?)?;
            event["id"] = json!(format!("cold-{tag}"));
            event["time"] = json!(Utc::now().to_rfc3339());
            Ok(event)
        }
        other => bail!("not an ingest function: {other}"),
    }
}

fn sample(source: &str) -> anyhow::Result<&'static str> {
    relay_sandbox::samples::sample(source)
        .map(|s| s.body)
        .with_context(|| format!("no built-in sample for {source}"))
}

/// An SQS batch with one message per vendor (all of the source's, or `only` these) for
/// contact `contact`, as ingest enqueues them.
fn sqs_event(
    contact: usize,
    name: &str,
    at: chrono::DateTime<Utc>,
    tag: &str,
    only: &[Vendor],
) -> anyhow::Result<Value> {
    let mappings = webhooks::mappings();
    let source = mappings.source("standard").context("standard source")?;
    let payload: Value = serde_json::from_str(&crate::ingest::contact_event(contact, name, at))?;
    let changes = source
        .extract(
            &payload,
            &EventDefaults {
                event_id: format!("msg_cold_{tag}"),
                received_at: Utc::now(),
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut records = Vec::new();
    for change in changes {
        for vendor in source
            .vendors
            .iter()
            .filter(|v| only.is_empty() || only.contains(v))
        {
            let body = DeliveryMessage::new(*vendor, change.clone()).to_body();
            records.push(json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": format!("rh-{}", uuid::Uuid::new_v4().simple()),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": Utc::now().timestamp_millis().to_string(),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": Utc::now().timestamp_millis().to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": "00000000000000000000000000000000",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:relay-sync",
                "awsRegion": "us-east-1",
            }));
        }
    }
    Ok(json!({ "Records": records }))
}

/// "ok" when the function's answer to its first event is the expected one, else a short
/// description.
fn judge(function: &str, was_error: bool, body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if was_error {
        return format!("error: {}", truncate(&value.to_string(), 200));
    }
    let ok = match function {
        "form-signup" | "crm-change" => value["statusCode"].as_u64() == Some(202),
        "event-sync" => value["accepted"].as_u64() == Some(1),
        "sync-worker" => value["batchItemFailures"]
            .as_array()
            .is_some_and(Vec::is_empty),
        _ => false,
    };
    if ok {
        "ok".into()
    } else {
        format!("unexpected: {}", truncate(&value.to_string(), 200))
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

// --------------------------------------------------------------------------------- runs --

/// The environment Lambda would give the function (plus the local endpoints).
struct Env {
    dynamodb: String,
    aws: String,
    source_secrets: Vec<(String, String)>,
}

impl Env {
    fn vars(&self, function: &str, runtime_api: &str, table: &str) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
            ("AWS_SESSION_TOKEN", "local".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb.clone()),
            ("AWS_ENDPOINT_URL_SQS", self.aws.clone()),
            ("AWS_ENDPOINT_URL_SSM", self.aws.clone()),
            ("RELAY_TABLE", table.to_string()),
            (
                "RELAY_QUEUE_URL",
                format!("{}/000000000000/relay-sync", self.aws),
            ),
            (
                "RELAY_DLQ_URL",
                format!("{}/000000000000/relay-sync-dlq", self.aws),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        match function {
            "form-signup" | "crm-change" => vars.extend(self.source_secrets.iter().cloned()),
            "sync-worker" => vars.push((
                "RELAY_VENDOR_SECRETS".into(),
                VENDOR_SECRETS_PARAMETER.into(),
            )),
            _ => {}
        }
        vars
    }
}

/// One run's numbers.
struct Run {
    init_ms: f64,
    first_event_ms: f64,
    second_event_ms: f64,
    peak_rss_kib: u64,
    outcome: String,
}

/// Starts `binary` once, feeds it `events` one after the other, measures, and stops it.
async fn run_once(
    function: &str,
    binary: &Path,
    env: &Env,
    table: &str,
    events: [Value; 2],
    log: &Path,
) -> anyhow::Result<Run> {
    let emu = Arc::new(Emulator::default());
    lock(&emu.events).extend(events);
    let (runtime_api, stop) = serve(emulator_app(emu.clone())).await?;
    let log = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(env.vars(function, &runtime_api, table))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let waited = wait_idle(&emu, &mut child, spawned).await;
    // Read before stopping: the high-water mark of the resident set.
    let peak = peak_rss_kib(child.id());
    // Only the process started here, by its pid.
    let _ = child.kill();
    let _ = child.wait();
    let _ = stop.send(());
    waited?;
    if let Some(body) = lock(&emu.init_error).take() {
        bail!("init error: {}", String::from_utf8_lossy(&body));
    }
    let handed_out = lock(&emu.handed_out).clone();
    let answers = std::mem::take(&mut *lock(&emu.answers));
    let (Some(first), Some(second)) = (handed_out.first(), handed_out.get(1)) else {
        bail!("the function asked for {} events, not 2", handed_out.len());
    };
    let [
        (first_answer, first_error, first_body),
        (second_answer, second_error, second_body),
    ] = <[_; 2]>::try_from(answers).map_err(|a| anyhow::anyhow!("{} answers, not 2", a.len()))?;
    let outcome = match (
        judge(function, first_error, &first_body),
        judge(function, second_error, &second_body),
    ) {
        (a, b) if a == "ok" && b == "ok" => a,
        (a, b) => format!("first: {a}; second: {b}"),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    Ok(Run {
        init_ms: ms(*first - spawned),
        first_event_ms: ms(first_answer - *first),
        second_event_ms: ms(second_answer - *second),
        peak_rss_kib: peak?,
        outcome,
    })
}

/// Waits until the function is idle (asked for an event after the last) or failed to
/// start.
async fn wait_idle(emu: &Emulator, child: &mut Child, spawned: Instant) -> anyhow::Result<()> {
    loop {
        if tokio::time::timeout(Duration::from_millis(5), emu.idle.notified())
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("exited with {status} before becoming idle");
        }
        if spawned.elapsed() > RUN_TIMEOUT {
            bail!("not idle after {RUN_TIMEOUT:?}");
        }
    }
}

/// `VmHWM` (peak resident set) of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vm_hwm(&status).context("no VmHWM in /proc/<pid>/status")
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Builds the four binaries in release (a no-op when they are current).
fn build(bin_dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dynamo::workspace_root())
        .args(["build", "--release", "--quiet"]);
    for f in FUNCTIONS {
        command.args(["-p", f]);
    }
    // Into the directory this bench runs from (its target dir), whatever the environment.
    if let Some(target) = bin_dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    // Without what `cargo run` sets for this bench: build scripts track some of it (ring
    // reruns on CARGO_MANIFEST_DIR), so it would rebuild every dependency whenever the
    // bench is started one way after the other.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if is_run_variable(&name) {
            command.env_remove(name.as_ref());
        }
    }
    eprintln!("building the Lambda binaries (release) …");
    let status = command
        .status()
        .context("running cargo build for the Lambda binaries")?;
    if !status.success() {
        bail!("cargo build --release of the Lambda binaries failed ({status})");
    }
    Ok(())
}

/// Variables `cargo run` gives the program it runs (not the user's cargo configuration).
fn is_run_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// Runs every function `options.runs` times.
pub async fn run(dynamodb: &str, options: &Options) -> anyhow::Result<Report> {
    if options.build {
        build(&options.bin_dir)?;
    }
    let counter = Counter::default();
    let client = dynamo::client(dynamodb, &counter);
    let fake = Arc::new(FakeAws {
        vendor_secrets: Mutex::new(String::new()),
        sqs_messages: AtomicU64::new(0),
    });
    let (aws_addr, stop_aws) = serve(Router::new().fallback(aws).with_state(fake.clone())).await?;
    let env = Env {
        dynamodb: dynamodb.to_string(),
        aws: format!("http://{aws_addr}"),
        source_secrets: webhooks::SECRETS
            .iter()
            .map(|(source, secret)| {
                (
                    format!("RELAY_SECRET_{}", source.to_ascii_uppercase()),
                    (*secret).to_string(),
                )
            })
            .collect(),
    };
    let logs = dynamo::workspace_root().join(".cache").join("bench");
    std::fs::create_dir_all(&logs)?;

    let mut functions = Vec::new();
    for function in FUNCTIONS {
        let binary = options.bin_dir.join(function);
        let size = std::fs::metadata(&binary)
            .with_context(|| format!("{} (build it, or pass --bin-dir)", binary.display()))?
            .len();
        let mut runs = Vec::new();
        let mut failures = Vec::new();
        for i in 0..options.runs {
            // A table and vendors per run: every worker run starts as a first instance
            // would, on an idle limiter and an idle vendor account.
            let table = dynamo::fresh_table(&client, "cold").await?;
            let sandbox = Sandbox::start_with(crate::sync::established_account())
                .await
                .context("starting the sandbox vendors")?;
            *lock(&fake.vendor_secrets) = vendor_secrets(&sandbox);
            let events = events(function, i)?;
            let log = logs.join(format!("{function}-{i}.log"));
            match run_once(function, &binary, &env, &table, events, &log).await {
                Ok(run) => runs.push(run),
                Err(e) => failures.push(format!("{e:#} (log: {})", log.display())),
            }
            if sandbox.violation_count() > 0 {
                failures.push(format!(
                    "run {i}: the sandbox vendors saw {} rule violations (log: {})",
                    sandbox.violation_count(),
                    log.display()
                ));
            }
            sandbox.shutdown().await;
        }
        if runs.is_empty() {
            bail!("{function} never started: {}", failures.join("; "));
        }
        for f in &failures {
            eprintln!("{function}: a run failed: {f}");
        }
        functions.push(summarise(function, size, &runs, failures.len()));
    }
    let _ = stop_aws.send(());
    Ok(Report {
        bin_dir: options.bin_dir.display().to_string(),
        functions,
        sqs_messages_received: fake.sqs_messages.load(Ordering::Relaxed),
    })
}

fn summarise(name: &'static str, size: u64, runs: &[Run], failed: usize) -> FunctionReport {
    let init: Vec<f64> = runs.iter().map(|r| round(r.init_ms, 2)).collect();
    let first: Vec<f64> = runs.iter().map(|r| round(r.first_event_ms, 2)).collect();
    let second: Vec<f64> = runs.iter().map(|r| round(r.second_event_ms, 2)).collect();
    let rss: Vec<f64> = runs
        .iter()
        .map(|r| r.peak_rss_kib as f64 / 1024.0)
        .collect();
    let outcomes: BTreeMap<&str, usize> = runs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.outcome.as_str()).or_insert(0) += 1;
        m
    });
    let outcome = if outcomes.keys().all(|k| *k == "ok") {
        "ok".to_string()
    } else {
        outcomes
            .iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    FunctionReport {
        name,
        binary_bytes: size,
        binary_mib: round(size as f64 / (1024.0 * 1024.0), 2),
        runs: runs.len(),
        init_ms_median: median(&init).unwrap_or(0.0),
        init_ms_runs: init,
        first_event_ms_median: median(&first).unwrap_or(0.0),
        first_event_ms_runs: first,
        second_event_ms_median: median(&second).unwrap_or(0.0),
        second_event_ms_runs: second,
        peak_rss_mib_median: round(median(&rss).unwrap_or(0.0), 2),
        peak_rss_mib_max: round(rss.iter().copied().fold(0.0, f64::max), 2),
        outcome,
        failed_runs: failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\tform-signup\nVmPeak:\t  800000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 12000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12_345));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB"), None);
    }

    #[test]
    fn first_answers_are_judged_exactly() {
        assert_eq!(judge("crm-change", false, br#"{"statusCode":202}"#), "ok");
        assert!(judge("crm-change", false, br#"{"statusCode":404}"#).starts_with("unexpected"));
        assert_eq!(
            judge("event-sync", false, br#"{"accepted":1,"duplicates":0}"#),
            "ok"
        );
        assert_eq!(
            judge("sync-worker", false, br#"{"batchItemFailures":[]}"#),
            "ok"
        );
        assert!(
            judge(
                "sync-worker",
                false,
                br#"{"batchItemFailures":[{"itemIdentifier":"a"}]}"#
            )
            .starts_with("unexpected")
        );
        assert!(judge("event-sync", true, br#"{"errorType":"x"}"#).starts_with("error"));
    }

    #[test]
    fn only_the_variables_of_cargo_run_are_dropped() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION",
            "OUT_DIR",
        ] {
            assert!(is_run_variable(name), "{name}");
        }
        for name in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_LTO",
            "PATH",
        ] {
            assert!(!is_run_variable(name), "{name}");
        }
    }

    #[test]
    fn every_function_gets_two_real_events() {
        for f in FUNCTIONS {
            let [a, b] = events(f, 0).expect("events");
            assert!(a.is_object() && b.is_object(), "{f}");
            assert_ne!(a, b, "{f}: distinct events");
        }
        let [first, second] = events("sync-worker", 0).expect("SQS events");
        assert_eq!(first["Records"].as_array().map(Vec::len), Some(3));
        assert_eq!(second["Records"].as_array().map(Vec::len), Some(2));
    }
}
