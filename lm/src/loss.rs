//! The training objectives over any [`CausalLm`]: the supervised warm start, the RCO loss
//! (the KL-regularised squared error of method.md) with its accumulated optimizer step, and
//! the accumulated NLL step of rejection-sampling fine-tuning.

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::device::{is_cpu, on_compute_pool};
use crate::model::CausalLm;
use crate::sampling::completion_log_probs;

/// One `(prompt ids, completion ids)` pair.
pub type Example = (Vec<u32>, Vec<u32>);

/// Supervised fine-tuning: minimises the mean negative log-likelihood per completion token.
/// `next_batch(step)` supplies the examples of each step. Returns the model and the loss of
/// the last step.
pub fn supervised<B, M>(
    mut model: M,
    steps: usize,
    learning_rate: f64,
    device: &B::Device,
    mut next_batch: impl FnMut(usize) -> Vec<Example>,
    progress: &dyn rco_core::Progress,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
{
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init::<B, M>();
    let mut last = f64::NAN;
    for step in 0..steps {
        let batch = next_batch(step);
        let tokens: usize = batch.iter().map(|(_, c)| c.len()).sum();
        let loss = completion_log_probs(&model, &batch, device)
            .sum()
            .neg()
            .div_scalar(tokens.max(1) as f32);
        last = loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Linear warm-up over the first tenth of the steps, then constant.
        let warm = ((step + 1) as f64 / (steps as f64 / 10.0).max(1.0)).min(1.0);
        model = optimizer.step(learning_rate * warm, model, grads);
        progress.inc(1);
        if step % 50 == 0 {
            progress.set_message(&format!("nll {last:.3}"));
        }
    }
    (model, last)
}

/// The examples of one critique group for the RCO loss: rows and their residual offsets.
#[derive(Debug, Clone)]
pub struct RcoGroup {
    pub rows: Vec<Example>,
    /// `o_i` of `rco_core::objective::residual_offsets`: `r_i = log p_theta(c_i) + o_i`.
    pub offsets: Vec<f64>,
}

/// The RCO loss of a micro-batch of groups, scaled so that summing it over the micro-batches
/// of a step gives the mean group loss of the step (`groups_in_step` groups in all).
pub fn rco_loss<B, M>(
    model: &M,
    groups: &[&RcoGroup],
    groups_in_step: usize,
    device: &B::Device,
) -> Tensor<B, 1>
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
{
    weighted_residual_loss(model, &weighted_rows(groups, groups_in_step), device)
}

/// A row of the RCO loss: its sequence, its offset `o_i` and its weight in the step's loss.
type WeightedRow<'a> = (&'a Example, f32, f32);

/// The rows of groups with their offsets and weights: `1 / (2 N_g)` per row of group `g`,
/// and `1 / G` over the `groups_in_step` groups of the step.
fn weighted_rows<'a>(groups: &[&'a RcoGroup], groups_in_step: usize) -> Vec<WeightedRow<'a>> {
    groups
        .iter()
        .flat_map(|g| {
            let weight = 1.0 / (2.0 * g.rows.len() as f32 * groups_in_step as f32);
            g.rows
                .iter()
                .zip(&g.offsets)
                .map(move |(row, &offset)| (row, offset as f32, weight))
        })
        .collect()
}

/// `Σ w_i (log p(c_i) + o_i)²` over rows: the RCO loss is a sum over rows, so rows may be
/// taken in any number of passes.
fn weighted_residual_loss<B, M>(model: &M, rows: &[WeightedRow], device: &B::Device) -> Tensor<B, 1>
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
{
    let n = rows.len();
    let sequences: Vec<Example> = rows.iter().map(|(row, _, _)| (*row).clone()).collect();
    let offsets: Vec<f32> = rows.iter().map(|r| r.1).collect();
    let weights: Vec<f32> = rows.iter().map(|r| r.2).collect();
    let log_probs = completion_log_probs(model, &sequences, device);
    let offsets = Tensor::<B, 1>::from_data(TensorData::new(offsets, [n]), device);
    let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [n]), device);
    let residual = log_probs + offsets;
    (residual.clone() * residual * weights).sum()
}

