//! The loaded model: one local model (a tiny checkpoint directory, a Llama GGUF file or a
//! Hugging Face directory) with its tokenizer, device and sampling settings, ready for
//! batched generation and scoring. The `burn` critic, actor and judge are thin roles over
//! it; `rco generate`, `rco logprob` ([`crate::commands`]) and `rco serve`'s scheduler
//! ([`crate::batcher`]) run it too.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::local::{load_local, LmTokenizer, LocalLm};
use crate::model::CausalLm;
use crate::sampling::{
    completion_log_probs, sample, sample_streaming, PaddedBatch, SamplingConfig, StopTokens,
};
use crate::LmError;

/// How an engine samples, batches and reads prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How text is sampled.
    pub sampling: SamplingConfig,
    /// Most sequences decoded or scored together (at least 1).
    pub batch_size: usize,
    /// Wrap prompts in the model's chat template (subword models; character models ignore it).
    pub chat: bool,
    /// Completions are cut before the first of these strings.
    pub stop: Vec<String>,
    /// How the weights are held for inference on the CPU.
    pub quantize: Quantize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sampling: SamplingConfig::default(),
            batch_size: 64,
            chat: true,
            stop: Vec::new(),
            quantize: Quantize::default(),
        }
    }
}

/// How an engine on the CPU holds a Llama-family model's projection weights for generation
/// and scoring. Training always uses the f32 weights; GPU devices always run in f32.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum Quantize {
    /// Q8_0 blocks multiplied by Q8_0-quantized activations ([`crate::quant`]), as llama.cpp
    /// multiplies its quantized weights: about 4× fewer bytes read per token than f32.
    #[default]
    #[serde(rename = "q8_0")]
    Q8_0,
    /// f32 weights, exactly as loaded.
    #[serde(rename = "none")]
    None,
}

impl std::str::FromStr for Quantize {
    type Err = LmError;
    fn from_str(text: &str) -> Result<Self, LmError> {
        match text {
            "q8_0" => Ok(Quantize::Q8_0),
            "none" => Ok(Quantize::None),
            other => Err(LmError::Device(format!(
                "unknown quantization `{other}` (expected q8_0 or none)"
            ))),
        }
    }
}

/// One generated text, and whether it was cut at the token limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    /// The model was stopped by `max_tokens` or its context, not by its end-of-sequence
    /// token or a stop string.
    pub truncated: bool,
}

/// A loaded model with its tokenizer, device and settings.
pub struct Engine<B: Backend> {
    model: Mutex<LocalLm<B>>,
    pub tokenizer: LmTokenizer,
    pub device: B::Device,
    pub settings: Settings,
}

impl<B: Backend> Engine<B> {
    /// Loads the model at `path` ([`load_local`] reads it) with `settings`.
    pub fn open(path: &Path, device: B::Device, settings: Settings) -> Result<Self, LmError> {
        let (model, tokenizer) = load_local::<B>(path, &device)?;
        Ok(Self::new(model, tokenizer, device, settings))
    }

    /// Loads the model at `path` with the default settings.
    pub fn load(path: &Path, device: B::Device) -> Result<Self, LmError> {
        Self::open(path, device, Settings::default())
    }

    /// An engine over a model already in memory.
    pub fn new(
        mut model: LocalLm<B>,
        tokenizer: LmTokenizer,
        device: B::Device,
        settings: Settings,
    ) -> Self {
        if settings.quantize == Quantize::Q8_0 && crate::device::is_cpu::<B>() {
            if let LocalLm::Llama(llama) = &mut model {
                if !llama.quantize_q8() {
                    tracing::info!("a matrix's input size is not a multiple of 32: running in f32");
                }
            }
        }
        Self {
            model: Mutex::new(model),
            tokenizer,
            device,
            settings: Settings {
                batch_size: settings.batch_size.max(1),
                ..settings
            },
        }
    }

