//! Batched sampling and batched completion log-probs, written once for every [`CausalLm`].

use burn::prelude::*;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::{CausalLm, KvCache};
use crate::tokenizer::PAD;

/// Large negative number added to masked attention scores.
pub const MASKED: f32 = -1e9;

/// A left-padded batch of token rows, ready for [`CausalLm::logits`].
pub struct PaddedBatch<B: Backend> {
    pub tokens: Tensor<B, 2, Int>,
    pub positions: Tensor<B, 2, Int>,
    pub mask: Tensor<B, 4>,
    /// Padding tokens in front of each row.
    pub pads: Vec<usize>,
    pub time: usize,
}

impl<B: Backend> PaddedBatch<B> {
    /// Left-pads rows to the longest; positions count from each row's first real token.
    pub fn new(rows: &[Vec<u32>], device: &B::Device) -> Self {
        let time = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let batch = rows.len();
        let mut tokens = Vec::with_capacity(batch * time);
        let mut positions = Vec::with_capacity(batch * time);
        let mut mask = Vec::with_capacity(batch * time * time);
        let mut pads = Vec::with_capacity(batch);
        for row in rows {
            let pad = time - row.len();
            pads.push(pad);
            tokens.extend(std::iter::repeat_n(PAD as i32, pad));
            tokens.extend(row.iter().map(|&t| t as i32));
            positions.extend((0..time).map(|t| t.saturating_sub(pad) as i32));
            for query in 0..time {
                for key in 0..time {
                    let visible = key <= query && key >= pad;
                    mask.push(if visible { 0.0 } else { MASKED });
                }
            }
        }
        Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [batch, time]), device),
            positions: Tensor::from_data(TensorData::new(positions, [batch, time]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, 1, time, time]), device),
            pads,
            time,
        }
    }
}

/// Summed log-probabilities of each row's completion tokens given its prompt tokens
/// (prompt positions masked out): `[batch]`, differentiable when `B` is an autodiff backend.
/// Rows are `(prompt ids, completion ids)`; the prompt starts with BOS, the completion ends with EOS.
pub fn completion_log_probs<B: Backend, M: CausalLm<B>>(
    model: &M,
    rows: &[(Vec<u32>, Vec<u32>)],
    device: &B::Device,
) -> Tensor<B, 1> {
    let joined: Vec<Vec<u32>> = rows
        .iter()
        .map(|(p, c)| p.iter().chain(c).copied().collect())
        .collect();
    let batch = PaddedBatch::<B>::new(&joined, device);
    let time = batch.time;
    let n = rows.len();
    if time < 2 {
        return Tensor::zeros([n], device);
    }
    // Position t predicts token t + 1. Log-probs are taken at the positions that predict a
    // completion token (`at`, flat indices into `n·time`); `slot` then lays each row's
    // log-probs out as `[n, time - 1]`, the index of a picked value or `missing` (a zero)
    // at prompt and padding positions, and the rows are summed in that layout.
    let mut at = Vec::new();
    let mut targets = Vec::new();
    let mut slot = vec![None; n * (time - 1)];
    for (r, ((prompt, _), row)) in rows.iter().zip(&joined).enumerate() {
        let pad = batch.pads[r];
        for (offset, &token) in row.iter().enumerate().skip(prompt.len().max(1)) {
            let t = pad + offset; // index of the predicted token
            slot[r * (time - 1) + t - 1] = Some(at.len() as i32);
            at.push((r * time + t - 1) as i32);
            targets.push(token as i32);
        }
    }
    let picked_count = at.len();
    if picked_count == 0 {
        return Tensor::zeros([n], device);
    }
    let missing = picked_count as i32;
    let slot: Vec<i32> = slot.into_iter().map(|s| s.unwrap_or(missing)).collect();
    let at = Tensor::<B, 1, Int>::from_data(TensorData::new(at, [picked_count]), device);
    let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [picked_count]), device);
    let picked = model.target_log_probs(batch.tokens, batch.positions, batch.mask, at, targets);
    let slot = Tensor::<B, 1, Int>::from_data(TensorData::new(slot, [n * (time - 1)]), device);
    Tensor::cat(vec![picked, Tensor::zeros([1], device)], 0)
        .select(0, slot)
        .reshape([n, time - 1])
        .sum_dim(1)
        .reshape([n])
}

