//! The five plugin traits. All are object-safe and batch-first: one call takes a slice of
//! requests and returns one result per request, in input order. Per-item failures are values
//! (for example [`Verdict::Invalid`]); `Err` means the whole call failed.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    BothOrders, Comparison, Critique, CritiqueComparison, Judgement, PointwiseScore, Refinement,
    Result, TaskItem,
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

/// A critic's sampling settings, as [`Critic::sampling`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CriticSampling {
    pub temperature: f64,
    /// 1 = no nucleus truncation.
    pub top_p: f64,
    /// 0 = no top-k truncation.
    pub top_k: usize,
    /// The token limit of one critique.
    pub max_tokens: usize,
}

impl CriticSampling {
    /// Whether critiques are drawn from the model's own distribution, as the reference
    /// log-prob and `log Z` of the RCO loss assume.
    pub fn is_reference_policy(&self) -> bool {
        self.temperature == 1.0 && self.top_p >= 1.0 && self.top_k == 0
    }

    /// What differs from the reference policy, for a warning.
    pub fn deviation(&self) -> Option<String> {
        (!self.is_reference_policy()).then(|| {
            format!(
                "the critic samples with temperature {}, top_p {}, top_k {}, but the RCO loss treats critiques as drawn from the reference policy (temperature 1, top_p 1, top_k 0): ref_logprob and log Z describe the untempered model, so the regression target is biased",
                self.temperature, self.top_p, self.top_k
            )
        })
    }
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

    /// How the critic samples, where it can say. The RCO objective treats critiques as drawn
    /// from the reference policy (temperature 1, no top-k or top-p truncation); collection
    /// warns when a critic samples otherwise.
    fn sampling(&self) -> Option<CriticSampling> {
        None
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
    /// The answer prompt rendered from the task's template (`{prompt}` alone by default).
    pub prompt: String,
    pub seed: u64,
}

/// One turn of a conversation: `role` is `user`, `assistant` or `system`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

impl Turn {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Ask an actor for `m` refinements of an item's initial response given one critique.
#[derive(Debug, Clone)]
pub struct RefineRequest {
    pub item: TaskItem,
    pub critique: String,
    /// The refinement prompt rendered from the task's `refinement` template.
    pub prompt: String,
    /// The refinement as the conversation a chat model answers
    /// ([`crate::task_templates::TaskTemplates::refinement_turns`]): one user turn holding
    /// `prompt`, or, when the task has a `refinement_followup`, the answer prompt, the
    /// initial response as the actor's own turn, and the follow-up holding the critique.
    /// Chat actors answer this; an actor without turns answers `prompt`.
    pub turns: Vec<Turn>,
    pub m: usize,
    pub seed: u64,
}

impl RefineRequest {
    /// `turns`, or one user turn holding `prompt` when a request has none.
    pub fn conversation(&self) -> Vec<Turn> {
        if self.turns.is_empty() {
            vec![Turn::user(self.prompt.clone())]
        } else {
            self.turns.clone()
        }
    }
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

    /// `n` critiques of the item's initial response written by the actor itself, for the
    /// self-refine baseline (the `self-refine` critic). By default the actor answers the
    /// critique prompt (`request.prompt`) `n` times with [`Actor::respond`], each with its
    /// own seed; an actor that critiques differently overrides it.
    async fn self_critique(&self, requests: &[CritiqueRequest]) -> Result<Vec<Vec<Critique>>> {
        let asks: Vec<RespondRequest> = requests
            .iter()
            .flat_map(|r| {
                (0..r.n).map(move |k| RespondRequest {
                    item: r.item.clone(),
                    prompt: r.prompt.clone(),
                    seed: crate::seed::derive_seed(r.seed, &["self-critique", &k.to_string()]),
                })
            })
            .collect();
        let mut texts = self.respond(&asks).await?.into_iter();
        if texts.len() != asks.len() {
            return Err(crate::Error::Other(format!(
                "the actor returned {} answers for {} self-critique prompts",
                texts.len(),
                asks.len()
            )));
        }
        Ok(requests
            .iter()
            .map(|r| {
                texts
                    .by_ref()
                    .take(r.n)
                    .map(|text| Critique {
                        text,
                        ref_logprob: None,
                        truncated: false,
                    })
                    .collect()
            })
            .collect())
    }
}

/// A pointwise scoring request (RQS).
#[derive(Debug, Clone, Default)]
pub struct PointwiseRequest {
    pub task: String,
    pub prompt: String,
    pub response: String,
    pub reference: Option<String>,
    pub seed: u64,
    /// The item's tests, for code verifiers.
    pub tests: Option<String>,
    /// The function the tests call.
    pub entry_point: Option<String>,
}

impl PointwiseRequest {
    /// A request to score `response` to `item`.
    pub fn for_item(item: &TaskItem, response: &str, seed: u64) -> Self {
        Self {
            task: item.task.clone(),
            prompt: item.prompt.clone(),
            response: response.to_string(),
            reference: item.reference.clone(),
            seed,
            tests: item.tests.clone(),
            entry_point: item.entry_point.clone(),
        }
    }
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

