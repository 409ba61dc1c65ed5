//! The quickstart actor (`kind = "quickstart"`): a program that knows the right answer and
//! reacts to a critique stochastically, so that critiques differ in how much they help a weak
//! or a strong actor. Parameters are probabilities; see [`ActorParams`].

use std::sync::Arc;

use async_trait::async_trait;
use rand::Rng;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::seed::rng_for;
use rco_core::{
    Actor, BuildContext, ConfigProblem, Critique, CritiqueRequest, RefineRequest, Refinement,
    RespondRequest, Result, TaskItem,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mix::{digit_to_char, parse_critique, ParsedCritique};
use crate::tasks::solve;

/// A preset of [`ActorParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    /// Follows critiques, trusts wrong ones, and can hardly fix anything alone.
    Weak,
    /// Checks critiques against its own judgement and often fixes errors alone.
    Strong,
}

impl Strength {
    /// The preset's probabilities.
    pub fn params(self) -> ActorParams {
        match self {
            Strength::Weak => ActorParams {
                follow: 0.9,
                trust: 0.8,
                skill: 0.15,
                self_fix: 0.0,
                noise: 0.2,
            },
            Strength::Strong => ActorParams {
                follow: 0.95,
                trust: 0.3,
                skill: 0.9,
                self_fix: 0.3,
                noise: 0.05,
            },
        }
    }
}

/// How the actor reacts to each kind of critique.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActorParams {
    /// Precise critique with the right digit: probability of applying it (else no change).
    pub follow: f64,
    /// Precise critique with a wrong digit: probability of applying it; otherwise the actor
    /// checks the position itself (see `skill`).
    pub trust: f64,
    /// Vague critique `@p`: probability of setting `p` to the right digit; otherwise `p` gets
    /// a random digit that is neither the current nor the right one. Also the chance that a
    /// self-check of a distrusted precise critique sets `p` right (else no change).
    pub skill: f64,
    /// Generic critique: probability of answering correctly on its own.
    pub self_fix: f64,
    /// Generic critique, not self-fixed: probability of breaking one random position.
    pub noise: f64,
}

/// A program actor whose reactions to critiques are drawn with fixed probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickstartActorConfig {
    /// `weak` or `strong`: the preset that the probabilities below override.
    pub strength: Strength,
    /// Override: probability of applying a precise critique whose digit is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<f64>,
    /// Override: probability of applying a precise critique whose digit is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<f64>,
    /// Override: probability of fixing the position a vague critique names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<f64>,
    /// Override: probability of fixing the answer alone after a generic critique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_fix: Option<f64>,
    /// Override: probability of breaking one position after a generic critique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
}

impl QuickstartActorConfig {
    fn overrides(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("follow", self.follow),
            ("trust", self.trust),
            ("skill", self.skill),
            ("self_fix", self.self_fix),
            ("noise", self.noise),
        ]
    }

    /// The preset with the overrides applied.
    pub fn params(&self) -> ActorParams {
        let preset = self.strength.params();
        ActorParams {
            follow: self.follow.unwrap_or(preset.follow),
            trust: self.trust.unwrap_or(preset.trust),
            skill: self.skill.unwrap_or(preset.skill),
            self_fix: self.self_fix.unwrap_or(preset.self_fix),
            noise: self.noise.unwrap_or(preset.noise),
        }
    }
}

impl Validate for QuickstartActorConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.check()
    }
}

impl QuickstartActorConfig {
    /// Every problem of the config, keys relative to the section.
    pub fn check(&self) -> Vec<ConfigProblem> {
        self.overrides()
            .into_iter()
            .filter_map(|(key, value)| {
                let p = value?;
                // `contains` is false for NaN, so NaN is rejected too.
                (!(0.0..=1.0).contains(&p)).then(|| {
                    ConfigProblem::new(key, format!("must be a probability in [0, 1], found {p}"))
                })
            })
            .collect()
    }
}

/// The quickstart actor.
#[derive(Debug, Clone)]
pub struct QuickstartActor {
    params: ActorParams,
}

impl QuickstartActor {
    pub fn new(params: ActorParams) -> Self {
        Self { params }
    }

    pub fn params(&self) -> ActorParams {
        self.params
    }

