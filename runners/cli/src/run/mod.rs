//! A run: the stages (collect → train → eval → report) over a crash-safe run directory.
//! Every unit of work draws its randomness from seeds derived from the run seed and the
//! unit's identity, and is committed with one append, so a killed run resumes where it
//! stopped and ends with the same results as an uninterrupted one.
//!
//! One file per part of the flow: [`build`] makes the plugins, [`pass`] is one critique →
//! refine → judge pass over a batch, [`batches`] the loop collection and evaluation share,
//! [`collect`], [`train`] (with the hand-off of the trained critic), [`eval`] and
//! [`report`] the stages, [`records`] the run directory's tables.

mod batches;
mod build;
mod collect;
mod eval;
mod items;
mod manifest;
mod metrics;
mod pass;
pub mod records;
mod rejudge;
mod report;
mod respond;
mod train;
mod warnings;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rco_core::store::RunStore;
use rco_core::usage::{UsageLedger, UsageTable};
use rco_core::ProgressFactory;

use crate::config::Loaded;

pub use collect::{DETAIL_FILES, GROUPS_FILE};
pub use eval::EVAL_FILE;
pub use items::ITEMS_FILE;
pub use manifest::MANIFEST_FILE;
pub use metrics::{RunMetrics, METRICS_FILE};
pub use records::{EvalRecord, InitialRecord, Manifest, StoredItem};
pub use rejudge::Agreement;
pub use respond::INITIAL_FILE;
pub use train::TRAIN_SUMMARY_FILE;
pub use warnings::{RunWarning, WARNINGS_FILE};

/// The critic variants a run with the `rco` trainer evaluates: the base critic and the
/// trained one. A run names its trained critic after its trainer's kind
/// ([`Run::critic_names`]); this constant is the `rco` trainer's case.
pub const CRITICS: [&str; 2] = ["base", "rco"];

/// A round's name of a run-directory file: round 1 keeps `name`; a later round inserts
/// `-round-N` before the extension (`groups-round-2.jsonl`).
pub fn round_file(name: &str, round: usize) -> String {
    if round <= 1 {
        return name.to_string();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-round-{round}.{ext}"),
        None => format!("{name}-round-{round}"),
    }
}

/// A baseline's name of a run-directory file: `train_summary.json` of baseline `sft` is
/// `train_summary-sft.json`.
pub fn baseline_file(name: &str, baseline: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}-{baseline}.{ext}"),
        None => format!("{name}-{baseline}"),
    }
}

/// The ledger's file in the run directory.
pub const USAGE_FILE: &str = "usage.json";

/// One experiment's run directory, with the config that made it.
pub struct Run {
    pub loaded: Loaded,
    pub store: RunStore,
    pub progress: Arc<dyn ProgressFactory>,
    /// Calls, tokens and cost of remote plugins, saved in `usage.json`.
    pub usage: Arc<UsageLedger>,
    /// Per-step numbers, appended to `metrics.jsonl`.
    pub metrics: Arc<dyn rco_core::Metrics>,
    /// Continue in a directory whose manifest does not match (another config, changed data,
    /// or records without a manifest), rewriting the manifest for this config.
    pub force: bool,
    /// Servers this run started (a trained critic that is asked over HTTP); stopped when
    /// the run is dropped.
    served: std::sync::Mutex<Vec<crate::serve::Child>>,
}

impl Run {
    /// The trained critic's name: the trainer's kind (`rco`, `sft`, ...). Its checkpoint is
    /// `critic/NAME/` and its rows in `eval.jsonl` and `report.json` carry the name.
    pub fn trained_name(&self) -> String {
        self.loaded
            .resolved
            .pointer("/trainer/kind")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("rco")
            .to_string()
    }

    /// The critics a run evaluates: `base`, then the trained one.
    pub fn critic_names(&self) -> [String; 2] {
        ["base".to_string(), self.trained_name()]
    }

