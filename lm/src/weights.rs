//! The weights of a Hugging Face checkpoint directory, read by tensor name: one
//! `model.safetensors`, the shards a `model.safetensors.index.json` names, or else a
//! PyTorch `pytorch_model.bin` (read by `burn-store`'s pickle reader, nothing executed).
//! Every tensor comes back as f32 (F32, F16 and BF16 are read), with its shape checked, and
//! every error names the file it is about.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::LmError;

fn err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// One safetensors file: its bytes, where the data starts, and its header.
struct Shard {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    header: Metadata,
}

/// The tensors of a checkpoint directory.
pub struct Weights {
    shards: Vec<Shard>,
    /// Tensor name → shard, from the index file (empty for a single file).
    weight_map: BTreeMap<String, usize>,
    /// The index file, when there is one (errors about a missing tensor name it).
    index_path: Option<PathBuf>,
    /// A PyTorch checkpoint's tensors (then `shards` is empty).
    pytorch: Option<(PathBuf, HashMap<String, burn_store::TensorSnapshot>)>,
}

impl Weights {
    /// Opens `dir/model.safetensors.index.json` and its shards, else `dir/model.safetensors`,
    /// else `dir/pytorch_model.bin`.
    pub fn open(dir: &Path) -> Result<Self, LmError> {
        let index_path = dir.join("model.safetensors.index.json");
        let pytorch_path = dir.join("pytorch_model.bin");
        if !index_path.is_file()
            && !dir.join("model.safetensors").is_file()
            && pytorch_path.is_file()
        {
            let reader = burn_store::pytorch::PytorchReader::new(&pytorch_path)
                .map_err(|e| err(&pytorch_path, format!("not a PyTorch checkpoint: {e}")))?;
            return Ok(Self {
                shards: Vec::new(),
                weight_map: BTreeMap::new(),
                index_path: None,
                pytorch: Some((pytorch_path, reader.into_tensors())),
            });
        }
        let (paths, weight_map, index_path) = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| err(&index_path, format!("cannot read: {e}")))?;
            let index: Value = serde_json::from_str(&text)
                .map_err(|e| err(&index_path, format!("not JSON: {e}")))?;
            let map = index["weight_map"]
                .as_object()
                .ok_or_else(|| err(&index_path, "`weight_map` is missing or not an object"))?;
            let mut files: Vec<String> = Vec::new();
            let mut weight_map = BTreeMap::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    err(
                        &index_path,
                        format!("`weight_map.{tensor}` is not a file name"),
                    )
                })?;
                let at = match files.iter().position(|f| f == file) {
                    Some(at) => at,
                    None => {
                        files.push(file.to_string());
                        files.len() - 1
                    }
                };
                weight_map.insert(tensor.clone(), at);
            }
            let paths = files.iter().map(|f| dir.join(f)).collect();
            (paths, weight_map, Some(index_path))
        } else {
            (vec![dir.join("model.safetensors")], BTreeMap::new(), None)
        };
        let shards = paths
            .into_iter()
            .map(|path| {
                let bytes =
                    std::fs::read(&path).map_err(|e| err(&path, format!("cannot read: {e}")))?;
                let (header_len, header) = SafeTensors::read_metadata(&bytes)
                    .map_err(|e| err(&path, format!("not a safetensors file: {e}")))?;
                Ok(Shard {
                    path,
                    bytes,
                    data_start: 8 + header_len,
                    header,
                })
            })
            .collect::<Result<Vec<_>, LmError>>()?;
        Ok(Self {
            shards,
            weight_map,
            index_path,
            pytorch: None,
        })
    }

    fn shard_of(&self, name: &str) -> &Shard {
        &self.shards[self.weight_map.get(name).copied().unwrap_or(0)]
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// The shape of a tensor, if the checkpoint has it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match &self.pytorch {
            Some((_, tensors)) => tensors.get(name).map(|t| t.shape.to_vec()),
            None => self
                .shard_of(name)
                .header
                .info(name)
                .map(|i| i.shape.clone()),
        }
    }

    /// A tensor's values as f32, row-major, after checking its shape is `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LmError> {
        if let Some((path, tensors)) = &self.pytorch {
            let snapshot = tensors
                .get(name)
                .ok_or_else(|| err(path, format!("tensor `{name}` is missing")))?;
            if snapshot.shape.as_slice() != shape {
                return Err(err(
                    path,
                    format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        snapshot.shape.as_slice()
                    ),
                ));
            }
            let data = snapshot
                .to_data()
                .map_err(|e| err(path, format!("tensor `{name}`: {e}")))?;
            return data
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| err(path, format!("tensor `{name}`: {e:?}")));
        }
        let shard = self.shard_of(name);
        let info = shard.header.info(name).ok_or_else(|| {
            let place = self.index_path.as_deref().unwrap_or(&shard.path);
            err(place, format!("tensor `{name}` is missing"))
        })?;
        if info.shape != shape {
            return Err(err(
                &shard.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    info.shape
                ),
            ));
        }
        let (start, end) = info.data_offsets;
        let data = shard
            .bytes
            .get(shard.data_start + start..shard.data_start + end)
            .ok_or_else(|| {
                err(
                    &shard.path,
                    format!("tensor `{name}` runs past the file's end"),
                )
            })?;
        let count: usize = shape.iter().product();
        let values: Vec<f32> = match info.dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| crate::gguf::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                return Err(err(
                    &shard.path,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ))
            }
        };
        if values.len() != count {
            return Err(err(
                &shard.path,
                format!(
                    "tensor `{name}` holds {} values, its shape says {count}",
                    values.len()
                ),
            ));
        }
        Ok(values)
    }
}
