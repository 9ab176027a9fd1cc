//! Which pool items go into a job: the Interleaving variants of seed 004 §3.2.

use crate::rng::permutation;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use thiserror::Error;

/// The selection method, as named in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Interleaving: a seeded random sample of the pool.
    Random,
    /// Interleaving+: the top N by gap score.
    Plus,
    /// Interleaving++: the top N by gap score among non-refusals.
    #[serde(rename = "plusplus")]
    PlusPlus,
    /// On-policy: a seeded random order of the pool's prompts, answered by the base model and
    /// quality-filtered by the engine driver; [`select`] returns the first N of that order.
    OnPolicy,
}

impl Method {
    /// The policy name (`random`, `plus`, `plusplus`, `on_policy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Random => "random",
            Method::Plus => "plus",
            Method::PlusPlus => "plusplus",
            Method::OnPolicy => "on_policy",
        }
    }

    /// Whether the method needs gap scores.
    pub fn needs_scores(self) -> bool {
        matches!(self, Method::Plus | Method::PlusPlus)
    }
}

/// What selection knows about one pool item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// 0-based pool index.
    pub index: usize,
    /// Gap score `s_d`, when the pool was scored.
    pub score: Option<f64>,
    /// The refusal filter's verdict on the reply.
    pub is_refusal: bool,
}

/// One selected pool item, in selection order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    pub pool_index: usize,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum SelectError {
    #[error("method `{method}` needs {needed} pool items but only {available} are eligible")]
    PoolTooSmall {
        method: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("method `{method}` needs gap scores but pool item {index} has none")]
    MissingScore { method: &'static str, index: usize },
    #[error("pool item {index} has a non-finite gap score {score}")]
    BadScore { index: usize, score: f64 },
}

/// Descending by score, ties broken by ascending pool index.
fn rank(a: &(usize, f64), b: &(usize, f64)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Selects `n` pool items with `method`. Random methods use `seed`; ranked ones are fully
/// deterministic. Picks come in selection order (sample order, or best first).
pub fn select(
    method: Method,
    candidates: &[Candidate],
    n: usize,
    seed: u64,
) -> Result<Vec<Pick>, SelectError> {
    let too_small = |available| SelectError::PoolTooSmall {
        method: method.as_str(),
        needed: n,
        available,
    };
    if !method.needs_scores() {
        if candidates.len() < n {
            return Err(too_small(candidates.len()));
        }
        return Ok(permutation(candidates.len(), seed)
            .into_iter()
            .take(n)
            .map(|i| Pick {
                pool_index: candidates[i].index,
                score: candidates[i].score,
            })
            .collect());
    }
    let mut ranked = Vec::with_capacity(candidates.len());
    for c in candidates {
        let score = c.score.ok_or(SelectError::MissingScore {
            method: method.as_str(),
            index: c.index,
        })?;
        if !score.is_finite() {
            return Err(SelectError::BadScore {
                index: c.index,
                score,
            });
        }
        if method == Method::PlusPlus && c.is_refusal {
            continue;
        }
        ranked.push((c.index, score));
    }
    if ranked.len() < n {
        return Err(too_small(ranked.len()));
    }
    ranked.sort_by(rank);
    Ok(ranked
        .into_iter()
        .take(n)
        .map(|(pool_index, score)| Pick {
            pool_index,
            score: Some(score),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(scores: &[(f64, bool)]) -> Vec<Candidate> {
        scores
            .iter()
            .enumerate()
            .map(|(index, &(s, is_refusal))| Candidate {
                index,
                score: Some(s),
                is_refusal,
            })
            .collect()
    }

    fn indexes(p: &[Pick]) -> Vec<usize> {
        p.iter().map(|p| p.pool_index).collect()
    }

    #[test]
    fn plus_ranks_by_score_then_index() {
        let c = cands(&[
            (0.1, false),
            (0.9, true),
            (0.5, false),
            (0.9, false),
            (-1.0, false),
        ]);
        let p = select(Method::Plus, &c, 3, 0).unwrap();
        assert_eq!(indexes(&p), vec![1, 3, 2]);
        assert_eq!(p[0].score, Some(0.9));
        // Seed does not matter for ranked methods.
        assert_eq!(select(Method::Plus, &c, 3, 99).unwrap(), p);
    }

    #[test]
    fn plusplus_drops_refusals_first() {
        let c = cands(&[
            (0.1, false),
            (0.9, true),
            (0.5, false),
            (0.9, false),
            (-1.0, false),
        ]);
        assert_eq!(
            indexes(&select(Method::PlusPlus, &c, 3, 0).unwrap()),
            vec![3, 2, 0]
        );
        assert_eq!(
            select(Method::PlusPlus, &c, 5, 0),
            Err(SelectError::PoolTooSmall {
                method: "plusplus",
                needed: 5,
                available: 4
            })
        );
    }

    #[test]
    fn random_is_seeded_and_keeps_pool_indexes() {
        let c: Vec<Candidate> = (0..20)
            .map(|i| Candidate {
                index: 100 + i,
                score: None,
                is_refusal: i % 2 == 0,
            })
            .collect();
        let a = select(Method::Random, &c, 5, 42).unwrap();
        assert_eq!(a, select(Method::Random, &c, 5, 42).unwrap());
        assert_ne!(a, select(Method::Random, &c, 5, 43).unwrap());
        assert!(a.iter().all(|p| (100..120).contains(&p.pool_index)));
        let mut uniq = indexes(&a);
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(uniq.len(), 5);
        // On-policy samples prompts the same way.
        assert_eq!(select(Method::OnPolicy, &c, 5, 42).unwrap(), a);
        assert!(select(Method::Random, &c, 21, 0).is_err());
        assert_eq!(select(Method::Random, &c, 0, 0).unwrap(), vec![]);
    }

    #[test]
    fn ranked_methods_need_finite_scores() {
        let mut c = cands(&[(0.1, false), (0.2, false)]);
        c[1].score = None;
        assert_eq!(
            select(Method::Plus, &c, 1, 0).unwrap_err().to_string(),
            "method `plus` needs gap scores but pool item 1 has none"
        );
        c[1].score = Some(f64::NAN);
        assert!(matches!(
            select(Method::Plus, &c, 1, 0),
            Err(SelectError::BadScore { index: 1, .. })
        ));
    }

    #[test]
    fn method_names_round_trip() {
        for m in [
            Method::Random,
            Method::Plus,
            Method::PlusPlus,
            Method::OnPolicy,
        ] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m);
        }
    }
}
