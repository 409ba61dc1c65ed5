//! GGUF files (llama.cpp's model format): metadata, tensor directory, and tensor data
//! dequantized to f32 from F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants
//! Q4_K, Q5_K, Q6_K and Q8_K (as llama.cpp's `dequantize_row_*` do it). Only the header is held in memory;
//! each tensor is read from its offset when asked for.

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
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Other(u32),
}

impl TensorType {
    fn from_id(id: u32) -> Self {
        match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            6 => TensorType::Q5_0,
            7 => TensorType::Q5_1,
            8 => TensorType::Q8_0,
            12 => TensorType::Q4K,
            13 => TensorType::Q5K,
            14 => TensorType::Q6K,
            15 => TensorType::Q8K,
            30 => TensorType::BF16,
            other => TensorType::Other(other),
        }
    }

    /// (elements per block, bytes per block)
    fn block(self) -> Option<(usize, usize)> {
        match self {
            TensorType::F32 => Some((1, 4)),
            TensorType::F16 => Some((1, 2)),
            TensorType::BF16 => Some((1, 2)),
            TensorType::Q4_0 => Some((32, 18)),
            TensorType::Q4_1 => Some((32, 20)),
            TensorType::Q5_0 => Some((32, 22)),
            TensorType::Q5_1 => Some((32, 24)),
            TensorType::Q8_0 => Some((32, 34)),
            TensorType::Q4K => Some((256, 144)),
            TensorType::Q5K => Some((256, 176)),
            TensorType::Q6K => Some((256, 210)),
            TensorType::Q8K => Some((256, 292)),
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

/// A GGUF file's header (metadata and tensor directory); tensors are read on demand.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Size of the whole file in bytes.
    file_len: u64,
    data_start: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
    /// Size of the whole file (`bytes` may be its beginning only).
    file_len: usize,
    /// A read ran past `bytes` but not past the file: read more of it and parse again.
    short: bool,
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
            .filter(|&e| e <= self.file_len)
            .ok_or_else(|| self.err("file is truncated"))?;
        if end > self.bytes.len() {
            self.short = true;
            return Err(self.err("header is longer than the part read"));
        }
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
            .filter(|&n| n <= self.file_len)
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
    /// Reads and checks a GGUF file's header (version 2 or 3).
    pub fn open(path: &Path) -> Result<Self, LmError> {
        use std::io::Read;
        let cannot = |e: std::io::Error| LmError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        };
        let file = std::fs::File::open(path).map_err(cannot)?;
        let file_len = file.metadata().map_err(cannot)?.len();
        // The header is read in growing pieces until it is whole (tokenizer vocabularies
        // make it megabytes long); the tensor data stays on disk.
        let mut want = file_len.min(16 << 20);
        loop {
            let mut bytes = Vec::with_capacity(want as usize);
            (&file).take(want).read_to_end(&mut bytes).map_err(cannot)?;
            let mut r = Reader {
                bytes: &bytes,
                at: 0,
                path,
                file_len: usize::try_from(file_len).unwrap_or(usize::MAX),
                short: false,
            };
            match Self::parse(&mut r) {
                Ok((version, metadata, tensors, header_end)) => {
                    let alignment = metadata
                        .get("general.alignment")
                        .and_then(Value::as_u64)
                        .unwrap_or(32)
                        .max(1) as usize;
                    return Ok(Self {
                        path: path.to_path_buf(),
                        version,
                        metadata,
                        tensors,
                        file_len,
                        data_start: header_end.div_ceil(alignment) * alignment,
                    });
                }
                Err(_) if r.short && want < file_len => {
                    want = file_len.min(want.saturating_mul(4));
                    use std::io::Seek;
                    (&file).seek(std::io::SeekFrom::Start(0)).map_err(cannot)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses the header: version, metadata, tensor directory, and where the header ends.
    #[allow(clippy::type_complexity)]
    fn parse(
        r: &mut Reader<'_>,
    ) -> Result<
        (
            u32,
            BTreeMap<String, Value>,
            BTreeMap<String, TensorInfo>,
            usize,
        ),
        LmError,
    > {
        if r.take(4).ok() != Some(b"GGUF".as_slice()) && !r.short {
            return Err(LmError::Checkpoint {
                path: r.path.to_path_buf(),
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
        Ok((version, metadata, tensors, r.at))
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
        if (start + size) as u64 > self.file_len {
            return Err(self.err(format!(
                "tensor `{name}` runs past the end of the file (truncated?)"
            )));
        }
        let mut data = vec![0u8; size];
        {
            use std::io::{Read, Seek};
            let mut file = std::fs::File::open(&self.path)
                .map_err(|e| self.err(format!("cannot read tensor `{name}`: {e}")))?;
            file.seek(std::io::SeekFrom::Start(start as u64))
                .and_then(|_| file.read_exact(&mut data))
                .map_err(|e| self.err(format!("cannot read tensor `{name}`: {e}")))?;
        }
        Ok((dequantize(info.kind, &data, n), info.dims.clone()))
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
        TensorType::BF16 => out.extend(
            data.chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        ),
        TensorType::Q5_0 | TensorType::Q5_1 => {
            let with_min = kind == TensorType::Q5_1;
            let size = if with_min { 24 } else { 22 };
            for block in data.chunks_exact(size) {
                let d = half(&block[..2]);
                let (m, rest) = if with_min {
                    (half(&block[2..4]), &block[4..])
                } else {
                    (0.0, &block[2..])
                };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                // The fifth bit of element j is bit j of qh (elements 0..15 in the low
                // nibbles, 16..31 in the high ones).
                let offset = if with_min { 0.0 } else { 16.0 };
                let value = |q: u8, bit: u32| {
                    let q = f32::from(q | (((qh >> bit) & 1) as u8) << 4);
                    if with_min {
                        d * q + m
                    } else {
                        d * (q - offset)
                    }
                };
                out.extend(
                    qs.iter()
                        .enumerate()
                        .map(|(j, &q)| value(q & 0x0f, j as u32)),
                );
                out.extend(
                    qs.iter()
                        .enumerate()
                        .map(|(j, &q)| value(q >> 4, j as u32 + 16)),
                );
            }
        }
        TensorType::Q4K | TensorType::Q5K => {
            let five = kind == TensorType::Q5K;
            for block in data.chunks_exact(if five { 176 } else { 144 }) {
                let d = half(&block[..2]);
                let dmin = half(&block[2..4]);
                let scales = &block[4..16];
                let (qh, qs) = if five {
                    (&block[16..48], &block[48..176])
                } else {
                    (&block[..0], &block[16..144])
                };
                // Eight sub-blocks of 32, each with a 6-bit scale and a 6-bit min.
                for pair in 0..4 {
                    let q = &qs[pair * 32..pair * 32 + 32];
                    for half_index in 0..2 {
                        let sub = pair * 2 + half_index;
                        let (sc, mn) = scale_min_k4(sub, scales);
                        let (d1, m1) = (d * f32::from(sc), dmin * f32::from(mn));
                        for (l, &byte) in q.iter().enumerate() {
                            let low = if half_index == 0 {
                                byte & 0x0f
                            } else {
                                byte >> 4
                            };
                            let high = if five && qh[l] & (1 << sub) != 0 {
                                16
                            } else {
                                0
                            };
                            out.push(d1 * f32::from(low + high) - m1);
                        }
                    }
                }
            }
        }
        TensorType::Q6K => {
            for block in data.chunks_exact(210) {
                let ql = &block[..128];
                let qh = &block[128..192];
                let scales = &block[192..208];
                let d = half(&block[208..210]);
                let mut y = [0f32; 256];
                for n in 0..2 {
                    let (ql, qh) = (&ql[n * 64..], &qh[n * 32..]);
                    let sc = &scales[n * 8..];
                    let y = &mut y[n * 128..];
                    for l in 0..32 {
                        let is = l / 16;
                        let q = |low: u8, shift: u32| {
                            f32::from(((low | ((qh[l] >> shift) & 3) << 4) as i8) - 32)
                        };
                        let scale = |k: usize| d * f32::from(sc[is + k] as i8);
                        y[l] = scale(0) * q(ql[l] & 0x0f, 0);
                        y[l + 32] = scale(2) * q(ql[l + 32] & 0x0f, 2);
                        y[l + 64] = scale(4) * q(ql[l] >> 4, 4);
                        y[l + 96] = scale(6) * q(ql[l + 32] >> 4, 6);
                    }
                }
                out.extend_from_slice(&y);
            }
        }
        TensorType::Q8K => {
            for block in data.chunks_exact(292) {
                let d = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
                out.extend(block[4..260].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        TensorType::Other(_) => {}
    }
    out
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block's 12 scale bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
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
