//! Hidden-state capture and additive steering hooks.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{engine, goldens};
use trainer::{ForwardOptions, SteerPositions, Steering, TokenBatch};

fn to_vec(t: Tensor<common::TestBackend, 3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

#[test]
fn response_steering_changes_only_response_positions() {
    let g = goldens();
    let e = engine("tiny_untied");
    let case = &g.template[0];
    let batch = TokenBatch::right_padded(std::slice::from_ref(&case.ids), 0);
    let response: Vec<bool> = case.mask.iter().map(|&m| m == 1).collect();
    let first = response.iter().position(|&r| r).expect("has an answer");
    let hs = e.weights.config.hidden_size;
    let v: Vec<f32> = (0..hs).map(|i| (i as f32 * 0.37).sin()).collect();
    let vector = Tensor::from_data(TensorData::new(v.clone(), [hs]), &e.device);
    let plain = ForwardOptions {
        capture: vec![0, 1, 2],
        ..ForwardOptions::default()
    };
    let steered = ForwardOptions {
        capture: vec![1],
        steering: vec![Steering {
            layer: 1,
            vector,
            alpha: 2.5,
            positions: SteerPositions::Response,
        }],
        response: Some(vec![response.clone()]),
        ..ForwardOptions::default()
    };
    let a = e.weights.forward(&batch, &plain, None, &e.device);
    let b = e.weights.forward(&batch, &steered, None, &e.device);
    assert_eq!(
        a.captured.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let h1 = to_vec(a.captured[1].1.clone());
    let s1 = to_vec(b.captured[0].1.clone());
    for (p, &is_resp) in response.iter().enumerate() {
        for i in 0..hs {
            let want = h1[p * hs + i] + if is_resp { 2.5 * v[i] } else { 0.0 };
            assert!((s1[p * hs + i] - want).abs() < 1e-5, "position {p} dim {i}");
        }
    }
    let (fa, fb) = (to_vec(a.hidden), to_vec(b.hidden));
    let diff = |p: usize| {
        (0..hs)
            .map(|i| (fa[p * hs + i] - fb[p * hs + i]).abs())
            .fold(0.0f32, f32::max)
    };
    assert!(
        (0..first).all(|p| diff(p) == 0.0),
        "prompt positions must be untouched"
    );
    assert!(diff(first) > 1e-3, "response positions must move");
}

#[test]
fn layer_zero_capture_is_the_embedding() {
    let e = engine("tiny_tied");
    let batch = TokenBatch::right_padded(&[vec![3, 4]], 0);
    let opts = ForwardOptions {
        capture: vec![0],
        ..ForwardOptions::default()
    };
    let out = e.weights.forward(&batch, &opts, None, &e.device);
    let cap = to_vec(out.captured[0].1.clone());
    let fixtures = common::fixtures()
        .join("tiny_tied")
        .join("model.safetensors");
    let t = trainer::weights::read_safetensors(&fixtures).expect("reads");
    let emb = &t["model.embed_tokens.weight"];
    let hs = e.weights.config.hidden_size;
    assert_eq!(cap[..hs], emb.data[3 * hs..4 * hs]);
    assert_eq!(cap[hs..], emb.data[4 * hs..5 * hs]);
}
