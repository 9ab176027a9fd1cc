//! LoRA dropout: applied to the adapter's input in a training forward only, as PEFT does.

mod common;

use burn::tensor::{backend::Backend, Tensor};
use common::{fixtures, goldens, TestBackend};
use trainer::{Engine, ForwardOptions, LoraAdapter, TokenBatch};

fn to_vec(t: Tensor<TestBackend, 3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

/// tiny_untied with its adapter a1 resident twice: `p0` (dropout 0) and `p30` (dropout 0.3).
fn engine() -> Engine<TestBackend> {
    let dir = fixtures().join("tiny_untied");
    let mut e = Engine::<TestBackend>::load(&dir, Default::default()).expect("loads");
    let load = |p: f64| {
        let mut a = LoraAdapter::<TestBackend>::load_peft(
            &fixtures().join("tiny_untied_a1"),
            &e.weights.config,
            &e.device,
        )
        .expect("adapter loads");
        a.config.dropout = p;
        a
    };
    let (p0, p30) = (load(0.0), load(0.3));
    e.insert_adapter("p0", p0);
    e.insert_adapter("p30", p30);
    e
}

fn hidden(e: &Engine<TestBackend>, rows: &[Option<&str>], training: bool) -> Vec<f32> {
    let ids = goldens().template[0].ids.clone();
    let seqs = vec![ids; rows.len()];
    let batch = TokenBatch::right_padded(&seqs, 0);
    let opts = ForwardOptions {
        training,
        ..e.options_for(rows).expect("adapters")
    };
    to_vec(e.weights.forward(&batch, &opts, None, &e.device).hidden)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn dropout_acts_in_a_training_forward_only_on_adapted_rows_and_follows_the_seed() {
    let e = engine();
    TestBackend::seed(&e.device, 7);
    let eval = hidden(&e, &[None, Some("p30")], false);
    let half = eval.len() / 2;
    // Scoring and generation never drop: the eval forward equals the dropout-0 adapter's.
    assert!(eval[half..] == hidden(&e, &[None, Some("p0")], false)[half..]);
    let train = hidden(&e, &[None, Some("p30")], true);
    // The base row is untouched; the adapted row moves.
    assert!(train[..half] == eval[..half]);
    assert!(max_diff(&train[half..], &eval[half..]) > 1e-3);
    // A training forward with dropout 0 is the eval forward.
    assert!(hidden(&e, &[Some("p0")], true) == hidden(&e, &[Some("p0")], false));

    // Masks come from the backend's RNG: the same seed gives the same masks, a new draw new
    // ones. (One test function: the RNG is process-wide and tests run on parallel threads.)
    TestBackend::seed(&e.device, 11);
    let a = hidden(&e, &[Some("p30")], true);
    let b = hidden(&e, &[Some("p30")], true);
    TestBackend::seed(&e.device, 11);
    let c = hidden(&e, &[Some("p30")], true);
    assert!(max_diff(&a, &b) > 1e-4, "a new draw gives new masks");
    assert!(
        a == c,
        "same seed, same masks (max diff {})",
        max_diff(&a, &c)
    );
}
