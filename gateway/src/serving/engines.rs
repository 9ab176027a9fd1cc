//! Loaded engines (one per base model path, loaded on first use) and their resident adapters,
//! evicted least-recently-used when their bytes pass the budget.

use crate::config::ModelEntry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use trainer::{CpuBackend, Engine};

/// Resident adapter bytes per engine before the least recently used ones are dropped.
pub const ADAPTER_BUDGET_BYTES: usize = 512 * 1024 * 1024;

/// One base model and its resident adapters (name = the adapter directory), most recent last.
pub struct Loaded {
    pub engine: Engine<CpuBackend>,
    resident: Vec<(String, usize)>,
}

impl Loaded {
    /// Makes the adapter in `dir` resident (loading it on first use) and returns its name.
    pub fn adapter(&mut self, dir: &Path) -> trainer::Result<String> {
        let name = dir.display().to_string();
        if let Some(i) = self.resident.iter().position(|(n, _)| *n == name) {
            let entry = self.resident.remove(i);
            self.resident.push(entry);
            return Ok(name);
        }
        self.engine.load_adapter(&name, dir)?;
        let bytes = std::fs::metadata(dir.join("adapter_model.safetensors"))
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        self.resident.push((name.clone(), bytes));
        while self.resident.len() > 1
            && self.resident.iter().map(|r| r.1).sum::<usize>() > ADAPTER_BUDGET_BYTES
        {
            let (old, _) = self.resident.remove(0);
            self.engine.remove_adapter(&old);
        }
        Ok(name)
    }
}

/// Engines by model path.
#[derive(Default)]
pub struct Serving {
    engines: Mutex<HashMap<PathBuf, Arc<Mutex<Loaded>>>>,
}

impl Serving {
    /// The engine of `entry` (loaded on first use; blocking).
    pub fn engine(&self, entry: &ModelEntry) -> trainer::Result<Arc<Mutex<Loaded>>> {
        let mut map = self
            .engines
            .lock()
            .map_err(|_| trainer::EngineError::Invalid("engine cache poisoned".into()))?;
        if let Some(e) = map.get(&entry.path) {
            return Ok(Arc::clone(e));
        }
        let engine =
            Engine::<CpuBackend>::load_with(&entry.path, Default::default(), entry.precision)?;
        let loaded = Arc::new(Mutex::new(Loaded {
            engine,
            resident: Vec::new(),
        }));
        map.insert(entry.path.clone(), Arc::clone(&loaded));
        Ok(loaded)
    }
}
