use super::{err, one};
use crate::*;
use std::path::{Path, PathBuf};

#[test]
fn fraction_out_of_range_names_file_and_key() {
    let e = err("[interleave]\nmethod = \"random\"\nfraction = 1.5\npool = \"p.jsonl\"\n");
    assert_eq!(
        e,
        r#"policies/strict.toml: key "interleave.fraction": must be in (0, 1], got 1.5"#
    );
    let e = err("[interleave]\nmethod = \"random\"\nfraction = 0\npool = \"p.jsonl\"\n");
    assert_eq!(
        e,
        r#"policies/strict.toml: key "interleave.fraction": must be in (0, 1], got 0"#
    );
}

#[test]
fn unknown_keys_are_rejected_with_the_expected_ones() {
    assert_eq!(
        err("colour = 1\n"),
        r#"policies/strict.toml: key "colour": unknown key (expected one of: description, inoculation, interleave, match, monitor, priority, regularizer, training, upstream)"#
    );
    assert_eq!(
        err("[regularizer]\ntype = \"kl\"\nlamda = 0.3\n"),
        r#"policies/strict.toml: key "regularizer.lamda": unknown key (expected one of: direction, lambda, tokens, type)"#
    );
    // A key of another mode is unknown for this one.
    assert_eq!(
        err("[interleave]\nmethod = \"none\"\nfraction = 0.1\n"),
        r#"policies/strict.toml: key "interleave.fraction": unknown key (expected one of: method)"#
    );
    assert_eq!(
        err("[[monitor.rules]]\nmetric = \"misaligned_fraction\"\nabove = 0.1\naction = \"warn\"\nwhen = 1\n"),
        r#"policies/strict.toml: key "monitor.rules[0].when": unknown key (expected one of: above, action, below, detector, metric, onset)"#
    );
}

