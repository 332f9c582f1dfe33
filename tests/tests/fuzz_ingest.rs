//! Fuzzing the webhook ingest surface (issue 18, point 1): property tests through the real
//! router (`relay_shared::ingress::router` over a real `Ingest` with the built-in mappings
//! and the test secret of every built-in webhook source), driven in process with
//! `tower::ServiceExt::oneshot`, on the in-memory store and queue behind counting wrappers.
//!
//! Properties, for every built-in webhook source (one module per source below):
//!
//! 1. `arbitrary_unsigned_requests`: arbitrary bodies (arbitrary bytes, JSON nested near and
//!    beyond serde_json's recursion limit of 128, numbers such as `1e400`, duplicate keys,
//!    nulls, control characters, NUL, RTL marks, emoji, very long strings, HubSpot batches
//!    of 0 to 130 events) with arbitrary header sets (missing, duplicated, oversized or
//!    garbage signature, timestamp, id, content-type, `Authorization`, `Host` headers), on
//!    both routes: never a panic or a 5xx, always JSON with a stable `code` at its
//!    documented status, and nothing is claimed or enqueued. A request for the source on its
//!    own route is answered 413 (body over the limit), 415 (a type other than JSON) or 401.
//! 2. `wrongly_signed_requests`: a genuine signature made wrong (other secret, body changed
//!    after signing, stale timestamp, another source's headers, a header dropped or
//!    preceded by garbage, another URL, the other route): 401 with the matching code (404
//!    on the wrong route), nothing claimed or enqueued.
//! 3. `validly_signed_arbitrary_bodies`: the same bodies signed with the source's real
//!    scheme and secret (`Verifier::sign`, timestamp now): never 401 or 5xx; 2xx or a
//!    deliberate 4xx (413 when the body is over the limit, and with any stable code for
//!    other over-limit input such as a 101-event batch; 415 exactly when the content type
//!    is not JSON; 400 `invalid_json` exactly when the body is not JSON; 422 with
//!    `contact_unidentifiable`/`field_invalid`/`payload_not_event_list`, 409
//!    `event_id_reused`). A 2xx enqueues accepted × vendors messages, accounts for every
//!    event and leaves its claims as written (ingest never confirms them); a refusal
//!    enqueues nothing and leaves no claim held; the same request again is never
//!    `event_in_progress` (a 2xx comes back as all duplicates, its claimed events enqueued
//!    again for the worker to recognise; a refusal the same).
//! 4. `validly_signed_real_shaped_payloads`: the fixture of the source (`sandbox/fixtures/`)
//!    with string leaves replaced by arbitrary strings, numbers, nulls, lists and objects,
//!    validly signed: 2xx or 422 only; a 2xx enqueues accepted × vendors messages.
//!
//! plus `unknown_sources_and_paths` (arbitrary methods and paths, known sources on the wrong
//! route, unknown and percent-encoded source names).
//!
//! The defects these properties found (fixed in d279d00) are kept as minimal regression
//! tests at the end of the file.
//!
//! Each property runs 64 cases by default (the file takes about 10 s of test time after
//! the build); `PROPTEST_CASES` overrides that for every property (proptest's own
//! `Config::default()` reads it; the default here applies only when it is unset). A long
//! session (4000 cases take about 10 minutes on 2 cores, 20000 about an hour):
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo nextest run -p relay-tests --test fuzz_ingest
//! ```
//!
//! A failure prints the shrunk input. Shrinking is bounded to 60 s unless
//! `PROPTEST_MAX_SHRINK_TIME` (ms) says otherwise; `PROPTEST_RNG_SEED` fixes the seed.
//! Failures are not persisted to files (as in the workspace's other property tests).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use chrono::{DateTime, TimeDelta, Utc};
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use relay_sandbox::samples::sample;
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::ingress::{Ingest, MAX_BODY_BYTES, RouterConfig, router};
use relay_shared::mapping::{Mappings, Route};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{OutboundMessage, Queue, QueueError, ReceiptHandle, ReceivedMessage};
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{
    Claim, ClaimOutcome, Clock, IdempotencyKey, IdempotencyStore, PayloadHash, StoreError,
    SystemClock,
};
use relay_tests::webhooks::{HOST as PUBLIC_HOST, SECRETS, source_secrets};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

// ------------------------------------------------------------------ set-up ----

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 64;

static MAPPINGS: LazyLock<Arc<Mappings>> = LazyLock::new(|| Arc::new(Mappings::builtin().unwrap()));

/// Every built-in webhook source; `every_built_in_webhook_source_is_fuzzed` keeps this list
/// in step with the mappings.
static SOURCES: [&str; 6] = [
    "typeform",
    "tally",
    "webflow",
    "hubspot",
    "pipedrive",
    "standard",
];

fn config() -> Config {
    // `Config::default()` reads every PROPTEST_* variable.
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_MAX_SHRINK_TIME").is_none() {
        config.max_shrink_time = 60_000;
    }
    config
}

/// Runs `test` on values of `strategy`; panics with the shrunk input on failure.
fn check<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{name}: {e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn mapping_route(source: &str) -> Option<Route> {
    MAPPINGS.source(source).map(|s| s.route)
}

fn segment(route: Route) -> &'static str {
    match route {
        Route::Forms => "forms",
        Route::Crm => "crm",
        Route::Events => "events",
    }
}

fn own_segment(source: &str) -> &'static str {
    segment(mapping_route(source).unwrap())
}

fn other_segment(source: &str) -> &'static str {
    match mapping_route(source).unwrap() {
        Route::Forms => "crm",
        _ => "forms",
    }
}

fn vendors(source: &str) -> usize {
    MAPPINGS.source(source).unwrap().vendors.len()
}

fn secret(source: &str) -> &'static str {
    SECRETS.iter().find(|(s, _)| *s == source).unwrap().1
}

fn verifier(source: &str, secret: &str) -> Option<Verifier> {
    let scheme = MAPPINGS.source(source)?.signature.clone()?;
    Verifier::new(&scheme, &[SecretString::from(secret)]).ok()
}

fn scheme(source: &str) -> &'static str {
    verifier(source, secret(source)).unwrap().scheme()
}

fn has_timestamp(source: &str) -> bool {
    matches!(scheme(source), "standard_webhooks" | "hubspot" | "webflow")
}

/// The path of `source` on `route`, and the public URL HubSpot signs for it.
fn hook_path(route: &str, source: &str) -> String {
    format!("/hooks/{route}/{source}")
}

/// The headers `source` signs `body` with, as its sender would.
fn sign(
    source: &str,
    secret: &str,
    path: &str,
    body: &[u8],
    now: DateTime<Utc>,
    delivery_id: &str,
) -> HeaderMap {
    let uri = format!("https://{PUBLIC_HOST}{path}");
    verifier(source, secret)
        .unwrap()
        .sign(&SignRequest {
            method: &Method::POST,
            uri: &uri,
            body,
            now,
            delivery_id: Some(delivery_id),
        })
        .unwrap()
}

// ----------------------------------------------------- counting adapters ----

/// What the store and queue saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// Claim calls.
    attempts: usize,
    /// Claim calls that took the key.
    claimed: usize,
    completed: usize,
    released: usize,
    /// Messages handed to `send_batch`.
    offered: usize,
    /// Messages held by the queue.
    queued: usize,
}

impl Counts {
    /// Claims taken and neither completed nor released.
    fn held(&self) -> usize {
        self.claimed - self.completed - self.released
    }
}

struct CountingStore {
    inner: MemoryStore,
    attempts: AtomicUsize,
    claimed: AtomicUsize,
    completed: AtomicUsize,
    released: AtomicUsize,
}

#[async_trait]
impl IdempotencyStore for CountingStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        payload_hash: &PayloadHash,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.claim(key, payload_hash, lease_until).await;
        if let Ok(ClaimOutcome::Claimed(_)) = &outcome {
            self.claimed.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }

    async fn complete(&self, claim: &Claim, result: &str) -> Result<(), StoreError> {
        let done = self.inner.complete(claim, result).await;
        if done.is_ok() {
            self.completed.fetch_add(1, Ordering::SeqCst);
        }
        done
    }

    async fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        let done = self.inner.release(claim).await;
        if done.is_ok() {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
        done
    }
}

struct CountingQueue {
    inner: MemoryQueue,
    offered: AtomicUsize,
}

#[async_trait]
impl Queue for CountingQueue {
    async fn send_batch(&self, messages: &[OutboundMessage]) -> Result<(), QueueError> {
        self.offered.fetch_add(messages.len(), Ordering::SeqCst);
        self.inner.send_batch(messages).await
    }
    async fn receive(&self, max: u16, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }
    async fn delete(&self, receipt: &ReceiptHandle) -> Result<(), QueueError> {
        self.inner.delete(receipt).await
    }
    async fn change_visibility(
        &self,
        receipt: &ReceiptHandle,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt, delay).await
    }
}

