//! The perplexity-gap score of seed 004 §3.2, eq. (6):
//! `s_d = (mean_k L_k(d) − L_0(d)) / (L_0(d) + ε)`.
//!
//! `L_0` is the answer-only mean token NLL under the aligned base model, `L_k` the same under
//! the K misaligned adapters. An optional held-out adapter is kept out of the mean and gets its
//! own score `(L_h − L_0) / (L_0 + ε)`, so an operator can check that the ranking transfers to
//! a domain none of the scoring adapters was trained on.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// ε of eq. (6) when the policy does not set one.
pub const DEFAULT_EPSILON: f64 = policies::DEFAULT_GAP_EPSILON;

/// Answer-only mean NLLs of one example under every scoring model (nats per token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleNlls {
    /// `L_0`: the aligned base model, adapters off.
    pub base: f64,
    /// `L_1..L_K`: the misaligned adapters, in the order they were configured.
    pub adapters: Vec<f64>,
    /// The held-out adapter, excluded from the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<f64>,
}

/// The gap score of one example.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GapScore {
    /// `s_d` over the K scoring adapters.
    pub score: f64,
    /// `(L_h − L_0)/(L_0 + ε)` for the held-out adapter, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScoreError {
    #[error("the gap score needs at least one misaligned adapter NLL, got none")]
    NoAdapters,
    #[error("NLL of `{model}` is {value}; NLLs must be finite and >= 0")]
    BadNll { model: String, value: f64 },
    #[error("epsilon must be finite and > 0, got {0}")]
    BadEpsilon(f64),
}

fn check_nll(model: impl FnOnce() -> String, value: f64) -> Result<f64, ScoreError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ScoreError::BadNll {
            model: model(),
            value,
        })
    }
}

/// Eq. (6) for one example. `epsilon` must be > 0 (see [`DEFAULT_EPSILON`]).
pub fn gap_score(nlls: &ExampleNlls, epsilon: f64) -> Result<GapScore, ScoreError> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        return Err(ScoreError::BadEpsilon(epsilon));
    }
    if nlls.adapters.is_empty() {
        return Err(ScoreError::NoAdapters);
    }
    let base = check_nll(|| "base".to_string(), nlls.base)?;
    let mut sum = 0.0;
    for (k, &l) in nlls.adapters.iter().enumerate() {
        sum += check_nll(|| format!("adapter {}", k + 1), l)?;
    }
    let mean = sum / nlls.adapters.len() as f64;
    let denom = base + epsilon;
    let held_out = match nlls.held_out {
        Some(h) => Some((check_nll(|| "held-out adapter".to_string(), h)? - base) / denom),
        None => None,
    };
    Ok(GapScore {
        score: (mean - base) / denom,
        held_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlls(base: f64, adapters: &[f64], held_out: Option<f64>) -> ExampleNlls {
        ExampleNlls {
            base,
            adapters: adapters.to_vec(),
            held_out,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_scores() {
        // mean(2, 3, 4) = 3; (3 − 1)/(1 + 1) = 1.0
        let s = gap_score(&nlls(1.0, &[2.0, 3.0, 4.0], None), 1.0).unwrap();
        assert!(close(s.score, 1.0));
        assert_eq!(s.held_out, None);
        // mean(1.5, 2.5) = 2; (2 − 3)/(3 + 1) = −0.25: the adapters like it more than the base.
        let s = gap_score(&nlls(3.0, &[1.5, 2.5], None), 1.0).unwrap();
        assert!(close(s.score, -0.25));
    }

    #[test]
    fn epsilon_damps_low_base_loss() {
        // L0 = 0.1, mean Lk = 0.6: ε = 1 → 0.5/1.1; ε = 0.1 → 0.5/0.2 = 2.5.
        let n = nlls(0.1, &[0.6], None);
        assert!(close(gap_score(&n, 1.0).unwrap().score, 0.5 / 1.1));
        assert!(close(gap_score(&n, 0.1).unwrap().score, 2.5));
        assert_eq!(gap_score(&n, 0.0), Err(ScoreError::BadEpsilon(0.0)));
        assert!(gap_score(&n, f64::NAN).is_err());
    }

    #[test]
    fn held_out_adapter_is_not_in_the_mean() {
        // Scoring adapters mean(2, 4) = 3 → (3 − 2)/(2 + 1) = 1/3; held-out 8 → (8 − 2)/3 = 2.
        let s = gap_score(&nlls(2.0, &[2.0, 4.0], Some(8.0)), 1.0).unwrap();
        assert!(close(s.score, 1.0 / 3.0));
        assert!(close(s.held_out.unwrap(), 2.0));
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            gap_score(&nlls(1.0, &[], None), 1.0),
            Err(ScoreError::NoAdapters)
        );
        let err = gap_score(&nlls(1.0, &[1.0, f64::INFINITY], None), 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NLL of `adapter 2` is inf; NLLs must be finite and >= 0"
        );
        let err = gap_score(&nlls(-0.5, &[1.0], None), 1.0).unwrap_err();
        assert!(err.to_string().contains("`base`"));
        let err = gap_score(&nlls(1.0, &[1.0], Some(f64::NAN)), 1.0).unwrap_err();
        assert!(err.to_string().contains("held-out"));
    }
}
