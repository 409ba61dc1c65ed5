//! The math verifier (`kind = "math"`): an answer is correct when its final number equals
//! the reference's. Pairwise, correct beats incorrect and equal correctness is a tie;
//! pointwise, correct is 10 and incorrect 1. An answer with no number is incorrect; the
//! verdict is invalid only when the item's reference has no number to compare with.

use std::sync::Arc;

use async_trait::async_trait;
use rco_core::registry::Validate;
use rco_core::{
    BuildContext, Comparison, Judge, Judgement, PointwiseRequest, PointwiseScore, Result, Verdict,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::extract::{final_answer, same_number, value};
use crate::{SOLVED, WRONG};

/// The math verifier has no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MathJudgeConfig {}

impl Validate for MathJudgeConfig {}

/// Checks final numeric answers against the reference.
#[derive(Debug, Clone, Default)]
pub struct MathJudge;

/// Whether `response` reaches the reference's number; `Err` says why there is nothing to
/// compare with.
pub fn correct(response: &str, reference: Option<&str>) -> std::result::Result<bool, String> {
    let reference = reference.ok_or("the item has no reference answer")?;
    let expected = final_answer(reference)
        .and_then(|t| value(&t))
        .ok_or_else(|| format!("no number in the reference answer {reference:?}"))?;
    Ok(final_answer(response)
        .and_then(|t| value(&t))
        .is_some_and(|got| same_number(got, expected)))
}

/// The verdict of a pair from the correctness of each side.
pub fn verdict(a: bool, b: bool) -> Verdict {
    match (a, b) {
        (true, false) => Verdict::A,
        (false, true) => Verdict::B,
        _ => Verdict::Tie,
    }
}

#[async_trait]
impl Judge for MathJudge {
    /// A verifier checks answers, not critiques: every critique comparison is invalid.
    async fn compare_critiques(
        &self,
        comparisons: &[rco_core::CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        Ok(crate::decline_critiques(comparisons.len()))
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| {
                let reference = c.reference.as_deref();
                Judgement::hard(match (correct(&c.a, reference), correct(&c.b, reference)) {
                    (Ok(a), Ok(b)) => verdict(a, b),
                    (Err(reason), _) | (_, Err(reason)) => Verdict::Invalid { reason },
                })
            })
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        Ok(requests
            .iter()
            .map(|r| match correct(&r.response, r.reference.as_deref()) {
                Ok(true) => PointwiseScore::Score(SOLVED),
                Ok(false) => PointwiseScore::Score(WRONG),
                Err(reason) => PointwiseScore::Invalid { reason },
            })
            .collect())
    }

    fn solved_score(&self, _task: &str) -> Option<f64> {
        Some(SOLVED)
    }
}

fn build(_config: &MathJudgeConfig, _ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(MathJudge))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "math",
    summary: "Math verifier: the final number (#### N, \\boxed{}, \"the answer is N\", last number) against the reference; correct beats incorrect",
    example: "kind = \"math\"\n",
    config: MathJudgeConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str, reference: Option<&str>) -> Comparison {
        Comparison {
            task: "math".into(),
            prompt: "?".into(),
            reference: reference.map(str::to_string),
            a: a.into(),
            b: b.into(),
            ..Comparison::default()
        }
    }

    #[tokio::test]
    async fn correct_beats_incorrect_and_equal_ties() {
        let r = Some("Janet sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18");
        let comparisons = [
            pair("So she makes $18.", "#### 20", r),
            pair("The answer is 17", "\\boxed{18}", r),
            pair("#### 18.0", "18 dollars", r),
            pair("I don't know", "#### 3", r),
            pair("#### 18", "#### 18", Some("no number")),
            pair("#### 18", "#### 18", None),
        ];
        let verdicts: Vec<Verdict> = MathJudge
            .compare(&comparisons)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.verdict)
            .collect();
        assert_eq!(
            &verdicts[..4],
            &[Verdict::A, Verdict::B, Verdict::Tie, Verdict::Tie]
        );
        assert!(
            matches!(&verdicts[4], Verdict::Invalid { reason } if reason.contains("no number"))
        );
        assert!(
            matches!(&verdicts[5], Verdict::Invalid { reason } if reason.contains("no reference"))
        );
        let scores = MathJudge
            .score(&[
                PointwiseRequest {
                    response: "#### 1,000".into(),
                    reference: Some("1000".into()),
                    ..PointwiseRequest::default()
                },
                PointwiseRequest {
                    response: "#### 3/4".into(),
                    reference: Some("0.7".into()),
                    ..PointwiseRequest::default()
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            scores,
            vec![PointwiseScore::Score(10.0), PointwiseScore::Score(1.0)]
        );
        assert_eq!(MathJudge.solved_score("math"), Some(10.0));
    }
}
