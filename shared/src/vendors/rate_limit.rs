//! Rate-limit headers, parsed from every vendor response (success and error alike) so the
//! shared limiter can learn the vendor's own view of the budget.
//!
//! Header names are case-insensitive in HTTP (the `http` crate stores them lowercase), so
//! Hood's `X-RateLimit-*` and Channel.io's `x-ratelimit-*` are read by the same code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// How long to wait after a 429 whose `Retry-After` is `-1`. Hood documents `-1` as
/// "concurrency limit reached" (too many requests in flight, not an exhausted window), so
/// the budget frees as soon as one of our own requests finishes: a short wait suffices.
pub const CONCURRENCY_LIMIT_RETRY: Duration = Duration::from_secs(1);

/// How long to wait after a 429 that says neither `Retry-After` nor a usable reset time.
pub const DEFAULT_RATE_LIMIT_RETRY: Duration = Duration::from_secs(1);

/// Values at or above this are Unix times in seconds, below it a number of seconds to wait
/// (Hood does not say which it sends; Channel.io sends epoch seconds).
const EPOCH_SECONDS_FLOOR: u64 = 1_000_000_000;
/// Values at or above this are Unix times in milliseconds.
const EPOCH_MILLIS_FLOOR: u64 = 1_000_000_000_000;

/// When the vendor's window resets (`X-RateLimit-Reset`), as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reset {
    /// A Unix time in seconds (Channel.io).
    EpochSeconds(u64),
    /// A Unix time in milliseconds.
    EpochMillis(u64),
    /// Seconds from the moment the response was received.
    InSeconds(u64),
}

impl Reset {
    /// Classifies a raw header value: large numbers are Unix times, small ones are delays.
    pub fn from_raw(value: u64) -> Self {
        if value >= EPOCH_MILLIS_FLOOR {
            Reset::EpochMillis(value)
        } else if value >= EPOCH_SECONDS_FLOOR {
            Reset::EpochSeconds(value)
        } else {
            Reset::InSeconds(value)
        }
    }

    /// The wait from `now` until the reset (zero when it has passed).
    pub fn delay_from(self, now: SystemTime) -> Duration {
        let at = match self {
            Reset::EpochSeconds(s) => UNIX_EPOCH + Duration::from_secs(s),
            Reset::EpochMillis(ms) => UNIX_EPOCH + Duration::from_millis(ms),
            Reset::InSeconds(s) => return Duration::from_secs(s),
        };
        at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// `Retry-After` on a 429, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryAfter {
    /// Wait this many seconds.
    Seconds(u64),
    /// Hood's `-1`: a concurrency limit, not a window (see [`CONCURRENCY_LIMIT_RETRY`]).
    ConcurrencyLimit,
}

/// What one response said about the rate limit. Every field is optional: vendors omit
/// headers, and an absent header must never be read as "no budget left".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RateLimitInfo {
    /// `X-RateLimit-Limit`: requests allowed in the current window.
    pub limit: Option<u32>,
    /// `X-RateLimit-Remaining`: requests left in the current window.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset`.
    pub reset: Option<Reset>,
    /// `Retry-After` (seconds form; an HTTP-date is ignored).
    pub retry_after: Option<RetryAfter>,
}

