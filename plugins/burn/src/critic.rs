//! A critic backed by a burn language model checkpoint (`kind = "burn"`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
use crate::lm::{completion_log_probs, sample, SamplingConfig, StopTokens};
use crate::model::{CausalLm, TinyLm};
use crate::tokenizer::Tokenizer;
use crate::LmError;

/// A critic that samples from a burn checkpoint directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BurnCriticConfig {
    /// Checkpoint directory (`model.json` + `model.mpk`); in a run, the run's own critic
    /// checkpoints are used when this is left out.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default = "default_device")]
    pub device: String,
    /// How critiques are sampled.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// Most sequences decoded together.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

pub fn default_device() -> String {
    "cpu".into()
}

pub fn default_batch() -> usize {
    64
}

impl Validate for BurnCriticConfig {
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
    model: Mutex<TinyLm<B>>,
    tokenizer: Tokenizer,
    sampling: SamplingConfig,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> LmCritic<B> {
    pub fn load(
        name: &str,
        dir: &std::path::Path,
        device: B::Device,
        sampling: SamplingConfig,
        batch_size: usize,
    ) -> Result<Self, LmError> {
        let (spec, model) = checkpoint::load::<B>(dir, &device)?;
        Ok(Self {
            name: name.to_string(),
            model: Mutex::new(model),
            tokenizer: spec.tokenizer,
            sampling,
            batch_size: batch_size.max(1),
            device,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(format!("critic `{}` (burn)", self.name), e)
    }

    fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.tokenizer.bos()];
        ids.extend(self.tokenizer.encode(prompt).map_err(|e| self.err(e))?);
        Ok(ids)
    }

    fn scored_rows(&self, requests: &[LogProbRequest]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        let model_len = self
            .model
            .lock()
            .map_err(|_| self.err("model lock poisoned"))?
            .max_len();
        requests
            .iter()
            .map(|r| {
                let prompt = self.prompt_ids(&r.prompt)?;
                let mut completion = self
                    .tokenizer
                    .encode(&r.completion)
                    .map_err(|e| self.err(e))?;
                completion.push(self.tokenizer.eos());
                if prompt.len() + completion.len() > model_len {
                    return Err(self.err(format!(
                        "prompt and completion take {} tokens; the model reads at most {model_len}",
                        prompt.len() + completion.len()
                    )));
                }
                Ok((prompt, completion))
            })
            .collect()
    }
}

#[async_trait]
impl<B: Backend> Critic for LmCritic<B> {
    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        let mut prompts = Vec::new();
        let mut seeds = Vec::new();
        for request in requests {
            let ids = self.prompt_ids(&request.prompt)?;
            for j in 0..request.n {
                prompts.push(ids.clone());
                seeds.push(rco_core::seed::derive_seed(
                    request.seed,
                    &["critique", &j.to_string()],
                ));
            }
        }
        let mut completions = Vec::with_capacity(prompts.len());
        {
            let model = self
                .model
                .lock()
                .map_err(|_| self.err("model lock poisoned"))?;
            for (chunk, chunk_seeds) in prompts
                .chunks(self.batch_size)
                .zip(seeds.chunks(self.batch_size))
            {
                completions.extend(sample(
                    &*model,
                    chunk,
                    chunk_seeds,
                    &self.sampling,
                    &StopTokens::of(&self.tokenizer),
                    &self.device,
                ));
            }
        }
        let texts: Vec<String> = completions
            .iter()
            .map(|c| self.tokenizer.decode(c))
            .collect();
        let scoring: Vec<LogProbRequest> = requests
            .iter()
            .flat_map(|r| std::iter::repeat_n(r.prompt.clone(), r.n))
            .zip(&texts)
            .map(|(prompt, text)| LogProbRequest {
                prompt,
                completion: text.clone(),
            })
            .collect();
        let log_probs = self.log_probs(&scoring).await?;
        let mut flat = texts.into_iter().zip(log_probs).map(|(text, lp)| Critique {
            text,
            ref_logprob: Some(lp),
        });
        Ok(requests
            .iter()
            .map(|r| flat.by_ref().take(r.n).collect())
            .collect())
    }

    async fn log_probs(&self, requests: &[LogProbRequest]) -> Result<Vec<f64>> {
        let rows = self.scored_rows(requests)?;
        let model = self
            .model
            .lock()
            .map_err(|_| self.err("model lock poisoned"))?;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.batch_size) {
            let values = completion_log_probs(&*model, chunk, &self.device)
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| self.err(format!("{e:?}")))?;
            out.extend(values);
        }
        Ok(out)
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
    let spec = DeviceSpec::parse(device)
        .and_then(DeviceSpec::compiled)
        .map_err(|e| rco_core::Error::plugin(format!("critic `{name}`"), e))?;
    let critic: Result<Arc<dyn Critic>> = crate::with_backend!(spec, |B, device| {
        LmCritic::<B>::load(name, dir, device, sampling, batch_size)
            .map(|c| Arc::new(c) as Arc<dyn Critic>)
            .map_err(|e| rco_core::Error::plugin(format!("critic `{name}`"), e))
    });
    critic
}

fn build(value: &serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Critic>> {
    let config: BurnCriticConfig = parse_section(value)?;
    let dir = match (&ctx.checkpoint, &config.checkpoint) {
        (Some(run_checkpoint), _) if checkpoint::exists(run_checkpoint) => run_checkpoint.clone(),
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
    open_critic(
        &ctx.name,
        &dir,
        &config.device,
        config.sampling,
        config.batch_size,
    )
}

rco_core::register_plugin! {
    role: Critic,
    kind: "burn",
    summary: "A critic sampled from a burn language-model checkpoint (CPU, WGPU or CUDA)",
    example: "kind = \"burn\"\ncheckpoint = \"runs/quickstart/critic/rco\"\ndevice = \"cpu\"\nsampling = { temperature = 1.0, max_tokens = 16 }\n",
    config: BurnCriticConfig,
    build: build,
}
