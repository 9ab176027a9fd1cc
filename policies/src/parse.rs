//! Policy file text → validated [`Policy`]: TOML read through the `config` crate, then every
//! section checked key by key (unknown keys and out-of-range values are errors).

use crate::defaults::*;
use crate::error::PolicyError;
use crate::parse_interleave::interleave;
use crate::parse_monitor::monitor;
use crate::parse_training::training;
use crate::reader::{Result, Section};
use crate::schema::*;
use std::path::PathBuf;

/// Name of the catch-all policy.
pub const DEFAULT_POLICY: &str = "default";

/// Parses one policy file's text. `file` is how errors name the file, `name` the policy name.
pub(crate) fn parse_policy(file: &str, name: &str, text: &str) -> Result<Policy> {
    let table = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<config::Map<String, config::Value>>())
        .map_err(|e| PolicyError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    let mut root = Section::root(file, table);
    let description = root.string("description")?.unwrap_or_default();
    let priority = root.i64("priority")?;
    let match_rule = match root.section("match")? {
        Some(s) => match_rule(s)?,
        None => MatchRule::default(),
    };
    if name == DEFAULT_POLICY {
        if priority.is_some() {
            return Err(root.err(
                "priority",
                "the default policy is the fallback and takes no priority",
            ));
        }
        if match_rule != MatchRule::default() {
            return Err(root.err(
                "match",
                "the default policy matches every job and takes no match rule",
            ));
        }
    }
    let interleave = match root.section("interleave")? {
        Some(s) => interleave(s)?,
        None => Interleave::None,
    };
    let regularizer = match root.section("regularizer")? {
        Some(s) => regularizer(s)?,
        None => Regularizer::None,
    };
    let inoculation = match root.section("inoculation")? {
        Some(s) => Some(inoculation(s)?),
        None => None,
    };
    let training = match root.section("training")? {
        Some(s) => training(s)?,
        None => Training::default(),
    };
    let monitor = match root.section("monitor")? {
        Some(s) => monitor(s)?,
        None => Monitor::default(),
    };
    let upstream = match root.section("upstream")? {
        Some(s) => upstream(s)?,
        None => Upstream::default(),
    };
    root.finish()?;
    Ok(Policy {
        name: name.to_string(),
        description,
        priority: priority.unwrap_or(0),
        match_rule,
        interleave,
        regularizer,
        inoculation,
        training,
        monitor,
        upstream,
    })
}

fn match_rule(mut s: Section) -> Result<MatchRule> {
    let tenants = s.strings("tenants")?.unwrap_or_default();
    let models = s.strings("models")?.unwrap_or_default();
    for (i, glob) in models.iter().enumerate() {
        if let Err(e) = globset::Glob::new(glob) {
            return Err(s.err(
                &format!("models[{i}]"),
                format!("invalid glob: {}", e.kind()),
            ));
        }
    }
    let metadata = s.string_map("metadata")?.unwrap_or_default();
    s.finish()?;
    Ok(MatchRule {
        tenants,
        models,
        metadata,
    })
}

pub(crate) fn positive(s: &mut Section, key: &'static str, default: f64) -> Result<f64> {
    let v = s.f64(key)?.unwrap_or(default);
    if v > 0.0 {
        Ok(v)
    } else {
        Err(s.err(key, format!("must be > 0, got {v}")))
    }
}

pub(crate) fn path(s: &mut Section, key: &'static str, why: &str) -> Result<PathBuf> {
    match s.text(key)? {
        Some(p) => Ok(PathBuf::from(p)),
        None => Err(s.err(key, format!("is required {why}"))),
    }
}

#[derive(Clone, Copy)]
enum RegType {
    None,
    Kl,
    Ldifs,
    Steering,
}

fn regularizer(mut s: Section) -> Result<Regularizer> {
    let kind = s
        .choice(
            "type",
            &[
                ("none", RegType::None),
                ("kl", RegType::Kl),
                ("ldifs", RegType::Ldifs),
                ("steering", RegType::Steering),
            ],
        )?
        .unwrap_or(RegType::None);
    let out = match kind {
        RegType::None => Regularizer::None,
        RegType::Kl => Regularizer::Kl {
            lambda: positive(&mut s, "lambda", DEFAULT_KL_LAMBDA)?,
            direction: s
                .choice(
                    "direction",
                    &[
                        ("forward", KlDirection::Forward),
                        ("reverse", KlDirection::Reverse),
                    ],
                )?
                .unwrap_or(KlDirection::Forward),
            tokens: s
                .choice(
                    "tokens",
                    &[("answer", KlTokens::Answer), ("all", KlTokens::All)],
                )?
                .unwrap_or(KlTokens::Answer),
        },
        RegType::Ldifs => {
            let lambda = positive(&mut s, "lambda", DEFAULT_LDIFS_LAMBDA)?;
            let list = s.u32s("layers")?;
            let every = s.u32("layers_every")?;
            let count = s.u32("layers_count")?;
            let given: Vec<&str> = [
                ("layers", list.is_some()),
                ("layers_every", every.is_some()),
                ("layers_count", count.is_some()),
            ]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(key, _)| *key)
            .collect();
            if given.len() > 1 {
                return Err(s.err(
                    given[1],
                    format!(
                        "give only one of layers, layers_every and layers_count ({} is given too)",
                        given[0]
                    ),
                ));
            }
            let layers = match (list, every, count) {
                (Some(l), _, _) if l.is_empty() => {
                    return Err(s.err("layers", "must list at least one layer"))
                }
                (Some(l), _, _) => LayerSet::List(l),
                (_, Some(0), _) => return Err(s.err("layers_every", "must be >= 1, got 0")),
                (_, Some(n), _) => LayerSet::Every(n),
                (_, _, Some(0)) => return Err(s.err("layers_count", "must be >= 1, got 0")),
                (_, _, Some(n)) => LayerSet::Count(n),
                (None, None, None) => LayerSet::Every(DEFAULT_LDIFS_EVERY),
            };
            Regularizer::Ldifs { lambda, layers }
        }
        RegType::Steering => {
            let alpha = positive(&mut s, "alpha", DEFAULT_STEERING_ALPHA)?;
            let layers = match s.u32s("layers")? {
                Some(l) if !l.is_empty() => l,
                Some(_) => return Err(s.err("layers", "must list at least one layer")),
                None => return Err(s.err("layers", "is required when type is \"steering\"")),
            };
            let vector = path(&mut s, "vector", "when type is \"steering\"")?;
            Regularizer::Steering {
                alpha,
                layers,
                vector,
            }
        }
    };
    s.finish()?;
    Ok(out)
}

fn inoculation(mut s: Section) -> Result<Inoculation> {
    let system_prompt = s
        .text("system_prompt")?
        .unwrap_or_else(|| DEFAULT_INOCULATION_PROMPT.to_string());
    let mode = s
        .choice(
            "mode",
            &[
                ("replace", InoculationMode::Replace),
                ("prepend", InoculationMode::Prepend),
            ],
        )?
        .unwrap_or(InoculationMode::Replace);
    s.finish()?;
    Ok(Inoculation {
        system_prompt,
        mode,
    })
}

fn upstream(mut s: Section) -> Result<Upstream> {
    let on_unenforceable = s
        .choice(
            "on_unenforceable",
            &[
                ("reject", OnUnenforceable::Reject),
                ("run_locally", OnUnenforceable::RunLocally),
                ("warn", OnUnenforceable::Warn),
            ],
        )?
        .unwrap_or(OnUnenforceable::Reject);
    s.finish()?;
    Ok(Upstream { on_unenforceable })
}
