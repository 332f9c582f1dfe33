//! The dashboard's data from the local relay's own parts: the delivery log, the
//! dead-letter queue, the delivery queue and each vendor's shared limiter.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use relay_shared::queue::Queue;
use relay_shared::replay::{self, DeadLetterFilter, Mode};
use relay_shared::store::{EventFilter, GcraParams, Journal, RateLimiter};
use relay_shared::vendors::Vendor;

use super::{Dashboard, DeadLetterView, DeliveryView, EventView, Overview, UiError, VendorView};

/// How many recent events the page lists.
const EVENTS: usize = 50;
/// How many dead letters it lists.
const DEAD_LETTERS: usize = 100;
/// The rate chart's span, in 10 s buckets (five minutes).
const BUCKETS: usize = 30;

/// The local relay's parts the dashboard reads.
pub struct RelayDashboard {
    pub journal: Arc<dyn Journal>,
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    /// Each configured vendor's schedule and shared limiter.
    pub limiters: HashMap<Vendor, (GcraParams, Arc<dyn RateLimiter>)>,
}

/// A schedule as a person reads it: at most this many in any second and in any minute.
fn per_window(p: GcraParams) -> (u32, u32) {
    let most = |ms| u32::try_from(p.max_in(ms)).unwrap_or(u32::MAX);
    (most(1_000), most(60_000))
}

/// Calls per 10 s bucket over the last [`BUCKETS`], from each delivery attempt's end time.
fn buckets(now: DateTime<Utc>, attempts: &[(DateTime<Utc>, u32)]) -> Vec<u32> {
    let mut out = vec![0u32; BUCKETS];
    for (at, calls) in attempts {
        let age = (now - *at).num_seconds();
        if (0..i64::try_from(BUCKETS * 10).unwrap_or(i64::MAX)).contains(&age) {
            let back = usize::try_from(age / 10).unwrap_or(0);
            if let Some(slot) = out.get_mut(BUCKETS - 1 - back) {
                *slot = slot.saturating_add(*calls);
            }
        }
    }
    out
}

#[async_trait]
impl Dashboard for RelayDashboard {
    async fn overview(&self) -> Result<Overview, UiError> {
        let now = Utc::now();
        let journeys = self
            .journal
            .recent(&EventFilter {
                since: now - TimeDelta::days(1),
                source: None,
                vendor: None,
                status: None,
                limit: EVENTS,
            })
            .await
            .map_err(|e| UiError(e.to_string()))?;
        let mut attempts: HashMap<Vendor, Vec<(DateTime<Utc>, u32)>> = HashMap::new();
        let events = journeys
            .iter()
            .map(|j| {
                let deliveries = j
                    .event
                    .vendors
                    .iter()
                    .map(|v| {
                        let d = j.deliveries.get(v);
                        if let Some(d) = d {
                            attempts.entry(*v).or_default().push((d.at, d.calls));
                        }
                        DeliveryView {
                            vendor: v.as_str().into(),
                            status: j.status(*v).as_str().into(),
                            reason: d.and_then(|d| d.reason.clone()),
                            attempts: d.map_or(0, |d| d.attempts),
                            calls: d.map_or(0, |d| d.calls),
                        }
                    })
                    .collect();
                EventView {
                    id: format!("{}#{}", j.event.source, j.event.event_id),
                    source: j.event.source.clone(),
                    sender_event_id: j.event.event_id.clone(),
                    contact: j.event.contact.clone(),
                    received_at: j.event.received_at.to_rfc3339(),
                    deliveries,
                }
            })
            .collect();
        let dead_letters = replay::letters(self.dead_letters.as_ref(), DEAD_LETTERS)
            .await
            .map_err(|e| UiError(e.to_string()))?
            .into_iter()
            .map(|l| DeadLetterView {
                id: l.message_id,
                event: l.event.unwrap_or_else(|| "(unreadable)".into()),
                vendor: l.letter.vendor.map_or("?", Vendor::as_str).into(),
                source: l.source.unwrap_or_default(),
                reason: l.letter.reason,
                age_secs: l
                    .letter
                    .dead_lettered_at
                    .map_or(0, |at| u64::try_from((now - at).num_seconds()).unwrap_or(0)),
            })
            .collect();
        let mut vendors = Vec::new();
        for vendor in Vendor::ALL {
            let Some((params, limiter)) = self.limiters.get(&vendor) else {
                continue;
            };
            let (per_second, per_minute) = per_window(*params);
            let limiter = match limiter.next_free().await {
                Ok(None) => "open".to_string(),
                Ok(Some(at)) => {
                    let wait = (at - now).num_milliseconds().max(0);
                    format!("next slot in {wait} ms")
                }
                Err(e) => format!("unknown ({e})"),
            };
            vendors.push(VendorView {
                vendor: vendor.as_str().into(),
                per_second,
                per_minute,
                calls_per_10s: buckets(now, attempts.get(&vendor).map_or(&[], Vec::as_slice)),
                limiter,
            });
        }
        Ok(Overview {
            events,
            dead_letters,
            vendors,
        })
    }

    async fn replay(&self, id: &str) -> Result<bool, UiError> {
        let filter = DeadLetterFilter {
            message_id: Some(id.to_string()),
            ..DeadLetterFilter::default()
        };
        let done = replay::replay(
            self.dead_letters.as_ref(),
            self.queue.as_ref(),
            &Mode::Redrive,
            &filter,
            Some(1),
            false,
        )
        .await
        .map_err(|e| UiError(e.to_string()))?;
        Ok(done.moved == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hood_schedule_reads_as_its_documented_bounds() {
        // From Hood's windows (10/s, 150/min): one every 409 ms, tau 1 100 ms → 6/s, 150/min.
        assert_eq!(per_window(GcraParams::HOOD), (6, 150));
        // The old fixed schedule, one every 430 ms with a burst of 5: 7/s, 144/min.
        assert_eq!(
            per_window(GcraParams::new(std::time::Duration::from_millis(430), 5)),
            (7, 144)
        );
    }

    #[test]
    fn calls_fall_in_their_10_s_bucket() {
        let now = Utc::now();
        let b = buckets(
            now,
            &[
                (now, 2),
                (now - TimeDelta::seconds(9), 1),
                (now - TimeDelta::seconds(10), 4),
                (now - TimeDelta::seconds(299), 3),
                (now - TimeDelta::seconds(300), 50),
            ],
        );
        assert_eq!(b.len(), BUCKETS);
        assert_eq!((b[BUCKETS - 1], b[BUCKETS - 2], b[0]), (3, 4, 3));
        assert_eq!(b.iter().sum::<u32>(), 10);
    }
}
