//! The worker loop behind the `Batcher` (`batcher.rs`): continuous batching over one model.
//!
//! Requests join the running batch as soon as their prompt has been read and leave it at the
//! step they finish, so a short request never waits for a long one to end. Each turn:
//!
//! 1. every queued request is taken; a prompt over the limits is refused at once;
//! 2. requests whose client went away are dropped, waiting or running;
//! 3. prompts are read: new short prompts together in one padded pass of at most
//!    `prefill_chunk` tokens, and one chunk of at most one long prompt, so a long prompt is
//!    read over many turns and cannot stall the requests that are decoding;
//! 4. every running request decodes one token, all in one forward pass.
//!
//! Memory is bounded: a request joins only while rows × (the longest sequence they can
//! reach) stays within `kv_tokens` (a request alone always runs, up to the model's context).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::engine::{cut_at_stop, Engine};
use crate::job::{prompt_ids, BatchStats, Generated, Job, TokenLogProb};
use crate::local::{LmTokenizer, LocalLm};
use crate::model::{CausalLm, KvCache};
use crate::sampling::{draw, token_log_probs, PaddedBatch, StopTokens};
use crate::LmError;

/// Large negative number added to masked attention scores.
const MASKED: f32 = -1e9;

/// How much the scheduler takes on at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most requests decoding together.
    pub batch_size: usize,
    /// Longest prompt accepted, in tokens (never more than the model's context allows).
    pub max_prompt_tokens: usize,
    /// Most prompt tokens read in one forward pass; longer prompts are read in chunks.
    pub prefill_chunk: usize,
    /// Key/value cache budget: rows × time steps the running batch may reach.
    pub kv_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch_size: 16,
            max_prompt_tokens: usize::MAX,
            prefill_chunk: 256,
            kv_tokens: 65_536,
        }
    }
}

/// A request whose prompt is being read.
struct Waiting<B: Backend> {
    job: Job,
    ids: Vec<u32>,
    /// Prompt tokens read so far (into `cache`).
    read: usize,
    cache: KvCache<B>,
    /// Logits after the last prompt token, once the whole prompt is read.
    last: Option<Vec<f32>>,
}

/// A request that is decoding.
struct Row {
    job: Job,
    prompt_tokens: usize,
    out: Vec<u32>,
    /// Bytes of text already streamed.
    sent: usize,
    /// Tokens whose log-probabilities were already streamed.
    logprobs_sent: usize,
    /// (log-probability, alternatives) of each token, when the job asked.
    logprobs: Vec<(f32, Vec<(u32, f32)>)>,
    rng: ChaCha8Rng,
    /// The token to feed at the next step.
    next: u32,
    /// Why the row ended, once it has.
    finish: Option<&'static str>,
}

/// The running batch: left-padded rows that all end at `time`.
struct Running<B: Backend> {
    rows: Vec<Row>,
    cache: KvCache<B>,
    pads: Vec<usize>,
    time: usize,
}

impl<B: Backend> Default for Running<B> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            cache: KvCache::default(),
            pads: Vec::new(),
            time: 0,
        }
    }
}

impl<B: Backend> Running<B> {
    /// Whether rows of these (prompt length, max tokens) may join without the batch
    /// outgrowing the key/value budget.
    fn admits(&self, joining: &[(usize, usize)], limits: &Limits, context: usize) -> bool {
        let rows = self.rows.len() + joining.len();
        if rows > limits.batch_size {
            return false;
        }
        if self.rows.is_empty() && joining.len() <= 1 {
            return true;
        }
        let time = joining.iter().map(|j| j.0).fold(self.time, usize::max);
        let remaining = self
            .rows
            .iter()
            .map(|r| r.job.sampling.max_tokens.saturating_sub(r.out.len()))
            .chain(joining.iter().map(|j| j.1))
            .max()
            .unwrap_or(0);
        rows.saturating_mul((time + remaining).min(context)) <= limits.kv_tokens
    }

    /// Adds rows whose cache `cache` holds `time` steps with `pads` in front of each.
    fn join(&mut self, rows: Vec<Row>, mut cache: KvCache<B>, mut pads: Vec<usize>, time: usize) {
        if rows.is_empty() {
            return;
        }
        if self.rows.is_empty() {
            *self = Running {
                rows,
                cache,
                pads,
                time,
            };
            return;
        }
        let to = self.time.max(time);
        self.cache.pad_front(to - self.time);
        self.pads.iter_mut().for_each(|p| *p += to - self.time);
        cache.pad_front(to - time);
        pads.iter_mut().for_each(|p| *p += to - time);
        self.cache.append_rows(cache);
        self.pads.extend(pads);
        self.rows.extend(rows);
        self.time = to;
    }

