//! GGUF files (llama.cpp's model format): metadata, tensor directory, and tensor data
//! dequantized to f32 from F32, F16, Q8_0, Q4_0 and Q4_1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::LmError;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(v) => Some(*v),
            Value::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            Value::UInt(v) => Some(*v as f64),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// Tensor element types this reader understands (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
    Other(u32),
}

impl TensorType {
    fn from_id(id: u32) -> Self {
        match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            8 => TensorType::Q8_0,
            other => TensorType::Other(other),
        }
    }

    /// (elements per block, bytes per block)
    fn block(self) -> Option<(usize, usize)> {
        match self {
            TensorType::F32 => Some((1, 4)),
            TensorType::F16 => Some((1, 2)),
            TensorType::Q4_0 => Some((32, 18)),
            TensorType::Q4_1 => Some((32, 20)),
            TensorType::Q8_0 => Some((32, 34)),
            TensorType::Other(_) => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dimensions, fastest-varying first (ggml's `ne`): a 2-D weight `[in, out]` is stored
    /// row-major as `out` rows of `in` values.
    pub dims: Vec<usize>,
    pub kind: TensorType,
    /// Byte offset from the start of the data section.
    pub offset: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A GGUF file read into memory.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Reader<'_> {
    fn err(&self, message: impl std::fmt::Display) -> LmError {
        LmError::Checkpoint {
            path: self.path.to_path_buf(),
            message: format!("{message} (at byte {})", self.at),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], LmError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.err("file is truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], LmError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, LmError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, LmError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn len(&mut self) -> Result<usize, LmError> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len())
            .ok_or_else(|| {
                self.err(format!(
                    "file is truncated or damaged (a length of {n} exceeds its size)"
                ))
            })
    }

    fn string(&mut self) -> Result<String, LmError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    fn value(&mut self, kind: u32) -> Result<Value, LmError> {
        Ok(match kind {
            0 => Value::UInt(u64::from(self.array::<1>()?[0])),
            1 => Value::Int(i64::from(i8::from_le_bytes(self.array()?))),
            2 => Value::UInt(u64::from(u16::from_le_bytes(self.array()?))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.array()?))),
            4 => Value::UInt(u64::from(self.u32()?)),
            5 => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            6 => Value::Float(f64::from(f32::from_le_bytes(self.array()?))),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner)?);
                }
                Value::Array(items)
            }
            10 => Value::UInt(self.u64()?),
            11 => Value::Int(i64::from_le_bytes(self.array()?)),
            12 => Value::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(self.err(format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Reads and checks a GGUF file (version 2 or 3).
    pub fn open(path: &Path) -> Result<Self, LmError> {
        let bytes = std::fs::read(path).map_err(|e| LmError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
            path,
        };
        if r.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err(LmError::Checkpoint {
                path: path.to_path_buf(),
                message: "not a GGUF file (bad magic)".into(),
            });
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.err(format!("unsupported GGUF version {version}")));
        }
        let tensor_count = r.len()?;
        let kv_count = r.len()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let kind = r.u32()?;
            let value = r.value(kind)?;
            metadata.insert(key, value);
        }
        let mut tensors = BTreeMap::new();
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()? as usize;
            if n_dims > 4 {
                return Err(r.err(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(r.len()?);
            }
            let kind = TensorType::from_id(r.u32()?);
            let offset = r.len()?;
            tensors.insert(name, TensorInfo { dims, kind, offset });
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .unwrap_or(32)
            .max(1) as usize;
        let data_start = r.at.div_ceil(alignment) * alignment;
        Ok(Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            bytes,
            data_start,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn err(&self, message: impl std::fmt::Display) -> LmError {
        LmError::Checkpoint {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// A required numeric metadata value.
    pub fn require_u64(&self, key: &str) -> Result<u64, LmError> {
        self.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.err(format!("metadata `{key}` is missing or not an integer")))
    }

    pub fn require_f64(&self, key: &str) -> Result<f64, LmError> {
        self.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.err(format!("metadata `{key}` is missing or not a number")))
    }

    /// A tensor's values as f32, in storage order, with its dims (fastest-varying first).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), LmError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| self.err(format!("tensor `{name}` is missing")))?;
        let (block_elems, block_bytes) = info.kind.block().ok_or_else(|| {
            self.err(format!(
                "tensor `{name}` has unsupported type {:?}",
                info.kind
            ))
        })?;
        let n = info.elements();
        if n % block_elems != 0 {
            return Err(self.err(format!("tensor `{name}` has {n} elements, not a whole number of {block_elems}-element blocks")));
        }
        let size = n / block_elems * block_bytes;
        let start = self.data_start + info.offset;
        let data = self.bytes.get(start..start + size).ok_or_else(|| {
            self.err(format!(
                "tensor `{name}` runs past the end of the file (truncated?)"
            ))
        })?;
        Ok((dequantize(info.kind, data, n), info.dims.clone()))
    }
}

/// IEEE half to single precision.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let out = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(out)
}

fn half(bytes: &[u8]) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]))
}

/// Dequantizes `n` values of a type whose block layout the caller checked.
fn dequantize(kind: TensorType, data: &[u8], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    match kind {
        TensorType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        TensorType::F16 => out.extend(data.chunks_exact(2).map(half)),
        TensorType::Q8_0 => {
            for block in data.chunks_exact(34) {
                let d = half(&block[..2]);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        TensorType::Q4_0 => {
            for block in data.chunks_exact(18) {
                let d = half(&block[..2]);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 0x0f) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        TensorType::Q4_1 => {
            for block in data.chunks_exact(20) {
                let d = half(&block[..2]);
                let m = half(&block[2..4]);
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        TensorType::Other(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn blocks_dequantize() {
        // Q4_1: d = 0.5, m = -1, nibbles 0..15 low then 15..0 high.
        let mut block = vec![0x00, 0x38, 0x00, 0xbc];
        block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let v = dequantize(TensorType::Q4_1, &block, 32);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[15], 6.5);
        assert_eq!(v[16], 6.5);
        assert_eq!(v[31], -1.0);
        // Q4_0: d = 1, value q - 8.
        let mut block = vec![0x00, 0x3c];
        block.extend(std::iter::repeat_n(0x8f, 16));
        let v = dequantize(TensorType::Q4_0, &block, 32);
        assert_eq!((v[0], v[16]), (7.0, 0.0));
        // Q8_0: d = 2, i8 values.
        let mut block = vec![0x00, 0x40];
        block.extend((0..32).map(|i: i8| (i - 16) as u8));
        let v = dequantize(TensorType::Q8_0, &block, 32);
        assert_eq!((v[0], v[31]), (-32.0, 30.0));
    }
}
