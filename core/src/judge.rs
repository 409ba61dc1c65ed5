//! Wrappers that give any [`Judge`] a behaviour the method asks for.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Comparison, Judge, Judgement, PointwiseRequest, PointwiseScore, Result, Verdict};

/// A judgement from a judge's log-probabilities of `A`, `B` and `C` (tie) as the token after
/// the pairwise answer prefix: the verdict of the most likely, and `prob_a` = P(A) + P(C) / 2
/// over the three (which `reward.mode = "soft"` averages over both orders). A letter the
/// judge gave no probability is `f64::NEG_INFINITY`; with none of the three it is
/// [`Verdict::Invalid`].
pub fn judgement_from_choice_log_probs(log_probs: &[f64]) -> Judgement {
    let max = log_probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = log_probs.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = p.iter().sum();
    if !(total.is_finite() && total > 0.0) || p.len() != 3 {
        return Judgement::hard(Verdict::Invalid {
            reason: format!("no probability for A, B or C: {log_probs:?}"),
        });
    }
    let (a, b, c) = (p[0] / total, p[1] / total, p[2] / total);
    let verdict = if a >= b && a >= c {
        Verdict::A
    } else if b >= c {
        Verdict::B
    } else {
        Verdict::Tie
    };
    Judgement {
        verdict,
        prob_a: Some(a + c / 2.0),
    }
}

/// A judge section's `verdict_probabilities` reads the next token after the pairwise answer
/// prefix: every task's templates must have one.
pub fn verdict_prefix_problems(
    verdict_probabilities: bool,
    templates: &crate::PromptTemplates,
) -> Vec<crate::ConfigProblem> {
    if !verdict_probabilities {
        return Vec::new();
    }
    let missing: Vec<String> = templates
        .named()
        .filter(|(_, t)| t.pairwise_answer_prefix.is_empty())
        .map(|(k, _)| format!("templates.{k}"))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![crate::ConfigProblem::new(
        "verdict_probabilities",
        format!(
            "needs `pairwise_answer_prefix` (for example \"Verdict: [[\") in {}",
            missing.join(", ")
        ),
    )]
}

/// Reads a pairwise verdict from a judge's answer: the last of `[[A]]`, `[[B]]`, `[[C]]` (tie).
/// An answer with none is [`Verdict::Invalid`] carrying the answer's text.
pub fn parse_pairwise(answer: &str) -> Verdict {
    let last = [
        ("[[A]]", Verdict::A),
        ("[[B]]", Verdict::B),
        ("[[C]]", Verdict::Tie),
    ]
    .into_iter()
    .filter_map(|(tag, verdict)| answer.rfind(tag).map(|at| (at, verdict)))
    .max_by_key(|(at, _)| *at);
    match last {
        Some((_, verdict)) => verdict,
        None => Verdict::Invalid {
            reason: format!(
                "no [[A]], [[B]] or [[C]] in the answer: {:?}",
                answer.chars().take(200).collect::<String>()
            ),
        },
    }
}

/// Reads a rating `[[N]]` (the last one) from a pointwise judge's answer.
pub fn parse_rating(answer: &str) -> PointwiseScore {
    let mut rest = answer;
    let mut found = None;
    while let Some(start) = rest.find("[[") {
        let after = &rest[start + 2..];
        if let Some(end) = after.find("]]") {
            if let Ok(value) = after[..end].trim().parse::<f64>() {
                found = Some(value);
            }
            rest = &after[end + 2..];
        } else {
            break;
        }
    }
    match found {
        Some(value) if value.is_finite() => PointwiseScore::Score(value),
        _ => PointwiseScore::Invalid {
            reason: format!(
                "no [[rating]] in the answer: {:?}",
                answer.chars().take(200).collect::<String>()
            ),
        },
    }
}

