//! Domain types shared by every plugin and stage.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One task item: a prompt `x`, the actor's initial response `y0`, optionally a reference
/// and, for code, the tests a program must pass.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskItem {
    /// Unique id of the item within its dataset split.
    pub id: String,
    /// Task family the item belongs to (metrics are reported per task).
    pub task: String,
    /// The prompt `x`.
    pub prompt: String,
    /// The initial response `y0` that critiques criticise and refinements improve. Empty
    /// when the data has none: each actor then writes its own (`Actor::respond`).
    #[serde(default)]
    pub initial_response: String,
    /// Ground truth, where the task has one (used by verifier judges and judge prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The tests of a code item: Python that checks the program (HumanEval's `check(candidate)`
    /// function, or plain asserts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// The function the tests call (HumanEval's `entry_point`), for code items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
}

/// One critique `c` of an item's initial response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critique {
    pub text: String,
    /// Summed log-probability of the critique tokens under the critic that sampled it
    /// (the reference model `p_ref` of the RCO loss); `None` for critics that cannot score.
    #[serde(default)]
    pub ref_logprob: Option<f64>,
    /// The critic stopped at its token limit (`max_tokens`) before the critique ended: the
    /// text is a prefix of what the model would have written, and its `ref_logprob` is the
    /// log-probability of that prefix only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One refinement `y` written by an actor from `(x, y0, c)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refinement {
    pub text: String,
}

/// A judge's verdict on a pair (A, B).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    A,
    B,
    Tie,
    /// The judge's answer could not be read; counted, reported and excluded from means.
    Invalid {
        reason: String,
    },
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        !matches!(self, Verdict::Invalid { .. })
    }
}

/// A judge's answer to one pairwise comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Probability that A is better, for judges that give one (soft CU mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prob_a: Option<f64>,
}

impl Judgement {
    pub fn hard(verdict: Verdict) -> Self {
        Self {
            verdict,
            prob_a: None,
        }
    }
}

/// A pairwise comparison request: which of `a` and `b` answers `prompt` better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Comparison {
    pub task: String,
    pub prompt: String,
    #[serde(default)]
    pub reference: Option<String>,
    pub a: String,
    pub b: String,
    /// Seed for judges that sample.
    pub seed: u64,
    /// The item's tests, for code verifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
    /// The function the tests call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<String>,
}

/// A direct comparison of two critiques of one answer: which of `a` and `b` would help
/// more to improve the item's initial response. The `dpco` baseline trains on these
/// (`collect.critique_comparisons`); [`crate::Judge::compare_critiques`] answers them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CritiqueComparison {
    /// The item; its `initial_response` is the answer both critiques criticise.
    pub item: TaskItem,
    pub a: String,
    pub b: String,
    /// Seed for judges that sample.
    pub seed: u64,
}

impl CritiqueComparison {
    /// The question a judge that compares responses is asked instead: the item's prompt
    /// and answer, and which critique (response A or B) would help more to improve it.
    pub fn as_comparison(&self) -> Comparison {
        Comparison {
            task: self.item.task.clone(),
            prompt: format!(
                "{}\n\nAn answer to the request above:\n{}\n\nWhich critique of this answer would help its author more to improve it? Each response below is a critique.",
                self.item.prompt, self.item.initial_response
            ),
            reference: self.item.reference.clone(),
            a: self.a.clone(),
            b: self.b.clone(),
            seed: self.seed,
            tests: None,
            entry_point: None,
        }
    }
}

/// The two judgements of one refinement against the initial response:
/// `refined_first` has the refinement as A, `refined_second` has it as B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BothOrders {
    pub refined_first: Judgement,
    pub refined_second: Judgement,
}

/// A pointwise score on the judge's scale (RQS), or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PointwiseScore {
    Score(f64),
    Invalid { reason: String },
}
