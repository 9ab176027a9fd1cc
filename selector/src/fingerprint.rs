//! Content fingerprints of model and adapter directories (feature `cli`), the cache's keys.
//!
//! A fingerprint is the SHA-256 (hex) over, for each file in a fixed list, its name, its byte
//! length and its bytes. Paths and timestamps do not enter it: a copied model directory keeps
//! its scores; any changed weight, config or tokenizer byte drops them.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("{path}: {message}")]
pub struct FingerprintError {
    pub path: PathBuf,
    pub message: String,
}

fn hash_file(h: &mut Sha256, path: &Path) -> Result<(), FingerprintError> {
    let err = |e: std::io::Error| FingerprintError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut f = File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    h.update((name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(len.to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

fn fingerprint(files: &[PathBuf]) -> Result<String, FingerprintError> {
    let mut h = Sha256::new();
    for f in files {
        hash_file(&mut h, f)?;
    }
    Ok(hex::encode(h.finalize()))
}

/// Base-model fingerprint: `config.json`, `tokenizer.json`, `tokenizer_config.json` and
/// `chat_template.jinja` (each when present: the template shapes every encoded example, so
/// a new one must not be served stale NLLs) and every `*.safetensors` file, by name. A GGUF
/// model is one file holding all of these: its fingerprint is that file's.
pub fn model_fingerprint(dir: &Path) -> Result<String, FingerprintError> {
    if dir.is_file() {
        return fingerprint(&[dir.to_path_buf()]);
    }
    let err = |path: &Path, message: String| FingerprintError {
        path: path.to_path_buf(),
        message,
    };
    let mut files = vec![dir.join("config.json")];
    if !files[0].is_file() {
        return Err(err(
            &files[0],
            "not found (is this a HuggingFace model directory?)".into(),
        ));
    }
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            files.push(p);
        }
    }
    let mut weights: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    if weights.is_empty() {
        return Err(err(dir, "no *.safetensors weight files".into()));
    }
    weights.sort();
    files.extend(weights);
    fingerprint(&files)
}

/// Adapter fingerprint: `adapter_config.json` and `adapter_model.safetensors`.
pub fn adapter_fingerprint(dir: &Path) -> Result<String, FingerprintError> {
    fingerprint(&[
        dir.join("adapter_config.json"),
        dir.join("adapter_model.safetensors"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn model_fingerprint_follows_content_not_location() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::write(d.join("config.json"), "{}").unwrap();
            fs::write(d.join("model.safetensors"), b"weights").unwrap();
        }
        let fa = model_fingerprint(a.path()).unwrap();
        assert_eq!(fa, model_fingerprint(b.path()).unwrap());
        assert_eq!(fa.len(), 64);
        fs::write(b.path().join("model.safetensors"), b"weightz").unwrap();
        assert_ne!(fa, model_fingerprint(b.path()).unwrap());
        fs::write(a.path().join("tokenizer.json"), "{}").unwrap();
        let with_tokenizer = model_fingerprint(a.path()).unwrap();
        assert_ne!(fa, with_tokenizer);
        fs::write(a.path().join("chat_template.jinja"), "{{ messages }}").unwrap();
        let with_template = model_fingerprint(a.path()).unwrap();
        assert_ne!(with_tokenizer, with_template);
        fs::write(a.path().join("chat_template.jinja"), "{{ messages }}\n").unwrap();
        assert_ne!(with_template, model_fingerprint(a.path()).unwrap());
    }

    #[test]
    fn missing_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let err = model_fingerprint(d.path()).unwrap_err();
        assert!(err
            .to_string()
            .ends_with("config.json: not found (is this a HuggingFace model directory?)"));
        fs::write(d.path().join("config.json"), "{}").unwrap();
        assert!(model_fingerprint(d.path())
            .unwrap_err()
            .to_string()
            .contains("no *.safetensors"));
        let err = adapter_fingerprint(d.path()).unwrap_err();
        assert!(err.path.ends_with("adapter_config.json"));
    }
}
