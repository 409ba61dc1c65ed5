//! `rco compare RUN_DIR...`: one CU matrix across finished runs (other seeds, other
//! trainers, other configs), and the paired difference of every two critics from different
//! runs that were evaluated on the same test items: items are resampled within each task,
//! both critics on the same draw, as the report's `improvement` does within one run. Runs
//! whose test items differ are shown in the matrix but not paired.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rco_core::stats::paired_stratified_bootstrap_diff_ci;
use serde::Serialize;

use crate::report::{Cell, Report};
use crate::run::{EvalRecord, StoredItem, EVAL_FILE, ITEMS_FILE};

/// One run as the comparison reads it.
struct RunResults {
    name: String,
    dir: PathBuf,
    report: Report,
    records: Vec<EvalRecord>,
    /// The test items, serialized in order: runs pair only when these are equal.
    test_items: String,
}

/// A cell of the matrix, with the run it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct RunCell {
    pub run: String,
    #[serde(flatten)]
    pub cell: Cell,
}

/// The paired difference of two critics' overall CU ×100 with one actor.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// `RUN/CRITIC` of each side; the difference is `a − b`.
    pub a: String,
    pub b: String,
    pub actor: String,
    pub difference: f64,
    pub lo: f64,
    pub hi: f64,
    /// Items with a CU on both sides.
    pub items: usize,
}

/// What `compare.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<BTreeMap<String, String>>,
    pub cells: Vec<RunCell>,
    pub differences: Vec<Difference>,
    /// Pairs of runs not compared item by item, and why.
    pub unpaired: Vec<String>,
}

fn read_run(dir: &Path, name: String) -> anyhow::Result<RunResults> {
    let report_path = dir.join("report.json");
    let bytes = std::fs::read(&report_path).with_context(|| {
        format!(
            "{}: no report; run `rco report` on it first",
            report_path.display()
        )
    })?;
    let report: Report = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an rco report", report_path.display()))?;
    let records: Vec<EvalRecord> = rco_core::store::read_jsonl(&dir.join(EVAL_FILE))?;
    let items: Vec<StoredItem> = rco_core::store::read_jsonl(&dir.join(ITEMS_FILE))?;
    let test: Vec<&StoredItem> = items.iter().filter(|i| i.split == "test").collect();
    Ok(RunResults {
        name,
        dir: dir.to_path_buf(),
        report,
        records,
        test_items: serde_json::to_string(&test)?,
    })
}

/// Each item's CU ×100 per task for `critic` and `actor`.
fn item_cus(run: &RunResults, critic: &str, actor: &str) -> BTreeMap<(String, String), f64> {
    run.records
        .iter()
        .filter(|r| r.critic == critic && r.actor == actor)
        .filter_map(|r| Some(((r.task.clone(), r.item_id.clone()), r.cu? * 100.0)))
        .collect()
}

