//! Building the run's plugins from their config sections. The runner knows roles, never
//! plugin kinds: what differs between plugins is in their build context.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use rco_core::registry::{self, Builder, Role};
use rco_core::{
    Actor, BuildContext, Critic, Dataset, Judge, RewardEstimator, TrainedCritic, Trainer,
};
use serde_json::Value;

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
        ctx.critic_section = Some(self.loaded.config.critic.clone());
        ctx
    }

    fn descriptor(
        &self,
        role: Role,
        key: &str,
        section: &Value,
    ) -> anyhow::Result<&'static rco_core::PluginDescriptor> {
        registry::find(role, section).map_err(|p| anyhow!("{}", p.under(key)))
    }

    /// The checkpoint directory of a critic variant.
    pub fn critic_dir(&self, variant: &str) -> PathBuf {
        self.store.path("critic").join(variant)
    }

    /// A critic variant: `base` (created in the run directory if the plugin can) or `rco`
    /// (what training wrote, run the way the training summary says).
    pub fn critic(&self, variant: &str) -> anyhow::Result<Arc<dyn Critic>> {
        let section = &self.loaded.config.critic;
        let mut ctx = self.context("critic");
        ctx.checkpoint = Some(self.critic_dir(variant));
        // Only the base critic may be created; the trained one must come from training.
        ctx.create_checkpoint = variant == "base";
        if variant != "base" {
            if let TrainedCritic::Served { device } = self.train_summary()?.trained_critic {
                ctx.endpoint = Some(self.serve_trained_critic(&self.critic_dir(variant), &device)?);
            }
        }
        let Builder::Critic(build) = &self.descriptor(Role::Critic, "critic", section)?.build
        else {
            return Err(not_a("critic", Role::Critic));
        };
        Ok(build(section, &ctx)?)
    }

    pub fn actor(&self, name: &str) -> anyhow::Result<Arc<dyn Actor>> {
        let key = format!("actors.{name}");
        let section = self
            .loaded
            .config
            .actors
            .get(name)
            .ok_or_else(|| anyhow!("no actor named `{name}`"))?;
        let Builder::Actor(build) = &self.descriptor(Role::Actor, &key, section)?.build else {
            return Err(not_a(&key, Role::Actor));
        };
        Ok(build(section, &self.context(&key))?)
    }

    /// The judge, asking unreadable verdicts again `reask_invalid` times.
    pub fn judge(&self) -> anyhow::Result<Arc<dyn Judge>> {
        let section = &self.loaded.config.judge;
        let Builder::Judge(build) = &self.descriptor(Role::Judge, "judge", section)?.build else {
            return Err(not_a("judge", Role::Judge));
        };
        Ok(Arc::new(rco_core::judge::ReaskInvalid::new(
            build(section, &self.context("judge"))?,
            self.loaded.config.reask_invalid,
        )))
    }

    pub fn reward(&self) -> anyhow::Result<Arc<dyn RewardEstimator>> {
        let section = &self.loaded.config.reward;
        let Builder::RewardEstimator(build) = &self
            .descriptor(Role::RewardEstimator, "reward", section)?
            .build
        else {
            return Err(not_a("reward", Role::RewardEstimator));
        };
        Ok(build(section, &self.context("reward"))?)
    }

    pub(super) fn dataset(&self) -> anyhow::Result<Arc<dyn Dataset>> {
        let section = &self.loaded.config.data;
        let Builder::Dataset(build) = &self.descriptor(Role::Dataset, "data", section)?.build
        else {
            return Err(not_a("data", Role::Dataset));
        };
        Ok(build(section, &self.context("data"))?)
    }

    /// The trainer, starting from the base critic and writing the `rco` critic.
    pub(super) fn trainer(&self) -> anyhow::Result<Box<dyn Trainer>> {
        let section = &self.loaded.config.trainer;
        let mut ctx = self.context("trainer");
        ctx.checkpoint = Some(self.critic_dir("base"));
        ctx.output = Some(self.critic_dir("rco"));
        let Builder::Trainer(build) = &self.descriptor(Role::Trainer, "trainer", section)?.build
        else {
            return Err(not_a("trainer", Role::Trainer));
        };
        Ok(build(section, &ctx)?)
    }
}

fn not_a(key: &str, role: Role) -> anyhow::Error {
    anyhow!("`{key}` names a plugin that is not a {}", role.name())
}
