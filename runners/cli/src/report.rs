//! The report stage: CU ×100 with 95% bootstrap intervals per critic, actor and task (and
//! "overall" = unweighted mean of the task means), RQS where the judge scores, and judge
//! health. Writes `report.json` and `report.md` and returns the table for the terminal.

use std::collections::BTreeMap;

use rco_core::reward::{pair_score, CuMode};
use rco_core::stats::{
    bootstrap_ci, mean, paired_stratified_bootstrap_diff_ci, stratified_bootstrap_ci,
};
use rco_core::Verdict;
use serde::{Deserialize, Serialize};

use crate::run::EvalRecord;

/// One cell: a critic with an actor on one task (or `overall`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub critic: String,
    pub actor: String,
    pub task: String,
    /// Critique utility ×100.
    pub cu: f64,
    pub cu_lo: f64,
    pub cu_hi: f64,
    /// Items with a valid CU.
    pub n: usize,
    /// Mean pointwise score of the refinements (judge's scale), where the judge gives one:
    /// the mean of the items' mean scores.
    pub rqs: Option<f64>,
    /// 95% bootstrap interval of `rqs` (items resampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rqs_lo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rqs_hi: Option<f64>,
    /// Items with an RQS.
    #[serde(default)]
    pub rqs_n: usize,
    /// Pointwise scores the judge gave that could not be read (left out of `rqs`).
    #[serde(default)]
    pub rqs_invalid: usize,
    /// With a verifier judge: the share of items whose initial response is correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_solved: Option<f64>,
    /// With a verifier judge: the share of refinements that are correct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refined_solved: Option<f64>,
    /// Mean pointwise score of the initial responses, where the judge is a verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_rqs: Option<f64>,
    /// The judge's health on this cell's judgements (absent in reports written before it
    /// existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<StageHealth>,
}

/// The judge's health on a set of records' both-order judgements.
fn records_health(records: &[&EvalRecord]) -> StageHealth {
    pair_health(records.iter().flat_map(|r| r.pairs.iter().flatten()))
}

/// The solve rates of a set of records: initial responses, refinements, and the mean
/// pointwise score of the initial responses.
fn solve_rates(records: &[&EvalRecord]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let initial: Vec<f64> = records
        .iter()
        .filter_map(|r| r.initial_solved)
        .map(|s| if s { 1.0 } else { 0.0 })
        .collect();
    let refined: Vec<f64> = records.iter().filter_map(|r| r.refined_solved).collect();
    let scores: Vec<f64> = records.iter().filter_map(|r| r.initial_score).collect();
    let rate = |v: &[f64]| (!v.is_empty()).then(|| mean(v));
    (rate(&initial), rate(&refined), rate(&scores))
}

/// How trustworthy the judge looked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeHealth {
    /// Share of valid pairs whose two orders agree.
    pub position_consistency: f64,
    /// Share of valid judgements won by the first slot (0.5 for an unbiased judge on balanced pairs).
    pub first_slot_win_rate: f64,
    /// Share of valid judgements that are ties.
    pub tie_rate: f64,
    /// Share of judgements that could not be read.
    pub invalid_rate: f64,
    /// Mean length change of refinements (characters, refined minus initial).
    pub mean_length_change: f64,
    /// CU ×100 of refinements that got longer, and of those that did not.
    pub cu_longer: Option<f64>,
    pub cu_not_longer: Option<f64>,
    pub judgements: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The trained critic's name in `cells`: the trainer's kind (`rco`, `sft`, ...).
    #[serde(default = "default_trained")]
    pub trained_critic: String,
    /// CU values are ×100.
    pub cu_scale: String,
    pub cells: Vec<Cell>,
    pub judge_health: JudgeHealth,
    /// The judge's health per stage, from its both-order judgements there: `collect` (the
    /// refinements against the first answers that make the training signal),
    /// `collect_critiques` (critiques compared directly, with
    /// `collect.critique_comparisons`) and `eval` (as `judge_health` without the length
    /// split). Absent in reports written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judge_health_by_stage: BTreeMap<String, StageHealth>,
    /// The trained critic minus base, CU ×100, overall, per actor.
    pub improvement: BTreeMap<String, f64>,
    /// 95% paired bootstrap interval of `improvement`, per actor: items resampled within each
    /// task, the same draws for both critics.
    #[serde(default)]
    pub improvement_lo: BTreeMap<String, f64>,
    #[serde(default)]
    pub improvement_hi: BTreeMap<String, f64>,
    pub train: Option<rco_core::TrainSummary>,
    /// The training summaries of the other trained critics, by name: later rounds
    /// (`rco-round-2`, ...) and `[baselines]` (absent when there are none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trained: BTreeMap<String, rco_core::TrainSummary>,
    /// Paired differences between critics, CU ×100, overall, per actor: every critic but
    /// the base against the base, and the trained critic against each critic of
    /// `[eval.critics]` (absent in reports written before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    /// What makes the numbers questionable without stopping the run (`warnings.jsonl`).
    #[serde(default)]
    pub warnings: Vec<crate::run::RunWarning>,
    /// Calls of remote plugins per stage and section (calls, cache hits, requests, retries
    /// by reason, tokens, cost), and their total; empty for runs without remote plugins.
    #[serde(default)]
    pub usage: rco_core::usage::UsageTable,
    #[serde(default)]
    pub usage_total: rco_core::usage::Usage,
    /// The initial responses per actor and split (`initial.jsonl`): how many, and how many
    /// the verifier judge found correct already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initial_responses: Vec<InitialSummary>,
    /// The critics evaluated more than once (`[eval] draws`), per actor: each draw's
    /// overall CU and their spread, what sampling alone does to one critic's score
    /// (absent when nothing is drawn again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draws: Vec<DrawSpread>,
}