/// One optimizer step over micro-batches with gradient accumulation; returns the model and
/// the step's loss (mean group loss).
pub fn rco_step<B, M, O>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[Vec<&RcoGroup>],
    learning_rate: f64,
    device: &B::Device,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    O: Optimizer<M, B> + Send,
{
    rco_step_in_passes(model, optimizer, micro_batches, learning_rate, 0, device)
}

/// [`rco_step`] with at most `rows_per_pass` sequences in each forward and backward pass
/// (0: each micro-batch in one pass): the same gradient and loss, with the activation memory
/// of fewer sequences. A group's critiques may then go through in several passes.
pub fn rco_step_in_passes<B, M, O>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[Vec<&RcoGroup>],
    learning_rate: f64,
    rows_per_pass: usize,
    device: &B::Device,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    O: Optimizer<M, B> + Send,
{
    let groups_in_step: usize = micro_batches.iter().map(Vec::len).sum();
    let mut passes: Vec<Vec<WeightedRow>> = Vec::new();
    for micro in micro_batches {
        let rows = weighted_rows(micro, groups_in_step);
        if rows_per_pass == 0 {
            passes.push(rows);
        } else {
            passes.extend(rows.chunks(rows_per_pass).map(<[_]>::to_vec));
        }
    }
    accumulated_step(model, optimizer, &passes, learning_rate, |model, rows| {
        weighted_residual_loss(model, rows, device)
    })
}

/// One optimizer step whose gradients are summed over the micro-batches, each micro-batch's
/// loss from `loss`; returns the model and the sum of the losses.
fn accumulated_step<B, M, O, T>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[T],
    learning_rate: f64,
    loss: impl Fn(&M, &T) -> Tensor<B, 1> + Send,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    O: Optimizer<M, B> + Send,
    T: Sync,
{
    let step = move || {
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut total = 0.0;
        for micro in micro_batches {
            let loss = loss(&model, micro);
            total += loss.clone().into_scalar().elem::<f64>();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
        }
        let model = optimizer.step(learning_rate, model, accumulator.grads());
        (model, total)
    };
    if is_cpu::<B::InnerBackend>() {
        on_compute_pool(step)
    } else {
        step()
    }
}

/// One optimizer step of supervised fine-tuning over micro-batches of examples, with
/// gradient accumulation: the step's loss is the mean negative log-likelihood per
/// completion token over all its examples. Returns the model and that loss.
pub fn nll_step<B, M, O>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[Vec<&Example>],
    learning_rate: f64,
    device: &B::Device,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    O: Optimizer<M, B> + Send,
{
    let tokens: usize = micro_batches
        .iter()
        .flatten()
        .map(|(_, completion)| completion.len())
        .sum();
    accumulated_step(
        model,
        optimizer,
        micro_batches,
        learning_rate,
        |model, micro| {
            let rows: Vec<Example> = micro.iter().map(|&e| e.clone()).collect();
            completion_log_probs(model, &rows, device)
                .sum()
                .neg()
                .div_scalar(tokens.max(1) as f32)
        },
    )
}

/// One preference pair of critiques for DPO: the chosen and the rejected completion of the
/// same prompt, and `log p_ref(chosen) − log p_ref(rejected)` under the reference model.
#[derive(Debug, Clone)]
pub struct PreferencePair {
    pub chosen: Example,
    pub rejected: Example,
    pub reference_margin: f64,
}

