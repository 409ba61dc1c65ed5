//! Means and percentile bootstrap intervals for report cells.

use rand::Rng;

/// Mean of the values; `NaN` for none.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// 95% percentile bootstrap interval of the mean (`resamples` draws, seeded).
pub fn bootstrap_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = crate::seed::rng_for(seed, &["bootstrap"]);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_brackets_the_mean() {
        let values: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let m = mean(&values);
        let (lo, hi) = bootstrap_ci(&values, 1000, 3);
        assert!((m - 0.25).abs() < 1e-12);
        assert!(lo < m && m < hi, "{lo} {m} {hi}");
        assert!(hi - lo < 0.15 && hi - lo > 0.05);
        assert_eq!(bootstrap_ci(&[0.5; 10], 100, 1), (0.5, 0.5));
    }
}
