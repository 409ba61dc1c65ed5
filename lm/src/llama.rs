//! A Llama-family decoder (RMSNorm, rotary position embeddings, grouped-query attention,
//! gated MLP, tied or untied output head), configured from a checkpoint's own metadata and
//! loaded from GGUF: Llama (rotary pairs interleaved, as llama.cpp's converter stores them),
//! Qwen2/Qwen2.5 (biases on the query, key and value projections, rotary halves split) and
//! Gemma 3 (embeddings scaled by √d, RMS norms on queries and keys, norms after attention and
//! after the MLP too, GELU-gated MLP, local sliding-window layers with their own rotary base
//! between global ones).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, silu, softmax};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::device::{is_cpu, on_compute_pool, weight_bytes_limit};
use crate::gguf::GgufFile;
use crate::llama_q8::{BlockProjections, Q8Llama};
use crate::lora::{BlockAdapters, Lora, LoraConfig};
use crate::model::{head_chunk, picked_log_probs, project, CausalLm, KvCache};
use crate::sampling::MASKED;
use crate::token_table::{TokenTable, VocabHead};
use crate::LmError;

/// The size and conventions of a Llama checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    pub max_len: usize,
    /// Output head shares the token embedding.
    pub tied_embeddings: bool,
    /// `llama` or `qwen2`.
    #[serde(default = "llama_name")]
    pub architecture: String,
    /// The query, key and value projections have biases (Qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
    /// How the rotary embedding pairs a head's dimensions.
    #[serde(default)]
    pub rope_layout: RopeLayout,
    /// How rotary frequencies are scaled for long contexts (Llama 3.1's `llama3`, `linear`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// What Gemma 3 adds to the Llama block (absent for Llama and Qwen2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemma: Option<GemmaStyle>,
}

/// Gemma 3's departures from the Llama block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmaStyle {
    /// Layers attend to the last `sliding_window` positions only, except every
    /// `global_every`-th layer (layer `i` is global when `(i + 1) % global_every == 0`).
    pub sliding_window: usize,
    pub global_every: usize,
    /// The rotary base of the sliding-window layers (the global ones use `rope_theta`).
    pub local_rope_theta: f64,
    /// Queries are scaled by this instead of `1/√head_dim`.
    pub attention_scale: f64,
}

/// How a checkpoint scales its rotary frequencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (Hugging Face's and GGUF's `linear`).
    Linear { factor: f64 },
    /// Llama 3.1's: frequencies whose wavelength is longer than
    /// `original_max_position_embeddings / low_freq_factor` are divided by `factor`, those
    /// shorter than `… / high_freq_factor` are kept, and those between are blended.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// A divisor per frequency, as llama.cpp's converter stores Llama 3.1's scaling in GGUF
    /// (`rope_freqs.weight`).
    Divisors { divisors: Vec<f32> },
}

/// The rotary inverse frequencies `theta^(−2i/head_dim)`, `i < head_dim/2`, scaled as
/// `scaling` says (Hugging Face's `_compute_llama3_parameters` for `llama3`).
pub fn rope_inverse_frequencies(
    theta: f64,
    head_dim: usize,
    scaling: Option<&RopeScaling>,
) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| {
            let inv = theta.powf(-2.0 * i as f64 / head_dim as f64);
            match scaling {
                None => inv,
                Some(RopeScaling::Linear { factor }) => inv / factor,
                Some(RopeScaling::Divisors { divisors }) => {
                    inv / f64::from(divisors.get(i).copied().unwrap_or(1.0))
                }
                Some(RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                }) => {
                    let old = *original_max_position_embeddings as f64;
                    let wavelength = 2.0 * std::f64::consts::PI / inv;
                    if wavelength < old / high_freq_factor {
                        inv
                    } else if wavelength > old / low_freq_factor {
                        inv / factor
                    } else {
                        let smooth = (old / wavelength - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * inv / factor + smooth * inv
                    }
                }
            }
        })
        .collect()
}

impl RopeScaling {
    /// Reads a Hugging Face `rope_scaling` object (`None` for null or `rope_type = "default"`).
    /// An unsupported type is an error that names it.
    pub fn from_hf(value: &serde_json::Value) -> Result<Option<Self>, String> {
        if value.is_null() {
            return Ok(None);
        }
        let kind = value["rope_type"]
            .as_str()
            .or_else(|| value["type"].as_str())
            .unwrap_or("?");
        let number = |key: &str| {
            value[key]
                .as_f64()
                .ok_or_else(|| format!("`rope_scaling.{key}` is missing or not a number"))
        };
        match kind {
            "default" => Ok(None),
            "linear" => Ok(Some(Self::Linear {
                factor: number("factor")?,
            })),
            "llama3" => Ok(Some(Self::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")?
                    as usize,
            })),
            other => Err(format!(
                "`rope_scaling` of type `{other}` is not supported (supported: linear, llama3)"
            )),
        }
    }

    /// As a Hugging Face `rope_scaling` object (`None` for per-frequency divisors, which
    /// Hugging Face configs cannot express).
    pub fn to_hf(&self) -> Option<serde_json::Value> {
        match self {
            Self::Linear { factor } => {
                Some(serde_json::json!({"rope_type": "linear", "factor": factor}))
            }
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => Some(serde_json::json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            })),
            Self::Divisors { .. } => None,
        }
    }
}

