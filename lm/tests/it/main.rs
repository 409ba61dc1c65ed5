//! The model tests on the default (flex) backend, in one test binary: the tiny character
//! model ([`tiny_lm`]) and SmolLM2 from GGUF against reference numbers ([`gguf_llama`]).
//! The backend parity suite is `tests/backends.rs`, a binary of its own.

#[path = "../common/mod.rs"]
mod common;
mod gguf_llama;
mod tiny_lm;
