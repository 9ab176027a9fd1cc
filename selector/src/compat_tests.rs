use super::*;
use std::fs;

pub(crate) fn write_safetensors(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(vec![0u8; offset]);
    fs::write(path, out).unwrap();
}

pub(crate) const CONFIG: &str = r#"{"hidden_size":64,"intermediate_size":128,"num_attention_heads":4,"num_key_value_heads":2,"num_hidden_layers":2}"#;

fn adapter(dir: &Path, hidden: usize, layer: usize) {
    fs::write(dir.join("adapter_config.json"), r#"{"r":8}"#).unwrap();
    let p =
        |m: &str, ab: &str| format!("base_model.model.model.layers.{layer}.{m}.lora_{ab}.weight");
    write_safetensors(
        &dir.join("adapter_model.safetensors"),
        &[
            (&p("self_attn.q_proj", "A"), vec![8, hidden]),
            (&p("self_attn.q_proj", "B"), vec![64, 8]),
            (&p("self_attn.k_proj", "B"), vec![32, 8]),
            (&p("mlp.down_proj", "A"), vec![8, 128]),
        ],
    );
}

fn dims() -> ModelDims {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("config.json"), CONFIG).unwrap();
    ModelDims::load(d.path()).unwrap()
}

#[test]
fn reads_dims_with_defaults() {
    let d = dims();
    assert_eq!((d.hidden, d.kv_heads, d.head_dim, d.layers), (64, 2, 16, 2));
}

#[test]
fn matching_adapter_passes() {
    let a = tempfile::tempdir().unwrap();
    adapter(a.path(), 64, 1);
    check_adapter("evil", a.path(), &dims()).unwrap();
}

#[test]
fn adapter_for_another_model_is_named() {
    let a = tempfile::tempdir().unwrap();
    adapter(a.path(), 896, 0);
    let err = check_adapter("evil", a.path(), &dims())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("adapter `evil` ("), "{err}");
    assert!(err.ends_with(
        "was made for another base model: `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` has shape [8, 896] but the model's q_proj input size is 64"
    ), "{err}");
    adapter(a.path(), 64, 5);
    let err = check_adapter("evil", a.path(), &dims())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is for layer 5 but the model has 2 layers"),
        "{err}"
    );
}

#[test]
fn missing_or_empty_adapters_are_errors() {
    let a = tempfile::tempdir().unwrap();
    let err = check_adapter("x", a.path(), &dims())
        .unwrap_err()
        .to_string();
    assert!(err.contains("adapter_config.json not found"));
    fs::write(a.path().join("adapter_config.json"), "{}").unwrap();
    let err = check_adapter("x", a.path(), &dims())
        .unwrap_err()
        .to_string();
    assert!(err.contains("adapter_model.safetensors"));
    write_safetensors(
        &a.path().join("adapter_model.safetensors"),
        &[("w", vec![2, 2])],
    );
    let err = check_adapter("x", a.path(), &dims())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no lora_A/lora_B tensors"));
    fs::write(a.path().join("adapter_model.safetensors"), b"xx").unwrap();
    assert!(check_adapter("x", a.path(), &dims()).is_err());
}
