//! The quickstart critic (`kind = "quickstart"`): a tiny transformer in burn that reads the
//! critique prompt character by character and samples a critique. Its base version is
//! warm-started by supervised training on a mix of helpful and unhelpful critiques, so that
//! it starts imperfect and RCO has something to improve.

use std::path::Path;
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use rand::SeedableRng;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{BuildContext, ConfigProblem, Critic, CriticContext, Result};
use rco_lm::checkpoint::{self, Architecture, ModelSpec};
use rco_lm::critic::open_critic;
use rco_lm::device::DeviceSpec;
use rco_lm::engine::Settings;
use rco_lm::loss::{supervised, Example};
use rco_lm::sampling::SamplingConfig;
use rco_lm::tiny::TinyLmConfig;
use rco_lm::tokenizer::{CharTokenizer, Tokenizer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mix::{sample_critique, CritiqueMix};
use crate::tasks::{QuickstartDataConfig, QuickstartDataset};

/// Characters the quickstart critic reads and writes.
pub const ALPHABET: &str = "0123456789abcdefghijklmnopqrstuvwxyz:|>@=,.-[] \n";

/// Supervised warm start of the base critic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WarmStartConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step (fresh generated items each step).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Shares of precise, vague, generic and wrong critiques in the training mix.
    pub mix: CritiqueMix,
    /// Tasks of the warm-start items.
    pub tasks: Vec<String>,
    /// Shortest digit string of the warm-start items.
    pub min_digits: usize,
    /// Longest digit string of the warm-start items.
    pub max_digits: usize,
}

impl Default for WarmStartConfig {
    fn default() -> Self {
        let data = QuickstartDataConfig::default();
        Self {
            steps: 600,
            batch_size: 64,
            learning_rate: 3e-3,
            mix: CritiqueMix::default(),
            tasks: data.tasks,
            min_digits: data.min_digits,
            max_digits: data.max_digits,
        }
    }
}

/// The quickstart critic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickstartCriticConfig {
    /// Size of the transformer (`vocab_size` is set from the alphabet).
    #[serde(default)]
    pub model: TinyLmConfig,
    /// How the base critic is made.
    #[serde(default)]
    pub warm_start: WarmStartConfig,
    /// How critiques are sampled.
    #[serde(default = "default_sampling")]
    pub sampling: SamplingConfig,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Most sequences decoded together.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_sampling() -> SamplingConfig {
    SamplingConfig {
        max_tokens: 8,
        ..Default::default()
    }
}
fn default_batch() -> usize {
    256
}

impl Validate for QuickstartCriticConfig {
    fn problems(&self, _ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.check()
    }
}

impl QuickstartCriticConfig {
    /// Every problem of the config, keys relative to the section.
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut p: Vec<ConfigProblem> = self
            .model
            .problems()
            .into_iter()
            .map(|p| p.under("model"))
            .collect();
        p.extend(
            self.sampling
                .problems()
                .into_iter()
                .map(|p| p.under("sampling")),
        );
        p.extend(
            self.warm_start
                .mix
                .problems()
                .into_iter()
                .map(|p| p.under("warm_start.mix")),
        );
        let data = QuickstartDataConfig {
            tasks: self.warm_start.tasks.clone(),
            min_digits: self.warm_start.min_digits,
            max_digits: self.warm_start.max_digits,
            ..Default::default()
        };
        p.extend(data.check().into_iter().map(|p| p.under("warm_start")));
        if self.warm_start.batch_size == 0 {
            p.push(ConfigProblem::new(
                "warm_start.batch_size",
                "must be at least 1",
            ));
        }
        if !(self.warm_start.learning_rate > 0.0) {
            p.push(ConfigProblem::new(
                "warm_start.learning_rate",
                "must be > 0",
            ));
        }
        if let Err(e) = self.device.compiled() {
            p.push(ConfigProblem::new("device", e.to_string()));
        }
        p
    }
}

/// The model description of a quickstart critic.
pub fn model_spec(config: &QuickstartCriticConfig) -> ModelSpec {
    let tokenizer = Tokenizer::Chars(CharTokenizer {
        alphabet: ALPHABET.into(),
    });
    let mut model = config.model.clone();
    model.vocab_size = tokenizer.vocab_size();
    ModelSpec {
        architecture: Architecture::Tiny(model),
        tokenizer,
    }
}

