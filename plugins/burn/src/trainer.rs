//! The trainers of burn critics, sharing the optimizer (AdamW or SGD, [`crate::optimizer`]),
//! gradient accumulation and checkpoint/resume of model and optimizer state:
//! - `kind = "rco"`: regresses the critic onto the closed-form optimum of the
//!   KL-regularised objective (method.md);
//! - `kind = "sft"`: rejection-sampling fine-tuning, the baseline: the NLL of the
//!   highest-CU critique of each group (groups whose critiques all have the same CU have no
//!   best one and are left out);
//! - `kind = "dpco"`: Direct Preference Critique Optimization, the baseline: DPO on the
//!   critique pairs of each group that the judge compared directly and decided.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, Optimizer, SgdConfig};
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rco_core::registry::{Validate, ValidateContext};
use rco_core::{
    objective, ConfigProblem, Progress, Result, TrainSummary, Trainer, TrainerContext,
    TrainingGroup,
};
use rco_lm::checkpoint;
use rco_lm::device::DeviceSpec;
use rco_lm::grad_norm::GradNormed;
use rco_lm::local::{
    load_local_with_spec, model_exists, model_problem, save_local, LmTokenizer, LocalLm, LocalSpec,
};
use rco_lm::lora::LoraConfig;
use rco_lm::loss::{
    dpo_step, dpo_step_in_rows, nll_step, rco_step_in_passes, PreferencePair, RcoGroup,
};
use rco_lm::sampling::completion_log_probs;
use rco_lm::LmError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::optimizer::OptimizerKind;

/// RCO training of a burn critic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RcoTrainerConfig {
    /// KL weight `beta` of the objective (method.md default 0.1).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// The optimizer's learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Weight decay: decoupled from the gradient under AdamW, added to it (L2) under SGD.
    #[serde(default)]
    pub weight_decay: f64,
    /// `adamw` (the default) or `sgd`: AdamW moves each weight by about the learning rate
    /// per step whatever the gradient's size; SGD by the learning rate times the gradient.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// SGD's momentum (0, the default: none). Only with `optimizer = "sgd"`.
    #[serde(default)]
    pub momentum: f64,
    /// Passes over the collected groups.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Groups per micro-batch.
    #[serde(default = "default_groups")]
    pub groups_per_batch: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    #[serde(default = "default_accumulation")]
    pub accumulation: usize,
    /// Save model and optimizer state every this many steps (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// At most this many critiques in one forward and backward pass (0: a micro-batch's
    /// critiques all together). The loss is a sum over critiques, so the gradient is the
    /// same; fewer at once need less activation memory (a 0.5B critic's four critiques of
    /// 700 tokens need about 20 GB together, 12 GB one at a time).
    #[serde(default)]
    pub rows_per_pass: usize,
    /// Train on groups whose critiques all earned the same CU too (`false`: leave them out,
    /// as `sft` does). Their loss and gradient are zero at the start, but AdamW normalises
    /// the small gradients they get once the critic has moved, so each such step moves the
    /// weights by about the learning rate in a direction with no signal.
    #[serde(default = "default_true")]
    pub train_flat_groups: bool,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// The model to start from when the critic is not a local model (a remote critic): a
    /// local copy of the model its server serves (GGUF file or Hugging Face directory).
    /// The reference log-probs are then computed again with it, since a server's may come
    /// from other arithmetic (quantized activations) or be missing.
    #[serde(default)]
    pub base_model: Option<PathBuf>,
    /// Train LoRA adapters instead of every weight (Llama-family critics): `rank`, `alpha`
    /// and `target_modules` as in PEFT. The base weights stay frozen (no gradients, no
    /// optimizer state); the trained critic is saved with the adapters merged into its
    /// weights, and the adapters alone as a PEFT directory in its `adapter/`.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Keep the last training checkpoint (model and optimizer state, `train/step-N/`) once
    /// training has finished and the critic is written. A finished run never reads it; with
    /// a full fine-tune under AdamW it is about 16 bytes per parameter (7 GB for a 0.5B
    /// critic), so `false` does not write it and removes the last periodic one
    /// (`train/state.json` stays).
    #[serde(default = "default_true")]
    pub keep_final_checkpoint: bool,
}

fn default_beta() -> f64 {
    0.1
}
fn default_lr() -> f64 {
    1e-3
}
fn default_epochs() -> usize {
    2
}
fn default_groups() -> usize {
    8
}
fn default_accumulation() -> usize {
    1
}
fn default_checkpoint_every() -> usize {
    25
}
fn default_true() -> bool {
    true
}

impl Validate for RcoTrainerConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            p.push(ConfigProblem::new(
                "beta",
                format!("must be > 0, got {}", self.beta),
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            p.push(ConfigProblem::new(
                "learning_rate",
                format!("must be > 0, got {}", self.learning_rate),
            ));
        }
        for (key, value) in [
            ("epochs", self.epochs),
            ("groups_per_batch", self.groups_per_batch),
            ("accumulation", self.accumulation),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value == 0 {
                p.push(ConfigProblem::new(key, "must be at least 1"));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            p.push(ConfigProblem::new(
                "weight_decay",
                format!("must be at least 0, got {}", self.weight_decay),
            ));
        }
        p.extend(self.optimizer.momentum_problems(self.momentum));
        if let Err(e) = self.device.compiled() {
            p.push(ConfigProblem::new("device", e.to_string()));
        }
        if let Some(path) = &self.base_model {
            if let Some(problem) = model_problem(&ctx.resolve(path)) {
                p.push(ConfigProblem::new("base_model", problem));
            }
        }
        if let Some(lora) = &self.lora {
            for (key, problem) in lora.problems() {
                p.push(ConfigProblem::new(format!("lora.{key}"), problem));
            }
        }
        p
    }
}

