//! Critique utility (CU) from both-order pairwise judgements, exactly as method.md states:
//! preference score from the refinement's side (win 1, tie 0.5, loss 0); a pair whose two
//! orders disagree is a tie (hard mode) or the mean of the two orders' probabilities (soft
//! mode); invalid judgements are counted and excluded.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{BothOrders, CuEstimate, Judgement, Result, RewardEstimator, Verdict};

/// How the two orders of a pair are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CuMode {
    /// Both orders must agree, otherwise the pair is a tie (MT-Bench rule).
    #[default]
    Hard,
    /// Mean of the two orders' scores, using the judge's probabilities where it gives them.
    Soft,
}

/// Config of the default reward estimator (`kind = "cu"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CuEstimatorConfig {
    /// `hard` (disagreement = tie) or `soft` (average of the two orders).
    #[serde(default)]
    pub mode: CuMode,
}

/// The default [`RewardEstimator`]: CU as the mean preference score of valid pairs.
#[derive(Debug, Clone, Default)]
pub struct CuEstimator {
    pub mode: CuMode,
}

/// Score of the refinement in one order, from a hard verdict: win 1, tie 0.5, loss 0.
fn hard_score(verdict: &Verdict, refined_is_a: bool) -> Option<f64> {
    match (verdict, refined_is_a) {
        (Verdict::A, true) | (Verdict::B, false) => Some(1.0),
        (Verdict::A, false) | (Verdict::B, true) => Some(0.0),
        (Verdict::Tie, _) => Some(0.5),
        (Verdict::Invalid { .. }, _) => None,
    }
}

fn soft_score(judgement: &Judgement, refined_is_a: bool) -> Option<f64> {
    if !judgement.verdict.is_valid() {
        return None;
    }
    match judgement.prob_a {
        Some(p) => Some(if refined_is_a { p } else { 1.0 - p }),
        None => hard_score(&judgement.verdict, refined_is_a),
    }
}

/// Preference score of one both-order pair, and whether the orders disagreed;
/// `None` if either judgement is invalid.
pub fn pair_score(pair: &BothOrders, mode: CuMode) -> Option<(f64, bool)> {
    let first = hard_score(&pair.refined_first.verdict, true)?;
    let second = hard_score(&pair.refined_second.verdict, false)?;
    let disagree = first != second;
    let score = match mode {
        CuMode::Hard => {
            if disagree {
                0.5
            } else {
                first
            }
        }
        CuMode::Soft => {
            let a = soft_score(&pair.refined_first, true)?;
            let b = soft_score(&pair.refined_second, false)?;
            (a + b) / 2.0
        }
    };
    Some((score, disagree))
}

/// CU of one critique from the pairs of its refinements.
pub fn critique_utility(pairs: &[BothOrders], mode: CuMode) -> CuEstimate {
    let mut estimate = CuEstimate {
        cu: None,
        valid: 0,
        invalid: 0,
        ties: 0,
        disagreements: 0,
    };
    let mut sum = 0.0;
    for pair in pairs {
        match pair_score(pair, mode) {
            Some((score, disagree)) => {
                estimate.valid += 1;
                sum += score;
                if disagree {
                    estimate.disagreements += 1;
                }
                if score == 0.5 {
                    estimate.ties += 1;
                }
            }
            None => estimate.invalid += 1,
        }
    }
    if estimate.valid > 0 {
        estimate.cu = Some(sum / estimate.valid as f64);
    }
    estimate
}

#[async_trait]
impl RewardEstimator for CuEstimator {
    async fn estimate(&self, judgements: &[Vec<BothOrders>]) -> Result<Vec<CuEstimate>> {
        Ok(judgements
            .iter()
            .map(|pairs| critique_utility(pairs, self.mode))
            .collect())
    }
}

fn build_cu(
    config: &CuEstimatorConfig,
    _ctx: &crate::BuildContext,
) -> Result<std::sync::Arc<dyn RewardEstimator>> {
    Ok(std::sync::Arc::new(CuEstimator { mode: config.mode }))
}

crate::register_plugin! {
    role: RewardEstimator,
    kind: "cu",
    summary: "Critique utility: mean both-order preference score of a critique's refinements (hard or soft)",
    example: "kind = \"cu\"\nmode = \"hard\"\n",
    config: CuEstimatorConfig,
    build: build_cu,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(first: Verdict, second: Verdict) -> BothOrders {
        BothOrders {
            refined_first: Judgement::hard(first),
            refined_second: Judgement::hard(second),
        }
    }

    fn invalid() -> Verdict {
        Verdict::Invalid {
            reason: "no verdict".into(),
        }
    }

    #[test]
    fn consistent_win_loss_and_tie() {
        let e = critique_utility(
            &[
                pair(Verdict::A, Verdict::B),
                pair(Verdict::B, Verdict::A),
                pair(Verdict::Tie, Verdict::Tie),
            ],
            CuMode::Hard,
        );
        assert_eq!(e.cu, Some(0.5));
        assert_eq!((e.valid, e.invalid, e.ties, e.disagreements), (3, 0, 1, 0));
        let e = critique_utility(
            &[pair(Verdict::A, Verdict::B), pair(Verdict::A, Verdict::B)],
            CuMode::Hard,
        );
        assert_eq!(e.cu, Some(1.0));
    }

    #[test]
    fn position_bias_becomes_a_tie() {
        // A judge that always says "A" prefers the refinement in one order only.
        let e = critique_utility(&[pair(Verdict::A, Verdict::A)], CuMode::Hard);
        assert_eq!(e.cu, Some(0.5));
        assert_eq!(e.disagreements, 1);
        // Win in one order, tie in the other, disagrees too.
        let e = critique_utility(&[pair(Verdict::A, Verdict::Tie)], CuMode::Hard);
        assert_eq!(e.cu, Some(0.5));
        // Soft mode averages instead.
        let e = critique_utility(&[pair(Verdict::A, Verdict::Tie)], CuMode::Soft);
        assert_eq!(e.cu, Some(0.75));
    }

    #[test]
    fn invalid_pairs_are_counted_and_excluded() {
        let e = critique_utility(
            &[pair(Verdict::A, Verdict::B), pair(invalid(), Verdict::B)],
            CuMode::Hard,
        );
        assert_eq!(e.cu, Some(1.0));
        assert_eq!((e.valid, e.invalid), (1, 1));
        let e = critique_utility(&[pair(invalid(), invalid())], CuMode::Hard);
        assert_eq!(e.cu, None);
    }

    #[test]
    fn soft_mode_uses_probabilities() {
        let p = BothOrders {
            refined_first: Judgement {
                verdict: Verdict::A,
                prob_a: Some(0.8),
            },
            refined_second: Judgement {
                verdict: Verdict::B,
                prob_a: Some(0.4),
            },
        };
        let e = critique_utility(&[p], CuMode::Soft);
        assert!((e.cu.unwrap() - 0.7).abs() < 1e-12);
    }
}