/// One critic's draws with one actor (`[eval] draws`): overall CU ×100 of each draw
/// (the critic's own evaluation first), their mean, sample standard deviation and range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawSpread {
    pub critic: String,
    pub actor: String,
    pub cu: Vec<f64>,
    pub mean: f64,
    pub sd: f64,
    /// The largest CU minus the smallest: the largest difference two draws made.
    pub range: f64,
}

impl DrawSpread {
    /// The spread of `cu` (the draws in order), or `None` for fewer than two.
    pub fn new(critic: &str, actor: &str, cu: Vec<f64>) -> Option<Self> {
        if cu.len() < 2 {
            return None;
        }
        let mean = rco_core::stats::mean(&cu);
        let var = cu.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (cu.len() - 1) as f64;
        let (min, max) = cu
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &c| {
                (lo.min(c), hi.max(c))
            });
        Some(Self {
            critic: critic.to_string(),
            actor: actor.to_string(),
            cu,
            mean,
            sd: var.sqrt(),
            range: max - min,
        })
    }

    /// Each draw's CU to one decimal, comma-separated.
    pub fn draws_text(&self) -> String {
        let cus: Vec<String> = self.cu.iter().map(|c| format!("{c:.1}")).collect();
        cus.join(", ")
    }

    /// The line the terminal shows.
    pub fn line(&self) -> String {
        format!(
            "{} draws of {} with actor `{}`: {} (mean {:.1}, sd {:.1}, range {:.1} CU points)",
            self.cu.len(),
            self.critic,
            self.actor,
            self.draws_text(),
            self.mean,
            self.sd,
            self.range
        )
    }
}

/// `critic` minus `versus` with `actor`: overall CU ×100, and the 95% paired bootstrap
/// interval (items resampled within each task, the same draws for both critics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub critic: String,
    pub versus: String,
    pub actor: String,
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The initial responses of one actor on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialSummary {
    pub actor: String,
    pub split: String,
    /// `actor` (the actor's own answers) or `dataset`.
    pub source: rco_core::dataset::InitialResponse,
    pub items: usize,
    /// Responses the verifier scored, and those it found correct.
    pub scored: usize,
    pub solved: usize,
}

/// [`InitialSummary`] per actor and split, in that order.
pub fn initial_summaries(records: &[crate::run::InitialRecord]) -> Vec<InitialSummary> {
    let mut out: BTreeMap<(String, String), InitialSummary> = BTreeMap::new();
    for r in records {
        let s = out
            .entry((r.actor.clone(), r.split.clone()))
            .or_insert_with(|| InitialSummary {
                actor: r.actor.clone(),
                split: r.split.clone(),
                source: r.source,
                items: 0,
                scored: 0,
                solved: 0,
            });
        s.items += 1;
        s.scored += usize::from(r.solved.is_some());
        s.solved += usize::from(r.solved == Some(true));
    }
    out.into_values().collect()
}

