//! LoRA: low-rank adapters on a Llama-family model's projections, for training critics too
//! big to fine-tune whole. A projection `W` (burn's `[d_in, d_out]`) gains `A [d_in, r]` and
//! `B [r, d_out]` and computes `x·W + (alpha / r)·x·A·B`. `B` starts at zero, so an adapted
//! model starts as the base model; only `A` and `B` are trained (the base weights are
//! frozen, so they get no gradients and no optimizer state). Afterwards the adapters are
//! merged into the weights ([`crate::llama::Llama::merge_lora`]) or written as a PEFT adapter
//! directory ([`crate::hf::save_peft_adapter`]).

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The projections an adapter can sit on, by their Hugging Face names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Which projections get adapters, their rank and scale (PEFT's `LoraConfig` terms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The adapters' rank `r`.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// `lora_alpha`: the adapters' output is scaled by `alpha / rank`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The projections adapted, by Hugging Face name: `q_proj`, `k_proj`, `v_proj`,
    /// `o_proj`, `gate_proj`, `up_proj`, `down_proj` (default: all seven).
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

fn default_rank() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    TARGETS.iter().map(|t| t.to_string()).collect()
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            target_modules: default_targets(),
        }
    }
}

impl LoraConfig {
    /// What is wrong with the settings, by key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.rank == 0 {
            p.push(("rank", "must be at least 1".to_string()));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            p.push(("alpha", format!("must be > 0, got {}", self.alpha)));
        }
        if self.target_modules.is_empty() {
            p.push(("target_modules", "names no projection".to_string()));
        }
        for name in &self.target_modules {
            if !TARGETS.contains(&name.as_str()) {
                p.push((
                    "target_modules",
                    format!(
                        "`{name}` is not a projection an adapter can sit on (one of: {})",
                        TARGETS.join(", ")
                    ),
                ));
            }
        }
        p
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank.max(1) as f64
    }

    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| t == name)
    }
}

/// One projection's adapter.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// `[d_in, rank]`, drawn as PEFT draws it (uniform in ±1/√d_in).
    pub a: Param<Tensor<B, 2>>,
    /// `[rank, d_out]`, zero at the start.
    pub b: Param<Tensor<B, 2>>,
    /// `alpha / rank`.
    pub scale: f64,
}

impl<B: Backend> Lora<B> {
    pub fn new(d_in: usize, d_out: usize, rank: usize, scale: f64, device: &B::Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            a: Param::from_tensor(Tensor::random(
                [d_in, rank],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
            scale,
        }
    }

    /// The adapter's output for rows `x [n, d_in]`: `scale·x·A·B`, `[n, d_out]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.a.val())
            .matmul(self.b.val())
            .mul_scalar(self.scale)
    }

    /// What the adapter adds to the weight: `scale·A·B`, `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

/// The adapters of one decoder block, one per projection (`None`: not adapted).
#[derive(Module, Debug)]
pub struct BlockAdapters<B: Backend> {
    pub query: Option<Lora<B>>,
    pub key: Option<Lora<B>>,
    pub value: Option<Lora<B>>,
    pub output: Option<Lora<B>>,
    pub gate: Option<Lora<B>>,
    pub up: Option<Lora<B>>,
    pub down: Option<Lora<B>>,
}

impl<B: Backend> BlockAdapters<B> {
    /// No adapters.
    pub fn none() -> Self {
        Self {
            query: None,
            key: None,
            value: None,
            output: None,
            gate: None,
            up: None,
            down: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots().iter().all(|(_, a)| a.is_none())
    }

    /// Each projection's adapter with its Hugging Face name.
    pub fn slots(&self) -> [(&'static str, &Option<Lora<B>>); 7] {
        [
            ("q_proj", &self.query),
            ("k_proj", &self.key),
            ("v_proj", &self.value),
            ("o_proj", &self.output),
            ("gate_proj", &self.gate),
            ("up_proj", &self.up),
            ("down_proj", &self.down),
        ]
    }
}