/// The end-of-sequence token, and the tokens sampling must never produce.
#[derive(Debug, Clone)]
pub struct StopTokens {
    pub eos: u32,
    /// Other tokens that end a row as `eos` does (Gemma's `<end_of_turn>`).
    pub ends: Vec<u32>,
    pub banned: Vec<u32>,
}

impl StopTokens {
    pub fn of(tokenizer: &crate::tokenizer::Tokenizer) -> Self {
        Self {
            eos: tokenizer.eos(),
            ends: Vec::new(),
            banned: vec![tokenizer.pad(), tokenizer.bos()],
        }
    }

    /// Whether `token` ends a row.
    pub fn ends_at(&self, token: u32) -> bool {
        token == self.eos || self.ends.contains(&token)
    }
}

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy decoding.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f64,
    /// Most tokens generated per completion.
    pub max_tokens: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 16,
        }
    }
}

impl SamplingConfig {
    pub fn problems(&self) -> Vec<rco_core::ConfigProblem> {
        let mut p = Vec::new();
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            p.push(rco_core::ConfigProblem::new(
                "temperature",
                format!("must be >= 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            p.push(rco_core::ConfigProblem::new(
                "top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        if self.max_tokens == 0 {
            p.push(rco_core::ConfigProblem::new(
                "max_tokens",
                "must be at least 1",
            ));
        }
        p
    }
}

/// Vocabularies up to this size are sampled by sorting them whole (the quickstart's
/// character models: the same draws as ever); larger ones without a full sort.
const SORTED_VOCABULARY: usize = 1024;

/// How many of the most likely tokens a top-p draw over a large vocabulary ranks before it
/// falls back to ranking them all.
const RANKED: usize = 256;

/// Draws one token id from a row of logits (`banned` ids never).
///
/// Over a large vocabulary, plain temperature sampling takes three linear passes (maximum,
/// total, draw) and top-k/top-p rank only the candidates they can keep (a partial
/// selection), instead of sorting the whole vocabulary for every token.
pub fn draw(logits: &[f32], banned: &[u32], config: &SamplingConfig, rng: &mut impl Rng) -> u32 {
    if config.temperature == 0.0 || logits.len() <= SORTED_VOCABULARY {
        return draw_sorted(logits, banned, config, rng);
    }
    let allowed = |i: usize| !banned.contains(&(i as u32));
    let scaled = |i: usize| logits[i] as f64 / config.temperature;
    if config.top_k == 0 && config.top_p >= 1.0 {
        let max = (0..logits.len())
            .filter(|&i| allowed(i))
            .map(scaled)
            .fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = (0..logits.len())
            .filter(|&i| allowed(i))
            .map(|i| (scaled(i) - max).exp())
            .sum();
        let mut u: f64 = rng.random::<f64>() * total;
        let mut last = 0;
        for i in (0..logits.len()).filter(|&i| allowed(i)) {
            let p = (scaled(i) - max).exp();
            if u < p {
                return i as u32;
            }
            u -= p;
            last = i;
        }
        return last as u32;
    }
    let keep = if config.top_k > 0 {
        config.top_k
    } else {
        RANKED
    };
    if keep.saturating_mul(4) >= logits.len() {
        return draw_sorted(logits, banned, config, rng);
    }
    // The `keep` most likely allowed tokens, most likely first (ties: lower id first).
    let mut ids: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| allowed(i as usize))
        .collect();
    if ids.len() <= keep {
        return draw_sorted(logits, banned, config, rng);
    }
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    ids.select_nth_unstable_by(keep - 1, order);
    let rest_max_below = ids[keep..].iter().map(|&i| scaled(i as usize));
    let mut top: Vec<u32> = ids[..keep].to_vec();
    top.sort_by(order);
    let max = scaled(top[0] as usize);
    // The normalizer: the kept tokens (top-k), or the whole vocabulary (top-p alone).
    let mut total: f64 = top.iter().map(|&i| (scaled(i as usize) - max).exp()).sum();
    if config.top_k == 0 {
        total += rest_max_below.map(|s| (s - max).exp()).sum::<f64>();
    }
    let mut probs: Vec<f64> = top
        .iter()
        .map(|&i| (scaled(i as usize) - max).exp() / total)
        .collect();
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        let Some(at) = probs.iter().position(|p| {
            cumulative += p;
            cumulative >= config.top_p
        }) else {
            // The nucleus is wider than the ranked candidates: rank them all.
            return draw_sorted(logits, banned, config, rng);
        };
        probs.truncate(at + 1);
        let kept: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= kept);
    }
    let mut u: f64 = rng.random();
    for (k, p) in probs.iter().enumerate() {
        if u < *p {
            return top[k];
        }
        u -= p;
    }
    top[probs.len() - 1]
}

