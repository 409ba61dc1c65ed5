//! Evaluation: each critic variant (base, then the trained one) with each evaluation actor on
//! the test items; one `eval.jsonl` line per critic × actor × item, committed a batch at a
//! time. Seeds do not depend on the critic, so both critics meet the same sampling noise;
//! a draw of `[eval] draws` samples its critiques from seeds of its own.

use std::collections::HashSet;

use anyhow::bail;

use rco_core::seed::derive_seed;
use rco_core::{Judge, PointwiseRequest, PointwiseScore, RewardEstimator};

use super::batches::pending_batches;
use super::pass::{Judged, Pass};
use super::records::EvalRecord;
use super::Run;

/// The evaluation's table.
pub const EVAL_FILE: &str = "eval.jsonl";

impl Run {
    /// Evaluates every critic × actor × test item not yet committed.
    pub async fn eval(&self) -> anyhow::Result<()> {
        self.eval_only(&[]).await
    }

    /// [`Run::eval`] for the named critics only (all of them when `critics` is empty): the
    /// others are neither built nor required to have trained, so the base critic and its
    /// draws can be evaluated before any training.
    pub async fn eval_only(&self, critics: &[String]) -> anyhow::Result<()> {
        self.charged("eval", self.eval_stage(critics)).await
    }

    /// The evaluated critics `only` selects (all when empty), each checked to be a critic
    /// of the run and, where it is a trained one, to have finished training.
    fn selected_critics(&self, only: &[String]) -> anyhow::Result<Vec<String>> {
        let all = self.evaluated_critics();
        if let Some(unknown) = only.iter().find(|name| !all.contains(name)) {
            bail!(
                "no evaluated critic named `{unknown}` (critics: {})",
                all.join(", ")
            );
        }
        let critics: Vec<String> = all
            .into_iter()
            .filter(|c| only.is_empty() || only.contains(c))
            .collect();
        for critic in &critics {
            let (source, _) = self.drawn_critic(critic);
            if source == self.trained_name() {
                self.train_summary()?;
            } else if let Some(round) = (2..=self.rounds()).find(|&r| self.round_name(r) == source)
            {
                self.round_summary(round)?;
            } else if self.loaded.sections.baselines.contains_key(source) {
                self.summary_of(source)?;
            }
        }
        Ok(critics)
    }

    async fn eval_stage(&self, only: &[String]) -> anyhow::Result<()> {
        let items = self.items("test")?;
        let critics = self.selected_critics(only)?;
        self.store.recover(&[], EVAL_FILE, "item_id")?;
        let done: HashSet<(String, String, String)> = self
            .store
            .read::<EvalRecord>(EVAL_FILE)?
            .into_iter()
            .map(|r| (r.critic, r.actor, r.item_id))
            .collect();
        let cfg = &self.loaded.config.eval;
        let actors = self.loaded.eval_actors();
        let judge = self.judge()?;
        let reward = self.reward()?;
        let bar = self
            .progress
            .start("eval", (critics.len() * actors.len() * items.len()) as u64);
        bar.resume(done.len() as u64);
        for variant in &critics {
            let variant = variant.as_str();
            // A draw (`base-draw-2`) is its critic, sampled from critique seeds of its own.
            let (source, draw) = self.drawn_critic(variant);
            // The base and the trained critic are built once; a critic of `[eval.critics]`
            // once per actor, with that actor.
            let per_actor = self.loaded.sections.eval_critics.contains_key(source);
            let mut critic = None;
            for actor_name in &actors {
                let pending = pending_batches(&items, cfg.items_per_batch, |i| {
                    done.contains(&(variant.to_string(), actor_name.clone(), i.id.clone()))
                });
                if pending.is_empty() {
                    continue;
                }
                let actor = self.actor(actor_name)?;
                if per_actor {
                    critic = Some(self.eval_critic(source, actor.clone())?);
                }
                let critic = match &critic {
                    Some(critic) => critic,
                    None => critic.insert(self.critic(source)?),
                };
                // The items with this actor's own first answers (or the data's).
                let (items, initial) = self
                    .initial_items(
                        "test",
                        actor_name,
                        actor.as_ref(),
                        judge.as_ref(),
                        cfg.items_per_batch,
                    )
                    .await?;
                let pending = pending_batches(&items, cfg.items_per_batch, |i| {
                    done.contains(&(variant.to_string(), actor_name.clone(), i.id.clone()))
                });
                let pass = Pass {
                    critic: critic.as_ref(),
                    actor: actor.as_ref(),
                    judge: judge.as_ref(),
                    actor_name,
                    n: cfg.critiques_per_item,
                    m: cfg.refinements_per_critique,
                    label: "eval",
                    draw,
                    pipelined: cfg.pipelined,
                };
                let (judge, reward) = (judge.as_ref(), reward.as_ref());
                self.run_batches(
                    pending,
                    &pass,
                    cfg.batches_in_flight,
                    |judged| self.score(judged, judge, reward, variant, actor_name, &initial),
                    |count, records: Vec<EvalRecord>| {
                        self.store.append(EVAL_FILE, &records)?;
                        bar.inc(count as u64);
                        Ok(())
                    },
                )
                .await?;
            }
        }
        bar.finish();
        Ok(())
    }

