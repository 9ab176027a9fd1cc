//! Persona / steering vector files: one `[L+1, hidden]` tensor (row l for layer index l:
//! 0 = embedding output, l = output of block l), read as f32 from
//!
//! - a safetensors file (f32, bf16 or f16), as `tuneguard persona` writes it; or
//! - a PyTorch file (`.pt` / `.pth`, f32, bf16, f16 or f64): `torch.save` of the bare tensor, as
//!   persona_vectors' `generate_vec.py` writes it, or of a dict holding one tensor.
//!
//! The format is told by the file's first bytes (a zip archive or torch's pre-1.6 pickle magic
//! is PyTorch, a safetensors header is not), by the extension only when they tell neither (a
//! `.pt` / `.pth` file then gets the PyTorch error, any other the safetensors one).
//!
//! PyTorch files are parsed with burn-store's pickle reader and lazy zip data source (its
//! `PytorchReader` itself wants a dict at the root, so it refuses persona_vectors' bare tensor).
//! What burn-store does not check is checked here: the storage must hold exactly the tensor's
//! elements (a slice view, whose whole storage torch saves, is refused instead of read from the
//! wrong offset; burn-store would also fill a short storage with zeros), every entry read must
//! pass the zip's CRC, and the file must be little-endian. Not read: torch's legacy (pre-1.6,
//! non-zip) format, where nothing allows those checks, and a permuted view (`v.T` saved without
//! `.contiguous()`), whose strides burn-store drops: it would read in storage order.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use burn::tensor::DType;
use burn_store::pytorch::lazy_data::LazyDataSource;
use burn_store::pytorch::pickle_reader::{read_pickle_with_data, Object};
use burn_store::TensorSnapshot;

use crate::config::Qwen2Config;
use crate::error::{format_err, io_err, EngineError, Result};
use crate::weights::read_safetensors;

/// The name errors give the tensor of a PyTorch file that holds one bare tensor (no dict key).
pub const TOP_LEVEL_TENSOR: &str = "<top-level tensor>";

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// torch's legacy (pre-1.6) format: a pickled LONG1 magic number after PROTO 2.
const LEGACY_TORCH_MAGIC: &[u8] = b"\x80\x02\x8a\x0a";

/// One tensor read from a vector file, as f32.
struct Vectors {
    name: String,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Reads the vectors of `path`, checked against `model` (naming the tensor on a bad shape).
pub fn load_vectors(path: &Path, model: &Qwen2Config) -> Result<Vec<f32>> {
    let v = if is_pytorch_file(path)? {
        read_pytorch_vectors(path)?
    } else {
        read_safetensors_vectors(path)?
    };
    let want = [model.num_layers + 1, model.hidden_size];
    if v.shape != want {
        return Err(EngineError::Tensor {
            path: path.to_path_buf(),
            tensor: v.name,
            message: format!(
                "shape {:?}, expected {want:?} (layers 0..={} × hidden {})",
                v.shape, model.num_layers, model.hidden_size
            ),
        });
    }
    if v.data.iter().any(|x| !x.is_finite()) {
        return Err(EngineError::Tensor {
            path: path.to_path_buf(),
            tensor: v.name,
            message: "holds a non-finite value".into(),
        });
    }
    Ok(v.data)
}

/// By content: a zip archive or torch's legacy magic is PyTorch, a safetensors header (u64
/// length, then `{`) is not; else by extension: `.pt` / `.pth` is PyTorch.
fn is_pytorch_file(path: &Path) -> Result<bool> {
    let head = first_bytes(path, 9)?;
    if head.starts_with(ZIP_MAGIC) || head.starts_with(LEGACY_TORCH_MAGIC) {
        return Ok(true);
    }
    if head.get(8) == Some(&b'{') {
        return Ok(false);
    }
    Ok(path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("pt") || e.eq_ignore_ascii_case("pth")))
}

/// The first `n` bytes of `path` (fewer in a shorter file).
fn first_bytes(path: &Path, n: u64) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(n).read_to_end(&mut head))
        .map_err(io_err(path))?;
    Ok(head)
}

/// The one tensor of `tensors`, or an error listing their names.
fn exactly_one<T>(path: &Path, mut tensors: Vec<(String, T)>) -> Result<(String, T)> {
    if tensors.len() != 1 {
        let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        return Err(format_err(
            path,
            format!(
                "expected exactly one `[layers+1, hidden]` tensor, found {}: {names:?}",
                names.len()
            ),
        ));
    }
    tensors
        .pop()
        .ok_or_else(|| format_err(path, "holds no tensor"))
}

fn read_safetensors_vectors(path: &Path) -> Result<Vectors> {
    let tensors = read_safetensors(path)?.into_iter().collect();
    let (name, t) = exactly_one(path, tensors)?;
    Ok(Vectors {
        name,
        shape: t.shape,
        data: t.data,
    })
}

fn not_pytorch(path: &Path, why: impl std::fmt::Display) -> EngineError {
    format_err(path, format!("not a readable PyTorch file: {why}"))
}

/// Reads a PyTorch vector file; a panic inside the third-party reader on a hostile file is
/// turned into an error too.
fn read_pytorch_vectors(path: &Path) -> Result<Vectors> {
    std::panic::catch_unwind(|| read_pytorch_unguarded(path)).unwrap_or_else(|_| {
        Err(not_pytorch(
            path,
            "the PyTorch reader failed on it (a damaged or hand-made file?)",
        ))
    })
}

