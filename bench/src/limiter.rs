//! The shared rate limiter under contention: many workers, each with its own limiter
//! handle (as separate Lambda instances have), book Hood permits on one DynamoDB Local item
//! through the worker's own call gate (`LimiterGate`: `reserve(MAX_SLOT_WAIT)`, then sleep
//! until the slot) and then call a recording server that timestamps every request and
//! answers 429 as Hood would (fixed windows of 10 per second and 150 per minute, aligned
//! to whole seconds and minutes; refused requests do not count). A permit the gate cannot
//! book within `MAX_SLOT_WAIT` is retried after the wait it names plus the worker's jitter
//! (`retry::with_jitter`), as the worker hands its message back to the queue; a 429
//! penalises the shared schedule, as the worker does. `MAX_SLOT_WAIT` is the worker's
//! (3 s) unless the run asks for another to explore the trade-off. The schedule is the one
//! production derives from Hood's documented windows (`default_limits(Vendor::Hood)`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use http::{StatusCode, header};
use relay_shared::store::dynamo::DynamoStore;
use relay_shared::store::{Clock, GcraParams, LimiterKey, RateLimiter, SystemClock};
use relay_shared::vendors::{CallGate, Vendor, default_limits};
use relay_shared::worker::LimiterGate;
use relay_shared::worker::retry::with_jitter;
use serde::Serialize;

use crate::dynamo::{self, Counter, ItemKind};
use crate::stats::{max_in_fixed_window, max_in_sliding_window, round, steady_rate_per_minute};

/// Hood's documented limits.
pub const HOOD_PER_SECOND: usize = 10;
pub const HOOD_PER_MINUTE: usize = 150;

const SECOND_US: i64 = 1_000_000;
const MINUTE_US: i64 = 60 * SECOND_US;

/// Settings of the limiter bench.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub workers: usize,
    pub seconds: u64,
    /// Longest a permit may be booked ahead (the worker's `MAX_SLOT_WAIT` by default).
    pub slot_wait: Duration,
}

/// The limiter part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workers: usize,
    pub seconds: u64,
    pub emission_interval_ms: u64,
    /// `tau`, the schedule's tolerance.
    pub tolerance_ms: u64,
    /// `1 + tau / T`.
    pub burst: f64,
    pub max_slot_wait_ms: u64,
    /// Requests the recording server received (one per permit used).
    pub requests: usize,
    pub responses_429: u64,
    pub max_in_any_1s: usize,
    pub max_in_any_60s: usize,
    pub max_in_fixed_second: usize,
    pub max_in_fixed_minute: usize,
    /// Requests per minute after the opening burst (first `⌊burst⌋` requests left out).
    pub steady_requests_per_minute: f64,
    /// `steady_requests_per_minute / 150`: the utilisation of the tightest long window.
    pub utilisation: f64,
    /// The schedule's own ceiling: `60 s / T / 150`.
    pub utilisation_ceiling: f64,
    /// Reservations the gate answered "too far" (the message would go back to the queue).
    pub deferrals: u64,
    /// DynamoDB requests on the limiter item (conditional failures included).
    pub ddb_writes: u64,
    pub ddb_writes_per_permit: f64,
    /// Writes per reservation asked (booked or deferred): 1.0 when no request had to be
    /// repeated because this instance's view of the schedule was stale.
    pub ddb_writes_per_reservation: f64,
    pub deferrals_per_permit: f64,
    pub limiter_errors: u64,
}

/// What the recording server holds.
#[derive(Default)]
struct Recorder {
    /// Arrival times, epoch microseconds, of every request (admitted or not).
    arrivals: Vec<i64>,
    /// Fixed-window counters of admitted requests: (window index, count).
    second: (i64, usize),
    minute: (i64, usize),
    refused: u64,
}

impl Recorder {
    /// Records a request at `now_us`; answers the seconds to wait when Hood would refuse it.
    fn admit(&mut self, now_us: i64) -> Result<(), i64> {
        self.arrivals.push(now_us);
        let (second, minute) = (now_us.div_euclid(SECOND_US), now_us.div_euclid(MINUTE_US));
        if self.second.0 != second {
            self.second = (second, 0);
        }
        if self.minute.0 != minute {
            self.minute = (minute, 0);
        }
        if self.minute.1 >= HOOD_PER_MINUTE {
            self.refused += 1;
            let rest_us = (minute + 1) * MINUTE_US - now_us;
            return Err((rest_us + SECOND_US - 1) / SECOND_US);
        }
        if self.second.1 >= HOOD_PER_SECOND {
            self.refused += 1;
            return Err(1);
        }
        self.second.1 += 1;
        self.minute.1 += 1;
        Ok(())
    }
}

type Shared = Arc<Mutex<Recorder>>;

async fn hit(State(recorder): State<Shared>) -> Response {
    let now_us = Utc::now().timestamp_micros();
    let admitted = recorder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(now_us);
    match admitted {
        Ok(()) => (StatusCode::OK, "{}").into_response(),
        Err(wait_s) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait_s.to_string())],
            "{\"code\":429}",
        )
            .into_response(),
    }
}

/// Starts the recording server; answers its URL.
async fn serve(recorder: Shared) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the recording server")?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/hood/profiles", post(hit))
        .with_state(recorder);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/v1/hood/profiles"), task))
}

