//! Stage 1½ of the fixtures: writes a LoRA adapter with our own saver (random A and B, seeded)
//! into tests/fixtures/rust_saved_adapter, for make_fixtures.py --stage2 to load with PEFT.
//!
//! cargo run -p trainer --example write_rust_adapter

use burn::tensor::{backend::Backend, Distribution, Tensor};
use trainer::{CpuBackend, LoraAdapter, LoraConfig, LoraScaling, Qwen2Config, Target};

fn main() -> anyhow::Result<()> {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures");
    let device = Default::default();
    CpuBackend::seed(&device, 1234);
    let config = Qwen2Config::load(&fixtures.join("tiny_untied").join("config.json"))?;
    let lora = LoraConfig {
        rank: 3,
        alpha: 5.0,
        scaling: LoraScaling::RsLora,
        dropout: 0.0,
        targets: vec![Target::K, Target::O, Target::Up, Target::Down],
    };
    let mut adapter = LoraAdapter::<CpuBackend>::init(&config, lora, &device);
    for layer in &mut adapter.layers {
        for pair in layer.values_mut() {
            pair.b = Tensor::random(pair.b.dims(), Distribution::Normal(0.0, 0.3), &device);
        }
    }
    adapter.save_peft(&fixtures.join("rust_saved_adapter"), "tiny_untied")?;
    Ok(())
}