fn cell(
    critic: &str,
    actor: &str,
    records: &[&EvalRecord],
    resamples: usize,
    seed: u64,
) -> Vec<Cell> {
    let mut by_task: BTreeMap<&str, Vec<&EvalRecord>> = BTreeMap::new();
    for r in records {
        by_task.entry(r.task.as_str()).or_default().push(r);
    }
    let mut cells = Vec::new();
    let mut task_values: Vec<Vec<f64>> = Vec::new();
    let mut task_rqs: Vec<Vec<f64>> = Vec::new();
    let rqs_interval = |values: &[f64], key: &str| -> (Option<f64>, Option<f64>) {
        if values.is_empty() {
            return (None, None);
        }
        let (lo, hi) = bootstrap_ci(
            values,
            resamples,
            rco_core::seed::derive_seed(seed, &[critic, actor, key, "rqs"]),
        );
        (Some(lo), Some(hi))
    };
    for (task, rs) in &by_task {
        let values: Vec<f64> = rs.iter().filter_map(|r| r.cu).map(|c| c * 100.0).collect();
        let rqs: Vec<f64> = rs.iter().filter_map(|r| r.rqs).collect();
        let (rqs_lo, rqs_hi) = rqs_interval(&rqs, task);
        let rqs_invalid = rs.iter().map(|r| r.rqs_invalid).sum();
        let (lo, hi) = bootstrap_ci(
            &values,
            resamples,
            rco_core::seed::derive_seed(seed, &[critic, actor, task]),
        );
        let (initial_solved, refined_solved, initial_rqs) = solve_rates(rs);
        cells.push(Cell {
            critic: critic.into(),
            actor: actor.into(),
            task: task.to_string(),
            cu: mean(&values),
            cu_lo: lo,
            cu_hi: hi,
            n: values.len(),
            rqs: (!rqs.is_empty()).then(|| mean(&rqs)),
            rqs_lo,
            rqs_hi,
            rqs_n: rqs.len(),
            rqs_invalid,
            initial_solved,
            refined_solved,
            initial_rqs,
            judge: Some(records_health(rs)),
        });
        task_values.push(values);
        task_rqs.push(rqs);
    }
    // Overall: unweighted mean of task means; the interval resamples items within each task.
    let overall = mean(&task_values.iter().map(|v| mean(v)).collect::<Vec<_>>());
    let (lo, hi) = stratified_bootstrap_ci(
        &task_values,
        resamples,
        rco_core::seed::derive_seed(seed, &[critic, actor, "overall"]),
    );
    let (initial_solved, refined_solved, initial_rqs) = solve_rates(records);
    // The overall RQS keeps the meaning it had before intervals: the mean over all items
    // (not of task means), so its interval resamples all items.
    let all_rqs: Vec<f64> = task_rqs.into_iter().flatten().collect();
    let (rqs_lo, rqs_hi) = rqs_interval(&all_rqs, "overall");
    cells.push(Cell {
        critic: critic.into(),
        actor: actor.into(),
        task: "overall".into(),
        cu: overall,
        cu_lo: lo,
        cu_hi: hi,
        n: task_values.iter().map(Vec::len).sum(),
        rqs: (!all_rqs.is_empty()).then(|| mean(&all_rqs)),
        rqs_lo,
        rqs_hi,
        rqs_n: all_rqs.len(),
        rqs_invalid: records.iter().map(|r| r.rqs_invalid).sum(),
        initial_solved,
        refined_solved,
        initial_rqs,
        judge: Some(records_health(records)),
    });
    cells
}

/// The score of every refinement's both-order pair under the run's reward estimator, in
/// the order of the records, their critiques and their refinements (`None` where the pair
/// has no valid score).
pub type PairScores = Vec<Option<f64>>;

/// Every pair of the records in [`PairScores`] order.
pub fn pairs_in_order(records: &[EvalRecord]) -> Vec<rco_core::BothOrders> {
    records
        .iter()
        .flat_map(|r| {
            r.refinements
                .iter()
                .zip(&r.pairs)
                .flat_map(|(refined, pairs)| pairs.iter().take(refined.len()).cloned())
        })
        .collect()
}

fn judge_health(records: &[EvalRecord], scores: Option<&[Option<f64>]>) -> JudgeHealth {
    let mut scores = scores.map(|s| s.iter());
    let (mut longer, mut not_longer) = (Vec::new(), Vec::new());
    let mut length_changes = Vec::new();
    let mut all = Vec::new();
    for r in records {
        for (refined, item_pairs) in r.refinements.iter().zip(&r.pairs) {
            for (text, pair) in refined.iter().zip(item_pairs) {
                all.push(pair);
                let change = text.chars().count() as f64 - r.initial_chars as f64;
                // The CU split by length uses the run's own estimator where it was given.
                let score = match scores.as_mut() {
                    Some(scores) => scores.next().copied().flatten(),
                    None => pair_score(pair, CuMode::Hard).map(|(score, _)| score),
                };
                if let Some(score) = score {
                    if change > 0.0 {
                        longer.push(score * 100.0);
                    } else {
                        not_longer.push(score * 100.0);
                    }
                }
            }
        }
        length_changes.push(r.length_change);
    }
    // Position consistency is the hard rule's (do the two orders agree?).
    let counts = pair_health(all);
    let or_nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    JudgeHealth {
        position_consistency: or_nan(counts.position_consistency),
        first_slot_win_rate: or_nan(counts.first_slot_win_rate),
        tie_rate: or_nan(counts.tie_rate),
        invalid_rate: or_nan(counts.invalid_rate),
        mean_length_change: mean(&length_changes),
        cu_longer: (!longer.is_empty()).then(|| mean(&longer)),
        cu_not_longer: (!not_longer.is_empty()).then(|| mean(&not_longer)),
        judgements: counts.judgements,
    }
}

/// A judge's health in one stage, from its both-order judgements alone (ratios are absent
/// when there is nothing to divide by).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageHealth {
    /// Share of pairs with two valid verdicts whose two orders agree.
    pub position_consistency: Option<f64>,
    /// Share of valid judgements won by the first slot.
    pub first_slot_win_rate: Option<f64>,
    /// Share of valid judgements that are ties.
    pub tie_rate: Option<f64>,
    /// Share of judgements that could not be read.
    pub invalid_rate: Option<f64>,
    pub judgements: usize,
}

