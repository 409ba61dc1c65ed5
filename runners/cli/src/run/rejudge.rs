//! `rco rejudge`: the judge ablation. The refinements a run collected are judged again by
//! another judge (both orders, as in collection), the critique utilities recomputed with the
//! run's reward estimator, and the two judges compared: Spearman's correlation between the
//! CUs of each item's critiques (items where either judge scores every critique alike are
//! counted, not correlated), and the share of items whose best critique under the run's
//! judge is also best under the other. Everything goes to `rejudge/NAME/` in the run
//! directory: `verdicts.jsonl` (resumable, an item at a time), `cu.jsonl` and
//! `agreement.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use rco_core::seed::derive_seed;
use rco_core::store::RunStore;
use rco_core::{BothOrders, BuildContext, Judge};
use serde::{Deserialize, Serialize};

use super::collect::{DETAIL_FILES, GROUPS_FILE};
use super::records::{CuRecord, RefinementRecord, VerdictRecord};
use super::Run;
use crate::config::JudgeOnly;

/// What `agreement.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The other judge's name (`--name`) and kind.
    pub name: String,
    pub judge: String,
    pub items: usize,
    /// Items whose critiques both judges tell apart (Spearman is defined).
    pub correlated_items: usize,
    /// Mean over those items of Spearman's correlation between the two judges' CUs.
    pub mean_spearman: Option<f64>,
    /// Share of items whose best critique under the run's judge is among the best under the
    /// other (items where both have a best, i.e. some valid CU).
    pub best_critique_agreement: Option<f64>,
    /// Mean CU under each judge, over the critiques both score.
    pub mean_cu_run_judge: Option<f64>,
    pub mean_cu_other_judge: Option<f64>,
    /// Share of the other judge's judgements that could not be read.
    pub invalid_rate: f64,
}

