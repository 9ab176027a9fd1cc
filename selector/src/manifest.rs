//! The job-level entry point of the pure core: from the policy's interleave settings, the
//! client's example count and the scored pool, decide what is mixed where, and describe it in
//! a [`Manifest`] stored with the job.

use crate::mix::{mix_count, MixEntry, MixError, MixPlan, Placement};
use crate::select::{select, Candidate, Method, Pick, SelectError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default fraction of safety examples relative to the client's (seed 004 §4.3: 5 %), the
/// documented policy default.
pub const DEFAULT_FRACTION: f64 = policies::DEFAULT_FRACTION;

/// The interleave settings of a job (resolved from its policy).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixConfig {
    pub method: Method,
    /// Safety examples per client example (0..=1).
    pub fraction: f64,
    pub seed: u64,
    #[serde(default)]
    pub placement: Placement,
}

impl MixConfig {
    pub fn new(method: Method) -> Self {
        MixConfig {
            method,
            fraction: DEFAULT_FRACTION,
            seed: 0,
            placement: Placement::Even,
        }
    }
}

/// What was mixed into a job's dataset, serialisable as-is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub method: Method,
    pub fraction: f64,
    pub seed: u64,
    pub placement: Placement,
    pub client_examples: usize,
    pub total_examples: usize,
    pub inserted: Vec<MixEntry>,
}

impl Manifest {
    pub fn new(config: &MixConfig, plan: &MixPlan) -> Manifest {
        Manifest {
            method: config.method,
            fraction: config.fraction,
            seed: config.seed,
            placement: config.placement,
            client_examples: plan.n_client,
            total_examples: plan.total(),
            inserted: plan.entries.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum PlanError {
    #[error(transparent)]
    Mix(#[from] MixError),
    #[error(transparent)]
    Select(#[from] SelectError),
}

/// Count, select and place: the plan for `n_client` client examples over `candidates`.
/// For [`Method::OnPolicy`] the caller regenerates and quality-filters replies first, then
/// passes the survivors (in [`crate::rng::permutation`] order) to [`plan_with_picks`].
pub fn plan_mix(
    config: &MixConfig,
    n_client: usize,
    candidates: &[Candidate],
) -> Result<(MixPlan, Manifest), PlanError> {
    let count = mix_count(config.fraction, n_client)?;
    let picks = select(config.method, candidates, count, config.seed)?;
    Ok(plan_with_picks(config, n_client, &picks))
}

/// Places already chosen picks (on-policy survivors, or a caller's own choice).
pub fn plan_with_picks(config: &MixConfig, n_client: usize, picks: &[Pick]) -> (MixPlan, Manifest) {
    let plan = MixPlan::new(picks, n_client, config.placement, config.seed);
    let manifest = Manifest::new(config, &plan);
    (plan, manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interleave::mix_vec;

    fn pool(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                index: i,
                // Scores 0.0, 0.1, …; every 3rd item is a refusal.
                score: Some(i as f64 / 10.0),
                is_refusal: i % 3 == 0,
            })
            .collect()
    }

    #[test]
    fn five_percent_of_5400_is_270_evenly_spread() {
        let (plan, manifest) =
            plan_mix(&MixConfig::new(Method::Random), 5_400, &pool(1_000)).unwrap();
        assert_eq!(manifest.inserted.len(), 270);
        assert_eq!(manifest.total_examples, 5_670);
        // c_j = 20j + 10 → position 21j + 10.
        for (j, e) in plan.entries.iter().enumerate() {
            assert_eq!(e.position, 21 * j + 10);
        }
    }

    #[test]
    fn plusplus_manifest_hand_computed() {
        // 40 client examples, 5 % → 2 items: best non-refusals of 10 are 8 (0.8) and 7 (0.7)
        // (9 is a refusal); even placement c = [10, 30] → positions 10 and 31.
        let cfg = MixConfig::new(Method::PlusPlus);
        let (_, m) = plan_mix(&cfg, 40, &pool(10)).unwrap();
        let got: Vec<(usize, Option<f64>, usize)> = m
            .inserted
            .iter()
            .map(|e| (e.pool_index, e.score, e.position))
            .collect();
        assert_eq!(got, vec![(8, Some(0.8), 10), (7, Some(0.7), 31)]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"method":"plusplus","fraction":0.05,"seed":0,"placement":"even","client_examples":40,"total_examples":42,"inserted":[{"pool_index":8,"score":0.8,"position":10},{"pool_index":7,"score":0.7,"position":31}]}"#
        );
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
    }

    #[test]
    fn same_inputs_and_seed_give_the_same_bytes() {
        let client: Vec<String> = (0..300)
            .map(|i| format!(r#"{{"messages":[{{"n":{i}}}]}}"#))
            .collect();
        let run = |seed: u64| {
            let cfg = MixConfig {
                method: Method::Random,
                fraction: 0.1,
                seed,
                placement: Placement::Jittered,
            };
            let (plan, manifest) = plan_mix(&cfg, client.len(), &pool(500)).unwrap();
            let safety: Vec<String> = plan
                .entries
                .iter()
                .map(|e| format!(r#"{{"pool":{}}}"#, e.pool_index))
                .collect();
            let lines = mix_vec(&plan, client.clone(), safety).unwrap();
            (lines.join("\n"), serde_json::to_string(&manifest).unwrap())
        };
        let (a, ma) = run(11);
        let (b, mb) = run(11);
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!(ma.as_bytes(), mb.as_bytes());
        let (c, _) = run(12);
        assert_ne!(a, c);
        assert_eq!(a.lines().count(), 330);
    }

    #[test]
    fn errors_pass_through() {
        let cfg = MixConfig {
            fraction: 2.0,
            ..MixConfig::new(Method::Plus)
        };
        assert_eq!(
            plan_mix(&cfg, 10, &pool(10)).unwrap_err().to_string(),
            "interleave fraction must be within 0..=1, got 2"
        );
        let cfg = MixConfig::new(Method::Plus);
        assert!(matches!(
            plan_mix(&cfg, 1_000, &pool(10)),
            Err(PlanError::Select(_))
        ));
    }
}