/// The real router over a fresh store and queue.
struct Harness {
    app: axum::Router,
    store: Arc<CountingStore>,
    queue: Arc<CountingQueue>,
}

impl Harness {
    fn new() -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Arc::new(CountingStore {
            inner: MemoryStore::new(clock.clone()),
            attempts: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
        });
        let queue = Arc::new(CountingQueue {
            inner: MemoryQueue::new(Duration::from_secs(30)),
            offered: AtomicUsize::new(0),
        });
        let (ingest, disabled) = Ingest::new(
            MAPPINGS.clone(),
            &source_secrets(),
            store.clone(),
            relay_tests::webhooks::identity(Arc::new(MemoryStore::new(clock.clone()))),
            queue.clone(),
            clock,
        )
        .unwrap();
        assert!(
            disabled.is_empty(),
            "sources without a secret: {disabled:?}"
        );
        let app = router(
            Arc::new(ingest),
            RouterConfig {
                default_scheme: "https",
            },
        );
        Harness { app, store, queue }
    }

    fn counts(&self) -> Counts {
        Counts {
            attempts: self.store.attempts.load(Ordering::SeqCst),
            claimed: self.store.claimed.load(Ordering::SeqCst),
            completed: self.store.completed.load(Ordering::SeqCst),
            released: self.store.released.load(Ordering::SeqCst),
            offered: self.queue.offered.load(Ordering::SeqCst),
            queued: self.queue.inner.len(),
        }
    }

    async fn send(&self, req: &Req) -> Answer {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.path.as_str());
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Body::from(req.body.clone())).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            content_type,
            body: body.to_vec(),
        }
    }
}

// --------------------------------------------------- requests and answers ----

/// One HTTP request (headers in order; a name may repeat).
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

impl Req {
    fn post(path: String, headers: &HeaderMap, body: Vec<u8>) -> Self {
        let mut all = vec![(HOST, HeaderValue::from_static(PUBLIC_HOST))];
        all.extend(headers.iter().map(|(n, v)| (n.clone(), v.clone())));
        Req {
            method: Method::POST,
            path,
            headers: all,
            body,
        }
    }

    fn with_content_type(mut self, content_type: Option<&str>) -> Self {
        if let Some(ct) = content_type {
            self.headers
                .push((CONTENT_TYPE, HeaderValue::from_str(ct).unwrap()));
        }
        self
    }

    fn first(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// A body, shown as text in failure reports.
#[derive(Clone)]
struct Blob(Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&excerpt(&self.0))
    }
}

/// Bytes for a failure report: text when short, else its start and its size.
fn excerpt(bytes: &[u8]) -> String {
    const SHOWN: usize = 600;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

impl fmt::Debug for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", excerpt(v.as_bytes())))
            .collect();
        f.debug_struct("Req")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body", &format_args!("{}", excerpt(&self.body)))
            .finish()
    }
}

struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}) {}",
            self.status,
            self.content_type,
            excerpt(&self.body)
        )
    }
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
    fn count(&self, field: &str) -> usize {
        let json = self.json();
        match &json[field] {
            Value::Array(items) => items.len(),
            other => usize::try_from(other.as_u64().unwrap_or(0)).unwrap(),
        }
    }
}

/// The statuses the README documents per code. Codes not listed here (new ones) must
/// still be snake case and come with a 4xx.
const DOCUMENTED: [(&str, u16); 18] = [
    ("unknown_source", 404),
    ("source_not_configured", 404),
    ("not_found", 404),
    ("method_not_allowed", 405),
    ("payload_too_large", 413),
    ("unsupported_media_type", 415),
    ("invalid_json", 400),
    ("signature_missing", 401),
    ("signature_malformed", 401),
    ("signature_invalid", 401),
    ("timestamp_stale", 401),
    ("contact_unidentifiable", 422),
    ("field_invalid", 422),
    ("payload_not_event_list", 422),
    ("batch_too_large", 413),
    ("event_too_large", 413),
    ("event_id_reused", 409),
    ("temporarily_unavailable", 503),
];

const SIGNATURE_CODES: [&str; 4] = [
    "signature_missing",
    "signature_malformed",
    "signature_invalid",
    "timestamp_stale",
];

/// What every answer must be: no 5xx, JSON, and on a refusal `{"code", "message"}` with a
/// stable snake-case code at its documented status. A 2xx is a 202 ingest summary, or 200
/// from `GET /health`.
fn well_formed(req: &Req, answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        !answer.status.is_server_error(),
        "a 5xx for client input: {answer:?}"
    );
    prop_assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "every answer is JSON: {:?}",
        answer
    );
    if req.method == Method::HEAD {
        // HTTP: the answer to HEAD has no body.
        prop_assert!(answer.body.is_empty(), "{answer:?}");
        return Ok(());
    }
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {answer:?}")))?;
    if answer.status.is_success() {
        if req.path == "/health" {
            prop_assert_eq!(answer.status, StatusCode::OK);
            prop_assert_eq!(req.method.clone(), Method::GET);
        } else {
            prop_assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer);
            prop_assert!(
                json["accepted"].is_u64() && json["duplicates"].is_u64(),
                "a 202 says what was accepted: {answer:?}"
            );
        }
        return Ok(());
    }
    prop_assert!(
        answer.status.is_client_error(),
        "refusals are 4xx: {answer:?}"
    );
    let code = json["code"].as_str().unwrap_or_default();
    prop_assert!(
        !code.is_empty()
            && code.len() <= 64
            && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "a stable snake-case code: {answer:?}"
    );
    prop_assert!(json["message"].is_string(), "a message: {answer:?}");
    if let Some((_, status)) = DOCUMENTED.iter().find(|(c, _)| *c == code) {
        prop_assert_eq!(
            answer.status.as_u16(),
            *status,
            "`{}` has its documented status",
            code
        );
    }
    Ok(())
}

/// Nothing claimed, nothing offered to the queue.
fn untouched(counts: Counts) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        counts,
        Counts::default(),
        "an unauthenticated request claims and enqueues nothing"
    );
    Ok(())
}

/// Nothing enqueued, no claim held, nothing completed: what a refusal may leave.
fn nothing_left(counts: Counts, answer: &Answer) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        counts.queued,
        0,
        "a refused request enqueued messages: {:?} {:?}",
        answer,
        counts
    );
    prop_assert_eq!(
        (counts.held(), counts.completed),
        (0, 0),
        "a refused request left claims held or completed: {:?} {:?}",
        answer,
        counts
    );
    Ok(())
}

// ------------------------------------------------------------- strategies ----

/// Strings that break naive code: controls, NUL, bidi marks, BOM, noncharacters, combining
/// marks, emoji sequences, look-alikes of the values the mappings read.
const ODD: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0b",
    "\u{1}\u{1f}\u{7f}",
    "\t\n\r",
    "\u{202E}evil\u{202C}",
    "\u{200F}\u{200E}\u{2066}",
    "\u{FEFF}",
    "\u{200B}",
    "\u{2028}\u{2029}",
    "🦀",
    "👩‍👩‍👧‍👦",
    "🇩🇪",
    "\u{FFFD}",
    "\u{FFFE}",
    "\u{FFFF}",
    "\u{10FFFF}",
    "\u{E000}",
    "e\u{301}",
    "İı",
    "ß",
    "ǅ",
    "山田 太郎",
    "null",
    "true",
    "0",
    "-0",
    "NaN",
    "1e400",
    "ann@example.com",
    " Ann.Lee@Example.COM ",
    "+14155552671",
    "00491512345678",
    "(617) 555-0121",
    "a@b",
    "@",
    "\"",
    "\\",
    "\\u0000",
    "</script>",
    "${jndi:x}",
    "'; DROP TABLE",
    "contact.created",
    "contact.propertyChange",
];

/// Units repeated into very long strings.
const UNITS: &[&str] = &[
    "a", "é", "🦀", "\u{202E}", "\0", " ", "x@", "\u{FFFF}", "\"",
];

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        4 => select(ODD).prop_map(str::to_owned),
        2 => proptest::collection::vec(select(ODD), 1..5).prop_map(|p| p.concat()),
        1 => "[\\x00-\\x1f\\x7f]{1,8}",
        2 => email_ish(),
        2 => phone_ish(),
        1 => (select(UNITS), 100usize..3000).prop_map(|(u, n)| u.repeat(n)),
    ]
    .boxed()
}

