//! `rco export-groups`: the groups a run collected, as training data for other trainers.
//! With `--format trl` it writes two JSONL files in TRL's dataset shapes (plain-text
//! prompts), so a team can train a large critic with TRL or OpenRLHF on data rco collected
//! and evaluate it back with rco through an OpenAI-compatible server:
//! - `rco.jsonl`: one line per critique, `{"prompt", "completion", "reward"}` with the
//!   critique's utility (CU) as the reward: RCO's regression target;
//! - `preferences.jsonl`: one line per pair of critiques of the same answer whose CUs differ
//!   by more than `--min-gap`, `{"prompt", "chosen", "rejected"}` (DPO's shape) with the
//!   higher-CU critique chosen. These are preferences derived from refinement outcomes;
//! - `critique_preferences.jsonl`, when the run compared critiques directly
//!   (`collect.critique_comparisons`): one line per pair the judge decided,
//!   `{"prompt", "chosen", "rejected", "score"}`: DPCO's pairs, in DPO's shape.
//!
//! Each line also carries `item_id` (and the CUs) so rows can be grouped again; TRL ignores
//! columns it does not use.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rco_core::store::RunStore;
use rco_core::TrainingGroup;
use serde_json::json;

use crate::run::GROUPS_FILE;

/// The file of critiques with their CU as reward.
pub const REWARD_FILE: &str = "rco.jsonl";
/// The file of chosen/rejected critique pairs.
pub const PREFERENCE_FILE: &str = "preferences.jsonl";

/// The file of critique pairs the judge compared directly and decided (DPCO's pairs).
pub const DIRECT_PREFERENCE_FILE: &str = "critique_preferences.jsonl";

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub dir: PathBuf,
    pub groups: usize,
    /// Groups whose critiques all have the same CU (no preference pair comes from them).
    pub flat_groups: usize,
    pub critiques: usize,
    pub pairs: usize,
    /// Pairs written to [`DIRECT_PREFERENCE_FILE`]; `None` when the run compared no
    /// critiques directly (the file is not written).
    pub direct_pairs: Option<usize>,
}

/// Writes the run's groups in `format` to `out` (default `RUN_DIR/export/FORMAT`); pairs
/// need a CU difference larger than `min_gap`.
pub fn export_groups(
    run_dir: &Path,
    format: &str,
    out: Option<&Path>,
    min_gap: f64,
) -> anyhow::Result<Exported> {
    if format != "trl" {
        bail!("--format: unknown format `{format}` (expected trl)");
    }
    if min_gap.is_nan() || min_gap < 0.0 {
        bail!("--min-gap must be a number at least 0 (got {min_gap})");
    }
    if !run_dir.join(GROUPS_FILE).is_file() {
        bail!(
            "{} has no {GROUPS_FILE}; run `rco collect` first",
            run_dir.display()
        );
    }
    // Opening the store takes the run's lock: a run still collecting is refused rather than
    // read half-written.
    let store = RunStore::open(run_dir)?;
    let groups: Vec<TrainingGroup> = store.read(GROUPS_FILE)?;
    let dir = out.map_or_else(|| run_dir.join("export").join(format), Path::to_path_buf);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    let mut rewards = Vec::new();
    let mut preferences = Vec::new();
    let mut flat_groups = 0;
    for group in &groups {
        for critique in &group.critiques {
            rewards.push(json!({
                "prompt": group.prompt,
                "completion": critique.text,
                "reward": critique.cu,
                "item_id": group.item_id,
            }));
        }
        let cus: Vec<f64> = group.critiques.iter().map(|c| c.cu).collect();
        if cus.windows(2).all(|w| w[0] == w[1]) {
            flat_groups += 1;
        }
        for (i, better) in group.critiques.iter().enumerate() {
            for worse in &group.critiques[i + 1..] {
                let (chosen, rejected) = if better.cu >= worse.cu {
                    (better, worse)
                } else {
                    (worse, better)
                };
                if chosen.cu - rejected.cu > min_gap {
                    preferences.push(json!({
                        "prompt": group.prompt,
                        "chosen": chosen.text,
                        "rejected": rejected.text,
                        "chosen_reward": chosen.cu,
                        "rejected_reward": rejected.cu,
                        "item_id": group.item_id,
                    }));
                }
            }
        }
    }
    write_jsonl(&dir.join(REWARD_FILE), &rewards)?;
    write_jsonl(&dir.join(PREFERENCE_FILE), &preferences)?;
    let direct_pairs = if groups.iter().any(|g| !g.preferences.is_empty()) {
        let direct = direct_preferences(&groups);
        write_jsonl(&dir.join(DIRECT_PREFERENCE_FILE), &direct)?;
        Some(direct.len())
    } else {
        None
    };
    Ok(Exported {
        dir,
        groups: groups.len(),
        flat_groups,
        critiques: rewards.len(),
        pairs: preferences.len(),
        direct_pairs,
    })
}

/// The critique pairs the judge compared directly and decided (a preference score other
/// than one half), the preferred critique chosen.
fn direct_preferences(groups: &[TrainingGroup]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for group in groups {
        for p in &group.preferences {
            let (Some(score), Some(a), Some(b)) =
                (p.score, group.critiques.get(p.a), group.critiques.get(p.b))
            else {
                continue;
            };
            let (chosen, rejected, score) = if score > 0.5 {
                (a, b, score)
            } else if score < 0.5 {
                (b, a, 1.0 - score)
            } else {
                continue;
            };
            out.push(json!({
                "prompt": group.prompt,
                "chosen": chosen.text,
                "rejected": rejected.text,
                "score": score,
                "item_id": group.item_id,
            }));
        }
    }
    out
}

/// Writes the lines to a temporary file and renames it into place: a reader never sees a
/// half-written export.
fn write_jsonl(path: &Path, lines: &[serde_json::Value]) -> anyhow::Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line)?);
        text.push('\n');
    }
    let partial = path.with_extension("jsonl.partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