fn llama_name() -> String {
    "llama".into()
}

/// How rotary position embeddings pair a head's dimensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// `(x[2i], x[2i+1])`: Llama weights as llama.cpp's converter permutes them.
    #[default]
    Interleaved,
    /// `(x[i], x[i + d/2])`: Hugging Face's `rotate_half`, which Qwen2 GGUF files keep
    /// (llama.cpp's NEOX rope).
    HalfSplit,
}

/// The architectures [`LlamaConfig::from_gguf`] reads.
pub const ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

impl LlamaConfig {
    /// Reads the config from GGUF metadata (`general.architecture = "llama"`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LmError> {
        let arch = file
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        if !ARCHITECTURES.contains(&arch) {
            return Err(LmError::Checkpoint {
                path: file.path.clone(),
                message: format!(
                    "architecture `{arch}` is not supported (supported: {})",
                    ARCHITECTURES.join(", ")
                ),
            });
        }
        let qwen2 = arch == "qwen2";
        let rope_scaling = match file
            .get(&format!("{arch}.rope.scaling.type"))
            .and_then(|v| v.as_str())
            .filter(|t| *t != "none")
        {
            Some("linear") => Some(RopeScaling::Linear {
                factor: file.require_f64(&format!("{arch}.rope.scaling.factor"))?,
            }),
            Some(scaling) => {
                return Err(LmError::Checkpoint {
                    path: file.path.clone(),
                    message: format!(
                        "`{arch}.rope.scaling.type` = `{scaling}` is not supported (supported: none, linear)"
                    ),
                })
            }
            // Llama 3.1's scaling, as llama.cpp's converter writes it: a divisor per frequency.
            None if file.tensors.contains_key("rope_freqs.weight") => Some(RopeScaling::Divisors {
                divisors: file.tensor_f32("rope_freqs.weight")?.0,
            }),
            None => None,
        };
        let n = |key: &str| {
            file.require_u64(&format!("{arch}.{key}"))
                .map(|v| v as usize)
        };
        let d_model = n("embedding_length")?;
        let heads = n("attention.head_count")?;
        // Gemma's heads are wider than d_model / heads.
        let head_dim = n("attention.key_length").unwrap_or(d_model / heads.max(1));
        let gemma = if arch == "gemma3" {
            if let Some(cap) = file
                .get("gemma3.final_logit_softcapping")
                .and_then(|v| v.as_f64())
                .filter(|c| *c > 0.0)
            {
                return Err(LmError::Checkpoint {
                    path: file.path.clone(),
                    message: format!("`gemma3.final_logit_softcapping` = {cap} is not supported"),
                });
            }
            Some(GemmaStyle {
                sliding_window: n("attention.sliding_window")?,
                // llama.cpp's pattern for Gemma 3: five local layers, then a global one.
                global_every: 6,
                local_rope_theta: 10_000.0,
                attention_scale: 1.0 / (head_dim as f64).sqrt(),
            })
        } else {
            None
        };
        let vocab_size = match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(tokens) => tokens.len(),
            None => n("vocab_size")?,
        };
        Ok(Self {
            vocab_size,
            d_model,
            d_ff: n("feed_forward_length")?,
            layers: n("block_count")?,
            heads,
            kv_heads: n("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rope_theta: file
                .require_f64(&format!("{arch}.rope.freq_base"))
                .unwrap_or(10_000.0),
            rms_eps: file.require_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))?,
            max_len: n("context_length")?,
            tied_embeddings: !file.tensors.contains_key("output.weight"),
            architecture: arch.to_string(),
            qkv_bias: qwen2,
            // llama.cpp ropes Qwen2 and Gemma 3 on split halves (NEOX).
            rope_layout: if qwen2 || gemma.is_some() {
                RopeLayout::HalfSplit
            } else {
                RopeLayout::Interleaved
            },
            rope_scaling,
            gemma,
        })
    }

    /// An untrained model of this size.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Llama<B> {
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).with_bias(false).init(device);
        let biased = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(self.qkv_bias)
                .init(device)
        };
        let q_dim = self.heads * self.head_dim;
        let kv_dim = self.kv_heads * self.head_dim;
        let norm = |d: usize| {
            RmsNormConfig::new(d)
                .with_epsilon(self.rms_eps)
                .init(device)
        };
        let gemma = self.gemma.is_some();
        Llama {
            embedding: TokenTable::random(
                self.vocab_size,
                self.d_model,
                weight_bytes_limit::<B>(),
                device,
            ),
            blocks: (0..self.layers)
                .map(|_| LlamaBlock {
                    attention_norm: RmsNormConfig::new(self.d_model)
                        .with_epsilon(self.rms_eps)
                        .init(device),
                    query: biased(self.d_model, q_dim),
                    key: biased(self.d_model, kv_dim),
                    value: biased(self.d_model, kv_dim),
                    output: linear(q_dim, self.d_model),
                    mlp_norm: RmsNormConfig::new(self.d_model)
                        .with_epsilon(self.rms_eps)
                        .init(device),
                    gate: linear(self.d_model, self.d_ff),
                    up: linear(self.d_model, self.d_ff),
                    down: linear(self.d_ff, self.d_model),
                    query_norm: gemma.then(|| norm(self.head_dim)),
                    key_norm: gemma.then(|| norm(self.head_dim)),
                    post_attention_norm: gemma.then(|| norm(self.d_model)),
                    post_mlp_norm: gemma.then(|| norm(self.d_model)),
                    lora: BlockAdapters::none(),
                })
                .collect(),
            norm: RmsNormConfig::new(self.d_model)
                .with_epsilon(self.rms_eps)
                .init(device),
            output: (!self.tied_embeddings).then(|| {
                VocabHead::random(
                    self.vocab_size,
                    self.d_model,
                    weight_bytes_limit::<B>(),
                    device,
                )
            }),
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            rope_theta: self.rope_theta,
            max_len: self.max_len,
            half_split_rope: self.rope_layout == RopeLayout::HalfSplit,
            rope_scaling: self.rope_scaling.clone(),
            gemma: self.gemma.clone(),
            q8: None,
        }
    }
}