/// [`draw`] by sorting the whole vocabulary: candidates are scanned from the most likely.
fn draw_sorted(logits: &[f32], banned: &[u32], config: &SamplingConfig, rng: &mut impl Rng) -> u32 {
    let allowed = |i: usize| !banned.contains(&(i as u32));
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .filter(|(i, _)| allowed(*i))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if config.temperature == 0.0 {
        return argmax();
    }
    let mut ranked: Vec<(usize, f64)> = logits
        .iter()
        .map(|&l| l as f64 / config.temperature)
        .enumerate()
        .filter(|(i, _)| allowed(*i))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    if config.top_k > 0 {
        ranked.truncate(config.top_k);
    }
    let max = ranked[0].1;
    let mut probs: Vec<f64> = ranked.iter().map(|(_, l)| (l - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                cumulative += p;
                cumulative >= config.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut u: f64 = rng.random();
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return ranked[i].0 as u32;
        }
        u -= p;
    }
    ranked[probs.len() - 1].0 as u32
}

/// Samples one completion per prompt (prompts start with BOS), all rows decoding together.
/// Each row draws from its own seed, so a row's text does not depend on its batch.
/// Returns completion ids without the EOS that ended them.
pub fn sample<B: Backend, M: CausalLm<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    config: &SamplingConfig,
    stop: &StopTokens,
    device: &B::Device,
) -> Vec<Vec<u32>> {
    sample_streaming(
        model,
        prompts,
        seeds,
        config,
        stop,
        device,
        &mut |_, _, _| true,
    )
}

/// [`sample`], calling `on_token(row, token, logits)` for each token as soon as it is drawn
/// (what a streaming server sends), with the row's logits it was drawn from; a row whose
/// `on_token` answers `false` stops there (a stop string met, a client gone).
pub fn sample_streaming<B: Backend, M: CausalLm<B>>(
    model: &M,
    prompts: &[Vec<u32>],
    seeds: &[u64],
    config: &SamplingConfig,
    stop: &StopTokens,
    device: &B::Device,
    on_token: &mut dyn FnMut(usize, u32, &[f32]) -> bool,
) -> Vec<Vec<u32>> {
    // A row keeps one slot free for the EOS that scoring appends to every completion.
    let fits = |len: usize| len + 1 < model.max_len();
    let mut rngs: Vec<_> = seeds
        .iter()
        .map(|&s| rco_core::seed::rng_for(s, &["sample"]))
        .collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    let mut active: Vec<usize> = (0..prompts.len())
        .filter(|&i| fits(prompts[i].len()))
        .collect();
    if active.is_empty() || config.max_tokens == 0 {
        return out;
    }
    // Prefill the left-padded prompts, then decode one token per row per step, reading the
    // earlier keys and values from the cache.
    let mut cache = KvCache::default();
    let prompt_rows: Vec<Vec<u32>> = active.iter().map(|&i| prompts[i].clone()).collect();
    let batch = PaddedBatch::<B>::new(&prompt_rows, device);
    let mut pads = batch.pads.clone();
    let mut time = batch.time;
    let mut lengths: Vec<usize> = prompt_rows.iter().map(Vec::len).collect();
    let mut logits =
        model.last_logits_cached(batch.tokens, batch.positions, batch.mask, &mut cache);
    for step in 0..config.max_tokens {
        let [_, vocab] = logits.dims();
        let values: Vec<f32> = logits
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(active.len());
        let mut next = Vec::with_capacity(active.len());
        for (k, &i) in active.iter().enumerate() {
            let Some(row_logits) = values.get(k * vocab..(k + 1) * vocab) else {
                continue;
            };
            let token = draw(row_logits, &stop.banned, config, &mut rngs[i]);
            if stop.ends_at(token) {
                continue;
            }
            out[i].push(token);
            let go_on = on_token(i, token, row_logits);
            lengths[k] += 1;
            if go_on && fits(lengths[k]) {
                kept.push(k);
                next.push(token);
            }
        }
        if kept.is_empty() || step + 1 == config.max_tokens {
            break;
        }
        if kept.len() < active.len() {
            cache.retain_rows(&kept, device);
            pads = kept.iter().map(|&k| pads[k]).collect();
            lengths = kept.iter().map(|&k| lengths[k]).collect();
            active = kept.iter().map(|&k| active[k]).collect();
        }
        let n = active.len();
        time += 1;
        // The new token of each row sits at the end; it sees every real key of its row.
        let positions: Vec<i32> = pads.iter().map(|&pad| (time - 1 - pad) as i32).collect();
        let mask: Vec<f32> = pads
            .iter()
            .flat_map(|&pad| (0..time).map(move |key| if key >= pad { 0.0 } else { MASKED }))
            .collect();
        let tokens = Tensor::<B, 2, Int>::from_data(
            TensorData::new(next.iter().map(|&t| t as i32).collect::<Vec<_>>(), [n, 1]),
            device,
        );
        let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [n, 1]), device);
        let mask = Tensor::<B, 4>::from_data(TensorData::new(mask, [n, 1, 1, time]), device);
        logits = model.last_logits_cached(tokens, positions, mask, &mut cache);
    }
    out
}

