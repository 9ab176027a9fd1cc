//! How many safety examples a job gets and where they go.
//!
//! **Count.** `count = round(f × n_client)`, half rounded up, computed exactly in integers:
//! the fraction is first taken to parts per million, `ppm = round(f × 10⁶)`, then
//! `count = ⌊(ppm × n_client + 500 000) / 10⁶⌋`. 5 % of 5 400 = 270; 5 % of 10 = 0.5 → 1.
//!
//! **Placement.** Safety item `j` (0-based, in selection order) of `m` goes immediately before
//! client example `c_j`, with `n` client examples:
//! - [`Placement::Even`]: `c_j = ⌊(2j + 1)·n / (2m)⌋`, the centre of the j-th of m equal
//!   stretches of the client data;
//! - [`Placement::Jittered`]: `c_j = ⌊(j·n + r_j) / m⌋` with `r_j` uniform in `0..n` from the
//!   seeded generator, a uniform point inside the j-th stretch.
//!
//! Both give `0 ≤ c_0 ≤ c_1 ≤ … ≤ n − 1`, so the output position of item j is `p_j = c_j + j`
//! (strictly increasing) and no safety item comes after the last client example. With no
//! client examples the safety items are the whole output, in order.

use crate::rng::SplitMix64;
use crate::select::Pick;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where safety items go inside their stretch of the client data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The centre of each stretch (no randomness).
    #[default]
    Even,
    /// A seeded uniform point of each stretch.
    Jittered,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum MixError {
    #[error("interleave fraction must be within 0..=1, got {0}")]
    BadFraction(f64),
    #[error("the client dataset was planned with {expected} examples but has {actual}")]
    ClientCount { expected: usize, actual: String },
    #[error("pool index {index} is out of range: the pool has {pool_len} items")]
    PoolIndex { index: usize, pool_len: usize },
    #[error("the mix plan has {expected} safety items but {actual} were supplied")]
    SafetyCount { expected: usize, actual: usize },
}

/// `round(f × n_client)` as defined in the module doc.
pub fn mix_count(fraction: f64, n_client: usize) -> Result<usize, MixError> {
    if !(fraction.is_finite() && (0.0..=1.0).contains(&fraction)) {
        return Err(MixError::BadFraction(fraction));
    }
    let ppm = (fraction * 1e6).round() as u128;
    Ok(((ppm * n_client as u128 + 500_000) / 1_000_000) as usize)
}

/// A constant mixed into the seed so jitter draws differ from the selection's draws.
const JITTER_STREAM: u64 = 0x6a69_7474_6572_0001;

/// `c_j` for `m` items among `n` client examples (module doc).
pub fn insertion_points(n: usize, m: usize, placement: Placement, seed: u64) -> Vec<usize> {
    if n == 0 || m == 0 {
        return vec![0; m];
    }
    let (n128, m128) = (n as u128, m as u128);
    let mut rng = SplitMix64::new(seed ^ JITTER_STREAM);
    (0..m as u128)
        .map(|j| {
            let c = match placement {
                Placement::Even => (2 * j + 1) * n128 / (2 * m128),
                Placement::Jittered => (j * n128 + rng.below(n as u64) as u128) / m128,
            };
            c as usize
        })
        .collect()
}

/// One mixed-in safety example: which pool item, its score, where it landed (0-based index in
/// the output dataset).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixEntry {
    pub pool_index: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
    pub position: usize,
}

/// Output positions of the picks within a dataset of `n_client` client examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixPlan {
    pub n_client: usize,
    pub entries: Vec<MixEntry>,
}

impl MixPlan {
    /// Places `picks` (in their order) among `n_client` examples.
    pub fn new(picks: &[Pick], n_client: usize, placement: Placement, seed: u64) -> MixPlan {
        let points = insertion_points(n_client, picks.len(), placement, seed);
        let entries = picks
            .iter()
            .zip(points)
            .enumerate()
            .map(|(j, (p, c))| MixEntry {
                pool_index: p.pool_index,
                score: p.score,
                position: c + j,
            })
            .collect();
        MixPlan { n_client, entries }
    }

    /// Length of the mixed dataset.
    pub fn total(&self) -> usize {
        self.n_client + self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rounds_half_up_exactly() {
        assert_eq!(mix_count(0.05, 5_400), Ok(270));
        assert_eq!(mix_count(0.05, 10), Ok(1)); // 0.5 → 1
        assert_eq!(mix_count(0.05, 9), Ok(0)); // 0.45 → 0
        assert_eq!(mix_count(0.05, 30), Ok(2)); // 1.5 → 2
        assert_eq!(mix_count(0.01, 149), Ok(1)); // 1.49 → 1
        assert_eq!(mix_count(0.5, 3), Ok(2)); // 1.5 → 2
        assert_eq!(mix_count(0.0, 1_000), Ok(0));
        assert_eq!(mix_count(1.0, 7), Ok(7));
        assert_eq!(mix_count(0.05, 0), Ok(0));
        assert_eq!(mix_count(1.5, 7), Err(MixError::BadFraction(1.5)));
        assert!(mix_count(-0.1, 7).is_err());
        assert!(mix_count(f64::NAN, 7).is_err());
    }

    #[test]
    fn even_points_hand_computed() {
        // n = 10, m = 2: ⌊10/4⌋ = 2, ⌊30/4⌋ = 7.
        assert_eq!(insertion_points(10, 2, Placement::Even, 0), vec![2, 7]);
        // n = 5 400, m = 270: stretches of 20, centres 10, 30, …
        let p = insertion_points(5_400, 270, Placement::Even, 0);
        assert_eq!(&p[..3], &[10, 30, 50]);
        assert_eq!(p[269], 5_390);
        // More items than examples: several in one gap, still ordered.
        assert_eq!(insertion_points(2, 4, Placement::Even, 0), vec![0, 0, 1, 1]);
        assert_eq!(insertion_points(0, 3, Placement::Even, 0), vec![0, 0, 0]);
    }

    #[test]
    fn jittered_points_stay_in_their_stretch() {
        let p = insertion_points(1_000, 50, Placement::Jittered, 7);
        assert_eq!(p, insertion_points(1_000, 50, Placement::Jittered, 7));
        assert_ne!(p, insertion_points(1_000, 50, Placement::Jittered, 8));
        for (j, c) in p.iter().enumerate() {
            assert!((j * 20..(j + 1) * 20).contains(c), "item {j} at {c}");
        }
    }

    #[test]
    fn plan_positions_interleave_the_picks() {
        let picks = [
            Pick {
                pool_index: 7,
                score: Some(2.0),
            },
            Pick {
                pool_index: 3,
                score: Some(1.0),
            },
        ];
        let plan = MixPlan::new(&picks, 10, Placement::Even, 0);
        let pos: Vec<(usize, usize)> = plan
            .entries
            .iter()
            .map(|e| (e.pool_index, e.position))
            .collect();
        // c = [2, 7] → positions 2 and 8 in a 12-example output.
        assert_eq!(pos, vec![(7, 2), (3, 8)]);
        assert_eq!(plan.total(), 12);
        let many = MixPlan::new(&[picks[0]; 5], 3, Placement::Jittered, 1);
        let ps: Vec<usize> = many.entries.iter().map(|e| e.position).collect();
        assert!(ps.windows(2).all(|w| w[0] < w[1]));
        assert!(ps.iter().all(|&p| p < many.total()));
    }
}