#[derive(Module, Debug)]
pub struct LlamaBlock<B: Backend> {
    pub attention_norm: RmsNorm<B>,
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub output: Linear<B>,
    pub mlp_norm: RmsNorm<B>,
    pub gate: Linear<B>,
    pub up: Linear<B>,
    pub down: Linear<B>,
    /// Gemma 3: RMS norms over each query and key head, and after attention and the MLP.
    pub query_norm: Option<RmsNorm<B>>,
    pub key_norm: Option<RmsNorm<B>>,
    pub post_attention_norm: Option<RmsNorm<B>>,
    pub post_mlp_norm: Option<RmsNorm<B>>,
    /// LoRA adapters on the projections ([`Llama::add_lora`]); none unless training them.
    pub lora: BlockAdapters<B>,
}

/// `linear` applied to `x [batch, time, d_in]`, plus its adapter's output when it has one.
fn adapted<B: Backend>(
    linear: &Linear<B>,
    lora: &Option<Lora<B>>,
    x: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let Some(lora) = lora else {
        return project(linear, x);
    };
    let [b, t, d] = x.dims();
    let rows = x.reshape([b * t, d]);
    let y = linear.forward(rows.clone()) + lora.forward(rows);
    let out = y.dims()[1];
    y.reshape([b, t, out])
}

/// The most rows (batch × new tokens) a product may have to take the Q8_0 path; past it,
/// f32 GEMM is faster on the CPU.
pub const Q8_MAX_ROWS: usize = 32;

/// A Llama decoder.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    embedding: TokenTable<B>,
    blocks: Vec<LlamaBlock<B>>,
    norm: RmsNorm<B>,
    output: Option<VocabHead<B>>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope_theta: f64,
    max_len: usize,
    half_split_rope: bool,
    #[module(skip)]
    rope_scaling: Option<RopeScaling>,
    #[module(skip)]
    gemma: Option<GemmaStyle>,
    /// Q8_0 copies of the projections for CPU inference ([`Llama::quantize_q8`]); `None`
    /// runs every projection in burn.
    #[module(skip)]
    q8: Option<Arc<Q8Llama>>,
}

/// Rotates the halves `(x[i], x[i + d/2])` of `x [b, h, t, d]` by the angles whose cosines
/// and sines are `cos`, `sin [b, 1, t, d/2]` (Hugging Face's `rotate_half`).
fn rotate_halves<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let first = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let second = x.slice([0..b, 0..h, 0..t, d / 2..d]);
    Tensor::cat(
        vec![
            first.clone() * cos.clone() - second.clone() * sin.clone(),
            first * sin.clone() + second * cos.clone(),
        ],
        3,
    )
}