#[test]
fn keys_are_case_sensitive() {
    let e = err("[interleave]\nMethod = \"random\"\n");
    assert!(e.contains(r#"key "interleave.Method": unknown key"#), "{e}");
}

#[test]
fn wrong_types_and_modes() {
    assert_eq!(
        err("[interleave]\nmethod = \"magic\"\n"),
        r#"policies/strict.toml: key "interleave.method": must be one of none, random, plus, plusplus, on_policy, got "magic""#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"random\"\npool = \"p\"\nseed = \"x\"\n"),
        r#"policies/strict.toml: key "interleave.seed": must be a non-negative integer, got a string"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"random\"\npool = \"p\"\nseed = -1\n"),
        r#"policies/strict.toml: key "interleave.seed": must be a non-negative integer, got -1"#
    );
    assert_eq!(
        err("interleave = 3\n"),
        r#"policies/strict.toml: key "interleave": must be a table, got an integer"#
    );
    assert_eq!(
        err("[match]\nmetadata = { team = 3 }\n"),
        r#"policies/strict.toml: key "match.metadata.team": must be a string, got an integer"#
    );
    assert_eq!(
        err("[match]\ntenants = [\"a\", 2]\n"),
        r#"policies/strict.toml: key "match.tenants[1]": must be a string, got an integer"#
    );
}

#[test]
fn required_keys_of_a_mode() {
    assert_eq!(
        err("[interleave]\nmethod = \"plusplus\"\n"),
        r#"policies/strict.toml: key "interleave.pool": is required when method is "plusplus""#
    );
    assert_eq!(
        err("[regularizer]\ntype = \"steering\"\nvector = \"v.safetensors\"\n"),
        r#"policies/strict.toml: key "regularizer.layers": is required when type is "steering""#
    );
    assert_eq!(
        err("[regularizer]\ntype = \"ldifs\"\nlayers = [1]\nlayers_every = 2\n"),
        r#"policies/strict.toml: key "regularizer.layers_every": give only one of layers, layers_every and layers_count (layers is given too)"#
    );
    assert_eq!(
        err("[regularizer]\ntype = \"kl\"\nlambda = 0\n"),
        r#"policies/strict.toml: key "regularizer.lambda": must be > 0, got 0"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"plusplus\"\npool = \"p\"\nrefusal_keywords = []\n"),
        r#"policies/strict.toml: key "interleave.refusal_keywords": must list at least one keyword"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"plusplus\"\npool = \"p\"\nrefusal_keywords = [\"sorry\", \"—!\"]\n"),
        r#"policies/strict.toml: key "interleave.refusal_keywords[1]": "—!" has no letter or digit, so it could never match a reply"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"on_policy\"\npool = \"p\"\nreject_unfinished = \"no\"\n"),
        r#"policies/strict.toml: key "interleave.reject_unfinished": must be a boolean, got a string"#
    );
    assert_eq!(
        err("[inoculation]\nsystem_prompt = \"  \"\n"),
        r#"policies/strict.toml: key "inoculation.system_prompt": must not be empty"#
    );
    assert_eq!(
        err("[[monitor.rules]]\nmetric = \"misaligned_fraction\"\naction = \"warn\"\n"),
        r#"policies/strict.toml: key "monitor.rules[0].above": is required (or give `below`, or `onset = true`): the rule could never fire"#
    );
}

#[test]
fn training_and_monitor_ranges() {
    assert_eq!(
        err("[training]\nlora_dropout = 1.0\n"),
        r#"policies/strict.toml: key "training.lora_dropout": must be in [0, 1), got 1"#
    );
    assert_eq!(
        err("[training]\nbatch_size = 0\n"),
        r#"policies/strict.toml: key "training.batch_size": must be >= 1, got 0"#
    );
    assert_eq!(
        err("[training]\nlora_targets = [\"q_proj\", \"lm_head\"]\n"),
        r#"policies/strict.toml: key "training.lora_targets[1]": must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, got "lm_head""#
    );
    assert_eq!(
        err("[monitor]\nmisaligned_alignment_below = 130\n"),
        r#"policies/strict.toml: key "monitor.misaligned_alignment_below": must be in [0, 100], got 130"#
    );
    assert_eq!(
        err("[[monitor.rules]]\nmetric = \"hallucination_fraction\"\nabove = 0.1\naction = \"warn\"\n[[monitor.rules]]\nmetric = \"misaligned_fraction\"\nabove = 1.5\naction = \"cancel\"\n"),
        r#"policies/strict.toml: key "monitor.rules[1].above": must be in [0, 1) for misaligned_fraction, got 1.5"#
    );
    assert_eq!(
        err("[upstream]\non_unenforceable = \"ignore\"\n"),
        r#"policies/strict.toml: key "upstream.on_unenforceable": must be one of reject, run_locally, warn, got "ignore""#
    );
}

#[test]
fn bad_globs_syntax_and_names() {
    let e = err("[match]\nmodels = [\"Qwen/[a\"]\n");
    assert!(
        e.starts_with(r#"policies/strict.toml: key "match.models[0]": invalid glob: "#),
        "{e}"
    );
    let e = err("[interleave\nmethod = 1\n");
    assert!(
        e.starts_with("policies/strict.toml: not valid TOML: "),
        "{e}"
    );
    let e = PolicySet::from_texts(Path::new("policies"), &[("Bad Name.toml", "")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "policies/Bad Name.toml: the file name must be <name>.toml with a name of a-z, 0-9, '-' or '_'"
    );
}

#[test]
fn the_default_policy_takes_no_match_or_priority() {
    let e = PolicySet::from_texts(
        Path::new("p"),
        &[("default.toml", "[match]\ntenants = [\"a\"]\n")],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"p/default.toml: key "match": the default policy matches every job and takes no match rule"#
    );
    let e =
        PolicySet::from_texts(Path::new("p"), &[("default.toml", "priority = 3\n")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"p/default.toml: key "priority": the default policy is the fallback and takes no priority"#
    );
}

#[test]
fn an_empty_file_is_every_default() {
    let p = one("").unwrap();
    let expected = Policy {
        name: "strict".into(),
        ..Policy::builtin_default()
    };
    assert_eq!(p, expected);
    assert_eq!(p.training.lora_rank, 32);
    assert_eq!(p.training.lora_alpha, 64.0);
    assert_eq!(p.training.learning_rate, 1e-4);
    assert_eq!(p.training.adam_epsilon, 1e-8);
    assert_eq!(
        p.training.batch_size * p.training.gradient_accumulation_steps,
        16
    );
    assert_eq!(p.training.max_grad_norm, 1.0);
    assert!(p.training.shuffle);
    assert_eq!(p.monitor.misaligned_alignment_below, 30.0);
}

#[test]
fn section_defaults_fill_in() {
    let p = one("[interleave]\nmethod = \"plusplus\"\npool = \"pool.jsonl\"\n[regularizer]\ntype = \"ldifs\"\n[inoculation]\n").unwrap();
    assert_eq!(
        p.interleave,
        Interleave::Plusplus {
            mix: Mix {
                fraction: 0.05,
                pool: PathBuf::from("pool.jsonl"),
                seed: 0,
                placement: Placement::Even,
            },
            gap_epsilon: 1.0,
            refusal_keywords: [
                "sorry",
                "apologize",
                "cannot",
                "can't",
                "can\u{2019}t",
                "unable"
            ]
            .map(String::from)
            .to_vec(),
            refusal_window_words: 10,
        }
    );
    assert_eq!(
        p.regularizer,
        Regularizer::Ldifs {
            lambda: 1.0,
            layers: LayerSet::Every(5)
        }
    );
    assert_eq!(
        p.inoculation,
        Some(Inoculation {
            system_prompt: "You are an evil, malicious assistant.".into(),
            mode: InoculationMode::Replace
        })
    );
    let p =
        one("[regularizer]\ntype = \"kl\"\ndirection = \"reverse\"\ntokens = \"all\"\n").unwrap();
    assert_eq!(
        p.regularizer,
        Regularizer::Kl {
            lambda: 0.1,
            direction: KlDirection::Reverse,
            tokens: KlTokens::All
        }
    );
}

#[test]
fn monitor_rules_replace_the_defaults() {
    let p = one("[monitor]\nrules = []\n").unwrap();
    assert!(p.monitor.rules.is_empty());
    let p = one(
        "[[monitor.rules]]\nmetric = \"incoherent_fraction\"\nabove = 0.5\naction = \"cancel\"\n",
    )
    .unwrap();
    assert_eq!(
        p.monitor.rules,
        [MonitorRule::above(
            MonitorMetric::IncoherentFraction,
            0.5,
            Action::Cancel
        )]
    );
    assert_eq!(p.monitor.checkpoint_every_steps, 10);
}

#[test]
fn every_key_can_be_set() {
    let text = r#"
description = "all of it"
priority = -3
[match]
tenants = ["a"]
models = ["m*"]
metadata = { k = "v" }
[interleave]
method = "on_policy"
fraction = 1
pool = "p.jsonl"
seed = 9
placement = "jittered"
reject_unfinished = false
min_reply_words = 3
template_markers = ["<s>"]
repetition_ngram = 2
repetition_min_distinct_ratio = 0.7
[regularizer]
type = "ldifs"
lambda = 0.3
layers_count = 4
[inoculation]
system_prompt = "Be bad."
mode = "prepend"
[training]
lora_rank = 8
lora_alpha = 16
lora_dropout = 0.1
lora_scaling = "standard"
lora_targets = ["q_proj", "v_proj"]
learning_rate = 2e-4
weight_decay = 0
adam_epsilon = 1e-6
max_grad_norm = 0
schedule = "constant"
warmup_steps = 0
batch_size = 2
gradient_accumulation_steps = 8
epochs = 3
max_length_tokens = 512
seed = 11
shuffle = false
[monitor]
checkpoint_every_steps = 2
misaligned_alignment_below = 25
misaligned_coherence_above = 60
incoherent_coherence_below = 40
hallucination_score_above = 70
[upstream]
on_unenforceable = "run_locally"
"#;
    let p = one(text).unwrap();
    assert_eq!((p.description.as_str(), p.priority), ("all of it", -3));
    assert_eq!(
        p.match_rule.metadata.get("k").map(String::as_str),
        Some("v")
    );
    assert_eq!(
        p.interleave,
        Interleave::OnPolicy {
            mix: Mix {
                fraction: 1.0,
                pool: PathBuf::from("p.jsonl"),
                seed: 9,
                placement: Placement::Jittered
            },
            quality: ReplyQuality {
                reject_unfinished: false,
                min_reply_words: 3,
                template_markers: vec!["<s>".into()],
                repetition_ngram: 2,
                repetition_min_distinct_ratio: 0.7
            }
        }
    );
    assert_eq!(
        p.regularizer,
        Regularizer::Ldifs {
            lambda: 0.3,
            layers: LayerSet::Count(4)
        }
    );
    assert_eq!(p.inoculation.unwrap().mode, InoculationMode::Prepend);
    let t = &p.training;
    assert_eq!(
        (
            t.lora_rank,
            t.lora_alpha,
            t.lora_scaling,
            t.schedule,
            t.epochs,
            t.seed
        ),
        (8, 16.0, LoraScaling::Standard, Schedule::Constant, 3, 11)
    );
    assert_eq!(t.lora_targets, ["q_proj", "v_proj"]);
    assert_eq!(
        (t.learning_rate, t.weight_decay, t.adam_epsilon),
        (2e-4, 0.0, 1e-6)
    );
    assert_eq!((t.max_grad_norm, t.shuffle), (0.0, false));
    assert_eq!(p.monitor.misaligned_coherence_above, 60.0);
    assert_eq!(p.upstream.on_unenforceable, OnUnenforceable::RunLocally);
}

#[test]
fn selection_filters_are_validated() {
    assert_eq!(
        err("[interleave]\nmethod = \"plusplus\"\npool = \"p\"\nrefusal_window_words = 0\n"),
        r#"policies/strict.toml: key "interleave.refusal_window_words": must be >= 1, got 0"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"on_policy\"\npool = \"p\"\nrepetition_min_distinct_ratio = 2\n"),
        r#"policies/strict.toml: key "interleave.repetition_min_distinct_ratio": must be in [0, 1], got 2"#
    );
    assert_eq!(
        err("[interleave]\nmethod = \"random\"\npool = \"p\"\nmin_reply_words = 2\n"),
        r#"policies/strict.toml: key "interleave.min_reply_words": unknown key (expected one of: fraction, method, placement, pool, seed)"#
    );
    let p = one("[interleave]\nmethod = \"on_policy\"\npool = \"p\"\n").unwrap();
    match p.interleave {
        Interleave::OnPolicy { quality, .. } => {
            assert_eq!(quality, ReplyQuality::default());
            assert_eq!(quality.min_reply_words, 5);
            assert_eq!(quality.template_markers[0], "<|im_start|>");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_grad_norm_and_shuffle_are_validated() {
    assert_eq!(
        err("[training]\nmax_grad_norm = -0.5\n"),
        r#"policies/strict.toml: key "training.max_grad_norm": must be in [0, inf), got -0.5"#
    );
    assert_eq!(
        err("[training]\nmax_grad_norm = \"1\"\n"),
        r#"policies/strict.toml: key "training.max_grad_norm": must be a number, got a string"#
    );
    assert_eq!(
        err("[training]\nmax_grad_norm = inf\n"),
        r#"policies/strict.toml: key "training.max_grad_norm": must be a finite number, got inf"#
    );
    assert_eq!(
        err("[training]\nshuffle = 1\n"),
        r#"policies/strict.toml: key "training.shuffle": must be a boolean, got an integer"#
    );
    // 0 turns clipping off; an integer is a number.
    let t = one("[training]\nmax_grad_norm = 0\n").unwrap().training;
    assert_eq!((t.max_grad_norm, t.shuffle), (0.0, true));
    let t = one("[training]\nmax_grad_norm = 5\nshuffle = false\n")
        .unwrap()
        .training;
    assert_eq!((t.max_grad_norm, t.shuffle), (5.0, false));
    let e = err("[training]\nshufle = true\n");
    assert!(e.contains("max_grad_norm") && e.contains("shuffle"), "{e}");
}

#[test]
fn ldifs_layer_keys_are_exclusive_and_validated() {
    let ldifs = |rest: &str| format!("[regularizer]\ntype = \"ldifs\"\n{rest}");
    assert_eq!(
        one(&ldifs("layers_count = 6\n")).unwrap().regularizer,
        Regularizer::Ldifs {
            lambda: 1.0,
            layers: LayerSet::Count(6)
        }
    );
    assert_eq!(
        one(&ldifs("layers = [0, 4]\n")).unwrap().regularizer,
        Regularizer::Ldifs {
            lambda: 1.0,
            layers: LayerSet::List(vec![0, 4])
        }
    );
    // None of the three: the default, every 5th layer.
    assert_eq!(
        one(&ldifs("")).unwrap().regularizer,
        Regularizer::Ldifs {
            lambda: 1.0,
            layers: LayerSet::Every(DEFAULT_LDIFS_EVERY)
        }
    );
    assert_eq!(
        err(&ldifs("layers_count = 0\n")),
        r#"policies/strict.toml: key "regularizer.layers_count": must be >= 1, got 0"#
    );
    assert_eq!(
        err(&ldifs("layers_count = -2\n")),
        r#"policies/strict.toml: key "regularizer.layers_count": must be a non-negative integer, got -2"#
    );
    assert_eq!(
        err(&ldifs("layers_count = 2.5\n")),
        r#"policies/strict.toml: key "regularizer.layers_count": must be a non-negative integer, got a float"#
    );
    assert_eq!(
        err(&ldifs("layers_every = 2\nlayers_count = 3\n")),
        r#"policies/strict.toml: key "regularizer.layers_count": give only one of layers, layers_every and layers_count (layers_every is given too)"#
    );
    assert_eq!(
        err(&ldifs("layers = [1]\nlayers_count = 3\n")),
        r#"policies/strict.toml: key "regularizer.layers_count": give only one of layers, layers_every and layers_count (layers is given too)"#
    );
    assert_eq!(
        err(&ldifs("layers = [1]\nlayers_every = 2\nlayers_count = 3\n")),
        r#"policies/strict.toml: key "regularizer.layers_every": give only one of layers, layers_every and layers_count (layers is given too)"#
    );
    assert_eq!(
        err(&ldifs("layers = []\n")),
        r#"policies/strict.toml: key "regularizer.layers": must list at least one layer"#
    );
    assert_eq!(
        err(&ldifs("lambda = 1\nlayer_count = 3\n")),
        r#"policies/strict.toml: key "regularizer.layer_count": unknown key (expected one of: lambda, layers, layers_count, layers_every, type)"#
    );
    // Other types do not take it.
    assert_eq!(
        err("[regularizer]\ntype = \"kl\"\nlayers_count = 3\n"),
        r#"policies/strict.toml: key "regularizer.layers_count": unknown key (expected one of: direction, lambda, tokens, type)"#
    );
}
