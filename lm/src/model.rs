//! The causal-LM interface every model here implements ([`CausalLm`]), and the key/value
//! cache of incremental decoding. Sampling, log-probs, the supervised warm start and the RCO
//! loss are written once against it.

use burn::module::Module;
use burn::prelude::*;

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
