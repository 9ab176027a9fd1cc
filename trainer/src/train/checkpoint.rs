//! Checkpoints on disk: `checkpoints/step-N/` holds the adapter in PEFT format
//! (`adapter_config.json`, `adapter_model.safetensors`), the Adam moments
//! (`optimizer.safetensors`) and `state.json` (step, data order and cursor, seed, the resolved
//! run config, metrics).
//!
//! Written atomically: everything goes into a hidden temp directory beside the others, each
//! file and the directory are fsynced, the directory is renamed to `step-N`, and the parent is
//! fsynced. A crash at any point leaves either the complete checkpoint or none; temp
//! directories are never listed and are removed by the next write.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{format_err, io_err, read_json, EngineError, Result};
use crate::train::config::TrainConfig;
use crate::train::optim::AdamState;
use crate::train::params::HostAdapter;
use crate::weights::{read_safetensors, write_safetensors};

/// Format version of `state.json`.
pub const STATE_VERSION: u32 = 1;

/// Metrics a checkpoint carries (means over the steps since the previous checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CheckpointMetrics {
    /// Optimizer steps done.
    pub step: usize,
    /// Mean step loss (CE + regularizer).
    pub train_loss: f64,
    /// Fraction of answer tokens predicted by arg-max.
    pub train_mean_token_accuracy: f64,
    /// Mean CE term.
    pub ce: f64,
    /// Mean KL term (λ included).
    pub kl: f64,
    /// Mean LDIFS term (λ included).
    pub ldifs: f64,
    /// Answer-token mean NLL over the whole validation file.
    pub valid_loss: Option<f64>,
    /// Fraction of validation answer tokens predicted by arg-max.
    pub valid_mean_token_accuracy: Option<f64>,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Format version.
    pub version: u32,
    /// Optimizer steps done.
    pub step: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// Epoch the next step belongs to.
    pub epoch: usize,
    /// Examples of that epoch already consumed.
    pub cursor: usize,
    /// That epoch's example order.
    pub order: Vec<usize>,
    /// Run seed.
    pub seed: u64,
    /// Adam's step count.
    pub adam_step: u64,
    /// Training examples and their total token count (a changed file is refused on resume).
    pub examples: usize,
    /// Σ tokens over the training examples.
    pub example_tokens: usize,
    /// The resolved run config.
    pub config: TrainConfig,
    /// Base model directory or name (recorded in the PEFT config).
    pub base_model: String,
    /// Metrics at this checkpoint.
    pub metrics: CheckpointMetrics,
}

/// A checkpoint read back.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// `state.json`.
    pub state: CheckpointState,
    /// The adapter.
    pub adapter: HostAdapter,
    /// Adam moments and step.
    pub adam: AdamState,
}

/// `root/step-N`.
pub fn step_dir(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step}"))
}

/// Steps of the complete checkpoints under `root`, ascending (temp directories are ignored).
pub fn list(root: &Path) -> Result<Vec<usize>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut steps = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(root))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("step-")) {
            if let Ok(step) = n.parse::<usize>() {
                if entry.path().join("state.json").is_file() {
                    steps.push(step);
                }
            }
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

fn fsync_path(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Writes `files` (already written into `tmp` by the caller's closure) durably and renames
/// `tmp` to `dest`, replacing an older `dest`.
pub(crate) fn commit_dir(tmp: &Path, dest: &Path) -> Result<()> {
    for entry in std::fs::read_dir(tmp).map_err(io_err(tmp))? {
        let entry = entry.map_err(io_err(tmp))?;
        fsync_path(&entry.path())?;
    }
    fsync_path(tmp)?;
    if dest.exists() {
        // Same step written again after a resume: the old copy goes first (rename cannot
        // replace a non-empty directory); the new one is already durable beside it.
        std::fs::remove_dir_all(dest).map_err(io_err(dest))?;
    }
    std::fs::rename(tmp, dest).map_err(io_err(dest))?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    fsync_path(parent)
}

/// A fresh hidden temp directory under `root` for `name` (an old one of a crashed write is
/// removed first).
pub(crate) fn temp_dir(root: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    Ok(tmp)
}

fn moments_map(
    adapter: &HostAdapter,
    adam: &AdamState,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = BTreeMap::new();
    for (i, k) in adapter.keys.iter().enumerate() {
        let shape = adapter.shapes[i].to_vec();
        out.insert(
            format!("exp_avg.{}", k.name()),
            (shape.clone(), adam.m[i].clone()),
        );
        out.insert(
            format!("exp_avg_sq.{}", k.name()),
            (shape, adam.v[i].clone()),
        );
    }
    out
}

/// Writes checkpoint `state.step` under `root` atomically; `save_adapter` writes the PEFT files
/// into the directory it is given.
pub fn write(
    root: &Path,
    state: &CheckpointState,
    adapter: &HostAdapter,
    adam: &AdamState,
    save_adapter: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let name = format!("step-{}", state.step);
    let tmp = temp_dir(root, &name)?;
    save_adapter(&tmp)?;
    write_safetensors(
        &tmp.join("optimizer.safetensors"),
        &moments_map(adapter, adam),
    )?;
    let state_path = tmp.join("state.json");
    let text =
        serde_json::to_string_pretty(state).map_err(|e| format_err(&state_path, e.to_string()))?;
    std::fs::write(&state_path, text).map_err(io_err(&state_path))?;
    let dest = step_dir(root, state.step);
    commit_dir(&tmp, &dest)?;
    Ok(dest)
}

/// Reads the checkpoint in `dir`; `load_adapter` reads its PEFT files.
pub fn read(
    dir: &Path,
    load_adapter: impl FnOnce(&Path) -> Result<HostAdapter>,
) -> Result<Checkpoint> {
    let state: CheckpointState = read_json(&dir.join("state.json"))?;
    if state.version != STATE_VERSION {
        return Err(format_err(
            dir.join("state.json"),
            format!("`version` {} is not {STATE_VERSION}", state.version),
        ));
    }
    let adapter = load_adapter(dir)?;
    let opt_path = dir.join("optimizer.safetensors");
    let mut tensors = read_safetensors(&opt_path)?;
    let mut adam = AdamState {
        t: state.adam_step,
        m: Vec::new(),
        v: Vec::new(),
    };
    for (i, k) in adapter.keys.iter().enumerate() {
        for (prefix, dst) in [("exp_avg", &mut adam.m), ("exp_avg_sq", &mut adam.v)] {
            let key = format!("{prefix}.{}", k.name());
            let t = tensors.remove(&key).ok_or_else(|| EngineError::Tensor {
                path: opt_path.clone(),
                tensor: key.clone(),
                message: "missing".into(),
            })?;
            if t.shape != adapter.shapes[i] {
                return Err(EngineError::Tensor {
                    path: opt_path.clone(),
                    tensor: key,
                    message: format!("shape {:?}, expected {:?}", t.shape, adapter.shapes[i]),
                });
            }
            dst.push(t.data);
        }
    }
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        adapter,
        adam,
    })
}
