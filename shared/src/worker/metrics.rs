//! Delivery counters: kept in memory (for `relay demo` and tests) and, in Lambda, written as
//! CloudWatch Embedded Metric Format lines — structured log lines CloudWatch turns into
//! metrics without any API call.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;

use crate::vendors::Vendor;

/// What became of one delivery, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Applied at the vendor (or nothing needed sending).
    Synced,
    /// A redelivery of something already applied.
    Duplicate,
    /// The vendor answered 429: handed on to wait for its `Retry-After`.
    Throttled,
    /// A transient failure: handed on to retry after a back-off (counted against the
    /// retry horizon).
    Retried,
    /// Handed on to wait, nothing failed: the record is busy, the next rate-limit slot is
    /// far away (also while a vendor is paused), the invocation's time is nearly up, or a
    /// long wait is not over.
    Deferred,
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// The vendor refused our credentials.
    AuthFailed,
}

impl Counter {
    pub const ALL: [Counter; 7] = [
        Counter::Synced,
        Counter::Duplicate,
        Counter::Throttled,
        Counter::Retried,
        Counter::Deferred,
        Counter::DeadLettered,
        Counter::AuthFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Synced => "Synced",
            Counter::Duplicate => "Duplicate",
            Counter::Throttled => "Throttled",
            Counter::Retried => "Retried",
            Counter::Deferred => "Deferred",
            Counter::DeadLettered => "DeadLettered",
            Counter::AuthFailed => "AuthFailed",
        }
    }
}

/// Where counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsOutput {
    /// Memory only.
    Memory,
    /// Memory and one EMF line per count on stdout (Lambda).
    Emf,
}

/// Delivery counters per vendor.
#[derive(Debug)]
pub struct Metrics {
    output: MetricsOutput,
    counts: Mutex<BTreeMap<(Vendor, Counter), u64>>,
    /// Counts of messages whose vendor cannot be told (unreadable messages).
    unattributed: Mutex<BTreeMap<Counter, u64>>,
    /// End-to-end lags (occurred → synced, ms) per vendor, for percentiles locally; in
    /// Lambda each is an EMF value and CloudWatch computes p50/p99.
    lags: Mutex<BTreeMap<Vendor, Vec<u64>>>,
}

/// The EMF metric of the end-to-end lag: from the change's `occurred_at` to its sync.
pub const LAG_METRIC: &str = "EndToEndLag";

/// The CloudWatch namespace of the metrics.
pub const NAMESPACE: &str = "ProfileRelay";

impl Metrics {
    pub fn new(output: MetricsOutput) -> Self {
        Metrics {
            output,
            counts: Mutex::default(),
            unattributed: Mutex::default(),
            lags: Mutex::default(),
        }
    }

