//! The DeBERTa-v2/v3 encoder (Hugging Face's `DebertaV2Model`), generic over the backend:
//! token embeddings with LayerNorm, then layers of disentangled self-attention — the
//! content-to-content score plus content-to-position (`c2p`) and position-to-content (`p2c`)
//! scores against shared, log-bucketed relative position embeddings — each followed by a
//! GELU feed-forward block, both with post-LayerNorm residuals.
//!
//! Configured from the checkpoint's `config.json` and read from its weights by the Hugging
//! Face tensor names under a prefix (`pretrained_model.` in PairRM). What this encoder does
//! not implement (the convolution layer of DeBERTa-v2-xlarge, activations other than GELU) is
//! an error that names the key.

use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use serde_json::Value;

use crate::model::project;
use crate::weights::Weights;
use crate::LmError;

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The size and conventions of a DeBERTa-v2/v3 checkpoint, from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DebertaConfig {
    pub vocab_size: usize,
    /// `embedding_size` (the hidden size unless the config says otherwise).
    pub embedding_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub layer_norm_eps: f64,
    /// Absolute position embeddings added to the input (`position_biased_input`).
    pub max_position_embeddings: usize,
    pub position_biased_input: bool,
    pub type_vocab_size: usize,
    pub relative_attention: bool,
    /// `position_buckets` (0: relative distances are not bucketed).
    pub position_buckets: usize,
    /// `max_relative_positions` (the maximum position when it is unset or below 1).
    pub max_relative_positions: usize,
    pub c2p: bool,
    pub p2c: bool,
    /// The attention's query and key projections also project the position embeddings.
    pub share_att_key: bool,
    /// The relative position embeddings go through a LayerNorm (`norm_rel_ebd`).
    pub norm_rel_embeddings: bool,
    pub pad_token_id: u32,
}

