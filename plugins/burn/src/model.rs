//! The causal-LM interface every burn model implements, and the tiny transformer of the
//! quickstart. Sampling, log-probs, supervised warm start and the RCO trainer are written
//! once against [`CausalLm`].

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use serde::{Deserialize, Serialize};

/// A decoder-only language model: token logits for a batch of sequences.
pub trait CausalLm<B: Backend>: Module<B> + Send + 'static {
    /// Logits `[batch, time, vocab]` for `tokens [batch, time]`. `positions [batch, time]`
    /// gives each token's position in its own sequence (rows may be left-padded);
    /// `attention_mask [batch, 1, time, time]` is 0 where a query may look and a large
    /// negative number elsewhere (causal and padding masking).
    fn logits(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
    ) -> Tensor<B, 3> {
        self.logits_cached(tokens, positions, attention_mask, &mut KvCache::default())
    }

    /// Logits for new tokens after the ones whose keys and values `cache` holds, which it
    /// then holds too. `attention_mask [batch, 1, new, cached + new]`.
    fn logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3>;

    /// The longest sequence the model can read.
    fn max_len(&self) -> usize;
}

/// Keys and values `[batch, kv_heads, time, head_dim]` of every layer, for decoding one
/// token at a time without recomputing the prefix.
#[derive(Debug, Default)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    /// Appends a layer's new keys and values; returns all of them.
    pub fn extend(
        &mut self,
        layer: usize,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        if self.layers.len() <= layer {
            self.layers.resize_with(layer + 1, || None);
        }
        let all = match self.layers[layer].take() {
            Some((k, v)) => (
                Tensor::cat(vec![k, keys], 2),
                Tensor::cat(vec![v, values], 2),
            ),
            None => (keys, values),
        };
        self.layers[layer] = Some(all.clone());
        all
    }

    /// Keeps only the given batch rows (rows that finished decoding are dropped).
    pub fn retain_rows(&mut self, rows: &[usize], device: &B::Device) {
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i32).collect::<Vec<_>>(),
                [rows.len()],
            ),
            device,
        );
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index.clone());
        }
    }
}

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
        if self.d_model == 0 || self.heads == 0 || self.d_model % self.heads != 0 {
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
