//! rco-lm: local language models in burn — the models themselves, not the plugins that give
//! them roles.
//!
//! # Design
//! Everything model-specific sits behind [`model::CausalLm`] (token logits for a padded
//! batch): the tiny character transformer ([`tiny`]) and the Llama decoder ([`llama`], its
//! token table in [`token_table`]).
//! Batched sampling and completion log-probs ([`sampling`]), the supervised warm start and
//! the RCO loss ([`loss`]), with each step's gradient norm ([`grad_norm`]), are written
//! once against it and generic over `B: Backend`; the device (`cpu` = flex, `wgpu`, `cuda:N`) is chosen from a config string at run time
//! ([`device`]). Models come from self-describing checkpoint directories ([`checkpoint`]),
//! GGUF files ([`gguf`]) or Hugging Face directories ([`hf`]), with their tokenizers
//! ([`tokenizer`], [`text`]); [`local`] opens any of them as one [`local::LocalLm`].
//! [`engine::Engine`] is the one loaded-model type: generation, scoring and next-token
//! log-probs with a model's sampling settings. The `burn` plugins' roles, [`critic`], the
//! one-shot commands of the CLI ([`commands`]) and the continuous-batching scheduler of
//! `rco serve` ([`batcher`]) are all built on it. Two models score rather than generate: a
//! decoder with a sequence-classification head ([`reward`]) and PairRM ([`pairrm`]), a
//! DeBERTa-v3 encoder ([`deberta`]) with llm-blender's pairwise head; Hugging Face weights
//! are read by tensor name through [`weights`]. [`parity`] compares one model across
//! devices (`rco backends`). No plugin is registered here.

pub mod batcher;
pub mod checkpoint;
pub mod commands;
pub mod critic;
pub mod deberta;
pub mod device;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod grad_norm;
pub mod hf;
pub mod job;
pub mod llama;
pub mod llama_q8;
pub mod local;
pub mod lora;
pub mod loss;
pub mod model;
pub mod pairrm;
pub mod parity;
pub mod quant;
pub mod reward;
pub mod rng;
pub mod sampling;
pub mod scheduler;
pub mod text;
pub mod tiny;
pub mod token_table;
pub mod tokenizer;
pub mod weights;

pub use error::LmError;

/// burn, for [`with_backend!`]'s expansion in crates that do not name it.
#[doc(hidden)]
pub use burn;