impl Run {
    /// Judges the collected refinements again with `other` and compares the CUs.
    pub async fn rejudge(&self, other: &JudgeOnly, name: &str) -> anyhow::Result<Agreement> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            bail!("--name must be letters, digits, - or _ (got {name:?})");
        }
        let groups: Vec<rco_core::TrainingGroup> = self.store.read(GROUPS_FILE)?;
        if groups.is_empty() {
            bail!(
                "{} has no collected groups; run `rco collect` first",
                self.store.dir().display()
            );
        }
        let dir: PathBuf = self.store.path("rejudge").join(name);
        let store = RunStore::open_with(&dir, self.loaded.config.store.durability)?;
        let items = self.collected_items()?;
        let refinements: Vec<RefinementRecord> = self.store.read(DETAIL_FILES[1])?;
        let original: Vec<CuRecord> = self.store.read(DETAIL_FILES[3])?;
        let committed: HashSet<String> = groups.iter().map(|g| g.item_id.clone()).collect();
        store.recover(&[], "verdicts.jsonl", "item_id")?;
        let done: HashSet<String> = store
            .read::<VerdictRecord>("verdicts.jsonl")?
            .into_iter()
            .map(|v| v.item_id)
            .collect();
        let mut by_item: BTreeMap<&str, Vec<&RefinementRecord>> = BTreeMap::new();
        for r in &refinements {
            if committed.contains(&r.item_id) {
                by_item.entry(r.item_id.as_str()).or_default().push(r);
            }
        }
        let todo: Vec<(&str, Vec<&RefinementRecord>)> = by_item
            .into_iter()
            .filter(|(id, _)| !done.contains(*id))
            .collect();
        if !todo.is_empty() {
            let mut ctx = BuildContext::new(format!("rejudge.{name}"), other.seed);
            ctx.base_dir = other.base_dir();
            ctx.run_dir = Some(dir.clone());
            ctx.templates = other.templates.clone();
            ctx.progress = self.progress.clone();
            let judge: Arc<dyn Judge> = Arc::new(rco_core::judge::ReaskInvalid::new(
                other.judge.build(&ctx)?,
                other.reask_invalid,
            ));
            let bar = self.progress.start(
                &format!("rejudge ({name})"),
                (done.len() + todo.len()) as u64,
            );
            bar.resume(done.len() as u64);
            let seed = self.loaded.config.seed;
            for (id, refined) in todo {
                let item = items.get(id).with_context(|| {
                    format!("collected item `{id}` is not among the run's items")
                })?;
                let comparisons: Vec<_> = refined
                    .iter()
                    .flat_map(|r| {
                        BothOrders::comparisons(item, &r.text, |order| {
                            derive_seed(
                                seed,
                                &[
                                    "rejudge",
                                    name,
                                    id,
                                    &r.critique.to_string(),
                                    &r.refinement.to_string(),
                                    order.name(),
                                ],
                            )
                        })
                    })
                    .collect();
                let judged =
                    rco_core::judge::judge_both_orders(judge.as_ref(), &comparisons).await?;
                let records: Vec<VerdictRecord> = refined
                    .iter()
                    .zip(judged)
                    .map(|(r, pair)| VerdictRecord {
                        item_id: r.item_id.clone(),
                        critique: r.critique,
                        refinement: r.refinement,
                        pair,
                    })
                    .collect();
                store.append("verdicts.jsonl", &records)?;
                bar.inc(1);
            }
            bar.finish();
        }
        // CU per critique under the other judge, with the run's reward estimator.
        let verdicts: Vec<VerdictRecord> = store.read("verdicts.jsonl")?;
        let mut pairs: BTreeMap<(String, usize), Vec<BothOrders>> = BTreeMap::new();
        for v in &verdicts {
            pairs
                .entry((v.item_id.clone(), v.critique))
                .or_default()
                .push(v.pair.clone());
        }
        let keys: Vec<(String, usize)> = pairs.keys().cloned().collect();
        let estimates = self
            .reward()?
            .estimate(&pairs.into_values().collect::<Vec<_>>())
            .await?;
        let other_cu: HashMap<(String, usize), Option<f64>> = keys
            .iter()
            .cloned()
            .zip(estimates.iter().map(|e| e.cu))
            .collect();
        let cu_records: Vec<CuRecord> = keys
            .iter()
            .zip(&estimates)
            .map(|((item_id, critique), e)| CuRecord {
                item_id: item_id.clone(),
                critique: *critique,
                cu: e.cu,
                valid: e.valid,
                invalid: e.invalid,
                ties: e.ties,
                disagreements: e.disagreements,
            })
            .collect();
        store.write_table("cu.jsonl", &cu_records)?;
        let invalid = verdicts
            .iter()
            .flat_map(|v| [&v.pair.refined_first, &v.pair.refined_second])
            .filter(|j| !j.verdict.is_valid())
            .count();
        let agreement = agreement(
            &original,
            &other_cu,
            name,
            other.resolved["judge"]["kind"].as_str().unwrap_or_default(),
            invalid as f64 / (2 * verdicts.len()).max(1) as f64,
        );
        store.write_file("agreement.json", &serde_json::to_vec_pretty(&agreement)?)?;
        Ok(agreement)
    }
}

/// The comparison of the run judge's CUs with the other judge's, item by item.
fn agreement(
    original: &[CuRecord],
    other: &HashMap<(String, usize), Option<f64>>,
    name: &str,
    judge: &str,
    invalid_rate: f64,
) -> Agreement {
    let mut by_item: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in original {
        if let (Some(a), Some(Some(b))) = (r.cu, other.get(&(r.item_id.clone(), r.critique))) {
            by_item.entry(r.item_id.as_str()).or_default().push((a, *b));
        }
    }
    let mut correlations = Vec::new();
    let mut best_agree = Vec::new();
    let (mut all_a, mut all_b) = (Vec::new(), Vec::new());
    for pairs in by_item.values() {
        let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        all_a.extend(&a);
        all_b.extend(&b);
        if let Some(r) = rco_core::stats::spearman(&a, &b) {
            correlations.push(r);
        }
        let best = |v: &[f64]| v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let (ba, bb) = (best(&a), best(&b));
        // The run judge's first best critique is among the other's best.
        if let Some(i) = a.iter().position(|x| *x == ba) {
            best_agree.push(if b[i] == bb { 1.0 } else { 0.0 });
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| rco_core::stats::mean(v));
    Agreement {
        name: name.to_string(),
        judge: judge.to_string(),
        items: by_item.len(),
        correlated_items: correlations.len(),
        mean_spearman: mean(&correlations),
        best_critique_agreement: mean(&best_agree),
        mean_cu_run_judge: mean(&all_a),
        mean_cu_other_judge: mean(&all_b),
        invalid_rate,
    }
}
