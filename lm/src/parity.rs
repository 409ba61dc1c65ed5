//! Backend parity (`rco backends`): one model loaded on several devices and compared with
//! the first. For each device: the logits of every prompt position (largest difference of
//! a logit and of a log-prob, top-1 agreement, and where a top-1 differs how close the
//! reference's two tokens were), greedy continuations (the first divergence, and whether
//! the reference's log-probs of the two tokens there are a near-tie), and one RCO training
//! step on the same group (the loss, and the completion log-probs after the update).
//!
//! Every device runs in f32 (`quantize = "none"`) unless its name carries `+q8_0`
//! (`cpu+q8_0`: the CPU's Q8_0 inference path, compared like a backend; its training step is
//! f32, as training always is).

use std::path::Path;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use serde::Serialize;

use crate::device::DeviceSpec;
use crate::engine::{Engine, Quantize, Settings};
use crate::local::load_local;
use crate::loss::{rco_step, RcoGroup};
use crate::model::CausalLm;
use crate::sampling::{completion_log_probs, sample, PaddedBatch, SamplingConfig, StopTokens};
use crate::LmError;

/// How far a device may be from the reference before `rco backends` fails.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    /// Largest difference of a logit.
    pub logits: f32,
    /// Largest difference of a next-token log-prob.
    pub log_probs: f32,
    /// A top-1 token or a greedy continuation may differ only where the reference's
    /// log-probs of the two tokens are closer than this.
    pub near_tie: f32,
    /// Relative difference of the training step's loss.
    pub step_loss: f64,
    /// Largest difference of a completion log-prob (summed over its tokens) after the step.
    pub step_log_probs: f64,
}

impl Default for Tolerance {
    /// Bounds for f32 backends (only summation orders differ): flex and wgpu on lavapipe
    /// differ by 8e-5 in SmolLM2's logits and 4e-6 in log-probs after a training step.
    fn default() -> Self {
        Self {
            logits: 2e-3,
            log_probs: 2e-3,
            near_tie: 0.05,
            step_loss: 1e-3,
            step_log_probs: 1e-2,
        }
    }
}

impl Tolerance {
    /// The tolerance with `key=value` overrides, comma-separated (`logits=0.05,log_probs=0.05`;
    /// keys: logits, log_probs, near_tie, step_loss, step_log_probs).
    pub fn with_overrides(mut self, overrides: &str) -> Result<Self, String> {
        for part in overrides
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
            let value: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("`{part}`: the value must be a number ≥ 0"))?;
            match key.trim() {
                "logits" => self.logits = value as f32,
                "log_probs" => self.log_probs = value as f32,
                "near_tie" => self.near_tie = value as f32,
                "step_loss" => self.step_loss = value,
                "step_log_probs" => self.step_log_probs = value,
                other => {
                    return Err(format!(
                        "unknown tolerance `{other}` (logits, log_probs, near_tie, step_loss, step_log_probs)"
                    ))
                }
            }
        }
        Ok(self)
    }
}

/// A device as `rco backends` names it: a device spec and how it holds the weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub device: DeviceSpec,
    pub quantize: Quantize,
}

