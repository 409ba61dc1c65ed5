//! The config section of a local burn model (`kind = "burn"` critic, actor and judge), its
//! defaults and checks, and where the section's model is and runs.

use std::path::PathBuf;

use rco_core::registry::{Validate, ValidateContext};
use rco_core::{BuildContext, ConfigProblem};
use rco_lm::device::DeviceSpec;
use rco_lm::engine::{Quantize, Settings};
use rco_lm::sampling::SamplingConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub device: DeviceSpec,
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
    /// How a model on the CPU holds its weights for generation and scoring: `"q8_0"` (Q8_0
    /// blocks times Q8_0 activations, as llama.cpp multiplies quantized weights; about 4×
    /// fewer bytes per token) or `"none"` (f32, exactly as loaded). Training always updates
    /// f32 weights; GPU devices run in f32.
    #[serde(default)]
    pub quantize: Quantize,
}

fn default_chat() -> bool {
    true
}

pub fn default_batch() -> usize {
    64
}

impl Validate for BurnModelConfig {
    /// The section's ranges, a device this build can run, and a model file that is there
    /// and readable (checked without loading it).
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p: Vec<ConfigProblem> = self
            .sampling
            .problems()
            .into_iter()
            .map(|p| p.under("sampling"))
            .collect();
        if let Err(e) = self.device.compiled() {
            p.push(ConfigProblem::new("device", e.to_string()));
        }
        if self.batch_size == 0 {
            p.push(ConfigProblem::new("batch_size", "must be at least 1"));
        }
        if let Some(path) = &self.checkpoint {
            if let Some(problem) = rco_lm::local::model_problem(&ctx.resolve(path)) {
                p.push(ConfigProblem::new("checkpoint", problem));
            }
        }
        p
    }
}

/// A `burn` judge section: a [`BurnModelConfig`] whose verdict-probability mode needs the
/// templates' pairwise answer prefix.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct BurnJudgeConfig(pub BurnModelConfig);

impl Validate for BurnJudgeConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p = self.0.problems(ctx);
        p.extend(rco_core::judge::verdict_prefix_problems(
            self.0.verdict_probabilities,
            &ctx.templates,
        ));
        p
    }
}

impl BurnModelConfig {
    /// The engine settings of the section.
    pub fn settings(&self) -> Settings {
        Settings {
            sampling: self.sampling.clone(),
            batch_size: self.batch_size,
            chat: self.chat,
            stop: self.stop.clone(),
            quantize: self.quantize,
        }
    }
}

/// Where a role's model is and which device it runs on, from its config section.
pub struct Placement {
    pub path: PathBuf,
    pub device: DeviceSpec,
}

/// The model file or directory and the compiled device a `burn` actor or judge section names.
pub fn placement(
    config: &BurnModelConfig,
    ctx: &BuildContext,
    role: &str,
) -> rco_core::Result<Placement> {
    let path = config.checkpoint.as_ref().map(|p| ctx.resolve(p)).ok_or_else(|| {
        rco_core::Error::Config(vec![ConfigProblem::new(
            format!("{}.checkpoint", ctx.name),
            format!("a burn {role} needs a model: a checkpoint directory, a Hugging Face directory or a .gguf file"),
        )])
    })?;
    let device = config
        .device
        .compiled()
        .map_err(|e| rco_core::Error::plugin(format!("{role} `{}`", ctx.name), e))?;
    Ok(Placement { path, device })
}
