//! Subword tokenizers for real language models, through the `tokenizers` crate: built from a
//! GGUF file's vocabulary — gpt2-style byte-level BPE from its merges, or a SentencePiece
//! vocabulary (`tokenizer.ggml.model = "llama"`, Gemma's) from its scores — or read from a
//! Hugging Face `tokenizer.json`; plus the chat template a model expects.

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
    /// The token that ends a chat turn when it is not EOS (`tokenizer.ggml.eot_token_id`, or
    /// Gemma's `<end_of_turn>`): generation stops there too.
    pub end_of_turn: Option<u32>,
    /// The model's chat template (Jinja source), if it ships one.
    pub chat_template: Option<String>,
}

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The `tokenizer.ggml.pre` values [`TextTokenizer::from_gguf`] builds.
pub const PRE_TOKENIZERS: [&str; 5] = ["default", "gpt-2", "smollm", "qwen2", "llama-bpe"];

/// The pre-tokenizer (Hugging Face `tokenizers` JSON) that splits text as llama.cpp does for
/// a `tokenizer.ggml.pre` value.
fn pre_tokenizer(pre: &str) -> Option<Json> {
    // llama.cpp's regexes (`llama-vocab.cpp`), split before the byte-level mapping.
    let split = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]})
    };
    match pre {
        // GPT-2's own regex inside ByteLevel.
        "default" | "gpt-2" => Some(json!(
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        )),
        // GPT-2's, with every digit on its own.
        "smollm" => Some(json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]})),
        "qwen2" => Some(split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        )),
        "llama-bpe" => Some(split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        )),
        _ => None,
    }
}

impl TextTokenizer {
    /// Builds the tokenizer stored in a GGUF file (`tokenizer.ggml.model` `gpt2` or `llama`).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LmError> {
        let path = &file.path;
        let model = file
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let inner = match model {
            "gpt2" => byte_level_bpe(file)?,
            "llama" => sentencepiece(file)?,
            other => {
                return Err(err(
                    path,
                    format!("tokenizer model `{other}` is not supported (supported: gpt2, llama)"),
                ))
            }
        };
        let id = |key: &str| file.get(key).and_then(Value::as_u64).map(|v| v as u32);
        Ok(Self {
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| err(path, "metadata `tokenizer.ggml.eos_token_id` is missing"))?,
            add_bos: matches!(
                file.get("tokenizer.ggml.add_bos_token"),
                Some(Value::Bool(true))
            ),
            end_of_turn: id("tokenizer.ggml.eot_token_id")
                .or_else(|| inner.token_to_id("<end_of_turn>")),
            inner,
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

    /// A whole conversation in the model's chat format, every turn closed.
    pub fn conversation(&self, messages: &[(&str, &str)]) -> Result<String, LmError> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| LmError::Tokenize("the model ships no chat template".into()))?;
        let token = |id: Option<u32>| {
            id.and_then(|id| self.inner.id_to_token(id))
                .unwrap_or_default()
        };
        render_conversation(template, messages, &token(self.bos), &token(Some(self.eos)))
    }

    /// One user turn in the model's chat format, ready for the assistant's answer.
    pub fn chat_prompt(&self, user: &str) -> Result<String, LmError> {
        self.chat_messages(&[("user", user)])
    }

    /// A conversation rendered with the model's own chat template (the Jinja source its
    /// checkpoint ships, run by `minijinja` with Python's string methods). It ends ready for
    /// the assistant's answer; when the last message is the assistant's, its text is left
    /// open for the model to continue (a prefilled answer), as vLLM's
    /// `continue_final_message` does.
    pub fn chat_messages(&self, messages: &[(&str, &str)]) -> Result<String, LmError> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            LmError::Tokenize("the model ships no chat template; use a raw prompt".into())
        })?;
        let token = |id: Option<u32>| {
            id.and_then(|id| self.inner.id_to_token(id))
                .unwrap_or_default()
        };
        render_chat(template, messages, &token(self.bos), &token(Some(self.eos)))
    }
}

/// A GGUF metadata array of strings.
fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>, LmError> {
    let path = &file.path;
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
}

/// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
/// 6 byte.
fn token_types(file: &GgufFile) -> Vec<u64> {
    file.get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// A vocabulary as `tokenizers` JSON: token → id.
fn vocab_json(tokens: &[String]) -> serde_json::Map<String, Json> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect()
}

/// The tokens of the given types as `tokenizers` added tokens, matched whole before the
/// model runs; control tokens (type 3) are special (left out when decoding).
fn added_tokens(tokens: &[String], types: &[u64], of: &[u64]) -> Vec<Json> {
    tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types.get(*i).is_some_and(|t| of.contains(t)))
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": types.get(i) == Some(&3)}))
        .collect()
}