impl Target {
    /// `cpu`, `wgpu`, `cuda:N`, optionally followed by `+q8_0`.
    pub fn parse(text: &str) -> Result<Self, LmError> {
        let (device, quantize) = match text.split_once('+') {
            Some((device, "q8_0")) => (device, Quantize::Q8_0),
            Some((_, other)) => {
                return Err(LmError::Device(format!(
                    "`{text}`: unknown weight format `{other}` (expected +q8_0)"
                )))
            }
            None => (text, Quantize::None),
        };
        Ok(Self {
            device: DeviceSpec::parse(device)?.compiled()?,
            quantize,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.quantize {
            Quantize::Q8_0 => write!(f, "{}+q8_0", self.device),
            Quantize::None => write!(f, "{}", self.device),
        }
    }
}

/// What one device computed.
struct DeviceRun {
    /// Per prompt, the logits of every position, flattened.
    logits: Vec<Vec<f32>>,
    vocab: usize,
    greedy: Vec<Vec<u32>>,
    loss: f64,
    updated: Vec<f64>,
    seconds: f64,
}

/// A greedy continuation against the reference's.
#[derive(Debug, Clone, Serialize)]
pub struct GreedyParity {
    pub prompt: usize,
    /// The first position where the tokens differ (`None`: the same tokens).
    pub first_divergence: Option<usize>,
    /// The reference's log-prob of its own token minus that of the device's token there.
    pub reference_gap: Option<f32>,
    pub near_tie: Option<bool>,
}

/// One device against the reference.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceParity {
    pub device: String,
    pub max_logit_diff: f32,
    pub max_log_prob_diff: f32,
    pub positions: usize,
    pub same_top1: usize,
    /// Where a top-1 differs, the largest gap between the reference's log-probs of the two.
    pub top1_flip_gap: f32,
    pub greedy: Vec<GreedyParity>,
    pub step_loss: f64,
    pub reference_step_loss: f64,
    pub max_step_log_prob_diff: f64,
    pub seconds: f64,
    /// What is beyond the tolerance (empty: within it).
    pub problems: Vec<String>,
}

/// What `rco backends` prints and writes.
#[derive(Debug, Clone, Serialize)]
pub struct ParityReport {
    pub model: String,
    pub reference: String,
    pub prompts: Vec<String>,
    pub tolerance: Tolerance,
    pub reference_seconds: f64,
    pub devices: Vec<DeviceParity>,
}

impl ParityReport {
    /// Whether every device is within the tolerance.
    pub fn passed(&self) -> bool {
        self.devices.iter().all(|d| d.problems.is_empty())
    }

    /// The table the terminal shows.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on each device against {} ({} prompts; {:.1}s on the reference)\n{:<12} {:>12} {:>12} {:>9} {:>14} {:>12} {:>12} {:>8}\n",
            self.model,
            self.reference,
            self.prompts.len(),
            self.reference_seconds,
            "device",
            "max |logit|",
            "max |logp|",
            "top-1",
            "greedy same",
            "step loss",
            "step |logp|",
            "seconds"
        );
        for d in &self.devices {
            let same = d
                .greedy
                .iter()
                .filter(|g| g.first_divergence.is_none())
                .count();
            out.push_str(&format!(
                "{:<12} {:>12.3e} {:>12.3e} {:>9} {:>14} {:>12.4} {:>12.3e} {:>8.1}\n",
                d.device,
                d.max_logit_diff,
                d.max_log_prob_diff,
                format!("{}/{}", d.same_top1, d.positions),
                format!("{same}/{}", d.greedy.len()),
                d.step_loss - d.reference_step_loss,
                d.max_step_log_prob_diff,
                d.seconds
            ));
            for g in d.greedy.iter().filter(|g| g.first_divergence.is_some()) {
                out.push_str(&format!(
                    "  prompt {}: diverges at token {} (reference gap {:.4}{})\n",
                    g.prompt,
                    g.first_divergence.unwrap_or(0),
                    g.reference_gap.unwrap_or(f32::NAN),
                    if g.near_tie == Some(true) {
                        ", a near-tie"
                    } else {
                        ""
                    }
                ));
            }
            for p in &d.problems {
                out.push_str(&format!("  beyond tolerance: {p}\n"));
            }
        }
        out
    }
}

/// The training group every device takes one step on: each prompt's first half as the
/// prompt, the rest as the completion, with fixed utilities.
fn step_group(prompts: &[Vec<u32>]) -> RcoGroup {
    let rows: Vec<(Vec<u32>, Vec<u32>)> = prompts
        .iter()
        .filter(|p| p.len() >= 2)
        .map(|p| {
            let half = p.len() / 2;
            (p[..half].to_vec(), p[half..].to_vec())
        })
        .collect();
    let cus: Vec<f64> = (0..rows.len()).map(|i| (i % 3) as f64 / 2.0).collect();
    let offsets = rco_core::objective::residual_offsets(&vec![-20.0; rows.len()], &cus, 0.1);
    RcoGroup { rows, offsets }
}