    /// One refinement of the item's initial response given a critique.
    pub fn refine_once(&self, item: &TaskItem, critique: &str, rng: &mut impl Rng) -> String {
        let mut answer: Vec<char> = item.initial_response.trim().chars().collect();
        // The actor is a program: it solves the prompt itself and never reads the reference.
        let Some(correct) = solve(&item.task, &item.prompt) else {
            return answer.into_iter().collect();
        };
        let correct: Vec<char> = correct.chars().collect();
        let correct_digit = |pos: usize| {
            correct
                .get(pos)
                .and_then(|c| c.to_digit(10))
                .and_then(|d| u8::try_from(d).ok())
        };
        let p = self.params;
        let parsed = parse_critique(critique, answer.len());
        match parsed {
            ParsedCritique::Answer { .. } => {
                let proposed = parsed.answer_text().unwrap_or_default();
                let right = proposed.chars().eq(correct.iter().copied());
                let threshold = if right { p.follow } else { p.trust };
                if rng.random::<f64>() < threshold {
                    return proposed;
                }
            }
            ParsedCritique::Precise { pos, digit } => {
                let right = correct_digit(pos);
                let apply = if right == Some(digit) {
                    rng.random::<f64>() < p.follow
                } else {
                    rng.random::<f64>() < p.trust
                };
                if apply {
                    set(&mut answer, pos, digit_to_char(digit));
                } else if right != Some(digit) && rng.random::<f64>() < p.skill {
                    if let Some(right) = right {
                        set(&mut answer, pos, digit_to_char(right));
                    }
                }
            }
            ParsedCritique::Vague { pos } => {
                let right = correct_digit(pos);
                let digit = match right {
                    Some(right) if rng.random::<f64>() < p.skill => digit_to_char(right),
                    _ => other_digit(answer.get(pos).copied(), right, rng),
                };
                set(&mut answer, pos, digit);
            }
            ParsedCritique::Generic => {
                if rng.random::<f64>() < p.self_fix {
                    return correct.into_iter().collect();
                }
                if !answer.is_empty() && rng.random::<f64>() < p.noise {
                    let pos = rng.random_range(0..answer.len());
                    let digit = other_digit(answer.get(pos).copied(), correct_digit(pos), rng);
                    set(&mut answer, pos, digit);
                }
            }
        }
        answer.into_iter().collect()
    }
}

/// Parsed critiques only name positions inside the answer; the check keeps that an invariant
/// rather than a panic.
fn set(answer: &mut [char], pos: usize, digit: char) {
    if let Some(slot) = answer.get_mut(pos) {
        *slot = digit;
    }
}

/// A uniformly random digit that is neither `current` nor `right`: a miss that never lands on
/// the answer by chance, so that `skill` and `self_fix` are exactly the fix probabilities.
fn other_digit(current: Option<char>, right: Option<u8>, rng: &mut impl Rng) -> char {
    let choices: Vec<u8> = (0..10u8)
        .filter(|&d| Some(digit_to_char(d)) != current && Some(d) != right)
        .collect();
    // At most two of ten digits are excluded, so `choices` is never empty.
    let pick = choices
        .get(rng.random_range(0..choices.len().max(1)))
        .copied()
        .unwrap_or(0);
    digit_to_char(pick)
}

#[async_trait]
impl Actor for QuickstartActor {
    async fn respond(&self, requests: &[RespondRequest]) -> Result<Vec<String>> {
        // The quickstart world's initial answers come with the data.
        Ok(requests
            .iter()
            .map(|r| r.item.initial_response.clone())
            .collect())
    }

    async fn refine(&self, requests: &[RefineRequest]) -> Result<Vec<Vec<Refinement>>> {
        Ok(requests
            .iter()
            .map(|request| {
                (0..request.m)
                    .map(|j| {
                        let mut rng = rng_for(request.seed, &["refine", &j.to_string()]);
                        Refinement {
                            text: self.refine_once(&request.item, &request.critique, &mut rng),
                        }
                    })
                    .collect()
            })
            .collect())
    }

    /// The actor checks its own answer: with probability `skill` it spots the first wrong
    /// digit and names its fix (`@p=d`); otherwise it finds nothing wrong (`ok`).
    async fn self_critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        Ok(requests
            .iter()
            .map(|request| {
                (0..request.n)
                    .map(|k| {
                        let mut rng = rng_for(request.seed, &["self-critique", &k.to_string()]);
                        Critique {
                            text: self.self_critique_once(&request.item, &mut rng),
                            ref_logprob: None,
                            truncated: false,
                        }
                    })
                    .collect()
            })
            .collect())
    }
}

