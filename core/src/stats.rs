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

/// 95% percentile bootstrap interval of the unweighted mean of group means, resampling items
/// within each group (the "overall" of per-task metrics). Empty groups are skipped.
pub fn stratified_bootstrap_ci(groups: &[Vec<f64>], resamples: usize, seed: u64) -> (f64, f64) {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = crate::seed::rng_for(seed, &["stratified-bootstrap"]);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let group_means: Vec<f64> = groups
                .iter()
                .map(|g| {
                    (0..g.len())
                        .map(|_| g[rng.random_range(0..g.len())])
                        .sum::<f64>()
                        / g.len() as f64
                })
                .collect();
            mean(&group_means)
        })
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
        let (lo, hi) = stratified_bootstrap_ci(&[values.clone(), vec![1.0; 50]], 1000, 3);
        assert!(lo < 0.625 && 0.625 < hi, "{lo} {hi}");
        let (lo, hi) = stratified_bootstrap_ci(&[vec![0.2; 5], vec![0.4; 9], vec![]], 50, 1);
        assert!(
            (lo - 0.3).abs() < 1e-12 && (hi - 0.3).abs() < 1e-12,
            "{lo} {hi}"
        );
    }
}
