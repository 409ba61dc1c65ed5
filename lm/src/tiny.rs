//! The tiny pre-LayerNorm transformer decoder of the quickstart critic: learned absolute
//! positions, character tokens, stored as a [`crate::checkpoint`] directory.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use serde::{Deserialize, Serialize};

use crate::model::{CausalLm, KvCache};

/// Size of a tiny pre-LayerNorm transformer decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TinyLmConfig {
    /// Vocabulary size (set from the tokenizer).
    #[serde(default)]
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Attention heads (divides `d_model`).
    pub heads: usize,
    /// Decoder blocks.
    pub layers: usize,
    /// Hidden width of each block's MLP.
    pub d_ff: usize,
    /// Longest sequence (learned absolute positions).
    pub max_len: usize,
}

impl Default for TinyLmConfig {
    fn default() -> Self {
        Self {
            vocab_size: 0,
            d_model: 64,
            heads: 4,
            layers: 2,
            d_ff: 256,
            max_len: 48,
        }
    }
}

impl TinyLmConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> TinyLm<B> {
        TinyLm {
            token_embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            position_embedding: EmbeddingConfig::new(self.max_len, self.d_model).init(device),
            blocks: (0..self.layers)
                .map(|_| Block {
                    attention_norm: LayerNormConfig::new(self.d_model).init(device),
                    query: LinearConfig::new(self.d_model, self.d_model).init(device),
                    key: LinearConfig::new(self.d_model, self.d_model).init(device),
                    value: LinearConfig::new(self.d_model, self.d_model).init(device),
                    output: LinearConfig::new(self.d_model, self.d_model).init(device),
                    mlp_norm: LayerNormConfig::new(self.d_model).init(device),
                    mlp_in: LinearConfig::new(self.d_model, self.d_ff).init(device),
                    mlp_out: LinearConfig::new(self.d_ff, self.d_model).init(device),
                    heads: self.heads,
                })
                .collect(),
            final_norm: LayerNormConfig::new(self.d_model).init(device),
            head: LinearConfig::new(self.d_model, self.vocab_size).init(device),
            max_len: self.max_len,
        }
    }

    pub fn problems(&self) -> Vec<rco_core::ConfigProblem> {
        let mut p = Vec::new();
        if self.d_model == 0 || self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            p.push(rco_core::ConfigProblem::new(
                "heads",
                format!("{} heads must divide d_model {}", self.heads, self.d_model),
            ));
        }
        if self.layers == 0 || self.d_ff == 0 || self.max_len < 8 {
            p.push(rco_core::ConfigProblem::new(
                "layers",
                "layers and d_ff must be positive and max_len at least 8",
            ));
        }
        p
    }
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    attention_norm: LayerNorm<B>,
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    output: Linear<B>,
    mlp_norm: LayerNorm<B>,
    mlp_in: Linear<B>,
    mlp_out: Linear<B>,
    heads: usize,
}

impl<B: Backend> Block<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
        layer: usize,
    ) -> Tensor<B, 3> {
        let [batch, time, d_model] = x.dims();
        let head_dim = d_model / self.heads;
        let h = self.attention_norm.forward(x.clone());
        let split = |t: Tensor<B, 3>| {
            t.reshape([batch, time, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(h.clone()));
        let k = split(self.key.forward(h.clone()));
        let v = split(self.value.forward(h));
        let (k, v) = cache.extend(layer, k, v);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f32).sqrt())
            + mask;
        let context = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, time, d_model]);
        let x = x + self.output.forward(context);
        let h = self.mlp_norm.forward(x.clone());
        x + self.mlp_out.forward(gelu(self.mlp_in.forward(h)))
    }
}

/// A tiny transformer decoder with learned absolute positions.
#[derive(Module, Debug)]
pub struct TinyLm<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: Embedding<B>,
    blocks: Vec<Block<B>>,
    final_norm: LayerNorm<B>,
    head: Linear<B>,
    max_len: usize,
}

impl<B: Backend> CausalLm<B> for TinyLm<B> {
    fn logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let mut x =
            self.token_embedding.forward(tokens) + self.position_embedding.forward(positions);
        for (layer, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, attention_mask.clone(), cache, layer);
        }
        self.head.forward(self.final_norm.forward(x))
    }

    fn max_len(&self) -> usize {
        self.max_len
    }
}