impl QuickstartActor {
    /// One self-critique of the item's initial response (see [`Actor::self_critique`]).
    pub fn self_critique_once(&self, item: &TaskItem, rng: &mut impl Rng) -> String {
        let answer: Vec<char> = item.initial_response.trim().chars().collect();
        let spotted = rng.random::<f64>() < self.params.skill;
        let first_wrong = solve(&item.task, &item.prompt).and_then(|correct| {
            correct
                .chars()
                .enumerate()
                .find(|&(pos, c)| answer.get(pos) != Some(&c))
        });
        match first_wrong {
            // Positions in critiques count from 1.
            Some((pos, right)) if spotted && pos < answer.len() => format!("@{}={right}", pos + 1),
            _ => "ok".to_string(),
        }
    }
}

fn build(config: &QuickstartActorConfig, _ctx: &BuildContext) -> Result<Arc<dyn Actor>> {
    let problems = config.check();
    if !problems.is_empty() {
        return Err(rco_core::Error::Config(problems));
    }
    Ok(Arc::new(QuickstartActor::new(config.params())))
}

rco_core::register_plugin! {
    role: Actor,
    kind: "quickstart",
    summary: "Program actor for quickstart tasks that follows, doubts or ignores critiques with set probabilities (weak or strong)",
    example: "kind = \"quickstart\"\nstrength = \"weak\"\n",
    config: QuickstartActorConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::{critique_of_kind, helpful_critique, CritiqueKind};
    use crate::tasks::{error_count, QuickstartDataConfig, QuickstartDataset};
    use rco_core::registry::{validate, ActorRole};
    use rco_core::Dataset;
    use rco_core::ValidateContext;
    use serde_json::json;

    fn items() -> Vec<TaskItem> {
        QuickstartDataset::new(QuickstartDataConfig::default(), 11)
            .unwrap()
            .items("test")
            .unwrap()
    }

    fn actor(strength: Strength) -> QuickstartActor {
        QuickstartActor::new(strength.params())
    }

    /// Error counts of `draws` refinements, one per draw, cycling through the items.
    fn errors_after(
        actor: &QuickstartActor,
        draws: usize,
        critique: impl Fn(&TaskItem, usize) -> String,
    ) -> Vec<usize> {
        let items = items();
        (0..draws)
            .map(|j| {
                let item = &items[j % items.len()];
                let mut rng = rng_for(j as u64, &["refine", "0"]);
                let text = actor.refine_once(item, &critique(item, j), &mut rng);
                error_count(&text, item.reference.as_deref().unwrap())
            })
            .collect()
    }

    fn rate(errors: &[usize], f: impl Fn(usize) -> bool) -> f64 {
        errors.iter().filter(|&&e| f(e)).count() as f64 / errors.len() as f64
    }

    #[test]
    fn weak_actor_follows_precise_critiques_at_follow() {
        let errors = errors_after(&actor(Strength::Weak), 2000, |item, _| {
            helpful_critique(item)
        });
        // Every initial response has one error, so winning means reaching zero.
        let win = rate(&errors, |e| e == 0);
        assert!((win - 0.9).abs() < 0.05, "win rate {win}");
        assert_eq!(rate(&errors, |e| e > 1), 0.0);
    }

    #[test]
    fn strong_actor_fixes_vague_critiques_at_skill() {
        let vague = |item: &TaskItem, j: usize| {
            critique_of_kind(item, CritiqueKind::Vague, &mut rng_for(j as u64, &["c"]))
        };
        let errors = errors_after(&actor(Strength::Strong), 2000, vague);
        let fixed = rate(&errors, |e| e == 0);
        assert!((fixed - 0.9).abs() < 0.05, "fix rate {fixed}");
        // A miss rewrites the wrong digit with another wrong one.
        assert!((rate(&errors, |e| e == 1) - (1.0 - fixed)).abs() < 1e-12);
        let weak = errors_after(&actor(Strength::Weak), 2000, vague);
        let fixed = rate(&weak, |e| e == 0);
        assert!((fixed - 0.15).abs() < 0.05, "weak fix rate {fixed}");
    }

    #[test]
    fn generic_critiques_never_help_the_weak_actor() {
        let errors = errors_after(&actor(Strength::Weak), 2000, |_, _| "ok".into());
        assert!(errors.iter().all(|&e| e >= 1));
        let broken = rate(&errors, |e| e == 2);
        assert!((broken - 0.2).abs() < 0.05, "noise rate {broken}");
        // The strong actor fixes some alone.
        let errors = errors_after(&actor(Strength::Strong), 2000, |_, _| "junk".into());
        let fixed = rate(&errors, |e| e == 0);
        assert!((fixed - 0.3).abs() < 0.05, "self-fix rate {fixed}");
    }

    #[test]
    fn wrong_critiques_mislead_the_weak_actor_more() {
        let wrong = |item: &TaskItem, j: usize| {
            critique_of_kind(item, CritiqueKind::Wrong, &mut rng_for(j as u64, &["c"]))
        };
        let weak = errors_after(&actor(Strength::Weak), 2000, wrong);
        let strong = errors_after(&actor(Strength::Strong), 2000, wrong);
        let worse_weak = rate(&weak, |e| e == 2);
        let worse_strong = rate(&strong, |e| e == 2);
        assert!((worse_weak - 0.8).abs() < 0.05, "{worse_weak}");
        assert!((worse_strong - 0.3).abs() < 0.05, "{worse_strong}");
    }

    #[tokio::test]
    async fn refine_is_per_request_deterministic_and_ordered() {
        let items = items();
        let request = |i: usize, seed: u64| RefineRequest {
            item: items[i].clone(),
            critique: "@1".into(),
            prompt: String::new(),
            turns: Vec::new(),
            m: 4,
            seed,
        };
        let actor = actor(Strength::Weak);
        let both = actor.refine(&[request(0, 5), request(1, 6)]).await.unwrap();
        assert_eq!(both.len(), 2);
        assert!(both.iter().all(|r| r.len() == 4));
        let alone = actor.refine(&[request(1, 6)]).await.unwrap();
        assert_eq!(alone[0], both[1]);
        let swapped = actor.refine(&[request(1, 6), request(0, 5)]).await.unwrap();
        assert_eq!(swapped[0], both[1]);
        assert_eq!(swapped[1], both[0]);
        assert!(actor.refine(&[]).await.unwrap().is_empty());
        let responses = actor
            .respond(&[RespondRequest {
                item: items[2].clone(),
                prompt: items[2].prompt.clone(),
                seed: 0,
            }])
            .await
            .unwrap();
        assert_eq!(responses, vec![items[2].initial_response.clone()]);
    }

    #[test]
    fn unsolvable_items_are_returned_unchanged() {
        let item = TaskItem {
            id: "x".into(),
            task: "sort".into(),
            prompt: "sort:321".into(),
            initial_response: "123".into(),
            reference: Some("123".into()),
            ..TaskItem::default()
        };
        let mut rng = rng_for(0, &["x"]);
        assert_eq!(
            actor(Strength::Strong).refine_once(&item, "@1=9", &mut rng),
            "123"
        );
    }

    /// A self-critique names the wrong digit and its fix at the rate `skill`, and is `ok`
    /// otherwise; the named fix is right.
    #[test]
    fn self_critiques_spot_the_error_at_skill() {
        let items = items();
        for strength in [Strength::Weak, Strength::Strong] {
            let actor = actor(strength);
            let draws = 4000;
            let mut precise = 0;
            for j in 0..draws {
                let item = &items[j % items.len()];
                let mut rng = rng_for(j as u64, &["self-critique", "0"]);
                let text = actor.self_critique_once(item, &mut rng);
                if text == "ok" {
                    continue;
                }
                precise += 1;
                let reference = item.reference.as_deref().unwrap();
                let ParsedCritique::Precise { pos, digit } =
                    parse_critique(&text, item.initial_response.len())
                else {
                    panic!("not a precise critique: {text}");
                };
                assert_eq!(
                    reference.chars().nth(pos),
                    Some(digit_to_char(digit)),
                    "{text}"
                );
            }
            let rate = precise as f64 / draws as f64;
            let skill = strength.params().skill;
            assert!(
                (rate - skill).abs() < 0.03,
                "{strength:?}: {rate} vs skill {skill}"
            );
        }
    }

    #[test]
    fn config_overrides_and_validation() {
        let config: QuickstartActorConfig = rco_core::registry::parse_section(
            &json!({"kind": "quickstart", "strength": "strong", "noise": 0.5}),
        )
        .unwrap();
        let params = config.params();
        assert_eq!(params.noise, 0.5);
        assert_eq!(params.skill, 0.9);
        let section =
            |v: serde_json::Value| validate::<ActorRole>(&v, &ValidateContext::new("actor"));
        assert!(section(json!({"kind": "quickstart", "strength": "weak"})).is_empty());
        let problems = section(json!({"kind": "quickstart", "strength": "weak", "follow": 1.5}));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "follow");
        assert!(problems[0].message.contains("1.5"));
        let problems = section(json!({"kind": "quickstart", "strength": "weak", "fllow": 0.5}));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("fllow"), "{problems:?}");
        let problems = section(json!({"kind": "quickstart", "strength": "medium"}));
        assert_eq!(problems[0].key, "strength");
    }
}
