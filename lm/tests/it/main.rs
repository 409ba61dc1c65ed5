//! The model tests on the default (flex) backend, in one test binary: the tiny character
//! model ([`tiny_lm`]), SmolLM2, Qwen2.5-Coder and Gemma 3 from GGUF against reference
//! numbers ([`gguf_llama`], [`gguf_qwen`], [`gguf_gemma`]), the scoring models
//! ([`reward_model`], [`pairrm`]), and the continuous-batching scheduler over SmolLM2
//! ([`scheduler`]); the Q8_0 inference path on each GGUF model ([`q8`]).
//! The backend parity suite is `tests/backends.rs`, a binary of its own.

#[path = "../common/mod.rs"]
mod common;
mod gguf_gemma;
mod gguf_llama;
mod gguf_qwen;
mod lora;
mod pairrm;
mod q8;
mod reward_model;
mod scheduler;
mod tiny_lm;