    /// Takes out the rows that ended, keeping the others, and drops padding no row needs.
    fn take_ended(&mut self, device: &B::Device) -> Vec<Row> {
        if self.rows.iter().all(|r| r.finish.is_none()) {
            return Vec::new();
        }
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].finish.is_none())
            .collect();
        let mut ended = Vec::new();
        let mut kept = Vec::new();
        for row in self.rows.drain(..) {
            if row.finish.is_some() {
                ended.push(row);
            } else {
                kept.push(row);
            }
        }
        if kept.is_empty() {
            *self = Running::default();
            return ended;
        }
        self.cache.retain_rows(&keep, device);
        self.pads = keep.iter().map(|&i| self.pads[i]).collect();
        self.rows = kept;
        let common = self.pads.iter().copied().min().unwrap_or(0);
        if common > 0 {
            self.cache.drop_front(common);
            self.pads.iter_mut().for_each(|p| *p -= common);
            self.time -= common;
        }
        ended
    }
}

/// The scheduler's view of the model.
struct Worker<'a, B: Backend> {
    model: &'a LocalLm<B>,
    tokenizer: &'a LmTokenizer,
    device: &'a B::Device,
    stop: StopTokens,
    context: usize,
    limits: &'a Limits,
    stats: &'a BatchStats,
}

