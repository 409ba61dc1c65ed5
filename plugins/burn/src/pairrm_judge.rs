//! PairRM as the judge (`kind = "pairrm"`): llm-blender's pairwise reward model, run natively
//! by [`rco_lm::pairrm`]. Each comparison is read in both orders inside the judge, as
//! llm-blender's `compare` reads it (`logit([a, b]) − logit([b, a])`; `both_orders = false`
//! reads only `[a, b]`): `a` wins when the logit is above `tie_margin`, `b` when it is below
//! `−tie_margin`, and `prob_a = sigmoid(logit)` feeds soft CU. PairRM gives no pointwise
//! scores.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use burn::prelude::*;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{BuildContext, Comparison, ConfigProblem, Judge, Judgement, Result};
use rco_lm::device::DeviceSpec;
use rco_lm::pairrm::PairRm;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// PairRM's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRmJudgeConfig {
    /// The checkpoint directory, as `llm-blender/PairRM-hf` is laid out: `config.json`,
    /// `tokenizer.json`, `model.safetensors` or `pytorch_model.bin`.
    pub checkpoint: PathBuf,
    /// DeBERTa-v3's `tokenizer.json`, when the checkpoint directory has none
    /// (`scripts/fetch-models.sh deberta-v3-tokenizer` fetches one).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// cpu, wgpu or cuda:N.
    #[serde(default)]
    pub device: DeviceSpec,
    /// Read each pair in both orders and take the difference (llm-blender's default).
    #[serde(default = "yes")]
    pub both_orders: bool,
    /// Logits this close to 0 are a tie.
    #[serde(default)]
    pub tie_margin: f64,
    /// Tokens of the prompt PairRM reads (default: `source_maxlength` in config.json, else
    /// llm-blender's 1224).
    #[serde(default)]
    pub source_max_tokens: Option<usize>,
    /// Tokens of each answer (default: `candidate_maxlength`, else 412).
    #[serde(default)]
    pub candidate_max_tokens: Option<usize>,
    /// Sequences in one forward pass.
    #[serde(default = "four")]
    pub batch_size: usize,
}

fn yes() -> bool {
    true
}

fn four() -> usize {
    4
}

impl Validate for PairRmJudgeConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let dir = ctx.resolve(&self.checkpoint);
        if !dir.join("config.json").is_file() {
            problems.push(ConfigProblem::new(
                "checkpoint",
                format!("{} has no config.json", dir.display()),
            ));
        }
        match &self.tokenizer {
            Some(path) if !ctx.resolve(path).is_file() => problems.push(ConfigProblem::new(
                "tokenizer",
                format!("{} is not a file", ctx.resolve(path).display()),
            )),
            None if !dir.join("tokenizer.json").is_file() => problems.push(ConfigProblem::new(
                "checkpoint",
                format!(
                    "{} has no tokenizer.json (set `tokenizer` to DeBERTa-v3's)",
                    dir.display()
                ),
            )),
            _ => {}
        }
        if self.tie_margin.is_nan() || self.tie_margin < 0.0 {
            problems.push(ConfigProblem::new("tie_margin", "must be at least 0"));
        }
        for (key, value) in [
            ("source_max_tokens", self.source_max_tokens),
            ("candidate_max_tokens", self.candidate_max_tokens),
        ] {
            if value.is_some_and(|v| !(3..=1 << 16).contains(&v)) {
                problems.push(ConfigProblem::new(key, "must be between 3 and 65536"));
            }
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

pub struct PairRmJudge<B: Backend> {
    name: String,
    model: Mutex<PairRm<B>>,
    both_orders: bool,
    tie_margin: f64,
    batch_size: usize,
}

/// The verdict of a PairRM logit (positive: `a` is better): a reward difference.
pub fn verdict(logit: f64, tie_margin: f64) -> Judgement {
    crate::reward_judge::verdict(logit, 0.0, tie_margin)
}

#[async_trait]
impl<B: Backend> Judge for PairRmJudge<B> {
    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>> {
        let model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let fail = |e: rco_lm::LmError| {
            rco_core::Error::plugin(format!("judge `{}` (pairrm)", self.name), e)
        };
        // Both orders are two sequences per comparison; keep a pass near `batch_size` rows.
        let per_pass = if self.both_orders {
            (self.batch_size / 2).max(1)
        } else {
            self.batch_size
        };
        let mut out = Vec::with_capacity(comparisons.len());
        for chunk in comparisons.chunks(per_pass) {
            let logits = if self.both_orders {
                let pairs: Vec<(&str, &str, &str)> = chunk
                    .iter()
                    .map(|c| (c.prompt.as_str(), c.a.as_str(), c.b.as_str()))
                    .collect();
                model.compare(&pairs).map_err(fail)?
            } else {
                let rows = chunk
                    .iter()
                    .map(|c| model.layout(&c.prompt, &c.a, &c.b))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(fail)?;
                model.logits(&rows)
            };
            out.extend(
                logits
                    .into_iter()
                    .map(|l| verdict(f64::from(l), self.tie_margin)),
            );
        }
        Ok(out)
    }
}

fn build(config: &PairRmJudgeConfig, ctx: &BuildContext) -> Result<Arc<dyn Judge>> {
    let name = ctx.name.clone();
    let dir = ctx.resolve(&config.checkpoint);
    let tokenizer = config.tokenizer.as_ref().map(|p| ctx.resolve(p));
    let fail = |e: rco_lm::LmError| rco_core::Error::plugin(format!("judge `{name}` (pairrm)"), e);
    let device = config.device.compiled().map_err(fail)?;
    rco_lm::with_backend!(device, |B, device| {
        PairRm::<B>::open(
            &dir,
            tokenizer.as_deref(),
            config.source_max_tokens,
            config.candidate_max_tokens,
            &device,
        )
        .map(|model| {
            Arc::new(PairRmJudge {
                name: name.clone(),
                model: Mutex::new(model),
                both_orders: config.both_orders,
                tie_margin: config.tie_margin,
                batch_size: config.batch_size,
            }) as Arc<dyn Judge>
        })
        .map_err(fail)
    })
}

rco_core::register_plugin! {
    role: Judge,
    kind: "pairrm",
    summary: "PairRM (llm-blender's DeBERTa-v3 pairwise reward model), native: logit([a,b]) - logit([b,a]), prob_a = sigmoid(logit)",
    example: "kind = \"pairrm\"\ncheckpoint = \"models/PairRM-hf\"\n",
    config: PairRmJudgeConfig,
    build: build,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rco_core::Verdict;

    #[test]
    fn logits_make_verdicts_and_probabilities() {
        assert_eq!(verdict(0.7, 0.0).verdict, Verdict::A);
        assert_eq!(verdict(-0.7, 0.0).verdict, Verdict::B);
        assert_eq!(verdict(0.2, 0.25).verdict, Verdict::Tie);
        assert!((verdict(1.0, 0.0).prob_a.unwrap() - 0.731_058_578_630_005).abs() < 1e-12);
    }
}