fn email_ish() -> BoxedStrategy<String> {
    prop_oneof![
        "[A-Za-z0-9._%+-]{1,16}@[A-Za-z0-9-]{1,12}\\.[A-Za-z]{2,6}",
        "[^@]{0,10}@[^@]{0,10}",
        select(vec![
            "ann@example.com",
            "ANN@EXAMPLE.COM",
            " a@b.co ",
            "a@b",
            "a@@b.co",
            "ann.lee+tag@example.co.uk",
            "用户@例子.广告",
            "a@b.c",
            "\"quoted\"@example.com",
            "a@[127.0.0.1]",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn phone_ish() -> BoxedStrategy<String> {
    prop_oneof![
        "\\+?[0-9 ()./-]{0,24}",
        select(vec![
            "+14155552671",
            "+49 151 23456789",
            "0151 23456789",
            "00491512345678",
            "(617) 555-0121",
            "+1",
            "+999999999999999999999",
            "ask at reception",
            "+٤٩١٥١٢٣٤٥٦٧٨٩",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        5 => odd_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Keys the mappings read, and odd ones.
const KEYS: &[&str] = &[
    "email",
    "phone",
    "name",
    "id",
    "eventId",
    "event_id",
    "type",
    "data",
    "payload",
    "meta",
    "fields",
    "answers",
    "value",
    "label",
    "objectId",
    "propertyName",
    "propertyValue",
    "subscriptionType",
    "occurredAt",
    "timestamp",
    "",
    "\0",
    "🦀",
];

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => select(KEYS).prop_map(str::to_owned), 1 => odd_string()].boxed()
}

fn object_of(entries: Vec<(String, Value)>) -> Value {
    Value::Object(entries.into_iter().collect::<Map<String, Value>>())
}

/// Any JSON value, nested a few levels.
fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6).prop_map(object_of),
            ]
        })
        .boxed()
}

/// A value for a field a mapping reads: mostly look-alikes of what it expects.
fn field_v() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => email_ish().prop_map(Value::from),
        2 => phone_ish().prop_map(Value::from),
        3 => scalar(),
        1 => value(),
    ]
    .boxed()
}

fn id_v() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{1,32}".prop_map(Value::from),
        2 => any::<u64>().prop_map(Value::from),
        2 => odd_string().prop_map(Value::from),
        1 => (200usize..400).prop_map(|n| Value::from("i".repeat(n))),
        1 => value(),
    ]
    .boxed()
}

fn time_v() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => (0i64..4_000_000_000_000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        2 => (0i64..4_102_444_800).prop_map(|s| Value::from(DateTime::from_timestamp(s, 0).unwrap().to_rfc3339())),
        1 => select(vec!["2026-11-20T14:03:21Z", "2026-13-45T99:99:99Z", "yesterday", "", "1763647200000", "-1", "9999-12-31T23:59:59Z", "+275760-09-13T00:00:00Z"]).prop_map(Value::from),
        1 => value(),
    ]
    .boxed()
}

fn one_of_or_odd(known: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![4 => select(known).prop_map(Value::from), 1 => scalar()].boxed()
}

/// An object with each of `fields` present with probability 0.85.
fn obj(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<_>, Vec<_>) = fields
        .into_iter()
        .map(|(n, s)| (n, proptest::option::weighted(0.85, s)))
        .unzip();
    values
        .prop_map(move |found| {
            Value::Object(
                names
                    .iter()
                    .zip(found)
                    .filter_map(|(n, v)| Some(((*n).to_owned(), v?)))
                    .collect(),
            )
        })
        .boxed()
}

fn list_of(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    proptest::collection::vec(item, 0..max)
        .prop_map(Value::Array)
        .boxed()
}

const HUBSPOT_KINDS: &[&str] = &[
    "contact.creation",
    "contact.propertyChange",
    "contact.restore",
    "contact.deletion",
    "contact.privacyDeletion",
    "deal.creation",
    "company.propertyChange",
];
const HUBSPOT_PROPERTIES: &[&str] = &[
    "email",
    "phone",
    "mobilephone",
    "company",
    "firstname",
    "lastname",
    "lifecyclestage",
    "domain",
];

fn hubspot_event() -> BoxedStrategy<Value> {
    obj(vec![
        (
            "eventId",
            prop_oneof![
                3 => (1u64..6).prop_map(Value::from),
                3 => any::<u64>().prop_map(Value::from),
                1 => id_v(),
            ]
            .boxed(),
        ),
        ("subscriptionType", one_of_or_odd(HUBSPOT_KINDS)),
        (
            "objectId",
            prop_oneof![3 => (1u64..20).prop_map(Value::from), 1 => id_v()].boxed(),
        ),
        ("occurredAt", time_v()),
        ("attemptNumber", scalar()),
        ("propertyName", one_of_or_odd(HUBSPOT_PROPERTIES)),
        ("propertyValue", field_v()),
        ("portalId", scalar()),
    ])
}

fn hubspot_batch() -> BoxedStrategy<Value> {
    let size = prop_oneof![
        1 => Just(0usize),
        3 => Just(1usize),
        3 => 2usize..6,
        1 => Just(100usize),
        1 => Just(101usize),
        1 => 102usize..130,
    ];
    size.prop_flat_map(|n| proptest::collection::vec(hubspot_event(), n))
        .prop_map(Value::Array)
        .boxed()
}

/// A payload in the shape `source` sends, with odd values.
fn shaped(source: &str) -> BoxedStrategy<Value> {
    match source {
        "typeform" => {
            let answer = obj(vec![
                (
                    "type",
                    one_of_or_odd(&["email", "phone_number", "text", "choices", "boolean"]),
                ),
                ("email", field_v()),
                ("phone_number", field_v()),
                ("text", field_v()),
                ("boolean", field_v()),
                ("choices", obj(vec![("labels", list_of(field_v(), 25))])),
                (
                    "field",
                    obj(vec![(
                        "ref",
                        one_of_or_odd(&["full_name", "company", "interests", "marketing_consent"]),
                    )]),
                ),
            ]);
            obj(vec![
                ("event_id", id_v()),
                ("event_type", one_of_or_odd(&["form_response"])),
                (
                    "form_response",
                    obj(vec![
                        ("submitted_at", time_v()),
                        ("hidden", obj(vec![("utm_source", field_v())])),
                        ("answers", list_of(answer, 8)),
                    ]),
                ),
            ])
        }
        "tally" => {
            let field = obj(vec![
                (
                    "type",
                    one_of_or_odd(&[
                        "INPUT_EMAIL",
                        "INPUT_PHONE_NUMBER",
                        "INPUT_TEXT",
                        "HIDDEN_FIELDS",
                        "CHECKBOXES",
                    ]),
                ),
                ("label", one_of_or_odd(&["Name", "Company", "utm_source"])),
                ("key", one_of_or_odd(&["question_consent_4e5f"])),
                ("value", field_v()),
            ]);
            obj(vec![
                ("eventId", id_v()),
                ("createdAt", time_v()),
                ("data", obj(vec![("fields", list_of(field, 8))])),
            ])
        }
        "webflow" => obj(vec![
            ("triggerType", one_of_or_odd(&["form_submission"])),
            (
                "payload",
                obj(vec![
                    ("id", id_v()),
                    ("submittedAt", time_v()),
                    (
                        "data",
                        obj(vec![
                            ("Email", field_v()),
                            ("Phone", field_v()),
                            ("Name", field_v()),
                            ("Company", field_v()),
                            ("Newsletter", field_v()),
                        ]),
                    ),
                ]),
            ),
        ]),
        "hubspot" => hubspot_batch(),
        "pipedrive" => {
            let entry = || {
                obj(vec![
                    ("value", field_v()),
                    ("primary", prop_oneof![Just(json!(true)), scalar()].boxed()),
                ])
            };
            obj(vec![
                (
                    "meta",
                    obj(vec![
                        // The event id joins id and version: both must be text.
                        (
                            "id",
                            prop_oneof![4 => "[a-f0-9-]{1,36}".prop_map(Value::from), 1 => id_v()]
                                .boxed(),
                        ),
                        ("version", one_of_or_odd(&["2.0", "1.0"])),
                        ("timestamp", time_v()),
                        (
                            "action",
                            one_of_or_odd(&["create", "change", "delete", "added", "updated"]),
                        ),
                        ("entity_id", id_v()),
                        ("attempt", scalar()),
                    ]),
                ),
                (
                    "data",
                    obj(vec![
                        ("name", field_v()),
                        ("emails", list_of(entry(), 4)),
                        ("phones", list_of(entry(), 4)),
                    ]),
                ),
                ("previous", value()),
            ])
        }
        _ => obj(vec![
            (
                "type",
                one_of_or_odd(&[
                    "contact.signup",
                    "contact.created",
                    "contact.updated",
                    "contact.deleted",
                ]),
            ),
            ("timestamp", time_v()),
            (
                "data",
                obj(vec![
                    ("id", id_v()),
                    ("email", field_v()),
                    ("phone", field_v()),
                    ("name", field_v()),
                    ("organization", field_v()),
                    (
                        "tags",
                        prop_oneof![list_of(field_v(), 30), field_v()].boxed(),
                    ),
                    (
                        "lists",
                        prop_oneof![list_of(field_v(), 120), field_v()].boxed(),
                    ),
                    (
                        "consent",
                        obj(vec![("email", field_v()), ("sms", field_v())]),
                    ),
                    (
                        "properties",
                        obj(vec![("plan", field_v()), ("utm_source", field_v())]),
                    ),
                ]),
            ),
        ]),
    }
}