/// Serves the jobs of `queue` until every sender is gone.
pub(crate) fn run<B: Backend>(
    engine: &Engine<B>,
    queue: &mpsc::Receiver<Job>,
    stats: &BatchStats,
    limits: &Limits,
) {
    let Ok(model) = engine.model() else {
        return;
    };
    let worker = Worker {
        model: &model,
        tokenizer: &engine.tokenizer,
        device: &engine.device,
        stop: engine.tokenizer.stop(),
        context: model.max_len(),
        limits,
        stats,
    };
    let mut waiting: VecDeque<Waiting<B>> = VecDeque::new();
    let mut batch = Running::<B>::default();
    loop {
        if batch.rows.is_empty() && waiting.is_empty() {
            // Idle: wait for a request, then a moment for others sent with it.
            let Ok(job) = queue.recv() else {
                return;
            };
            worker.take(job, &mut waiting);
            let deadline = Instant::now() + Duration::from_millis(3);
            while let Ok(job) =
                queue.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                worker.take(job, &mut waiting);
            }
        }
        loop {
            match queue.try_recv() {
                Ok(job) => worker.take(job, &mut waiting),
                Err(mpsc::TryRecvError::Empty) => break,
                // The server is gone: finish what is running, then stop.
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        let started = Instant::now();
        worker.drop_cancelled(&mut waiting, &mut batch);
        let read_before = stats.prefill_tokens.load(Ordering::Relaxed);
        worker.read_prompts(&mut waiting, &mut batch);
        let reading = started.elapsed();
        let rows = batch.rows.len();
        worker.decode(&mut batch);
        tracing::debug!(
            "scheduler: read {} prompt tokens in {:.3} s, decoded {rows} rows (time {}) in {:.3} s; {} waiting",
            stats.prefill_tokens.load(Ordering::Relaxed) - read_before,
            reading.as_secs_f64(),
            batch.time,
            (started.elapsed() - reading).as_secs_f64(),
            waiting.len()
        );
        stats
            .running
            .store(batch.rows.len() as u64, Ordering::Relaxed);
        stats.waiting.store(waiting.len() as u64, Ordering::Relaxed);
    }
}

impl<B: Backend> Worker<'_, B> {
    /// Tokenizes a new job and queues it, or refuses it with the limit it is over.
    fn take(&self, job: Job, waiting: &mut VecDeque<Waiting<B>>) {
        let limit = self
            .limits
            .max_prompt_tokens
            .min(self.context.saturating_sub(2));
        match prompt_ids(self.tokenizer, &job.prompt) {
            Ok(ids) if ids.len() > limit => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                (job.done)(Err(LmError::Request(format!(
                    "the prompt takes {} tokens; this server reads at most {limit} (the model's context is {} tokens)",
                    ids.len(),
                    self.context
                ))))
            }
            Ok(ids) => waiting.push_back(Waiting {
                job,
                ids,
                read: 0,
                cache: KvCache::default(),
                last: None,
            }),
            Err(e) => (job.done)(Err(LmError::Request(e.to_string()))),
        }
    }

    /// Ends the requests whose client went away.
    fn drop_cancelled(&self, waiting: &mut VecDeque<Waiting<B>>, batch: &mut Running<B>) {
        let mut kept = VecDeque::with_capacity(waiting.len());
        for w in waiting.drain(..) {
            if w.job.is_cancelled() {
                self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                (w.job.done)(Err(LmError::Cancelled));
            } else {
                kept.push_back(w);
            }
        }
        *waiting = kept;
        for row in &mut batch.rows {
            if row.job.is_cancelled() {
                row.finish = Some("cancelled");
            }
        }
        for row in batch.take_ended(self.device) {
            self.end(row);
        }
    }

    /// Reads one chunk of the first long prompt, and a padded pass of new short prompts;
    /// whatever has been read in full joins the batch.
    fn read_prompts(&self, waiting: &mut VecDeque<Waiting<B>>, batch: &mut Running<B>) {
        let chunk = self.limits.prefill_chunk.max(1);
        // The first long prompt: one chunk per turn, then it joins when there is room.
        let mut long_ready_but_waiting = false;
        if let Some(i) = waiting.iter().position(|w| w.ids.len() > chunk) {
            if waiting[i].last.is_none() {
                let w = &mut waiting[i];
                let end = (w.read + chunk).min(w.ids.len());
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    self.read_chunk(&w.ids, w.read, end, &mut w.cache)
                }));
                match outcome {
                    Ok(last) => {
                        self.stats
                            .prefill_tokens
                            .fetch_add((end - w.read) as u64, Ordering::Relaxed);
                        w.read = end;
                        if end == w.ids.len() {
                            w.last = Some(last);
                        }
                    }
                    Err(panic) => {
                        let w = waiting.remove(i).expect("a waiting request");
                        (w.job.done)(Err(LmError::Device(panic_message(&panic))));
                        return;
                    }
                }
            }
            let w = &waiting[i];
            if w.last.is_some() {
                let joining = [(w.ids.len(), w.job.sampling.max_tokens)];
                if batch.admits(&joining, self.limits, self.context) {
                    let w = waiting.remove(i).expect("a waiting request");
                    let last = w.last.unwrap_or_default();
                    let time = w.ids.len();
                    self.join(
                        batch,
                        vec![(w.job, w.ids.len())],
                        &last,
                        w.cache,
                        vec![0],
                        time,
                    );
                } else {
                    long_ready_but_waiting = true;
                }
            }
        }
        if long_ready_but_waiting {
            // A long prompt that has been read goes first, so it is not starved.
            return;
        }
        // New short prompts, in arrival order, as many as fit one pass and the batch.
        let mut group: Vec<usize> = Vec::new();
        let mut joining: Vec<(usize, usize)> = Vec::new();
        let mut longest = 0;
        for (i, w) in waiting.iter().enumerate() {
            if w.ids.len() > chunk {
                continue;
            }
            let longer = longest.max(w.ids.len());
            joining.push((w.ids.len(), w.job.sampling.max_tokens));
            let fits_pass = group.is_empty() || (group.len() + 1) * longer <= chunk;
            if !fits_pass || !batch.admits(&joining, self.limits, self.context) {
                break;
            }
            group.push(i);
            longest = longer;
        }
        if group.is_empty() {
            return;
        }
        let mut taken: Vec<Waiting<B>> = Vec::with_capacity(group.len());
        for &i in group.iter().rev() {
            taken.push(waiting.remove(i).expect("a waiting request"));
        }
        taken.reverse();
        let prompts: Vec<Vec<u32>> = taken.iter().map(|w| w.ids.clone()).collect();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let padded = PaddedBatch::<B>::new(&prompts, self.device);
            let (pads, time) = (padded.pads.clone(), padded.time);
            let mut cache = KvCache::default();
            let last: Vec<f32> = self
                .model
                .last_logits_cached(padded.tokens, padded.positions, padded.mask, &mut cache)
                .into_data()
                .convert::<f32>()
                .into_vec()
                .unwrap_or_default();
            (cache, pads, time, last)
        }));
        match outcome {
            Ok((cache, pads, time, last)) => {
                self.stats.prefill_tokens.fetch_add(
                    prompts.iter().map(Vec::len).sum::<usize>() as u64,
                    Ordering::Relaxed,
                );
                let jobs = taken.into_iter().map(|w| (w.job, w.ids.len())).collect();
                self.join(batch, jobs, &last, cache, pads, time);
            }
            Err(panic) => {
                let message = panic_message(&panic);
                for w in taken {
                    (w.job.done)(Err(LmError::Device(message.clone())));
                }
            }
        }
    }

    /// Reads prompt tokens `from..to` of one request into its own cache; the logits after
    /// the last of them.
    fn read_chunk(&self, ids: &[u32], from: usize, to: usize, cache: &mut KvCache<B>) -> Vec<f32> {
        let n = to - from;
        let tokens: Vec<i32> = ids[from..to].iter().map(|&t| t as i32).collect();
        let positions: Vec<i32> = (from..to).map(|p| p as i32).collect();
        let mut mask = Vec::with_capacity(n * to);
        for query in 0..n {
            for key in 0..to {
                mask.push(if key <= from + query { 0.0 } else { MASKED });
            }
        }
        self.model
            .last_logits_cached(
                Tensor::from_data(TensorData::new(tokens, [1, n]), self.device),
                Tensor::from_data(TensorData::new(positions, [1, n]), self.device),
                Tensor::from_data(TensorData::new(mask, [1, 1, n, to]), self.device),
                cache,
            )
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_default()
    }

    /// Rows whose prompts were read (`last`: each one's logits after its prompt) draw their
    /// first token and join the batch; those already done end here.
    fn join(
        &self,
        batch: &mut Running<B>,
        jobs: Vec<(Job, usize)>,
        last: &[f32],
        mut cache: KvCache<B>,
        pads: Vec<usize>,
        time: usize,
    ) {
        let vocab = last.len() / jobs.len().max(1);
        let mut rows = Vec::new();
        let mut kept = Vec::new();
        for (k, (job, prompt_tokens)) in jobs.into_iter().enumerate() {
            let rng = rco_core::seed::rng_for(job.seed, &["sample"]);
            let mut row = Row {
                job,
                prompt_tokens,
                out: Vec::new(),
                sent: 0,
                logprobs_sent: 0,
                logprobs: Vec::new(),
                rng,
                next: 0,
                finish: None,
            };
            self.step(&mut row, &last[k * vocab..(k + 1) * vocab]);
            if row.finish.is_some() {
                self.end(row);
            } else {
                kept.push(k);
                rows.push(row);
            }
        }
        if rows.is_empty() {
            return;
        }
        if kept.len() < pads.len() {
            cache.retain_rows(&kept, self.device);
        }
        let pads = kept.iter().map(|&k| pads[k]).collect::<Vec<_>>();
        // Padding that no joining row needs.
        let common = pads.iter().copied().min().unwrap_or(0);
        cache.drop_front(common);
        let pads = pads.iter().map(|p| p - common).collect();
        batch.join(rows, cache, pads, time - common);
    }

    /// One token for every running row, in one forward pass.
    fn decode(&self, batch: &mut Running<B>) {
        let n = batch.rows.len();
        if n == 0 {
            return;
        }
        let time = batch.time + 1;
        let tokens: Vec<i32> = batch.rows.iter().map(|r| r.next as i32).collect();
        let positions: Vec<i32> = batch
            .pads
            .iter()
            .map(|&pad| (time - 1 - pad) as i32)
            .collect();
        let mask: Vec<f32> = batch
            .pads
            .iter()
            .flat_map(|&pad| (0..time).map(move |key| if key >= pad { 0.0 } else { MASKED }))
            .collect();
        let cache = &mut batch.cache;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let logits = self.model.last_logits_cached(
                Tensor::from_data(TensorData::new(tokens, [n, 1]), self.device),
                Tensor::from_data(TensorData::new(positions, [n, 1]), self.device),
                Tensor::from_data(TensorData::new(mask, [n, 1, 1, time]), self.device),
                cache,
            );
            logits
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap_or_default()
        }));
        let values = match outcome {
            Ok(values) => values,
            Err(panic) => {
                let message = panic_message(&panic);
                for row in std::mem::take(batch).rows {
                    (row.job.done)(Err(LmError::Device(message.clone())));
                }
                return;
            }
        };
        batch.time = time;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.max_rows.fetch_max(n as u64, Ordering::Relaxed);
        let vocab = values.len() / n;
        for (k, row) in batch.rows.iter_mut().enumerate() {
            self.step(row, &values[k * vocab..(k + 1) * vocab]);
        }
        for row in batch.take_ended(self.device) {
            self.end(row);
        }
    }

    /// Draws a row's next token from its logits: streams its text, and ends the row at the
    /// end-of-sequence token, a stop string, its `max_tokens` or the model's context.
    fn step(&self, row: &mut Row, logits: &[f32]) {
        let token = draw(logits, &self.stop.banned, &row.job.sampling, &mut row.rng);
        if self.stop.ends_at(token) {
            row.finish = Some("stop");
            return;
        }
        row.out.push(token);
        if let Some(top) = row.job.logprobs {
            row.logprobs.push(token_log_probs(logits, token, top));
        }
        if row.job.on_text.is_some() || !row.job.stop.is_empty() {
            if let Ok(text) = self.tokenizer.decode(&row.out) {
                // Stop strings are checked as tokens come, and the row stops at one.
                let cut = cut_at_stop(text.clone(), &row.job.stop);
                if cut.len() < text.len() {
                    row.finish = Some("stop");
                }
                if row.finish.is_none() {
                    // A stop string may be starting: hold back as much as it could span.
                    let hold = row
                        .job
                        .stop
                        .iter()
                        .map(|s| s.len().saturating_sub(1))
                        .max()
                        .unwrap_or(0);
                    self.stream(row, &cut, cut.len().saturating_sub(hold), false);
                }
            }
        }
        if row.finish.is_none() {
            let length = row.prompt_tokens + row.out.len();
            if row.out.len() >= row.job.sampling.max_tokens || length + 1 >= self.context {
                row.finish = Some("length");
            }
        }
        row.next = token;
    }

    /// Sends `text[sent..upto]` (never splitting a character) to a streaming client, with
    /// the log-probabilities of the tokens decoded since the last piece. Until the `last`
    /// piece, text ending in a character that more tokens may complete waits.
    fn stream(&self, row: &mut Row, text: &str, upto: usize, last: bool) {
        let mut end = upto.min(text.len());
        while end > row.sent && !text.is_char_boundary(end) {
            end -= 1;
        }
        if end <= row.sent || (!last && text[..end].ends_with('\u{FFFD}')) {
            return;
        }
        let from = row.logprobs_sent.min(row.logprobs.len());
        let logprobs = self.entries(&row.out[from..], &row.logprobs[from..]);
        if let Some(on_text) = row.job.on_text.as_mut() {
            on_text(&text[row.sent..end], &logprobs);
        }
        row.sent = end;
        row.logprobs_sent = row.logprobs.len();
    }

    /// Token log-probabilities with their texts.
    fn entries(&self, ids: &[u32], logprobs: &[(f32, Vec<(u32, f32)>)]) -> Vec<TokenLogProb> {
        let piece = |id: u32| self.tokenizer.decode(&[id]).unwrap_or_default();
        ids.iter()
            .zip(logprobs)
            .map(|(&id, (logprob, top))| TokenLogProb {
                text: piece(id),
                logprob: *logprob,
                top: top.iter().map(|&(t, lp)| (piece(t), lp)).collect(),
            })
            .collect()
    }

    /// Answers a row that ended.
    fn end(&self, mut row: Row) {
        if row.finish == Some("cancelled") {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            (row.job.done)(Err(LmError::Cancelled));
            return;
        }
        let result = self.tokenizer.decode(&row.out).map(|text| {
            let cut = cut_at_stop(text, &row.job.stop);
            if row.job.on_text.is_some() && cut.is_char_boundary(row.sent.min(cut.len())) {
                let len = cut.len();
                self.stream(&mut row, &cut, len, true);
            }
            let logprobs = row
                .job
                .logprobs
                .map(|_| self.entries(&row.out, &row.logprobs));
            Generated {
                text: cut,
                prompt_tokens: row.prompt_tokens,
                completion_tokens: row.out.len(),
                finish_reason: row.finish.unwrap_or("length"),
                logprobs,
            }
        });
        (row.job.done)(result);
    }
}

/// The text of a caught panic.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown error".into());
    format!("the model failed: {text}")
}