/// Rotates interleaved pairs `(x[2i], x[2i+1])` of `x [b, h, t, d]` by the angles whose
/// cosines and sines are `cos`, `sin [b, 1, t, d/2]`.
fn rotate<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let pairs = x.reshape([b, h, t, d / 2, 2]);
    let even = pairs
        .clone()
        .slice([0..b, 0..h, 0..t, 0..d / 2, 0..1])
        .reshape([b, h, t, d / 2]);
    let odd = pairs
        .slice([0..b, 0..h, 0..t, 0..d / 2, 1..2])
        .reshape([b, h, t, d / 2]);
    let rotated_even = even.clone() * cos.clone() - odd.clone() * sin.clone();
    let rotated_odd = even * sin.clone() + odd * cos.clone();
    Tensor::stack::<5>(vec![rotated_even, rotated_odd], 4).reshape([b, h, t, d])
}

/// The additive mask of a sliding window, `[1, 1, t, total]`: the `t` new queries are the
/// last `t` of `total` key columns, and a query sees the keys fewer than `window` positions
/// back (llama.cpp's rule). Column distances are position distances: every row's positions
/// count up from its first real column.
fn window_mask<B: Backend>(
    t: usize,
    total: usize,
    window: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut values = Vec::with_capacity(t * total);
    for i in 0..t {
        let query = total - t + i;
        values.extend((0..total).map(|key| {
            if query >= key && query - key >= window {
                MASKED
            } else {
                0.0
            }
        }));
    }
    Tensor::from_data(TensorData::new(values, [1, 1, t, total]), device)
}

