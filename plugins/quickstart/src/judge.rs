//! Judges for tasks with reference answers: an exact verifier (`kind = "verifier"`) and a
//! simulated LLM judge over it (`kind = "noisy"`) with position bias, random verdicts and
//! unreadable answers, which shows what judging in both orders buys.

use std::sync::Arc;

use async_trait::async_trait;
use rand::Rng;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::seed::rng_for;
use rco_core::{
    BuildContext, Comparison, ConfigProblem, CritiqueComparison, Error, Judge, Judgement,
    PointwiseRequest, PointwiseScore, Result, Verdict,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mix::{parse_critique, ParsedCritique};
use crate::tasks::error_count;

const NO_REFERENCE: &str = "no reference answer for a verifier judge";

/// The verdict of an exact check: the answer with fewer wrong positions against the
/// reference wins, equal counts tie.
pub fn verify(comparison: &Comparison) -> Verdict {
    let Some(reference) = comparison.reference.as_deref() else {
        return Verdict::Invalid {
            reason: NO_REFERENCE.into(),
        };
    };
    let a = error_count(&comparison.a, reference);
    let b = error_count(&comparison.b, reference);
    match a.cmp(&b) {
        std::cmp::Ordering::Less => Verdict::A,
        std::cmp::Ordering::Greater => Verdict::B,
        std::cmp::Ordering::Equal => Verdict::Tie,
    }
}

/// Wrong positions left in the initial response when a critique is taken literally: the
/// answer it states (`=…`), the digit it sets (`@p=d`); a critique that only points at a
/// position (`@p`) counts half an error less when that position is wrong and half an error
/// more when it is right (it misleads); `ok` and unreadable text change nothing.
pub fn literal_errors(critique: &str, response: &str, reference: &str) -> f64 {
    let errors = error_count(response, reference) as f64;
    let mut answer: Vec<char> = response.trim().chars().collect();
    match parse_critique(critique, answer.len()) {
        parsed @ ParsedCritique::Answer { .. } => {
            error_count(&parsed.answer_text().unwrap_or_default(), reference) as f64
        }
        ParsedCritique::Precise { pos, digit } => {
            if let Some(slot) = answer.get_mut(pos) {
                *slot = crate::mix::digit_to_char(digit);
            }
            error_count(&answer.into_iter().collect::<String>(), reference) as f64
        }
        ParsedCritique::Vague { pos } => {
            let wrong = answer.get(pos) != reference.chars().nth(pos).as_ref();
            if wrong {
                errors - 0.5
            } else {
                errors + 0.5
            }
        }
        ParsedCritique::Generic => errors,
    }
}

/// The verdict of an exact check of two critiques of the item's initial response: the one
/// that leaves fewer errors when taken literally ([`literal_errors`]) wins.
pub fn verify_critiques(comparison: &CritiqueComparison) -> Verdict {
    let Some(reference) = comparison.item.reference.as_deref() else {
        return Verdict::Invalid {
            reason: NO_REFERENCE.into(),
        };
    };
    let response = &comparison.item.initial_response;
    let a = literal_errors(&comparison.a, response, reference);
    let b = literal_errors(&comparison.b, response, reference);
    match a.total_cmp(&b) {
        std::cmp::Ordering::Less => Verdict::A,
        std::cmp::Ordering::Greater => Verdict::B,
        std::cmp::Ordering::Equal => Verdict::Tie,
    }
}

/// A pointwise score from 1 (nothing right) to 10 (exactly the reference):
/// `1 + 9 * right / len(reference)`, where `right` is the reference length less the wrong
/// positions, so that extra characters cost as much as wrong ones.
pub fn verifier_score(response: &str, reference: Option<&str>) -> PointwiseScore {
    let Some(reference) = reference else {
        return PointwiseScore::Invalid {
            reason: NO_REFERENCE.into(),
        };
    };
    let errors = error_count(response, reference);
    let len = reference.chars().count();
    if len == 0 {
        return PointwiseScore::Score(if errors == 0 { 10.0 } else { 1.0 });
    }
    let right = len.saturating_sub(errors);
    PointwiseScore::Score((1.0 + 9.0 * right as f64 / len as f64).clamp(1.0, 10.0))
}

fn scores(requests: &[PointwiseRequest]) -> Vec<PointwiseScore> {
    requests
        .iter()
        .map(|r| verifier_score(&r.response, r.reference.as_deref()))
        .collect()
}

/// Exact judge for items with reference answers; it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifierJudgeConfig {}

impl Validate for VerifierJudgeConfig {}

/// The exact judge.
#[derive(Debug, Clone, Default)]
pub struct VerifierJudge;

#[async_trait]
impl Judge for VerifierJudge {
    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| Judgement::hard(verify(c)))
            .collect())
    }

    async fn compare_critiques(
        &self,
        comparisons: &[CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| Judgement::hard(verify_critiques(c)))
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        Ok(scores(requests))
    }
}