/// The DPO loss of a micro-batch of pairs, scaled so that summing it over the micro-batches
/// of a step gives the mean pair loss of the step (`pairs_in_step` pairs in all):
/// `−log σ(β · ((log p(c⁺) − log p(c⁻)) − (log p_ref(c⁺) − log p_ref(c⁻))))`, written as
/// `softplus(−x)` in the form that neither overflows nor loses precision, and whose gradient
/// is right at `x = 0`: where the critic is still the reference, the first step's.
pub fn dpo_loss<B, M>(
    model: &M,
    pairs: &[&PreferencePair],
    pairs_in_step: usize,
    beta: f64,
    device: &B::Device,
) -> Tensor<B, 1>
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
{
    let n = pairs.len();
    let rows: Vec<Example> = pairs
        .iter()
        .flat_map(|p| [p.chosen.clone(), p.rejected.clone()])
        .collect();
    let log_probs = completion_log_probs(model, &rows, device).reshape([n, 2]);
    let chosen = log_probs.clone().slice([0..n, 0..1]).reshape([n]);
    let rejected = log_probs.slice([0..n, 1..2]).reshape([n]);
    let margins: Vec<f32> = pairs.iter().map(|p| p.reference_margin as f32).collect();
    let reference = Tensor::<B, 1>::from_data(TensorData::new(margins, [n]), device);
    let x = (chosen - rejected - reference).mul_scalar(beta as f32);
    neg_log_sigmoid(x)
        .sum()
        .div_scalar(pairs_in_step.max(1) as f32)
}

/// `−log σ(x) = softplus(−x) = max(−x, 0) + log(1 + exp(−|x|))`, with `max(−x, 0)` written
/// as `(|x| − x) / 2`: autodiff takes `clamp_min`'s slope at 0 as 1 and `abs`'s as 0, so
/// the `clamp_min` form had the slope −1 at x = 0 instead of −1/2 (a pair's gradient
/// doubled in the first step, where the critic is the reference and x can be exactly 0).
fn neg_log_sigmoid<B: Backend>(x: Tensor<B, 1>) -> Tensor<B, 1> {
    (x.clone().abs() - x.clone()).mul_scalar(0.5) + x.abs().neg().exp().log1p()
}

/// One optimizer step of DPO over micro-batches of pairs, with gradient accumulation;
/// returns the model and the step's loss (mean pair loss).
pub fn dpo_step<B, M, O>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[Vec<&PreferencePair>],
    beta: f64,
    learning_rate: f64,
    device: &B::Device,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    O: Optimizer<M, B> + Send,
{
    let pairs_in_step: usize = micro_batches.iter().map(Vec::len).sum();
    accumulated_step(
        model,
        optimizer,
        micro_batches,
        learning_rate,
        |model, micro| dpo_loss(model, micro, pairs_in_step, beta, device),
    )
}