impl<B: Backend> Llama<B> {
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        block: &LlamaBlock<B>,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
        layer: usize,
        q8: Option<&Q8Llama>,
    ) -> Tensor<B, 3> {
        let [b, t, d_model] = x.dims();
        let (h, kv, dh) = (self.heads, self.kv_heads, self.head_dim);
        let q8 = q8.map(|q8| &q8.blocks[layer]);
        let normed = block.attention_norm.forward(x.clone());
        let [q, k, v] = match q8 {
            Some(q8) => q8.qkv(normed),
            None => [
                adapted(&block.query, &block.lora.query, normed.clone()),
                adapted(&block.key, &block.lora.key, normed.clone()),
                adapted(&block.value, &block.lora.value, normed),
            ],
        };
        let q = q.reshape([b, t, h, dh]).swap_dims(1, 2);
        let k = k.reshape([b, t, kv, dh]).swap_dims(1, 2);
        let v = v.reshape([b, t, kv, dh]).swap_dims(1, 2);
        let (q, k) = match (&block.query_norm, &block.key_norm) {
            (Some(qn), Some(kn)) => (qn.forward(q), kn.forward(k)),
            _ => (q, k),
        };
        let (q, k) = if self.half_split_rope {
            (rotate_halves(q, cos, sin), rotate_halves(k, cos, sin))
        } else {
            (rotate(q, cos, sin), rotate(k, cos, sin))
        };
        let (k, v) = cache.extend(layer, k, v);
        let total = k.dims()[2];
        let scale = match &self.gemma {
            Some(style) => style.attention_scale as f32,
            None => 1.0 / (dh as f32).sqrt(),
        };
        // Grouped-query attention: query head i reads key/value head i / (h / kv). The
        // queries of a group are stacked along time, so keys and values are never copied.
        let group = h / kv;
        let q = q.reshape([b, kv, group * t, dh]);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        let scores = scores.reshape([b, kv, group, t, total]) + mask.reshape([b, 1, 1, t, total]);
        let weights = softmax(scores, 4).reshape([b, kv, group * t, total]);
        let context = weights
            .matmul(v)
            .reshape([b, h, t, dh])
            .swap_dims(1, 2)
            .reshape([b, t, h * dh]);
        let attended = match q8 {
            Some(q8) => q8.output(context),
            None => adapted(&block.output, &block.lora.output, context),
        };
        let attended = match &block.post_attention_norm {
            Some(norm) => norm.forward(attended),
            None => attended,
        };
        let x = x + attended;
        let normed = block.mlp_norm.forward(x.clone());
        let out = match q8 {
            Some(q8) => q8.mlp(normed, self.gemma.is_some()),
            None => {
                let gate = adapted(&block.gate, &block.lora.gate, normed.clone());
                let gate = if self.gemma.is_some() {
                    gelu_approximate(gate)
                } else {
                    silu(gate)
                };
                adapted(
                    &block.down,
                    &block.lora.down,
                    gate * adapted(&block.up, &block.lora.up, normed),
                )
            }
        };
        let out = match &block.post_mlp_norm {
            Some(norm) => norm.forward(out),
            None => out,
        };
        let _ = d_model;
        x + out
    }

    /// Whether a layer is a sliding-window one (Gemma 3's local layers).
    fn is_local(&self, layer: usize) -> bool {
        self.gemma
            .as_ref()
            .is_some_and(|g| !(layer + 1).is_multiple_of(g.global_every.max(1)))
    }

    /// The final hidden states (after the last norm) of new tokens. The Q8_0 path is taken
    /// for the whole pass or not at all ([`Llama::q8_for`] of its rows), and the head of the
    /// same pass follows it: one forward pass is one kind of arithmetic.
    fn hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
        q8: Option<&Q8Llama>,
    ) -> Tensor<B, 3> {
        if is_cpu::<B>() {
            on_compute_pool(|| self.hidden_here(tokens, positions, attention_mask, cache, q8))
        } else {
            self.hidden_here(tokens, positions, attention_mask, cache, q8)
        }
    }

    /// [`Llama::hidden`] on this thread.
    fn hidden_here(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
        q8: Option<&Q8Llama>,
    ) -> Tensor<B, 3> {
        let (cos, sin) = self.rotary(positions.clone(), self.rope_theta);
        let local = self
            .gemma
            .as_ref()
            .map(|g| self.rotary(positions, g.local_rope_theta));
        // The sliding-window layers' mask, made once for all of them (only a sequence longer
        // than the window needs one).
        let [_, _, t, total] = attention_mask.dims();
        let window_mask = self
            .gemma
            .as_ref()
            .filter(|g| total > g.sliding_window)
            .map(|g| {
                attention_mask.clone()
                    + window_mask::<B>(t, total, g.sliding_window, &attention_mask.device())
            });
        let mut x = self.embedding.forward(tokens);
        if self.gemma.is_some() {
            x = x.mul_scalar((self.embedding.d_model() as f32).sqrt());
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            let local_layer = self.is_local(layer);
            let (cos, sin) = match &local {
                Some((cos, sin)) if local_layer => (cos, sin),
                _ => (&cos, &sin),
            };
            let mask = match &window_mask {
                Some(mask) if local_layer => mask.clone(),
                _ => attention_mask.clone(),
            };
            x = self.block(block, x, cos, sin, mask, cache, layer, q8);
        }
        self.norm.forward(x)
    }

    /// The final hidden state of each row's last token, `[batch, d_model]` (rows
    /// left-padded, as [`crate::sampling::PaddedBatch`] makes them).
    pub fn last_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        let (x, _) = self.hidden_whole(tokens, positions, attention_mask);
        let [b, t, d] = x.dims();
        x.slice([0..b, t - 1..t, 0..d]).reshape([b, d])
    }

    /// The final hidden states `[batch, time, d_model]` of whole sequences (no cache), and
    /// the Q8_0 snapshot the pass used, for the head to use too.
    fn hidden_whole(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
    ) -> (Tensor<B, 3>, Option<&Q8Llama>) {
        let [b, t] = tokens.dims();
        let q8 = self.q8_for(b * t);
        let x = self.hidden(
            tokens,
            positions,
            attention_mask,
            &mut KvCache::default(),
            q8,
        );
        (x, q8)
    }

    fn vocab(&self) -> usize {
        self.embedding.vocab()
    }

    /// Logits of hidden states `[b, t, d]`: the output head, or the token embedding.
    fn head(&self, x: Tensor<B, 3>, q8: Option<&Q8Llama>) -> Tensor<B, 3> {
        if let Some(q8) = q8 {
            return q8.head(x);
        }
        let [b, t, d] = x.dims();
        let rows = x.reshape([b * t, d]);
        let logits = match &self.output {
            Some(head) => head.forward(rows),
            None => self.embedding.logits(rows),
        };
        logits.reshape([b, t, self.vocab()])
    }

    /// Cosines and sines of the rotary angles for `positions [b, t]` at base `theta`:
    /// `[b, 1, t, head_dim/2]`.
    fn rotary(&self, positions: Tensor<B, 2, Int>, theta: f64) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, t] = positions.dims();
        let half = self.head_dim / 2;
        let device = positions.device();
        let inverse: Vec<f32> =
            rope_inverse_frequencies(theta, self.head_dim, self.rope_scaling.as_ref())
                .into_iter()
                .map(|v| v as f32)
                .collect();
        let inverse = Tensor::<B, 1>::from_data(TensorData::new(inverse, [half]), &device)
            .reshape([1, 1, half]);
        let angles = positions.float().reshape([b, t, 1]) * inverse;
        let angles = angles.reshape([b, 1, t, half]);
        (angles.clone().cos(), angles.sin())
    }
}