    /// The model, for direct use. The engine's methods lock it too: drop the guard before
    /// calling them (holding it across such a call deadlocks).
    pub fn model(&self) -> Result<MutexGuard<'_, LocalLm<B>>, LmError> {
        self.model
            .lock()
            .map_err(|_| LmError::Device("the model lock is poisoned".into()))
    }

    /// Rows per forward pass: the settings' batch size (a batch size of 0 set after opening
    /// counts as 1).
    fn rows_per_batch(&self) -> usize {
        self.settings.batch_size.max(1)
    }

    /// Prompt ids, the chat template applied when the settings say so.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, LmError> {
        self.tokenizer.prompt_ids(prompt, self.settings.chat)
    }

    /// One completion per (prompt, seed), decoded and cut at the stop strings.
    pub fn generate(&self, prompts: &[String], seeds: &[u64]) -> Result<Vec<String>, LmError> {
        self.generate_after(prompts, "", seeds)
    }

    /// [`Engine::generate`] with the model's answer started by `answer_prefix` (written into
    /// its turn after the chat template); the returned texts begin with the prefix.
    pub fn generate_after(
        &self,
        prompts: &[String],
        answer_prefix: &str,
        seeds: &[u64],
    ) -> Result<Vec<String>, LmError> {
        Ok(self
            .generations(prompts, answer_prefix, seeds)?
            .into_iter()
            .map(|g| g.text)
            .collect())
    }

    /// [`Engine::generate_after`], saying of each text whether it was cut at the token limit
    /// (`max_tokens`, or the model's context) rather than ended by the model or a stop string.
    pub fn generations(
        &self,
        prompts: &[String],
        answer_prefix: &str,
        seeds: &[u64],
    ) -> Result<Vec<Generation>, LmError> {
        let ids = self.prompts_with_prefix(prompts, answer_prefix)?;
        self.generations_of(ids, answer_prefix, seeds)
    }

    /// One completion per (conversation, seed), as [`Engine::generate`]: each conversation
    /// is `(role, text)` turns ending with the user's, and the model writes the assistant's
    /// next turn (the chat template applied; a single user turn is a plain prompt).
    pub fn generate_turns(
        &self,
        conversations: &[Vec<(String, String)>],
        seeds: &[u64],
    ) -> Result<Vec<String>, LmError> {
        let ids = conversations
            .iter()
            .map(|turns| {
                let turns: Vec<(&str, &str)> = turns
                    .iter()
                    .map(|(role, text)| (role.as_str(), text.as_str()))
                    .collect();
                self.tokenizer.conversation_ids(&turns, self.settings.chat)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .generations_of(ids, "", seeds)?
            .into_iter()
            .map(|g| g.text)
            .collect())
    }

    /// Completions of prompt ids that end with `answer_prefix`'s ids.
    fn generations_of(
        &self,
        ids: Vec<Vec<u32>>,
        answer_prefix: &str,
        seeds: &[u64],
    ) -> Result<Vec<Generation>, LmError> {
        let model = self.model()?;
        let stop = self.tokenizer.stop();
        let completions = self.sample_rows(&model, &ids, seeds, &stop);
        ids.iter()
            .zip(completions)
            .map(|(prompt, completion)| {
                let decoded = self.tokenizer.decode(&completion)?;
                let full = decoded.len();
                let text = cut_at_stop(decoded, &self.settings.stop);
                let ended_by_stop = text.len() < full;
                let room = model.max_len().saturating_sub(prompt.len());
                let at_limit = completion.len() >= self.settings.sampling.max_tokens.min(room);
                Ok(Generation {
                    text: format!("{answer_prefix}{text}"),
                    truncated: at_limit && !ended_by_stop,
                })
            })
            .collect()
    }

    /// Prompt ids (chat template applied as configured) followed by the answer prefix's.
    fn prompts_with_prefix(
        &self,
        prompts: &[String],
        answer_prefix: &str,
    ) -> Result<Vec<Vec<u32>>, LmError> {
        let prefix = if answer_prefix.is_empty() {
            Vec::new()
        } else {
            self.tokenizer.text_ids(answer_prefix)?
        };
        prompts
            .iter()
            .map(|p| {
                let mut ids = self.tokenizer.prompt_ids(p, self.settings.chat)?;
                ids.extend_from_slice(&prefix);
                Ok(ids)
            })
            .collect()
    }

    /// Log-probabilities of each of `choices` (their first token) as the next token after
    /// each prompt (chat template applied as for generation) followed by `answer_prefix`.
    pub fn choice_log_probs(
        &self,
        prompts: &[String],
        answer_prefix: &str,
        choices: &[&str],
    ) -> Result<Vec<Vec<f64>>, LmError> {
        let choice_ids = choices
            .iter()
            .map(|c| {
                self.tokenizer
                    .text_ids(c)?
                    .first()
                    .copied()
                    .ok_or_else(|| LmError::Tokenize(format!("the choice {c:?} has no token")))
            })
            .collect::<Result<Vec<u32>, LmError>>()?;
        let rows = self.prompts_with_prefix(prompts, answer_prefix)?;
        let model = self.model()?;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.rows_per_batch()) {
            let batch = PaddedBatch::<B>::new(chunk, &self.device);
            let time = batch.time;
            let logits = model.logits(batch.tokens, batch.positions, batch.mask);
            let [n, _, vocab] = logits.dims();
            let last = burn::tensor::activation::log_softmax(
                logits
                    .slice([0..n, time - 1..time, 0..vocab])
                    .reshape([n, vocab]),
                1,
            );
            let values: Vec<f32> = last
                .into_data()
                .convert::<f32>()
                .into_vec()
                .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
            for row in 0..n {
                out.push(
                    choice_ids
                        .iter()
                        .map(|&id| values[row * vocab + id as usize] as f64)
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Summed log-probs of completions (with their EOS) after prompts.
    pub fn log_probs(&self, rows: &[(String, String)]) -> Result<Vec<f64>, LmError> {
        self.log_probs_ending(rows, &vec![true; rows.len()])
    }

    /// [`Engine::log_probs`], with an EOS after a row's completion only where `ended` says
    /// the completion ended (a completion cut at the token limit is scored as a prefix).
    pub fn log_probs_ending(
        &self,
        rows: &[(String, String)],
        ended: &[bool],
    ) -> Result<Vec<f64>, LmError> {
        let model = self.model()?;
        let max_len = model.max_len();
        let encoded = rows
            .iter()
            .zip(ended.iter().copied().chain(std::iter::repeat(true)))
            .map(|((p, c), ended)| {
                let prompt = self.tokenizer.prompt_ids(p, self.settings.chat)?;
                let completion = self.tokenizer.completion_ids_ending(c, ended)?;
                if prompt.len() + completion.len() > max_len {
                    return Err(LmError::Tokenize(format!(
                        "prompt and completion take {} tokens; the model reads at most {max_len}",
                        prompt.len() + completion.len()
                    )));
                }
                Ok((prompt, completion))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(encoded.len());
        for chunk in encoded.chunks(self.rows_per_batch()) {
            let values = completion_log_probs(&*model, chunk, &self.device)
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
            out.extend(values);
        }
        Ok(out)
    }

    /// Completions of prompts given as token ids, one per seed: sampled with the settings'
    /// sampling, stopped by the end-of-sequence token alone (no token is banned, unlike
    /// [`Engine::generate`], which keeps a model from writing its start tokens), decoded and
    /// cut before the first stop string. What `rco generate` prints.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
    ) -> Result<Vec<String>, LmError> {
        let model = self.model()?;
        let stop = StopTokens {
            banned: Vec::new(),
            ..self.tokenizer.stop()
        };
        self.sample_rows(&model, prompts, seeds, &stop)
            .into_iter()
            .map(|ids| {
                Ok(cut_at_stop(
                    self.tokenizer.decode(&ids)?,
                    &self.settings.stop,
                ))
            })
            .collect()
    }

    /// Samples one completion per prompt and seed, the batch size's worth of rows at a time.
    fn sample_rows(
        &self,
        model: &LocalLm<B>,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        stop: &StopTokens,
    ) -> Vec<Vec<u32>> {
        prompts
            .chunks(self.rows_per_batch())
            .zip(seeds.chunks(self.rows_per_batch()))
            .flat_map(|(chunk, chunk_seeds)| {
                sample(
                    model,
                    chunk,
                    chunk_seeds,
                    &self.settings.sampling,
                    stop,
                    &self.device,
                )
            })
            .collect()
    }

    /// [`sample_streaming`] on this model with its tokenizer's stop tokens, calling
    /// `on_token(row, token, logits)` as each token is drawn (`false` ends the row); returns
    /// each row's completion ids.
    pub fn sample_streaming(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        sampling: &SamplingConfig,
        on_token: &mut dyn FnMut(usize, u32, &[f32]) -> bool,
    ) -> Result<Vec<Vec<u32>>, LmError> {
        let model = self.model()?;
        Ok(sample_streaming(
            &*model,
            prompts,
            seeds,
            sampling,
            &self.tokenizer.stop(),
            &self.device,
            on_token,
        ))
    }

    /// Log-probabilities of every vocabulary entry as the next token after `ids`.
    pub fn next_token_log_probs(&self, ids: &[u32]) -> Result<Vec<f32>, LmError> {
        let model = self.model()?;
        let batch = PaddedBatch::<B>::new(&[ids.to_vec()], &self.device);
        let time = batch.time;
        let logits = model.logits(batch.tokens, batch.positions, batch.mask);
        let [_, _, vocab] = logits.dims();
        let last = log_softmax(
            logits
                .slice([0..1, time - 1..time, 0..vocab])
                .reshape([1, vocab]),
            1,
        );
        last.into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| LmError::Tokenize(format!("{e:?}")))
    }

    /// Summed log-probability of a completion (its tokens only, no end-of-sequence token
    /// added) after a prompt, both given as token ids.
    pub fn completion_log_prob(&self, prompt: &[u32], completion: &[u32]) -> Result<f64, LmError> {
        let model = self.model()?;
        if prompt.len() + completion.len() > model.max_len() {
            return Err(LmError::Tokenize(format!(
                "{} tokens exceed the model's context of {}",
                prompt.len() + completion.len(),
                model.max_len()
            )));
        }
        let values: Vec<f32> = completion_log_probs(
            &*model,
            &[(prompt.to_vec(), completion.to_vec())],
            &self.device,
        )
        .into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
        Ok(values.first().copied().unwrap_or(f32::NAN) as f64)
    }
}

/// `text` up to the earliest occurrence of any stop string.
pub fn cut_at_stop(mut text: String, stop_strings: &[String]) -> String {
    if let Some(at) = stop_strings
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
    {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stops = ["\n\n".to_string(), "END".to_string(), String::new()];
        assert_eq!(super::cut_at_stop("a b END c\n\nd".into(), &stops), "a b ");
        assert_eq!(super::cut_at_stop("a\n\nb END".into(), &stops), "a");
        assert_eq!(super::cut_at_stop("plain".into(), &stops), "plain");
    }
}