/// [`dpo_step`] with at most `rows_per_pass` critiques (sequences) in each backward pass, so
/// that a pair's two critiques need not go through together: the same gradient, with the
/// activation memory of `rows_per_pass` sequences instead of two per pair. DPO's loss is
/// not a sum over sequences, so this first scores every critique of the step without
/// gradients (the loss and each pair's weight `σ(−x)` come from those scores), then takes
/// the gradient of `Σ w · log p(c)` with the weights held fixed, `rows_per_pass` sequences
/// at a time; that gradient is DPO's. A critique in several pairs (each critique of a group
/// of four is in three) goes through once in each pass, with its pairs' weights summed, so
/// a group of four critiques takes four sequences where its six pairs would take twelve.
pub fn dpo_step_in_rows<B, M, O>(
    model: M,
    optimizer: &mut O,
    micro_batches: &[Vec<&PreferencePair>],
    beta: f64,
    learning_rate: f64,
    rows_per_pass: usize,
    device: &B::Device,
) -> (M, f64)
where
    B: AutodiffBackend,
    M: CausalLm<B> + AutodiffModule<B>,
    M::InnerModule: CausalLm<B::InnerBackend>,
    O: Optimizer<M, B> + Send,
{
    let pairs: Vec<&PreferencePair> = micro_batches.iter().flatten().copied().collect();
    // Each distinct critique once, and each pair's two as indices into them.
    let mut rows: Vec<&Example> = Vec::new();
    let mut index: std::collections::HashMap<&Example, usize> = Default::default();
    let mut pair_rows: Vec<(usize, usize)> = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        let [chosen, rejected] = [&pair.chosen, &pair.rejected].map(|example| {
            *index.entry(example).or_insert_with(|| {
                rows.push(example);
                rows.len() - 1
            })
        });
        pair_rows.push((chosen, rejected));
    }
    let rows: Vec<Example> = rows.into_iter().cloned().collect();
    let per_pass = rows_per_pass.max(1);
    // The scores, without autodiff: a forward pass on the autodiff backend keeps its graph.
    let inner = model.valid();
    let to_score = &rows;
    let score = move || -> Vec<f64> {
        to_score
            .chunks(per_pass)
            .flat_map(|chunk| {
                let data = completion_log_probs(&inner, chunk, device).into_data();
                data.iter::<f64>().collect::<Vec<f64>>()
            })
            .collect()
    };
    let scores = if is_cpu::<B::InnerBackend>() {
        on_compute_pool(score)
    } else {
        score()
    };
    let n = pairs.len().max(1) as f64;
    let mut loss = 0.0;
    let mut weights = vec![0.0f64; rows.len()];
    for (pair, &(chosen, rejected)) in pairs.iter().zip(&pair_rows) {
        let x = beta * (scores[chosen] - scores[rejected] - pair.reference_margin);
        // softplus(−x), and its derivative in x, −σ(−x), without overflow.
        loss += (-x).max(0.0) + (-x.abs()).exp().ln_1p();
        let sigmoid_neg = if x >= 0.0 {
            let e = (-x).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + x.exp())
        };
        let w = beta * sigmoid_neg / n;
        weights[chosen] -= w;
        weights[rejected] += w;
    }
    let weighted: Vec<(&Example, f32)> = rows
        .iter()
        .zip(&weights)
        .map(|(row, &w)| (row, w as f32))
        .collect();
    let passes: Vec<Vec<(&Example, f32)>> = weighted.chunks(per_pass).map(<[_]>::to_vec).collect();
    let (model, _) = accumulated_step(model, optimizer, &passes, learning_rate, |model, rows| {
        let sequences: Vec<Example> = rows.iter().map(|(row, _)| (*row).clone()).collect();
        let weights: Vec<f32> = rows.iter().map(|r| r.1).collect();
        let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [rows.len()]), device);
        (completion_log_probs(model, &sequences, device) * weights).sum()
    });
    (model, loss / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    use crate::device::Cpu;

    /// The value and the slope, `−σ(−x)`, of DPO's per-pair loss, at 0 too and far out.
    #[test]
    fn neg_log_sigmoid_has_the_right_value_and_slope_everywhere() {
        let points = [0.0f32, 1e-3, -1e-3, 2.0, -2.0, 60.0, -60.0];
        let device = Default::default();
        let x = Tensor::<Autodiff<Cpu>, 1>::from_floats(points, &device).require_grad();
        let loss = neg_log_sigmoid(x.clone());
        let values = loss.clone().into_data().into_vec::<f32>().unwrap();
        let grads = loss.sum().backward();
        let slopes = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        for ((x, value), slope) in points.iter().zip(values).zip(slopes) {
            let x = *x as f64;
            let sigmoid_neg = 1.0 / (1.0 + x.exp());
            let want = (1.0 + (-x).exp()).ln();
            assert!(
                (value as f64 - want).abs() < 1e-5 * want.max(1.0),
                "−log σ({x}) = {value}, want {want}"
            );
            assert!(
                (slope as f64 + sigmoid_neg).abs() < 1e-6,
                "slope at {x}: {slope}, want {}",
                -sigmoid_neg
            );
        }
    }
}
