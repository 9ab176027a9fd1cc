//! GGUF files (llama.cpp's single-file model format), read by a small parser of our own.
//!
//! A GGUF file is a header (magic `GGUF`, version, tensor and metadata counts), the metadata as
//! typed key/value pairs, a table of tensor infos (name, dimensions, ggml type, offset), then
//! the tensor data, aligned to `general.alignment` (32 by default). Versions 2 and 3 are read
//! (both little-endian with 64-bit counts; v1 used 32-bit counts and is not found in the wild).
//!
//! **Why not candle-core's `quantized::gguf_file`.** It is a maintained reader, and its
//! `quantized::tokenizer` builds a `tokenizers::Tokenizer` from the metadata, but:
//! - it is a second tensor library: candle-core (with zip, float8, yoke, byteorder, memmap2
//!   and safetensors 0.7 beside our 0.8, none of which the engine builds today) would be
//!   compiled only to hand back `QTensor`s that still have to be dequantized through candle
//!   and copied into burn;
//! - its tokenizer builder gives a `smollm` (or any unlisted) pre-tokenizer GPT-2's
//!   `ByteLevel::default()`, which adds a prefix space, so token ids differ from transformers'
//!   GGUF tokenizer (and from SmolLM2's own `tokenizer.json`) on text that starts without one —
//!   we would have to rebuild the tokenizer ourselves anyway;
//! - the format itself is small: this parser, the six block formats we dequantize
//!   ([`dequant`]) and the llama tensor mapping ([`llama`]) are a few hundred lines with no
//!   new dependency, and every error names the file, key or tensor.
//!
//! The file is read once: header, metadata and tensor table are parsed from a buffered reader,
//! then the data section is read into one buffer that tensors are dequantized from on demand
//! ([`GgufFile::read_metadata`] stops before the data, for the tokenizer alone).

pub mod dequant;
pub mod llama;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{format_err, io_err, EngineError, Result};

pub use dequant::GgmlType;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string` (UTF-8).
    String(String),
    /// `array` of one element type.
    Array(Vec<Value>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(u64::from(v)),
            Value::U16(v) => Some(u64::from(v)),
            Value::U32(v) => Some(u64::from(v)),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(f64::from(v)),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, when it is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` moves fastest (the row length of a matrix), so a
    /// HuggingFace `[out, in]` matrix is `[in, out]` here.
    pub dims: Vec<usize>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        // Dimensions come from the file: a product past usize is refused by the reader.
        self.dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// The shape in row-major (PyTorch) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file: metadata, tensor table and (unless read with
/// [`GgufFile::read_metadata`]) the tensor data.
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// The file (named in every error).
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// The data section (empty after `read_metadata`).
    data: Vec<u8>,
}

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: usize = 32;
/// Bounds on counts read from the file, so a corrupt header is an error, not an allocation of
/// terabytes.
const MAX_COUNT: u64 = 1 << 28;
const MAX_DIMS: u32 = 8;

/// Most elements a reader reserves room for ahead of reading them: a count from the file
/// decides how much is read, never how much is allocated before.
const RESERVE_AT_MOST: usize = 1024;

/// A byte reader that knows its position and names the file in errors.
struct Cursor<R: Read> {
    inner: R,
    pos: u64,
    /// The file's length: a count of things that each take at least a byte cannot exceed
    /// what is left of it.
    len: u64,
    path: PathBuf,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| {
            format_err(
                &self.path,
                format!(
                    "truncated GGUF file reading {what} at byte {}: {e}",
                    self.pos
                ),
            )
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn count(&mut self, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > MAX_COUNT {
            return Err(format_err(
                &self.path,
                format!("{what} is {n}: not a plausible GGUF file"),
            ));
        }
        Ok(n as usize)
    }

    /// A count of items that each take at least one byte of the file (bytes of a string,
    /// array items, metadata entries, tensor entries).
    fn count_items(&mut self, what: &str) -> Result<usize> {
        let n = self.count(what)?;
        let left = self.len.saturating_sub(self.pos);
        if n as u64 > left {
            return Err(format_err(
                &self.path,
                format!("truncated GGUF file, or a corrupt count: {what} is {n}, but only {left} bytes are left"),
            ));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count_items(what)?;
        let mut b = vec![0u8; n];
        self.inner.read_exact(&mut b).map_err(|e| {
            format_err(
                &self.path,
                format!("truncated GGUF file reading {what}: {e}"),
            )
        })?;
        self.pos += n as u64;
        String::from_utf8(b).map_err(|_| format_err(&self.path, format!("{what} is not UTF-8")))
    }

    fn value(&mut self, ty: u32, key: &str) -> Result<Value> {
        let what = || format!("metadata `{key}`");
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes(&what())?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes(&what())?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes(&what())?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(&what())?)),
            4 => Value::U32(u32::from_le_bytes(self.bytes(&what())?)),
            5 => Value::I32(i32::from_le_bytes(self.bytes(&what())?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(&what())?)),
            7 => Value::Bool(u8::from_le_bytes(self.bytes(&what())?) != 0),
            8 => Value::String(self.string(&what())?),
            9 => {
                let elem = self.u32(&what())?;
                if elem == 9 {
                    return Err(format_err(
                        &self.path,
                        format!("metadata `{key}`: nested arrays are not supported"),
                    ));
                }
                let n = self.count_items(&what())?;
                let mut items = Vec::with_capacity(n.min(RESERVE_AT_MOST));
                for _ in 0..n {
                    items.push(self.value(elem, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.bytes(&what())?)),
            11 => Value::I64(i64::from_le_bytes(self.bytes(&what())?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(&what())?)),
            other => {
                return Err(format_err(
                    &self.path,
                    format!("metadata `{key}` has unknown value type {other}"),
                ))
            }
        })
    }
}

