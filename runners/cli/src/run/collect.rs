//! Collection: N critiques per training item from the base critic, M refinements of each
//! from the collection actor, both-order judgements, and the critique utility of each
//! critique. Each batch's detail records are appended first and its `groups.jsonl` lines
//! last: that one append commits the batch.

use rco_core::{ScoredCritique, TrainingGroup};

use super::batches::pending_batches;
use super::pass::{Judged, Pass};
use super::records::{CritiqueRecord, CuRecord, RefinementRecord, VerdictRecord};
use super::Run;

/// The detail tables of the collection, recovered against the commit table on resume.
pub const DETAIL_FILES: [&str; 4] = [
    "critiques.jsonl",
    "refinements.jsonl",
    "verdicts.jsonl",
    "cu.jsonl",
];

/// The commit table of the collection: one training group per item.
pub const GROUPS_FILE: &str = "groups.jsonl";

/// The records of one collected batch.
#[derive(Default)]
struct Collected {
    critiques: Vec<CritiqueRecord>,
    refinements: Vec<RefinementRecord>,
    verdicts: Vec<VerdictRecord>,
    cus: Vec<CuRecord>,
    groups: Vec<TrainingGroup>,
}

impl Collected {
    /// The batch's line in `metrics.jsonl`.
    fn metrics(&self, items: usize) -> serde_json::Value {
        let cus: Vec<f64> = self.cus.iter().filter_map(|c| c.cu).collect();
        serde_json::json!({
            "stage": "collect",
            "items": items,
            "critiques": self.critiques.len(),
            "truncated_critiques": self.critiques.iter().filter(|c| c.truncated).count(),
            "refinements": self.refinements.len(),
            "valid_pairs": self.cus.iter().map(|c| c.valid).sum::<usize>(),
            "invalid_pairs": self.cus.iter().map(|c| c.invalid).sum::<usize>(),
            "critiques_without_cu": self.cus.len() - cus.len(),
            "mean_cu": (!cus.is_empty()).then(|| rco_core::stats::mean(&cus)),
        })
    }
}

impl Run {
    /// Collects every training item not yet committed (round 1, with the base critic).
    pub async fn collect(&self) -> anyhow::Result<()> {
        self.collect_round(1).await
    }

    /// Collects a round of iterative RCO: with the base critic in round 1, and with the
    /// critic the round before trained in later ones, into that round's files.
    pub(super) async fn collect_round(&self, round: usize) -> anyhow::Result<()> {
        self.charged("collect", self.collect_stage(round)).await
    }

    async fn collect_stage(&self, round: usize) -> anyhow::Result<()> {
        let items = self.items("train")?;
        let cfg = &self.loaded.config.collect;
        let file = |name: &str| super::round_file(name, round);
        let detail = DETAIL_FILES.map(file);
        let groups_file = file(GROUPS_FILE);
        // Every round samples its own critiques.
        let label = match round {
            1 => "collect".to_string(),
            r => format!("collect-round-{r}"),
        };
        // Every committed item has N critiques and CU records and N × M refinements and
        // verdicts; one that lost any (a torn line under its commit) is collected again.
        let (n, m) = (cfg.critiques_per_item, cfg.refinements_per_critique);
        let committed = self.store.recover_complete(
            &[
                (detail[0].as_str(), n),
                (detail[1].as_str(), n * m),
                (detail[2].as_str(), n * m),
                (detail[3].as_str(), n),
            ],
            &groups_file,
            "item_id",
        )?;
        self.warn_about_unused_probabilities()?;
        if cfg.critique_comparisons {
            self.compare_committed_critiques(&groups_file).await?;
        }
        let left_out = self.left_out_of_collection()?;
        if items
            .iter()
            .all(|i| committed.contains(&i.id) || left_out.contains(&i.id))
        {
            return Ok(());
        }
        let critic = self.critic(&self.round_name(round - 1))?;
        if round == 1 {
            self.warn_about_critic_sampling(critic.sampling())?;
        }
        let actor_name = self.loaded.collect_actor().to_string();
        let actor = self.actor(&actor_name)?;
        let judge = self.judge()?;
        let critique_judge = if self.loaded.config.collect.critique_comparisons {
            self.critique_judge()?
        } else {
            judge.clone()
        };
        let reward = self.reward()?;
        // Each item with the collection actor's own first answer (or the data's).
        let (items, initial) = self
            .initial_items(
                "train",
                &actor_name,
                actor.as_ref(),
                judge.as_ref(),
                cfg.items_per_batch,
            )
            .await?;
        let items = if cfg.skip_solved {
            let all = items.len();
            let kept: Vec<_> = items
                .into_iter()
                .filter(|i| initial.get(&i.id).and_then(|r| r.solved) != Some(true))
                .collect();
            // Counted over this run's items: the table may hold answers to others (a run
            // directory adopted with `--force` after `train_items` shrank).
            let left_out = all - kept.len();
            if left_out > 0 {
                tracing::info!(
                    "collect: {left_out} training item(s) whose initial answer is already correct are left out (collect.skip_solved)"
                );
                self.metrics.record(serde_json::json!({
                    "stage": "collect",
                    "left_out_solved": left_out,
                }));
            }
            kept
        } else {
            items
        };
        let pending = pending_batches(&items, cfg.items_per_batch, |i| committed.contains(&i.id));
        if pending.is_empty() {
            return Ok(());
        }
        let bar = self.progress.start("collect", items.len() as u64);
        bar.resume(items.iter().filter(|i| committed.contains(&i.id)).count() as u64);
        let pass = Pass {
            critic: critic.as_ref(),
            actor: actor.as_ref(),
            judge: judge.as_ref(),
            actor_name: &actor_name,
            n: cfg.critiques_per_item,
            m: cfg.refinements_per_critique,
            label: &label,
            draw: 1,
            pipelined: cfg.pipelined,
        };
        let reward = reward.as_ref();
        self.run_batches(
            pending,
            &pass,
            cfg.batches_in_flight,
            |judged| self.score_collected(judged, reward, critique_judge.as_ref()),
            |count, batch: Collected| {
                self.store.append(&detail[0], &batch.critiques)?;
                self.store.append(&detail[1], &batch.refinements)?;
                self.store.append(&detail[2], &batch.verdicts)?;
                self.store.append(&detail[3], &batch.cus)?;
                // The commit record of the batch: one write.
                self.store.append(&groups_file, &batch.groups)?;
                bar.inc(count as u64);
                let mut metrics = batch.metrics(count);
                if round > 1 {
                    metrics["round"] = round.into();
                }
                self.metrics.record(metrics);
                Ok(())
            },
        )
        .await?;
        bar.finish();
        self.warn_about_truncated_critiques(&detail[0])
    }