/// Judges comparisons made in pairs by [`crate::BothOrders::comparisons`] (refinement first,
/// then second) and returns one [`BothOrders`] per pair; a judge that breaks the "one
/// judgement per comparison" contract fails the call.
pub async fn judge_both_orders(
    judge: &dyn Judge,
    comparisons: &[Comparison],
) -> Result<Vec<crate::BothOrders>> {
    let judged = judge.compare(comparisons).await?;
    if judged.len() != comparisons.len() {
        return Err(crate::Error::Other(format!(
            "the judge returned {} judgements for {} comparisons",
            judged.len(),
            comparisons.len()
        )));
    }
    let mut judged = judged.into_iter();
    let mut out = Vec::with_capacity(comparisons.len() / 2);
    while let (Some(first), Some(second)) = (judged.next(), judged.next()) {
        out.push(crate::BothOrders::from_judgements(first, second));
    }
    Ok(out)
}

/// Asks an unreadable verdict again, up to `attempts` more times with a fresh seed each time,
/// before it stands as [`crate::Verdict::Invalid`] (method.md: re-asked a bounded number of
/// times, then recorded; never a silent default).
pub struct ReaskInvalid {
    inner: Arc<dyn Judge>,
    attempts: usize,
}

impl ReaskInvalid {
    pub fn new(inner: Arc<dyn Judge>, attempts: usize) -> Self {
        Self { inner, attempts }
    }
}

/// The re-asking of [`ReaskInvalid`] for any kind of request: the requests whose judgement
/// is invalid are asked again, each with a seed derived from its own and the attempt, up to
/// `attempts` times.
async fn reask<T: Clone, Fut>(
    requests: &[T],
    mut judgements: Vec<Judgement>,
    attempts: usize,
    seed: impl Fn(&T) -> u64,
    reseed: impl Fn(&T, u64) -> T,
    ask: impl Fn(Vec<T>) -> Fut,
) -> Result<Vec<Judgement>>
where
    Fut: std::future::Future<Output = Result<Vec<Judgement>>>,
{
    for attempt in 1..=attempts {
        let again: Vec<usize> = (0..judgements.len())
            .filter(|&i| !judgements[i].verdict.is_valid())
            .collect();
        if again.is_empty() {
            break;
        }
        tracing::info!(
            "asking {} unreadable verdict(s) of {} again (attempt {attempt} of {attempts})",
            again.len(),
            judgements.len(),
        );
        let retry: Vec<T> = again
            .iter()
            .map(|&i| {
                let next =
                    crate::seed::derive_seed(seed(&requests[i]), &["reask", &attempt.to_string()]);
                reseed(&requests[i], next)
            })
            .collect();
        let answers = ask(retry).await?;
        for (i, answer) in again.into_iter().zip(answers) {
            judgements[i] = answer;
        }
    }
    Ok(judgements)
}

#[async_trait]
impl Judge for ReaskInvalid {
    fn max_batch_size(&self) -> usize {
        self.inner.max_batch_size()
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let first = self.inner.compare(comparisons).await?;
        let reseed = |c: &Comparison, seed| Comparison { seed, ..c.clone() };
        let ask = |retry: Vec<Comparison>| async move { self.inner.compare(&retry).await };
        reask(comparisons, first, self.attempts, |c| c.seed, reseed, ask).await
    }

