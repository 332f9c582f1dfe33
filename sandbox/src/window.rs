//! Fixed-window request counters, the way Hood documents its limits ("burst 10 per second,
//! steady 150 per minute", fixed windows): each window starts at a multiple of its length
//! since the Unix epoch, counts admitted requests, and refuses once full until it rolls
//! over. Refused requests do not count.

/// One fixed window: `limit` requests per `len_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub len_ms: i64,
    pub limit: u32,
    start_ms: i64,
    count: u32,
}

impl Window {
    pub fn new(len_ms: i64, limit: u32) -> Self {
        Window {
            len_ms: len_ms.max(1),
            limit,
            start_ms: i64::MIN,
            count: 0,
        }
    }

    fn roll(&mut self, now_ms: i64) {
        let start = now_ms - now_ms.rem_euclid(self.len_ms);
        if start != self.start_ms {
            self.start_ms = start;
            self.count = 0;
        }
    }

    fn end_ms(&self) -> i64 {
        self.start_ms + self.len_ms
    }
}

/// The budget an answer reports: the window with the fewest requests left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub limit: u32,
    pub remaining: u32,
    /// When that window rolls over (epoch ms).
    pub reset_at_ms: i64,
}

impl Budget {
    /// Whole seconds from `now_ms` until the reset, at least 1 (a wait of 0 would invite
    /// an immediate retry into the same window).
    pub fn reset_in_secs(&self, now_ms: i64) -> i64 {
        ceil_secs(self.reset_at_ms - now_ms).max(1)
    }
}

/// A refusal: how long until every full window has rolled over, and the budget then seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub retry_after_secs: i64,
    pub budget: Budget,
}

fn ceil_secs(ms: i64) -> i64 {
    (ms.max(0) + 999) / 1000
}

/// Several windows that must all admit a request (Hood: 1 s and 60 s).
#[derive(Debug, Clone)]
pub(crate) struct FixedWindows {
    windows: Vec<Window>,
}

impl FixedWindows {
    pub fn new(windows: Vec<Window>) -> Self {
        FixedWindows { windows }
    }

    /// Admits one request at `now_ms` (counting it in every window), or refuses it.
    pub fn admit(&mut self, now_ms: i64) -> Result<Budget, Exceeded> {
        for w in &mut self.windows {
            w.roll(now_ms);
        }
        let full: Vec<&Window> = self.windows.iter().filter(|w| w.count >= w.limit).collect();
        if !full.is_empty() {
            let wait_ms = full.iter().map(|w| w.end_ms() - now_ms).max().unwrap_or(0);
            return Err(Exceeded {
                retry_after_secs: ceil_secs(wait_ms).max(1),
                budget: self.budget(),
            });
        }
        for w in &mut self.windows {
            w.count += 1;
        }
        Ok(self.budget())
    }

    /// The window with the fewest requests left (the longer one on a tie).
    fn budget(&self) -> Budget {
        self.windows
            .iter()
            .map(|w| Budget {
                limit: w.limit,
                remaining: w.limit.saturating_sub(w.count),
                reset_at_ms: w.end_ms(),
            })
            .min_by_key(|b| (b.remaining, std::cmp::Reverse(b.reset_at_ms)))
            .unwrap_or(Budget {
                limit: 0,
                remaining: 0,
                reset_at_ms: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hood() -> FixedWindows {
        FixedWindows::new(vec![Window::new(1_000, 10), Window::new(60_000, 150)])
    }

    const T0: i64 = 1_800_000_000_000; // a whole minute

    #[test]
    fn burst_of_ten_per_second_then_refused_until_the_next_second() {
        let mut w = hood();
        for i in 0..10 {
            let b = w.admit(T0 + 100 + i).expect("within the burst");
            assert_eq!(b.remaining, 9 - i as u32);
            assert_eq!(b.limit, 10);
        }
        let refused = w.admit(T0 + 300).expect_err("11th in the same second");
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(refused.budget.remaining, 0);
        // Refusals do not count: the next second admits ten again.
        let b = w.admit(T0 + 1_000).expect("new second");
        assert_eq!((b.limit, b.remaining), (10, 9));
    }

    #[test]
    fn minute_window_caps_at_150() {
        let mut w = hood();
        for s in 0..15 {
            for _ in 0..10 {
                w.admit(T0 + s * 1_000).expect("under both limits");
            }
        }
        let refused = w.admit(T0 + 15_000).expect_err("151st in the minute");
        assert_eq!(refused.retry_after_secs, 45);
        assert_eq!(refused.budget.limit, 150);
        let b = w.admit(T0 + 60_000).expect("next minute");
        assert_eq!((b.limit, b.remaining), (10, 9));
    }

    #[test]
    fn budget_reports_the_tighter_window_and_its_reset() {
        let mut w = hood();
        let b = w.admit(T0 + 250).expect("first");
        assert_eq!((b.limit, b.remaining), (10, 9));
        assert_eq!(b.reset_at_ms, T0 + 1_000);
        assert_eq!(b.reset_in_secs(T0 + 250), 1);
    }
}