impl DebertaConfig {
    /// Reads a `config.json` value; `path` names the file in errors.
    pub fn from_json(hf: &Value, path: &Path) -> Result<Self, LmError> {
        let n = |key: &str| {
            hf[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| err(path, format!("`{key}` is missing or not an integer")))
        };
        let int = |key: &str, default: i64| hf.get(key).and_then(Value::as_i64).unwrap_or(default);
        let model_type = hf["model_type"].as_str().unwrap_or("?");
        if model_type != "deberta-v2" {
            return Err(err(
                path,
                format!("model_type `{model_type}` is not a DeBERTa-v2/v3 encoder (`deberta-v2`)"),
            ));
        }
        if int("conv_kernel_size", 0) > 0 {
            return Err(err(
                path,
                "`conv_kernel_size`: the convolution layer of DeBERTa-v2-xlarge is not supported",
            ));
        }
        let act = hf["hidden_act"].as_str().unwrap_or("gelu");
        if act != "gelu" {
            return Err(err(
                path,
                format!("`hidden_act` `{act}` is not supported (supported: gelu)"),
            ));
        }
        let hidden_size = n("hidden_size")?;
        let heads = n("num_attention_heads")?;
        if heads == 0 || hidden_size % heads != 0 {
            return Err(err(
                path,
                format!("`hidden_size` {hidden_size} is not a multiple of `num_attention_heads` {heads}"),
            ));
        }
        let head_dim = n("attention_head_size").unwrap_or(hidden_size / heads);
        let max_position_embeddings = n("max_position_embeddings")?;
        let relative_attention = hf["relative_attention"].as_bool().unwrap_or(false);
        let max_relative_positions = match int("max_relative_positions", -1) {
            m if m < 1 => max_position_embeddings,
            m => m as usize,
        };
        let position_buckets = int("position_buckets", -1).max(0) as usize;
        // `pos_att_type` is a list (`["p2c", "c2p"]`) or a `|`-separated string.
        let kinds: Vec<String> = match &hf["pos_att_type"] {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_lowercase())
                .collect(),
            Value::String(s) => s.split('|').map(|s| s.trim().to_lowercase()).collect(),
            _ => Vec::new(),
        };
        if let Some(other) = kinds
            .iter()
            .find(|k| !["c2p", "p2c", ""].contains(&k.as_str()))
        {
            return Err(err(
                path,
                format!("`pos_att_type` `{other}` is not supported (supported: c2p, p2c)"),
            ));
        }
        let norm = hf["norm_rel_ebd"].as_str().unwrap_or("none").to_lowercase();
        Ok(Self {
            vocab_size: n("vocab_size")?,
            embedding_size: n("embedding_size").unwrap_or(hidden_size),
            hidden_size,
            layers: n("num_hidden_layers")?,
            heads,
            head_dim,
            intermediate_size: n("intermediate_size")?,
            layer_norm_eps: hf["layer_norm_eps"].as_f64().unwrap_or(1e-7),
            max_position_embeddings,
            position_biased_input: hf["position_biased_input"].as_bool().unwrap_or(true),
            type_vocab_size: n("type_vocab_size").unwrap_or(0),
            relative_attention,
            position_buckets,
            max_relative_positions,
            c2p: kinds.iter().any(|k| k == "c2p"),
            p2c: kinds.iter().any(|k| k == "p2c"),
            share_att_key: hf["share_att_key"].as_bool().unwrap_or(false),
            norm_rel_embeddings: norm.split('|').any(|s| s.trim() == "layer_norm"),
            pad_token_id: int("pad_token_id", 0).max(0) as u32,
        })
    }

    /// microsoft/deberta-v3-large's config, which llm-blender's own PairRM directory leaves
    /// out (its `config.json` is llm-blender's ranker config naming that model).
    pub fn deberta_v3_large(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            embedding_size: 1024,
            hidden_size: 1024,
            layers: 24,
            heads: 16,
            head_dim: 64,
            intermediate_size: 4096,
            layer_norm_eps: 1e-7,
            max_position_embeddings: 512,
            position_biased_input: false,
            type_vocab_size: 0,
            relative_attention: true,
            position_buckets: 256,
            max_relative_positions: 512,
            c2p: true,
            p2c: true,
            share_att_key: true,
            norm_rel_embeddings: true,
            pad_token_id: 0,
        }
    }

    /// The number of relative distances on each side (`att_span`).
    pub fn attention_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }
}

/// Hugging Face's `make_log_bucket_position` for one relative distance, in f32 as PyTorch
/// computes it: distances within half the buckets stay as they are, longer ones share
/// logarithmically wider buckets up to `max_position`.
pub fn log_bucket(relative: i64, buckets: usize, max_position: usize) -> i64 {
    let mid = (buckets / 2) as i64;
    let abs = if relative < mid && relative > -mid {
        mid - 1
    } else {
        relative.abs()
    };
    if abs <= mid {
        return relative;
    }
    let ratio = (abs as f32 / mid as f32).ln() / (((max_position - 1) as f32) / mid as f32).ln();
    let log_pos = (ratio * (mid - 1) as f32).ceil() + mid as f32;
    (log_pos as i64) * relative.signum()
}

/// The relative position of query `i` to key `j`: `i − j`, log-bucketed when `buckets` > 0.
pub fn relative_position(buckets: usize, max_position: usize, i: usize, j: usize) -> i64 {
    let relative = i as i64 - j as i64;
    if buckets > 0 && max_position > 0 {
        log_bucket(relative, buckets, max_position)
    } else {
        relative
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct DebertaLayer<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    /// Separate position projections (`share_att_key = false`).
    pub pos_key: Option<Linear<B>>,
    pub pos_query: Option<Linear<B>>,
    pub attention_output: Linear<B>,
    pub attention_norm: LayerNorm<B>,
    pub intermediate: Linear<B>,
    pub output: Linear<B>,
    pub output_norm: LayerNorm<B>,
}

/// The encoder.
#[derive(Module, Debug)]
pub struct Deberta<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Option<Embedding<B>>,
    pub token_type_embeddings: Option<Embedding<B>>,
    pub embed_proj: Option<Linear<B>>,
    pub embedding_norm: LayerNorm<B>,
    pub layers: Vec<DebertaLayer<B>>,
    /// `[2 · attention span, hidden]`.
    pub rel_embeddings: Option<Param<Tensor<B, 2>>>,
    pub rel_norm: Option<LayerNorm<B>>,
    #[module(skip)]
    pub config: DebertaConfigRecord,
}