/// Reads the runs and compares them; `resamples` and `seed` drive the paired bootstrap.
pub fn compare(dirs: &[PathBuf], resamples: usize, seed: u64) -> anyhow::Result<Comparison> {
    if dirs.len() < 2 {
        bail!("give at least two run directories");
    }
    let mut runs = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for dir in dirs {
        let base = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().to_string(),
        );
        let count = names.entry(base.clone()).or_default();
        *count += 1;
        let name = if *count == 1 {
            base
        } else {
            format!("{base}-{count}")
        };
        runs.push(read_run(dir, name)?);
    }
    let cells: Vec<RunCell> = runs
        .iter()
        .flat_map(|run| {
            run.report.cells.iter().map(|c| RunCell {
                run: run.name.clone(),
                cell: c.clone(),
            })
        })
        .collect();
    let mut differences = Vec::new();
    let mut unpaired = Vec::new();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a.test_items != b.test_items {
                unpaired.push(format!(
                    "{} and {}: different test items (data, item counts or seed differ)",
                    a.name, b.name
                ));
                continue;
            }
            let critics = |run: &RunResults| {
                let mut seen: Vec<String> = Vec::new();
                for c in &run.report.cells {
                    if !seen.contains(&c.critic) {
                        seen.push(c.critic.clone());
                    }
                }
                seen
            };
            let actors: Vec<String> = {
                let mut seen: Vec<String> = Vec::new();
                for c in &a.report.cells {
                    if !seen.contains(&c.actor) && b.report.cells.iter().any(|d| d.actor == c.actor)
                    {
                        seen.push(c.actor.clone());
                    }
                }
                seen
            };
            for critic_a in critics(a) {
                for critic_b in critics(b) {
                    for actor in &actors {
                        let left = item_cus(a, &critic_a, actor);
                        let right = item_cus(b, &critic_b, actor);
                        let mut by_task: BTreeMap<&str, Vec<(Option<f64>, Option<f64>)>> =
                            BTreeMap::new();
                        let keys: std::collections::BTreeSet<&(String, String)> =
                            left.keys().chain(right.keys()).collect();
                        for key in keys {
                            by_task
                                .entry(key.0.as_str())
                                .or_default()
                                .push((left.get(key).copied(), right.get(key).copied()));
                        }
                        let groups: Vec<Vec<(Option<f64>, Option<f64>)>> =
                            by_task.into_values().collect();
                        let items = groups
                            .iter()
                            .flatten()
                            .filter(|(x, y)| x.is_some() && y.is_some())
                            .count();
                        if items == 0 {
                            continue;
                        }
                        let overall = |run: &RunResults, critic: &str| {
                            crate::report::overall_cu(&run.report.cells, critic, actor)
                        };
                        let (Some(x), Some(y)) = (overall(a, &critic_a), overall(b, &critic_b))
                        else {
                            continue;
                        };
                        let (lo, hi) = paired_stratified_bootstrap_diff_ci(
                            &groups,
                            resamples,
                            rco_core::seed::derive_seed(
                                seed,
                                &["compare", &a.name, &critic_a, &b.name, &critic_b, actor],
                            ),
                        );
                        differences.push(Difference {
                            a: format!("{}/{critic_a}", a.name),
                            b: format!("{}/{critic_b}", b.name),
                            actor: actor.clone(),
                            difference: x - y,
                            lo,
                            hi,
                            items,
                        });
                    }
                }
            }
        }
    }
    Ok(Comparison {
        runs: runs
            .iter()
            .map(|r| {
                BTreeMap::from([
                    ("name".to_string(), r.name.clone()),
                    ("dir".to_string(), r.dir.display().to_string()),
                    (
                        "trained_critic".to_string(),
                        r.report.trained_critic.clone(),
                    ),
                ])
            })
            .collect(),
        cells,
        differences,
        unpaired,
    })
}

/// The matrix and the differences as the terminal shows them.
pub fn text(comparison: &Comparison) -> String {
    let mut tasks: Vec<String> = comparison
        .cells
        .iter()
        .map(|c| c.cell.task.clone())
        .filter(|t| t != "overall")
        .collect();
    tasks.sort();
    tasks.dedup();
    tasks.push("overall".into());
    let rows: Vec<(String, String)> = {
        let mut seen: Vec<(String, String)> = Vec::new();
        for c in &comparison.cells {
            let row = (format!("{}/{}", c.run, c.cell.critic), c.cell.actor.clone());
            if !seen.contains(&row) {
                seen.push(row);
            }
        }
        seen
    };
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let mut out = format!("{:<width$} {:<10}", "critic", "actor");
    for t in &tasks {
        out.push_str(&format!(" {t:>20}"));
    }
    out.push('\n');
    for (critic, actor) in rows {
        out.push_str(&format!("{critic:<width$} {actor:<10}"));
        for t in &tasks {
            let cell = comparison.cells.iter().find(|c| {
                format!("{}/{}", c.run, c.cell.critic) == critic
                    && c.cell.actor == actor
                    && &c.cell.task == t
            });
            match cell {
                Some(c) => out.push_str(&format!(
                    " {:>20}",
                    format!(
                        "{:.1} [{:.1}, {:.1}]",
                        c.cell.cu, c.cell.cu_lo, c.cell.cu_hi
                    )
                )),
                None => out.push_str(&format!(" {:>20}", "-")),
            }
        }
        out.push('\n');
    }
    for d in &comparison.differences {
        out.push_str(&format!(
            "{} - {} with actor `{}`: {:+.1} CU points [{:+.1}, {:+.1}] (paired, {} items)\n",
            d.a, d.b, d.actor, d.difference, d.lo, d.hi, d.items
        ));
    }
    for u in &comparison.unpaired {
        out.push_str(&format!("not paired: {u}\n"));
    }
    out
}