impl GgufFile {
    /// Reads the whole file: metadata, tensor table and tensor data (one pass over the file).
    pub fn read(path: &Path) -> Result<Self> {
        Self::open(path, true)
    }

    /// Reads the metadata and the tensor table only (enough for the config and tokenizer); the
    /// tensors' offsets are not checked against the file, since their data is not read.
    pub fn read_metadata(path: &Path) -> Result<Self> {
        Self::open(path, false)
    }

    fn open(path: &Path, with_data: bool) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let mut c = Cursor {
            inner: BufReader::with_capacity(1 << 20, file),
            pos: 0,
            len: file_len,
            path: path.to_path_buf(),
        };
        let magic: [u8; 4] = c.bytes("the magic")?;
        if &magic != MAGIC {
            return Err(format_err(
                path,
                "not a GGUF file (no `GGUF` magic); a model is a HuggingFace directory \
                 (config.json, safetensors, tokenizer.json) or a .gguf file",
            ));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(format_err(
                path,
                format!("GGUF version {version} is not supported (2 and 3 are)"),
            ));
        }
        let n_tensors = c.count_items("the tensor count")?;
        let n_kv = c.count_items("the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let ty = c.u32(&format!("the type of metadata `{key}`"))?;
            let v = c.value(ty, &key)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(RESERVE_AT_MOST));
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&format!("tensor `{name}`'s dimension count"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(tensor_err(path, &name, format!("{n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.count(&format!("tensor `{name}`'s dimensions"))?);
            }
            if dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .is_none()
            {
                return Err(tensor_err(
                    path,
                    &name,
                    format!("dimensions {dims:?} overflow"),
                ));
            }
            let ty = c.u32(&format!("tensor `{name}`'s type"))?;
            let offset = c.u64(&format!("tensor `{name}`'s offset"))? as usize;
            tensors.push(TensorInfo {
                ggml_type: GgmlType::from_id(ty),
                name,
                dims,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_u64()
                .filter(|&a| a > 0 && a.is_power_of_two())
                .ok_or_else(|| {
                    format_err(path, "metadata `general.alignment` is not a power of two")
                })? as usize,
        };
        if !with_data {
            return Ok(Self {
                path: path.to_path_buf(),
                version,
                metadata,
                tensors,
                data: Vec::new(),
            });
        }
        let data_start = (c.pos as usize).div_ceil(alignment) * alignment;
        let data_len = (file_len as usize).checked_sub(data_start).ok_or_else(|| {
            format_err(
                path,
                "truncated GGUF file: no data section after the tensor table",
            )
        })?;
        for t in &tensors {
            let end = t
                .offset
                .checked_add(t.ggml_type.byte_len(t.dims[0], t.elements()));
            if !t.offset.is_multiple_of(alignment) || end.is_none_or(|e| e > data_len) {
                return Err(tensor_err(
                    path,
                    &t.name,
                    format!(
                        "offset {} is unaligned or past the end of the file ({data_len} data bytes)",
                        t.offset
                    ),
                ));
            }
        }
        let skip = data_start as u64 - c.pos;
        std::io::copy(&mut (&mut c.inner).take(skip), &mut std::io::sink())
            .map_err(io_err(path))?;
        let mut data = Vec::with_capacity(data_len);
        c.inner.read_to_end(&mut data).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data,
        })
    }

    /// Metadata value `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Tensor `name` dequantized to f32, row-major in [`TensorInfo::shape`] order.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        if self.data.is_empty() && info.elements() > 0 {
            return Err(EngineError::Invalid(format!(
                "{}: read with metadata only; tensor `{}` has no data",
                self.path.display(),
                info.name
            )));
        }
        let len = info.ggml_type.byte_len(info.dims[0], info.elements());
        let bytes = &self.data[info.offset..info.offset + len];
        dequant::dequantize(info.ggml_type, bytes, info.dims[0], info.elements())
            .map_err(|message| tensor_err(&self.path, &info.name, message))
    }
}

pub(crate) fn tensor_err(path: &Path, name: &str, message: impl Into<String>) -> EngineError {
    EngineError::Tensor {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        message: message.into(),
    }
}