/// The parts of [`DebertaConfig`] the forward pass reads (kept beside the weights).
#[derive(Debug, Clone, Default)]
pub struct DebertaConfigRecord {
    pub heads: usize,
    pub head_dim: usize,
    pub span: usize,
    pub buckets: usize,
    pub max_relative_positions: usize,
    pub relative_attention: bool,
    pub c2p: bool,
    pub p2c: bool,
}

impl<B: Backend> Deberta<B> {
    /// Loads the encoder's tensors named `{prefix}embeddings.…` and `{prefix}encoder.…`.
    pub fn load(
        config: &DebertaConfig,
        weights: &Weights,
        prefix: &str,
        device: &B::Device,
    ) -> Result<Self, LmError> {
        let (d, e, h) = (
            config.hidden_size,
            config.embedding_size,
            config.heads * config.head_dim,
        );
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Tensor<B, 2>, LmError> {
            let values = weights.tensor(&format!("{prefix}{name}"), &[rows, cols])?;
            Ok(Tensor::from_data(
                TensorData::new(values, [rows, cols]),
                device,
            ))
        };
        let vector = |name: &str, len: usize| -> Result<Tensor<B, 1>, LmError> {
            let values = weights.tensor(&format!("{prefix}{name}"), &[len])?;
            Ok(Tensor::from_data(TensorData::new(values, [len]), device))
        };
        // Hugging Face `Linear`: weight `[out, in]`, burn's: `[in, out]`.
        let linear =
            |name: &str, d_in: usize, d_out: usize, bias: bool| -> Result<Linear<B>, LmError> {
                let mut layer = LinearConfig::new(d_in, d_out)
                    .with_bias(bias)
                    .init::<B>(device);
                layer.weight =
                    Param::from_tensor(matrix(&format!("{name}.weight"), d_out, d_in)?.transpose());
                if bias {
                    layer.bias = Some(Param::from_tensor(vector(&format!("{name}.bias"), d_out)?));
                }
                Ok(layer)
            };
        // Old DeBERTa checkpoints name LayerNorm parameters gamma/beta.
        let norm = |name: &str| -> Result<LayerNorm<B>, LmError> {
            let mut layer = LayerNormConfig::new(d)
                .with_epsilon(config.layer_norm_eps)
                .init::<B>(device);
            let full = format!("{prefix}{name}");
            let (w, b) = if weights.has(&format!("{full}.gamma")) {
                ("gamma", "beta")
            } else {
                ("weight", "bias")
            };
            layer.gamma = Param::from_tensor(vector(&format!("{name}.{w}"), d)?);
            layer.beta = Some(Param::from_tensor(vector(&format!("{name}.{b}"), d)?));
            Ok(layer)
        };
        let embedding = |name: &str, rows: usize| -> Result<Embedding<B>, LmError> {
            let mut layer = EmbeddingConfig::new(rows, e).init::<B>(device);
            layer.weight = Param::from_tensor(matrix(name, rows, e)?);
            Ok(layer)
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = |name: &str| format!("encoder.layer.{i}.{name}");
            let separate = config.relative_attention && !config.share_att_key;
            layers.push(DebertaLayer {
                query: linear(&p("attention.self.query_proj"), d, h, true)?,
                key: linear(&p("attention.self.key_proj"), d, h, true)?,
                value: linear(&p("attention.self.value_proj"), d, h, true)?,
                pos_key: if separate && config.c2p {
                    Some(linear(&p("attention.self.pos_key_proj"), d, h, true)?)
                } else {
                    None
                },
                pos_query: if separate && config.p2c {
                    Some(linear(&p("attention.self.pos_query_proj"), d, h, true)?)
                } else {
                    None
                },
                attention_output: linear(&p("attention.output.dense"), h, d, true)?,
                attention_norm: norm(&p("attention.output.LayerNorm"))?,
                intermediate: linear(&p("intermediate.dense"), d, config.intermediate_size, true)?,
                output: linear(&p("output.dense"), config.intermediate_size, d, true)?,
                output_norm: norm(&p("output.LayerNorm"))?,
            });
        }
        let span = config.attention_span();
        let rel_embeddings = if config.relative_attention {
            let name = format!("{prefix}encoder.rel_embeddings.weight");
            let rows = weights.shape(&name).map_or(2 * span, |s| s[0]);
            if rows < 2 * span {
                return Err(LmError::Checkpoint {
                    path: std::path::PathBuf::from(&name),
                    message: format!("has {rows} rows, the attention span needs {}", 2 * span),
                });
            }
            let all = matrix("encoder.rel_embeddings.weight", rows, d)?;
            Some(Param::from_tensor(all.slice([0..2 * span, 0..d])))
        } else {
            None
        };
        Ok(Self {
            word_embeddings: embedding("embeddings.word_embeddings.weight", config.vocab_size)?,
            position_embeddings: if config.position_biased_input {
                Some(embedding(
                    "embeddings.position_embeddings.weight",
                    config.max_position_embeddings,
                )?)
            } else {
                None
            },
            token_type_embeddings: if config.type_vocab_size > 0 {
                Some(embedding(
                    "embeddings.token_type_embeddings.weight",
                    config.type_vocab_size,
                )?)
            } else {
                None
            },
            embed_proj: if e != d {
                Some(linear("embeddings.embed_proj", e, d, false)?)
            } else {
                None
            },
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            rel_norm: if config.relative_attention && config.norm_rel_embeddings {
                Some(norm("encoder.LayerNorm")?)
            } else {
                None
            },
            rel_embeddings,
            config: DebertaConfigRecord {
                heads: config.heads,
                head_dim: config.head_dim,
                span,
                buckets: config.position_buckets,
                max_relative_positions: config.max_relative_positions,
                relative_attention: config.relative_attention,
                c2p: config.c2p,
                p2c: config.p2c,
            },
        })
    }