/// The log-probability of `token` under `logits` (softmax at temperature 1, nothing cut),
/// and the `top` most likely tokens with theirs, most likely first.
pub fn token_log_probs(logits: &[f32], token: u32, top: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let chosen = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&x| x - log_sum);
    let mut ranked: Vec<(u32, f32)> = Vec::new();
    if top > 0 {
        let mut indices: Vec<usize> = (0..logits.len()).collect();
        let k = top.min(indices.len());
        indices.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| {
            logits[b].total_cmp(&logits[a])
        });
        indices.truncate(k);
        indices.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        ranked = indices
            .into_iter()
            .map(|i| (i as u32, logits[i] - log_sum))
            .collect();
    }
    (chosen, ranked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draw frequencies over a large vocabulary (the fast paths) match the softmax of the
    /// logits, cut to the top k or the nucleus and renormalized, as the full sort has it.
    #[test]
    fn large_vocabulary_draws_follow_the_distribution() {
        // Five likely tokens scattered through 5,000, the rest far less likely.
        let mut logits = vec![-8.0f32; 5000];
        let likely = [
            (4321usize, 2.0f32),
            (17, 1.5),
            (2500, 1.0),
            (999, 0.5),
            (3, 0.0),
        ];
        for &(i, l) in &likely {
            logits[i] = l;
        }
        let softmax = |ids: &[usize]| -> Vec<f64> {
            let weights: Vec<f64> = ids.iter().map(|&i| f64::from(logits[i]).exp()).collect();
            let total: f64 = weights.iter().sum();
            weights.iter().map(|w| w / total).collect()
        };
        let all: Vec<usize> = (0..logits.len()).collect();
        let whole = softmax(&all);
        let top3 = softmax(&[4321, 17, 2500]);
        let cases = [
            (
                SamplingConfig {
                    temperature: 1.0,
                    ..Default::default()
                },
                vec![whole[4321], whole[17], whole[2500]],
            ),
            (
                SamplingConfig {
                    temperature: 1.0,
                    top_k: 3,
                    ..Default::default()
                },
                top3.clone(),
            ),
            // The nucleus of 0.6 holds the two most likely tokens.
            (
                SamplingConfig {
                    temperature: 1.0,
                    top_p: 0.6,
                    ..Default::default()
                },
                {
                    let two = softmax(&[4321, 17]);
                    vec![two[0], two[1], 0.0]
                },
            ),
        ];
        for (config, expected) in cases {
            let mut rng = rco_core::seed::rng_for(7, &["test"]);
            let draws = 20_000;
            let mut counts = [0usize; 3];
            for _ in 0..draws {
                let t = draw(&logits, &[], &config, &mut rng) as usize;
                if let Some(k) = [4321, 17, 2500].iter().position(|&i| i == t) {
                    counts[k] += 1;
                }
            }
            for (k, &p) in expected.iter().enumerate() {
                let seen = counts[k] as f64 / draws as f64;
                assert!(
                    (seen - p).abs() < 0.015,
                    "{config:?}: token {k}: {seen} vs {p}"
                );
            }
        }
    }
}
