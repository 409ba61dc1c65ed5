//! Continuous service of one local model: requests from many threads queue up, and a worker
//! thread that owns the [`Engine`] takes whatever is waiting (up to its batch size) and
//! decodes it in one batched forward pass per step, streaming each row's text as it grows.
//! A scheduler on top of the engine; `rco serve` puts HTTP in front of it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use burn::prelude::*;

use crate::device::DeviceSpec;
use crate::engine::{cut_at_stop, Engine, Settings};
use crate::local::LmTokenizer;
use crate::model::CausalLm;
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
    /// Called with each new piece of text as it is decoded (for streaming).
    pub on_text: Option<Box<dyn FnMut(&str) + Send>>,
    /// Called once with the whole result.
    pub done: Box<dyn FnOnce(Result<Generated, LmError>) + Send>,
}

/// What the worker says about its model once it is loaded.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context: usize,
    pub architecture: &'static str,
}

/// Counters of the worker: how many batched decodes ran, and how many rows they held.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    pub rows: AtomicU64,
    pub max_rows: AtomicU64,
}

/// The queue in front of the worker thread.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
    pub info: ModelInfo,
    pub stats: Arc<BatchStats>,
}

impl Batcher {
    /// Loads the model at `path` on `device` in a new worker thread.
    pub fn start(path: &Path, device: &str, batch_size: usize) -> Result<Batcher, LmError> {
        let spec = DeviceSpec::parse(device)?.compiled()?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, loaded) = mpsc::channel::<Result<ModelInfo, LmError>>();
        let path = path.to_path_buf();
        let batch_size = batch_size.max(1);
        let stats = Arc::new(BatchStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("rco-model".into())
            .spawn(move || {
                let outcome: Result<(), LmError> = crate::with_backend!(spec, |B, device| {
                    let settings = Settings {
                        batch_size,
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
                                serve::<B>(&engine, &queue, &counters);
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

fn prompt_ids(tokenizer: &LmTokenizer, prompt: &Prompt) -> Result<Vec<u32>, LmError> {
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

/// The text of a row so far, cut at its stop strings; whether a stop string was met.
struct Row {
    ids: Vec<u32>,
    sent: usize,
    stopped: bool,
    /// (log-probability, alternatives) of each token, when the job asked.
    logprobs: Vec<(f32, Vec<(u32, f32)>)>,
}

fn serve<B: Backend>(engine: &Engine<B>, queue: &mpsc::Receiver<Job>, stats: &BatchStats) {
    let tokenizer = &engine.tokenizer;
    let batch_size = engine.settings.batch_size;
    let Ok(max_len) = engine.model().map(|model| model.max_len()) else {
        return;
    };
    while let Ok(first) = queue.recv() {
        // Whatever arrives within a few milliseconds joins the batch.
        let mut jobs = vec![first];
        let deadline = Instant::now() + Duration::from_millis(3);
        while jobs.len() < batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut ready: Vec<(Job, Vec<u32>)> = Vec::new();
        for job in jobs {
            match prompt_ids(tokenizer, &job.prompt).and_then(|ids| {
                if ids.len() + 2 > max_len {
                    Err(LmError::Tokenize(format!(
                        "the prompt takes {} tokens; the model reads at most {max_len}",
                        ids.len(),
                    )))
                } else {
                    Ok(ids)
                }
            }) {
                Ok(ids) => ready.push((job, ids)),
                Err(e) => (job.done)(Err(e)),
            }
        }
        // Rows with the same sampling settings decode together.
        while !ready.is_empty() {
            let sampling = ready[0].0.sampling.clone();
            let (mut group, rest): (Vec<_>, Vec<_>) =
                ready.into_iter().partition(|(j, _)| j.sampling == sampling);
            ready = rest;
            let prompts: Vec<Vec<u32>> = group.iter().map(|(_, ids)| ids.clone()).collect();
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .rows
                .fetch_add(prompts.len() as u64, Ordering::Relaxed);
            stats
                .max_rows
                .fetch_max(prompts.len() as u64, Ordering::Relaxed);
            let seeds: Vec<u64> = group.iter().map(|(j, _)| j.seed).collect();
            let mut rows: Vec<Row> = group
                .iter()
                .map(|_| Row {
                    ids: Vec::new(),
                    sent: 0,
                    stopped: false,
                    logprobs: Vec::new(),
                })
                .collect();
            let completions =
                engine.sample_streaming(&prompts, &seeds, &sampling, &mut |row, token, logits| {
                    let (job, _) = &mut group[row];
                    let state = &mut rows[row];
                    state.ids.push(token);
                    if let Some(top) = job.logprobs {
                        state
                            .logprobs
                            .push(crate::sampling::token_log_probs(logits, token, top));
                    }
                    if state.stopped {
                        return false;
                    }
                    if job.on_text.is_none() && job.stop.is_empty() {
                        return true;
                    }
                    let Ok(text) = tokenizer.decode(&state.ids) else {
                        return true;
                    };
                    // Stop strings are checked as tokens come, and the row stops at one.
                    let cut = cut_at_stop(text.clone(), &job.stop);
                    if cut.len() < text.len() {
                        state.stopped = true;
                    }
                    let Some(on_text) = job.on_text.as_mut() else {
                        return !state.stopped;
                    };
                    let hold = if state.stopped {
                        0
                    } else {
                        // A stop string may be starting: hold back as much as it could span.
                        job.stop
                            .iter()
                            .map(|s| s.len().saturating_sub(1))
                            .max()
                            .unwrap_or(0)
                    };
                    // Never split a character that more tokens will complete.
                    let mut end = cut.len().saturating_sub(hold);
                    while end > state.sent && !cut.is_char_boundary(end) {
                        end -= 1;
                    }
                    if cut[..end].ends_with('\u{FFFD}') {
                        return !state.stopped;
                    }
                    if end > state.sent {
                        on_text(&cut[state.sent..end]);
                        state.sent = end;
                    }
                    !state.stopped
                });
            let completions = match completions {
                Ok(completions) => completions,
                Err(e) => {
                    let message = e.to_string();
                    for (job, _) in group {
                        (job.done)(Err(LmError::Device(message.clone())));
                    }
                    continue;
                }
            };
            for (((mut job, ids), ids_out), state) in group.into_iter().zip(completions).zip(rows) {
                let result = tokenizer.decode(&ids_out).map(|text| {
                    let cut = cut_at_stop(text.clone(), &job.stop);
                    let stopped = state.stopped
                        || cut.len() < text.len()
                        || ids_out.len() < sampling.max_tokens;
                    if let Some(on_text) = job.on_text.as_mut() {
                        if cut.len() > state.sent && cut.is_char_boundary(state.sent) {
                            on_text(&cut[state.sent..]);
                        }
                    }
                    let logprobs = job.logprobs.map(|_| {
                        let piece = |id: u32| tokenizer.decode(&[id]).unwrap_or_default();
                        ids_out
                            .iter()
                            .zip(&state.logprobs)
                            .map(|(&id, (logprob, top))| TokenLogProb {
                                text: piece(id),
                                logprob: *logprob,
                                top: top.iter().map(|&(t, lp)| (piece(t), lp)).collect(),
                            })
                            .collect()
                    });
                    Generated {
                        text: cut,
                        prompt_tokens: ids.len(),
                        completion_tokens: ids_out.len(),
                        finish_reason: if stopped { "stop" } else { "length" },
                        logprobs,
                    }
                });
                (job.done)(result);
            }
        }
    }
}
