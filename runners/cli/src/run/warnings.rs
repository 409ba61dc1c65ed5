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

    /// A judge that reads its verdict probabilities (`verdict_probabilities = true`) under
    /// the `cu` reward's hard mode: a pair whose two orders disagree then scores exactly 1/2
    /// whatever the probabilities, and a judge that leans to one slot leaves most pairs
    /// there. Say so, naming the sections.
    pub(super) fn warn_about_unused_probabilities(&self) -> anyhow::Result<()> {
        let config = &self.loaded.config;
        if let Some(message) = unused_probabilities(
            &config.judge,
            config.critique_judge.as_ref(),
            config.collect.critique_comparisons,
            &config.reward,
        ) {
            self.warn("collect", message)?;
        }
        Ok(())
    }
}

/// The warning of [`Run::warn_about_unused_probabilities`], if it applies.
fn unused_probabilities(
    judge: &serde_json::Value,
    critique_judge: Option<&serde_json::Value>,
    critique_comparisons: bool,
    reward: &serde_json::Value,
) -> Option<String> {
    let hard = reward["kind"] == "cu" && reward["mode"].as_str().unwrap_or("hard") == "hard";
    if !hard {
        return None;
    }
    let reads = |section: &serde_json::Value| section["verdict_probabilities"] == true;
    let mut sections = Vec::new();
    if reads(judge) {
        sections.push("[judge]");
    }
    if critique_comparisons && critique_judge.is_some_and(reads) {
        sections.push("[critique_judge]");
    }
    if sections.is_empty() {
        return None;
    }
    Some(format!(
        "{} read(s) the verdict's probabilities, but [reward] mode = \"hard\" scores a pair whose two orders disagree as exactly 1/2 whatever they are; set mode = \"soft\" to average the two orders' probabilities",
        sections.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::unused_probabilities;
    use serde_json::json;

    #[test]
    fn probabilities_under_hard_mode_are_named() {
        let reads = json!({"kind": "openai", "verdict_probabilities": true});
        let plain = json!({"kind": "code"});
        let hard = json!({"kind": "cu"});
        let soft = json!({"kind": "cu", "mode": "soft"});
        let both = unused_probabilities(&reads, Some(&reads), true, &hard).unwrap();
        assert!(both.starts_with("[judge] and [critique_judge]"), "{both}");
        let critique = unused_probabilities(&plain, Some(&reads), true, &hard).unwrap();
        assert!(critique.starts_with("[critique_judge] read"), "{critique}");
        assert!(critique.contains("mode = \"soft\""), "{critique}");
        // No comparisons made, soft mode, or no probabilities read: nothing to say.
        assert_eq!(
            unused_probabilities(&plain, Some(&reads), false, &hard),
            None
        );
        assert_eq!(
            unused_probabilities(&reads, Some(&reads), true, &soft),
            None
        );
        assert_eq!(unused_probabilities(&plain, None, true, &hard), None);
    }
}