fn read_pytorch_unguarded(path: &Path) -> Result<Vectors> {
    let head = first_bytes(path, 4)?;
    if !head.starts_with(ZIP_MAGIC) {
        return Err(not_pytorch(
            path,
            if head.starts_with(LEGACY_TORCH_MAGIC) {
                "torch's legacy (pre-1.6) format is not read: nothing in it checks a storage's \
                 size or bytes (burn-store would fill a short one with zeros); save it again \
                 with torch.save, whose default since torch 1.6 is the zip format"
            } else {
                "not a zip archive, which torch.save writes"
            },
        ));
    }
    let TorchZip { tensors, storages } = read_torch_zip(path)?;
    let (name, snapshot) = exactly_one(path, tensors)?;
    let tensor_err = |message: String| EngineError::Tensor {
        path: path.to_path_buf(),
        tensor: name.clone(),
        message,
    };
    let shape = snapshot.shape.to_vec();
    let dtype = snapshot.dtype;
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16 | DType::F64) {
        return Err(tensor_err(format!(
            "unsupported dtype {dtype:?} (expected f32, bf16, f16 or f64)"
        )));
    }
    let bytes = shape
        .iter()
        .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| tensor_err(format!("shape {shape:?} is too large")))?;
    // One tensor: its storage is the archive's only one, holding exactly its elements (a
    // larger one means an offset or strides this reader does not see).
    if storages.is_empty() {
        return Err(tensor_err("its storage is not in the archive".into()));
    }
    if storages != [bytes as u64] {
        return Err(tensor_err(format!(
            "shape {shape:?} of {dtype:?} needs one storage of {bytes} bytes, the file has \
             {storages:?} (a view into a larger tensor? save `v.contiguous().clone()`)"
        )));
    }
    let data = snapshot
        .to_data()
        .map_err(|e| tensor_err(format!("cannot read its data: {e:?}")))?;
    let data: Vec<f32> = match dtype {
        DType::F32 => data.into_vec::<f32>(),
        DType::BF16 => data
            .into_vec::<half::bf16>()
            .map(|v| v.into_iter().map(f32::from).collect()),
        DType::F16 => data
            .into_vec::<half::f16>()
            .map(|v| v.into_iter().map(f32::from).collect()),
        // Rounds to nearest, as torch's `.float()` does.
        _ => data
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
    }
    .map_err(|e| tensor_err(format!("cannot read its data: {e:?}")))?;
    if data.len() != bytes / dtype.size() {
        return Err(tensor_err(format!(
            "read {} values for shape {shape:?}",
            data.len()
        )));
    }
    Ok(Vectors { name, shape, data })
}

struct TorchZip {
    /// The tensors, named by their dict keys (or [`TOP_LEVEL_TENSOR`]).
    tensors: Vec<(String, TensorSnapshot)>,
    /// The byte size of each storage entry (`<prefix>/data/<key>`), read and CRC-checked.
    storages: Vec<u64>,
}

/// torch's zip format (1.6+): `<prefix>/data.pkl` (the pickled object, tensors referring to
/// storages by key), `<prefix>/data/<key>` (raw little-endian storages), `<prefix>/byteorder`.
fn read_torch_zip(path: &Path) -> Result<TorchZip> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| not_pytorch(path, format!("bad zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let pkl = names
        .iter()
        .find(|n| n.as_str() == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| not_pytorch(path, "the zip archive has no `data.pkl`"))?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let mut read_entry = |name: &str| -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        zip.by_name(name)
            .map_err(|e| not_pytorch(path, format!("`{name}`: {e}")))?
            .read_to_end(&mut bytes)
            .map_err(|e| not_pytorch(path, format!("`{name}`: {e}")))?;
        Ok(bytes)
    };
    let pickle = read_entry(pkl)?;
    let byteorder = format!("{prefix}byteorder");
    if names.contains(&byteorder) && read_entry(&byteorder)?.trim_ascii() == b"big" {
        return Err(not_pytorch(path, "saved on a big-endian machine"));
    }
    let data_dir = format!("{prefix}data/");
    let mut storages = Vec::new();
    for name in &names {
        let Some(key) = name.strip_prefix(&data_dir) else {
            continue;
        };
        if key.is_empty() || key.contains('/') {
            continue;
        }
        // Read whole: the zip checksum is verified at the end (burn-store's lazy reader
        // would give zeros for a storage that fails it).
        storages.push(read_entry(name)?.len() as u64);
    }
    let source = LazyDataSource::from_zip(path).map_err(|e| not_pytorch(path, e))?;
    let root = read_pickle_with_data(&mut pickle.as_slice(), Arc::new(source))
        .map_err(|e| not_pytorch(path, format!("`{pkl}`: {e}")))?;
    let mut tensors = Vec::new();
    match root {
        Object::TorchParam(t) => tensors.push((TOP_LEVEL_TENSOR.to_owned(), t)),
        Object::Dict(_) => collect_tensors(&root, &mut Vec::new(), &mut tensors),
        _ => {
            return Err(not_pytorch(
                path,
                "it holds neither a tensor nor a dict of tensors",
            ))
        }
    }
    Ok(TorchZip { tensors, storages })
}

/// The tensors of nested dicts, named by their keys joined with `.` (as burn-store names them).
fn collect_tensors<'a>(
    obj: &'a Object,
    keys: &mut Vec<&'a str>,
    out: &mut Vec<(String, TensorSnapshot)>,
) {
    match obj {
        Object::Dict(dict) => {
            for (key, value) in dict {
                keys.push(key);
                collect_tensors(value, keys, out);
                keys.pop();
            }
        }
        Object::TorchParam(t) => out.push((keys.join("."), t.clone())),
        _ => {}
    }
}
