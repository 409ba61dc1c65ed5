//! What the model tests share: where the SmolLM2 file is, and the tiny character model. Included by `tests/it` and
//! `tests/backends.rs` here, and by `plugins/burn/tests/roles.rs`.
#![allow(dead_code)]

use std::path::PathBuf;

use rco_lm::checkpoint::{Architecture, ModelSpec};
use rco_lm::tiny::TinyLmConfig;
use rco_lm::tokenizer::{CharTokenizer, Tokenizer};

/// A tiny character transformer with `layers` layers over the quickstart alphabet.
pub fn tiny_spec(layers: usize) -> ModelSpec {
    let tokenizer = Tokenizer::Chars(CharTokenizer {
        alphabet: "0123456789abcdefghijklmnopqrstuvwxyz:|>@= ".into(),
    });
    ModelSpec {
        architecture: Architecture::Tiny(TinyLmConfig {
            vocab_size: tokenizer.vocab_size(),
            d_model: 32,
            heads: 2,
            layers,
            d_ff: 64,
            max_len: 32,
        }),
        tokenizer,
    }
}

/// A file `scripts/fetch-models.sh` fetches: the path in the variable `env`, else `file` in
/// `~/.cache/rco/models`. Fails the test when it is missing.
fn fetched(env: &str, file: &str, fetch: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".cache/rco/models").join(file)
    });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh {fetch} (scripts/test.sh does) or set {env}",
        path.display()
    );
    path
}

/// SmolLM2-135M-Instruct (GGUF Q4_1): `SMOLLM2_GGUF`, or where `scripts/fetch-models.sh`
/// puts it.
pub fn smollm2_gguf() -> PathBuf {
    fetched("SMOLLM2_GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf", "")
}

/// Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M): `QWEN_GGUF`, or where
/// `scripts/fetch-models.sh qwen2.5-coder-0.5b` puts it.
pub fn qwen_gguf() -> PathBuf {
    fetched(
        "QWEN_GGUF",
        "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        "qwen2.5-coder-0.5b",
    )
}

/// Gemma-3-270M (GGUF Q4_K_M): `GEMMA_GGUF`, or where
/// `scripts/fetch-models.sh gemma-3-270m` puts it.
pub fn gemma_gguf() -> PathBuf {
    fetched("GEMMA_GGUF", "gemma-3-270m-Q4_K_M.gguf", "gemma-3-270m")
}

/// DeBERTa-v3's tokenizer.json: `DEBERTA_TOKENIZER`, or where
/// `scripts/fetch-models.sh deberta-v3-tokenizer` puts it.
pub fn deberta_tokenizer() -> PathBuf {
    fetched(
        "DEBERTA_TOKENIZER",
        "deberta-v3-tokenizer.json",
        "deberta-v3-tokenizer",
    )
}
