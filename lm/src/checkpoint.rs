//! Self-describing model checkpoints: a directory with `model.json` (architecture and
//! tokenizer) and `model.mpk` (weights in full precision, burn's named MessagePack recorder).
//! `model.json` is written last, so a directory holding it holds a complete checkpoint.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use serde::{Deserialize, Serialize};

use crate::tiny::{TinyLm, TinyLmConfig};
use crate::tokenizer::Tokenizer;
use crate::LmError;

/// The architecture of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    Tiny(TinyLmConfig),
}

/// Everything needed to rebuild a model besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub architecture: Architecture,
    pub tokenizer: Tokenizer,
}

pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

/// Whether `dir` holds a complete checkpoint.
pub fn exists(dir: &Path) -> bool {
    dir.join("model.json").is_file()
}

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Saves weights to `dir/NAME.mpk` atomically (burn writes a temporary file, then it is renamed).
pub fn save_weights<B: Backend, M: Module<B>>(
    model: M,
    dir: &Path,
    name: &str,
) -> Result<(), LmError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let tmp = dir.join(format!("{name}-partial"));
    model
        .save_file(&tmp, &recorder())
        .map_err(|e| err(&tmp, e))?;
    let written = dir.join(format!("{name}-partial.mpk"));
    let target = dir.join(format!("{name}.mpk"));
    std::fs::rename(&written, &target).map_err(|e| err(&target, e))
}

/// Saves any record (an optimizer's state) to `dir/NAME.mpk` atomically.
pub fn save_record<R: burn::record::Record<B>, B: Backend>(
    record: R,
    dir: &Path,
    name: &str,
) -> Result<(), LmError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let tmp = dir.join(format!("{name}-partial"));
    Recorder::<B>::record(&recorder(), record, tmp.clone()).map_err(|e| err(&tmp, e))?;
    let target = dir.join(format!("{name}.mpk"));
    std::fs::rename(dir.join(format!("{name}-partial.mpk")), &target).map_err(|e| err(&target, e))
}

/// Loads weights saved by [`save_weights`] into a model of the same architecture.
pub fn load_weights<B: Backend, M: Module<B>>(
    model: M,
    dir: &Path,
    name: &str,
    device: &B::Device,
) -> Result<M, LmError> {
    let path = dir.join(format!("{name}.mpk"));
    if !path.is_file() {
        return Err(err(&path, "weights file is missing"));
    }
    let record = recorder()
        .load(dir.join(name), device)
        .map_err(|e| err(&path, e))?;
    Ok(model.load_record(record))
}

/// Saves a complete checkpoint.
pub fn save<B: Backend>(dir: &Path, spec: &ModelSpec, model: TinyLm<B>) -> Result<(), LmError> {
    save_weights(model, dir, "model")?;
    let json = serde_json::to_vec_pretty(spec).map_err(|e| err(dir, e))?;
    rco_core::store::write_atomic(&dir.join("model.json"), &json).map_err(|e| err(dir, e))
}

/// Reads `dir/model.json`.
pub fn read_spec(dir: &Path) -> Result<ModelSpec, LmError> {
    let path = dir.join("model.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err(&path, format!("cannot read checkpoint description: {e}")))?;
    serde_json::from_str(&text).map_err(|e| err(&path, format!("not a model description: {e}")))
}

/// Builds an untrained model of a spec's architecture, its weights drawn from `seed`.
pub fn init_seeded<B: Backend>(spec: &ModelSpec, device: &B::Device, seed: u64) -> TinyLm<B> {
    crate::rng::seeded::<B, _>(device, seed, || draw(spec, device))
}

/// Builds an untrained model of a spec's architecture (weights from the backend's RNG).
pub fn init<B: Backend>(spec: &ModelSpec, device: &B::Device) -> TinyLm<B> {
    crate::rng::unseeded::<B, _>(|| draw(spec, device))
}

fn draw<B: Backend>(spec: &ModelSpec, device: &B::Device) -> TinyLm<B> {
    match &spec.architecture {
        Architecture::Tiny(config) => config.init(device),
    }
}

/// Loads a complete checkpoint.
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<(ModelSpec, TinyLm<B>), LmError> {
    let spec = read_spec(dir)?;
    let model = load_weights(init::<B>(&spec, device), dir, "model", device)?;
    Ok((spec, model))
}

/// Copies a complete checkpoint (weights first, description last).
pub fn copy(from: &Path, to: &Path) -> Result<(), LmError> {
    read_spec(from)?;
    std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
    let weights = from.join("model.mpk");
    let partial = to.join("model-partial.mpk");
    std::fs::copy(&weights, &partial).map_err(|e| err(&weights, e))?;
    std::fs::rename(&partial, to.join("model.mpk")).map_err(|e| err(to, e))?;
    // The description last, atomically: it marks the copy complete.
    let spec = std::fs::read(from.join("model.json")).map_err(|e| err(from, e))?;
    rco_core::store::write_atomic(&to.join("model.json"), &spec).map_err(|e| err(to, e))
}
