//! Subword tokenizers for real language models, through the `tokenizers` crate: built from a
//! GGUF file's vocabulary and merges (gpt2-style byte-level BPE) or read from a Hugging Face
//! `tokenizer.json`; plus the chat template a model expects.

use std::path::Path;
use std::str::FromStr;

use serde_json::{json, Value as Json};

use crate::gguf::{GgufFile, Value};
use crate::LmError;

/// A tokenizer with the special tokens and chat format of its model.
pub struct TextTokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: u32,
    /// Whether BOS is put in front of every prompt.
    pub add_bos: bool,
    /// The model's chat template (Jinja source), if it ships one.
    pub chat_template: Option<String>,
}

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl TextTokenizer {
    /// Builds the tokenizer stored in a GGUF file (`tokenizer.ggml.model = "gpt2"`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LmError> {
        let path = &file.path;
        let model = file
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("?");
        if model != "gpt2" {
            return Err(err(path, format!("tokenizer model `{model}` is not supported (expected gpt2-style byte-level BPE)")));
        }
        let strings = |key: &str| -> Result<Vec<String>, LmError> {
            file.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| err(path, format!("metadata `{key}` is missing")))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(path, format!("metadata `{key}` holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<u64> = file
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let vocab: serde_json::Map<String, Json> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        // Token type 3 marks control tokens (`<|im_start|>` and the like): matched whole.
        let added: Vec<Json> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| types.get(*i) == Some(&3))
            .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
        });
        let inner = tokenizers::Tokenizer::from_str(&spec.to_string())
            .map_err(|e| err(path, format!("cannot build the tokenizer: {e}")))?;
        let id = |key: &str| file.get(key).and_then(Value::as_u64).map(|v| v as u32);
        Ok(Self {
            inner,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| err(path, "metadata `tokenizer.ggml.eos_token_id` is missing"))?,
            add_bos: matches!(
                file.get("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true))
            ),
            chat_template: file
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// The tokenizer in Hugging Face's `tokenizer.json` format.
    pub fn to_json(&self) -> Result<String, LmError> {
        self.inner
            .to_string(true)
            .map_err(|e| LmError::Tokenize(e.to_string()))
    }

    /// Token ids of a text, special tokens written in it included.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LmError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| LmError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a prompt: BOS first where the model wants it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, LmError> {
        let mut ids = match (self.add_bos, self.bos) {
            (true, Some(bos)) => vec![bos],
            _ => Vec::new(),
        };
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LmError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| LmError::Tokenize(e.to_string()))
    }

    /// One user turn in the model's chat format, ready for the assistant's answer.
    /// ChatML templates (`<|im_start|>`) are rendered, including a default system turn the
    /// template adds when the conversation has none; other templates are not supported.
    pub fn chat_prompt(&self, user: &str) -> Result<String, LmError> {
        self.chat_messages(&[("user", user)])
    }

    /// A conversation in the model's chat format. It ends ready for the assistant's answer;
    /// when the last message is the assistant's, its text is left open for the model to
    /// continue (a prefilled answer).
    pub fn chat_messages(&self, messages: &[(&str, &str)]) -> Result<String, LmError> {
        let template = self.chat_template.as_deref().unwrap_or("");
        if !template.contains("<|im_start|>") {
            return Err(LmError::Tokenize(
                "the model's chat template is not ChatML; use a raw prompt".into(),
            ));
        }
        let mut out = String::new();
        // A template that injects a system turn when the first message is not one.
        if messages.first().is_none_or(|(role, _)| *role != "system") {
            if let Some(start) = template.find("'<|im_start|>system\n") {
                let rest = &template[start + 1..];
                if let Some(end) = rest.find("<|im_end|>") {
                    out.push_str(&rest[..end]);
                    out.push_str("<|im_end|>\n");
                }
            }
        }
        let (last, earlier) = match messages.split_last() {
            Some((last, earlier)) if last.0 == "assistant" => (Some(last), earlier),
            _ => (None, messages),
        };
        for (role, content) in earlier {
            out.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        out.push_str("<|im_start|>assistant\n");
        if let Some((_, prefill)) = last {
            out.push_str(prefill);
        }
        Ok(out)
    }
}
