//! Bad model directories give errors naming the file and tensor, never panics.

mod common;

use std::path::Path;

use common::{fixtures, TestBackend};
use trainer::{Engine, LoraAdapter, Qwen2Config};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn load(dir: &Path) -> String {
    Engine::<TestBackend>::load(dir, Default::default())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_weights_file_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join("tiny_tied"), tmp.path());
    std::fs::remove_file(tmp.path().join("model.safetensors")).expect("rm");
    let err = load(tmp.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn shape_mismatch_names_tensor_and_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join("tiny_tied"), tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path)
        .expect("read")
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 65");
    std::fs::write(&cfg_path, cfg).expect("write");
    let err = load(tmp.path());
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn config_missing_field_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("config.json");
    std::fs::write(&p, r#"{"hidden_size": 32, "num_attention_heads": 4}"#).expect("write");
    let err = Qwen2Config::load(&p).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("num_hidden_layers"),
        "{err}"
    );
}

#[test]
fn sharded_index_loads_like_single_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join("tiny_untied"), tmp.path());
    std::fs::rename(
        tmp.path().join("model.safetensors"),
        tmp.path().join("model-00001-of-00001.safetensors"),
    )
    .expect("mv");
    let tensors =
        trainer::weights::read_safetensors(&tmp.path().join("model-00001-of-00001.safetensors"))
            .expect("read");
    let map: serde_json::Map<String, serde_json::Value> = tensors
        .keys()
        .map(|k| {
            (
                k.clone(),
                serde_json::Value::from("model-00001-of-00001.safetensors"),
            )
        })
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("write");
    let e = Engine::<TestBackend>::load(tmp.path(), Default::default()).expect("sharded loads");
    let base = Engine::<TestBackend>::load(&fixtures().join("tiny_untied"), Default::default())
        .expect("loads");
    let ids = vec![vec![1u32, 5, 9, 42, 7]];
    assert_eq!(
        e.token_logprobs(&ids, &[None]).expect("a"),
        base.token_logprobs(&ids, &[None]).expect("b")
    );
}

#[test]
fn adapter_missing_tensor_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join("tiny_tied_a2"), tmp.path());
    let cfg_path = tmp.path().join("adapter_config.json");
    let cfg = std::fs::read_to_string(&cfg_path)
        .expect("read")
        .replace("\"q_proj\"", "\"up_proj\"");
    std::fs::write(&cfg_path, cfg).expect("write");
    let config =
        Qwen2Config::load(&fixtures().join("tiny_tied").join("config.json")).expect("config");
    let err = LoraAdapter::<TestBackend>::load_peft(tmp.path(), &config, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("up_proj.lora_A.weight") && err.contains("adapter_model.safetensors"),
        "{err}"
    );
}

/// A copy of the tiny_tied_a2 adapter with `key` set to `value` in adapter_config.json;
/// returns the load error, or None when it loads.
fn adapter_config_error(key: &str, value: serde_json::Value) -> Option<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixtures().join("tiny_tied_a2"), tmp.path());
    let cfg_path = tmp.path().join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).expect("read")).expect("json");
    cfg[key] = value;
    std::fs::write(&cfg_path, cfg.to_string()).expect("write");
    let config =
        Qwen2Config::load(&fixtures().join("tiny_tied").join("config.json")).expect("config");
    LoraAdapter::<TestBackend>::load_peft(tmp.path(), &config, &Default::default())
        .err()
        .map(|e| e.to_string())
}

#[test]
fn adapter_options_the_engine_would_ignore_are_refused_by_key() {
    use serde_json::json;
    for (key, value) in [
        ("lora_dropout", json!(1.0)),
        ("alpha_pattern", json!({"q_proj": 32})),
        ("rank_pattern", json!({"v_proj": 2})),
        ("use_dora", json!(true)),
        ("bias", json!("all")),
        ("modules_to_save", json!(["lm_head"])),
        ("layers_to_transform", json!([0])),
        ("lora_bias", json!(true)),
        ("layer_replication", json!([[0, 1], [0, 1]])),
    ] {
        let err = adapter_config_error(key, value.clone())
            .unwrap_or_else(|| panic!("{key} = {value} loaded"));
        assert!(
            err.contains(&format!("`{key}`")) && err.contains("adapter_config.json"),
            "{key}: {err}"
        );
    }
    // PEFT's own "unset" spellings load.
    for (key, value) in [
        ("alpha_pattern", json!({})),
        ("rank_pattern", json!({})),
        ("use_dora", json!(false)),
        ("bias", json!("none")),
        ("modules_to_save", serde_json::Value::Null),
        ("layers_to_transform", serde_json::Value::Null),
        ("lora_bias", json!(false)),
    ] {
        assert_eq!(
            adapter_config_error(key, value.clone()),
            None,
            "{key} = {value}"
        );
    }
}

/// A copy of tiny_tied's config.json with `key` set to `value`; returns the load error.
fn config_error(key: &str, value: serde_json::Value) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = fixtures().join("tiny_tied").join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).expect("read")).expect("json");
    cfg[key] = value;
    let p = tmp.path().join("config.json");
    std::fs::write(&p, cfg.to_string()).expect("write");
    Qwen2Config::load(&p).unwrap_err().to_string()
}

#[test]
fn configs_computing_a_different_forward_are_refused_by_key() {
    use serde_json::json;
    let cases = [
        ("model_type", json!("mistral"), "`model_type` `mistral`"),
        ("hidden_act", json!("gelu"), "`hidden_act` `gelu`"),
        ("use_sliding_window", json!(true), "`use_sliding_window`"),
        (
            "rope_scaling",
            json!({"type": "yarn", "factor": 4.0}),
            "`rope_scaling` type `yarn`",
        ),
        (
            "rope_parameters",
            json!({"rope_type": "dynamic", "rope_theta": 10000.0}),
            "`rope_parameters.rope_type` `dynamic`",
        ),
        ("head_dim", json!(16), "`head_dim` 16"),
    ];
    for (key, value, want) in cases {
        let err = config_error(key, value);
        assert!(
            err.contains(want) && err.contains("config.json"),
            "{key}: {err}"
        );
    }
    // The spellings of plain RoPE and the fixture's own head_dim still load.
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = fixtures().join("tiny_tied").join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src).expect("read")).expect("json");
    cfg["rope_scaling"] = json!(null);
    let hd = cfg["hidden_size"].as_u64().expect("hidden")
        / cfg["num_attention_heads"].as_u64().expect("heads");
    cfg["head_dim"] = json!(hd);
    let p = tmp.path().join("config.json");
    std::fs::write(&p, cfg.to_string()).expect("write");
    Qwen2Config::load(&p).expect("plain RoPE config loads");
}
