//! The five plugin traits. All are object-safe and batch-first: one call takes a slice of
//! requests and returns one result per request, in input order. Per-item failures are values
//! (for example [`Verdict::Invalid`]); `Err` means the whole call failed.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    BothOrders, Comparison, Critique, Judgement, PointwiseScore, Refinement, Result, TaskItem,
};

/// Ask a critic for `n` critiques of one item's initial response.
#[derive(Debug, Clone)]
pub struct CritiqueRequest {
    pub item: TaskItem,
    /// The critique prompt rendered from the task's template.
    pub prompt: String,
    pub n: usize,
    pub seed: u64,
}

/// Score a given completion after a given prompt.
#[derive(Debug, Clone)]
pub struct LogProbRequest {
    pub prompt: String,
    pub completion: String,
}

/// Writes critiques.
#[async_trait]
pub trait Critic: Send + Sync {
    /// How many requests the critic prefers per call.
    fn max_batch_size(&self) -> usize {
        32
    }

    /// `n` critiques per request, in request order.
    async fn critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>>;

    /// Summed log-probabilities of each completion's tokens given its prompt (prompt tokens
    /// masked). Trainable critics implement it; it is what the RCO loss regresses.
    async fn log_probs(&self, _requests: &[LogProbRequest]) -> Result<Vec<f64>> {
        Err(crate::Error::Unsupported("log_probs"))
    }

    /// One critique of one item.
    async fn critique_one(&self, request: CritiqueRequest) -> Result<Vec<Critique>> {
        let mut out = self.critique(std::slice::from_ref(&request)).await?;
        out.pop()
            .ok_or_else(|| crate::Error::Other("critic returned no result".into()))
    }
}

/// Ask an actor for an initial answer to a prompt.
#[derive(Debug, Clone)]
pub struct RespondRequest {
    pub item: TaskItem,
    pub seed: u64,
}

/// Ask an actor for `m` refinements of an item's initial response given one critique.
#[derive(Debug, Clone)]
pub struct RefineRequest {
    pub item: TaskItem,
    pub critique: String,
    /// The refinement prompt rendered from the task's template.
    pub prompt: String,
    pub m: usize,
    pub seed: u64,
}

/// Writes answers and refinements.
#[async_trait]
pub trait Actor: Send + Sync {
    fn max_batch_size(&self) -> usize {
        64
    }

    /// Initial answers, one per request.
    async fn respond(&self, requests: &[RespondRequest]) -> Result<Vec<String>>;

    /// `m` refinements per request, in request order.
    async fn refine(&self, requests: &[RefineRequest]) -> Result<Vec<Vec<Refinement>>>;
}

/// A pointwise scoring request (RQS).
#[derive(Debug, Clone)]
pub struct PointwiseRequest {
    pub task: String,
    pub prompt: String,
    pub response: String,
    pub reference: Option<String>,
    pub seed: u64,
}

/// Compares answers.
#[async_trait]
pub trait Judge: Send + Sync {
    fn max_batch_size(&self) -> usize {
        64
    }

    /// One judgement per comparison, in order.
    async fn compare(&self, comparisons: &[Comparison]) -> Result<Vec<Judgement>>;

    /// Pointwise scores on the judge's scale, for judges that give them.
    async fn score(&self, _requests: &[PointwiseRequest]) -> Result<Vec<PointwiseScore>> {
        Err(crate::Error::Unsupported("pointwise scoring"))
    }
}

/// Critique utility of one critique, estimated from the judgements of its refinements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CuEstimate {
    /// Mean preference score in [0, 1] over valid judgements; `None` if none was valid.
    pub cu: Option<f64>,
    pub valid: usize,
    pub invalid: usize,
    pub ties: usize,
    /// Pairs whose two orders disagreed.
    pub disagreements: usize,
}

/// Turns the both-order judgements of a critique's refinements into its utility.
#[async_trait]
pub trait RewardEstimator: Send + Sync {
    /// One estimate per critique; `judgements[i]` holds the pairs of critique `i`'s refinements.
    async fn estimate(&self, judgements: &[Vec<BothOrders>]) -> Result<Vec<CuEstimate>>;
}

/// One training group: the N scored critiques of one item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingGroup {
    pub item_id: String,
    /// The critique prompt the critiques were sampled from.
    pub prompt: String,
    pub critiques: Vec<ScoredCritique>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredCritique {
    pub text: String,
    /// Summed log-prob under the critic that sampled it (`None` when that critic could not
    /// say, for example a server that returns no log-probs; the trainer then computes it).
    #[serde(default)]
    pub ref_logprob: Option<f64>,
    pub cu: f64,
}

/// What a training run reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub groups: usize,
    /// Groups whose critiques all have the same CU (no signal at initialisation).
    pub flat_groups: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    /// The step the run continued from (0 for a run that started fresh).
    pub resumed_from_step: usize,
}

/// Trains a critic. The only trait whose methods take `&mut self`.
#[async_trait]
pub trait Trainer: Send {
    /// Trains on the groups, checkpointing as it goes, and writes the trained critic where
    /// the build context said; resumes from its last checkpoint if one exists.
    async fn train(
        &mut self,
        groups: &[TrainingGroup],
        progress: Arc<dyn Progress>,
    ) -> Result<TrainSummary>;
}

/// Generates task items (a built-in JSONL reader, or a task generator).
pub trait Dataset: Send + Sync {
    /// Items of a split (`train` or `test`), in a stable order.
    fn items(&self, split: &str) -> Result<Vec<TaskItem>>;
}

/// Progress of one long piece of work (the binary draws bars; tests ignore it).
pub trait Progress: Send + Sync {
    fn set_length(&self, _len: u64) {}
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
    fn finish(&self) {}
}

/// Makes progress reporters for named stages.
pub trait ProgressFactory: Send + Sync {
    fn start(&self, label: &str, len: u64) -> Arc<dyn Progress>;
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}
impl ProgressFactory for NoProgress {
    fn start(&self, _label: &str, _len: u64) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
}
