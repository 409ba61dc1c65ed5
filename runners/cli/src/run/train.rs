//! Training, and the hand-off of the trained critic to evaluation: the trainer reads the
//! committed groups, writes `critic/rco`, and says in `train_summary.json` how that critic
//! is run ([`TrainedCritic`]); evaluation builds the trained critic accordingly.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use rco_core::{TrainSummary, TrainedCritic, TrainingGroup};

use super::collect::GROUPS_FILE;
use super::Run;

/// The training stage's commit record.
pub const TRAIN_SUMMARY_FILE: &str = "train_summary.json";

impl Run {
    /// Trains the critic, once: a finished training stage is not run again.
    pub async fn train(&self) -> anyhow::Result<TrainSummary> {
        self.train_round(1).await
    }

    /// The later rounds of iterative RCO (`rounds`), each collected with the critic the
    /// round before trained and trained from it; finished rounds are not run again.
    pub async fn later_rounds(&self) -> anyhow::Result<Vec<TrainSummary>> {
        let mut summaries = Vec::new();
        for round in 2..=self.rounds() {
            if let TrainedCritic::Served { .. } = self.train_summary()?.trained_critic {
                bail!("`rounds` > 1 needs a critic the runner can load itself; this run's trained critic is served (a critic on a server trained from `base_model`)");
            }
            self.collect_round(round).await?;
            summaries.push(self.train_round(round).await?);
        }
        Ok(summaries)
    }

    /// Trains every baseline of `[baselines]` on round 1's groups; finished ones are not
    /// trained again.
    pub async fn train_baselines(&self) -> anyhow::Result<Vec<(String, TrainSummary)>> {
        let mut summaries = Vec::new();
        for name in self.baseline_names() {
            let summary_file = super::baseline_file(TRAIN_SUMMARY_FILE, &name);
            let summary = if self.store.path(&summary_file).is_file() {
                self.summary_of(&name)?
            } else {
                let groups = self.finished_groups(1)?;
                let mut trainer = self.baseline_trainer(&name)?;
                let bar = self.progress.start(&format!("train ({name})"), 0);
                let summary = trainer.train(&groups, bar.clone()).await?;
                bar.finish();
                self.store
                    .write_file(&summary_file, &serde_json::to_vec_pretty(&summary)?)?;
                summary
            };
            summaries.push((name, summary));
        }
        Ok(summaries)
    }

    /// The training summary of a trained critic: the run's trainer's, a later round's, or a
    /// baseline's.
    pub fn summary_of(&self, critic: &str) -> anyhow::Result<TrainSummary> {
        let file = if self.loaded.sections.baselines.contains_key(critic) {
            super::baseline_file(TRAIN_SUMMARY_FILE, critic)
        } else {
            let round = (2..=self.rounds())
                .find(|&r| self.round_name(r) == critic)
                .unwrap_or(1);
            super::round_file(TRAIN_SUMMARY_FILE, round)
        };
        self.read_summary(&file, &format!(" `{critic}`"))
    }

    /// A round's collected groups with critiques, once its collection is finished.
    fn finished_groups(&self, round: usize) -> anyhow::Result<Vec<TrainingGroup>> {
        let items = self.items("train")?;
        let mut groups: Vec<TrainingGroup> =
            self.store.read(&super::round_file(GROUPS_FILE, round))?;
        // Groups written before they recorded which critiques were cut at the critic's token
        // limit: the critiques' own records say.
        let critiques: Vec<super::records::CritiqueRecord> = self
            .store
            .read(&super::round_file(super::DETAIL_FILES[0], round))
            .unwrap_or_default();
        let truncated: HashSet<(&str, &str)> = critiques
            .iter()
            .filter(|c| c.truncated)
            .map(|c| (c.item_id.as_str(), c.text.as_str()))
            .collect();
        for group in &mut groups {
            for critique in &mut group.critiques {
                critique.truncated |=
                    truncated.contains(&(group.item_id.as_str(), critique.text.as_str()));
            }
        }
        let done: HashSet<&str> = groups.iter().map(|g| g.item_id.as_str()).collect();
        // Items left out of collection because their first answer was already correct.
        let left_out = self.left_out_of_collection()?;
        let wanted = items.iter().filter(|i| !left_out.contains(&i.id)).count();
        if items
            .iter()
            .any(|i| !done.contains(i.id.as_str()) && !left_out.contains(&i.id))
        {
            bail!(
                "the collection in {} is not finished ({} of {} items); run `rco collect` first",
                self.store.dir().display(),
                done.len(),
                wanted
            );
        }
        Ok(groups
            .into_iter()
            .filter(|g| !g.critiques.is_empty())
            .collect())
    }

    async fn train_round(&self, round: usize) -> anyhow::Result<TrainSummary> {
        let summary_file = super::round_file(TRAIN_SUMMARY_FILE, round);
        if self.store.path(&summary_file).is_file() {
            return self.round_summary(round);
        }
        let groups = self.finished_groups(round)?;
        let mut trainer = self.trainer_for(round)?;
        let label = match round {
            1 => "train".to_string(),
            r => format!("train (round {r})"),
        };
        let bar = self.progress.start(&label, 0);
        let summary = trainer.train(&groups, bar.clone()).await?;
        bar.finish();
        self.store
            .write_file(&summary_file, &serde_json::to_vec_pretty(&summary)?)?;
        Ok(summary)
    }

    /// The summary of the finished training stage.
    pub fn train_summary(&self) -> anyhow::Result<TrainSummary> {
        self.round_summary(1)
    }

    /// The summary of a finished round's training.
    pub fn round_summary(&self, round: usize) -> anyhow::Result<TrainSummary> {
        self.read_summary(&super::round_file(TRAIN_SUMMARY_FILE, round), "")
    }

    /// A training summary file of the run directory; `what` names the critic in the error.
    fn read_summary(&self, file: &str, what: &str) -> anyhow::Result<TrainSummary> {
        let path = self.store.path(file);
        let bytes = std::fs::read(&path).map_err(|_| {
            anyhow!(
                "{} has no trained critic{what} yet; run `rco train` first",
                self.store.dir().display()
            )
        })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a training summary", path.display()))
    }

    /// Starts `rco serve` on a trained critic for the rest of the run and returns its
    /// endpoint.
    pub(super) fn serve_trained_critic(&self, dir: &Path, device: &str) -> anyhow::Result<String> {
        let child = crate::serve::spawn_self(dir, device)?;
        let url = child.url.clone();
        self.served
            .lock()
            .map_err(|_| anyhow!("the list of served models is poisoned"))?
            .push(child);
        Ok(url)
    }
}