/// Payload texts with one `<X>` where a mapping reads a value: an id, a time, a contact
/// field.
fn templates(source: &str) -> &'static [&'static str] {
    match source {
        "typeform" => &[
            r#"{"event_id":<X>,"form_response":{"answers":[{"type":"email","email":"a@b.co"}]}}"#,
            r#"{"event_id":"e1","form_response":{"submitted_at":<X>,"answers":[{"type":"email","email":"a@b.co"}]}}"#,
            r#"{"event_id":"e1","form_response":{"answers":[{"type":"email","email":<X>}]}}"#,
            r#"{"event_id":"e1","form_response":{"answers":[{"type":"email","email":"a@b.co"},{"type":"text","text":<X>,"field":{"ref":"full_name"}}]}}"#,
            r#"{"event_id":"e1","form_response":{"hidden":{"utm_source":<X>},"answers":[{"type":"phone_number","phone_number":"+14155552671"}]}}"#,
        ],
        "tally" => &[
            r#"{"eventId":<X>,"data":{"fields":[{"type":"INPUT_EMAIL","value":"a@b.co"}]}}"#,
            r#"{"eventId":"e1","createdAt":<X>,"data":{"fields":[{"type":"INPUT_EMAIL","value":"a@b.co"}]}}"#,
            r#"{"eventId":"e1","data":{"fields":[{"type":"INPUT_EMAIL","value":"a@b.co"},{"label":"Name","value":<X>}]}}"#,
            r#"{"eventId":"e1","data":{"fields":[{"type":"INPUT_PHONE_NUMBER","value":<X>}]}}"#,
        ],
        "webflow" => &[
            r#"{"payload":{"id":<X>,"data":{"Email":"a@b.co"}}}"#,
            r#"{"payload":{"id":"e1","submittedAt":<X>,"data":{"Email":"a@b.co"}}}"#,
            r#"{"payload":{"id":"e1","data":{"Email":"a@b.co","Name":<X>,"Newsletter":<X>}}}"#,
            r#"{"payload":{"id":"e1","data":<X>}}"#,
        ],
        "hubspot" => &[
            r#"[{"eventId":<X>,"objectId":7,"subscriptionType":"contact.creation"}]"#,
            r#"[{"eventId":1,"objectId":<X>,"subscriptionType":"contact.creation"}]"#,
            r#"[{"eventId":1,"objectId":7,"occurredAt":<X>,"subscriptionType":"contact.creation"}]"#,
            r#"[{"eventId":1,"objectId":7,"subscriptionType":"contact.propertyChange","propertyName":"firstname","propertyValue":<X>}]"#,
            r#"[{"eventId":1,"subscriptionType":"contact.propertyChange","propertyName":"email","propertyValue":<X>}]"#,
            r#"<X>"#,
        ],
        "pipedrive" => &[
            r#"{"meta":{"id":<X>,"version":"2.0","action":"change","entity_id":"5"},"data":{"name":"Eve"}}"#,
            r#"{"meta":{"id":"m1","version":"2.0","action":"change","entity_id":<X>},"data":{"name":"Eve"}}"#,
            r#"{"meta":{"id":"m1","version":"2.0","action":"change","timestamp":<X>},"data":{"emails":[{"value":"a@b.co","primary":true}]}}"#,
            r#"{"meta":{"id":"m1","version":"2.0","action":"change"},"data":{"name":<X>,"emails":[{"value":<X>,"primary":true}]}}"#,
        ],
        _ => &[
            r#"{"type":"contact.updated","data":{"id":<X>}}"#,
            r#"{"type":"contact.updated","timestamp":<X>,"data":{"email":"a@b.co"}}"#,
            r#"{"type":"contact.updated","data":{"email":"a@b.co","name":<X>,"tags":<X>}}"#,
            r#"{"type":"contact.updated","data":{"phone":<X>,"properties":{"plan":<X>}}}"#,
            r#"{"type":<X>,"data":{"email":"a@b.co"}}"#,
            r#"<X>"#,
        ],
    }
}

/// Numbers serde_json cannot hold as they are, or only as floats.
const NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "99999999999999999999999",
    "-99999999999999999999999",
    "18446744073709551616",
    "-9223372036854775809",
    "1.7976931348623157e309",
    "4.9e-325",
    "0.000000000000000000000000000001",
    "123456789012345678901234567890.5",
    "-0",
    "-0.0",
    "1E+2",
    "1e22",
    "9007199254740993",
];

/// Texts that are not quite JSON values.
const BROKEN: &[&str] = &[
    "NaN",
    "Infinity",
    "-",
    "01",
    "1.",
    ".5",
    "+1",
    "0x10",
    "tru",
    "\"unterminated",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\u0000\"",
    "\"\\uFFFF\"",
    "\"\\uD83E\\uDD80\"",
    "\"\\x41\"",
    "\"tab\there\"",
    "'single'",
    "[1,]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "\u{FEFF}{}",
    "",
];

