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

/// SmolLM2-135M-Instruct (GGUF Q4_1): `SMOLLM2_GGUF`, or where `scripts/fetch-models.sh`
/// puts it. Fails the test when the file is missing.
pub fn smollm2_gguf() -> PathBuf {
    let path = std::env::var_os("SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/rco/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (scripts/test.sh does) or set SMOLLM2_GGUF",
        path.display()
    );
    path
}

/// Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M): `QWEN_GGUF`, or where
/// `scripts/fetch-models.sh qwen2.5-coder-0.5b` puts it. Fails the test when it is missing.
pub fn qwen_gguf() -> PathBuf {
    let path = std::env::var_os("QWEN_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/rco/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh qwen2.5-coder-0.5b (scripts/test.sh does) or set QWEN_GGUF",
        path.display()
    );
    path
}