/// Rejection-sampling fine-tuning of a burn critic: the RCO trainer's settings without the
/// KL weight.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftTrainerConfig {
    /// The optimizer's learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Weight decay: decoupled from the gradient under AdamW, added to it (L2) under SGD.
    #[serde(default)]
    pub weight_decay: f64,
    /// `adamw` (the default) or `sgd`: AdamW moves each weight by about the learning rate
    /// per step whatever the gradient's size; SGD by the learning rate times the gradient.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// SGD's momentum (0, the default: none). Only with `optimizer = "sgd"`.
    #[serde(default)]
    pub momentum: f64,
    /// Passes over the groups that have a best critique.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Groups (one critique each) per micro-batch.
    #[serde(default = "default_groups")]
    pub groups_per_batch: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    #[serde(default = "default_accumulation")]
    pub accumulation: usize,
    /// Save model and optimizer state every this many steps (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// The model to start from when the critic is not a local model (as for `rco`).
    #[serde(default)]
    pub base_model: Option<PathBuf>,
    /// Train LoRA adapters instead of every weight (Llama-family critics): `rank`, `alpha`
    /// and `target_modules` as in PEFT. The base weights stay frozen (no gradients, no
    /// optimizer state); the trained critic is saved with the adapters merged into its
    /// weights, and the adapters alone as a PEFT directory in its `adapter/`.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Keep the last training checkpoint (model and optimizer state, `train/step-N/`) once
    /// training has finished and the critic is written. A finished run never reads it; with
    /// a full fine-tune under AdamW it is about 16 bytes per parameter (7 GB for a 0.5B
    /// critic), so `false` does not write it and removes the last periodic one
    /// (`train/state.json` stays).
    #[serde(default = "default_true")]
    pub keep_final_checkpoint: bool,
}

impl SftTrainerConfig {
    /// The same settings in the shared trainer's terms.
    fn shared(&self) -> RcoTrainerConfig {
        RcoTrainerConfig {
            beta: default_beta(),
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            momentum: self.momentum,
            epochs: self.epochs,
            groups_per_batch: self.groups_per_batch,
            accumulation: self.accumulation,
            checkpoint_every: self.checkpoint_every,
            rows_per_pass: 0,
            train_flat_groups: true,
            device: self.device,
            base_model: self.base_model.clone(),
            lora: self.lora.clone(),
            keep_final_checkpoint: self.keep_final_checkpoint,
        }
    }
}

impl Validate for SftTrainerConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        self.shared().problems(ctx)
    }
}

/// Direct Preference Critique Optimization of a burn critic, the baseline: DPO on pairs of
/// critiques of the same answer that the judge compared directly
/// (`collect.critique_comparisons`), with the RCO trainer's settings; `beta` is DPO's.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DpcoTrainerConfig {
    /// DPO's `beta`: how far the critic may move from the reference (default 0.1).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// The optimizer's learning rate.
    #[serde(default = "default_lr")]
    pub learning_rate: f64,
    /// Weight decay: decoupled from the gradient under AdamW, added to it (L2) under SGD.
    #[serde(default)]
    pub weight_decay: f64,
    /// `adamw` (the default) or `sgd`: AdamW moves each weight by about the learning rate
    /// per step whatever the gradient's size; SGD by the learning rate times the gradient.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// SGD's momentum (0, the default: none). Only with `optimizer = "sgd"`.
    #[serde(default)]
    pub momentum: f64,
    /// Passes over the groups that have a decided pair.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Groups (all their decided pairs) per micro-batch.
    #[serde(default = "default_groups")]
    pub groups_per_batch: usize,
    /// Micro-batches whose gradients are summed before each optimizer step.
    #[serde(default = "default_accumulation")]
    pub accumulation: usize,
    /// Save model and optimizer state every this many steps (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// At most this many pairs (two critiques each) in one forward and backward pass (0: a
    /// micro-batch's pairs all together). The loss is a sum over pairs, so the gradient is
    /// the same; fewer at once need less activation memory (a group of four critiques has
    /// up to six pairs, twelve sequences, too many at once for a 0.5B critic in 24 GB).
    #[serde(default)]
    pub pairs_per_pass: usize,
    /// At most this many critiques in one backward pass, so that a pair's two critiques
    /// need not go through together (0: pairs, as `pairs_per_pass` says). DPO's loss is not
    /// a sum over critiques, so every critique of a step is first scored without gradients
    /// (one forward pass more); the gradient is the same. `1` needs the activation memory
    /// of one critique, as the `rco` trainer's `rows_per_pass = 1` does (a 0.5B critic's
    /// pair of 1,000-token critiques does not fit in 24 GB together). Takes the place of
    /// `pairs_per_pass`; set one of the two.
    #[serde(default)]
    pub rows_per_pass: usize,
    /// Pairs the judge all but tied are left out: a pair trains only when its preference
    /// score (P(A better), both orders averaged under a soft reward) is more than this far
    /// from 1/2. The default 0 takes every pair the judge did not score exactly 1/2, a
    /// 0.51 as fully as a 1.0; a judge unsure of everything then trains the critic on its
    /// noise. Between 0 and 0.5.
    #[serde(default)]
    pub min_margin: f64,
    /// `cpu`, `wgpu` or `cuda:N`.
    #[serde(default)]
    pub device: DeviceSpec,
    /// The model to start from when the critic is not a local model (as for `rco`).
    #[serde(default)]
    pub base_model: Option<PathBuf>,
    /// Train LoRA adapters instead of every weight (Llama-family critics): `rank`, `alpha`
    /// and `target_modules` as in PEFT. The base weights stay frozen (no gradients, no
    /// optimizer state); the trained critic is saved with the adapters merged into its
    /// weights, and the adapters alone as a PEFT directory in its `adapter/`.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Keep the last training checkpoint (model and optimizer state, `train/step-N/`) once
    /// training has finished and the critic is written. A finished run never reads it; with
    /// a full fine-tune under AdamW it is about 16 bytes per parameter (7 GB for a 0.5B
    /// critic), so `false` does not write it and removes the last periodic one
    /// (`train/state.json` stays).
    #[serde(default = "default_true")]
    pub keep_final_checkpoint: bool,
}