    /// Records one synced delivery's end-to-end lag (occurred → synced).
    pub fn lag(&self, vendor: Vendor, lag_ms: u64) {
        if let Ok(mut lags) = self.lags.lock() {
            lags.entry(vendor).or_default().push(lag_ms);
        }
        if self.output == MetricsOutput::Emf {
            #[allow(
                clippy::print_stdout,
                reason = "EMF lines are read by CloudWatch from stdout"
            )]
            {
                println!(
                    "{}",
                    lag_line(
                        vendor.as_str(),
                        lag_ms,
                        chrono::Utc::now().timestamp_millis()
                    )
                );
            }
        }
    }

    /// The `p`-th percentile (nearest rank, 0 < p ≤ 100) of `vendor`'s recorded lags.
    pub fn lag_percentile(&self, vendor: Vendor, p: f64) -> Option<u64> {
        let mut lags = self.lags.lock().ok()?.get(&vendor)?.clone();
        if lags.is_empty() {
            return None;
        }
        lags.sort_unstable();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rank within a short list"
        )]
        let rank = ((p / 100.0) * lags.len() as f64).ceil().max(1.0) as usize;
        lags.get(rank.min(lags.len()) - 1).copied()
    }

    pub fn count(&self, vendor: Vendor, counter: Counter) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((vendor, counter)).or_default() += 1;
        }
        self.emit(vendor.as_str(), counter);
    }

    /// Counts a message whose vendor cannot be told (its body is unreadable); the EMF
    /// dimension says `unknown`.
    pub fn count_unattributed(&self, counter: Counter) {
        if let Ok(mut counts) = self.unattributed.lock() {
            *counts.entry(counter).or_default() += 1;
        }
        self.emit("unknown", counter);
    }

    fn emit(&self, vendor: &str, counter: Counter) {
        if self.output == MetricsOutput::Emf {
            #[allow(
                clippy::print_stdout,
                reason = "EMF lines are read by CloudWatch from stdout"
            )]
            {
                println!(
                    "{}",
                    emf_line(vendor, counter, chrono::Utc::now().timestamp_millis())
                );
            }
        }
    }

    /// The counts so far, per vendor.
    pub fn snapshot(&self) -> BTreeMap<(Vendor, Counter), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// One count, summed over vendors (unattributed ones included).
    pub fn total(&self, counter: Counter) -> u64 {
        let attributed: u64 = self
            .snapshot()
            .iter()
            .filter(|((_, c), _)| *c == counter)
            .map(|(_, n)| n)
            .sum();
        let unattributed = self
            .unattributed
            .lock()
            .map(|u| u.get(&counter).copied().unwrap_or(0))
            .unwrap_or(0);
        attributed + unattributed
    }
}

/// One EMF document: a count of 1 for `counter`, with the vendor as dimension.
pub fn emf_line(vendor: &str, counter: Counter, timestamp_ms: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Vendor"]],
                "Metrics": [{"Name": counter.name(), "Unit": "Count"}]
            }]
        },
        "Vendor": vendor,
        counter.name(): 1
    })
    .to_string()
}

/// One EMF document: the end-to-end lag of one synced delivery, in milliseconds.
pub fn lag_line(vendor: &str, lag_ms: u64, timestamp_ms: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Vendor"]],
                "Metrics": [{"Name": LAG_METRIC, "Unit": "Milliseconds"}]
            }]
        },
        "Vendor": vendor,
        LAG_METRIC: lag_ms
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_are_emf_milliseconds_and_percentiles_are_nearest_rank() {
        let line: serde_json::Value =
            serde_json::from_str(&lag_line("hood", 1234, 1_700_000_000_000)).unwrap();
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "EndToEndLag", "Unit": "Milliseconds"})
        );
        assert_eq!(line["EndToEndLag"], 1234);
        let m = Metrics::new(MetricsOutput::Memory);
        assert_eq!(m.lag_percentile(Vendor::Hood, 50.0), None);
        for ms in (1..=100).rev() {
            m.lag(Vendor::Hood, ms * 10);
        }
        assert_eq!(m.lag_percentile(Vendor::Hood, 50.0), Some(500));
        assert_eq!(m.lag_percentile(Vendor::Hood, 99.0), Some(990));
        assert_eq!(m.lag_percentile(Vendor::Hood, 100.0), Some(1000));
        assert_eq!(m.lag_percentile(Vendor::Channelio, 50.0), None);
    }

    #[test]
    fn emf_lines_follow_the_specification() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line("hood", Counter::Throttled, 1_700_000_000_000)).unwrap();
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "ProfileRelay"
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Vendor"]])
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
            json!({"Name": "Throttled", "Unit": "Count"})
        );
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(
            (line["Vendor"].as_str(), line["Throttled"].as_i64()),
            (Some("hood"), Some(1))
        );
    }

    #[test]
    fn counts_add_up_per_vendor() {
        let m = Metrics::new(MetricsOutput::Memory);
        m.count(Vendor::Hood, Counter::Synced);
        m.count(Vendor::Hood, Counter::Synced);
        m.count(Vendor::Chatwoot, Counter::Synced);
        assert_eq!(m.snapshot()[&(Vendor::Hood, Counter::Synced)], 2);
        assert_eq!(m.total(Counter::Synced), 3);
    }
}
