//! Parsing signed timestamps and the replay window shared by every scheme that has one.

use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderName;

use super::SignatureError;

/// How a scheme writes its timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    Seconds,
    Millis,
}

/// Parses an unsigned decimal Unix timestamp.
pub(crate) fn parse(
    header: &HeaderName,
    text: &str,
    unit: Unit,
) -> Result<DateTime<Utc>, SignatureError> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::malformed(
            header,
            "timestamp is not an unsigned integer",
        ));
    }
    let value: i64 = text
        .parse()
        .map_err(|_| SignatureError::malformed(header, "timestamp is not an unsigned integer"))?;
    let at = match unit {
        Unit::Seconds => DateTime::from_timestamp(value, 0),
        Unit::Millis => DateTime::from_timestamp_millis(value),
    };
    at.ok_or_else(|| SignatureError::malformed(header, "timestamp out of range"))
}

/// Accepts `signed_at` within `tolerance` of `now`, in either direction.
pub(crate) fn check_fresh(
    signed_at: DateTime<Utc>,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
) -> Result<(), SignatureError> {
    let skew = now.signed_duration_since(signed_at);
    if skew > tolerance || skew < -tolerance {
        return Err(SignatureError::StaleTimestamp {
            skew_secs: skew.num_seconds(),
            tolerance_secs: tolerance.num_seconds(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: HeaderName = HeaderName::from_static("x-ts");

    #[test]
    fn parses_both_units() {
        assert_eq!(
            parse(&H, "1614265330", Unit::Seconds).unwrap().timestamp(),
            1_614_265_330
        );
        assert_eq!(
            parse(&H, "1614265330123", Unit::Millis)
                .unwrap()
                .timestamp_millis(),
            1_614_265_330_123
        );
    }

    #[test]
    fn rejects_non_digits() {
        for bad in ["", "-5", "+5", "1.5", "12a", "99999999999999999"] {
            assert_eq!(
                parse(&H, bad, Unit::Seconds).unwrap_err().code(),
                "signature_malformed",
                "{bad}"
            );
        }
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let tol = TimeDelta::seconds(300);
        assert!(check_fresh(now - tol, now, tol).is_ok());
        assert!(check_fresh(now + tol, now, tol).is_ok());
        assert_eq!(
            check_fresh(now - TimeDelta::seconds(301), now, tol),
            Err(SignatureError::StaleTimestamp {
                skew_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check_fresh(now + TimeDelta::seconds(301), now, tol),
            Err(SignatureError::StaleTimestamp {
                skew_secs: -301,
                tolerance_secs: 300
            })
        );
    }
}