impl DpcoTrainerConfig {
    /// The same settings in the shared trainer's terms.
    fn shared(&self) -> RcoTrainerConfig {
        RcoTrainerConfig {
            beta: self.beta,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            momentum: self.momentum,
            epochs: self.epochs,
            groups_per_batch: self.groups_per_batch,
            accumulation: self.accumulation,
            checkpoint_every: self.checkpoint_every,
            // For pairs, in the shared trainer: critiques per pass when set, else pairs
            // per pass (`RcoTrainer::pairs_per_pass`).
            rows_per_pass: self.rows_per_pass,
            train_flat_groups: true,
            device: self.device,
            base_model: self.base_model.clone(),
            lora: self.lora.clone(),
            keep_final_checkpoint: self.keep_final_checkpoint,
        }
    }
}

impl Validate for DpcoTrainerConfig {
    fn problems(&self, ctx: &ValidateContext) -> Vec<ConfigProblem> {
        let mut p = self.shared().problems(ctx);
        if self.rows_per_pass > 0 && self.pairs_per_pass > 0 {
            p.push(ConfigProblem::new(
                "rows_per_pass",
                "set `rows_per_pass` (critiques per pass) or `pairs_per_pass`, not both",
            ));
        }
        if !(0.0..0.5).contains(&self.min_margin) {
            p.push(ConfigProblem::new(
                "min_margin",
                format!(
                    "must be at least 0 and below 0.5 (a preference score's distance from a tie), got {}",
                    self.min_margin
                ),
            ));
        }
        let compared = ctx
            .config
            .pointer("/collect/critique_comparisons")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if !compared {
            p.push(ConfigProblem::new(
                "kind",
                "the dpco trainer learns from critiques the judge compared directly: set `critique_comparisons = true` under [collect]",
            ));
        }
        p
    }
}

/// What a trainer minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objective {
    /// The RCO loss over every critique of a group.
    Rco,
    /// The NLL of each group's best critique.
    Sft,
    /// DPO on each group's directly judged critique pairs.
    Dpco,
}

impl Objective {
    fn kind(self) -> &'static str {
        match self {
            Objective::Rco => "rco",
            Objective::Sft => "sft",
            Objective::Dpco => "dpco",
        }
    }
}

/// The training rows of every group that has any, in the objective's terms.
enum Encoded {
    /// RCO's groups, or SFT's one-row groups.
    Groups(Vec<RcoGroup>),
    /// DPCO's decided pairs per group.
    Pairs(Vec<Vec<PreferencePair>>),
}

