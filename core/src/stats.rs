//! Means and percentile bootstrap intervals for report cells.

use rand::Rng;

/// Mean of the values; `NaN` for none.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Ranks of `values` (1-based), ties given the mean of the ranks they span.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of two equally long samples (the Pearson correlation of
/// their ranks, ties averaged); `None` when either sample is constant or has fewer than two
/// values.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let (ma, mb) = (mean(&ra), mean(&rb));
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
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

/// 95% paired percentile bootstrap interval of a difference of "overall" values: each side
/// is the unweighted mean of its group means, and `groups[g][i]` holds item `i` of group `g`
/// on both sides (`None`: no value on that side). Every resample draws the items of each
/// group once, with replacement, and computes both sides on the same draw, so what the two
/// sides share (an item's difficulty) cancels out of the difference. A group with no value
/// on a side is left out of that side's mean, as are groups empty on either side overall
/// and draws that leave a side with no value.
pub fn paired_stratified_bootstrap_diff_ci(
    groups: &[Vec<(Option<f64>, Option<f64>)>],
    resamples: usize,
    seed: u64,
) -> (f64, f64) {
    let groups: Vec<&Vec<(Option<f64>, Option<f64>)>> = groups
        .iter()
        .filter(|g| g.iter().any(|p| p.0.is_some()) && g.iter().any(|p| p.1.is_some()))
        .collect();
    if groups.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = crate::seed::rng_for(seed, &["paired-bootstrap"]);
    let mut diffs: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for g in &groups {
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for _ in 0..g.len() {
                    let (a, b) = g[rng.random_range(0..g.len())];
                    x.extend(a);
                    y.extend(b);
                }
                if !x.is_empty() {
                    xs.push(mean(&x));
                }
                if !y.is_empty() {
                    ys.push(mean(&y));
                }
            }
            mean(&xs) - mean(&ys)
        })
        // A draw with no value at all on a side says nothing about the difference.
        .filter(|d| !d.is_nan())
        .collect();
    if diffs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    diffs.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| diffs[((q * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
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

    #[test]
    fn paired_interval_of_hand_computed_cases() {
        let both = |v: &[(f64, f64)]| -> Vec<(Option<f64>, Option<f64>)> {
            v.iter().map(|&(x, y)| (Some(x), Some(y))).collect()
        };
        let close = |(lo, hi): (f64, f64), (l, h): (f64, f64)| {
            assert!(
                (lo - l).abs() < 1e-9 && (hi - h).abs() < 1e-9,
                "got [{lo}, {hi}], want [{l}, {h}]"
            );
        };
        // Items that differ widely but gain the same 20 points each: every paired resample
        // gives exactly 20 (an unpaired bootstrap would spread over about ±25).
        let items = both(&[(20.0, 0.0), (60.0, 40.0), (100.0, 80.0), (40.0, 20.0)]);
        close(
            paired_stratified_bootstrap_diff_ci(&[items], 500, 7),
            (20.0, 20.0),
        );
        // Unweighted mean of group means: a gain of 10 on 2 items and of 30 on 8 is 20
        // (weighting by items would say 26).
        let small = both(&[(10.0, 0.0), (50.0, 40.0)]);
        let large = both(&[(30.0, 0.0); 8]);
        close(
            paired_stratified_bootstrap_diff_ci(&[small, large], 500, 7),
            (20.0, 20.0),
        );
        // Two items with differences 1 and 0: a resample's mean difference is 1, 0.5 or 0
        // with chances 1/4, 1/2, 1/4, so the 2.5% and 97.5% points are 0 and 1.
        let two = both(&[(1.0, 0.0), (0.0, 0.0)]);
        close(
            paired_stratified_bootstrap_diff_ci(&[two], 4000, 1),
            (0.0, 1.0),
        );
        // Same values on both sides: no difference, however the items vary.
        let same = both(&[(0.0, 0.0), (100.0, 100.0), (50.0, 50.0)]);
        close(
            paired_stratified_bootstrap_diff_ci(&[same], 500, 2),
            (0.0, 0.0),
        );
        // Missing values are left out per side; a group empty on one side is left out.
        let gaps = vec![
            (Some(30.0), None),
            (Some(30.0), Some(10.0)),
            (None, Some(10.0)),
        ];
        let one_sided = vec![(Some(100.0), None)];
        close(
            paired_stratified_bootstrap_diff_ci(&[gaps.clone(), one_sided], 500, 3),
            (20.0, 20.0),
        );
        // Deterministic for a seed.
        let varied = both(&[(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.0), (1.0, 0.0)]);
        assert_eq!(
            paired_stratified_bootstrap_diff_ci(std::slice::from_ref(&varied), 200, 5),
            paired_stratified_bootstrap_diff_ci(&[varied], 200, 5)
        );
        assert!(paired_stratified_bootstrap_diff_ci(&[], 10, 1).0.is_nan());
    }

    #[test]
    fn spearman_ranks_with_ties() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        let r = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((r - 0.8).abs() < 1e-12, "{r}");
    }
}