    /// The last layer's hidden states `[batch, time, hidden]` of token ids `[batch, time]`
    /// whose real tokens are marked 1 in `mask` (0 for padding; any padding side).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, mask: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let c = &self.config;
        let mut x = self.word_embeddings.forward(tokens.clone());
        if let Some(positions) = &self.position_embeddings {
            let ids = Tensor::<B, 1, Int>::arange(0..t as i64, &device)
                .reshape([1, t])
                .expand([b, t]);
            x = x + positions.forward(ids);
        }
        if let Some(types) = &self.token_type_embeddings {
            x = x + types.forward(Tensor::<B, 2, Int>::zeros([b, t], &device));
        }
        if let Some(proj) = &self.embed_proj {
            x = project(proj, x);
        }
        let row_mask = mask.clone().reshape([b, t, 1]);
        let mut x = self.embedding_norm.forward(x) * row_mask;
        // Padded keys get no weight; padded queries' rows are zeroed after the softmax, as
        // DeBERTa's masked softmax does.
        let key_mask = (mask.clone() - 1.0).reshape([b, 1, 1, t]) * 1e30;
        let query_mask = mask.reshape([b, 1, t, 1]);
        let relative = self.relative_indices(t, &device);
        let rel = self.rel_embeddings.as_ref().map(|rel| {
            let rel = rel.val();
            match &self.rel_norm {
                Some(norm) => norm.forward(rel),
                None => rel,
            }
        });
        let factor = 1
            + usize::from(c.relative_attention && c.c2p)
            + usize::from(c.relative_attention && c.p2c);
        let scale = ((c.head_dim * factor) as f64).sqrt();
        for layer in &self.layers {
            let heads = |y: Tensor<B, 3>| y.reshape([b, t, c.heads, c.head_dim]).swap_dims(1, 2);
            let q = heads(project(&layer.query, x.clone()));
            let k = heads(project(&layer.key, x.clone()));
            let v = heads(project(&layer.value, x.clone()));
            let mut scores = q.clone().matmul(k.clone().swap_dims(2, 3));
            if let (Some(rel), Some((c2p_index, p2c_index))) = (&rel, &relative) {
                let span2 = 2 * c.span;
                // `[1, heads, 2·span, head_dim]` position keys and queries.
                let positions = |linear: &Linear<B>| {
                    linear
                        .forward(rel.clone())
                        .reshape([1, span2, c.heads, c.head_dim])
                        .swap_dims(1, 2)
                };
                if c.c2p {
                    let pos_key = positions(layer.pos_key.as_ref().unwrap_or(&layer.key));
                    // score[i, r] = q_i · pos_key_r, then picked at r = bucket(i − j) + span.
                    let by_distance = q.clone().matmul(pos_key.swap_dims(2, 3));
                    scores = scores
                        + by_distance.gather(3, c2p_index.clone().expand([b, c.heads, t, t]));
                }
                if c.p2c {
                    let pos_query = positions(layer.pos_query.as_ref().unwrap_or(&layer.query));
                    // score[j, r] = k_j · pos_query_r, picked at r = span − bucket(j − i), then
                    // transposed to [i, j].
                    let by_distance = k.clone().matmul(pos_query.swap_dims(2, 3));
                    scores = scores
                        + by_distance
                            .gather(3, p2c_index.clone().expand([b, c.heads, t, t]))
                            .swap_dims(2, 3);
                }
            }
            let scores = scores / scale + key_mask.clone();
            let weights = softmax(scores, 3) * query_mask.clone();
            let context = weights
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, t, c.heads * c.head_dim]);
            let attended = layer
                .attention_norm
                .forward(project(&layer.attention_output, context) + x);
            let inner = gelu(project(&layer.intermediate, attended.clone()));
            x = layer
                .output_norm
                .forward(project(&layer.output, inner) + attended);
        }
        x
    }

    /// The gather indices of the c2p and p2c scores, `[1, 1, time, time]` each.
    fn relative_indices(
        &self,
        t: usize,
        device: &B::Device,
    ) -> Option<(Tensor<B, 4, Int>, Tensor<B, 4, Int>)> {
        let c = &self.config;
        if !c.relative_attention {
            return None;
        }
        let span = c.span as i64;
        let clamp = |v: i64| v.clamp(0, 2 * span - 1);
        let mut c2p = Vec::with_capacity(t * t);
        let mut p2c = Vec::with_capacity(t * t);
        for i in 0..t {
            for j in 0..t {
                let r = relative_position(c.buckets, c.max_relative_positions, i, j);
                c2p.push(clamp(r + span));
                p2c.push(clamp(span - r));
            }
        }
        let index = |values: Vec<i64>| {
            Tensor::<B, 1, Int>::from_data(TensorData::new(values, [t * t]), device)
                .reshape([1, 1, t, t])
        };
        Some((index(c2p), index(p2c)))
    }
}

#[cfg(test)]
mod tests {
    use super::log_bucket;

    #[test]
    fn log_buckets_keep_near_distances_and_compress_far_ones() {
        // DeBERTa-v3's settings: 256 buckets, 512 positions.
        for r in -128..=128 {
            assert_eq!(log_bucket(r, 256, 512), r);
        }
        assert_eq!(log_bucket(129, 256, 512), 129);
        assert_eq!(log_bucket(-129, 256, 512), -129);
        // The farthest distance lands in the last bucket, and buckets only grow.
        assert_eq!(log_bucket(511, 256, 512), 255);
        let mut last = 0;
        for r in 0..2000 {
            let b = log_bucket(r, 256, 512);
            assert!(b >= last);
            last = b;
        }
    }
}
