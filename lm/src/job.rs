//! A request to a served model and its answer: what the `Batcher` (`batcher.rs`) queues and
//! the scheduler (`scheduler.rs`) serves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::local::LmTokenizer;
use crate::sampling::SamplingConfig;
use crate::LmError;

/// What the model reads.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Chat messages (role, content), rendered with the model's chat template; a last
    /// assistant message is continued.
    Chat(Vec<(String, String)>),
    /// Text as it is.
    Raw(String),
}

/// What the model wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// `stop` (end of sequence or a stop string) or `length` (max tokens).
    pub finish_reason: &'static str,
    /// Each decoded token's log-probability and most likely alternatives, when asked for.
    pub logprobs: Option<Vec<TokenLogProb>>,
}

/// One decoded token: its text, its log-probability under the model (temperature 1, nothing
/// cut), and the most likely tokens at its place with theirs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogProb {
    pub text: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// One request to the worker.
pub struct Job {
    pub prompt: Prompt,
    pub sampling: SamplingConfig,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Return each token's log-probability with this many alternatives (`None`: none).
    pub logprobs: Option<usize>,
    /// Called with each new piece of text as it is decoded (for streaming), with the
    /// log-probabilities of its tokens when `logprobs` asks for them.
    pub on_text: Option<Box<dyn FnMut(&str, &[TokenLogProb]) + Send>>,
    /// Called once with the whole result ([`LmError::Cancelled`] if `cancel` was set).
    pub done: Box<dyn FnOnce(Result<Generated, LmError>) + Send>,
    /// Set when the client has gone: the request leaves the batch at the next step.
    pub cancel: Arc<AtomicBool>,
}

impl Job {
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Counters of the worker.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Decoding steps: forward passes over every running request.
    pub batches: AtomicU64,
    /// Rows decoded, summed over the steps.
    pub rows: AtomicU64,
    /// Most rows in one step.
    pub max_rows: AtomicU64,
    /// Prompt tokens read.
    pub prefill_tokens: AtomicU64,
    /// Requests dropped because their client went away.
    pub cancelled: AtomicU64,
    /// Requests refused for a prompt over the limits.
    pub rejected: AtomicU64,
    /// Requests decoding now.
    pub running: AtomicU64,
    /// Requests whose prompt is queued or being read now.
    pub waiting: AtomicU64,
}

pub(crate) fn prompt_ids(tokenizer: &LmTokenizer, prompt: &Prompt) -> Result<Vec<u32>, LmError> {
    match (tokenizer, prompt) {
        (LmTokenizer::Text(t), Prompt::Chat(messages)) => {
            let pairs: Vec<(&str, &str)> = messages
                .iter()
                .map(|(r, c)| (r.as_str(), c.as_str()))
                .collect();
            t.encode_prompt(&t.chat_messages(&pairs)?)
        }
        (LmTokenizer::Text(t), Prompt::Raw(text)) => t.encode_prompt(text),
        // A character-level model has no chat format: it reads the messages' text.
        (LmTokenizer::Chars(_), Prompt::Chat(messages)) => {
            let text: String = messages.iter().map(|(_, c)| c.as_str()).collect();
            tokenizer.prompt_ids(&text, false)
        }
        (LmTokenizer::Chars(_), Prompt::Raw(text)) => tokenizer.prompt_ids(text, false),
    }
}