    /// Critiques cut at the critic's token limit are scored as written, but their reference
    /// log-prob is that of a prefix: say how many there are once the collection is complete.
    fn warn_about_truncated_critiques(&self, file: &str) -> anyhow::Result<()> {
        let critiques: Vec<CritiqueRecord> = self.store.read(file)?;
        let truncated = critiques.iter().filter(|c| c.truncated).count();
        if truncated == 0 {
            return Ok(());
        }
        self.warn(
            "collect",
            format!(
                "{truncated} of {} collected critiques stopped at the critic's token limit (`truncated` in {file}): their text and reference log-prob are those of a prefix; raise the critic's max_tokens if that is not intended",
                critiques.len()
            ),
        )
    }

    /// The critique utility of every critique of a batch, and the batch's records;
    /// `critique_judge` compares critiques directly (`collect.critique_comparisons`).
    async fn score_collected(
        &self,
        judged: Vec<Judged>,
        reward: &dyn rco_core::RewardEstimator,
        critique_judge: &dyn rco_core::Judge,
    ) -> anyhow::Result<Collected> {
        let all_pairs: Vec<_> = judged.iter().flat_map(Judged::pairs).collect();
        let estimates = reward.estimate(&all_pairs).await?;
        if estimates.len() != all_pairs.len() {
            anyhow::bail!(
                "the reward estimator returned {} estimates for {} critiques",
                estimates.len(),
                all_pairs.len()
            );
        }
        let mut estimates = estimates.into_iter();
        let mut out = Collected::default();
        for j in &judged {
            let id = &j.item.id;
            let mut scored = Vec::new();
            for (ci, (c, estimate)) in j.critiques.iter().zip(estimates.by_ref()).enumerate() {
                out.critiques.push(CritiqueRecord {
                    item_id: id.clone(),
                    critique: ci,
                    text: c.critique.text.clone(),
                    ref_logprob: c.critique.ref_logprob,
                    truncated: c.critique.truncated,
                });
                for (ri, (text, pair)) in c.refinements.iter().zip(&c.pairs).enumerate() {
                    out.refinements.push(RefinementRecord {
                        item_id: id.clone(),
                        critique: ci,
                        refinement: ri,
                        text: text.clone(),
                    });
                    out.verdicts.push(VerdictRecord {
                        item_id: id.clone(),
                        critique: ci,
                        refinement: ri,
                        pair: pair.clone(),
                    });
                }
                out.cus.push(CuRecord {
                    item_id: id.clone(),
                    critique: ci,
                    cu: estimate.cu,
                    valid: estimate.valid,
                    invalid: estimate.invalid,
                    ties: estimate.ties,
                    disagreements: estimate.disagreements,
                });
                if let Some(cu) = estimate.cu {
                    scored.push(ScoredCritique {
                        text: c.critique.text.clone(),
                        ref_logprob: c.critique.ref_logprob,
                        cu,
                        truncated: c.critique.truncated,
                    });
                }
            }
            out.groups.push(TrainingGroup {
                item_id: id.clone(),
                prompt: self.loaded.config.templates.critique_prompt(&j.item),
                critiques: scored,
                preferences: Vec::new(),
            });
        }
        if self.loaded.config.collect.critique_comparisons {
            let items: Vec<&rco_core::TaskItem> = judged.iter().map(|j| &j.item).collect();
            self.compare_critiques(&items, &mut out.groups, critique_judge, reward)
                .await?;
        }
        Ok(out)
    }