/// gpt2-style byte-level BPE from a GGUF file's vocabulary and merges, split first as
/// llama.cpp splits for the file's `tokenizer.ggml.pre`.
fn byte_level_bpe(file: &GgufFile) -> Result<tokenizers::Tokenizer, LmError> {
    let path = &file.path;
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let types = token_types(file);
    let vocab = vocab_json(&tokens);
    // Control tokens (`<|im_start|>` and the like) are matched whole.
    let added = added_tokens(&tokens, &types, &[3]);
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| {
        err(
            path,
            format!(
                "pre-tokenizer `{pre}` (`tokenizer.ggml.pre`) is not supported (supported: {})",
                PRE_TOKENIZERS.join(", ")
            ),
        )
    })?;
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    tokenizers::Tokenizer::from_str(&spec.to_string())
        .map_err(|e| err(path, format!("cannot build the tokenizer: {e}")))
}

/// A SentencePiece vocabulary with scores (`tokenizer.ggml.model = "llama"`), as llama.cpp's
/// SPM tokenizer reads it: spaces become `▁` (one put in front when
/// `tokenizer.ggml.add_space_prefix` is set), then neighbouring pieces merge, the pair whose
/// merged piece scores highest first, and what is left outside the vocabulary falls back to
/// its bytes (`<0xNN>`). Built as a `tokenizers` BPE whose merges are ranked by the merged
/// piece's score, as Hugging Face converts SentencePiece BPE models. Control and user-defined
/// tokens are matched whole.
fn sentencepiece(file: &GgufFile) -> Result<tokenizers::Tokenizer, LmError> {
    let path = &file.path;
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let scores: Vec<f64> = file
        .get("tokenizer.ggml.scores")
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, "metadata `tokenizer.ggml.scores` is missing"))?
        .iter()
        .map(|v| v.as_f64().unwrap_or(0.0))
        .collect();
    let types = token_types(file);
    let vocab: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    // Every way a normal piece splits into two pieces of the vocabulary is a merge, ranked by
    // the piece's score (higher first), then by the ids of its halves.
    let mut ranked: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id).is_some_and(|&t| t != 1) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (vocab.get(&piece[..at]), vocab.get(&piece[at..])) {
                ranked.push((scores.get(id).copied().unwrap_or(0.0), id, l, r));
            }
        }
    }
    ranked.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let merges: Vec<Json> = ranked
        .iter()
        .map(|&(_, _, l, r)| json!([tokens[l], tokens[r]]))
        .collect();
    let vocab_json = vocab_json(&tokens);
    let added = added_tokens(&tokens, &types, &[3, 4]);
    let add_space_prefix = !matches!(
        file.get("tokenizer.ggml.add_space_prefix"),
        Some(Value::Bool(false))
    );
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let unk = file
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64)
        .and_then(|id| tokens.get(id as usize).cloned());
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false, "vocab": vocab_json, "merges": merges}
    });
    tokenizers::Tokenizer::from_str(&spec.to_string())
        .map_err(|e| err(path, format!("cannot build the tokenizer: {e}")))
}

/// Renders a whole conversation with a chat template, every message closed (a reward model
/// reads the conversation as it ends).
pub fn render_conversation(
    template: &str,
    messages: &[(&str, &str)],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, LmError> {
    let failed = |e: minijinja::Error| LmError::Tokenize(format!("the chat template: {e:#}"));
    let env = environment(template).map_err(failed)?;
    let rendered: Vec<minijinja::Value> = messages
        .iter()
        .map(|(role, content)| {
            minijinja::context! { role => role.to_string(), content => content.to_string() }
        })
        .collect();
    env.get_template("chat")
        .map_err(failed)?
        .render(minijinja::context! {
            messages => rendered,
            add_generation_prompt => false,
            bos_token => bos_token,
            eos_token => eos_token,
        })
        .map_err(failed)
}

/// A Jinja environment with Python's string methods and the template as `chat`.
fn environment(template: &str) -> Result<minijinja::Environment<'_>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                message,
            ))
        },
    );
    env.add_template("chat", template)?;
    Ok(env)
}

/// Renders `messages` with a chat template. A final assistant message is continued: it is
/// rendered with a marker for its text, and the prompt is cut where the marker starts.
pub fn render_chat(
    template: &str,
    messages: &[(&str, &str)],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, LmError> {
    const MARK: &str = "\u{E000}rco-answer\u{E000}";
    let failed = |e: minijinja::Error| LmError::Tokenize(format!("the chat template: {e:#}"));
    let env = environment(template).map_err(failed)?;
    let continued = messages.last().filter(|(role, _)| *role == "assistant");
    let rendered: Vec<minijinja::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (role, content))| {
            let text: &str = if continued.is_some() && i + 1 == messages.len() {
                MARK
            } else {
                content
            };
            minijinja::context! { role => role.to_string(), content => text.to_string() }
        })
        .collect();
    let text = env
        .get_template("chat")
        .map_err(failed)?
        .render(minijinja::context! {
            messages => rendered,
            add_generation_prompt => continued.is_none(),
            bos_token => bos_token,
            eos_token => eos_token,
        })
        .map_err(failed)?;
    match continued {
        None => Ok(text),
        Some((_, prefix)) => {
            let at = text.find(MARK).ok_or_else(|| {
                LmError::Tokenize("the chat template drops a final assistant message".into())
            })?;
            Ok(format!("{}{prefix}", &text[..at]))
        }
    }
}