/// `depth` levels of one nesting kind around a value, closed or not.
fn nested(depth: usize, kind: usize) -> String {
    let (open, inner, close) = match kind % 4 {
        0 => ("[", "1", "]"),
        1 => ("{\"a\":", "\"x\"", "}"),
        2 => ("[{\"email\":\"a@b.co\",\"x\":", "null", "}]"),
        _ => ("[", "", ""),
    };
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn filler() -> BoxedStrategy<String> {
    let depth = prop_oneof![
        4 => 120usize..=136,
        1 => 1usize..20,
        1 => 500usize..5000,
        1 => Just(100_000usize),
    ];
    prop_oneof![
        3 => (depth, 0usize..4).prop_map(|(d, k)| nested(d, k)),
        2 => select(NUMBERS).prop_map(str::to_owned),
        2 => select(BROKEN).prop_map(str::to_owned),
        3 => odd_string().prop_map(|s| Value::String(s).to_string()),
        2 => value().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// Raw JSON-ish texts serde_json's `Value` cannot produce: nesting near and beyond the
/// recursion limit, huge numbers, broken literals, in the places a mapping reads.
fn raw_text(source: &'static str) -> BoxedStrategy<Vec<u8>> {
    (select(templates(source)), filler())
        .prop_map(|(template, x)| template.replace("<X>", &x).into_bytes())
        .boxed()
}

/// `value` as JSON text where every object repeats its first key, before (the real value
/// wins) or after (the duplicate wins) its entries.
fn with_duplicate_keys(value: &Value, dup: &Value, after: bool, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let first = map.keys().next().cloned();
            let mut entries: Vec<String> = Vec::new();
            let name = |k: &str| format!("{}:", Value::String(k.to_owned()));
            if let (Some(k), false) = (&first, after) {
                entries.push(format!("{}{dup}", name(k)));
            }
            for (k, v) in map {
                let mut text = name(k);
                with_duplicate_keys(v, dup, after, &mut text);
                entries.push(text);
            }
            if let (Some(k), true) = (&first, after) {
                entries.push(format!("{}{dup}", name(k)));
            }
            out.push_str(&entries.join(","));
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            let mut parts = Vec::new();
            for item in items {
                let mut text = String::new();
                with_duplicate_keys(item, dup, after, &mut text);
                parts.push(text);
            }
            out.push_str(&parts.join(","));
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn fixture(source: &str) -> Value {
    serde_json::from_str(sample(source).unwrap().body).unwrap()
}

fn string_leaves(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(string_leaves).sum(),
        Value::Object(map) => map.values().map(string_leaves).sum(),
        _ => 0,
    }
}

fn replace_string_leaves(value: &mut Value, with: &mut impl Iterator<Item = Option<Value>>) {
    match value {
        Value::String(_) => {
            if let Some(Some(new)) = with.next() {
                *value = new;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| replace_string_leaves(v, with)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| replace_string_leaves(v, with)),
        _ => {}
    }
}

/// A leaf for a real-shaped payload: bounded so that the payload stays under the body limit.
fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop_oneof![
            4 => any::<String>(),
            4 => select(ODD).prop_map(str::to_owned),
            2 => email_ish(),
            2 => phone_ish(),
            1 => (select(UNITS), 100usize..1000).prop_map(|(u, n)| u.repeat(n)),
        ]
        .prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => proptest::collection::vec(scalar(), 0..5).prop_map(Value::Array),
        1 => proptest::collection::vec((key(), scalar()), 0..4).prop_map(object_of),
    ]
    .boxed()
}

/// The source's fixture with some string leaves replaced.
fn real_shaped(source: &str) -> BoxedStrategy<Value> {
    let base = fixture(source);
    let n = string_leaves(&base);
    proptest::collection::vec(proptest::option::weighted(0.4, leaf()), n)
        .prop_map(move |replacements| {
            let mut v = base.clone();
            replace_string_leaves(&mut v, &mut replacements.into_iter());
            v
        })
        .boxed()
}

/// `value` with a `zz_pad` text (in the first event of a batch) making its JSON exactly
/// `len` bytes, when it can.
fn padded(mut value: Value, len: usize) -> Vec<u8> {
    let target = match &mut value {
        Value::Array(items) => items.first_mut(),
        other => Some(other),
    };
    if let Some(Value::Object(map)) = target {
        map.insert("zz_pad".into(), Value::from(""));
    }
    let size = serde_json::to_vec(&value).unwrap().len();
    let target = match &mut value {
        Value::Array(items) => items.first_mut(),
        other => Some(other),
    };
    if let Some(Value::Object(map)) = target {
        map.insert(
            "zz_pad".into(),
            Value::from("x".repeat(len.saturating_sub(size))),
        );
    }
    serde_json::to_vec(&value).unwrap()
}

/// Every kind of body, for `source`.
fn body(source: &'static str) -> BoxedStrategy<Vec<u8>> {
    let near_limit = select(vec![
        MAX_BODY_BYTES - 1,
        MAX_BODY_BYTES,
        MAX_BODY_BYTES + 1,
        MAX_BODY_BYTES + 2,
        MAX_BODY_BYTES + 4096,
    ]);
    Union::new_weighted(vec![
        (2, proptest::collection::vec(any::<u8>(), 0..300).boxed()),
        (
            2,
            value()
                .prop_map(|v| serde_json::to_vec(&v).unwrap())
                .boxed(),
        ),
        (
            6,
            shaped(source)
                .prop_map(|v| serde_json::to_vec(&v).unwrap())
                .boxed(),
        ),
        (3, raw_text(source)),
        (
            2,
            (shaped(source), value(), any::<bool>())
                .prop_map(|(v, dup, after)| {
                    let mut text = String::new();
                    with_duplicate_keys(&v, &dup, after, &mut text);
                    text.into_bytes()
                })
                .boxed(),
        ),
        (
            2,
            real_shaped(source)
                .prop_map(|v| serde_json::to_vec(&v).unwrap())
                .boxed(),
        ),
        (
            1,
            (any::<prop::sample::Index>(), any::<u8>(), any::<bool>())
                .prop_map(move |(at, byte, cut)| {
                    let mut b = sample(source).unwrap().body.as_bytes().to_vec();
                    let i = at.index(b.len());
                    if cut {
                        b.truncate(i);
                    } else {
                        b[i] = byte;
                    }
                    b
                })
                .boxed(),
        ),
        (
            1,
            (real_shaped(source), near_limit)
                .prop_map(|(v, len)| padded(v, len))
                .boxed(),
        ),
    ])
    .boxed()
}

/// Names of the headers that carry a signature, a timestamp, an id or credentials.
const SIGNATURE_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-hubspot-signature-v3",
    "x-hubspot-request-timestamp",
    "typeform-signature",
    "tally-signature",
    "x-webflow-signature",
    "x-webflow-timestamp",
    "authorization",
];

/// A header value; times relative to the moment of sending are resolved then.
#[derive(Debug, Clone)]
enum Val {
    Bytes(Vec<u8>),
    NowSecs(i64),
    NowMillis(i64),
}

impl Val {
    fn resolve(&self, now: DateTime<Utc>) -> HeaderValue {
        match self {
            Val::Bytes(b) => HeaderValue::from_bytes(b).unwrap(),
            Val::NowSecs(d) => HeaderValue::from(now.timestamp() + d),
            Val::NowMillis(d) => HeaderValue::from(now.timestamp_millis() + d),
        }
    }
}

/// What `HeaderValue::from_bytes` takes: tab, visible ASCII, space, obs-text.
fn header_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff,],
        0..max,
    )
    .boxed()
}

fn b64ish() -> BoxedStrategy<String> {
    "[A-Za-z0-9+/]{0,64}={0,2}".boxed()
}

fn header_value() -> BoxedStrategy<Val> {
    let text = |s: BoxedStrategy<String>| s.prop_map(|s| Val::Bytes(s.into_bytes())).boxed();
    prop_oneof![
        3 => header_bytes(80).prop_map(Val::Bytes),
        1 => text(b64ish().prop_map(|b| format!("v1,{b}")).boxed()),
        1 => text(
            proptest::collection::vec(b64ish().prop_map(|b| format!("v1,{b}")), 1..5)
                .prop_map(|v| v.join(" "))
                .boxed()
        ),
        1 => text(b64ish().prop_map(|b| format!("sha256={b}")).boxed()),
        1 => text("[0-9a-f]{0,70}".boxed()),
        1 => text(b64ish()),
        1 => text(b64ish().prop_map(|b| format!("Basic {b}")).boxed()),
        1 => text(select(vec!["Basic cmVsYXk6d3Jvbmc=", "Basic !!!", "Basic ", "Bearer x", "basic cmVsYXk6", "Basic Og=="]).prop_map(str::to_owned).boxed()),
        2 => (-400i64..400).prop_map(Val::NowSecs),
        2 => (-400_000i64..400_000).prop_map(Val::NowMillis),
        1 => text(select(vec!["0", "-1", "99999999999999999", "9999999999999999", "1e10", " 1 ", "NaN"]).prop_map(str::to_owned).boxed()),
        1 => text(select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/cloudevents+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "json",
            ";",
            "",
        ]).prop_map(str::to_owned).boxed()),
        1 => (select(vec!["A", "v1,", "=", " "]), 4_000usize..70_000)
            .prop_map(|(u, n)| Val::Bytes(u.repeat(n).into_bytes())),
    ]
    .boxed()
}

fn header_name() -> BoxedStrategy<HeaderName> {
    prop_oneof![
        6 => select(SIGNATURE_HEADERS).prop_map(HeaderName::from_static),
        2 => select(vec!["content-type", "host", "x-forwarded-proto", "x-request-id", "user-agent"]).prop_map(HeaderName::from_static),
        1 => "[a-z][a-z0-9-]{0,20}".prop_map(|n| HeaderName::try_from(n).unwrap()),
    ]
    .boxed()
}

/// Arbitrary header sets: any of the headers any scheme reads, repeated or not.
fn headers() -> BoxedStrategy<Vec<(HeaderName, Val)>> {
    proptest::collection::vec((header_name(), header_value()), 0..12).boxed()
}

// -------------------------------------------------- property 1: unsigned ----

/// Where a request goes.
#[derive(Debug, Clone)]
enum Target {
    /// `POST /hooks/<route>/<segment>` where the segment names the source (maybe
    /// percent-encoded) on its own route.
    Own(String),
    /// Any other method or path.
    Other(Method, String),
}

