//! A critic backed by a burn language model checkpoint (`kind = "burn"`).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::registry::{parse_section, Validate};
use rco_core::{
    BuildContext, ConfigProblem, Critic, Critique, CritiqueRequest, LogProbRequest, Result,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::device::DeviceSpec;
use crate::engine::Engine;
use crate::lm::SamplingConfig;

/// A local model in burn: a checkpoint directory (`model.json` + weights) or a Llama GGUF
/// file, with how it samples. The `burn` critic, actor and judge share this section.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BurnModelConfig {
    /// A checkpoint directory or a `.gguf` file; in a run, the critic's own checkpoints are
    /// used when this is left out.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// How text is sampled.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// Most sequences decoded together.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Wrap prompts in the model's chat template (subword models; ignored by character models).
    #[serde(default = "default_chat")]
    pub chat: bool,
    /// Completions are cut before the first of these strings.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Judges only: read the verdict from the model's probabilities of `A`, `B` and `C` as
    /// the next token after the pairwise answer prefix (which must then be set), instead of
    /// sampling an answer. Each judgement then carries `prob_a` = P(A) + P(C) / 2, which
    /// `reward.mode = "soft"` averages over both orders: a judge that prefers one slot still
    /// tells the answers apart by how much.
    #[serde(default)]
    pub verdict_probabilities: bool,
}

/// The critic's section.
pub type BurnCriticConfig = BurnModelConfig;

fn default_chat() -> bool {
    true
}

pub fn default_device() -> String {
    "cpu".into()
}

pub fn default_batch() -> usize {
    64
}

impl Validate for BurnModelConfig {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut p: Vec<ConfigProblem> = self
            .sampling
            .problems()
            .into_iter()
            .map(|p| p.under("sampling"))
            .collect();
        if let Err(e) = DeviceSpec::parse(&self.device) {
            p.push(ConfigProblem::new("device", e.to_string()));
        }
        if self.batch_size == 0 {
            p.push(ConfigProblem::new("batch_size", "must be at least 1"));
        }
        p
    }
}

/// A critic over a loaded model on backend `B`.
pub struct LmCritic<B: Backend> {
    name: String,
    engine: Engine<B>,
}

impl<B: Backend> LmCritic<B> {
    pub fn new(name: &str, engine: Engine<B>) -> Self {
        Self {
            name: name.to_string(),
            engine,
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("critic `{}` (burn)", self.name), e)
    }
}

#[async_trait]
impl<B: Backend> Critic for LmCritic<B> {
    fn max_batch_size(&self) -> usize {
        self.engine.batch_size
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        let mut prompts = Vec::new();
        let mut seeds = Vec::new();
        for request in requests {
            for j in 0..request.n {
                prompts.push(request.prompt.clone());
                seeds.push(rco_core::seed::derive_seed(
                    request.seed,
                    &["critique", &j.to_string()],
                ));
            }
        }
        let texts = self
            .engine
            .generate(&prompts, &seeds)
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String)> = prompts.into_iter().zip(texts.iter().cloned()).collect();
        let log_probs = self.engine.log_probs(&rows).map_err(|e| self.err(e))?;
        let mut flat = texts.into_iter().zip(log_probs).map(|(text, lp)| Critique {
            text,
            ref_logprob: Some(lp),
            truncated: false,
        });
        Ok(requests
            .iter()
            .map(|r| flat.by_ref().take(r.n).collect())
            .collect())
    }

    async fn log_probs(&self, requests: &[LogProbRequest]) -> Result<Vec<f64>> {
        let rows: Vec<(String, String)> = requests
            .iter()
            .map(|r| (r.prompt.clone(), r.completion.clone()))
            .collect();
        self.engine.log_probs(&rows).map_err(|e| self.err(e))
    }
}

/// Opens a checkpoint as a critic on the device a config names.
pub fn open_critic(
    name: &str,
    dir: &std::path::Path,
    device: &str,
    sampling: SamplingConfig,
    batch_size: usize,
) -> Result<Arc<dyn Critic>> {
    let model = BurnModelConfig {
        checkpoint: Some(dir.to_path_buf()),
        device: device.to_string(),
        sampling,
        batch_size,
        chat: true,
        stop: Vec::new(),
        verdict_probabilities: false,
    };
    open_critic_with(name, dir, &model)
}

/// Opens a model (checkpoint directory or GGUF file) as a critic with a section's settings.
pub fn open_critic_with(
    name: &str,
    path: &std::path::Path,
    config: &BurnModelConfig,
) -> Result<Arc<dyn Critic>> {
    let spec = DeviceSpec::parse(&config.device)
        .and_then(DeviceSpec::compiled)
        .map_err(|e| rco_core::Error::plugin(format!("critic `{name}`"), e))?;
    crate::with_backend!(spec, |B, device| {
        Engine::<B>::from_config(path, device, config)
            .map(|engine| Arc::new(LmCritic::new(name, engine)) as Arc<dyn Critic>)
            .map_err(|e| rco_core::Error::plugin(format!("critic `{name}` (burn)"), e))
    })
}

fn build(value: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Critic>> {
    let config: BurnCriticConfig = parse_section(value)?;
    let dir = match (&ctx.checkpoint, &config.checkpoint) {
        (Some(run_checkpoint), _) if crate::engine::model_exists(run_checkpoint) => {
            run_checkpoint.clone()
        }
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
    open_critic_with(&ctx.name, &dir, &config)
}

rco_core::register_plugin! {
    role: Critic,
    kind: "burn",
    summary: "A critic sampled from a burn language-model checkpoint (CPU, WGPU or CUDA)",
    example: "kind = \"burn\"\ncheckpoint = \"runs/quickstart/critic/rco\"\ndevice = \"cpu\"\nsampling = { temperature = 1.0, max_tokens = 16 }\n",
    config: BurnCriticConfig,
    build: build,
}