impl<B: Backend> CausalLm<B> for Llama<B> {
    fn logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let q8 = self.q8_for(b * t);
        let x = self.hidden(tokens, positions, attention_mask, cache, q8);
        self.head(x, q8)
    }

    fn last_logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 2> {
        let [b, t] = tokens.dims();
        let q8 = self.q8_for(b * t);
        let x = self.hidden(tokens, positions, attention_mask, cache, q8);
        let [b, t, d] = x.dims();
        let last = x.slice([0..b, t - 1..t, 0..d]);
        self.head(last, q8).reshape([b, self.vocab()])
    }

    fn target_log_probs(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        at: Tensor<B, 1, Int>,
        targets: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let (x, q8) = self.hidden_whole(tokens, positions, attention_mask);
        let [b, t, d] = x.dims();
        let [n] = at.dims();
        let picked = x.reshape([b * t, d]).select(0, at);
        // The head a chunk of positions at a time: only a chunk's logits are held at once
        // (all of them when gradients are kept, as the backward pass needs them).
        let chunk = head_chunk(self.vocab());
        let parts: Vec<Tensor<B, 1>> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(n);
                let rows = picked.clone().slice([start..end, 0..d]);
                let logits = self
                    .head(rows.reshape([1, end - start, d]), q8)
                    .reshape([end - start, self.vocab()]);
                #[allow(clippy::single_range_in_vec_init)] // burn's slice of one dimension
                let these = targets.clone().slice([start..end]);
                picked_log_probs(logits, these)
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}

impl<B: Backend> Llama<B> {
    /// `gemma3`, `qwen2` (biased query, key and value projections) or `llama`.
    pub fn architecture(&self) -> &'static str {
        if self.gemma.is_some() {
            "gemma3"
        } else if self.blocks.first().is_some_and(|b| b.query.bias.is_some()) {
            "qwen2"
        } else {
            "llama"
        }
    }
    /// Takes Q8_0 copies of the projections and the head for inference on the CPU
    /// ([`crate::llama_q8`]); later forward passes use them. Returns whether it could (every
    /// matrix's input size must be a multiple of 32). The copies are a snapshot: a model
    /// whose weights change afterwards (training, loading a record) must call
    /// [`Llama::drop_q8`] or this again. Autodiff models should not: the products leave
    /// burn's graph.
    pub fn quantize_q8(&mut self) -> bool {
        if self.has_lora() {
            // The snapshot would leave the adapters out: merge them first.
            self.q8 = None;
            return false;
        }
        let blocks = self.blocks.iter().map(|b| BlockProjections {
            query: &b.query,
            key: &b.key,
            value: &b.value,
            output: &b.output,
            gate: &b.gate,
            up: &b.up,
            down: &b.down,
        });
        self.q8 = Q8Llama::new(
            blocks,
            self.output.as_ref().map(VocabHead::whole),
            self.embedding.whole(),
        )
        .map(Arc::new);
        self.q8.is_some()
    }
    /// The Q8_0 snapshot, when there is one and a product has at most
    /// [`Q8_MAX_ROWS`] rows: decoding steps and short prompts. Longer prompts and scored
    /// sequences keep the f32 weights, whose blocked GEMM reads each weight once for many
    /// rows and runs faster than byte products there (measured in benches/README.md).
    fn q8_for(&self, rows: usize) -> Option<&Q8Llama> {
        self.q8.as_deref().filter(|_| rows <= Q8_MAX_ROWS)
    }
    /// Whether any projection has a LoRA adapter.
    pub fn has_lora(&self) -> bool {
        self.blocks.iter().any(|b| !b.lora.is_empty())
    }

    /// Freezes every weight and puts fresh LoRA adapters on the projections `config` names
    /// (drawn from the backend's RNG; `B` starts at zero, so outputs do not change). Only the
    /// adapters then get gradients. Replaces adapters already there.
    pub fn add_lora(self, config: &LoraConfig) -> Self {
        let mut model = self.no_grad();
        model.q8 = None;
        let device = model.embedding.device();
        let (rank, scale) = (config.rank, config.scale());
        let make = |name: &str, linear: &Linear<B>| {
            config.targets(name).then(|| {
                let [d_in, d_out] = linear.weight.dims();
                Lora::new(d_in, d_out, rank, scale, &device)
            })
        };
        for block in &mut model.blocks {
            block.lora = BlockAdapters {
                query: make("q_proj", &block.query),
                key: make("k_proj", &block.key),
                value: make("v_proj", &block.value),
                output: make("o_proj", &block.output),
                gate: make("gate_proj", &block.gate),
                up: make("up_proj", &block.up),
                down: make("down_proj", &block.down),
            };
        }
        model
    }

    /// A copy of every block's adapters (what an adapter training checkpoint saves).
    pub fn adapters(&self) -> Vec<BlockAdapters<B>> {
        self.blocks.iter().map(|b| b.lora.clone()).collect()
    }

    /// Puts adapters (from [`Llama::adapters`]) back on the blocks, in order.
    pub fn set_adapters(&mut self, adapters: Vec<BlockAdapters<B>>) {
        self.q8 = None;
        for (block, adapters) in self.blocks.iter_mut().zip(adapters) {
            block.lora = adapters;
        }
    }

    /// Adds every adapter into its projection's weight and removes the adapters: the same
    /// function as a plain model.
    pub fn merge_lora(mut self) -> Self {
        self.q8 = None;
        for block in &mut self.blocks {
            let adapters = std::mem::replace(&mut block.lora, BlockAdapters::none());
            for (linear, lora) in [
                (&mut block.query, adapters.query),
                (&mut block.key, adapters.key),
                (&mut block.value, adapters.value),
                (&mut block.output, adapters.output),
                (&mut block.gate, adapters.gate),
                (&mut block.up, adapters.up),
                (&mut block.down, adapters.down),
            ] {
                if let Some(lora) = lora {
                    let merged = linear.weight.val() + lora.delta();
                    linear.weight = Param::from_tensor(merged);
                }
            }
        }
        self
    }

    /// Goes back to f32 projections.
    pub fn drop_q8(&mut self) {
        self.q8 = None;
    }
    /// Whether forward passes use Q8_0 projections.
    pub fn is_q8(&self) -> bool {
        self.q8.is_some()
    }
    pub fn embedding(&self) -> &TokenTable<B> {
        &self.embedding
    }
    /// (Mutable access drops the Q8_0 snapshot, which would go stale.)
    pub fn embedding_mut(&mut self) -> &mut TokenTable<B> {
        self.q8 = None;
        &mut self.embedding
    }
    pub fn blocks(&self) -> &[LlamaBlock<B>] {
        &self.blocks
    }
    /// (Mutable access drops the Q8_0 snapshot, which would go stale.)
    pub fn blocks_mut(&mut self) -> &mut [LlamaBlock<B>] {
        self.q8 = None;
        &mut self.blocks
    }
    pub fn final_norm(&self) -> &RmsNorm<B> {
        &self.norm
    }
    pub fn final_norm_mut(&mut self) -> &mut RmsNorm<B> {
        &mut self.norm
    }
    /// The untied output head, if the model has one.
    pub fn output_head(&self) -> Option<&VocabHead<B>> {
        self.output.as_ref()
    }
    /// (Mutable access drops the Q8_0 snapshot, which would go stale.)
    pub fn output_head_mut(&mut self) -> Option<&mut VocabHead<B>> {
        self.q8 = None;
        self.output.as_mut()
    }
}