fn percent_encode_one(name: &str, at: usize) -> String {
    name.char_indices()
        .map(|(i, c)| {
            if i == at % name.len().max(1) {
                format!("%{:02X}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn own_target(source: &'static str) -> BoxedStrategy<Target> {
    prop_oneof![
        4 => Just(Target::Own(hook_path(own_segment(source), source))),
        1 => any::<usize>().prop_map(move |at| Target::Own(
            hook_path(own_segment(source), &percent_encode_one(source, at))
        )),
        1 => "[a-z0-9=&]{0,12}".prop_map(move |q| Target::Own(
            format!("{}?{q}", hook_path(own_segment(source), source))
        )),
    ]
    .boxed()
}

fn method() -> BoxedStrategy<Method> {
    prop_oneof![
        6 => Just(Method::POST),
        1 => select(vec![Method::GET, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS]),
        1 => "[A-Z]{1,10}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
    .boxed()
}

/// Paths that do not lead to a webhook source on its own route.
fn other_path(source: &'static str) -> BoxedStrategy<String> {
    let segment = prop_oneof![
        Just("forms"),
        Just("crm"),
        Just("events"),
        Just("FORMS"),
        Just(""),
    ];
    let name = prop_oneof![
        3 => select(&SOURCES[..]).prop_map(str::to_owned),
        1 => select(vec!["app-contact", "app-staff", "TypeForm", "typeform%20", "unknown", "", "..", "%2e%2e", "a%2Fb", "%00", "%FF", "%C3%28", "%E2%80%AE", "%F0%9F%A6%80", "hub%20spot"]).prop_map(str::to_owned),
        1 => "[A-Za-z0-9._~-]{1,30}",
    ];
    prop_oneof![
        3 => Just(hook_path(other_segment(source), source)),
        4 => (segment, name).prop_map(|(r, n)| format!("/hooks/{r}/{n}")),
        1 => select(vec!["/", "/hooks", "/hooks/", "/hooks/forms", "/hooks/forms/", "/hooks/crm/typeform/x", "/events", "/health", "//hooks/forms/typeform", "/hooks//typeform", "/hooks/forms/typeform/"]).prop_map(str::to_owned),
        1 => "/[A-Za-z0-9/%._-]{0,40}".prop_filter("valid percent escapes", |p| p.split('%').skip(1).all(|s| s.len() >= 2 && s.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))),
    ]
    .boxed()
}

fn target(source: &'static str) -> BoxedStrategy<Target> {
    prop_oneof![
        3 => own_target(source),
        1 => own_target(source).prop_map(|t| match t {
            // The source's own path with another method.
            Target::Own(path) => Target::Other(Method::GET, path),
            other => other,
        }),
        2 => (method(), other_path(source)).prop_map(|(m, p)| Target::Other(m, p)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Unsigned {
    target: Target,
    headers: Vec<(HeaderName, Val)>,
    body: Blob,
}

fn unsigned_request(u: &Unsigned, now: DateTime<Utc>) -> Req {
    let (method, path) = match &u.target {
        Target::Own(path) => (Method::POST, path.clone()),
        Target::Other(method, path) => (method.clone(), path.clone()),
    };
    Req {
        method,
        path,
        headers: u
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.resolve(now)))
            .collect(),
        body: u.body.0.clone(),
    }
}

fn is_json_content_type(value: Option<&HeaderValue>) -> bool {
    let Some(text) = value.and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn arbitrary_unsigned_requests(source: &'static str) {
    let rt = runtime();
    let strategy =
        (target(source), headers(), body(source)).prop_map(|(target, headers, body)| Unsigned {
            target,
            headers,
            body: Blob(body),
        });
    check("arbitrary unsigned requests", strategy, |u| {
        rt.block_on(async {
            let h = Harness::new();
            let req = unsigned_request(&u, Utc::now());
            let answer = h.send(&req).await;
            well_formed(&req, &answer)?;
            untouched(h.counts())?;
            if let Target::Own(..) = u.target {
                // It reached the source: refused for its size, its type or its signature.
                let expected = if req.body.len() > MAX_BODY_BYTES {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else if !is_json_content_type(req.first(&CONTENT_TYPE)) {
                    StatusCode::UNSUPPORTED_MEDIA_TYPE
                } else {
                    StatusCode::UNAUTHORIZED
                };
                prop_assert_eq!(answer.status, expected, "{:?}", answer);
                if expected == StatusCode::UNAUTHORIZED {
                    prop_assert!(SIGNATURE_CODES.contains(&answer.code().as_str()));
                }
            } else if req.path != "/health" {
                prop_assert!(!answer.status.is_success(), "{answer:?}");
            }
            Ok(())
        })
    });
}

/// The source names a decoded path segment may be, on `route`.
fn names_a_source_on(route: &str, path: &str) -> bool {
    let Some(rest) = path
        .split('?')
        .next()
        .and_then(|p| p.strip_prefix("/hooks/"))
    else {
        return false;
    };
    let Some((r, name)) = rest.split_once('/') else {
        return false;
    };
    let decoded = percent_encoding::percent_decode_str(name).decode_utf8();
    r == route && decoded.is_ok_and(|n| mapping_route(&n).is_some_and(|own| segment(own) == route))
}

#[test]
fn unknown_sources_and_paths() {
    let rt = runtime();
    let strategy = (
        select(&SOURCES[..]).prop_flat_map(|s| (method(), other_path(s))),
        headers(),
        prop_oneof![body("standard"), body("hubspot")],
    );
    check(
        "unknown sources and paths",
        strategy,
        |((method, path), headers, body)| {
            rt.block_on(async {
                let h = Harness::new();
                let u = Unsigned {
                    target: Target::Other(method, path),
                    headers,
                    body: Blob(body),
                };
                let req = unsigned_request(&u, Utc::now());
                let answer = h.send(&req).await;
                well_formed(&req, &answer)?;
                untouched(h.counts())?;
                if req.method == Method::POST
                    && !names_a_source_on("forms", &req.path)
                    && !names_a_source_on("crm", &req.path)
                {
                    let mut expected = vec![if req.path == "/health" {
                        StatusCode::METHOD_NOT_ALLOWED
                    } else {
                        StatusCode::NOT_FOUND
                    }];
                    // A body over the limit may be refused before the path is looked at.
                    if req.body.len() > MAX_BODY_BYTES + 1 {
                        expected.push(StatusCode::PAYLOAD_TOO_LARGE);
                    }
                    prop_assert!(expected.contains(&answer.status), "{answer:?}");
                }
                Ok(())
            })
        },
    );
}

// ------------------------------------------- property 2: wrongly signed ----

#[derive(Debug, Clone)]
enum Tamper {
    /// Signed with another secret of the same scheme.
    WrongSecret(String),
    /// One byte of the body changed (or one appended) after signing.
    BodyChanged(prop::sample::Index, u8),
    /// Signed this many seconds before (or after) now: outside the 5-minute window.
    Stale(i64),
    /// Signed as another source signs.
    OtherSource(&'static str),
    /// One signature header left out.
    Dropped(prop::sample::Index),
    /// One signature header preceded by a garbage value of the same name.
    GarbageFirst(prop::sample::Index, Vec<u8>),
    /// Signed for another URL (HubSpot signs it).
    OtherUrl(String),
    /// Genuine, but sent to the other route.
    WrongRoute,
}

fn wrong_secret(source: &'static str) -> BoxedStrategy<String> {
    let real = secret(source);
    let near: Vec<String> = vec![
        format!("{real}x"),
        real[..real.len() - 1].to_owned(),
        real.to_uppercase(),
    ];
    prop_oneof![
        2 => select(near),
        2 => "[!-~]{1,40}",
        // Standard Webhooks secrets: whsec_ and base64.
        2 => proptest::collection::vec("[A-Za-z0-9+/]{4}", 1..12)
            .prop_map(|s| format!("whsec_{}", s.concat())),
        1 => "[a-z]{1,8}:[!-~]{1,20}",
    ]
    .prop_filter("another usable secret", move |s| {
        s != real && verifier(source, s).is_some()
    })
    .boxed()
}

fn tamper(source: &'static str) -> BoxedStrategy<Tamper> {
    let mut arms: Vec<(u32, BoxedStrategy<Tamper>)> = vec![
        (
            3,
            wrong_secret(source).prop_map(Tamper::WrongSecret).boxed(),
        ),
        (
            2,
            select(&SOURCES[..])
                .prop_filter("another source", move |s| *s != source)
                .prop_map(Tamper::OtherSource)
                .boxed(),
        ),
        (
            2,
            any::<prop::sample::Index>()
                .prop_map(Tamper::Dropped)
                .boxed(),
        ),
        (
            2,
            (any::<prop::sample::Index>(), header_bytes(40))
                .prop_map(|(i, b)| Tamper::GarbageFirst(i, b))
                .boxed(),
        ),
        (1, Just(Tamper::WrongRoute).boxed()),
    ];
    if scheme(source) != "http_basic" {
        arms.push((
            3,
            (any::<prop::sample::Index>(), any::<u8>())
                .prop_map(|(i, b)| Tamper::BodyChanged(i, b))
                .boxed(),
        ));
    }
    if has_timestamp(source) {
        arms.push((
            3,
            prop_oneof![-86_400i64..=-310, 310i64..=86_400]
                .prop_map(Tamper::Stale)
                .boxed(),
        ));
    }
    if scheme(source) == "hubspot" {
        arms.push((
            2,
            select(vec!["?x=1", "?a=%3A", "?utm=1&b=2"])
                .prop_map(|s| Tamper::OtherUrl(s.to_owned()))
                .boxed(),
        ));
    }
    Union::new_weighted(arms).boxed()
}

fn delivery_id() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "msg_[A-Za-z0-9]{20,27}",
        2 => "[!-~]{1,40}",
        1 => "[!-~][ -~]{0,60}[!-~]",
        1 => (257usize..2000).prop_map(|n| "m".repeat(n)),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Tampered {
    tamper: Tamper,
    body: Blob,
    id: String,
}

fn wrongly_signed_requests(source: &'static str) {
    let rt = runtime();
    let strategy =
        (tamper(source), body(source), delivery_id()).prop_map(|(tamper, body, id)| Tampered {
            tamper,
            body: Blob(body),
            id,
        });
    check("wrongly signed requests", strategy, |t| {
        rt.block_on(async {
            let h = Harness::new();
            let now = Utc::now();
            let own = hook_path(own_segment(source), source);
            let genuine = |body: &[u8]| sign(source, secret(source), &own, body, now, &t.id);
            let mut body = t.body.0.clone();
            let mut path = own.clone();
            let mut expected_code: Option<&str> = None;
            let headers: Vec<(HeaderName, HeaderValue)> = match &t.tamper {
                Tamper::WrongSecret(other) => {
                    expected_code = Some("signature_invalid");
                    to_list(&sign(source, other, &own, &body, now, &t.id))
                }
                Tamper::BodyChanged(at, byte) => {
                    expected_code = Some("signature_invalid");
                    let headers = to_list(&genuine(&body));
                    if body.is_empty() || body[at.index(body.len())] == *byte {
                        body.push(b' ');
                    } else {
                        let i = at.index(body.len());
                        body[i] = *byte;
                    }
                    headers
                }
                Tamper::Stale(secs) => {
                    expected_code = Some("timestamp_stale");
                    to_list(&sign(
                        source,
                        secret(source),
                        &own,
                        &body,
                        now + TimeDelta::seconds(*secs),
                        &t.id,
                    ))
                }
                Tamper::OtherSource(other) => {
                    let other_path = hook_path(own_segment(other), other);
                    to_list(&sign(other, secret(other), &other_path, &body, now, &t.id))
                }
                Tamper::Dropped(i) => {
                    expected_code = Some("signature_missing");
                    let mut headers = to_list(&genuine(&body));
                    headers.remove(i.index(headers.len()));
                    headers
                }
                Tamper::GarbageFirst(i, garbage) => {
                    let mut headers = to_list(&genuine(&body));
                    let name = headers[i.index(headers.len())].0.clone();
                    headers.insert(0, (name, HeaderValue::from_bytes(garbage).unwrap()));
                    headers
                }
                Tamper::OtherUrl(suffix) => {
                    expected_code = Some("signature_invalid");
                    path = format!("{own}{suffix}");
                    to_list(&genuine(&body))
                }
                Tamper::WrongRoute => {
                    path = hook_path(other_segment(source), source);
                    expected_code = Some("unknown_source");
                    to_list(&genuine(&body))
                }
            };
            let mut req = Req::post(path, &HeaderMap::new(), body);
            req.headers.extend(headers);
            let req = req.with_content_type(Some("application/json"));
            let answer = h.send(&req).await;
            well_formed(&req, &answer)?;
            untouched(h.counts())?;
            if req.body.len() > MAX_BODY_BYTES + 1 {
                // Over the limit by more than a byte: refused before the path is looked at.
                prop_assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", answer);
            } else if matches!(t.tamper, Tamper::WrongRoute) {
                prop_assert_eq!(answer.status, StatusCode::NOT_FOUND, "{:?}", answer);
            } else if req.body.len() > MAX_BODY_BYTES {
                prop_assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", answer);
            } else {
                prop_assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer);
                prop_assert!(SIGNATURE_CODES.contains(&answer.code().as_str()));
            }
            if let Some(code) = expected_code
                && (req.body.len() <= MAX_BODY_BYTES
                    || (matches!(t.tamper, Tamper::WrongRoute)
                        && req.body.len() == MAX_BODY_BYTES + 1))
            {
                prop_assert_eq!(answer.code(), code, "{:?}", answer);
            }
            Ok(())
        })
    });
}

fn to_list(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

// ------------------------------------------- property 3: validly signed ----

fn json_content_type() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        2 => Just(Some("application/json")),
        1 => Just(None),
        1 => select(vec![
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/vnd.hubspot+json"),
            Some("application/json;charset=UTF-8;x=y"),
        ]),
    ]
    .boxed()
}

/// Mostly JSON content types, sometimes another one (then 415 is the answer).
fn any_content_type() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        7 => json_content_type(),
        1 => select(vec![
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some(""),
        ]),
    ]
    .boxed()
}

/// Unrelated headers a proxy or sender adds.
fn extra_headers() -> BoxedStrategy<Vec<(HeaderName, HeaderValue)>> {
    proptest::collection::vec(
        (
            select(vec![
                "x-request-id",
                "user-agent",
                "accept",
                "x-amzn-trace-id",
                "x-custom",
            ]),
            header_bytes(60),
        )
            .prop_map(|(n, v)| {
                (
                    HeaderName::from_static(n),
                    HeaderValue::from_bytes(&v).unwrap(),
                )
            }),
        0..3,
    )
    .boxed()
}

#[derive(Debug, Clone)]
struct Signed {
    body: Blob,
    content_type: Option<&'static str>,
    id: String,
    extra: Vec<(HeaderName, HeaderValue)>,
}

fn signed_request(source: &str, s: &Signed) -> Req {
    let path = hook_path(own_segment(source), source);
    let headers = sign(source, secret(source), &path, &s.body.0, Utc::now(), &s.id);
    let mut req = Req::post(path, &headers, s.body.0.clone()).with_content_type(s.content_type);
    req.headers.extend(s.extra.iter().cloned());
    req
}

/// Events a body holds, where that can be known without the mapping: one, or a batch's
/// items (over-limit batches aside).
fn events_in(source: &str, body: &[u8]) -> Option<usize> {
    let payload: Value = serde_json::from_slice(body).ok()?;
    match (source, payload) {
        ("hubspot", Value::Array(items)) => Some(items.len()),
        ("hubspot", _) => None,
        _ => Some(1),
    }
}

fn is_over_limit(source: &str, body: &[u8]) -> bool {
    body.len() > MAX_BODY_BYTES || events_in(source, body).is_some_and(|n| n > 100)
}

/// What must hold after one validly signed delivery: never 401 or 5xx; a refusal is one of
/// the deliberate 4xx, enqueues nothing and holds no claim; a 2xx enqueues accepted ×
/// vendors messages and accounts for every event.
fn validly_signed_outcome(
    source: &str,
    req: &Req,
    answer: &Answer,
    counts: Counts,
) -> Result<(), TestCaseError> {
    well_formed(req, answer)?;
    prop_assert_ne!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a genuine signature refused: {:?}",
        answer
    );
    let body = &req.body;
    let is_json = serde_json::from_slice::<Value>(body).is_ok();
    let json_type = is_json_content_type(req.first(&CONTENT_TYPE));
    if body.len() > MAX_BODY_BYTES {
        prop_assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", answer);
    } else if !json_type {
        prop_assert_eq!(
            (answer.status, answer.code()),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type".to_owned()
            ),
            "a type other than JSON"
        );
    } else if !is_json {
        prop_assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "invalid_json".to_owned()),
            "a body that is not JSON"
        );
    } else {
        prop_assert_ne!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "JSON answered invalid_json: {:?}",
            answer
        );
    }
    if answer.status.is_success() {
        let accepted = answer.count("accepted");
        prop_assert_eq!(
            counts.queued,
            accepted * vendors(source),
            "one message per accepted event and vendor: {:?} {:?}",
            answer,
            counts
        );
        prop_assert_eq!(
            (counts.completed, counts.released, counts.held()),
            (0, 0, accepted),
            "every accepted event's claim stays as written (one write; never confirmed), none released: {:?} {:?}",
            answer,
            counts
        );
        if let Some(events) = events_in(source, body) {
            let judged = [
                "accepted",
                "duplicates",
                "conflicts",
                "combined",
                "ignored",
                "refused",
            ]
            .iter()
            .map(|f| answer.count(f))
            .sum::<usize>();
            prop_assert_eq!(judged, events, "every event is accounted for: {:?}", answer);
        }
    } else {
        let code = answer.code();
        let deliberate = match answer.status.as_u16() {
            422 => [
                "contact_unidentifiable",
                "field_invalid",
                "payload_not_event_list",
            ]
            .contains(&code.as_str()),
            409 => code == "event_id_reused",
            400 => code == "invalid_json",
            415 => !json_type,
            // Over-limit input (body, batch, event): any stable code.
            413 => true,
            _ => is_over_limit(source, body),
        };
        prop_assert!(deliberate, "not a deliberate refusal: {answer:?}");
        nothing_left(counts, answer)?;
    }
    Ok(())
}

