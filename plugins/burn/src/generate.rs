//! Text in, text out with a real language model file: what `rco generate` and `rco logprob`
//! run.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::device::DeviceSpec;
use crate::gguf::GgufFile;
use crate::llama::{load_gguf, Llama};
use crate::lm::{completion_log_probs, sample, PaddedBatch, SamplingConfig, StopTokens};
use crate::model::CausalLm;
use crate::text::TextTokenizer;
use crate::LmError;

/// A loaded model file on one backend.
pub struct LoadedLm<B: Backend> {
    pub model: Llama<B>,
    pub tokenizer: TextTokenizer,
    pub device: B::Device,
}

impl<B: Backend> LoadedLm<B> {
    /// Loads a GGUF file or a Hugging Face Llama directory.
    pub fn open(path: &Path, device: B::Device) -> Result<Self, LmError> {
        let (_, model, tokenizer) = open_llama::<B>(path, &device)?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// The prompt as the model reads it: the chat template applied unless `raw`.
    pub fn prompt_ids(&self, prompt: &str, raw: bool) -> Result<Vec<u32>, LmError> {
        let text = if raw {
            prompt.to_string()
        } else {
            self.tokenizer.chat_prompt(prompt)?
        };
        self.tokenizer.encode_prompt(&text)
    }

    /// Completions of prompts (one seed each), decoded.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        sampling: &SamplingConfig,
    ) -> Result<Vec<String>, LmError> {
        self.generate_until(prompts, seeds, sampling, &[])
    }

    /// Completions cut before the first of the stop strings (the stop string itself is not
    /// included).
    pub fn generate_until(
        &self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        sampling: &SamplingConfig,
        stop_strings: &[String],
    ) -> Result<Vec<String>, LmError> {
        let stop = StopTokens {
            eos: self.tokenizer.eos,
            banned: Vec::new(),
        };
        sample(&self.model, prompts, seeds, sampling, &stop, &self.device)
            .iter()
            .map(|ids| Ok(cut_at_stop(self.tokenizer.decode(ids)?, stop_strings)))
            .collect()
    }

    /// Log-probabilities of every vocabulary entry as the next token after `ids`.
    pub fn next_token_log_probs(&self, ids: &[u32]) -> Result<Vec<f32>, LmError> {
        let batch = PaddedBatch::<B>::new(&[ids.to_vec()], &self.device);
        let time = batch.time;
        let logits = self.model.logits(batch.tokens, batch.positions, batch.mask);
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

    /// Summed log-probability of a completion (its tokens only) after a prompt.
    pub fn completion_log_prob(&self, prompt: &[u32], completion: &[u32]) -> Result<f64, LmError> {
        if prompt.len() + completion.len() > self.model.max_len() {
            return Err(LmError::Tokenize(format!(
                "{} tokens exceed the model's context of {}",
                prompt.len() + completion.len(),
                self.model.max_len()
            )));
        }
        let values: Vec<f32> = completion_log_probs(
            &self.model,
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

/// A Llama model from a GGUF file or a Hugging Face directory.
pub fn open_llama<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(crate::llama::LlamaConfig, Llama<B>, TextTokenizer), LmError> {
    if path.is_dir() {
        return crate::hf::load::<B>(path, device);
    }
    let file = GgufFile::open(path)?;
    let tokenizer = TextTokenizer::from_gguf(&file)?;
    let (config, model) = load_gguf::<B>(&file, device)?;
    Ok((config, model, tokenizer))
}

/// What `rco export` does: writes a model as a Hugging Face Llama directory.
pub fn export_hf(path: &Path, out: &Path) -> Result<(), LmError> {
    let device = Default::default();
    let (config, model, tokenizer) = open_llama::<crate::device::Cpu>(path, &device)?;
    crate::hf::save(&model, &config, &tokenizer, out)
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

/// What `rco generate` prints.
pub fn generate_text(
    path: &Path,
    device: &str,
    prompt: &str,
    raw: bool,
    sampling: &SamplingConfig,
    seed: u64,
    stop_strings: &[String],
) -> Result<String, LmError> {
    let spec = DeviceSpec::parse(device)?.compiled()?;
    crate::with_backend!(spec, |B, device| {
        let lm = LoadedLm::<B>::open(path, device)?;
        let ids = lm.prompt_ids(prompt, raw)?;
        lm.generate_until(&[ids], &[seed], sampling, stop_strings)
            .map(|mut v| v.pop().unwrap_or_default())
    })
}

/// What `rco logprob` prints: the completion's summed log-prob, its tokens, and the `top`
/// most likely next tokens after the prompt with their log-probs.
pub struct LogProbReport {
    pub total: f64,
    pub completion_tokens: Vec<(u32, String)>,
    pub top_next: Vec<(u32, String, f32)>,
}

pub fn log_prob_text(
    path: &Path,
    device: &str,
    prompt: &str,
    completion: &str,
    raw: bool,
    top: usize,
) -> Result<LogProbReport, LmError> {
    let spec = DeviceSpec::parse(device)?.compiled()?;
    crate::with_backend!(spec, |B, device| {
        let lm = LoadedLm::<B>::open(path, device)?;
        let prompt_ids = lm.prompt_ids(prompt, raw)?;
        let completion_ids = lm.tokenizer.encode(completion)?;
        let total = if completion_ids.is_empty() {
            0.0
        } else {
            lm.completion_log_prob(&prompt_ids, &completion_ids)?
        };
        let mut next: Vec<(usize, f32)> = lm
            .next_token_log_probs(&prompt_ids)?
            .into_iter()
            .enumerate()
            .collect();
        next.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top_next = next
            .into_iter()
            .take(top)
            .map(|(id, lp)| Ok((id as u32, lm.tokenizer.decode(&[id as u32])?, lp)))
            .collect::<Result<Vec<_>, LmError>>()?;
        let completion_tokens = completion_ids
            .iter()
            .map(|&id| Ok((id, lm.tokenizer.decode(&[id])?)))
            .collect::<Result<Vec<_>, LmError>>()?;
        Ok(LogProbReport {
            total,
            completion_tokens,
            top_next,
        })
    })
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