impl Encoded {
    fn len(&self) -> usize {
        match self {
            Encoded::Groups(g) => g.len(),
            Encoded::Pairs(p) => p.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Progress saved beside the training checkpoints. Its atomic rewrite is the commit of a
/// checkpoint: it names the `step-N` directory whose model and optimizer state are complete.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrainState {
    step: usize,
    /// Directory (under `train/`) of the checkpoint of `step`.
    #[serde(default)]
    checkpoint: Option<String>,
    losses: Vec<f64>,
    done: bool,
    /// With LoRA: SHA-256 of the base checkpoint the adapters were trained on (its file, or
    /// its directory's files), since the checkpoints hold the adapters only.
    #[serde(default)]
    lora_base_sha256: Option<String>,
    /// The optimizer whose state the checkpoint holds (`adamw` in states written before
    /// the choice existed).
    #[serde(default)]
    optimizer: OptimizerKind,
}

/// What a training has read and built before its optimizer is chosen.
struct Prepared<B: AutodiffBackend> {
    device: B::Device,
    base_model: LocalLm<B>,
    tokenizer: LmTokenizer,
    spec: LocalSpec,
    encoded: Encoded,
    /// The optimizer steps, each its micro-batches of group indices.
    schedule: Vec<Vec<Vec<usize>>>,
    state: TrainState,
    state_dir: PathBuf,
    resumed_from_step: usize,
    /// Groups handed to the trainer, and how many of them were flat.
    groups: usize,
    flat_groups: usize,
}

/// The settings only DPCO's pairs have.
#[derive(Debug, Clone, Copy, Default)]
struct PairOptions {
    /// `pairs_per_pass`, used where `rows_per_pass` (`config.rows_per_pass`) is 0.
    per_pass: usize,
    /// `min_margin`: pairs whose score is within it of 1/2 are left out.
    min_margin: f64,
}

pub struct RcoTrainer {
    name: String,
    objective: Objective,
    /// Where each step's loss, learning rate and throughput go.
    metrics: Arc<dyn rco_core::Metrics>,
    config: RcoTrainerConfig,
    /// DPCO's own settings.
    pairs: PairOptions,
    seed: u64,
    base: PathBuf,
    /// Compute reference log-probs with the base model (a remote critic's were not).
    rescore_reference: bool,
    output: PathBuf,
    /// Whether the critic wraps prompts in its chat template (its `chat` key).
    chat: bool,
}

impl RcoTrainer {
    fn err(&self, e: impl std::fmt::Display) -> rco_core::Error {
        rco_core::Error::plugin(
            format!("trainer `{}` ({})", self.name, self.objective.kind()),
            e,
        )
    }

    /// The optimizer steps: per epoch a seeded shuffle of the groups, cut into micro-batches.
    fn schedule(&self, groups: usize) -> Vec<Vec<Vec<usize>>> {
        let per_step = self.config.groups_per_batch * self.config.accumulation;
        let mut steps = Vec::new();
        for epoch in 0..self.config.epochs {
            let mut order: Vec<usize> = (0..groups).collect();
            order.shuffle(&mut rco_core::seed::rng_for(
                self.seed,
                &["rco-train", &epoch.to_string()],
            ));
            for step in order.chunks(per_step) {
                steps.push(
                    step.chunks(self.config.groups_per_batch)
                        .map(<[usize]>::to_vec)
                        .collect(),
                );
            }
        }
        steps
    }

    fn run<B: AutodiffBackend>(
        &self,
        device: B::Device,
        groups: &[TrainingGroup],
        progress: &dyn Progress,
    ) -> Result<TrainSummary, LmError> {
        let state_dir = self.output.join("train");
        let state_path = state_dir.join("state.json");
        let (base_model, tokenizer, spec) = load_local_with_spec::<B>(&self.base, &device)?;
        // The reference log-probs, computed again from the base where the collected ones
        // cannot serve: all of them for a remote critic; a truncated critique's always, since
        // records written before truncated critiques were scored as prefixes scored them
        // with an end-of-sequence token after the cut (tens of nats off), and a prefix is
        // cheap to score once. Scored without autodiff (`valid()`): a forward pass on the
        // autodiff backend keeps its graph, many GB for a 0.5B model.
        let again = |c: &rco_core::ScoredCritique| self.rescore_reference || c.truncated;
        let rescored;
        let groups = if self.objective != Objective::Sft
            && groups.iter().flat_map(|g| &g.critiques).any(again)
        {
            let base = base_model.valid();
            rescored = rescore(&base, &tokenizer, self.chat, groups, &device, again)?;
            &rescored[..]
        } else {
            groups
        };
        let encoded = match self.objective {
            Objective::Rco if self.config.train_flat_groups => Encoded::Groups(encode_groups(
                &tokenizer,
                self.chat,
                groups,
                self.config.beta,
            )?),
            Objective::Rco => {
                let informative: Vec<TrainingGroup> = groups
                    .iter()
                    .filter(|g| {
                        !objective::is_flat(&g.critiques.iter().map(|c| c.cu).collect::<Vec<_>>())
                    })
                    .cloned()
                    .collect();
                Encoded::Groups(encode_groups(
                    &tokenizer,
                    self.chat,
                    &informative,
                    self.config.beta,
                )?)
            }
            Objective::Sft => Encoded::Groups(best_critiques(&tokenizer, self.chat, groups)?),
            Objective::Dpco => {
                let pairs = preference_pairs(&tokenizer, self.chat, groups, self.pairs.min_margin)?;
                let compared = groups
                    .iter()
                    .flat_map(|g| &g.preferences)
                    .filter(|p| p.score.is_some())
                    .count();
                tracing::info!(
                    "trainer `{}`: {} of {compared} compared critique pairs decided (score more than {} from 1/2), in {} groups",
                    self.name,
                    pairs.iter().map(Vec::len).sum::<usize>(),
                    self.pairs.min_margin,
                    pairs.len()
                );
                Encoded::Pairs(pairs)
            }
        };
        if encoded.is_empty() {
            return Err(LmError::Tokenize(match self.objective {
                Objective::Dpco => format!("no group has a decided critique pair: the judge preferred neither critique of every pair compared by more than `min_margin` ({}) (or `collect.critique_comparisons` was off when the groups were collected)", self.pairs.min_margin),
                _ => "no group has a best critique: every group's critiques have the same CU".into(),
            }));
        }
        let flat_groups = groups
            .iter()
            .filter(|g| objective::is_flat(&g.critiques.iter().map(|c| c.cu).collect::<Vec<_>>()))
            .count();
        let schedule = self.schedule(encoded.len());

        let mut state: TrainState = match std::fs::read_to_string(&state_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| LmError::Checkpoint {
                path: state_path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TrainState::default(),
            Err(e) => {
                return Err(LmError::Checkpoint {
                    path: state_path.clone(),
                    message: e.to_string(),
                })
            }
        };
        let resumed_from_step = state.step;
        // A run killed while writing a checkpoint leaves a `step-N` directory that
        // `state.json` never named: its files may be partial, and each holds a model's
        // weights and optimizer state. Only the committed one is kept.
        match remove_uncommitted(&state_dir, state.checkpoint.as_deref()) {
            Ok(removed) => {
                for dir in removed {
                    tracing::warn!(
                        "removed {}: a checkpoint directory left unfinished by an earlier process ({} names {})",
                        dir.display(),
                        state_path.display(),
                        state.checkpoint.as_deref().unwrap_or("none")
                    );
                }
            }
            Err(e) => tracing::warn!(
                "could not clear unfinished checkpoints under {}: {e}",
                state_dir.display()
            ),
        }
        if state.checkpoint.is_some() && !state.done && state.optimizer != self.config.optimizer {
            // The checkpoint's optimizer state is another optimizer's record.
            return Err(LmError::Checkpoint {
                path: state_path,
                message: format!(
                    "this training's checkpoint holds {} state and the trainer now asks for `optimizer = \"{}\"`; set it back, or delete {} to train from the start",
                    state.optimizer.name(),
                    self.config.optimizer.name(),
                    state_dir.display()
                ),
            });
        }
        if state.done && state.optimizer != self.config.optimizer {
            tracing::warn!(
                "trainer `{}`: {} finished under {}; its critic is kept as trained, `optimizer = \"{}\"` applies to a new training (delete {} to train again)",
                self.name,
                state_dir.display(),
                state.optimizer.name(),
                self.config.optimizer.name(),
                self.output.display()
            );
        } else {
            state.optimizer = self.config.optimizer;
        }
        let prepared = Prepared {
            device,
            base_model,
            tokenizer,
            spec,
            encoded,
            schedule,
            state,
            state_dir,
            resumed_from_step,
            groups: groups.len(),
            flat_groups,
        };
        let weight_decay = self.config.weight_decay;
        match self.config.optimizer {
            OptimizerKind::Adamw => self.optimize(
                AdamWConfig::new()
                    .with_weight_decay(weight_decay as f32)
                    .init::<B, LocalLm<B>>(),
                prepared,
                progress,
            ),
            OptimizerKind::Sgd => self.optimize(
                SgdConfig::new()
                    .with_weight_decay(
                        (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                    )
                    .with_momentum((self.config.momentum > 0.0).then(|| {
                        // PyTorch's SGD: no dampening.
                        MomentumConfig::new()
                            .with_momentum(self.config.momentum)
                            .with_dampening(0.0)
                    }))
                    .init::<B, LocalLm<B>>(),
                prepared,
                progress,
            ),
        }
    }

    /// Trains from `prepared` with `optimizer`, resuming from the committed checkpoint.
    fn optimize<B: AutodiffBackend, O: Optimizer<LocalLm<B>, B>>(
        &self,
        optimizer: O,
        prepared: Prepared<B>,
        progress: &dyn Progress,
    ) -> Result<TrainSummary, LmError> {
        // The same optimizer, with each step's gradient norm kept for the metrics.
        let mut optimizer = GradNormed::new(optimizer);
        let Prepared {
            device,
            base_model,
            tokenizer,
            spec,
            encoded,
            schedule,
            mut state,
            state_dir,
            resumed_from_step,
            groups,
            flat_groups,
        } = prepared;
        // With LoRA, the base (which also made the reference log-probs) is frozen and only
        // fresh adapters train: no second copy of the weights.
        let mut model = match &self.config.lora {
            Some(lora) => rco_lm::rng::try_seeded::<B, _, _>(
                &device,
                rco_core::seed::derive_seed(self.seed, &["lora-init"]),
                || base_model.add_lora(lora),
            )?,
            None => base_model,
        };
        if self.config.lora.is_some() && !state.done {
            // Adapters resumed on another base would train a different model than the one
            // their optimizer state belongs to: refuse, naming the files.
            let sha =
                rco_core::seed::sha256_of_path(&self.base).map_err(|e| LmError::Checkpoint {
                    path: self.base.clone(),
                    message: e.to_string(),
                })?;
            match (&state.checkpoint, &state.lora_base_sha256) {
                (Some(dir), Some(then)) if *then != sha => {
                    return Err(LmError::Checkpoint {
                        path: state_dir.join(dir),
                        message: format!(
                            "these LoRA adapters were trained on a base with sha256 {}, and {} now has sha256 {}; restore the base file, or delete {} to train from the start",
                            then.get(..12).unwrap_or(then),
                            self.base.display(),
                            sha.get(..12).unwrap_or(&sha),
                            state_dir.display()
                        ),
                    })
                }
                _ => state.lora_base_sha256 = Some(sha),
            }
        }
        if let (false, Some(dir)) = (state.done, &state.checkpoint) {
            let dir = state_dir.join(dir);
            model = match model {
                // Adapter training checkpoints hold the adapters only.
                LocalLm::Llama(mut m) if m.has_lora() => {
                    let adapters =
                        checkpoint::load_weights(m.adapters(), &dir, "adapters", &device)?;
                    m.set_adapters(adapters);
                    LocalLm::Llama(m)
                }
                model => checkpoint::load_weights(model, &dir, "model", &device)?,
            };
            let optim_path = dir.join("optimizer");
            let record = checkpoint::recorder()
                .load(optim_path.clone(), &device)
                .map_err(|e| LmError::Checkpoint {
                    path: optim_path,
                    message: e.to_string(),
                })?;
            optimizer = optimizer.load_record(record);
        }
        progress.set_length(schedule.len() as u64);
        progress.resume(state.step as u64);
        if !state.done {
            if resumed_from_step > 0 {
                tracing::info!(
                    "trainer `{}`: resuming at step {resumed_from_step} of {} from {}",
                    self.name,
                    schedule.len(),
                    state_dir.display()
                );
            }
            for (index, step) in schedule.iter().enumerate().skip(state.step) {
                let started = std::time::Instant::now();
                let (next, loss) = match (&encoded, self.objective) {
                    (Encoded::Pairs(pairs), _) if self.config.rows_per_pass > 0 => {
                        // `rows_per_pass` critiques at a time, a pair's two possibly apart.
                        let micro: Vec<Vec<&PreferencePair>> = step
                            .iter()
                            .map(|ids| ids.iter().flat_map(|&i| pairs[i].iter()).collect())
                            .collect();
                        dpo_step_in_rows(
                            model,
                            &mut optimizer,
                            &micro,
                            self.config.beta,
                            self.config.learning_rate,
                            self.config.rows_per_pass,
                            &device,
                        )
                    }
                    (Encoded::Pairs(pairs), _) => {
                        // Each micro-batch's pairs, `pairs_per_pass` at a time: the loss is
                        // normalised by the step's pair count, so the gradient does not
                        // change.
                        let per_pass = self.pairs.per_pass;
                        let micro: Vec<Vec<&PreferencePair>> = step
                            .iter()
                            .flat_map(|ids| {
                                let all: Vec<&PreferencePair> =
                                    ids.iter().flat_map(|&i| pairs[i].iter()).collect();
                                if per_pass == 0 || all.len() <= per_pass {
                                    vec![all]
                                } else {
                                    all.chunks(per_pass).map(<[_]>::to_vec).collect()
                                }
                            })
                            .collect();
                        dpo_step(
                            model,
                            &mut optimizer,
                            &micro,
                            self.config.beta,
                            self.config.learning_rate,
                            &device,
                        )
                    }
                    (Encoded::Groups(encoded), Objective::Rco) => rco_step_in_passes(
                        model,
                        &mut optimizer,
                        &micro_groups(step, encoded),
                        self.config.learning_rate,
                        self.config.rows_per_pass,
                        &device,
                    ),
                    (Encoded::Groups(encoded), _) => {
                        let micro = micro_groups(step, encoded);
                        let rows: Vec<Vec<&(Vec<u32>, Vec<u32>)>> = micro
                            .iter()
                            .map(|groups| groups.iter().flat_map(|g| g.rows.iter()).collect())
                            .collect();
                        nll_step(
                            model,
                            &mut optimizer,
                            &rows,
                            self.config.learning_rate,
                            &device,
                        )
                    }
                };
                model = next;
                // The step's freed gradients, moments and activations, gigabytes for a 0.5B
                // critic, stay resident in glibc's arenas unless given back; without this the
                // resident size grew by about 8 GB over a DPCO training (`rco_heap`).
                rco_heap::release_free_memory();
                if !loss.is_finite() {
                    return Err(LmError::Checkpoint {
                        path: state_dir.clone(),
                        message: format!("the loss is {loss} at step {}; lower trainer.learning_rate or raise trainer.beta", index + 1),
                    });
                }
                state.losses.push(loss);
                state.step = index + 1;
                let seconds = started.elapsed().as_secs_f64();
                let groups_in_step: usize = step.iter().map(Vec::len).sum();
                self.metrics.record(serde_json::json!({
                    "stage": "train",
                    "trainer": self.name,
                    // The critic this training writes (`rco`, `rco-round-2`, `sft`, ...).
                    "critic": self.output.file_name().map(|n| n.to_string_lossy()),
                    "objective": self.objective.kind(),
                    "optimizer": self.config.optimizer.name(),
                    "step": state.step,
                    "steps": schedule.len(),
                    "loss": loss,
                    // The L2 norm of the step's summed gradients, over every trained weight.
                    "grad_norm": optimizer.last(),
                    "learning_rate": self.config.learning_rate,
                    "groups": groups_in_step,
                    "groups_per_second": groups_in_step as f64 / seconds.max(1e-9),
                    "seconds": seconds,
                }));
                // The last step's checkpoint is written only to be kept. Without
                // `keep_final_checkpoint` it would be removed as soon as the critic is
                // written (7 GB and about 18 s for a 0.5B critic under AdamW); a crash
                // before then redoes the steps since the last periodic checkpoint.
                let last = state.step == schedule.len();
                if (last && self.config.keep_final_checkpoint)
                    || (!last && state.step % self.config.checkpoint_every == 0)
                {
                    self.save_state(&state_dir, &model, &optimizer, &mut state)?;
                    tracing::info!(
                        "trainer `{}`: checkpoint at step {} of {} in {}",
                        self.name,
                        state.step,
                        schedule.len(),
                        state_dir.display()
                    );
                }
                progress.set_message(&format!("loss {loss:.4}"));
                progress.inc(1);
            }
            state.done = true;
            let trained = model.valid();
            if let (Some(lora), LocalLm::Llama(adapted), LocalSpec::Llama(config)) =
                (&self.config.lora, &trained, &spec)
            {
                rco_lm::hf::save_peft_adapter(
                    adapted,
                    config,
                    lora,
                    &self.base.display().to_string(),
                    &self.output.join("adapter"),
                )?;
            }
            save_local(trained.merge_lora(), &tokenizer, &spec, &self.output)?;
            self.write_state(&state_dir, &state)?;
            if !self.config.keep_final_checkpoint {
                if let Some(dir) = state.checkpoint.take() {
                    // Done is committed first: a finished state never reads its checkpoint.
                    let _ = std::fs::remove_dir_all(state_dir.join(dir));
                    self.write_state(&state_dir, &state)?;
                }
            }
        }
        Ok(TrainSummary {
            steps: state.step,
            groups,
            flat_groups,
            first_loss: state.losses.first().copied().unwrap_or(f64::NAN),
            last_loss: state.losses.last().copied().unwrap_or(f64::NAN),
            resumed_from_step,
            // A critic trained from `base_model` is not a local model of its own (a critic
            // on a server): evaluation serves the trained weights and asks them there.
            trained_critic: if self.rescore_reference {
                rco_core::TrainedCritic::Served {
                    device: self.config.device.to_string(),
                }
            } else {
                rco_core::TrainedCritic::Checkpoint
            },
        })
    }

    /// Writes model and optimizer state into a fresh `step-N` directory, then commits it by
    /// rewriting `state.json`, then removes older step directories.
    fn save_state<B: AutodiffBackend, O: Optimizer<LocalLm<B>, B>>(
        &self,
        dir: &Path,
        model: &LocalLm<B>,
        optimizer: &O,
        state: &mut TrainState,
    ) -> Result<(), LmError> {
        let name = format!("step-{}", state.step);
        let step_dir = dir.join(&name);
        match model.lora_adapters() {
            Some(adapters) => checkpoint::save_weights(adapters, &step_dir, "adapters")?,
            None => checkpoint::save_weights(model.clone(), &step_dir, "model")?,
        }
        checkpoint::save_record(optimizer.to_record(), &step_dir, "optimizer")?;
        let previous = state.checkpoint.replace(name);
        self.write_state(dir, state)?;
        if let Some(previous) = previous.filter(|p| Some(p) != state.checkpoint.as_ref()) {
            // Only space is lost if this fails: the state names the new directory.
            let _ = std::fs::remove_dir_all(dir.join(previous));
        }
        Ok(())
    }

    fn write_state(&self, dir: &Path, state: &TrainState) -> Result<(), LmError> {
        let path = dir.join("state.json");
        let json = serde_json::to_vec(state).map_err(|e| LmError::Checkpoint {
            path: path.clone(),
            message: e.to_string(),
        })?;
        rco_core::store::write_atomic(&path, &json).map_err(|e| LmError::Checkpoint {
            path,
            message: e.to_string(),
        })
    }
}

/// Removes each `step-N` directory under `dir` other than `committed` (the one `state.json`
/// names), and returns the removed paths. A missing `dir` removes nothing.
fn remove_uncommitted(dir: &Path, committed: Option<&str>) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_step = name
            .strip_prefix("step-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_step && Some(name) != committed && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(entry.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// The groups with the reference log-prob of each critique that `which` picks computed by
/// `model` (a truncated critique as its prefix, with no end-of-sequence token).
fn rescore<B: burn::tensor::backend::Backend>(
    model: &LocalLm<B>,
    tokenizer: &LmTokenizer,
    chat: bool,
    groups: &[TrainingGroup],
    device: &B::Device,
    which: impl Fn(&rco_core::ScoredCritique) -> bool,
) -> Result<Vec<TrainingGroup>, LmError> {
    let mut out = groups.to_vec();
    for group in &mut out {
        let prompt = tokenizer.prompt_ids(&group.prompt, chat)?;
        let mut picked: Vec<&mut rco_core::ScoredCritique> =
            group.critiques.iter_mut().filter(|c| which(c)).collect();
        let rows = picked
            .iter()
            .map(|c| {
                Ok((
                    prompt.clone(),
                    tokenizer.completion_ids_ending(&c.text, !c.truncated)?,
                ))
            })
            .collect::<Result<Vec<_>, LmError>>()?;
        for (chunk, critiques) in rows.chunks(8).zip(picked.chunks_mut(8)) {
            let values = completion_log_probs(model, chunk, device)
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
            for (critique, value) in critiques.iter_mut().zip(values) {
                critique.ref_logprob = Some(value);
            }
        }
    }
    Ok(out)
}

/// Each group's highest-CU critique (the first of equals) as the one row of a group, for
/// rejection-sampling fine-tuning; groups whose critiques all have the same CU are left out.
pub fn best_critiques(
    tokenizer: &LmTokenizer,
    chat: bool,
    groups: &[TrainingGroup],
) -> Result<Vec<RcoGroup>, LmError> {
    groups
        .iter()
        .filter(|g| !objective::is_flat(&g.critiques.iter().map(|c| c.cu).collect::<Vec<_>>()))
        .map(|g| {
            let best = g
                .critiques
                .iter()
                .reduce(|best, c| if c.cu > best.cu { c } else { best })
                .expect("a group that is not flat has critiques");
            let prompt = tokenizer.prompt_ids(&g.prompt, chat)?;
            Ok(RcoGroup {
                rows: vec![(
                    prompt,
                    tokenizer.completion_ids_ending(&best.text, !best.truncated)?,
                )],
                offsets: vec![0.0],
            })
        })
        .collect()
}

/// The groups of each micro-batch of a step.
fn micro_groups<'a>(step: &[Vec<usize>], encoded: &'a [RcoGroup]) -> Vec<Vec<&'a RcoGroup>> {
    step.iter()
        .map(|ids| ids.iter().map(|&i| &encoded[i]).collect())
        .collect()
}

/// Each group's directly judged critique pairs that the judge decided (preference score
/// more than `min_margin` above or below one half), chosen critique first, with the
/// reference log-prob margin; groups without a decided pair are left out.
pub fn preference_pairs(
    tokenizer: &LmTokenizer,
    chat: bool,
    groups: &[TrainingGroup],
    min_margin: f64,
) -> Result<Vec<Vec<PreferencePair>>, LmError> {
    let mut out = Vec::new();
    for g in groups {
        let prompt = tokenizer.prompt_ids(&g.prompt, chat)?;
        let mut pairs = Vec::new();
        for p in &g.preferences {
            let Some(score) = p.score else { continue };
            if (score - 0.5).abs() <= min_margin {
                continue;
            }
            let (chosen, rejected) = if score > 0.5 {
                (p.a, p.b)
            } else if score < 0.5 {
                (p.b, p.a)
            } else {
                continue;
            };
            let (Some(chosen), Some(rejected)) =
                (g.critiques.get(chosen), g.critiques.get(rejected))
            else {
                return Err(LmError::Tokenize(format!(
                    "a critique pair of item `{}` names critique {} or {}, but the group has {}",
                    g.item_id,
                    p.a,
                    p.b,
                    g.critiques.len()
                )));
            };
            let reference = |c: &rco_core::ScoredCritique| {
                c.ref_logprob.ok_or_else(|| {
                    LmError::Tokenize(format!(
                        "a critique of item `{}` has no reference log-prob (its critic gave none); set the trainer's `base_model` to compute them",
                        g.item_id
                    ))
                })
            };
            pairs.push(PreferencePair {
                chosen: (
                    prompt.clone(),
                    tokenizer.completion_ids_ending(&chosen.text, !chosen.truncated)?,
                ),
                rejected: (
                    prompt.clone(),
                    tokenizer.completion_ids_ending(&rejected.text, !rejected.truncated)?,
                ),
                reference_margin: reference(chosen)? - reference(rejected)?,
            });
        }
        if !pairs.is_empty() {
            out.push(pairs);
        }
    }
    Ok(out)
}

pub fn encode_groups(
    tokenizer: &LmTokenizer,
    chat: bool,
    groups: &[TrainingGroup],
    beta: f64,
) -> Result<Vec<RcoGroup>, LmError> {
    groups
        .iter()
        .map(|g| {
            let prompt = tokenizer.prompt_ids(&g.prompt, chat)?;
            let rows = g
                .critiques
                .iter()
                .map(|c| Ok((prompt.clone(), tokenizer.completion_ids_ending(&c.text, !c.truncated)?)))
                .collect::<Result<Vec<_>, LmError>>()?;
            let ref_logprobs = g
                .critiques
                .iter()
                .map(|c| c.ref_logprob)
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| {
                    LmError::Tokenize(format!(
                        "a critique of item `{}` has no reference log-prob (its critic gave none); set the trainer's `base_model` to compute them",
                        g.item_id
                    ))
                })?;
            let cus: Vec<f64> = g.critiques.iter().map(|c| c.cu).collect();
            Ok(RcoGroup {
                rows,
                offsets: objective::residual_offsets(&ref_logprobs, &cus, beta),
            })
        })
        .collect()
}

#[async_trait]
impl Trainer for RcoTrainer {
    async fn train(
        &mut self,
        groups: &[TrainingGroup],
        progress: Arc<dyn Progress>,
    ) -> Result<TrainSummary> {
        if groups.is_empty() {
            return Err(
                self.err("no training groups: the collection produced no critique with a valid CU")
            );
        }
        let spec = self.config.device.compiled().map_err(|e| self.err(e))?;
        let summary: Result<TrainSummary> = rco_lm::with_backend!(spec, |B, device| self
            .run::<Autodiff<B>>(device, groups, progress.as_ref())
            .map_err(|e| self.err(e)));
        // The model, optimizer state and reference scores are dropped: give their memory
        // back before whatever the process runs next (another trainer, the evaluation).
        rco_heap::release_free_memory();
        summary
    }
}

fn build(config: &RcoTrainerConfig, ctx: &TrainerContext) -> Result<Box<dyn Trainer>> {
    build_with(config, ctx, Objective::Rco, PairOptions::default())
}

fn build_sft(config: &SftTrainerConfig, ctx: &TrainerContext) -> Result<Box<dyn Trainer>> {
    build_with(
        &config.shared(),
        ctx,
        Objective::Sft,
        PairOptions::default(),
    )
}

fn build_dpco(config: &DpcoTrainerConfig, ctx: &TrainerContext) -> Result<Box<dyn Trainer>> {
    build_with(
        &config.shared(),
        ctx,
        Objective::Dpco,
        PairOptions {
            per_pass: config.pairs_per_pass,
            min_margin: config.min_margin,
        },
    )
}

fn build_with(
    config: &RcoTrainerConfig,
    ctx: &TrainerContext,
    objective: Objective,
    pairs: PairOptions,
) -> Result<Box<dyn Trainer>> {
    // A remote critic has no local base model: the trainer starts from `base_model`.
    let (base, rescore_reference) = match &config.base_model {
        Some(path) => (ctx.resolve(path), true),
        None => (ctx.base_checkpoint.clone(), false),
    };
    if !model_exists(&base) {
        let hint = if config.base_model.is_some() {
            format!("`{}.base_model`", ctx.name)
        } else {
            format!("the base critic (a critic that is not a local model needs `{}.base_model`: a local copy of the model its server serves)", ctx.name)
        };
        return Err(rco_core::Error::plugin(
            format!("trainer `{}` ({})", ctx.name, objective.kind()),
            format!("no model at {} ({hint})", base.display()),
        ));
    }
    Ok(Box::new(RcoTrainer {
        name: ctx.name.clone(),
        objective,
        metrics: ctx.metrics.clone(),
        config: config.clone(),
        pairs,
        seed: ctx.seed,
        rescore_reference,
        base,
        output: ctx.output.clone(),
        chat: ctx
            .critic_section
            .get("chat")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true),
    }))
}

rco_core::register_plugin! {
    role: Trainer,
    kind: "rco",
    summary: "RCO: KL-regularised squared-error regression of a burn critic onto critique utility (AdamW or SGD)",
    example: "kind = \"rco\"\nbeta = 0.1\nlearning_rate = 1e-3\nepochs = 2\ngroups_per_batch = 8\n",
    config: RcoTrainerConfig,
    build: build,
}

rco_core::register_plugin! {
    role: Trainer,
    kind: "sft",
    summary: "Rejection-sampling fine-tuning (baseline): NLL of each group's highest-CU critique, flat groups left out (AdamW or SGD)",
    example: "kind = \"sft\"\nlearning_rate = 1e-3\nepochs = 2\ngroups_per_batch = 8\n",
    config: SftTrainerConfig,
    build: build_sft,
}

rco_core::register_plugin! {
    role: Trainer,
    kind: "dpco",
    summary: "Direct Preference Critique Optimization (baseline): DPO on critique pairs the judge compared directly (needs collect.critique_comparisons = true)",
    example: "kind = \"dpco\"\nbeta = 0.1\nlearning_rate = 1e-3\nepochs = 2\ngroups_per_batch = 8\n",
    config: DpcoTrainerConfig,
    build: build_dpco,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_directories_the_state_does_not_name_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let train = dir.path().join("train");
        for step in ["step-4", "step-8", "step-12"] {
            std::fs::create_dir_all(train.join(step)).unwrap();
            std::fs::write(train.join(step).join("model-partial.mpk"), b"partial").unwrap();
        }
        std::fs::write(train.join("state.json"), b"{}").unwrap();
        std::fs::create_dir_all(train.join("step-notes")).unwrap();

        let removed = remove_uncommitted(&train, Some("step-8")).unwrap();

        assert_eq!(removed, vec![train.join("step-12"), train.join("step-4")]);
        assert!(train.join("step-8/model-partial.mpk").is_file());
        assert!(train.join("state.json").is_file());
        assert!(train.join("step-notes").is_dir(), "not a step directory");
        assert!(!train.join("step-4").exists() && !train.join("step-12").exists());
        // Nothing committed yet (killed while writing the first checkpoint): all go.
        assert_eq!(
            remove_uncommitted(&train, None).unwrap(),
            vec![train.join("step-8")]
        );
        assert!(remove_uncommitted(&dir.path().join("missing"), None)
            .unwrap()
            .is_empty());
    }
}