/// The same delivery again (signed anew, same delivery id): never `event_in_progress`; a
/// 2xx comes back as all duplicates, the events its first copy claimed enqueued again (the
/// claims were never confirmed), a refusal as the same refusal.
async fn resend_is_stable(
    h: &Harness,
    source: &str,
    signed: &Signed,
    first: &Answer,
) -> Result<(), TestCaseError> {
    let before = h.counts();
    let req = signed_request(source, signed);
    let again = h.send(&req).await;
    well_formed(&req, &again)?;
    prop_assert_ne!(
        again.code(),
        "event_in_progress",
        "a claim was left held by {:?}",
        first
    );
    if first.status.is_success() {
        prop_assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again);
        prop_assert_eq!(
            (again.count("accepted"), again.count("duplicates")),
            (0, first.count("accepted") + first.count("duplicates")),
            "a repeat is all duplicates: first {:?}, again {:?}",
            first,
            again
        );
        prop_assert_eq!(
            h.counts().queued,
            before.queued + first.count("accepted") * vendors(source),
            "a repeat enqueues again what the first claimed, nothing more"
        );
    } else {
        prop_assert_eq!(
            (again.status, again.code()),
            (first.status, first.code()),
            "a refusal is stable"
        );
        nothing_left(h.counts(), &again)?;
    }
    Ok(())
}

