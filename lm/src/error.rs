//! The one error type of the models.

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
    /// A request a server cannot take as it is (a prompt over the limits, …): the client's to fix.
    #[error("{0}")]
    Request(String),
    /// What the model cannot do (LoRA on a model without adapters' projections, …).
    #[error("{0}")]
    Unsupported(String),
    /// The request was given up because its client went away.
    #[error("cancelled: the client went away")]
    Cancelled,
}

impl From<LmError> for rco_core::Error {
    fn from(e: LmError) -> Self {
        rco_core::Error::Other(e.to_string())
    }
}