/// Loads a Llama model from a GGUF file, dequantizing every tensor to f32.
pub fn load_gguf<B: Backend>(
    file: &GgufFile,
    device: &B::Device,
) -> Result<(LlamaConfig, Llama<B>), LmError> {
    let config = LlamaConfig::from_gguf(file)?;
    let mut model = config.init::<B>(device);
    let err = |name: &str, message: String| LmError::Checkpoint {
        path: file.path.clone(),
        message: format!("tensor `{name}`: {message}"),
    };
    // GGUF stores a 2-D weight as `out` rows of `in` values; burn's Linear wants `[in, out]`.
    let matrix = |name: &str, rows: usize, cols: usize| -> Result<Tensor<B, 2>, LmError> {
        let (values, dims) = file.tensor_f32(name)?;
        if dims != [cols, rows] {
            return Err(err(
                name,
                format!("has shape {dims:?}, expected [{cols}, {rows}]"),
            ));
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [rows, cols]),
            device,
        ))
    };
    let vector = |name: &str, len: usize| -> Result<Tensor<B, 1>, LmError> {
        let (values, dims) = file.tensor_f32(name)?;
        if dims != [len] {
            return Err(err(name, format!("has shape {dims:?}, expected [{len}]")));
        }
        Ok(Tensor::from_data(TensorData::new(values, [len]), device))
    };
    let linear = |name: &str, d_in: usize, d_out: usize| -> Result<Param<Tensor<B, 2>>, LmError> {
        Ok(Param::from_tensor(matrix(name, d_out, d_in)?.transpose()))
    };
    let (d, q_dim, kv_dim) = (
        config.d_model,
        config.heads * config.head_dim,
        config.kv_heads * config.head_dim,
    );
    let (values, dims) = file.tensor_f32("token_embd.weight")?;
    if dims != [d, config.vocab_size] {
        return Err(err(
            "token_embd.weight",
            format!("has shape {dims:?}, expected [{d}, {}]", config.vocab_size),
        ));
    }
    model.embedding = TokenTable::from_values(
        values,
        config.vocab_size,
        d,
        weight_bytes_limit::<B>(),
        device,
    );
    for (i, block) in model.blocks.iter_mut().enumerate() {
        let name = |part: &str| format!("blk.{i}.{part}.weight");
        block.attention_norm.gamma = Param::from_tensor(vector(&name("attn_norm"), d)?);
        block.query.weight = linear(&name("attn_q"), d, q_dim)?;
        block.key.weight = linear(&name("attn_k"), d, kv_dim)?;
        block.value.weight = linear(&name("attn_v"), d, kv_dim)?;
        block.output.weight = linear(&name("attn_output"), q_dim, d)?;
        if config.qkv_bias {
            let bias = |part: &str, len: usize| -> Result<_, LmError> {
                Ok(Some(Param::from_tensor(vector(
                    &format!("blk.{i}.{part}.bias"),
                    len,
                )?)))
            };
            block.query.bias = bias("attn_q", q_dim)?;
            block.key.bias = bias("attn_k", kv_dim)?;
            block.value.bias = bias("attn_v", kv_dim)?;
        }
        block.mlp_norm.gamma = Param::from_tensor(vector(&name("ffn_norm"), d)?);
        // Gemma 3 (llama.cpp's converter has added Gemma's `1 +` to these norm weights).
        let dh = config.head_dim;
        for (norm, part, len) in [
            (&mut block.query_norm, "attn_q_norm", dh),
            (&mut block.key_norm, "attn_k_norm", dh),
            (&mut block.post_attention_norm, "post_attention_norm", d),
            (&mut block.post_mlp_norm, "post_ffw_norm", d),
        ] {
            if let Some(norm) = norm.as_mut() {
                norm.gamma = Param::from_tensor(vector(&name(part), len)?);
            }
        }
        block.gate.weight = linear(&name("ffn_gate"), d, config.d_ff)?;
        block.up.weight = linear(&name("ffn_up"), d, config.d_ff)?;
        block.down.weight = linear(&name("ffn_down"), config.d_ff, d)?;
    }
    model.norm.gamma = Param::from_tensor(vector("output_norm.weight", d)?);
    if let Some(head) = model.output.as_mut() {
        let (values, dims) = file.tensor_f32("output.weight")?;
        if dims != [d, config.vocab_size] {
            return Err(err(
                "output.weight",
                format!("has shape {dims:?}, expected [{d}, {}]", config.vocab_size),
            ));
        }
        *head = VocabHead::from_rows(
            values,
            config.vocab_size,
            d,
            weight_bytes_limit::<B>(),
            device,
        );
    }
    Ok((config, model))
}

