//! Building the run's plugins from their parsed sections. The runner knows roles, never
//! plugin kinds: what differs between plugins is in their build context.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use rco_core::{
    Actor, BuildContext, Critic, CriticContext, Dataset, Judge, RewardEstimator, TrainedCritic,
    Trainer, TrainerContext,
};

use super::Run;

impl Run {
    /// The context every plugin of the run is built with.
    fn context(&self, name: &str) -> BuildContext {
        let mut ctx = BuildContext::new(name, self.loaded.config.seed);
        ctx.base_dir = self.loaded.base_dir();
        ctx.run_dir = Some(self.store.dir().to_path_buf());
        ctx.templates = self.loaded.config.templates.clone();
        ctx.progress = self.progress.clone();
        ctx.usage = self.usage.clone();
        ctx.metrics = self.metrics.clone();
        ctx
    }

    /// The checkpoint directory of a critic variant.
    pub fn critic_dir(&self, variant: &str) -> PathBuf {
        self.store.path("critic").join(variant)
    }

    /// A critic variant: `base` (created in the run directory if the plugin can) or `rco`
    /// (what training wrote, run the way the training summary says).
    pub fn critic(&self, variant: &str) -> anyhow::Result<Arc<dyn Critic>> {
        let mut ctx = CriticContext::new(self.context("critic"));
        ctx.checkpoint = Some(self.critic_dir(variant));
        // Only the base critic may be created; the trained one must come from training.
        ctx.create_checkpoint = variant == "base";
        if variant != "base" {
            if let TrainedCritic::Served { device } = self.summary_of(variant)?.trained_critic {
                ctx.endpoint = Some(self.serve_trained_critic(&self.critic_dir(variant), &device)?);
            }
        }
        Ok(self.loaded.sections.critic.build(&ctx)?)
    }

    /// A critic of `[eval.critics]`, built for one evaluation actor (which it is given).
    pub fn eval_critic(
        &self,
        name: &str,
        actor: Arc<dyn Actor>,
    ) -> anyhow::Result<Arc<dyn Critic>> {
        let section = self
            .loaded
            .sections
            .eval_critics
            .get(name)
            .ok_or_else(|| anyhow!("no critic named `{name}` under [eval.critics]"))?;
        let mut ctx = CriticContext::new(self.context(&format!("eval.critics.{name}")));
        ctx.actor = Some(actor);
        Ok(section.build(&ctx)?)
    }

    pub fn actor(&self, name: &str) -> anyhow::Result<Arc<dyn Actor>> {
        let key = format!("actors.{name}");
        let section = self
            .loaded
            .sections
            .actors
            .get(name)
            .ok_or_else(|| anyhow!("no actor named `{name}`"))?;
        Ok(section.build(&self.context(&key))?)
    }

    /// The judge, asking unreadable verdicts again `reask_invalid` times.
    pub fn judge(&self) -> anyhow::Result<Arc<dyn Judge>> {
        Ok(Arc::new(rco_core::judge::ReaskInvalid::new(
            self.loaded.sections.judge.build(&self.context("judge"))?,
            self.loaded.config.reask_invalid,
        )))
    }

    /// The judge of direct critique comparisons: `[critique_judge]`, else the judge.
    pub fn critique_judge(&self) -> anyhow::Result<Arc<dyn Judge>> {
        match &self.loaded.sections.critique_judge {
            Some(section) => Ok(Arc::new(rco_core::judge::ReaskInvalid::new(
                section.build(&self.context("critique_judge"))?,
                self.loaded.config.reask_invalid,
            ))),
            None => self.judge(),
        }
    }

    pub fn reward(&self) -> anyhow::Result<Arc<dyn RewardEstimator>> {
        Ok(self.loaded.sections.reward.build(&self.context("reward"))?)
    }

    pub(super) fn dataset(&self) -> anyhow::Result<Arc<dyn Dataset>> {
        Ok(self.loaded.sections.data.build(&self.context("data"))?)
    }

    /// The trainer of a round: round 1 starts from the base critic and writes the trained
    /// one (`critic/rco`); a later round starts from the critic of the round before.
    pub(super) fn trainer_for(&self, round: usize) -> anyhow::Result<Box<dyn Trainer>> {
        let ctx = TrainerContext {
            common: self.context("trainer"),
            base_checkpoint: self.critic_dir(&self.round_name(round - 1)),
            output: self.critic_dir(&self.round_name(round)),
            critic_section: self.loaded.config.critic.clone(),
        };
        Ok(self.loaded.sections.trainer.build(&ctx)?)
    }

    /// The trainer of a baseline: from the base critic to `critic/NAME`.
    pub(super) fn baseline_trainer(&self, name: &str) -> anyhow::Result<Box<dyn Trainer>> {
        let section = self
            .loaded
            .sections
            .baselines
            .get(name)
            .ok_or_else(|| anyhow!("no trainer named `{name}` under [baselines]"))?;
        let ctx = TrainerContext {
            common: self.context(&format!("baselines.{name}")),
            base_checkpoint: self.critic_dir("base"),
            output: self.critic_dir(name),
            critic_section: self.loaded.config.critic.clone(),
        };
        Ok(section.build(&ctx)?)
    }
}