    /// CU of each item's critiques with the run's reward estimator, the RQS of the
    /// refinements where the judge scores, and the length change.
    async fn score(
        &self,
        judged: Vec<Judged>,
        judge: &dyn Judge,
        reward: &dyn RewardEstimator,
        critic: &str,
        actor: &str,
        initial: &super::respond::Initial,
    ) -> anyhow::Result<Vec<EvalRecord>> {
        let seed = self.loaded.config.seed;
        let mut pointwise = Vec::new();
        for j in &judged {
            for (ci, c) in j.critiques.iter().enumerate() {
                for (ri, text) in c.refinements.iter().enumerate() {
                    let rqs_seed = derive_seed(
                        seed,
                        &[
                            "eval",
                            "rqs",
                            actor,
                            &j.item.id,
                            &ci.to_string(),
                            &ri.to_string(),
                        ],
                    );
                    pointwise.push(PointwiseRequest::for_item(&j.item, text, rqs_seed));
                }
            }
        }
        let scores: Option<Vec<PointwiseScore>> = if !self.loaded.config.eval.rqs {
            None
        } else {
            match judge.score(&pointwise).await {
                Ok(scores) => Some(scores),
                Err(rco_core::Error::Unsupported(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let mut scores = scores.map(Vec::into_iter);
        let mut records = Vec::with_capacity(judged.len());
        for j in judged {
            let pairs = j.pairs();
            let estimates = reward.estimate(&pairs).await?;
            let cus: Vec<f64> = estimates.iter().filter_map(|e| e.cu).collect();
            let initial_chars = j.item.initial_response.chars().count();
            let refinements: Vec<Vec<String>> =
                j.critiques.iter().map(|c| c.refinements.clone()).collect();
            let lengths: Vec<f64> = refinements
                .iter()
                .flatten()
                .map(|r| r.chars().count() as f64 - initial_chars as f64)
                .collect();
            let mut rqs = Vec::new();
            let mut rqs_invalid = 0;
            if let Some(scores) = scores.as_mut() {
                for _ in 0..lengths.len() {
                    match scores.next() {
                        Some(PointwiseScore::Score(s)) => rqs.push(s),
                        Some(PointwiseScore::Invalid { .. }) => rqs_invalid += 1,
                        None => {}
                    }
                }
            }
            let first = initial.get(&j.item.id);
            let solved_score = judge.solved_score(&j.item.task);
            let refined_solved = solved_score.filter(|_| !rqs.is_empty()).map(|solved| {
                rqs.iter().filter(|s| **s >= solved).count() as f64 / rqs.len() as f64
            });
            records.push(EvalRecord {
                critic: critic.to_string(),
                actor: actor.to_string(),
                item_id: j.item.id.clone(),
                task: j.item.task.clone(),
                critiques: j
                    .critiques
                    .iter()
                    .map(|c| c.critique.text.clone())
                    .collect(),
                refinements,
                pairs,
                cu: (!cus.is_empty()).then(|| rco_core::stats::mean(&cus)),
                rqs: (!rqs.is_empty()).then(|| rco_core::stats::mean(&rqs)),
                rqs_invalid,
                initial_chars,
                length_change: if lengths.is_empty() {
                    0.0
                } else {
                    rco_core::stats::mean(&lengths)
                },
                initial_score: first.and_then(|r| r.score),
                initial_solved: first.and_then(|r| r.solved),
                refined_solved,
            });
        }
        Ok(records)
    }
}