/// The health of a judge from its both-order pairs: the collection's judgements as well as
/// evaluation's.
pub fn pair_health<'a>(pairs: impl IntoIterator<Item = &'a rco_core::BothOrders>) -> StageHealth {
    let (mut judgements, mut valid, mut first_wins, mut ties, mut invalid) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut decided, mut consistent) = (0usize, 0usize);
    for pair in pairs {
        for j in [&pair.refined_first, &pair.refined_second] {
            judgements += 1;
            match j.verdict {
                Verdict::A => {
                    valid += 1;
                    first_wins += 1
                }
                Verdict::B => valid += 1,
                Verdict::Tie => {
                    valid += 1;
                    ties += 1
                }
                Verdict::Invalid { .. } => invalid += 1,
            }
        }
        if let Some((_, disagree)) = pair_score(pair, CuMode::Hard) {
            decided += 1;
            if !disagree {
                consistent += 1;
            }
        }
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    StageHealth {
        position_consistency: ratio(consistent, decided),
        first_slot_win_rate: ratio(first_wins, valid),
        tie_rate: ratio(ties, valid),
        invalid_rate: ratio(invalid, judgements),
        judgements,
    }
}

fn default_trained() -> String {
    "rco".into()
}

/// What the report's critic names mean, for its header: `base` is the critic before
/// training and the trained critic's name is the critic after, where each was evaluated
/// (`rco eval --critics` can leave the trained critic out).
pub fn critics_legend(report: &Report) -> String {
    let mut parts = Vec::new();
    if evaluated(report, "base") {
        parts.push("base = before training".to_string());
    }
    if evaluated(report, &report.trained_critic) {
        parts.push(format!("{} = after", report.trained_critic));
    }
    if parts.is_empty() {
        "critics as named".to_string()
    } else {
        parts.join(", ")
    }
}

/// Whether `critic` has cells in the report.
fn evaluated(report: &Report, critic: &str) -> bool {
    report.cells.iter().any(|c| c.critic == critic)
}

/// The overall CU (×100) of `critic` with `actor` among `cells`, if it was evaluated.
pub fn overall_cu(cells: &[Cell], critic: &str, actor: &str) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.critic == critic && c.actor == actor && c.task == "overall")
        .map(|c| c.cu)
}

/// Builds the report from the evaluation records of the base critic and the critic named
/// `trained` (the trainer's kind).
pub fn build(
    records: &[EvalRecord],
    actors: &[String],
    trained: &str,
    resamples: usize,
    seed: u64,
    train: Option<rco_core::TrainSummary>,
    pair_scores: Option<&[Option<f64>]>,
) -> Report {
    let mut cells = Vec::new();
    // The base, the trained critic, then the others (`[eval.critics]`) as they appear.
    let mut critics: Vec<&str> = vec!["base", trained];
    for r in records {
        if !critics.contains(&r.critic.as_str()) {
            critics.push(&r.critic);
        }
    }
    for &critic in &critics {
        for actor in actors {
            let rs: Vec<&EvalRecord> = records
                .iter()
                .filter(|r| r.critic == critic && &r.actor == actor)
                .collect();
            if !rs.is_empty() {
                cells.extend(cell(critic, actor, &rs, resamples, seed));
            }
        }
    }
    let overall = |critic: &str, actor: &str| overall_cu(&cells, critic, actor);
    let mut differences = Vec::new();
    let others = &critics[2..];
    let pairs = std::iter::once((trained, "base"))
        .chain(others.iter().map(|&c| (c, "base")))
        .chain(others.iter().map(|&c| (trained, c)));
    for (critic, versus) in pairs {
        for actor in actors {
            let (Some(a), Some(b)) = (overall(critic, actor), overall(versus, actor)) else {
                continue;
            };
            let (lo, hi) = paired_stratified_bootstrap_diff_ci(
                &paired_items(records, actor, critic, versus),
                resamples,
                // The trained critic against the base keeps the draws `improvement` always had.
                if critic == trained && versus == "base" {
                    rco_core::seed::derive_seed(seed, &["rco-base", actor])
                } else {
                    rco_core::seed::derive_seed(seed, &[critic, versus, actor])
                },
            );
            differences.push(Difference {
                critic: critic.to_string(),
                versus: versus.to_string(),
                actor: actor.clone(),
                diff: a - b,
                lo,
                hi,
            });
        }
    }
    // `improvement` is the trained critic against the base, read off `differences`.
    let (mut improvement, mut improvement_lo, mut improvement_hi) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for d in differences
        .iter()
        .filter(|d| d.critic == trained && d.versus == "base")
    {
        improvement.insert(d.actor.clone(), d.diff);
        improvement_lo.insert(d.actor.clone(), d.lo);
        improvement_hi.insert(d.actor.clone(), d.hi);
    }
    Report {
        judge_health_by_stage: BTreeMap::new(),
        differences,
        trained_critic: trained.to_string(),
        cu_scale: "x100".into(),
        judge_health: judge_health(records, pair_scores),
        cells,
        improvement,
        improvement_lo,
        improvement_hi,
        train,
        warnings: Vec::new(),
        usage: Default::default(),
        usage_total: Default::default(),
        initial_responses: Vec::new(),
        draws: Vec::new(),
        trained: BTreeMap::new(),
    }
}

