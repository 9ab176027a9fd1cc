//! A validated set of policies: loaded from a directory (one `<name>.toml` per policy) or
//! from the embedded default, versioned by a hash of its canonical form, resolved per job.

use crate::error::PolicyError;
use crate::matching::{rank, specificity, Candidate, JobContext, Matcher};
use crate::parse::{parse_policy, DEFAULT_POLICY};
use crate::plan::Plan;
use crate::schema::{Interleave, Mix, Monitor, Policy, Regularizer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The shipped `conf/policies/default.toml`, used when the gateway has no policy directory.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/policies/default.toml");

#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Sorted by name.
    policies: Vec<Policy>,
    matchers: Vec<Matcher>,
    base_dir: PathBuf,
    version: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The `*.toml` files of `dir`, sorted by file name, as (file name, text): what
/// [`PolicySet::load_dir`] reads (hidden files and other extensions are skipped).
pub fn read_dir_files(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
    let io = |path: &Path, e: std::io::Error| PolicyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if name.ends_with(".toml") && !name.starts_with('.') {
            names.push(name.to_string());
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(PolicyError::Io {
            path: dir.to_path_buf(),
            message: "no *.toml policy files in this directory".into(),
        });
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        out.push((name, text));
    }
    Ok(out)
}

/// Parses one file named `file_name` (e.g. `strict.toml`) of the set at `base_dir`.
pub(crate) fn parse_file(
    base_dir: &Path,
    file_name: &str,
    text: &str,
) -> Result<Policy, PolicyError> {
    let label = base_dir.join(file_name).display().to_string();
    let name = file_name.strip_suffix(".toml").unwrap_or("");
    if !valid_name(name) {
        return Err(PolicyError::BadName { file: label });
    }
    parse_policy(&label, name, text)
}

impl PolicySet {
    /// Loads and validates every `*.toml` file of `dir`; the first error wins.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        let files = read_dir_files(dir)?;
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        PolicySet::from_texts(dir, &refs)
    }

    /// Builds a set from (file name, text) pairs, as if they were the files of `base_dir`.
    /// Error messages name `base_dir/<file name>`.
    pub fn from_texts(base_dir: &Path, files: &[(&str, &str)]) -> Result<PolicySet, PolicyError> {
        let mut policies = files
            .iter()
            .map(|(name, text)| parse_file(base_dir, name, text))
            .collect::<Result<Vec<_>, _>>()?;
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PolicySet::from_policies(base_dir, policies))
    }

    /// The embedded default set (one `default` policy: Table 6 training, no data defenses).
    pub fn embedded() -> PolicySet {
        match PolicySet::from_texts(Path::new("."), &[("default.toml", EMBEDDED_DEFAULT)]) {
            Ok(set) => set,
            // The embedded file is tested to parse; fall back to the built-in defaults anyway.
            Err(_) => PolicySet::from_policies(Path::new("."), vec![Policy::builtin_default()]),
        }
    }

    fn from_policies(base_dir: &Path, policies: Vec<Policy>) -> PolicySet {
        let canonical = serde_json::to_vec(&policies).unwrap_or_default();
        let version = hex::encode(Sha256::digest(&canonical));
        let matchers = policies
            .iter()
            .map(|p| Matcher::new(&p.match_rule))
            .collect();
        PolicySet {
            policies,
            matchers,
            base_dir: base_dir.to_path_buf(),
            version,
        }
    }

    /// sha256 (hex) of the set's canonical JSON: the validated policies sorted by name, so
    /// comments and formatting do not change it, but any effective setting does.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The policies, sorted by name.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The directory relative paths (pools, steering vectors) are resolved against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The whole set as JSON, for audit snapshots and the admin endpoint.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "base_dir": self.base_dir,
            "policies": self.policies,
        })
    }

    /// The policy for `job` (precedence in the crate docs), as a plan.
    pub fn resolve(&self, job: &JobContext) -> Result<Plan, PolicyError> {
        let ranked = self.ranked(job);
        let policy = ranked
            .first()
            .copied()
            .or_else(|| self.get(DEFAULT_POLICY))
            .ok_or_else(|| PolicyError::NoMatch {
                tenant: job.tenant.clone(),
                model: job.model.clone(),
            })?;
        Ok(self.plan_for(policy))
    }

    /// Every policy whose rule holds for `job`, in precedence order (the winner first), with
    /// `default` last when present: why [`PolicySet::resolve`] chose what it chose.
    pub fn candidates(&self, job: &JobContext) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .ranked(job)
            .into_iter()
            .map(|p| Candidate {
                name: p.name.clone(),
                priority: p.priority,
                specificity: specificity(&p.match_rule),
            })
            .collect();
        if let Some(d) = self.get(DEFAULT_POLICY) {
            out.push(Candidate {
                name: d.name.clone(),
                priority: d.priority,
                specificity: 0,
            });
        }
        out
    }

    fn ranked(&self, job: &JobContext) -> Vec<&Policy> {
        rank(
            self.policies
                .iter()
                .zip(&self.matchers)
                .filter(|(p, m)| p.name != DEFAULT_POLICY && m.matches(&p.match_rule, job))
                .map(|(p, _)| p),
        )
    }

    fn plan_for(&self, p: &Policy) -> Plan {
        Plan {
            policy: p.name.clone(),
            version: self.version.clone(),
            interleave: self.resolve_interleave(&p.interleave),
            regularizer: match &p.regularizer {
                Regularizer::Steering {
                    alpha,
                    layers,
                    vector,
                } => Regularizer::Steering {
                    alpha: *alpha,
                    layers: layers.clone(),
                    vector: self.base_dir.join(vector),
                },
                other => other.clone(),
            },
            inoculation: p.inoculation.clone(),
            training: p.training.clone(),
            monitor: self.resolve_monitor(&p.monitor),
            upstream: p.upstream.clone(),
        }
    }

    /// The monitor with its set and probe paths resolved against the policy directory
    /// (`None` stays: the shipped set).
    fn resolve_monitor(&self, m: &Monitor) -> Monitor {
        let fix = |p: &Option<PathBuf>| p.as_ref().map(|p| self.base_dir.join(p));
        Monitor {
            general_set: fix(&m.general_set),
            hallucination_set: fix(&m.hallucination_set),
            harmful_set: fix(&m.harmful_set),
            alignment_probes: fix(&m.alignment_probes),
            honesty_probes: fix(&m.honesty_probes),
            ..m.clone()
        }
    }

    fn resolve_interleave(&self, i: &Interleave) -> Interleave {
        let fix = |m: &Mix| Mix {
            pool: self.base_dir.join(&m.pool),
            ..m.clone()
        };
        match i {
            Interleave::None => Interleave::None,
            Interleave::Random { mix } => Interleave::Random { mix: fix(mix) },
            Interleave::OnPolicy { mix, quality } => Interleave::OnPolicy {
                mix: fix(mix),
                quality: quality.clone(),
            },
            Interleave::Plus { mix, gap_epsilon } => Interleave::Plus {
                mix: fix(mix),
                gap_epsilon: *gap_epsilon,
            },
            Interleave::Plusplus {
                mix,
                gap_epsilon,
                refusal_keywords,
                refusal_window_words,
            } => Interleave::Plusplus {
                mix: fix(mix),
                gap_epsilon: *gap_epsilon,
                refusal_keywords: refusal_keywords.clone(),
                refusal_window_words: *refusal_window_words,
            },
        }
    }
}

/// Loads and validates one policy file on its own (for `tuneguard train --policy FILE`). Its
/// relative paths (`pool`, `vector`) are relative to the file's folder, as in a set.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    parse_file(dir, file_name, &text)
}
