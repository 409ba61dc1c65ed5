//! One loaded local model — a tiny checkpoint directory or a Llama GGUF file — with its
//! tokenizer, ready for batched generation and scoring. The `burn` critic, actor and judge
//! are thin roles over it.

use std::path::Path;
use std::sync::Mutex;

use burn::module::Module;
use burn::prelude::*;

use crate::checkpoint;
use crate::generate::cut_at_stop;
use crate::llama::{load_gguf, Llama};
use crate::lm::{completion_log_probs, sample, SamplingConfig, StopTokens};
use crate::model::{CausalLm, KvCache, TinyLm};
use crate::text::TextTokenizer;
use crate::tokenizer::Tokenizer;
use crate::LmError;

/// The architectures a local model can have.
#[derive(Module, Debug)]
pub enum LocalLm<B: Backend> {
    Tiny(TinyLm<B>),
    Llama(Llama<B>),
}

impl<B: Backend> CausalLm<B> for LocalLm<B> {
    fn logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        match self {
            LocalLm::Tiny(m) => m.logits_cached(tokens, positions, attention_mask, cache),
            LocalLm::Llama(m) => m.logits_cached(tokens, positions, attention_mask, cache),
        }
    }

    fn max_len(&self) -> usize {
        match self {
            LocalLm::Tiny(m) => m.max_len(),
            LocalLm::Llama(m) => m.max_len(),
        }
    }
}

/// The tokenizer of a local model.
pub enum LmTokenizer {
    Chars(Tokenizer),
    Text(Box<TextTokenizer>),
}

impl LmTokenizer {
    /// Prompt ids; `chat` applies the model's chat template (subword models only).
    pub fn prompt_ids(&self, text: &str, chat: bool) -> Result<Vec<u32>, LmError> {
        match self {
            LmTokenizer::Chars(t) => {
                let mut ids = vec![t.bos()];
                ids.extend(t.encode(text)?);
                Ok(ids)
            }
            LmTokenizer::Text(t) if chat => t.encode_prompt(&t.chat_prompt(text)?),
            LmTokenizer::Text(t) => t.encode_prompt(text),
        }
    }

    /// Ids of text that continues a prompt (no BOS, no EOS).
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>, LmError> {
        match self {
            LmTokenizer::Chars(t) => t.encode(text),
            LmTokenizer::Text(t) => t.encode(text),
        }
    }

