//! The one-shot commands of the CLI on a model file: `rco generate` (text in, text out),
//! `rco logprob` (a completion's log-probability and the likeliest next tokens) and
//! `rco export` (a Llama model written as a Hugging Face directory).

use std::path::Path;

use crate::device::{Cpu, DeviceSpec};
use crate::engine::{Engine, Quantize, Settings};
use crate::local::{load_local_with_spec, save_local, LocalLm, LocalSpec};
use crate::sampling::SamplingConfig;
use crate::LmError;

/// What `rco export` does: writes a Llama model (GGUF file or Hugging Face directory) as a
/// Hugging Face Llama directory.
pub fn export_hf(path: &Path, out: &Path) -> Result<(), LmError> {
    let (model, tokenizer, spec) = load_local_with_spec::<Cpu>(path, &Default::default())?;
    if !matches!((&model, &spec), (LocalLm::Llama(_), LocalSpec::Llama(_))) {
        return Err(LmError::Checkpoint {
            path: path.to_path_buf(),
            message: "only Llama models are written as Hugging Face directories".into(),
        });
    }
    save_local(model, &tokenizer, &spec, out)
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
    quantize: Quantize,
) -> Result<String, LmError> {
    let spec = DeviceSpec::parse(device)?.compiled()?;
    crate::with_backend!(spec, |B, device| {
        let settings = Settings {
            sampling: sampling.clone(),
            batch_size: 1,
            chat: !raw,
            stop: stop_strings.to_vec(),
            quantize,
        };
        let engine = Engine::<B>::open(path, device, settings)?;
        let ids = engine.prompt_ids(prompt)?;
        engine
            .generate_ids(&[ids], &[seed])
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
    quantize: Quantize,
) -> Result<LogProbReport, LmError> {
    log_prob_text_ending(path, device, prompt, completion, false, raw, top, quantize)
}

/// As [`log_prob_text`], with the end-of-sequence token after the completion when `ended`:
/// how a critic scores a finished critique (its reference log-prob) and the trainer trains it.
#[allow(clippy::too_many_arguments)]
pub fn log_prob_text_ending(
    path: &Path,
    device: &str,
    prompt: &str,
    completion: &str,
    ended: bool,
    raw: bool,
    top: usize,
    quantize: Quantize,
) -> Result<LogProbReport, LmError> {
    let spec = DeviceSpec::parse(device)?.compiled()?;
    crate::with_backend!(spec, |B, device| {
        let settings = Settings {
            chat: !raw,
            quantize,
            ..Settings::default()
        };
        let lm = Engine::<B>::open(path, device, settings)?;
        let prompt_ids = lm.prompt_ids(prompt)?;
        let completion_ids = if completion.is_empty() {
            Vec::new()
        } else {
            lm.tokenizer.completion_ids_ending(completion, ended)?
        };
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