#[cfg(test)]
mod tests {
    use super::{rope_inverse_frequencies, RopeScaling};

    /// llama.cpp's converter stores Llama 3.1's scaling as a divisor per frequency
    /// (`rope_freqs.weight`: 1 for short wavelengths, `factor` for long ones, and
    /// `1 / ((1 − smooth) / factor + smooth)` between); read back, they give the frequencies
    /// Hugging Face's `llama3` formula gives.
    #[test]
    fn gguf_rope_divisors_give_llama3_frequencies() {
        let (theta, head_dim) = (500_000.0, 128);
        let (factor, low, high, old) = (8.0, 1.0, 4.0, 8192.0);
        let divisors: Vec<f32> = rope_inverse_frequencies(theta, head_dim, None)
            .into_iter()
            .map(|inv| {
                let wavelength = 2.0 * std::f64::consts::PI / inv;
                if wavelength < old / high {
                    1.0
                } else if wavelength > old / low {
                    factor as f32
                } else {
                    let smooth = (old / wavelength - low) / (high - low);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect();
        let llama3 = RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old as usize,
        };
        let expected = rope_inverse_frequencies(theta, head_dim, Some(&llama3));
        let got =
            rope_inverse_frequencies(theta, head_dim, Some(&RopeScaling::Divisors { divisors }));
        // All three regimes occur at these settings.
        let plain = rope_inverse_frequencies(theta, head_dim, None);
        assert!(expected.iter().zip(&plain).any(|(e, p)| e == p));
        assert!(expected
            .iter()
            .zip(&plain)
            .any(|(e, p)| (e * factor - p).abs() < 1e-12 * p));
        for ((g, e), p) in got.iter().zip(&expected).zip(&plain) {
            assert!((g - e).abs() <= 1e-6 * p, "{g} vs {e}");
        }
        // A Hugging Face config round-trips.
        let back = RopeScaling::from_hf(&llama3.to_hf().unwrap()).unwrap();
        assert_eq!(back, Some(llama3));
    }
}
