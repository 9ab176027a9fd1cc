//! Which policy a job gets. Precedence, among the policies whose match rule holds:
//! 1. the highest `priority`;
//! 2. then the most specific rule (one point for a tenant list, one for a model list, one per
//!    metadata pair);
//! 3. then the policy name, alphabetically first.
//!
//! The `default` policy is used only when no other policy matches.

use crate::schema::{MatchRule, Policy};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::BTreeMap;

/// The job a plan is resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobContext {
    pub tenant: String,
    /// Base model name as the client sent it, e.g. `Qwen/Qwen2.5-7B-Instruct`.
    pub model: String,
    pub metadata: BTreeMap<String, String>,
}

/// A match rule with its globs compiled.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    models: Option<GlobSet>,
}

impl Matcher {
    /// Globs were validated by the parser; an invalid one here would be a bug, reported as
    /// a glob that matches nothing.
    pub(crate) fn new(rule: &MatchRule) -> Matcher {
        if rule.models.is_empty() {
            return Matcher { models: None };
        }
        let mut b = GlobSetBuilder::new();
        for g in &rule.models {
            if let Ok(glob) = Glob::new(g) {
                b.add(glob);
            }
        }
        Matcher {
            models: Some(b.build().unwrap_or_else(|_| GlobSet::empty())),
        }
    }

    pub(crate) fn matches(&self, rule: &MatchRule, job: &JobContext) -> bool {
        let tenant_ok = rule.tenants.is_empty() || rule.tenants.contains(&job.tenant);
        let model_ok = self.models.as_ref().is_none_or(|g| g.is_match(&job.model));
        let meta_ok = rule
            .metadata
            .iter()
            .all(|(k, v)| job.metadata.get(k) == Some(v));
        tenant_ok && model_ok && meta_ok
    }
}

/// The specificity of a rule (rule 2 of the precedence).
pub fn specificity(rule: &MatchRule) -> usize {
    usize::from(!rule.tenants.is_empty())
        + usize::from(!rule.models.is_empty())
        + rule.metadata.len()
}

/// A policy whose rule holds for a job, with what precedence looked at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    pub name: String,
    pub priority: i64,
    pub specificity: usize,
}

/// Precedence order: the winner first (rules 1–3; the caller leaves `default` out).
pub(crate) fn rank<'p>(candidates: impl Iterator<Item = &'p Policy>) -> Vec<&'p Policy> {
    let mut v: Vec<&Policy> = candidates.collect();
    v.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(specificity(&b.match_rule).cmp(&specificity(&a.match_rule)))
            .then(a.name.cmp(&b.name))
    });
    v
}
