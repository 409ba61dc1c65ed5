//! A scalar reward model as the judge (`kind = "reward_model"`): a Hugging Face
//! `LlamaForSequenceClassification` / `Qwen2ForSequenceClassification` checkpoint read by
//! [`rco_lm::reward`]. Each answer's reward is read at the last token of the conversation
//! (the prompt as the user's turn, the answer as the assistant's) in the model's chat format.
//! Pairwise: the higher reward wins unless the two are within `tie_margin` (a tie), with
//! `prob_a = sigmoid(r_a − r_b)` for soft CU; pointwise: the reward itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{
    BuildContext, Comparison, ConfigProblem, Judge, Judgement, PointwiseRequest, PointwiseScore,
    Result, Verdict,
};
use rco_lm::device::DeviceSpec;
use rco_lm::reward::RewardModel;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The reward-model judge's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardModelJudgeConfig {
    /// A Hugging Face sequence-classification checkpoint directory (`config.json`,
    /// `model.safetensors` or shards, `tokenizer.json`, `tokenizer_config.json` with the
    /// chat template).
    pub checkpoint: PathBuf,
    /// cpu, wgpu or cuda:N.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Rewards closer than this are a tie.
    #[serde(default)]
    pub tie_margin: f64,
    /// Conversations read in one forward pass.
    #[serde(default = "eight")]
    pub batch_size: usize,
}

fn eight() -> usize {
    8
}

impl Validate for RewardModelJudgeConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let dir = ctx.resolve(&self.checkpoint);
        if !dir.join("config.json").is_file() {
            problems.push(ConfigProblem::new(
                "checkpoint",
                format!(
                    "{} is not a Hugging Face checkpoint directory (no config.json)",
                    dir.display()
                ),
            ));
        }
        if self.tie_margin.is_nan() || self.tie_margin < 0.0 {
            problems.push(ConfigProblem::new("tie_margin", "must be at least 0"));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            problems.push(ConfigProblem::new(
                "batch_size",
                "must be between 1 and 4096",
            ));
        }
        problems
    }
}

pub struct RewardModelJudge<B: Backend> {
    name: String,
    model: Mutex<RewardModel<B>>,
    tie_margin: f64,
    batch_size: usize,
}

impl<B: Backend> RewardModelJudge<B> {
    /// The reward of each (prompt, answer), `batch_size` conversations per pass.
    fn rewards(&self, pairs: &[(&str, &str)]) -> Result<Vec<f64>> {
        let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(self.batch_size.max(1)) {
            let rewards = model.rewards(chunk).map_err(|e| {
                rco_core::Error::plugin(format!("judge `{}` (reward_model)", self.name), e)
            })?;
            out.extend(rewards.into_iter().map(f64::from));
        }
        Ok(out)
    }
}

/// The verdict of two rewards.
pub fn verdict(a: f64, b: f64, tie_margin: f64) -> Judgement {
    let diff = a - b;
    let verdict = if diff.abs() <= tie_margin {
        Verdict::Tie
    } else if diff > 0.0 {
        Verdict::A
    } else {
        Verdict::B
    };
    Judgement {
        verdict,
        prob_a: Some(1.0 / (1.0 + (-diff).exp())),
    }
}

#[async_trait]
impl<B: Backend> Judge for RewardModelJudge<B> {
    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let pairs: Vec<(&str, &str)> = comparisons
            .iter()
            .flat_map(|c| {
                [
                    (c.prompt.as_str(), c.a.as_str()),
                    (c.prompt.as_str(), c.b.as_str()),
                ]
            })
            .collect();
        let rewards = self.rewards(&pairs)?;
        Ok(rewards
            .chunks(2)
            .map(|r| verdict(r[0], r[1], self.tie_margin))
            .collect())
    }

    async fn score(&self, requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        let pairs: Vec<(&str, &str)> = requests
            .iter()
            .map(|r| (r.prompt.as_str(), r.response.as_str()))
            .collect();
        Ok(self
            .rewards(&pairs)?
            .into_iter()
            .map(PointwiseScore::Score)
            .collect())
    }
}

fn build(config: &RewardModelJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let name = ctx.name.clone();
    let dir = ctx.resolve(&config.checkpoint);
    let fail =
        |e: rco_lm::LmError| rco_core::Error::plugin(format!("judge `{name}` (reward_model)"), e);
    let device = config.device.compiled().map_err(fail)?;
    rco_lm::with_backend!(device, |B, device| {
        RewardModel::<B>::open(&dir, &device)
            .map(|model| {
                Arc::new(RewardModelJudge {
                    name: name.clone(),
                    model: Mutex::new(model),
                    tie_margin: config.tie_margin,
                    batch_size: config.batch_size,
                }) as Arc<dyn Judge>
            })
            .map_err(fail)
    })
}

rco_core::register_plugin! {
    role: Judge,
    kind: "reward_model",
    summary: "A scalar reward model (Hugging Face Llama/Qwen2 *ForSequenceClassification): the higher reward wins, prob_a = sigmoid(r_a - r_b)",
    example: "kind = \"reward_model\"\ncheckpoint = \"models/my-reward-model\"\ntie_margin = 0.0\n",
    config: RewardModelJudgeConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_make_verdicts_and_probabilities() {
        let j = verdict(1.0, 0.0, 0.0);
        assert_eq!(j.verdict, Verdict::A);
        assert!((j.prob_a.unwrap() - 0.731_058_578_630_005).abs() < 1e-12);
        assert_eq!(verdict(0.0, 1.0, 0.0).verdict, Verdict::B);
        assert_eq!(verdict(0.3, 0.1, 0.25).verdict, Verdict::Tie);
        assert_eq!(verdict(0.5, 0.5, 0.0).prob_a, Some(0.5));
    }
}