fn build_verifier(_config: &VerifierJudgeConfig, _ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    Ok(Arc::new(VerifierJudge))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "verifier",
    summary: "Exact judge against the reference answer: fewer wrong positions wins, equal counts tie",
    example: "kind = \"verifier\"\n",
    config: VerifierJudgeConfig,
    build: build_verifier,
}

/// A simulated LLM judge: the verifier's verdict, except that with the given probabilities it
/// answers "A" whatever the answers, answers at random, or gives an unreadable answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NoisyJudgeConfig {
    /// Probability of answering "A" whatever the answers (position bias).
    pub position_bias: f64,
    /// Probability of a uniformly random verdict among A, B and tie.
    pub noise: f64,
    /// Probability of an answer that cannot be read (an invalid judgement).
    pub invalid_rate: f64,
}

impl Default for NoisyJudgeConfig {
    fn default() -> Self {
        Self {
            position_bias: 0.2,
            noise: 0.05,
            invalid_rate: 0.0,
        }
    }
}

impl Validate for NoisyJudgeConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.check()
    }
}

impl NoisyJudgeConfig {
    /// Every problem of the config, keys relative to the section.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems: Vec<ConfigProblem> = [
            ("position_bias", self.position_bias),
            ("noise", self.noise),
            ("invalid_rate", self.invalid_rate),
        ]
        .into_iter()
        .filter(|(_, p)| !(0.0..=1.0).contains(p))
        .map(|(key, p)| {
            ConfigProblem::new(key, format!("must be a probability in [0, 1], found {p}"))
        })
        .collect();
        let total = self.position_bias + self.noise + self.invalid_rate;
        // The three are exclusive outcomes of one draw; a small slack forgives decimal sums.
        if problems.is_empty() && total > 1.0 + 1e-9 {
            problems.push(ConfigProblem::new(
                "",
                format!("position_bias + noise + invalid_rate must be at most 1, found {total}"),
            ));
        }
        problems
    }
}

/// The simulated LLM judge.
#[derive(Debug, Clone)]
pub struct NoisyJudge {
    config: NoisyJudgeConfig,
}

impl NoisyJudge {
    pub fn new(config: NoisyJudgeConfig) -> Self {
        Self { config }
    }

    /// The verdict on one comparison, drawn from the comparison's seed.
    pub fn verdict(&self, comparison: &Comparison) -> Verdict {
        self.noisy(verify(comparison), comparison.seed)
    }

    /// The exact verdict `truth` after the simulated judge's bias and noise, drawn from
    /// `seed`.
    fn noisy(&self, truth: Verdict, seed: u64) -> Verdict {
        // Without a reference there is nothing to be noisy about; say so rather than guess.
        if !truth.is_valid() {
            return truth;
        }
        let mut rng = rng_for(seed, &["noisy-judge"]);
        let NoisyJudgeConfig {
            position_bias,
            noise,
            invalid_rate,
        } = self.config;
        let u = rng.random::<f64>();
        if u < invalid_rate {
            Verdict::Invalid {
                reason: "unparseable judge answer (simulated)".into(),
            }
        } else if u < invalid_rate + position_bias {
            Verdict::A
        } else if u < invalid_rate + position_bias + noise {
            match rng.random_range(0..3) {
                0 => Verdict::A,
                1 => Verdict::B,
                _ => Verdict::Tie,
            }
        } else {
            truth
        }
    }
}

