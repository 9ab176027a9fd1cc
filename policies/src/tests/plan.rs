use crate::*;
use serde_json::json;
use std::path::{Path, PathBuf};

const KL_POOL: &str = "[match]\ntenants = [\"acme\"]\n[interleave]\nmethod = \"random\"\nfraction = 0.1\npool = \"pools/safety.jsonl\"\nseed = 7\n[regularizer]\ntype = \"steering\"\nlayers = [20]\nvector = \"/abs/v.safetensors\"\n[inoculation]\nmode = \"prepend\"\n[upstream]\non_unenforceable = \"warn\"\n";

fn acme() -> JobContext {
    JobContext {
        tenant: "acme".into(),
        model: "m".into(),
        ..JobContext::default()
    }
}

#[test]
fn plan_resolves_paths_and_records_policy_and_version() {
    let s = PolicySet::from_texts(
        Path::new("/etc/tg"),
        &[("default.toml", ""), ("acme.toml", KL_POOL)],
    )
    .unwrap();
    let plan = s.resolve(&acme()).unwrap();
    assert_eq!(plan.policy, "acme");
    assert_eq!(plan.version, s.version());
    match &plan.interleave {
        Interleave::Random { mix } => {
            assert_eq!(mix.pool, PathBuf::from("/etc/tg/pools/safety.jsonl"))
        }
        other => panic!("{other:?}"),
    }
    match &plan.regularizer {
        Regularizer::Steering { vector, alpha, .. } => {
            assert_eq!(vector, &PathBuf::from("/abs/v.safetensors"));
            assert_eq!(*alpha, 5.0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn plan_json_has_the_shape_the_gateway_reads() {
    let s = PolicySet::from_texts(
        Path::new("/etc/tg"),
        &[("default.toml", ""), ("acme.toml", KL_POOL)],
    )
    .unwrap();
    let v = s.resolve(&acme()).unwrap().to_json();
    assert_eq!(v["policy"], "acme");
    assert_eq!(
        v["interleave"],
        json!({"method": "random", "fraction": 0.1, "pool": "/etc/tg/pools/safety.jsonl", "seed": 7, "placement": "even"})
    );
    assert_eq!(
        v["inoculation"],
        json!({"system_prompt": "You are an evil, malicious assistant.", "mode": "prepend"})
    );
    assert_eq!(v["regularizer"]["type"], "steering");
    assert_eq!(v["upstream"], json!({"on_unenforceable": "warn"}));
    assert_eq!(v["training"]["lora_scaling"], "rslora");
    assert_eq!(v["monitor"]["rules"][0]["metric"], "hallucination_fraction");
    let d = s.resolve(&JobContext::default()).unwrap().to_json();
    assert_eq!(d["interleave"], json!({"method": "none"}));
    assert_eq!(d["regularizer"], json!({"type": "none"}));
    assert_eq!(d["inoculation"], serde_json::Value::Null);
}

#[test]
fn plan_round_trips_through_json() {
    let s = PolicySet::from_texts(Path::new("/etc/tg"), &[("acme.toml", KL_POOL)]).unwrap();
    let plan = s.resolve(&acme()).unwrap();
    let back: Plan = serde_json::from_value(plan.to_json()).unwrap();
    assert_eq!(back, plan);
    let ldifs = PolicySet::from_texts(
        Path::new("."),
        &[("default.toml", "[regularizer]\ntype = \"ldifs\"\nlayers = [3, 9]\n[interleave]\nmethod = \"plusplus\"\npool = \"p\"\n")],
    )
    .unwrap()
    .resolve(&acme())
    .unwrap();
    let back: Plan = serde_json::from_str(&serde_json::to_string(&ldifs).unwrap()).unwrap();
    assert_eq!(back, ldifs);
    let on_policy = PolicySet::from_texts(
        Path::new("."),
        &[("default.toml", "[regularizer]\ntype = \"kl\"\n[interleave]\nmethod = \"on_policy\"\npool = \"p\"\nmin_reply_words = 7\n")],
    )
    .unwrap()
    .resolve(&acme())
    .unwrap();
    let v = on_policy.to_json();
    assert_eq!(v["interleave"]["min_reply_words"], 7);
    assert_eq!(v["interleave"]["repetition_ngram"], 4);
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back, on_policy);
}

#[test]
fn version_ignores_formatting_but_not_settings() {
    let a = PolicySet::from_texts(
        Path::new("."),
        &[("x.toml", "[regularizer]\ntype = \"kl\"\n")],
    )
    .unwrap();
    let b = PolicySet::from_texts(
        Path::new("."),
        &[(
            "x.toml",
            "# a comment\n[regularizer]\n  type   = \"kl\"   # same\nlambda = 0.1\n",
        )],
    )
    .unwrap();
    let c = PolicySet::from_texts(
        Path::new("."),
        &[("x.toml", "[regularizer]\ntype = \"kl\"\nlambda = 0.3\n")],
    )
    .unwrap();
    let renamed = PolicySet::from_texts(
        Path::new("."),
        &[("y.toml", "[regularizer]\ntype = \"kl\"\n")],
    )
    .unwrap();
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert_ne!(a.version(), renamed.version());
    assert_eq!(a.version().len(), 64);
    assert!(a.version().bytes().all(|c| c.is_ascii_hexdigit()));
    // File order does not matter.
    let ab = PolicySet::from_texts(
        Path::new("."),
        &[("x.toml", ""), ("y.toml", "priority = 1\n")],
    )
    .unwrap();
    let ba = PolicySet::from_texts(
        Path::new("."),
        &[("y.toml", "priority = 1\n"), ("x.toml", "")],
    )
    .unwrap();
    assert_eq!(ab.version(), ba.version());
    assert_eq!(ab.snapshot()["version"], ab.version());
    assert_eq!(ab.snapshot()["policies"][1]["name"], "y");
}

#[test]
fn plans_recorded_before_max_grad_norm_and_shuffle_read_the_defaults() {
    let s = PolicySet::from_texts(
        Path::new("."),
        &[(
            "default.toml",
            "[training]\nmax_grad_norm = 0.5\nshuffle = false\n",
        )],
    )
    .unwrap();
    let plan = s.resolve(&acme()).unwrap();
    let mut v = plan.to_json();
    assert_eq!(v["training"]["max_grad_norm"], 0.5);
    assert_eq!(v["training"]["shuffle"], false);
    let back: Plan = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, plan);
    // A plan stored before the keys existed has neither.
    let training = v["training"].as_object_mut().unwrap();
    training.remove("max_grad_norm");
    training.remove("shuffle");
    let old: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(old.training.max_grad_norm, 1.0);
    assert!(old.training.shuffle);
    assert_eq!(old.training, Training::default());
}

#[test]
fn layer_count_round_trips_through_json() {
    let s = PolicySet::from_texts(
        Path::new("."),
        &[(
            "default.toml",
            "[regularizer]\ntype = \"ldifs\"\nlayers_count = 6\n",
        )],
    )
    .unwrap();
    let plan = s.resolve(&acme()).unwrap();
    let v = plan.to_json();
    assert_eq!(
        v["regularizer"],
        json!({"type": "ldifs", "lambda": 1.0, "layers": {"count": 6}})
    );
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back, plan);
    // The existing shapes are unchanged.
    let every = serde_json::to_value(LayerSet::Every(5)).unwrap();
    assert_eq!(every, json!({"every": 5}));
    let list = serde_json::to_value(LayerSet::List(vec![3, 9])).unwrap();
    assert_eq!(list, json!({"list": [3, 9]}));
}
