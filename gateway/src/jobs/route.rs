//! Where a job trains: one pure function of its plan and the gateway's execution mode.
//!
//! In local mode every job trains on this gateway's workers. In upstream mode a job goes to
//! the provider unless its plan needs a training-time defense (KL, LDIFS, steering: they need
//! the weights, which a provider does not expose; data-level defenses — inoculation,
//! interleaving — are already in the dataset). Then the plan's `upstream.on_unenforceable`
//! decides: `reject` fails the job, `warn` forwards it without the defense (saying so in a
//! warn event), `run_locally` trains it here.

use super::seams::StepFailure;
use crate::config::ExecutionMode;
use crate::store::Backend;
use policies::{OnUnenforceable, Plan, Regularizer};

/// The decision for one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Train on this backend; `warnings` are recorded as warn events once it started.
    Run {
        backend: Backend,
        warnings: Vec<String>,
    },
    /// Do not train: the job fails with this error.
    Fail(StepFailure),
}

/// The training-time defense of the plan that only a local trainer can apply, by its
/// policy name (`None`: the plan has none).
pub fn training_time_defense(plan: &Plan) -> Option<&'static str> {
    match plan.regularizer {
        Regularizer::None => None,
        Regularizer::Kl { .. } => Some("kl"),
        Regularizer::Ldifs { .. } => Some("ldifs"),
        Regularizer::Steering { .. } => Some("steering"),
    }
}

/// Routes a job with `plan` under the gateway's execution `mode`.
pub fn route(plan: &Plan, mode: ExecutionMode) -> Route {
    let run = |backend, warnings| Route::Run { backend, warnings };
    if mode == ExecutionMode::Local {
        return run(Backend::Local, Vec::new());
    }
    let Some(defense) = training_time_defense(plan) else {
        return run(Backend::Upstream, Vec::new());
    };
    match plan.upstream.on_unenforceable {
        OnUnenforceable::Reject => Route::Fail(StepFailure::new(
            "defense_unenforceable_upstream",
            format!(
                "The policy requires the training-time defense `{defense}`, which the upstream provider cannot enforce, and its upstream.on_unenforceable is `reject`."
            ),
        )),
        OnUnenforceable::RunLocally => run(Backend::Local, Vec::new()),
        OnUnenforceable::Warn => run(
            Backend::Upstream,
            vec![format!(
                "The upstream provider cannot enforce the training-time defense `{defense}`; the job was forwarded without it (upstream.on_unenforceable = warn)."
            )],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(regularizer: &str, on_unenforceable: &str) -> Plan {
        let toml = format!(
            "description = \"t\"\n{regularizer}\n[upstream]\non_unenforceable = \"{on_unenforceable}\"\n"
        );
        policies::PolicySet::from_texts(std::path::Path::new("/policies"), &[("p.toml", &toml)])
            .unwrap()
            .resolve(&policies::JobContext::default())
            .unwrap()
    }

    const KL: &str = "[regularizer]\ntype = \"kl\"\nlambda = 0.1";
    const STEER: &str =
        "[regularizer]\ntype = \"steering\"\nalpha = 1.0\nlayers = [0]\nvector = \"v.safetensors\"";

    #[test]
    fn local_mode_trains_everything_here() {
        for p in [plan("", "reject"), plan(KL, "reject")] {
            assert_eq!(
                route(&p, ExecutionMode::Local),
                Route::Run {
                    backend: Backend::Local,
                    warnings: vec![]
                }
            );
        }
    }

    #[test]
    fn upstream_mode_follows_on_unenforceable_for_training_time_defenses() {
        let upstream = |warnings| Route::Run {
            backend: Backend::Upstream,
            warnings,
        };
        // No training-time defense: the provider, silently, whatever the setting.
        assert_eq!(
            route(&plan("", "reject"), ExecutionMode::Upstream),
            upstream(vec![])
        );
        let Route::Fail(f) = route(&plan(KL, "reject"), ExecutionMode::Upstream) else {
            panic!("reject must fail the job");
        };
        assert_eq!(f.code, "defense_unenforceable_upstream");
        assert!(f.message.contains("`kl`"), "{}", f.message);
        assert_eq!(
            route(&plan(KL, "run_locally"), ExecutionMode::Upstream),
            Route::Run {
                backend: Backend::Local,
                warnings: vec![]
            }
        );
        let Route::Run { backend, warnings } = route(&plan(STEER, "warn"), ExecutionMode::Upstream)
        else {
            panic!("warn forwards the job");
        };
        assert_eq!(backend, Backend::Upstream);
        assert!(warnings[0].contains("`steering`"), "{warnings:?}");
    }
}