    /// Compares the critiques of the committed groups that were collected without
    /// `collect.critique_comparisons` (turned on afterwards, to train DPCO on a collection
    /// made for RCO): the comparisons, seeds and records collection makes, a batch of items
    /// at a time, each batch committed by rewriting the groups file.
    async fn compare_committed_critiques(&self, groups_file: &str) -> anyhow::Result<()> {
        let mut groups: Vec<TrainingGroup> = self.store.read(groups_file)?;
        let missing: Vec<usize> = (0..groups.len())
            .filter(|&g| groups[g].critiques.len() >= 2 && groups[g].preferences.is_empty())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "collect: comparing the critiques of {} group(s) collected without collect.critique_comparisons",
            missing.len()
        );
        let items = self.collected_items()?;
        let judge = self.critique_judge()?;
        let reward = self.reward()?;
        let bar = self
            .progress
            .start("compare critiques", missing.len() as u64);
        let per_batch = self.loaded.config.collect.items_per_batch.max(1);
        for batch in missing.chunks(per_batch) {
            let batch_items = batch
                .iter()
                .map(|&g| {
                    items.get(&groups[g].item_id).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{groups_file} has a group for item `{}`, which is not among the run's training items",
                            groups[g].item_id
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut compared: Vec<TrainingGroup> =
                batch.iter().map(|&g| groups[g].clone()).collect();
            self.compare_critiques(&batch_items, &mut compared, judge.as_ref(), reward.as_ref())
                .await?;
            for (&g, group) in batch.iter().zip(compared) {
                groups[g] = group;
            }
            self.store.write_table(groups_file, &groups)?;
            bar.inc(batch.len() as u64);
        }
        bar.finish();
        self.metrics.record(serde_json::json!({
            "stage": "collect",
            "critique_comparisons_added": missing.len(),
        }));
        Ok(())
    }

    /// Judges every two critiques of each group against each other in both orders and
    /// keeps each pair's preference score (the run's reward estimator on the one pair).
    async fn compare_critiques(
        &self,
        items: &[&rco_core::TaskItem],
        groups: &mut [TrainingGroup],
        judge: &dyn rco_core::Judge,
        reward: &dyn rco_core::RewardEstimator,
    ) -> anyhow::Result<()> {
        let seed = self.loaded.config.seed;
        let mut comparisons = Vec::new();
        let mut pairs = Vec::new();
        for (g, (item, group)) in items.iter().zip(groups.iter()).enumerate() {
            let n = group.critiques.len();
            for a in 0..n {
                for b in a + 1..n {
                    pairs.push((g, a, b));
                    for (order, (first, second)) in [("a-first", (a, b)), ("a-second", (b, a))] {
                        comparisons.push(rco_core::CritiqueComparison {
                            item: (*item).clone(),
                            a: group.critiques[first].text.clone(),
                            b: group.critiques[second].text.clone(),
                            seed: rco_core::seed::derive_seed(
                                seed,
                                &[
                                    "collect",
                                    "critique-judge",
                                    &item.id,
                                    &a.to_string(),
                                    &b.to_string(),
                                    order,
                                ],
                            ),
                        });
                    }
                }
            }
        }
        if comparisons.is_empty() {
            return Ok(());
        }
        let judgements = judge.compare_critiques(&comparisons).await?;
        if judgements.len() != comparisons.len() {
            anyhow::bail!(
                "the judge returned {} judgements for {} critique comparisons",
                judgements.len(),
                comparisons.len()
            );
        }
        let mut judgements = judgements.into_iter();
        let both: Vec<rco_core::BothOrders> = pairs
            .iter()
            .filter_map(|_| {
                Some(rco_core::BothOrders::from_judgements(
                    judgements.next()?,
                    judgements.next()?,
                ))
            })
            .collect();
        let one_each: Vec<Vec<rco_core::BothOrders>> =
            both.iter().map(|p| vec![p.clone()]).collect();
        let scores = reward.estimate(&one_each).await?;
        if scores.len() != both.len() {
            anyhow::bail!(
                "the reward estimator returned {} estimates for {} critique pairs",
                scores.len(),
                both.len()
            );
        }
        for ((&(g, a, b), pair), estimate) in pairs.iter().zip(both).zip(scores) {
            groups[g].preferences.push(rco_core::CritiquePreference {
                a,
                b,
                score: estimate.cu,
                pair,
            });
        }
        Ok(())
    }
}
