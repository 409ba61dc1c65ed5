//! rco-plugin-burn: local language models in burn, as critics and as the RCO trainer.
//!
//! # Design
//! Everything model-specific sits behind [`model::CausalLm`] (token logits for a padded
//! batch). Batched sampling and completion log-probs ([`lm`]), the supervised warm start and
//! the RCO loss ([`train`]) are written once against it and generic over `B: Backend`; the
//! device (`cpu` = flex, `wgpu`, `cuda:N`) is chosen from config at run time
//! ([`device`]). Checkpoints are self-describing directories ([`checkpoint`]). Real
//! pretrained models come from GGUF files ([`gguf`], [`llama`], [`text`]).

pub mod actor;
pub mod batcher;
pub mod checkpoint;
pub mod critic;
pub mod device;
pub mod engine;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod judge;
pub mod llama;
pub mod lm;
pub mod model;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod trainer;

use std::path::PathBuf;

/// Errors of the burn models.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{0}")]
    Device(String),
}

impl From<LmError> for rco_core::Error {
    fn from(e: LmError) -> Self {
        rco_core::Error::Other(e.to_string())
    }
}