fn run_on<B: Backend>(
    path: &Path,
    device: B::Device,
    quantize: Quantize,
    prompts: &[Vec<u32>],
    max_tokens: usize,
) -> Result<DeviceRun, LmError> {
    let started = Instant::now();
    let settings = Settings {
        quantize,
        batch_size: prompts.len().max(1),
        ..Settings::default()
    };
    let engine = Engine::<B>::open(path, device.clone(), settings)?;
    let (logits, vocab, greedy) = {
        let model = engine.model()?;
        let mut all = Vec::new();
        let mut vocab = 0;
        for prompt in prompts {
            let batch = PaddedBatch::<B>::new(std::slice::from_ref(prompt), &device);
            let out = model.logits(batch.tokens, batch.positions, batch.mask);
            vocab = out.dims()[2];
            all.push(
                out.into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| LmError::Device(format!("{e:?}")))?,
            );
        }
        let greedy = SamplingConfig {
            temperature: 0.0,
            max_tokens,
            ..Default::default()
        };
        let stop = StopTokens {
            eos: engine.tokenizer.eos(),
            ends: Vec::new(),
            banned: Vec::new(),
        };
        let seeds = vec![0; prompts.len()];
        let tokens = sample(&*model, prompts, &seeds, &greedy, &stop, &device);
        (all, vocab, tokens)
    };
    drop(engine);
    let (model, _) = load_local::<Autodiff<B>>(path, &device)?;
    let group = step_group(prompts);
    let mut optimizer = AdamWConfig::new().init::<Autodiff<B>, _>();
    let (model, loss) = rco_step(model, &mut optimizer, &[vec![&group]], 1e-4, &device);
    let updated = completion_log_probs(&model, &group.rows, &device)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_err(|e| LmError::Device(format!("{e:?}")))?;
    Ok(DeviceRun {
        logits,
        vocab,
        greedy,
        loss,
        updated,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    let log_sum = max + sum.ln();
    row.iter().map(|v| v - log_sum).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Loads `path` on every target and compares each with the first. `prompts` are
/// tokenized raw (no chat template); greedy continuations run `max_tokens` tokens.
pub fn compare(
    path: &Path,
    targets: &[Target],
    prompts: &[String],
    max_tokens: usize,
    tolerance: Tolerance,
) -> Result<ParityReport, LmError> {
    let (reference, others) = targets
        .split_first()
        .ok_or_else(|| LmError::Device("name at least two devices".into()))?;
    if others.is_empty() {
        return Err(LmError::Device("name at least two devices".into()));
    }
    // The tokenizer is the same on every device: take the ids from a CPU engine.
    let ids: Vec<Vec<u32>> = {
        let engine = Engine::<crate::device::Cpu>::open(
            path,
            Default::default(),
            Settings {
                quantize: Quantize::None,
                ..Settings::default()
            },
        )?;
        prompts
            .iter()
            .map(|p| engine.tokenizer.prompt_ids(p, false))
            .collect::<Result<_, _>>()?
    };
    let run = |target: &Target| -> Result<DeviceRun, LmError> {
        crate::with_backend!(target.device, |B, device| run_on::<B>(
            path,
            device,
            target.quantize,
            &ids,
            max_tokens
        ))
    };
    let base = run(reference)?;
    let mut devices = Vec::new();
    for target in others {
        let other = run(target)?;
        devices.push(judge(
            target, &base, &other, &ids, tolerance, reference, path,
        )?);
    }
    Ok(ParityReport {
        model: path.display().to_string(),
        reference: reference.to_string(),
        prompts: prompts.to_vec(),
        tolerance,
        reference_seconds: base.seconds,
        devices,
    })
}

/// One device's figures against the reference, and what is beyond the tolerance.
fn judge(
    target: &Target,
    base: &DeviceRun,
    other: &DeviceRun,
    ids: &[Vec<u32>],
    tolerance: Tolerance,
    reference: &Target,
    path: &Path,
) -> Result<DeviceParity, LmError> {
    let vocab = base.vocab;
    let (mut max_logit, mut max_log_prob, mut positions, mut same_top1, mut flip) =
        (0f32, 0f32, 0, 0, 0f32);
    for (ours, theirs) in other.logits.iter().zip(&base.logits) {
        for (a, b) in ours.chunks_exact(vocab).zip(theirs.chunks_exact(vocab)) {
            positions += 1;
            for (x, y) in a.iter().zip(b) {
                max_logit = max_logit.max((x - y).abs());
            }
            let (la, lb) = (log_softmax(a), log_softmax(b));
            for (x, y) in la.iter().zip(&lb) {
                max_log_prob = max_log_prob.max((x - y).abs());
            }
            let (ta, tb) = (argmax(a), argmax(b));
            if ta == tb {
                same_top1 += 1;
            } else {
                flip = flip.max(lb[tb] - lb[ta]);
            }
        }
    }
    // Where the continuations part on a token choice: the prompt, the position, the context
    // and the two tokens. The reference is loaded once for all of them.
    let mut parted = Vec::new();
    let mut greedy = Vec::new();
    for (i, (ours, theirs)) in other.greedy.iter().zip(&base.greedy).enumerate() {
        let same = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
        greedy.push(GreedyParity {
            prompt: i,
            first_divergence: (ours != theirs).then_some(same),
            reference_gap: None,
            near_tie: None,
        });
        // One stopped where the other went on: not a token choice to weigh.
        if let (Some(&a), Some(&b)) = (ours.get(same), theirs.get(same)) {
            let context: Vec<u32> = ids[i].iter().chain(&theirs[..same]).copied().collect();
            parted.push((i, context, a as usize, b as usize));
        }
    }
    if !parted.is_empty() {
        let gaps: Vec<f32> = crate::with_backend!(reference.device, |B, device| {
            let engine = Engine::<B>::open(
                path,
                device,
                Settings {
                    quantize: reference.quantize,
                    ..Settings::default()
                },
            )?;
            parted
                .iter()
                .map(|(_, context, a, b)| {
                    engine
                        .next_token_log_probs(context)
                        .map(|lp| lp[*b] - lp[*a])
                })
                .collect::<Result<Vec<f32>, LmError>>()
        })?;
        for ((i, ..), gap) in parted.iter().zip(gaps) {
            greedy[*i].reference_gap = Some(gap);
            greedy[*i].near_tie = Some(gap < tolerance.near_tie);
        }
    }
    let max_step = other
        .updated
        .iter()
        .zip(&base.updated)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let mut problems = Vec::new();
    if max_logit > tolerance.logits {
        problems.push(format!(
            "logits differ by {max_logit:.3e} (tolerance {:.1e})",
            tolerance.logits
        ));
    }
    if max_log_prob > tolerance.log_probs {
        problems.push(format!(
            "log-probs differ by {max_log_prob:.3e} (tolerance {:.1e})",
            tolerance.log_probs
        ));
    }
    if same_top1 < positions && flip >= tolerance.near_tie {
        problems.push(format!(
            "a top-1 token differs where the reference's gap is {flip:.4} (near-tie below {})",
            tolerance.near_tie
        ));
    }
    for g in &greedy {
        if g.first_divergence.is_some() && g.near_tie != Some(true) {
            problems.push(format!(
                "prompt {}: greedy continuation diverges at token {} (reference gap {:?})",
                g.prompt,
                g.first_divergence.unwrap_or(0),
                g.reference_gap
            ));
        }
    }
    let relative = (other.loss - base.loss).abs() / base.loss.abs().max(1e-12);
    if relative > tolerance.step_loss {
        problems.push(format!(
            "step loss {} vs {} (relative {relative:.2e}, tolerance {:.1e})",
            other.loss, base.loss, tolerance.step_loss
        ));
    }
    if max_step > tolerance.step_log_probs {
        problems.push(format!(
            "log-probs after the step differ by {max_step:.3e} (tolerance {:.1e})",
            tolerance.step_log_probs
        ));
    }
    Ok(DeviceParity {
        device: target.to_string(),
        max_logit_diff: max_logit,
        max_log_prob_diff: max_log_prob,
        positions,
        same_top1,
        top1_flip_gap: flip,
        greedy,
        step_loss: other.loss,
        reference_step_loss: base.loss,
        max_step_log_prob_diff: max_step,
        seconds: other.seconds,
        problems,
    })
}
