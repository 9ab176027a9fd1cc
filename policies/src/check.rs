//! Offline validation of a policy directory (`tuneguard policy check DIR`): every file is
//! checked and every error reported, not only the first.

use crate::error::PolicyError;
use crate::parse::DEFAULT_POLICY;
use crate::schema::{Interleave, Regularizer};
use crate::set::{parse_file, read_dir_files, PolicySet};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a valid directory holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub dir: PathBuf,
    pub version: String,
    /// Policy names, sorted.
    pub policies: Vec<String>,
    /// Things that load but look wrong (no default policy, a pool file that is missing).
    pub warnings: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.policies.len();
        writeln!(
            f,
            "{}: {n} {} OK ({}), version {}",
            self.dir.display(),
            if n == 1 { "policy" } else { "policies" },
            self.policies.join(", "),
            self.version
        )?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Validates every `*.toml` file of `dir`; on failure returns all errors, one per bad file.
pub fn check_dir(dir: &Path) -> Result<CheckReport, Vec<PolicyError>> {
    let files = read_dir_files(dir).map_err(|e| vec![e])?;
    let errors: Vec<PolicyError> = files
        .iter()
        .filter_map(|(name, text)| parse_file(dir, name, text).err())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let set = PolicySet::load_dir(dir).map_err(|e| vec![e])?;
    Ok(CheckReport {
        dir: dir.to_path_buf(),
        version: set.version().to_string(),
        policies: set.policies().iter().map(|p| p.name.clone()).collect(),
        warnings: warnings(&set),
    })
}

/// Warnings about a loaded set: a missing `default` policy, pool or steering-vector files
/// that do not exist (jobs resolved to them would fail).
pub fn warnings(set: &PolicySet) -> Vec<String> {
    let mut out = Vec::new();
    if set.get(DEFAULT_POLICY).is_none() {
        out.push(format!(
            "no `{DEFAULT_POLICY}` policy: jobs that match no policy are refused"
        ));
    }
    for p in set.policies() {
        let file = set.base_dir().join(format!("{}.toml", p.name));
        let mut paths: Vec<(&str, &Path)> = Vec::new();
        match &p.interleave {
            Interleave::None => {}
            Interleave::Random { mix }
            | Interleave::OnPolicy { mix, .. }
            | Interleave::Plus { mix, .. }
            | Interleave::Plusplus { mix, .. } => paths.push(("interleave.pool", &mix.pool)),
        }
        if let Regularizer::Steering { vector, .. } = &p.regularizer {
            paths.push(("regularizer.vector", vector));
        }
        for (key, path) in paths {
            let full = set.base_dir().join(path);
            if !full.is_file() {
                out.push(format!(
                    "{}: key \"{key}\": file {} does not exist",
                    file.display(),
                    full.display()
                ));
            }
        }
    }
    out
}