    /// Every critic evaluation runs: [`Run::critic_names`], the critics of later rounds
    /// (`rco-round-2`, ...), the baselines' (`[baselines]`), the critics of
    /// `[eval.critics]` by name (as [`crate::config::evaluated_critic_names`], which the
    /// config check shares), then the draws of `[eval] draws` (`base-draw-2`, ...).
    pub fn evaluated_critics(&self) -> Vec<String> {
        let mut names = crate::config::evaluated_critic_names(
            &self.trained_name(),
            self.rounds(),
            self.baseline_names()
                .into_iter()
                .chain(self.loaded.sections.eval_critics.keys().cloned()),
        );
        for (name, &count) in &self.loaded.config.eval.draws {
            names.extend((2..=count).map(|k| crate::config::draw_name(name, k)));
        }
        names
    }

    /// The critic an evaluated critic's name stands for, and which draw of its critiques
    /// it is: `(name, 1)` for a critic's own evaluation, `("base", 2)` for `base-draw-2`.
    pub fn drawn_critic<'a>(&'a self, name: &'a str) -> (&'a str, usize) {
        for (critic, &count) in &self.loaded.config.eval.draws {
            for k in 2..=count {
                if crate::config::draw_name(critic, k) == name {
                    return (critic, k);
                }
            }
        }
        (name, 1)
    }

    /// The names of `[baselines]`, each a trainer trained on round 1's groups.
    pub fn baseline_names(&self) -> Vec<String> {
        self.loaded.sections.baselines.keys().cloned().collect()
    }

    /// Rounds of iterative RCO (`rounds`, at least 1).
    pub fn rounds(&self) -> usize {
        self.loaded.config.rounds.max(1)
    }

    /// The critic round `round` trains (rounds count from 1): the trainer's kind, then
    /// `KIND-round-2`, ...; round 0 is the base critic.
    pub fn round_name(&self, round: usize) -> String {
        crate::config::round_name(&self.trained_name(), round)
    }

    /// Opens (or creates) a run directory for a config; a directory made with another
    /// config is refused.
    pub fn open(
        loaded: Loaded,
        out: &Path,
        progress: Arc<dyn ProgressFactory>,
    ) -> anyhow::Result<Self> {
        Self::open_with(loaded, out, progress, false)
    }

    /// [`Run::open`]; with `force`, a directory whose manifest does not match is adopted for
    /// this config (its manifest rewritten) instead of refused.
    pub fn open_with(
        loaded: Loaded,
        out: &Path,
        progress: Arc<dyn ProgressFactory>,
        force: bool,
    ) -> anyhow::Result<Self> {
        let store = RunStore::open_with(out, loaded.config.store.durability)?;
        let usage = Arc::new(UsageLedger::new(
            loaded.config.prices.clone(),
            loaded.config.budget,
        ));
        let metrics = Arc::new(RunMetrics::new(store.path(METRICS_FILE)));
        let run = Self {
            loaded,
            store,
            progress,
            usage,
            metrics,
            force,
            served: Default::default(),
        };
        run.check_manifest()?;
        let saved = run.store.path(USAGE_FILE);
        if let Ok(bytes) = std::fs::read(&saved) {
            let table: UsageTable = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a usage ledger", saved.display()))?;
            run.usage.restore(table);
        }
        Ok(run)
    }

    /// Writes the ledger (atomically) to `usage.json`.
    pub fn save_usage(&self) -> anyhow::Result<()> {
        self.store
            .write_file(USAGE_FILE, &serde_json::to_vec_pretty(&self.usage.table())?)?;
        Ok(())
    }

    /// Runs a stage with the ledger charging it, and saves the ledger however it ends.
    async fn charged<T>(
        &self,
        stage: &str,
        work: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.usage.set_stage(stage);
        let result = work.await;
        let saved = self.save_usage();
        let value = result?;
        saved?;
        Ok(value)
    }
}