#[async_trait]
impl Judge for NoisyJudge {
    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| Judgement::hard(self.verdict(c)))
            .collect())
    }

    /// The exact check of two critiques ([`verify_critiques`]) with the same bias and noise.
    async fn compare_critiques(
        &self,
        comparisons: &[CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        Ok(comparisons
            .iter()
            .map(|c| Judgement::hard(self.noisy(verify_critiques(c), c.seed)))
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        Ok(scores(requests))
    }
}

fn build_noisy(config: &NoisyJudgeConfig, _ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let problems = config.check();
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    Ok(Arc::new(NoisyJudge::new(*config)))
}

rco_core::register_plugin! {
    role: Judge,
    kind: "noisy",
    summary: "Simulated LLM judge: the verifier's verdict with position bias, random verdicts and unreadable answers",
    example: "kind = \"noisy\"\nposition_bias = 0.2\nnoise = 0.05\ninvalid_rate = 0.0\n",
    config: NoisyJudgeConfig,
    build: build_noisy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{QuickstartDataConfig, QuickstartDataset};
    use rco_core::registry::{build, validate, JudgeRole};
    use rco_core::reward::{critique_utility, CuMode};
    use rco_core::seed::derive_seed;
    use rco_core::ValidateContext;
    use rco_core::{BothOrders, Dataset};
    use serde_json::json;

    /// Two critiques of `143` (reference `123`) compared directly: the one that leaves fewer
    /// errors when taken literally wins; a pointer at a right digit misleads.
    #[test]
    fn critiques_are_compared_by_what_they_leave_wrong() {
        let item = rco_core::TaskItem {
            id: "1".into(),
            task: "copy".into(),
            prompt: "copy 123".into(),
            initial_response: "143".into(),
            reference: Some("123".into()),
            ..Default::default()
        };
        let compare = |a: &str, b: &str| {
            verify_critiques(&CritiqueComparison {
                item: item.clone(),
                a: a.into(),
                b: b.into(),
                seed: 0,
            })
        };
        assert_eq!(compare("=123", "ok"), Verdict::A);
        assert_eq!(compare("@2=2", "@2"), Verdict::A);
        assert_eq!(compare("@2", "ok"), Verdict::A);
        assert_eq!(compare("@1", "ok"), Verdict::B);
        assert_eq!(compare("@2=5", "ok"), Verdict::Tie);
        assert_eq!(compare("=124", "=123"), Verdict::B);
        let no_reference = CritiqueComparison {
            item: rco_core::TaskItem {
                reference: None,
                ..item.clone()
            },
            a: "=123".into(),
            b: "ok".into(),
            seed: 0,
        };
        assert!(!verify_critiques(&no_reference).is_valid());
    }

    fn comparison(a: &str, b: &str, reference: Option<&str>, seed: u64) -> Comparison {
        Comparison {
            task: "reverse".into(),
            prompt: "rev:1234".into(),
            reference: reference.map(str::to_string),
            a: a.into(),
            b: b.into(),
            seed,
            ..Comparison::default()
        }
    }

    #[tokio::test]
    async fn verifier_verdicts() {
        let r = Some("4321");
        let cases = [
            (comparison("4321", "4391", r, 0), Verdict::A),
            (comparison("4391", "4321", r, 0), Verdict::B),
            (comparison("4391", "4381", r, 0), Verdict::Tie),
            (comparison("43210", "9321", r, 0), Verdict::Tie),
            (comparison("432", "4391", r, 0), Verdict::Tie),
            (comparison("4321\n", "4321", r, 0), Verdict::Tie),
            (comparison("", "4", r, 0), Verdict::B),
            (
                comparison("4321", "4391", None, 0),
                Verdict::Invalid {
                    reason: NO_REFERENCE.into(),
                },
            ),
        ];
        let (comparisons, expected): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
        let judgements = VerifierJudge.compare(&comparisons).await.unwrap();
        let verdicts: Vec<_> = judgements.into_iter().map(|j| j.verdict).collect();
        assert_eq!(verdicts, expected);
    }

    #[tokio::test]
    async fn pointwise_scores() {
        let request = |response: &str, reference: Option<&str>| PointwiseRequest {
            task: "reverse".into(),
            prompt: "rev:1234".into(),
            response: response.into(),
            reference: reference.map(str::to_string),
            seed: 0,
            ..PointwiseRequest::default()
        };
        let scores = VerifierJudge
            .score(&[
                request("4321", Some("4321")),
                request("4391", Some("4321")),
                request("9999", Some("4321")),
                request("43210", Some("4321")),
                request("4321999999", Some("4321")),
                request("4321", None),
            ])
            .await
            .unwrap();
        assert_eq!(
            scores,
            vec![
                PointwiseScore::Score(10.0),
                PointwiseScore::Score(7.75),
                PointwiseScore::Score(1.0),
                PointwiseScore::Score(7.75),
                PointwiseScore::Score(1.0),
                PointwiseScore::Invalid {
                    reason: NO_REFERENCE.into()
                },
            ]
        );
        let noisy = NoisyJudge::new(NoisyJudgeConfig::default());
        assert_eq!(
            noisy.score(&[request("4391", Some("4321"))]).await.unwrap(),
            vec![PointwiseScore::Score(7.75)]
        );
    }

    #[test]
    fn noisy_extremes() {
        let always_a = NoisyJudge::new(NoisyJudgeConfig {
            position_bias: 1.0,
            noise: 0.0,
            invalid_rate: 0.0,
        });
        let unreadable = NoisyJudge::new(NoisyJudgeConfig {
            position_bias: 0.0,
            noise: 0.0,
            invalid_rate: 1.0,
        });
        let exact = NoisyJudge::new(NoisyJudgeConfig {
            position_bias: 0.0,
            noise: 0.0,
            invalid_rate: 0.0,
        });
        for seed in 0..50 {
            let c = comparison("4391", "4321", Some("4321"), seed);
            assert_eq!(always_a.verdict(&c), Verdict::A);
            assert_eq!(
                unreadable.verdict(&c),
                Verdict::Invalid {
                    reason: "unparseable judge answer (simulated)".into()
                }
            );
            assert_eq!(exact.verdict(&c), Verdict::B);
            assert!(!always_a
                .verdict(&comparison("4391", "4321", None, seed))
                .is_valid());
        }
        // Same seed, same verdict.
        let noisy = NoisyJudge::new(NoisyJudgeConfig {
            noise: 0.5,
            ..Default::default()
        });
        for seed in 0..50 {
            let c = comparison("4391", "4321", Some("4321"), seed);
            assert_eq!(noisy.verdict(&c), noisy.verdict(&c));
        }
    }

    /// With b strictly better than a, a position-biased judge gives b different win rates
    /// depending on its slot, while CU over both orders does not depend on the presentation.
    #[tokio::test]
    async fn both_orders_remove_position_bias() {
        let items = QuickstartDataset::new(
            QuickstartDataConfig {
                test_items: 2000,
                ..Default::default()
            },
            5,
        )
        .unwrap()
        .items("test")
        .unwrap();
        let judge = NoisyJudge::new(NoisyJudgeConfig::default());
        let pair = |i: usize, first: &str, second: &str, seed_label: &str| {
            let item = &items[i];
            Comparison {
                task: item.task.clone(),
                prompt: item.prompt.clone(),
                reference: item.reference.clone(),
                a: first.into(),
                b: second.into(),
                seed: derive_seed(9, &[&item.id, seed_label]),
                ..Comparison::default()
            }
        };
        let better = |i: usize| items[i].reference.clone().unwrap();
        let worse = |i: usize| items[i].initial_response.clone();
        // Presentation 1 asks "b in slot B" first; presentation 2 asks "b in slot A" first.
        // Each call position gets its own seed, as a caller judging both orders would give.
        let b_second: Vec<_> = (0..items.len())
            .map(|i| pair(i, &worse(i), &better(i), "first-call"))
            .collect();
        let b_first: Vec<_> = (0..items.len())
            .map(|i| pair(i, &better(i), &worse(i), "first-call"))
            .collect();
        let b_second_later: Vec<_> = (0..items.len())
            .map(|i| pair(i, &worse(i), &better(i), "second-call"))
            .collect();
        let b_first_later: Vec<_> = (0..items.len())
            .map(|i| pair(i, &better(i), &worse(i), "second-call"))
            .collect();
        let verdicts = |judgements: Vec<Judgement>| -> Vec<Verdict> {
            judgements.into_iter().map(|j| j.verdict).collect()
        };
        let p1_first = verdicts(judge.compare(&b_second).await.unwrap());
        let p1_second = verdicts(judge.compare(&b_first_later).await.unwrap());
        let p2_first = verdicts(judge.compare(&b_first).await.unwrap());
        let p2_second = verdicts(judge.compare(&b_second_later).await.unwrap());

        let share = |v: &[Verdict], want: Verdict| {
            v.iter().filter(|&x| *x == want).count() as f64 / v.len() as f64
        };
        // Single order: b wins 0.75 + 0.05/3 in slot B but 0.2 + 0.75 + 0.05/3 in slot A.
        let win_in_b = share(&p1_first, Verdict::B);
        let win_in_a = share(&p2_first, Verdict::A);
        assert!((win_in_b - 0.767).abs() < 0.03, "{win_in_b}");
        assert!((win_in_a - 0.967).abs() < 0.03, "{win_in_a}");
        assert!(win_in_a - win_in_b > 0.1);
        let first_slot = (share(&p1_first, Verdict::A) + share(&p2_first, Verdict::A)) / 2.0;
        assert!(first_slot > 0.55, "first-slot win rate {first_slot}");

        // Both orders: CU of b (the "refinement") against a, whichever order came first.
        let both = |refined_first: &[Verdict], refined_second: &[Verdict]| -> Vec<BothOrders> {
            refined_first
                .iter()
                .zip(refined_second)
                .map(|(f, s)| BothOrders {
                    refined_first: Judgement::hard(f.clone()),
                    refined_second: Judgement::hard(s.clone()),
                })
                .collect()
        };
        let cu1 = critique_utility(&both(&p1_second, &p1_first), CuMode::Hard)
            .cu
            .unwrap();
        let cu2 = critique_utility(&both(&p2_first, &p2_second), CuMode::Hard)
            .cu
            .unwrap();
        // Expected: P(both orders pick b) + half of the disagreements and ties, about 0.869.
        assert!((cu1 - cu2).abs() < 0.03, "{cu1} vs {cu2}");
        assert!((cu1 - 0.869).abs() < 0.03, "{cu1}");
        assert!((cu2 - 0.869).abs() < 0.03, "{cu2}");
    }

    #[test]
    fn validation_names_the_key() {
        let judge =
            |v: serde_json::Value| validate::<JudgeRole>(&v, &ValidateContext::new("judge"));
        assert!(judge(json!({"kind": "verifier"})).is_empty());
        assert!(judge(json!({"kind": "noisy"})).is_empty());
        let problems = judge(json!({"kind": "verifier", "strict": true}));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("strict"), "{problems:?}");
        let problems = judge(json!({"kind": "noisy", "noise": 1.5}));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "noise");
        let problems = judge(json!({"kind": "noisy", "position_bias": 0.6, "noise": 0.5}));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("at most 1"));
        let problems = judge(json!({"kind": "noisy", "bias": 0.1}));
        assert!(problems[0].message.contains("bias"));
    }

    #[test]
    fn builds_from_the_registry() {
        for section in [json!({"kind": "verifier"}), json!({"kind": "noisy"})] {
            assert!(build::<JudgeRole>("judge", &section, &BuildContext::new("judge", 0)).is_ok());
        }
        let bad = json!({"kind": "noisy", "invalid_rate": 2.0});
        assert!(build::<JudgeRole>("judge", &bad, &BuildContext::new("judge", 0)).is_err());
    }
}