    /// One judgement per direct comparison of two critiques (A and B are critiques of the
    /// item's initial response), in order: the `dpco` baseline's signal. By default each is
    /// asked as an ordinary comparison ([`CritiqueComparison::as_comparison`]: the request,
    /// the answer and which critique would help more); a judge that cannot judge critiques
    /// (a verifier of answers) answers [`crate::Verdict::Invalid`], and a judge that
    /// wraps others passes them on.
    async fn compare_critiques(
        &self,
        comparisons: &[CritiqueComparison],
    ) -> Result<Vec<Judgement>> {
        let plain: Vec<Comparison> = comparisons
            .iter()
            .map(CritiqueComparison::as_comparison)
            .collect();
        self.compare(&plain).await
    }

    /// For a verifier (a judge that checks answers to items of `task` against ground
    /// truth: a math answer checker, a code test runner), the pointwise score of a correct
    /// answer. The runner uses it to count answers that are already correct and to report
    /// solve rates; `None` for judges whose scores are opinions.
    fn solved_score(&self, _task: &str) -> Option<f64> {
        None
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
    /// Direct judgements of two critiques of the group against each other, in both orders
    /// (collected with `collect.critique_comparisons`; the `dpco` trainer's pairs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<CritiquePreference>,
}

/// Critique `a` against critique `b` of one group (indices into its `critiques`), judged
/// directly in both orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CritiquePreference {
    pub a: usize,
    pub b: usize,
    /// `a`'s preference score in [0, 1] from the two judgements, as the run's reward
    /// estimator scores one pair (1: `a` preferred in both orders, 0.5: no preference);
    /// `None` when neither judgement was valid.
    pub score: Option<f64>,
    /// The judgements: `refined_first` has `a` as A, `refined_second` has `a` as B.
    pub pair: BothOrders,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredCritique {
    pub text: String,
    /// Summed log-prob under the critic that sampled it (`None` when that critic could not
    /// say, for example a server that returns no log-probs; the trainer then computes it).
    #[serde(default)]
    pub ref_logprob: Option<f64>,
    pub cu: f64,
    /// The critic stopped at its token limit: `text` is a prefix of what it would have
    /// written. Its log-probs, the reference's and the trained critic's alike, are those of
    /// the prefix's tokens with no end-of-sequence token after them: the critic did not end
    /// it, so training neither rewards nor punishes ending there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
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
    /// How evaluation gets at the trained critic (absent in summaries written before it
    /// existed: the trained checkpoint).
    #[serde(default)]
    pub trained_critic: TrainedCritic,
}

/// What a trainer hands to evaluation: how the trained critic, written to the output
/// directory of its build context, is run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrainedCritic {
    /// The critic section's plugin loads the trained checkpoint itself.
    #[default]
    Checkpoint,
    /// The critic section's plugin asks a server: the runner serves the trained checkpoint
    /// (an OpenAI-compatible server on this machine, on `device`) and hands the plugin its
    /// endpoint.
    Served { device: String },
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

    /// The files the items are read from, if any: a run records their hashes in its
    /// manifest and says so when one changes under it.
    fn files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Where the initial responses come from, if the dataset's config says; unset, the
    /// runner uses the data's `initial_response` when every item has one and the actors'
    /// own answers otherwise.
    fn initial_response(&self) -> Option<crate::dataset::InitialResponse> {
        None
    }
}

/// Progress of one long piece of work (the binary draws bars; tests ignore it).
pub trait Progress: Send + Sync {
    fn set_length(&self, _len: u64) {}
    fn inc(&self, _delta: u64) {}
    /// Steps a resumed piece of work finds already done (read back from its records): they
    /// count in the position, but not in the pace that estimates the time left.
    fn resume(&self, done: u64) {
        self.inc(done)
    }
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

/// Numbers that long work reports as it goes (a training step's loss, learning rate and
/// throughput; a collected batch's counts). The runner appends each record, with the time,
/// to the run's `metrics.jsonl`.
pub trait Metrics: Send + Sync {
    /// One record: a JSON object whose `stage` names the work it belongs to.
    fn record(&self, record: serde_json::Value);
}

/// Metrics that go nowhere.
pub struct NoMetrics;
impl Metrics for NoMetrics {
    fn record(&self, _record: serde_json::Value) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_untempered_untruncated_sampling_is_the_reference_policy() {
        let reference = CriticSampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 16,
        };
        assert!(reference.deviation().is_none());
        for off in [
            CriticSampling {
                temperature: 0.7,
                ..reference
            },
            CriticSampling {
                top_p: 0.95,
                ..reference
            },
            CriticSampling {
                top_k: 40,
                ..reference
            },
        ] {
            let warning = off.deviation().expect("a warning");
            assert!(warning.contains("reference policy"), "{warning}");
        }
    }
}
