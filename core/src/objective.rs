//! The RCO objective as plain math (method.md, "Train"):
//!
//! ```text
//! log Z_hat = logsumexp_i(CU_i / beta) - ln N
//! r_i       = log p_theta(c_i) - log p_ref(c_i) + log Z_hat - CU_i / beta
//! L_group   = 1/(2N) * sum_i r_i^2
//! ```
//!
//! Model code computes `log p_theta` with its own tensors and adds [`residual_offsets`], so the
//! loss is written once, here, and the tensor side only squares and averages.

/// `log(sum(exp(xs)))`, stable for large inputs; `-inf` for an empty slice.
pub fn logsumexp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// Monte-Carlo estimate of `log Z` over the group's own critiques.
pub fn log_z_hat(cus: &[f64], beta: f64) -> f64 {
    let scaled: Vec<f64> = cus.iter().map(|cu| cu / beta).collect();
    logsumexp(&scaled) - (cus.len() as f64).ln()
}

/// The per-critique constants `o_i = -log p_ref(c_i) + log Z_hat - CU_i / beta`, so that the
/// residual is `r_i = log p_theta(c_i) + o_i`.
pub fn residual_offsets(ref_logprobs: &[f64], cus: &[f64], beta: f64) -> Vec<f64> {
    let log_z = log_z_hat(cus, beta);
    ref_logprobs
        .iter()
        .zip(cus)
        .map(|(lp_ref, cu)| -lp_ref + log_z - cu / beta)
        .collect()
}

/// Residuals `r_i` of one group.
pub fn residuals(logprobs: &[f64], ref_logprobs: &[f64], cus: &[f64], beta: f64) -> Vec<f64> {
    residual_offsets(ref_logprobs, cus, beta)
        .iter()
        .zip(logprobs)
        .map(|(o, lp)| lp + o)
        .collect()
}

/// `L_group = 1/(2N) sum r_i^2`.
pub fn group_loss(logprobs: &[f64], ref_logprobs: &[f64], cus: &[f64], beta: f64) -> f64 {
    let r = residuals(logprobs, ref_logprobs, cus, beta);
    r.iter().map(|x| x * x).sum::<f64>() / (2.0 * r.len() as f64)
}

/// `dL_group / d log p_theta(c_i) = r_i / N`.
pub fn group_gradient(logprobs: &[f64], ref_logprobs: &[f64], cus: &[f64], beta: f64) -> Vec<f64> {
    let r = residuals(logprobs, ref_logprobs, cus, beta);
    let n = r.len() as f64;
    r.iter().map(|x| x / n).collect()
}

/// Whether a group's critiques all have the same CU (no signal at initialisation).
pub fn is_flat(cus: &[f64]) -> bool {
    cus.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BETA: f64 = 0.1;

    fn group() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        (
            vec![-3.0, -5.5, -2.25, -8.0],
            vec![-3.5, -5.0, -2.0, -7.0],
            vec![0.9, 0.1, 0.5, 0.5],
        )
    }

    #[test]
    fn loss_is_non_negative() {
        let (lp, lp_ref, cu) = group();
        assert!(group_loss(&lp, &lp_ref, &cu, BETA) >= 0.0);
        for shift in [-10.0, -1.0, 0.0, 2.0, 30.0] {
            let shifted: Vec<f64> = lp.iter().map(|x| x + shift).collect();
            assert!(group_loss(&shifted, &lp_ref, &cu, BETA) >= 0.0);
        }
    }

    #[test]
    fn zero_at_reference_when_cus_are_equal() {
        let (_, lp_ref, _) = group();
        let cu = vec![0.7; 4];
        assert!(group_loss(&lp_ref, &lp_ref, &cu, BETA).abs() < 1e-18);
        assert!(is_flat(&cu));
    }

    #[test]
    fn gradient_is_residual_over_n() {
        let (lp, lp_ref, cu) = group();
        let analytic = group_gradient(&lp, &lp_ref, &cu, BETA);
        let r = residuals(&lp, &lp_ref, &cu, BETA);
        for i in 0..lp.len() {
            assert!((analytic[i] - r[i] / 4.0).abs() < 1e-12);
            // Finite difference of the loss itself.
            let h = 1e-6;
            let mut up = lp.clone();
            up[i] += h;
            let mut down = lp.clone();
            down[i] -= h;
            let numeric = (group_loss(&up, &lp_ref, &cu, BETA)
                - group_loss(&down, &lp_ref, &cu, BETA))
                / (2.0 * h);
            assert!(
                (numeric - analytic[i]).abs() < 1e-5,
                "{numeric} vs {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn best_critique_is_pushed_up_at_initialisation() {
        let (_, lp_ref, cu) = group();
        let r = residuals(&lp_ref, &lp_ref, &cu, BETA);
        let best = 0; // cu 0.9
        assert!(r[best] <= 0.0);
        let worst = 1; // cu 0.1
        assert!(r[worst] > 0.0);
        // Gradient descent on log p moves against the gradient: up for the best critique.
        assert!(-group_gradient(&lp_ref, &lp_ref, &cu, BETA)[best] >= 0.0);
    }

    #[test]
    fn permutation_invariant() {
        let (lp, lp_ref, cu) = group();
        let order = [2, 0, 3, 1];
        let p = |v: &[f64]| order.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let a = group_loss(&lp, &lp_ref, &cu, BETA);
        let b = group_loss(&p(&lp), &p(&lp_ref), &p(&cu), BETA);
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn finite_for_large_cu_over_beta() {
        let cu = vec![1.0, 0.0, 0.5, 1.0];
        let beta = 1e-3; // CU / beta up to 1e3
        let lz = log_z_hat(&cu, beta);
        assert!(lz.is_finite());
        assert!((lz - (1000.0 + (2.0f64).ln() - (4.0f64).ln())).abs() < 1e-9);
        let (lp, lp_ref, _) = group();
        assert!(group_loss(&lp, &lp_ref, &cu, beta).is_finite());
        assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
    }
}
