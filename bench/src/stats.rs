//! Pure arithmetic over measurements: percentiles and request counts per window. Kept free
//! of I/O so it is unit-tested.

/// The `p`-th percentile (0–100) by nearest rank of an unsorted sample; `None` when empty.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least p% of the sample at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied()
}

/// The median (nearest rank, lower of the two middle values).
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// The most timestamps (any unit) falling in any half-open window `[t, t + len)`, over all
/// window positions. The maximum is always reached by a window starting at a timestamp, so
/// those are the only starts tried. `sorted` must be ascending.
pub fn max_in_sliding_window(sorted: &[i64], len: i64) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, &t) in sorted.iter().enumerate() {
        if end < start {
            end = start;
        }
        while end < sorted.len() && sorted[end] < t.saturating_add(len) {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

/// The most timestamps in one fixed window `[k·len, (k+1)·len)` (windows aligned to
/// multiples of `len` since the epoch, as Hood counts). `sorted` must be ascending.
pub fn max_in_fixed_window(sorted: &[i64], len: i64) -> usize {
    let mut best = 0;
    let mut current: Option<(i64, usize)> = None;
    for &t in sorted {
        let window = t.div_euclid(len.max(1));
        current = match current {
            Some((w, n)) if w == window => Some((w, n + 1)),
            _ => Some((window, 1)),
        };
        if let Some((_, n)) = current {
            best = best.max(n);
        }
    }
    best
}

/// Requests per minute over the steady part of a run: from the timestamp at index `skip`
/// (after the opening burst) to the last, `(n − 1)` intervals over that span. Timestamps in
/// microseconds, ascending. `None` with fewer than two steady timestamps.
pub fn steady_rate_per_minute(sorted_us: &[i64], skip: usize) -> Option<f64> {
    let steady = sorted_us.get(skip..)?;
    let (first, last) = (steady.first()?, steady.last()?);
    let span_us = last - first;
    if steady.len() < 2 || span_us <= 0 {
        return None;
    }
    Some((steady.len() - 1) as f64 * 60_000_000.0 / span_us as f64)
}

/// Rounds to `digits` decimals for the report.
pub fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn sliding_window_counts_half_open_windows() {
        // 0, 400, 999 fit in [0, 1000); 1000 starts the next.
        let t = [0, 400, 999, 1_000, 1_001, 2_500];
        assert_eq!(max_in_sliding_window(&t, 1_000), 4); // [400, 1400) holds 400, 999, 1000, 1001
        assert_eq!(max_in_sliding_window(&t, 1), 1);
        assert_eq!(max_in_sliding_window(&t, 10_000), 6);
        assert_eq!(max_in_sliding_window(&[], 1_000), 0);
        // Equal timestamps all count.
        assert_eq!(max_in_sliding_window(&[5, 5, 5, 9_000], 1_000), 3);
    }

    #[test]
    fn fixed_windows_are_aligned_to_multiples_of_their_length() {
        // 999 and 1000 straddle a boundary: never in the same fixed second.
        let t = [0, 400, 999, 1_000, 1_001, 1_999, 2_500];
        assert_eq!(max_in_fixed_window(&t, 1_000), 3);
        assert_eq!(max_in_fixed_window(&t, 60_000), 7);
        assert_eq!(max_in_fixed_window(&[], 1_000), 0);
        // A sliding window sees more than the fixed one across the boundary.
        let edge = [900, 950, 1_000, 1_050];
        assert_eq!(max_in_fixed_window(&edge, 1_000), 2);
        assert_eq!(max_in_sliding_window(&edge, 1_000), 4);
    }

    #[test]
    fn steady_rate_skips_the_burst() {
        // A burst of 5 at 0, then one every 430 ms (in µs): 60 000 / 430 per minute.
        let mut t = vec![0; 5];
        t.extend((1..=100).map(|i| i * 430_000));
        let rate = steady_rate_per_minute(&t, 5).expect("a steady part");
        assert!((rate - 60_000.0 / 430.0).abs() < 1e-9, "{rate}");
        assert_eq!(steady_rate_per_minute(&t[..5], 5), None);
        assert_eq!(steady_rate_per_minute(&[1, 2], 5), None);
        assert_eq!(round(0.930_23, 3), 0.93);
    }
}
