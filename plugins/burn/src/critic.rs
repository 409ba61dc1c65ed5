//! The critic backed by a local burn model (`kind = "burn"`): a checkpoint directory, a
//! GGUF file or a Hugging Face directory, opened as an [`rco_lm::critic::LmCritic`]. In a
//! run, the critic keeps its own copy of the base model.

use std::sync::Arc;

use rco_core::{ConfigProblem, Critic, CriticContext, Result};
use rco_lm::checkpoint;
use rco_lm::critic::open_critic;
use rco_lm::local::model_exists;

use crate::config::BurnModelConfig;

/// The critic's section.
pub type BurnCriticConfig = BurnModelConfig;

fn build(config: &BurnCriticConfig, ctx: &CriticContext) -> Result<Arc<dyn Critic>> {
    let dir = match (&ctx.checkpoint, &config.checkpoint) {
        (Some(run_checkpoint), _) if model_exists(run_checkpoint) => run_checkpoint.clone(),
        // A run keeps its own copy of a base model file (GGUF) too.
        (Some(run_checkpoint), Some(source))
            if ctx.create_checkpoint && ctx.resolve(source).is_file() =>
        {
            let target = run_checkpoint.join("model.gguf");
            std::fs::create_dir_all(run_checkpoint)
                .map_err(|e| rco_core::Error::io(run_checkpoint, e))?;
            let partial = run_checkpoint.join("model.gguf.partial");
            std::fs::copy(ctx.resolve(source), &partial)
                .map_err(|e| rco_core::Error::io(ctx.resolve(source), e))?;
            std::fs::rename(&partial, &target).map_err(|e| rco_core::Error::io(&target, e))?;
            run_checkpoint.clone()
        }
        // Outside a run, a model file is read where it is.
        (None, Some(source)) if ctx.resolve(source).is_file() => ctx.resolve(source),
        (Some(run_checkpoint), Some(source)) if ctx.create_checkpoint => {
            // A run keeps its own copy of the base critic, so that it stays reproducible.
            checkpoint::copy(&ctx.resolve(source), run_checkpoint)
                .map_err(|e| rco_core::Error::plugin(format!("critic `{}`", ctx.name), e))?;
            run_checkpoint.clone()
        }
        (None, Some(source)) => ctx.resolve(source),
        (Some(run_checkpoint), _) => {
            return Err(rco_core::Error::plugin(
                format!("critic `{}`", ctx.name),
                format!(
                    "no checkpoint at {} and no `{}.checkpoint` in the config",
                    run_checkpoint.display(),
                    ctx.name
                ),
            ))
        }
        (None, None) => {
            return Err(rco_core::Error::Config(vec![ConfigProblem::new(
                format!("{}.checkpoint", ctx.name),
                "a burn critic needs a checkpoint directory",
            )]))
        }
    };
    open_critic(&ctx.name, &dir, config.device, config.settings())
}

rco_core::register_plugin! {
    role: Critic,
    kind: "burn",
    summary: "A critic sampled from a burn language-model checkpoint (CPU, WGPU or CUDA)",
    example: "kind = \"burn\"\ncheckpoint = \"runs/quickstart/critic/rco\"\ndevice = \"cpu\"\nsampling = { temperature = 1.0, max_tokens = 16 }\n",
    config: BurnCriticConfig,
    build: build,
}