impl RateLimitInfo {
    /// Reads the rate-limit headers of one response. Unparseable values are ignored.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let number = |name: &str| -> Option<i64> {
            let raw = headers.get(name)?.to_str().ok()?.trim();
            raw.parse::<i64>().ok().or_else(|| {
                // Some servers send decimals ("0.5"); round up so we never wait too little.
                let f = raw.parse::<f64>().ok()?;
                f.is_finite().then(|| f.ceil() as i64)
            })
        };
        let non_negative_u32 = |v: i64| u32::try_from(v.max(0)).ok();
        RateLimitInfo {
            limit: number("x-ratelimit-limit").and_then(non_negative_u32),
            remaining: number("x-ratelimit-remaining").and_then(non_negative_u32),
            reset: number("x-ratelimit-reset")
                .and_then(|v| u64::try_from(v).ok())
                .map(Reset::from_raw),
            retry_after: number("retry-after").map(|v| match u64::try_from(v) {
                Ok(secs) => RetryAfter::Seconds(secs),
                // Hood documents -1; any negative value is read the same way.
                Err(_) => RetryAfter::ConcurrencyLimit,
            }),
        }
    }

    /// True when the response carried none of the headers.
    pub fn is_empty(&self) -> bool {
        *self == RateLimitInfo::default()
    }

    /// True when `Retry-After` was Hood's concurrency marker `-1`.
    pub fn is_concurrency_limit(&self) -> bool {
        self.retry_after == Some(RetryAfter::ConcurrencyLimit)
    }

    /// How long to wait before the next call after a 429 received at `now`:
    /// `Retry-After` seconds; [`CONCURRENCY_LIMIT_RETRY`] for `-1`; else the time until
    /// the reset; else [`DEFAULT_RATE_LIMIT_RETRY`].
    pub fn retry_delay(&self, now: SystemTime) -> Duration {
        match self.retry_after {
            Some(RetryAfter::Seconds(s)) => Duration::from_secs(s),
            Some(RetryAfter::ConcurrencyLimit) => CONCURRENCY_LIMIT_RETRY,
            None => self
                .reset
                .map(|r| r.delay_from(now))
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_RATE_LIMIT_RETRY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_hood_headers_in_any_case() {
        let info = RateLimitInfo::from_headers(&headers(&[
            ("X-RateLimit-Limit", "150"),
            ("X-RateLimit-Remaining", "149"),
            ("X-RateLimit-Reset", "42"),
        ]));
        assert_eq!(
            info,
            RateLimitInfo {
                limit: Some(150),
                remaining: Some(149),
                reset: Some(Reset::InSeconds(42)),
                retry_after: None
            }
        );
    }

    #[test]
    fn channelio_reset_is_epoch_seconds() {
        let info = RateLimitInfo::from_headers(&headers(&[("x-ratelimit-reset", "1767225600")]));
        assert_eq!(info.reset, Some(Reset::EpochSeconds(1_767_225_600)));
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_590);
        assert_eq!(
            info.reset.map(|r| r.delay_from(now)),
            Some(Duration::from_secs(10))
        );
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_700);
        assert_eq!(
            info.reset.map(|r| r.delay_from(later)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn epoch_millis_are_recognised() {
        assert_eq!(
            Reset::from_raw(1_767_225_600_123),
            Reset::EpochMillis(1_767_225_600_123)
        );
        let now = UNIX_EPOCH + Duration::from_millis(1_767_225_600_000);
        assert_eq!(
            Reset::EpochMillis(1_767_225_600_123).delay_from(now),
            Duration::from_millis(123)
        );
    }

    #[test]
    fn retry_after_minus_one_is_a_concurrency_limit() {
        let info = RateLimitInfo::from_headers(&headers(&[("Retry-After", "-1")]));
        assert!(info.is_concurrency_limit());
        assert_eq!(info.retry_delay(SystemTime::now()), CONCURRENCY_LIMIT_RETRY);
    }

    #[test]
    fn retry_delay_prefers_retry_after_then_reset_then_default() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let both = RateLimitInfo::from_headers(&headers(&[
            ("retry-after", "7"),
            ("x-ratelimit-reset", "30"),
        ]));
        assert_eq!(both.retry_delay(now), Duration::from_secs(7));
        let reset_only = RateLimitInfo::from_headers(&headers(&[("x-ratelimit-reset", "30")]));
        assert_eq!(reset_only.retry_delay(now), Duration::from_secs(30));
        assert_eq!(
            RateLimitInfo::default().retry_delay(now),
            DEFAULT_RATE_LIMIT_RETRY
        );
    }

    #[test]
    fn garbage_and_dates_are_ignored_and_decimals_round_up() {
        let info = RateLimitInfo::from_headers(&headers(&[
            ("x-ratelimit-limit", "lots"),
            ("x-ratelimit-remaining", "2.2"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]));
        assert_eq!(
            info,
            RateLimitInfo {
                limit: None,
                remaining: Some(3),
                reset: None,
                retry_after: None
            }
        );
        assert!(RateLimitInfo::from_headers(&HeaderMap::new()).is_empty());
    }
}
