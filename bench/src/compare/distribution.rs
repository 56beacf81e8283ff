//! Latency distributions: the quantiles the report shows (p50, p90, p99, p99.9, max) of a
//! set of samples, and the points of its complementary CDF (the share of samples at least as
//! slow as each value) that the latency chart draws on log-log axes.
//!
//! Invariants: samples are kept sorted (by `f64::total_cmp`, NaN never panics); quantiles are
//! nearest-rank (every reported value is a measured sample); an empty distribution has no
//! quantiles; CCDF points run from the fastest sample (share 1) to the slowest (share 1/n),
//! with falling shares and rising values, at most the requested number of them.

use super::stats::percentile;

/// The quantiles the report shows, with their labels and key suffixes.
pub const QUANTILES: [Quantile; 5] = [
    Quantile {
        label: "p50",
        key: "p50",
        q: 0.50,
    },
    Quantile {
        label: "p90",
        key: "p90",
        q: 0.90,
    },
    Quantile {
        label: "p99",
        key: "p99",
        q: 0.99,
    },
    Quantile {
        label: "p99.9",
        key: "p999",
        q: 0.999,
    },
    Quantile {
        label: "max",
        key: "max",
        q: 1.0,
    },
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantile {
    pub label: &'static str,
    /// The suffix of the metric key (no dot).
    pub key: &'static str,
    pub q: f64,
}

/// Sorted samples (microseconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    sorted: Vec<f64>,
}

impl Distribution {
    pub fn new(mut samples: Vec<f64>) -> Distribution {
        samples.sort_by(f64::total_cmp);
        Distribution { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn samples(&self) -> &[f64] {
        &self.sorted
    }

    /// The nearest-rank `q` quantile; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.sorted.is_empty()).then(|| percentile(&self.sorted, q))
    }

    /// Every quantile of [`QUANTILES`], in order; `None` without samples.
    pub fn quantiles(&self) -> Option<[f64; 5]> {
        let mut out = [0.0; 5];
        for (slot, quantile) in out.iter_mut().zip(QUANTILES) {
            *slot = self.quantile(quantile.q)?;
        }
        Some(out)
    }

    /// Up to `points` (value, share of samples at least this slow) pairs, spaced evenly in
    /// the logarithm of the share, so the tail gets as many points per decade as the body.
    pub fn ccdf(&self, points: usize) -> Vec<(f64, f64)> {
        let n = self.sorted.len();
        if n == 0 || points == 0 {
            return Vec::new();
        }
        let steps = points - 1;
        if steps == 0 {
            return vec![(self.sorted[0], 1.0)];
        }
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.min(n));
        let mut last_rank = None;
        for step in 0..=steps {
            // The number of samples at least as slow: from n down to 1, geometrically.
            let exponent = 1.0 - step as f64 / steps as f64;
            let tail = ((n as f64).powf(exponent).round() as usize).clamp(1, n);
            let rank = n - tail;
            if last_rank == Some(rank) {
                continue;
            }
            last_rank = Some(rank);
            out.push((self.sorted[rank], tail as f64 / n as f64));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_samples() {
        let d = Distribution::new((1..=1000).rev().map(f64::from).collect());
        assert_eq!(d.len(), 1000);
        assert_eq!(d.samples()[0], 1.0);
        assert_eq!(d.quantiles(), Some([500.0, 900.0, 990.0, 999.0, 1000.0]));
        let small = Distribution::new(vec![3.0, 1.0, 2.0]);
        assert_eq!(small.quantile(0.999), Some(3.0));
        assert_eq!(small.quantile(0.5), Some(2.0));
        assert_eq!(Distribution::new(Vec::new()).quantiles(), None);
        assert_eq!(Distribution::new(vec![f64::NAN, 1.0]).samples()[0], 1.0);
    }

    #[test]
    fn the_ccdf_runs_from_all_samples_to_the_slowest_one() {
        let d = Distribution::new((1..=10_000).map(f64::from).collect());
        let points = d.ccdf(41);
        assert!(points.len() <= 41 && points.len() > 30, "{}", points.len());
        assert_eq!(points[0], (1.0, 1.0));
        assert_eq!(points[points.len() - 1], (10_000.0, 1.0 / 10_000.0));
        for pair in points.windows(2) {
            assert!(pair[0].0 < pair[1].0 && pair[0].1 > pair[1].1, "{pair:?}");
        }
        // Ten points per decade of share: the 1% tail starts at the p99 sample.
        assert!(points.contains(&(9_901.0, 0.01)), "{points:?}");
    }

    #[test]
    fn a_short_ccdf_has_each_sample_once() {
        let d = Distribution::new(vec![5.0, 7.0, 6.0]);
        let points = d.ccdf(100);
        assert_eq!(points, vec![(5.0, 1.0), (6.0, 2.0 / 3.0), (7.0, 1.0 / 3.0)]);
        assert!(Distribution::new(Vec::new()).ccdf(10).is_empty());
        assert_eq!(d.ccdf(1), vec![(5.0, 1.0)]);
        assert_eq!(d.ccdf(2), vec![(5.0, 1.0), (7.0, 1.0 / 3.0)]);
    }
}