/// Per task (in name order), each item's CU ×100 with `critic` and with `versus`, and
/// `actor`.
fn paired_items(
    records: &[EvalRecord],
    actor: &str,
    critic: &str,
    versus: &str,
) -> Vec<Vec<(Option<f64>, Option<f64>)>> {
    type Pair = (Option<f64>, Option<f64>);
    let mut by_task: BTreeMap<&str, BTreeMap<&str, Pair>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.actor == actor) {
        let pair = by_task
            .entry(r.task.as_str())
            .or_default()
            .entry(r.item_id.as_str())
            .or_default();
        let cu = r.cu.map(|c| c * 100.0);
        if r.critic == critic {
            pair.0 = cu;
        } else if r.critic == versus {
            pair.1 = cu;
        }
    }
    by_task
        .into_values()
        .map(|items| items.into_values().collect())
        .collect()
}

/// The terminal line of an actor's improvement and its interval, for example
/// ``rco - base with actor `weak`: +31.2 CU points [+25.0, +37.4]``.
pub fn improvement_line(report: &Report, actor: &str) -> Option<String> {
    let delta = report.improvement.get(actor)?;
    let interval = match (
        report.improvement_lo.get(actor),
        report.improvement_hi.get(actor),
    ) {
        (Some(lo), Some(hi)) => format!(" [{lo:+.1}, {hi:+.1}]"),
        _ => String::new(),
    };
    Some(format!(
        "{} - base with actor `{actor}`: {delta:+.1} CU points{interval}",
        report.trained_critic
    ))
}

/// The terminal lines of the differences beyond the trained critic against the base
/// (which [`improvement_line`] prints), for example
/// ``self-refine - base with actor `weak`: -12.0 CU points [-15.1, -9.2]``.
pub fn difference_lines(report: &Report) -> Vec<String> {
    report
        .differences
        .iter()
        .filter(|d| !(d.critic == report.trained_critic && d.versus == "base"))
        .map(|d| {
            format!(
                "{} - {} with actor `{}`: {:+.1} CU points [{:+.1}, {:+.1}]",
                d.critic, d.versus, d.actor, d.diff, d.lo, d.hi
            )
        })
        .collect()
}

