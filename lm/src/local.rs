//! A local model of any architecture, with its tokenizer: read from a checkpoint directory
//! (the tiny transformer), a GGUF file or a Hugging Face directory (Llama), and written back
//! where it was read from.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;

use crate::checkpoint;
use crate::llama::{load_gguf, Llama};
use crate::model::{CausalLm, KvCache};
use crate::sampling::StopTokens;
use crate::text::TextTokenizer;
use crate::tiny::TinyLm;
use crate::tokenizer::Tokenizer;
use crate::LmError;

/// The architectures a local model can have.
#[derive(Module, Debug)]
pub enum LocalLm<B: Backend> {
    Tiny(TinyLm<B>),
    Llama(Llama<B>),
}

impl<B: Backend> LocalLm<B> {
    /// Freezes the weights and adds LoRA adapters ([`Llama::add_lora`]); only Llama-family
    /// models have them.
    pub fn add_lora(self, config: &crate::lora::LoraConfig) -> Result<Self, LmError> {
        match self {
            LocalLm::Llama(m) => Ok(LocalLm::Llama(m.add_lora(config))),
            LocalLm::Tiny(_) => Err(LmError::Unsupported(
                "LoRA adapters need a Llama-family model (llama, qwen2, gemma3); this critic is the tiny character model: train it whole (leave out `lora`)".into(),
            )),
        }
    }

    /// Merges LoRA adapters into the weights ([`Llama::merge_lora`]); a model without them
    /// is returned as it is.
    pub fn merge_lora(self) -> Self {
        match self {
            LocalLm::Llama(m) if m.has_lora() => LocalLm::Llama(m.merge_lora()),
            other => other,
        }
    }

    /// The adapters of a model that has LoRA adapters ([`Llama::adapters`]).
    pub fn lora_adapters(&self) -> Option<Vec<crate::lora::BlockAdapters<B>>> {
        match self {
            LocalLm::Llama(m) if m.has_lora() => Some(m.adapters()),
            _ => None,
        }
    }

    /// `tiny` or `llama`.
    pub fn architecture(&self) -> &'static str {
        match self {
            LocalLm::Tiny(_) => "tiny",
            LocalLm::Llama(m) => m.architecture(),
        }
    }
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

    fn last_logits_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 2> {
        match self {
            LocalLm::Tiny(m) => m.last_logits_cached(tokens, positions, attention_mask, cache),
            LocalLm::Llama(m) => m.last_logits_cached(tokens, positions, attention_mask, cache),
        }
    }

    fn target_log_probs(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 4>,
        at: Tensor<B, 1, Int>,
        targets: Tensor<B, 1, Int>,
    ) -> Tensor<B, 1> {
        match self {
            LocalLm::Tiny(m) => m.target_log_probs(tokens, positions, attention_mask, at, targets),
            LocalLm::Llama(m) => m.target_log_probs(tokens, positions, attention_mask, at, targets),
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

    /// Ids of a conversation of `(role, text)` turns, ready for the assistant's next turn.
    /// One user turn is [`LmTokenizer::prompt_ids`]; more need the model's chat template.
    pub fn conversation_ids(
        &self,
        turns: &[(&str, &str)],
        chat: bool,
    ) -> Result<Vec<u32>, LmError> {
        match (self, turns) {
            (_, [("user", text)]) => self.prompt_ids(text, chat),
            (LmTokenizer::Text(t), _) if chat => t.encode_prompt(&t.chat_messages(turns)?),
            _ => Err(LmError::Unsupported(format!(
                "a conversation of {} turns needs a chat model read with its chat template (`chat = true`); this model reads raw prompts",
                turns.len()
            ))),
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
        self.completion_ids_ending(text, true)
    }

    /// Completion ids, with the end-of-sequence token after them when the completion `ended`
    /// (a completion cut at a token limit did not: it is scored as the prefix it is).
    pub fn completion_ids_ending(&self, text: &str, ended: bool) -> Result<Vec<u32>, LmError> {
        let mut ids = self.text_ids(text)?;
        if ended {
            ids.push(self.eos());
        }
        Ok(ids)
    }

    /// The end-of-sequence token.
    pub fn eos(&self) -> u32 {
        match self {
            LmTokenizer::Chars(t) => t.eos(),
            LmTokenizer::Text(t) => t.eos,
        }
    }

    /// The subword tokenizer of a real model (`None` for a character model).
    pub fn text(&self) -> Option<&TextTokenizer> {
        match self {
            LmTokenizer::Chars(_) => None,
            LmTokenizer::Text(t) => Some(t),
        }
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
                ends: t.end_of_turn.into_iter().collect(),
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

/// Why `path` is not a model [`load_local`] could read, checked cheaply (without loading
/// it): missing, unreadable, a file that is not GGUF, or a directory without a model.
pub fn model_problem(path: &Path) -> Option<String> {
    use std::io::Read;
    if path.is_file() {
        let mut magic = [0u8; 4];
        return match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)) {
            Err(e) => Some(format!("{} cannot be read: {e}", path.display())),
            Ok(()) if &magic != b"GGUF" => Some(format!(
                "{} is not a GGUF file (a model file must be GGUF; a model directory holds model.json, config.json or model.gguf)",
                path.display()
            )),
            Ok(()) => None,
        };
    }
    if path.is_dir() {
        if model_exists(path) {
            return None;
        }
        return Some(format!(
            "{} holds no model (model.json, config.json or model.gguf)",
            path.display()
        ));
    }
    Some(format!("no model at {}", path.display()))
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
