//! The config section of a local burn model (`kind = "burn"` critic, actor and judge), its
//! defaults and checks, and where the section's model is and runs.

use std::path::PathBuf;

use rco_core::registry::Validate;
use rco_core::{BuildContext, ConfigProblem};
use rco_lm::device::DeviceSpec;
use rco_lm::engine::Settings;
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

impl BurnModelConfig {
    /// The engine settings of the section.
    pub fn settings(&self) -> Settings {
        Settings {
            sampling: self.sampling.clone(),
            batch_size: self.batch_size,
            chat: self.chat,
            stop: self.stop.clone(),
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
    let device = DeviceSpec::parse(&config.device)
        .and_then(DeviceSpec::compiled)
        .map_err(|e| rco_core::Error::plugin(format!("{role} `{}`", ctx.name), e))?;
    Ok(Placement { path, device })
}
