//! Which parts of a plan an upstream provider cannot enforce, and what the plan's
//! `upstream.on_unenforceable` says to do about them.

use serde_json::Value;

/// What to do when the upstream cannot enforce a defense (the policy's setting).
pub use policies::OnUnenforceable;

/// The decision: proceed (with warnings to record as warn events) or fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    Proceed {
        warnings: Vec<String>,
    },
    Fail {
        code: &'static str,
        message: String,
    },
    /// The policy sends such jobs to this gateway's local workers (`run_locally`).
    RunLocally {
        defenses: String,
    },
}

/// Reads the plan JSON (`regularizer.type`, `upstream.on_unenforceable`: the shape of
/// `policies::Plan::to_json`; a missing or unknown setting means reject). Training-time
/// regularizers (kl, ldifs, steering) need the weights, which an upstream provider does
/// not expose; data-level defenses (inoculation, interleave) are already in the dataset.
pub fn enforcement(plan: &Value) -> Enforcement {
    let action = match plan
        .pointer("/upstream/on_unenforceable")
        .and_then(Value::as_str)
    {
        Some("warn") => OnUnenforceable::Warn,
        Some("run_locally") => OnUnenforceable::RunLocally,
        _ => OnUnenforceable::Reject,
    };
    let unenforceable: Vec<&str> = match plan.pointer("/regularizer/type").and_then(Value::as_str) {
        None | Some("none") => Vec::new(),
        Some(t) => vec![t],
    };
    if unenforceable.is_empty() {
        return Enforcement::Proceed {
            warnings: Vec::new(),
        };
    }
    let list = unenforceable.join(", ");
    match action {
        OnUnenforceable::Reject => Enforcement::Fail {
            code: "defense_unenforceable_upstream",
            message: format!(
                "The policy requires the training-time defense `{list}`, which the upstream provider cannot enforce, and its upstream.on_unenforceable is `reject`."
            ),
        },
        OnUnenforceable::RunLocally => Enforcement::RunLocally { defenses: list },
        OnUnenforceable::Warn => Enforcement::Proceed {
            warnings: vec![format!(
                "The upstream provider cannot enforce the training-time defense `{list}`; the job was forwarded without it (upstream.on_unenforceable = warn)."
            )],
        },
    }
}