    /// Completion ids, ending with the end-of-sequence token.
    pub fn completion_ids(&self, text: &str) -> Result<Vec<u32>, LmError> {
        let (mut ids, eos) = match self {
            LmTokenizer::Chars(t) => (t.encode(text)?, t.eos()),
            LmTokenizer::Text(t) => (t.encode(text)?, t.eos),
        };
        ids.push(eos);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LmError> {
        match self {
            LmTokenizer::Chars(t) => Ok(t.decode(ids)),
            LmTokenizer::Text(t) => t.decode(ids),
        }
    }

    pub fn stop(&self) -> StopTokens {
        match self {
            LmTokenizer::Chars(t) => StopTokens::of(t),
            LmTokenizer::Text(t) => StopTokens {
                eos: t.eos,
                banned: t.bos.into_iter().collect(),
            },
        }
    }
}

/// What a loaded local model is, for writing it back out.
pub enum LocalSpec {
    Tiny(checkpoint::ModelSpec),
    Llama(crate::llama::LlamaConfig),
}

/// Whether `path` holds a model [`load_local`] can read.
pub fn model_exists(path: &Path) -> bool {
    path.is_file()
        || ["model.json", "config.json", "model.gguf"]
            .iter()
            .any(|f| path.join(f).is_file())
}

/// Loads a model: a `.gguf` file (Llama) or a directory holding `model.gguf`, a Hugging Face
/// Llama directory (`config.json`), or a checkpoint directory (`model.json`).
pub fn load_local<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(LocalLm<B>, LmTokenizer), LmError> {
    load_local_with_spec(path, device).map(|(model, tokenizer, _)| (model, tokenizer))
}

/// [`load_local`], with the model's description.
pub fn load_local_with_spec<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(LocalLm<B>, LmTokenizer, LocalSpec), LmError> {
    if path.join("config.json").is_file() {
        let (config, model, tokenizer) = crate::hf::load::<B>(path, device)?;
        return Ok((
            LocalLm::Llama(model),
            LmTokenizer::Text(Box::new(tokenizer)),
            LocalSpec::Llama(config),
        ));
    }
    let gguf = if path.is_file() {
        Some(path.to_path_buf())
    } else {
        Some(path.join("model.gguf")).filter(|p| p.is_file())
    };
    if let Some(gguf) = gguf {
        let file = crate::gguf::GgufFile::open(&gguf)?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        let (config, model) = load_gguf::<B>(&file, device)?;
        return Ok((
            LocalLm::Llama(model),
            LmTokenizer::Text(Box::new(tokenizer)),
            LocalSpec::Llama(config),
        ));
    }
    let (spec, model) = checkpoint::load::<B>(path, device)?;
    Ok((
        LocalLm::Tiny(model),
        LmTokenizer::Chars(spec.tokenizer.clone()),
        LocalSpec::Tiny(spec),
    ))
}

/// Writes a model where [`load_local`] reads it back: a checkpoint directory for the tiny
/// transformer, a Hugging Face directory for Llama.
pub fn save_local<B: Backend>(
    model: LocalLm<B>,
    tokenizer: &LmTokenizer,
    spec: &LocalSpec,
    dir: &Path,
) -> Result<(), LmError> {
    match (model, tokenizer, spec) {
        (LocalLm::Tiny(m), _, LocalSpec::Tiny(spec)) => checkpoint::save(dir, spec, m),
        (LocalLm::Llama(m), LmTokenizer::Text(t), LocalSpec::Llama(config)) => {
            crate::hf::save(&m, config, t, dir)
        }
        _ => Err(LmError::Checkpoint {
            path: dir.to_path_buf(),
            message: "the model, its tokenizer and its description do not belong together".into(),
        }),
    }
}

/// Where a role's model is and which device it runs on, from its config section.
pub struct Placement {
    pub path: std::path::PathBuf,
    pub device: crate::device::DeviceSpec,
}

/// The model file or directory and the compiled device a `burn` actor or judge section names.
pub fn placement(
    config: &crate::critic::BurnModelConfig,
    ctx: &rco_core::BuildContext,
    role: &str,
) -> rco_core::Result<Placement> {
    let path = config.checkpoint.as_ref().map(|p| ctx.resolve(p)).ok_or_else(|| {
        rco_core::Error::Config(vec![rco_core::ConfigProblem::new(
            format!("{}.checkpoint", ctx.name),
            format!("a burn {role} needs a model: a checkpoint directory, a Hugging Face directory or a .gguf file"),
        )])
    })?;
    let device = crate::device::DeviceSpec::parse(&config.device)
        .and_then(crate::device::DeviceSpec::compiled)
        .map_err(|e| rco_core::Error::plugin(format!("{role} `{}`", ctx.name), e))?;
    Ok(Placement { path, device })
}

/// A loaded model with its sampling settings.
pub struct Engine<B: Backend> {
    model: Mutex<LocalLm<B>>,
    pub tokenizer: LmTokenizer,
    pub sampling: SamplingConfig,
    pub batch_size: usize,
    /// Apply the chat template to prompts.
    pub chat: bool,
    pub stop_strings: Vec<String>,
    device: B::Device,
}

impl<B: Backend> Engine<B> {
    pub fn open(
        path: &Path,
        device: B::Device,
        sampling: SamplingConfig,
        batch_size: usize,
        chat: bool,
        stop_strings: Vec<String>,
    ) -> Result<Self, LmError> {
        let (model, tokenizer) = load_local::<B>(path, &device)?;
        Ok(Self {
            model: Mutex::new(model),
            tokenizer,
            sampling,
            batch_size: batch_size.max(1),
            chat,
            stop_strings,
            device,
        })
    }

    /// Opens the model a section names, with the section's sampling settings.
    pub fn from_config(
        path: &Path,
        device: B::Device,
        config: &crate::critic::BurnModelConfig,
    ) -> Result<Self, LmError> {
        Self::open(
            path,
            device,
            config.sampling.clone(),
            config.batch_size,
            config.chat,
            config.stop.clone(),
        )
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, LocalLm<B>>, LmError> {
        self.model
            .lock()
            .map_err(|_| LmError::Device("the model lock is poisoned".into()))
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
        let ids = self.prompts_with_prefix(prompts, answer_prefix)?;
        let model = self.lock()?;
        let stop = self.tokenizer.stop();
        let mut out = Vec::with_capacity(ids.len());
        for (chunk, chunk_seeds) in ids
            .chunks(self.batch_size)
            .zip(seeds.chunks(self.batch_size))
        {
            for completion in sample(
                &*model,
                chunk,
                chunk_seeds,
                &self.sampling,
                &stop,
                &self.device,
            ) {
                let text = cut_at_stop(self.tokenizer.decode(&completion)?, &self.stop_strings);
                out.push(format!("{answer_prefix}{text}"));
            }
        }
        Ok(out)
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
                let mut ids = self.tokenizer.prompt_ids(p, self.chat)?;
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
        let model = self.lock()?;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.batch_size) {
            let batch = crate::lm::PaddedBatch::<B>::new(chunk, &self.device);
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
        let model = self.lock()?;
        let max_len = model.max_len();
        let encoded = rows
            .iter()
            .map(|(p, c)| {
                let prompt = self.tokenizer.prompt_ids(p, self.chat)?;
                let completion = self.tokenizer.completion_ids(c)?;
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
        for chunk in encoded.chunks(self.batch_size) {
            let values = completion_log_probs(&*model, chunk, &self.device)
                .into_data()
                .convert::<f64>()
                .into_vec::<f64>()
                .map_err(|e| LmError::Tokenize(format!("{e:?}")))?;
            out.extend(values);
        }
        Ok(out)
    }
}
