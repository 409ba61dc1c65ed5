//! `rco judge-eval CONFIG PAIRS.jsonl`: how well the config's `[judge]` picks the better of
//! two answers, before a run depends on it. Each preference pair (`prompt`, `chosen`,
//! `rejected`, optional `subset`, `id`, `task`, `reference`, `tests`, `entry_point`) is
//! judged in both orders, exactly as a run judges a refinement against a first answer (the
//! chosen answer in the refinement's place), and the report gives accuracy (chosen
//! preferred; a tie or a pair whose orders disagree counts one half) with its 95% bootstrap
//! interval, position consistency, the first slot's win rate, tie and invalid rates, and
//! accuracy split by whether the chosen answer is the longer one, per subset and overall.
//! One `judge_eval.jsonl` line per pair, committed a batch at a time: a killed evaluation
//! resumes where it stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rco_core::reward::{pair_score, CuMode};
use rco_core::seed::derive_seed;
use rco_core::store::RunStore;
use rco_core::{BothOrders, BuildContext, Judge, ProgressFactory, TaskItem, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::JudgeOnly;

/// The judged pairs, one line each.
pub const RECORDS_FILE: &str = "judge_eval.jsonl";
/// The summary.
pub const SUMMARY_FILE: &str = "judge_eval.json";
/// What made the directory: the judge section, the seed and the pairs file.
pub const MANIFEST_FILE: &str = "judge_eval_manifest.json";

/// One preference pair.
#[derive(Debug, Clone)]
pub struct Pair {
    pub id: String,
    pub subset: String,
    pub item: TaskItem,
    pub chosen: String,
}

/// One judged pair (`judge_eval.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairRecord {
    pub id: String,
    pub subset: String,
    pub task: String,
    /// The chosen answer has more characters than the rejected one.
    pub chosen_longer: bool,
    /// `refined_first`: the chosen answer as A; `refined_second`: as B.
    pub pair: BothOrders,
}

/// The numbers of a subset (or of all pairs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub pairs: usize,
    /// Pairs whose two judgements are both valid.
    pub scored: usize,
    /// Mean over scored pairs: 1 when the chosen answer wins in both orders, 0.5 for a tie
    /// or orders that disagree, 0 when it loses.
    pub accuracy: Option<f64>,
    pub accuracy_lo: Option<f64>,
    pub accuracy_hi: Option<f64>,
    /// Share of scored pairs whose two orders agree.
    pub position_consistency: Option<f64>,
    /// Share of valid judgements won by the answer in the first slot.
    pub first_slot_win_rate: Option<f64>,
    /// Share of valid judgements that are ties.
    pub tie_rate: Option<f64>,
    /// Share of judgements that could not be read.
    pub invalid_rate: f64,
    /// Accuracy over the pairs whose chosen answer is longer, and over the others.
    pub accuracy_chosen_longer: Option<f64>,
    pub accuracy_chosen_not_longer: Option<f64>,
}

/// `judge_eval.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JudgeEvalReport {
    pub judge: String,
    pub overall: Summary,
    pub subsets: BTreeMap<String, Summary>,
}

/// Reads the pairs of a JSONL file; extra columns are ignored, errors name the line.
pub fn read_pairs(path: &Path) -> anyhow::Result<Vec<Pair>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pairs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}, line {}", path.display(), index + 1);
        let row: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(row)) => row,
            _ => bail!("{}: not a JSON object", at()),
        };
        let get = |key: &str| -> anyhow::Result<Option<String>> {
            match row.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(Some(
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )),
                Some(other) => bail!("{}: `{key}` must be text, not {other}", at()),
            }
        };
        let need = |key: &str| -> anyhow::Result<String> {
            get(key)?.with_context(|| format!("{}: the pair has no `{key}`", at()))
        };
        let id = get("id")?.unwrap_or_else(|| (index + 1).to_string());
        if !seen.insert(id.clone()) {
            bail!("{}: pair id `{id}` appears more than once", at());
        }
        let task = get("task")?.unwrap_or_else(|| "default".into());
        pairs.push(Pair {
            subset: get("subset")?.unwrap_or_else(|| task.clone()),
            item: TaskItem {
                id: id.clone(),
                task,
                prompt: need("prompt")?,
                initial_response: need("rejected")?,
                reference: get("reference")?,
                tests: get("tests")?.or(get("test")?),
                entry_point: get("entry_point")?,
            },
            chosen: need("chosen")?,
            id,
        });
    }
    if pairs.is_empty() {
        bail!("{} has no pairs", path.display());
    }
    Ok(pairs)
}