fn validly_signed_arbitrary_bodies(source: &'static str) {
    let rt = runtime();
    let strategy = (
        body(source),
        any_content_type(),
        delivery_id(),
        extra_headers(),
    )
        .prop_map(|(body, content_type, id, extra)| Signed {
            body: Blob(body),
            content_type,
            id,
            extra,
        });
    check("validly signed arbitrary bodies", strategy, |signed| {
        rt.block_on(async {
            let h = Harness::new();
            let req = signed_request(source, &signed);
            let answer = h.send(&req).await;
            validly_signed_outcome(source, &req, &answer, h.counts())?;
            resend_is_stable(&h, source, &signed, &answer).await
        })
    });
}

// --------------------------------------- property 4: real-shaped payloads ----

fn validly_signed_real_shaped_payloads(source: &'static str) {
    let rt = runtime();
    let strategy = (real_shaped(source), json_content_type(), delivery_id()).prop_map(
        |(payload, content_type, id)| Signed {
            body: Blob(serde_json::to_vec(&payload).unwrap()),
            content_type,
            id,
            extra: Vec::new(),
        },
    );
    check("validly signed real-shaped payloads", strategy, |signed| {
        rt.block_on(async {
            let h = Harness::new();
            let req = signed_request(source, &signed);
            let answer = h.send(&req).await;
            validly_signed_outcome(source, &req, &answer, h.counts())?;
            if req.body.len() <= MAX_BODY_BYTES {
                prop_assert!(
                    answer.status == StatusCode::ACCEPTED
                        || answer.status == StatusCode::UNPROCESSABLE_ENTITY,
                    "a real-shaped payload is accepted or unusable: {answer:?}"
                );
            }
            resend_is_stable(&h, source, &signed, &answer).await
        })
    });
}

// ------------------------------------------------------------ the tests ----

macro_rules! per_source {
    ($($module:ident => $source:literal,)*) => {
        $(
            mod $module {
                #[test]
                fn arbitrary_unsigned_requests() {
                    super::arbitrary_unsigned_requests($source);
                }
                #[test]
                fn wrongly_signed_requests() {
                    super::wrongly_signed_requests($source);
                }
                #[test]
                fn validly_signed_arbitrary_bodies() {
                    super::validly_signed_arbitrary_bodies($source);
                }
                #[test]
                fn validly_signed_real_shaped_payloads() {
                    super::validly_signed_real_shaped_payloads($source);
                }
            }
        )*
        const FUZZED: &[&str] = &[$($source),*];
    };
}

per_source! {
    typeform => "typeform",
    tally => "tally",
    webflow => "webflow",
    hubspot => "hubspot",
    pipedrive => "pipedrive",
    standard => "standard",
}

#[test]
fn every_built_in_webhook_source_is_fuzzed() {
    let webhook_sources: BTreeSet<&str> = MAPPINGS
        .sources()
        .filter(|s| s.signature.is_some())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(webhook_sources, FUZZED.iter().copied().collect());
    assert_eq!(webhook_sources, SOURCES.iter().copied().collect());
    for source in SOURCES {
        assert!(sample(source).is_some(), "{source} has a fixture");
    }
}

/// The fixtures themselves, validly signed, are accepted: the generators start from
/// payloads the relay takes.
#[test]
fn the_fixtures_are_accepted_as_signed() {
    runtime().block_on(async {
        for source in SOURCES {
            let h = Harness::new();
            let signed = Signed {
                body: Blob(sample(source).unwrap().body.as_bytes().to_vec()),
                content_type: Some("application/json"),
                id: format!("msg_fixture_{source}"),
                extra: Vec::new(),
            };
            let req = signed_request(source, &signed);
            let answer = h.send(&req).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{source}: {answer:?}");
            validly_signed_outcome(source, &req, &answer, h.counts()).unwrap();
        }
    });
}

// ------------------------------------------- regressions found by the fuzz ----

/// Found by `arbitrary_unsigned_requests`: a method a route does not take was answered by
/// axum's own 405 with an empty body, not the JSON error body every refusal has.
#[test]
fn a_method_a_route_does_not_take_is_answered_json() {
    runtime().block_on(async {
        let h = Harness::new();
        for (method, path) in [
            (Method::GET, "/hooks/forms/typeform"),
            (Method::PUT, "/hooks/crm/hubspot"),
            (Method::POST, "/health"),
        ] {
            let req = Req {
                method,
                path: path.to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
            };
            let answer = h.send(&req).await;
            assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{req:?}");
            assert_eq!(
                answer.content_type.as_deref(),
                Some("application/json"),
                "{req:?}: {answer:?}"
            );
            assert_eq!(answer.code(), "method_not_allowed", "{req:?}: {answer:?}");
            assert_eq!(h.counts(), Counts::default());
        }
    });
}

/// Found by `arbitrary_unsigned_requests`: a source segment that percent-decodes to
/// invalid UTF-8 was refused by axum's `Path` extractor with `400 text/plain` ("Invalid
/// URL: Invalid UTF-8 in `source`"); it names no source: 404 `unknown_source`, in JSON.
#[test]
fn a_source_name_that_is_not_utf8_is_an_unknown_source() {
    runtime().block_on(async {
        let h = Harness::new();
        for path in ["/hooks/forms/%FF", "/hooks/crm/%C3%28"] {
            let req = Req::post(path.to_owned(), &HeaderMap::new(), b"{}".to_vec())
                .with_content_type(Some("application/json"));
            let answer = h.send(&req).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}: {answer:?}");
            assert_eq!(
                answer.content_type.as_deref(),
                Some("application/json"),
                "{path}: {answer:?}"
            );
            assert_eq!(answer.code(), "unknown_source", "{path}: {answer:?}");
            assert_eq!(h.counts(), Counts::default());
        }
    });
}

/// Found by `validly_signed_arbitrary_bodies` (about one run in a few thousand cases): a
/// HubSpot batch carrying the same event twice. The copy met the first one's claim — held
/// by the same request — in progress, waited the full second for it and the delivery was
/// answered `409 event_in_progress` after the first copy had been enqueued (3 messages)
/// and completed: a refusal that enqueued. Now the copy is a duplicate (same meaning) or a
/// conflict (another meaning) of the first, and the repeat of the delivery is all
/// duplicates.
#[test]
fn a_batch_repeating_an_event_counts_the_copy_without_waiting_on_itself() {
    runtime().block_on(async {
        let event = json!({"eventId": 1, "objectId": 7, "occurredAt": 1_763_647_200_000_i64,
                           "subscriptionType": "contact.creation"});
        let mut other = event.clone();
        other["objectId"] = json!(8);
        for (batch, duplicates, conflicts) in
            [(json!([event, event]), 1, 0), (json!([event, other]), 0, 1)]
        {
            let h = Harness::new();
            let signed = Signed {
                body: Blob(serde_json::to_vec(&batch).unwrap()),
                content_type: Some("application/json"),
                id: "msg_repeat".into(),
                extra: Vec::new(),
            };
            let req = signed_request("hubspot", &signed);
            let started = std::time::Instant::now();
            let answer = h.send(&req).await;
            let (elapsed, counts) = (started.elapsed(), h.counts());
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?} {counts:?}");
            assert_eq!(
                (
                    answer.count("accepted"),
                    answer.count("duplicates"),
                    answer.count("conflicts")
                ),
                (1, duplicates, conflicts),
                "{answer:?}"
            );
            assert!(
                elapsed < Duration::from_millis(500),
                "no wait on its own claim: {elapsed:?}"
            );
            validly_signed_outcome("hubspot", &req, &answer, counts).unwrap();
            resend_is_stable(&h, "hubspot", &signed, &answer)
                .await
                .unwrap();
        }
    });
}