    async fn compare_critiques(
        &self,
        comparisons: &[crate::CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        let first = self.inner.compare_critiques(comparisons).await?;
        let reseed =
            |c: &crate::CritiqueComparison, seed| crate::CritiqueComparison { seed, ..c.clone() };
        let ask = |retry: Vec<crate::CritiqueComparison>| async move {
            self.inner.compare_critiques(&retry).await
        };
        reask(comparisons, first, self.attempts, |c| c.seed, reseed, ask).await
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        self.inner.score(requests).await
    }

    fn solved_score(&self, task: &str) -> Option<f64> {
        self.inner.solved_score(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_log_probs_become_a_soft_judgement() {
        let j = judgement_from_choice_log_probs(&[(0.6f64).ln(), (0.3f64).ln(), (0.1f64).ln()]);
        assert_eq!(j.verdict, Verdict::A);
        assert!((j.prob_a.unwrap() - 0.65).abs() < 1e-12);
        let j = judgement_from_choice_log_probs(&[(0.1f64).ln(), (0.2f64).ln(), (0.7f64).ln()]);
        assert_eq!(j.verdict, Verdict::Tie);
        // A letter without probability (not among a server's top tokens) counts as none.
        let j = judgement_from_choice_log_probs(&[f64::NEG_INFINITY, (0.2f64).ln(), (0.1f64).ln()]);
        assert_eq!(j.verdict, Verdict::B);
        assert!((j.prob_a.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert!(!judgement_from_choice_log_probs(&[f64::NEG_INFINITY; 3])
            .verdict
            .is_valid());
    }

    #[test]
    fn verdict_probabilities_need_a_pairwise_answer_prefix_everywhere() {
        let mut templates = crate::PromptTemplates::default();
        assert!(verdict_prefix_problems(false, &templates).is_empty());
        let p = verdict_prefix_problems(true, &templates);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "verdict_probabilities");
        assert!(p[0].message.contains("templates.default"), "{p:?}");
        templates.default.pairwise_answer_prefix = "Verdict: [[".into();
        assert!(verdict_prefix_problems(true, &templates).is_empty());
    }

    /// Unreadable whenever the seed is even.
    struct Flaky;

    #[async_trait]
    impl Judge for Flaky {
        async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
            Ok(comparisons
                .iter()
                .map(|c| {
                    Judgement::hard(if c.seed % 2 == 0 {
                        Verdict::Invalid {
                            reason: "garbled".into(),
                        }
                    } else {
                        Verdict::A
                    })
                })
                .collect())
        }
    }

    #[test]
    fn verdicts_and_ratings_are_read_from_answers() {
        assert_eq!(parse_pairwise("A is terse. Verdict: [[B]]"), Verdict::B);
        assert_eq!(
            parse_pairwise("[[A]] at first, but on reflection [[C]]"),
            Verdict::Tie
        );
        assert!(
            matches!(parse_pairwise("Both are fine."), Verdict::Invalid { reason } if reason.contains("Both are fine."))
        );
        assert_eq!(parse_rating("Rating: [[7]]"), PointwiseScore::Score(7.0));
        assert_eq!(
            parse_rating("[[x]] then Rating: [[ 8.5 ]]"),
            PointwiseScore::Score(8.5)
        );
        assert!(matches!(
            parse_rating("Rating: 7"),
            PointwiseScore::Invalid { .. }
        ));
    }

    #[tokio::test]
    async fn invalid_verdicts_are_asked_again_and_then_recorded() {
        let comparisons: Vec<Comparison> = (0..200)
            .map(|seed| Comparison {
                task: "t".into(),
                prompt: "p".into(),
                reference: None,
                a: "a".into(),
                b: "b".into(),
                seed,
                ..Comparison::default()
            })
            .collect();
        let none = ReaskInvalid::new(Arc::new(Flaky), 0)
            .compare(&comparisons)
            .await
            .unwrap();
        assert_eq!(none.iter().filter(|j| !j.verdict.is_valid()).count(), 100);
        let judged = ReaskInvalid::new(Arc::new(Flaky), 3)
            .compare(&comparisons)
            .await
            .unwrap();
        assert_eq!(judged.len(), 200);
        let invalid = judged.iter().filter(|j| !j.verdict.is_valid()).count();
        // Each re-ask draws a new seed, even half of the time: about 100 / 2^3 stay invalid.
        assert!(invalid > 0 && invalid < 30, "{invalid}");
        // Order is kept: odd seeds were valid the first time and stay as they were.
        assert!(judged
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .all(|(_, j)| j.verdict == Verdict::A));
    }
}