/// Judges every pair not judged yet, writes `judge_eval.json` and returns the table.
pub async fn judge_eval(
    loaded: &JudgeOnly,
    pairs_path: &Path,
    out: &Path,
    progress: Arc<dyn ProgressFactory>,
) -> anyhow::Result<String> {
    let pairs = read_pairs(pairs_path)?;
    let store = RunStore::open_with(out, loaded.durability)?;
    check_manifest(&store, loaded, pairs_path)?;
    store.recover(&[], RECORDS_FILE, "id")?;
    let done: std::collections::HashSet<String> = store
        .read::<PairRecord>(RECORDS_FILE)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let todo: Vec<&Pair> = pairs.iter().filter(|p| !done.contains(&p.id)).collect();
    if !todo.is_empty() {
        let mut ctx = BuildContext::new("judge", loaded.seed);
        ctx.base_dir = loaded.base_dir();
        ctx.run_dir = Some(out.to_path_buf());
        ctx.templates = loaded.templates.clone();
        ctx.progress = progress.clone();
        let judge: Arc<dyn Judge> = Arc::new(rco_core::judge::ReaskInvalid::new(
            loaded.judge.build(&ctx)?,
            loaded.reask_invalid,
        ));
        let bar = progress.start("judge-eval", pairs.len() as u64);
        bar.resume(done.len() as u64);
        let seed = loaded.seed;
        let per_call = (judge.max_batch_size() / 2).max(1);
        for batch in todo.chunks(per_call) {
            let comparisons: Vec<_> = batch
                .iter()
                .flat_map(|p| {
                    BothOrders::comparisons(&p.item, &p.chosen, |order| {
                        derive_seed(seed, &["judge-eval", &p.id, order.name()])
                    })
                })
                .collect();
            let judged = rco_core::judge::judge_both_orders(judge.as_ref(), &comparisons).await?;
            let records: Vec<PairRecord> = batch
                .iter()
                .zip(judged)
                .map(|(p, pair)| PairRecord {
                    id: p.id.clone(),
                    subset: p.subset.clone(),
                    task: p.item.task.clone(),
                    chosen_longer: p.chosen.chars().count()
                        > p.item.initial_response.chars().count(),
                    pair,
                })
                .collect();
            store.append(RECORDS_FILE, &records)?;
            bar.inc(records.len() as u64);
        }
        bar.finish();
    }
    let records: Vec<PairRecord> = store.read(RECORDS_FILE)?;
    let wanted: std::collections::HashSet<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
    let records: Vec<&PairRecord> = records
        .iter()
        .filter(|r| wanted.contains(r.id.as_str()))
        .collect();
    let report = build_report(&records, loaded, loaded.bootstrap_resamples);
    store.write_file(SUMMARY_FILE, &serde_json::to_vec_pretty(&report)?)?;
    Ok(table(&report))
}

/// Refuses a directory made with another judge, seed or pairs file.
fn check_manifest(store: &RunStore, loaded: &JudgeOnly, pairs: &Path) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(pairs).with_context(|| format!("reading {}", pairs.display()))?;
    let manifest = serde_json::json!({
        "judge": loaded.resolved["judge"],
        "templates": loaded.resolved.get("templates"),
        "seed": loaded.seed,
        "pairs": pairs.display().to_string(),
        "pairs_sha256": format!("{:x}", Sha256::digest(&bytes)),
    });
    let path = store.path(MANIFEST_FILE);
    if let Ok(text) = std::fs::read(&path) {
        let old: Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a judge-eval manifest", path.display()))?;
        for key in ["judge", "templates", "seed", "pairs_sha256"] {
            if old.get(key) != manifest.get(key) {
                bail!(
                    "{} holds a judge evaluation made with another {key}; use another --out",
                    store.dir().display()
                );
            }
        }
        return Ok(());
    }
    store.write_file(MANIFEST_FILE, &serde_json::to_vec_pretty(&manifest)?)?;
    Ok(())
}

