//! The templates of one task, and the defaults written for chat models.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The templates of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TaskTemplates {
    /// The prompt an actor answers when it writes its own initial response; placeholder
    /// `{prompt}`.
    pub answer: String,
    /// Critique prompt; placeholders `{prompt}`, `{response}`.
    pub critique: String,
    /// Refinement prompt; placeholders `{prompt}`, `{response}`, `{critique}`.
    pub refinement: String,
    /// When set, chat actors are asked for refinements as a conversation instead of the
    /// `refinement` prompt: the user's turn is the `answer` prompt, the actor's own turn is
    /// the initial response, and this (placeholders `{prompt}`, `{response}`, `{critique}`)
    /// is the user's next turn. Empty: one user turn holding the `refinement` prompt.
    pub refinement_followup: String,
    /// Pairwise judge prompt; placeholders `{prompt}`, `{a}`, `{b}`. Verdicts `[[A]]`, `[[B]]`, `[[C]]` (tie).
    pub pairwise: String,
    /// Pointwise judge prompt (RQS); placeholders `{prompt}`, `{response}`.
    pub pointwise: String,
    /// Text the judge's answer to a pairwise prompt starts with (for example `Verdict: [[`),
    /// written into the model's turn before it generates; the verdict is read from this text
    /// followed by the model's. Empty: the model writes its whole answer.
    pub pairwise_answer_prefix: String,
    /// The same for the pointwise prompt (for example `Rating: [[`).
    pub pointwise_answer_prefix: String,
}

impl Default for TaskTemplates {
    fn default() -> Self {
        Self {
            answer: "{prompt}".into(),
            critique: "You are a careful reviewer. Read the task and the response below, then write a short, specific critique that points out the most important error and says how to fix it.\n\n[Task]\n{prompt}\n\n[Response]\n{response}\n\n[Critique]\n".into(),
            refinement: "Improve the response to the task using the critique. Reply with the improved response only.\n\n[Task]\n{prompt}\n\n[Response]\n{response}\n\n[Critique]\n{critique}\n\n[Improved response]\n".into(),
            refinement_followup: String::new(),
            pairwise: "Please act as an impartial judge and decide which of two responses answers the task better. Do not let the order or the length of the responses influence you. After a short explanation, give your verdict strictly as \"[[A]]\" if response A is better, \"[[B]]\" if response B is better, or \"[[C]]\" for a tie.\n\n[Task]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n".into(),
            pointwise: "Please act as an impartial judge and rate the response to the task on a scale of 1 to 10. After a short explanation, give your rating strictly as \"Rating: [[N]]\".\n\n[Task]\n{prompt}\n\n[Response]\n{response}\n".into(),
            pairwise_answer_prefix: String::new(),
            pointwise_answer_prefix: String::new(),
        }
    }
}