#[derive(Default)]
struct Tally {
    permits: AtomicU64,
    deferrals: AtomicU64,
    errors: AtomicU64,
}

/// Runs the workers for `options.seconds`.
pub async fn run(endpoint: &str, options: Options) -> anyhow::Result<Report> {
    let params: GcraParams = default_limits(Vendor::Hood);
    let counter = Counter::default();
    let client = dynamo::client(endpoint, &counter);
    let table = dynamo::fresh_table(&client, "limiter").await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(client, table, clock.clone());
    let key = LimiterKey::new(Vendor::Hood, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;

    let recorder: Shared = Arc::default();
    let (url, server) = serve(recorder.clone()).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let tally = Arc::new(Tally::default());
    let before = counter.snapshot();
    let stop_at = Instant::now() + Duration::from_secs(options.seconds);

    let tasks: Vec<_> = (0..options.workers.max(1))
        .map(|_| {
            // One handle per worker: its own view of the schedule, as another instance.
            let limiter: Arc<dyn RateLimiter> = Arc::new(store.limiter(&key, params));
            let gate = LimiterGate::new(
                HashMap::from([(Vendor::Hood, limiter.clone())]),
                clock.clone(),
                options.slot_wait,
            );
            let (http, url, tally) = (http.clone(), url.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    match gate.acquire(Vendor::Hood).await {
                        Ok(()) => {
                            tally.permits.fetch_add(1, Ordering::Relaxed);
                            let answer = http.post(&url).body("{}").send().await;
                            match answer {
                                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                                    let wait = r
                                        .headers()
                                        .get(header::RETRY_AFTER)
                                        .and_then(|v| v.to_str().ok())
                                        .and_then(|v| v.parse().ok())
                                        .map_or(Duration::from_secs(1), Duration::from_secs);
                                    if limiter.penalise(wait).await.is_err() {
                                        tally.errors.fetch_add(1, Ordering::Relaxed);
                                    }
                                    tokio::time::sleep(with_jitter(wait)).await;
                                }
                                Ok(_) => {}
                                Err(_) => {
                                    tally.errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(deferred) => {
                            tally.deferrals.fetch_add(1, Ordering::Relaxed);
                            let wait = deferred.retry_after().unwrap_or(Duration::from_secs(1));
                            tokio::time::sleep(with_jitter(wait)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a limiter worker panicked")?;
    }
    server.abort();

    let calls = counter.snapshot().since(&before);
    let (mut arrivals, refused) = {
        let r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
        (r.arrivals.clone(), r.refused)
    };
    arrivals.sort_unstable();
    let permits = tally.permits.load(Ordering::Relaxed);
    let deferrals = tally.deferrals.load(Ordering::Relaxed);
    let writes = calls.of_kind(ItemKind::Limiter);
    let per_permit = |n: u64| round(n as f64 / permits.max(1) as f64, 3);
    let t_ms = params.t_ms() as f64;
    let steady = steady_rate_per_minute(&arrivals, params.burst().floor() as usize).unwrap_or(0.0);
    Ok(Report {
        workers: options.workers,
        seconds: options.seconds,
        emission_interval_ms: params.t_ms().unsigned_abs(),
        tolerance_ms: params.tau_ms().unsigned_abs(),
        burst: round(params.burst(), 2),
        max_slot_wait_ms: options.slot_wait.as_millis() as u64,
        requests: arrivals.len(),
        responses_429: refused,
        max_in_any_1s: max_in_sliding_window(&arrivals, SECOND_US),
        max_in_any_60s: max_in_sliding_window(&arrivals, MINUTE_US),
        max_in_fixed_second: max_in_fixed_window(&arrivals, SECOND_US),
        max_in_fixed_minute: max_in_fixed_window(&arrivals, MINUTE_US),
        steady_requests_per_minute: round(steady, 2),
        utilisation: round(steady / HOOD_PER_MINUTE as f64, 4),
        utilisation_ceiling: round(60_000.0 / t_ms / HOOD_PER_MINUTE as f64, 4),
        deferrals,
        ddb_writes: writes,
        ddb_writes_per_permit: per_permit(writes),
        ddb_writes_per_reservation: round(writes as f64 / (permits + deferrals).max(1) as f64, 3),
        deferrals_per_permit: per_permit(deferrals),
        limiter_errors: tally.errors.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000 * SECOND_US; // a whole minute

    #[test]
    fn recorder_refuses_like_hood() {
        let mut r = Recorder::default();
        for i in 0..10 {
            assert_eq!(r.admit(T0 + i * 1_000), Ok(()));
        }
        assert_eq!(r.admit(T0 + 500_000), Err(1), "11th in one second");
        // The next second admits again; refusals did not count.
        assert_eq!(r.admit(T0 + SECOND_US), Ok(()));
        // Fill the minute: 150 admitted in all.
        for s in 2..15 {
            for i in 0..10 {
                assert_eq!(r.admit(T0 + s * SECOND_US + i), Ok(()));
            }
        }
        for i in 0..9 {
            assert_eq!(r.admit(T0 + 15 * SECOND_US + i), Ok(()));
        }
        assert_eq!(r.admit(T0 + 20 * SECOND_US), Err(40), "151st in the minute");
        assert_eq!(r.refused, 2);
        assert_eq!(r.arrivals.len(), 152);
        assert_eq!(r.admit(T0 + MINUTE_US), Ok(()));
    }
}
