//! Warnings about a run's validity that are not errors (the run goes on), printed once and
//! kept in `warnings.jsonl`, from where the report carries them into `report.json`.

use rco_core::CriticSampling;
use serde::{Deserialize, Serialize};

use super::Run;

/// The warnings' file in the run directory.
pub const WARNINGS_FILE: &str = "warnings.jsonl";

/// One warning, as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunWarning {
    /// The stage that raised it.
    pub stage: String,
    pub message: String,
}

impl Run {
    /// Records a warning the first time it is raised in this run directory, and prints it.
    pub(super) fn warn(&self, stage: &str, message: String) -> anyhow::Result<()> {
        let warning = RunWarning {
            stage: stage.to_string(),
            message,
        };
        if self.warnings()?.contains(&warning) {
            return Ok(());
        }
        tracing::warn!("{stage}: {}", warning.message);
        self.store
            .append(WARNINGS_FILE, std::slice::from_ref(&warning))?;
        Ok(())
    }

    /// Every warning recorded in the run directory.
    pub fn warnings(&self) -> anyhow::Result<Vec<RunWarning>> {
        Ok(self.store.read(WARNINGS_FILE)?)
    }

    /// The RCO loss assumes critiques drawn from the reference policy; say so when the
    /// collection critic samples otherwise.
    pub(super) fn warn_about_critic_sampling(
        &self,
        sampling: Option<CriticSampling>,
    ) -> anyhow::Result<()> {
        match sampling.and_then(|s| s.deviation()) {
            Some(message) => self.warn("collect", message),
            None => Ok(()),
        }
    }
}
