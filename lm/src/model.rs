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

    /// [`CausalLm::logits_cached`] at the last position only: `[batch, vocab]` (what
    /// sampling needs after reading a prompt; a model may skip the head elsewhere).
    fn last_logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 2> {
        let logits = self.logits_cached(tokens, positions, attention_mask, cache);
        let [b, t, vocab] = logits.dims();
        logits.slice([0..b, t - 1..t, 0..vocab]).reshape([b, vocab])
    }

    /// Log-probabilities `[positions]` of `targets` at the flat positions `at` (indices into
    /// the `batch·time` positions, row after row), from a forward pass over whole sequences
    /// as [`CausalLm::logits`] takes them: what log-probs of completions need. A model may
    /// run its head at those positions alone, a few at a time, where the
    /// `[batch, time, vocab]` logits of a large vocabulary would take gigabytes.
    fn target_log_probs(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        at: Tensor<B, 1, Int>,
        targets: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        let logits = self.logits(tokens, positions, attention_mask);
        let [b, t, vocab] = logits.dims();
        picked_log_probs(logits.reshape([b * t, vocab]).select(0, at), targets)
    }

    /// The longest sequence the model can read.
    fn max_len(&self) -> usize;
}

/// Log-probabilities `[rows]` of `targets [rows]` under `logits [rows, vocab]`.
pub fn picked_log_probs<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [rows] = targets.dims();
    burn::tensor::activation::log_softmax(logits, 1)
        .gather(1, targets.reshape([rows, 1]))
        .reshape([rows])
}

/// How many positions' logits [`CausalLm::target_log_probs`] computes at a time: about
/// 256 MiB of f32 logits (441 positions of Qwen2.5's 151,936-token vocabulary), at least one.
pub fn head_chunk(vocab: usize) -> usize {
    ((256usize << 20) / (vocab.max(1) * 4)).max(1)
}

/// `linear` applied to `x [batch, time, d_in]` as one 2-D product `[batch·time, d_in]`: the
/// weight is read once for all rows, and never copied to broadcast it over the batch.
pub fn project<B: Backend>(linear: &burn::nn::Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, d] = x.dims();
    let y = linear.forward(x.reshape([b * t, d]));
    let out = y.dims()[1];
    y.reshape([b, t, out])
}

/// Keys and values `[batch, kv_heads, time, head_dim]` of every layer, for decoding one
/// token at a time without recomputing the prefix.
///
/// Each step concatenates. A buffer with room, written in place and read back as a view,
/// was measured slower on flex (SmolLM2, 256 new tokens: Q8_0 decode 98.7 against 107.6
/// tok/s at batch 1, 170.0 against 180.0 at batch 8): attention then reads a strided view,
/// which costs what the concatenation saved.
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

    /// Rows `[batch]` and time steps held (0 and 0 when empty).
    pub fn shape(&self) -> (usize, usize) {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or((0, 0), |(k, _)| (k.dims()[0], k.dims()[2]))
    }

    /// Puts `steps` empty (zero) time steps in front of every row: left padding, which the
    /// attention mask must hide.
    pub fn pad_front(&mut self, steps: usize) {
        if steps == 0 {
            return;
        }
        let pad = |x: &Tensor<B, 4>| {
            let [b, h, _, d] = x.dims();
            Tensor::cat(
                vec![Tensor::zeros([b, h, steps, d], &x.device()), x.clone()],
                2,
            )
        };
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = pad(k);
            *v = pad(v);
        }
    }

    /// Drops the first `steps` time steps of every row (padding no row needs any more).
    pub fn drop_front(&mut self, steps: usize) {
        if steps == 0 {
            return;
        }
        let cut = |x: &Tensor<B, 4>| {
            let [b, h, t, d] = x.dims();
            x.clone().slice([0..b, 0..h, steps..t, 0..d])
        };
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = cut(k);
            *v = cut(v);
        }
    }

    /// Appends the rows of `other`, which holds as many time steps as this cache.
    pub fn append_rows(&mut self, other: KvCache<B>) {
        if self.layers.iter().flatten().next().is_none() {
            *self = other;
            return;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(other.layers) {
            if let (Some((k, v)), Some((k2, v2))) = (mine.as_mut(), theirs) {
                *k = Tensor::cat(vec![k.clone(), k2], 0);
                *v = Tensor::cat(vec![v.clone(), v2], 0);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn steps(from: usize, to: usize, rows: usize) -> Tensor<B, 4> {
        let values: Vec<f32> = (0..rows)
            .flat_map(|r| {
                (from..to).flat_map(move |t| [(r * 1000 + t) as f32, -((r * 1000 + t) as f32)])
            })
            .collect();
        Tensor::from_data(
            TensorData::new(values, [rows, 1, to - from, 2]),
            &Default::default(),
        )
    }

    /// Appending step by step, growing past the room, padding, dropping and selecting rows
    /// gives what concatenation gives.
    #[test]
    fn the_cache_holds_what_concatenation_would() {
        let mut cache = KvCache::<B>::default();
        let mut expected = steps(0, 5, 3);
        let (k, _) = cache.extend(0, expected.clone(), expected.clone().neg());
        assert_eq!(k.into_data(), expected.clone().into_data());
        for t in 5..150 {
            let new = steps(t, t + 1, 3);
            expected = Tensor::cat(vec![expected, new.clone()], 2);
            let (k, v) = cache.extend(0, new.clone(), new.neg());
            assert_eq!(k.into_data(), expected.clone().into_data(), "step {t}");
            assert_eq!(
                v.into_data(),
                expected.clone().neg().into_data(),
                "step {t}"
            );
        }
        assert_eq!(cache.shape(), (3, 150));
        cache.retain_rows(&[2, 0], &Default::default());
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(vec![2i32, 0], [2]),
            &Default::default(),
        );
        expected = expected.select(0, index);
        let new = steps(150, 151, 2);
        expected = Tensor::cat(vec![expected, new.clone()], 2);
        let (k, _) = cache.extend(0, new.clone(), new.neg());
        assert_eq!(k.into_data(), expected.clone().into_data());
        assert_eq!(cache.shape(), (2, 151));
        cache.drop_front(100);
        cache.pad_front(3);
        assert_eq!(cache.shape(), (2, 54));
        let new = steps(151, 152, 2);
        let (k, _) = cache.extend(0, new.clone(), new.clone().neg());
        let [b, h, t, d] = expected.dims();
        let expected = Tensor::cat(
            vec![
                Tensor::zeros([b, h, 3, d], &Default::default()),
                expected.slice([0..b, 0..h, 100..t, 0..d]),
                new,
            ],
            2,
        );
        assert_eq!(k.into_data(), expected.into_data());
    }
}