fn summary(records: &[&PairRecord], resamples: usize, seed: u64) -> Summary {
    let scores: Vec<(f64, bool, bool)> = records
        .iter()
        .filter_map(|r| pair_score(&r.pair, CuMode::Hard).map(|(s, d)| (s, d, r.chosen_longer)))
        .collect();
    let values: Vec<f64> = scores.iter().map(|s| s.0).collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| rco_core::stats::mean(v));
    let (lo, hi) = rco_core::stats::bootstrap_ci(&values, resamples, seed);
    let judgements: Vec<&rco_core::Judgement> = records
        .iter()
        .flat_map(|r| [&r.pair.refined_first, &r.pair.refined_second])
        .collect();
    let valid: Vec<&Verdict> = judgements
        .iter()
        .map(|j| &j.verdict)
        .filter(|v| v.is_valid())
        .collect();
    let share = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
    Summary {
        pairs: records.len(),
        scored: values.len(),
        accuracy: mean(&values),
        accuracy_lo: (!values.is_empty()).then_some(lo),
        accuracy_hi: (!values.is_empty()).then_some(hi),
        position_consistency: share(scores.iter().filter(|s| !s.1).count(), scores.len()),
        first_slot_win_rate: share(
            valid.iter().filter(|v| ***v == Verdict::A).count(),
            valid.len(),
        ),
        tie_rate: share(
            valid.iter().filter(|v| ***v == Verdict::Tie).count(),
            valid.len(),
        ),
        invalid_rate: share(judgements.len() - valid.len(), judgements.len()).unwrap_or(0.0),
        accuracy_chosen_longer: mean(
            &scores
                .iter()
                .filter(|s| s.2)
                .map(|s| s.0)
                .collect::<Vec<_>>(),
        ),
        accuracy_chosen_not_longer: mean(
            &scores
                .iter()
                .filter(|s| !s.2)
                .map(|s| s.0)
                .collect::<Vec<_>>(),
        ),
    }
}

fn build_report(records: &[&PairRecord], loaded: &JudgeOnly, resamples: usize) -> JudgeEvalReport {
    let seed = loaded.seed;
    let mut subsets: BTreeMap<String, Vec<&PairRecord>> = BTreeMap::new();
    for r in records {
        subsets.entry(r.subset.clone()).or_default().push(r);
    }
    JudgeEvalReport {
        judge: loaded.resolved["judge"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        overall: summary(
            records,
            resamples,
            derive_seed(seed, &["judge-eval", "overall"]),
        ),
        subsets: subsets
            .into_iter()
            .map(|(name, rs)| {
                let s = summary(&rs, resamples, derive_seed(seed, &["judge-eval", &name]));
                (name, s)
            })
            .collect(),
    }
}

/// The printed table.
pub fn table(report: &JudgeEvalReport) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut out = format!(
        "judge `{}`: accuracy = chosen preferred (tie or disagreeing orders = 1/2), 95% bootstrap interval\n\n{:<26} {:>6} {:>22} {:>9} {:>10} {:>6} {:>8} {:>9} {:>9}\n",
        report.judge, "subset", "pairs", "accuracy", "position", "first-slot", "ties", "invalid", "longer", "shorter"
    );
    let rows = report
        .subsets
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(std::iter::once(("overall", &report.overall)));
    for (name, s) in rows {
        let accuracy = match (s.accuracy, s.accuracy_lo, s.accuracy_hi) {
            (Some(a), Some(lo), Some(hi)) => format!("{a:.3} [{lo:.3}, {hi:.3}]"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<26} {:>6} {:>22} {:>9} {:>10} {:>6} {:>8.3} {:>9} {:>9}\n",
            name,
            s.pairs,
            accuracy,
            f(s.position_consistency),
            f(s.first_slot_win_rate),
            f(s.tie_rate),
            s.invalid_rate,
            f(s.accuracy_chosen_longer),
            f(s.accuracy_chosen_not_longer)
        ));
    }
    out
}