/// Trains the base critic on the warm-start mix and saves it to `dir`.
pub fn warm_start(config: &QuickstartCriticConfig, ctx: &BuildContext, dir: &Path) -> Result<()> {
    let name = format!("critic `{}` (quickstart)", ctx.name);
    let err = |e: &dyn std::fmt::Display| rco_core::Error::plugin(name.clone(), e);
    let spec = model_spec(config);
    let data = QuickstartDataset::new(
        QuickstartDataConfig {
            tasks: config.warm_start.tasks.clone(),
            min_digits: config.warm_start.min_digits,
            max_digits: config.warm_start.max_digits,
            ..Default::default()
        },
        rco_core::seed::derive_seed(ctx.seed, &["warm-start"]),
    )?;
    // Every example is encoded up front, so a template the alphabet cannot spell fails here.
    let ws = &config.warm_start;
    let mut examples: Vec<Example> = Vec::with_capacity(ws.steps * ws.batch_size);
    for index in 0..ws.steps * ws.batch_size {
        let item = data.item("warm-start", index);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(rco_core::seed::derive_seed(
            ctx.seed,
            &["warm-start-critique", &index.to_string()],
        ));
        let critique = sample_critique(&item, &ws.mix, &mut rng);
        let prompt = ctx.templates.critique_prompt(&item);
        let mut prompt_ids = vec![spec.tokenizer.bos()];
        prompt_ids.extend(spec.tokenizer.encode(&prompt).map_err(|e| err(&e))?);
        let mut completion = spec.tokenizer.encode(&critique).map_err(|e| err(&e))?;
        completion.push(spec.tokenizer.eos());
        let Architecture::Tiny(model) = &spec.architecture;
        if prompt_ids.len() + completion.len() > model.max_len {
            return Err(err(&format!(
                "a warm-start example takes {} tokens but model.max_len is {}",
                prompt_ids.len() + completion.len(),
                model.max_len
            )));
        }
        examples.push((prompt_ids, completion));
    }
    let device = config.device.compiled().map_err(|e| err(&e))?;
    let progress = ctx.progress.start("warm start", ws.steps as u64);
    let saved: Result<()> = rco_lm::with_backend!(device, |B, device| {
        let model = checkpoint::init_seeded::<Autodiff<B>>(
            &spec,
            &device,
            rco_core::seed::derive_seed(ctx.seed, &["critic-init"]),
        );
        let (model, _) = supervised(
            model,
            ws.steps,
            ws.learning_rate,
            &device,
            |step| examples[step * ws.batch_size..(step + 1) * ws.batch_size].to_vec(),
            progress.as_ref(),
        );
        let model = model.valid();
        checkpoint::save(dir, &spec, model).map_err(|e| err(&e))
    });
    progress.finish();
    saved
}

fn build(config: &QuickstartCriticConfig, ctx: &CriticContext) -> Result<Arc<dyn Critic>> {
    let dir = ctx.checkpoint.clone().ok_or_else(|| {
        rco_core::Error::plugin(
            format!("critic `{}` (quickstart)", ctx.name),
            "needs a checkpoint directory (it is built inside a run)",
        )
    })?;
    if !checkpoint::exists(&dir) {
        if !ctx.create_checkpoint {
            return Err(rco_core::Error::plugin(
                format!("critic `{}` (quickstart)", ctx.name),
                format!("no checkpoint at {}", dir.display()),
            ));
        }
        warm_start(config, ctx, &dir)?;
    }
    let settings = Settings {
        sampling: config.sampling.clone(),
        batch_size: config.batch_size,
        ..Settings::default()
    };
    open_critic(&ctx.name, &dir, config.device, settings)
}

rco_core::register_plugin! {
    role: Critic,
    kind: "quickstart",
    summary: "Tiny burn transformer critic, warm-started on a mix of helpful and unhelpful quickstart critiques",
    example: "kind = \"quickstart\"\ndevice = \"cpu\"\nmodel = { d_model = 64, heads = 4, layers = 2, d_ff = 256, max_len = 48 }\nwarm_start = { steps = 600, batch_size = 64 }\nsampling = { temperature = 1.0, max_tokens = 8 }\n",
    config: QuickstartCriticConfig,
    build: build,
}
