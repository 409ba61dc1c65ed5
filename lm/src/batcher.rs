//! Continuous service of one local model: requests from many threads queue up for a worker
//! thread that owns the [`Engine`] and batches them continuously ([`crate::scheduler`]):
//! each decoding step is one forward pass over every running request, and requests join
//! and leave between steps. `rco serve` puts HTTP in front of it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use crate::device::DeviceSpec;
use crate::engine::{Engine, Settings};
use crate::local::LmTokenizer;
use crate::model::CausalLm;
use crate::sampling::SamplingConfig;
use crate::scheduler::Limits;
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

/// What the worker says about its model once it is loaded.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context: usize,
    pub architecture: &'static str,
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

/// The queue in front of the worker thread.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
    pub info: ModelInfo,
    pub stats: Arc<BatchStats>,
}

impl Batcher {
    /// Loads the model at `path` on `device` in a new worker thread that schedules within
    /// `limits`.
    pub fn start(path: &Path, device: &str, limits: Limits) -> Result<Batcher, LmError> {
        let spec = DeviceSpec::parse(device)?.compiled()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel::<Result<ModelInfo, LmError>>();
        let path = path.to_path_buf();
        let limits = Limits {
            batch_size: limits.batch_size.max(1),
            ..limits
        };
        let stats = Arc::new(BatchStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("rco-model".into())
            .spawn(move || {
                let outcome: Result<(), LmError> = crate::with_backend!(spec, |B, device| {
                    let settings = Settings {
                        batch_size: limits.batch_size,
                        ..Settings::default()
                    };
                    match Engine::<B>::open(&path, device, settings) {
                        Ok(engine) => {
                            let info = engine.model().map(|model| ModelInfo {
                                context: model.max_len(),
                                architecture: model.architecture(),
                            });
                            let loaded = info.is_ok();
                            let _ = ready.send(info);
                            if loaded {
                                crate::scheduler::run::<B>(&engine, &queue, &counters, &limits);
                            }
                            Ok(())
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            Ok(())
                        }
                    }
                });
                if let Err(e) = outcome {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| LmError::Device(format!("starting the model thread: {e}")))?;
        let info = loaded
            .recv()
            .map_err(|_| LmError::Device("the model thread ended while loading".into()))??;
        Ok(Batcher { jobs, info, stats })
    }

    pub fn submit(&self, job: Job) -> Result<(), LmError> {
        self.jobs
            .send(job)
            .map_err(|_| LmError::Device("the model thread has stopped".into()))
    }
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