/// The CU table (plain text, also used inside `report.md`).
pub fn table(report: &Report) -> String {
    let tasks: Vec<String> = {
        let mut t: Vec<String> = report
            .cells
            .iter()
            .map(|c| c.task.clone())
            .filter(|t| t != "overall")
            .collect();
        t.sort();
        t.dedup();
        t.push("overall".into());
        t
    };
    // A cell scored on fewer items than the most in its column (a partial evaluation, or
    // items without a valid CU) shows its count.
    let most = |task: &str| {
        report
            .cells
            .iter()
            .filter(|c| c.task == task)
            .map(|c| c.n)
            .max()
            .unwrap_or(0)
    };
    let cell_text = |c: &Cell| {
        let text = format!("{:.1} [{:.1}, {:.1}]", c.cu, c.cu_lo, c.cu_hi);
        if c.n < most(&c.task) {
            format!("{text} n={}", c.n)
        } else {
            text
        }
    };
    let column = report
        .cells
        .iter()
        .map(|c| cell_text(c).chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let mut out = String::new();
    // As wide as the longest critic name (`self-refine`), at least 8.
    let width = report
        .cells
        .iter()
        .map(|c| c.critic.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    out.push_str(&format!("{:<width$} {:<10}", "critic", "actor"));
    for t in &tasks {
        out.push_str(&format!(" {t:>column$}"));
    }
    out.push('\n');
    let mut rows: Vec<(String, String)> = report
        .cells
        .iter()
        .map(|c| (c.actor.clone(), c.critic.clone()))
        .collect();
    rows.dedup();
    let mut seen = Vec::new();
    for (actor, critic) in rows {
        if seen.contains(&(actor.clone(), critic.clone())) {
            continue;
        }
        seen.push((actor.clone(), critic.clone()));
        out.push_str(&format!("{critic:<width$} {actor:<10}"));
        for t in &tasks {
            match report
                .cells
                .iter()
                .find(|c| c.critic == critic && c.actor == actor && &c.task == t)
            {
                Some(c) => out.push_str(&format!(" {:>column$}", cell_text(c))),
                None => out.push_str(&format!(" {:>column$}", "-")),
            }
        }
        out.push('\n');
    }
    out
}

/// What the CU table was measured on: `24 held-out items`, or, where an overall cell has
/// fewer (a partial evaluation, or items without a valid CU), `up to 24 held-out items`
/// with the range of the overall cells' counts.
pub fn items_phrase(report: &Report, items: usize) -> String {
    let counts: Vec<usize> = report
        .cells
        .iter()
        .filter(|c| c.task == "overall")
        .map(|c| c.n)
        .collect();
    match (counts.iter().min(), counts.iter().max()) {
        (Some(&least), Some(&most)) if least < items => format!(
            "up to {items} held-out items (the overall cells have {}; `n=K` marks a cell with fewer than its column's most)",
            if least == most {
                format!("{least}")
            } else {
                format!("{least} to {most}")
            }
        ),
        _ => format!("{items} held-out items"),
    }
}

/// A share as a percentage, or `-`.
pub fn percent(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.1}%", s * 100.0))
}

/// The solve-rate lines the terminal shows (verifier judges only).
pub fn solve_lines(report: &Report) -> String {
    let mut out = String::new();
    for c in report.cells.iter().filter(|c| c.task == "overall") {
        if c.initial_solved.is_some() || c.refined_solved.is_some() {
            out.push_str(&format!(
                "solved ({} critic, {}): y0 {}, refinements {}\n",
                c.critic,
                c.actor,
                percent(c.initial_solved),
                percent(c.refined_solved)
            ));
        }
    }
    out
}

/// `report.md`.
pub fn markdown(report: &Report, items: usize) -> String {
    let h = &report.judge_health;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut md = String::from("# RCO run report\n\n");
    let legend = match (
        evaluated(report, "base"),
        evaluated(report, &report.trained_critic),
    ) {
        (true, true) => format!(
            " `base` is the critic before training, `{}` after.",
            report.trained_critic
        ),
        (true, false) => " `base` is the critic before training.".to_string(),
        (false, true) => format!(" `{}` is the critic after training.", report.trained_critic),
        (false, false) => String::new(),
    };
    md.push_str(&format!(
        "Critique utility ×100 on {}, with 95% bootstrap intervals.{legend}\n\n```\n{}```\n\n",
        items_phrase(report, items),
        table(report)
    ));
    md.push_str(&format!(
        "| actor | {} − base (overall CU ×100) | 95% paired bootstrap interval |\n|---|---|---|\n",
        report.trained_critic
    ));
    for (actor, delta) in &report.improvement {
        let interval = match (
            report.improvement_lo.get(actor),
            report.improvement_hi.get(actor),
        ) {
            (Some(lo), Some(hi)) => format!("[{lo:+.1}, {hi:+.1}]"),
            _ => "-".into(),
        };
        md.push_str(&format!("| {actor} | {delta:+.1} | {interval} |\n"));
    }
    if report.differences.len() > report.improvement.len() {
        md.push_str("\n## Differences between critics\n\nOverall CU ×100, with 95% paired bootstrap intervals on the same items.\n\n| critic | versus | actor | difference | 95% interval |\n|---|---|---|---|---|\n");
        for d in &report.differences {
            md.push_str(&format!(
                "| {} | {} | {} | {:+.1} | [{:+.1}, {:+.1}] |\n",
                d.critic, d.versus, d.actor, d.diff, d.lo, d.hi
            ));
        }
    }
    if !report.draws.is_empty() {
        md.push_str("\n## Draws of one critic (A/A control)\n\nOverall CU ×100 of each draw of a critic's critiques (its own evaluation first), on the same items, first answers and refinement seeds: the differences sampling alone makes.\n\n| critic | actor | draws | mean | sd | range |\n|---|---|---|---|---|---|\n");
        for d in &report.draws {
            md.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                d.critic,
                d.actor,
                d.draws_text(),
                d.mean,
                d.sd,
                d.range
            ));
        }
    }
    md.push_str(
        "\n## Refinement quality (RQS)\n\n| critic | actor | task | RQS |\n|---|---|---|---|\n",
    );
    for c in &report.cells {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.critic,
            c.actor,
            c.task,
            c.rqs.map_or("-".into(), |v| format!("{v:.2}"))
        ));
    }
    if !report.initial_responses.is_empty() {
        md.push_str("\n## Initial responses\n\n| actor | split | source | items | scored by the verifier | already correct |\n|---|---|---|---|---|---|\n");
        for s in &report.initial_responses {
            let source = match s.source {
                rco_core::dataset::InitialResponse::Actor => "actor",
                rco_core::dataset::InitialResponse::Dataset => "dataset",
            };
            md.push_str(&format!(
                "| {} | {} | {source} | {} | {} | {} |\n",
                s.actor, s.split, s.items, s.scored, s.solved
            ));
        }
    }
    if report.cells.iter().any(|c| c.initial_solved.is_some()) {
        md.push_str("\n## Solve rates (verifier judge)\n\nThe share of initial responses (`y0`, each actor's own) and of refinements that the verifier finds correct.\n\n| critic | actor | task | y0 solved | refinements solved |\n|---|---|---|---|---|\n");
        for c in &report.cells {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                c.critic,
                c.actor,
                c.task,
                percent(c.initial_solved),
                percent(c.refined_solved)
            ));
        }
    }
    md.push_str(&format!(
        "\n## Judge health\n\n| position consistency | first-slot win rate | tie rate | invalid rate | mean length change | CU when longer | CU when not longer | judgements |\n|---|---|---|---|---|---|---|---|\n| {:.3} | {:.3} | {:.3} | {:.3} | {:+.2} | {} | {} | {} |\n",
        h.position_consistency, h.first_slot_win_rate, h.tie_rate, h.invalid_rate, h.mean_length_change, opt(h.cu_longer), opt(h.cu_not_longer), h.judgements
    ));
    if report.cells.iter().any(|c| c.judge.is_some()) {
        md.push_str("\nPer critic and actor (evaluation, all tasks):\n\n| critic | actor | position consistency | first-slot win rate | tie rate | invalid rate | judgements |\n|---|---|---|---|---|---|---|\n");
        let r = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for c in report.cells.iter().filter(|c| c.task == "overall") {
            if let Some(h) = &c.judge {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    c.critic,
                    c.actor,
                    r(h.position_consistency),
                    r(h.first_slot_win_rate),
                    r(h.tie_rate),
                    r(h.invalid_rate),
                    h.judgements
                ));
            }
        }
    }
    if !report.judge_health_by_stage.is_empty() {
        md.push_str("\nPer stage:\n\n| stage | position consistency | first-slot win rate | tie rate | invalid rate | judgements |\n|---|---|---|---|---|---|\n");
        for (stage, h) in &report.judge_health_by_stage {
            let r = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            md.push_str(&format!(
                "| {stage} | {} | {} | {} | {} | {} |\n",
                r(h.position_consistency),
                r(h.first_slot_win_rate),
                r(h.tie_rate),
                r(h.invalid_rate),
                h.judgements
            ));
        }
    }
    if !report.usage.is_empty() {
        md.push_str("\n## Calls to remote plugins\n\n| stage | section | calls | from cache | requests | retries | prompt tokens | completion tokens | cost |\n|---|---|---|---|---|---|---|---|---|\n");
        for (stage, sections) in &report.usage {
            for (section, u) in sections {
                let retries = if u.retries.is_empty() {
                    "0".to_string()
                } else {
                    u.retries
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                md.push_str(&format!(
                    "| {stage} | {section} | {} | {} | {} | {retries} | {} | {} | {:.4} |\n",
                    u.calls, u.cache_hits, u.requests, u.prompt_tokens, u.completion_tokens, u.cost
                ));
            }
        }
    }
    if let Some(t) = &report.train {
        md.push_str(&format!(
            "\n## Training\n\n{} steps over {} groups ({} with all critiques at equal CU, which carry no signal at initialisation); loss {:.4} → {:.4}.\n",
            t.steps, t.groups, t.flat_groups, t.first_loss, t.last_loss
        ));
        for (name, t) in &report.trained {
            md.push_str(&format!(
                "\n`{name}`: {} steps over {} groups ({} flat); loss {:.4} → {:.4}.\n",
                t.steps, t.groups, t.flat_groups, t.first_loss, t.last_loss
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_spread_is_the_sample_spread_of_the_draws() {
        assert_eq!(DrawSpread::new("base", "weak", vec![20.0]), None);
        let d = DrawSpread::new("base", "weak", vec![20.0, 26.0, 29.0]).unwrap();
        assert!((d.mean - 25.0).abs() < 1e-12);
        // Sample variance: (25 + 1 + 16) / 2 = 21.
        assert!((d.sd - 21f64.sqrt()).abs() < 1e-12);
        assert!((d.range - 9.0).abs() < 1e-12);
        assert_eq!(
            d.line(),
            "3 draws of base with actor `weak`: 20.0, 26.0, 29.0 (mean 25.0, sd 4.6, range 9.0 CU points)"
        );
    }

    #[test]
    fn the_legend_names_only_the_critics_evaluated() {
        let recs = records(12);
        let actors = vec!["weak".to_string()];
        let both = build(&recs, &actors, "rco", 100, 9, None, None);
        assert_eq!(critics_legend(&both), "base = before training, rco = after");
        // `rco eval --critics base,...`: the trained critic was not evaluated.
        let base_only: Vec<EvalRecord> = recs.into_iter().filter(|r| r.critic == "base").collect();
        let base = build(&base_only, &actors, "rco", 100, 9, None, None);
        assert_eq!(critics_legend(&base), "base = before training");
        let md = markdown(&base, 12);
        assert!(
            md.contains("`base` is the critic before training.\n"),
            "{md}"
        );
        assert!(markdown(&both, 12).contains("`base` is the critic before training, `rco` after."));
    }

    /// A partial evaluation (the rco critic scored on 8 of 12 items) says so in the
    /// header and marks the short cells with their counts; a complete one is unchanged.
    #[test]
    fn a_partial_evaluation_shows_its_item_counts() {
        let actors = vec!["weak".to_string()];
        let full = build(&records(12), &actors, "rco", 100, 9, None, None);
        assert!(markdown(&full, 12).contains("Critique utility ×100 on 12 held-out items, with"));
        assert!(!table(&full).contains("n="), "{}", table(&full));
        let partial: Vec<EvalRecord> = records(12)
            .into_iter()
            .filter(|r| r.critic == "base" || r.item_id.as_str() < "item-6")
            .collect();
        let report = build(&partial, &actors, "rco", 100, 9, None, None);
        assert_eq!(
            items_phrase(&report, 12),
            "up to 12 held-out items (the overall cells have 8 to 12; `n=K` marks a cell with fewer than its column's most)"
        );
        let table = table(&report);
        let rco_row = table.lines().find(|l| l.starts_with("rco")).unwrap();
        let base_row = table.lines().find(|l| l.starts_with("base")).unwrap();
        // item-0..item-5 (and item-10, item-11, which sort before item-6): 8 overall.
        assert!(rco_row.ends_with(" n=8"), "{table}");
        assert!(!base_row.contains("n="), "{table}");
        // The columns stay aligned: every row as long as the header.
        let header = table.lines().next().unwrap().chars().count();
        assert!(
            table.lines().all(|l| l.chars().count() == header),
            "{table}"
        );
    }

    /// `items` items over two tasks; the rco critic's CU is the base's plus a gain that
    /// varies by item (and item difficulty varies far more than the gain).
    fn records(items: usize) -> Vec<EvalRecord> {
        let mut out = Vec::new();
        for i in 0..items {
            let task = if i % 3 == 0 { "copy" } else { "reverse" };
            let base = (i * 37 % 11) as f64 / 12.0;
            let gain = [0.05, 0.2, 0.0, 0.1][i % 4];
            for (critic, cu) in [("base", base), ("rco", base + gain)] {
                out.push(EvalRecord {
                    critic: critic.into(),
                    actor: "weak".into(),
                    item_id: format!("item-{i}"),
                    task: task.into(),
                    critiques: Vec::new(),
                    refinements: Vec::new(),
                    pairs: Vec::new(),
                    cu: Some(cu),
                    rqs: None,
                    rqs_invalid: 0,
                    initial_chars: 10,
                    length_change: 0.0,
                    initial_score: None,
                    initial_solved: None,
                    refined_solved: None,
                });
            }
        }
        out
    }

    #[test]
    fn improvement_has_a_deterministic_paired_interval_around_it() {
        let recs = records(60);
        let actors = vec!["weak".to_string()];
        let report = build(&recs, &actors, "rco", 1000, 9, None, None);
        let delta = report.improvement["weak"];
        let (lo, hi) = (report.improvement_lo["weak"], report.improvement_hi["weak"]);
        assert!(lo < delta && delta < hi, "{lo} {delta} {hi}");
        // Paired: the spread is that of the gains (0 to 20 points), not of the items' CU.
        assert!(hi - lo < 8.0, "{lo} {hi}");
        let rco = report
            .cells
            .iter()
            .find(|c| c.critic == "rco" && c.task == "overall")
            .unwrap();
        assert!(hi - lo < (rco.cu_hi - rco.cu_lo) / 2.0, "{lo} {hi} {rco:?}");
        // The same records, seed and resamples give the same interval, whatever the order.
        let mut shuffled = recs.clone();
        shuffled.reverse();
        let again = build(&shuffled, &actors, "rco", 1000, 9, None, None);
        assert_eq!(again.improvement_lo, report.improvement_lo);
        assert_eq!(again.improvement_hi, report.improvement_hi);
        // Existing fields keep their names and shapes; the interval is added beside them.
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["improvement"]["weak"].is_f64());
        assert_eq!(json["improvement_lo"]["weak"], serde_json::json!(lo));
        assert_eq!(json["improvement_hi"]["weak"], serde_json::json!(hi));
        assert_eq!(
            improvement_line(&report, "weak").unwrap(),
            format!("rco - base with actor `weak`: {delta:+.1} CU points [{lo:+.1}, {hi:+.1}]")
        );
        assert!(markdown(&report, 60)
            .contains(&format!("| weak | {delta:+.1} | [{lo:+.1}, {hi:+.1}] |")));
    }

    /// RQS: an interval around each cell's mean, and the unreadable scores counted.
    #[test]
    fn rqs_has_an_interval_and_invalid_scores_are_counted() {
        let mut recs = records(40);
        for (i, r) in recs.iter_mut().enumerate() {
            // Item i scores i % 10 (the odd items' refinements had one unreadable score).
            r.rqs = (i % 7 != 0).then_some((i % 10) as f64);
            r.rqs_invalid = i % 2;
        }
        let report = build(&recs, &["weak".to_string()], "rco", 1000, 3, None, None);
        for c in &report.cells {
            let (lo, hi, rqs) = (c.rqs_lo.unwrap(), c.rqs_hi.unwrap(), c.rqs.unwrap());
            assert!(lo <= rqs && rqs <= hi && lo < hi, "{c:?}");
            let mine: Vec<&EvalRecord> = recs
                .iter()
                .filter(|r| r.critic == c.critic && (c.task == "overall" || r.task == c.task))
                .collect();
            assert_eq!(c.rqs_n, mine.iter().filter(|r| r.rqs.is_some()).count());
            assert_eq!(
                c.rqs_invalid,
                mine.iter().map(|r| r.rqs_invalid).sum::<usize>()
            );
        }
        // Without scores there is no interval.
        let plain = build(
            &records(10),
            &["weak".to_string()],
            "rco",
            100,
            3,
            None,
            None,
        );
        assert!(plain
            .cells
            .iter()
            .all(|c| c.rqs_lo.is_none() && c.rqs_n == 0));
    }
}
