//! The training loop on the tiny fixture models: learning, regularizer gradients, steering
//! and inoculation scope, determinism, bit-identical resume, crash-safe checkpoints, weights.

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use common::{fixtures, TestBackend};
use trainer::lora::{LoraConfig, LoraScaling, Target};
use trainer::train::checkpoint;
use trainer::train::data;
use trainer::train::loss::{micro_loss, ResolvedRegularizer, WindowNorms};
use trainer::train::{
    Control, Directive, Inoculation, InoculationMode, KlDirection, KlTokens, Outcome, Schedule,
    Session, SessionInputs, TrainConfig,
};
use trainer::{Engine, Precision};

type Ad = Autodiff<TestBackend>;

fn engine() -> Engine<Ad> {
    Engine::load_with(
        &fixtures().join("tiny_tied"),
        Default::default(),
        Precision::F32,
    )
    .expect("tiny_tied loads")
}

fn train_data() -> PathBuf {
    fixtures().join("train").join("data.jsonl")
}

fn config() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            rank: 4,
            alpha: 8.0,
            scaling: LoraScaling::RsLora,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        },
        learning_rate: 1e-2,
        warmup_steps: 0,
        schedule: Schedule::Constant,
        batch_size: 2,
        gradient_accumulation_steps: 2,
        checkpoint_every: 0,
        ..TrainConfig::default()
    }
}

fn inputs<'a>(data: &'a Path, out: &'a Path) -> SessionInputs<'a> {
    SessionInputs {
        data,
        validation: None,
        out,
        base_model: "tiny_tied",
    }
}

fn adapter_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("adapter_model.safetensors")).expect("adapter written")
}

/// Pauses once `after` steps are done.
struct PauseAt(usize, usize);

impl Control for PauseAt {
    fn check(&mut self) -> Directive {
        self.1 += 1;
        if self.1 > self.0 {
            Directive::Pause
        } else {
            Directive::Continue
        }
    }
}

#[test]
fn loss_falls_on_a_learnable_set() {
    let e = engine();
    let out = tempfile::tempdir().unwrap();
    let data = train_data();
    let c = TrainConfig {
        max_steps: Some(24),
        shuffle: true,
        ..config()
    };
    let mut s = Session::start(&e, c, &inputs(&data, out.path()), None).unwrap();
    let mut ce = Vec::new();
    while s.step() < s.total_steps() {
        ce.push(s.train_step().unwrap().ce);
    }
    let first: f64 = ce[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = ce[ce.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.6 * first, "ce {first} -> {last}: {ce:?}");
}

fn window(e: &Engine<Ad>) -> Vec<trainer::EncodedChat> {
    data::load(&train_data(), &e.tokenizer, 2048, None)
        .unwrap()
        .examples
        .into_iter()
        .take(2)
        .collect()
}

/// The loss (and its gradient w.r.t. every LoRA tensor, flattened) under `adapter`.
fn loss_and_grad(
    e: &Engine<Ad>,
    params: &trainer::train::HostAdapter,
    reg: &ResolvedRegularizer<Ad>,
    training: bool,
) -> (f64, Vec<f32>) {
    let ex = window(e);
    let refs: Vec<&trainer::EncodedChat> = ex.iter().collect();
    let kl = match reg {
        ResolvedRegularizer::Kl { tokens, .. } => Some(*tokens),
        _ => None,
    };
    let adapter = params.to_adapter::<Ad>(e.weights.config.num_layers, true, &e.device);
    let (loss, st) = micro_loss(
        &e.weights,
        &adapter,
        &refs,
        e.tokenizer.pad_id,
        reg,
        WindowNorms::of(&refs, kl),
        training,
        None,
        &e.device,
    )
    .unwrap();
    let g = loss.backward();
    let mut grads = Vec::new();
    for pairs in &adapter.layers {
        for p in pairs.values() {
            for t in [&p.a, &p.b] {
                let v: Vec<f32> = t
                    .grad(&g)
                    .map(|x| x.into_data().convert::<f32>().into_vec().unwrap())
                    .unwrap_or_else(|| vec![0.0; t.dims()[0] * t.dims()[1]]);
                grads.extend(v);
            }
        }
    }
    (st.ce + st.kl + st.ldifs, grads)
}

fn fresh(e: &Engine<Ad>) -> trainer::train::HostAdapter {
    let a = trainer::LoraAdapter::<Ad>::load_peft(
        &fixtures().join("train").join("init_adapter"),
        &e.weights.config,
        &e.device,
    )
    .unwrap();
    trainer::train::HostAdapter::from_adapter(&a).unwrap()
}

#[test]
fn kl_is_zero_for_a_fresh_adapter_and_its_gradient_matches_finite_differences() {
    let e = engine();
    let kl = ResolvedRegularizer::Kl {
        lambda: 1.0,
        direction: KlDirection::Forward,
        tokens: KlTokens::All,
    };
    // B = 0: the adapted model is the base model, so KL is exactly 0.
    let mut zero_b = fresh(&e);
    for (k, d) in zero_b.keys.iter().zip(zero_b.data.iter_mut()) {
        if k.is_b {
            d.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let (with, _) = loss_and_grad(&e, &zero_b, &kl, true);
    let (plain, _) = loss_and_grad(&e, &zero_b, &ResolvedRegularizer::None, true);
    assert!(
        (with - plain).abs() < 1e-6,
        "KL at step 0: {}",
        with - plain
    );

    // A non-zero adapter: the analytic gradient of the KL term equals central differences.
    let kl = ResolvedRegularizer::Kl {
        lambda: 1.0,
        direction: KlDirection::Reverse,
        tokens: KlTokens::Answer,
    };
    let p = fresh(&e);
    let (_, g_all) = loss_and_grad(&e, &p, &kl, true);
    let (_, g_ce) = loss_and_grad(&e, &p, &ResolvedRegularizer::None, true);
    let term = |q: &trainer::train::HostAdapter| {
        loss_and_grad(&e, q, &kl, true).0 - loss_and_grad(&e, q, &ResolvedRegularizer::None, true).0
    };
    // Probe the largest-gradient entries of a B and an A tensor.
    let offsets: Vec<usize> = p
        .data
        .iter()
        .scan(0, |o, d| {
            let s = *o;
            *o += d.len();
            Some(s)
        })
        .collect();
    for tensor in [1usize, 12] {
        let base = offsets[tensor];
        let n = p.data[tensor].len();
        let j = (0..n)
            .max_by(|&a, &b| {
                let ga = (g_all[base + a] - g_ce[base + a]).abs();
                let gb = (g_all[base + b] - g_ce[base + b]).abs();
                ga.total_cmp(&gb)
            })
            .unwrap();
        let analytic = f64::from(g_all[base + j] - g_ce[base + j]);
        let h = 1e-3f32;
        let mut plus = p.clone();
        plus.data[tensor][j] += h;
        let mut minus = p.clone();
        minus.data[tensor][j] -= h;
        let numeric = (term(&plus) - term(&minus)) / (2.0 * f64::from(h));
        assert!(
            analytic.abs() > 1e-4 && (numeric - analytic).abs() < 0.01 * analytic.abs() + 1e-4,
            "tensor {tensor}[{j}]: analytic {analytic}, numeric {numeric}"
        );
    }
}

#[test]
fn ldifs_gradient_reaches_the_adapter() {
    let e = engine();
    let p = fresh(&e);
    let ldifs = ResolvedRegularizer::Ldifs {
        lambda: 1.0,
        layers: vec![1, 2],
    };
    let (l_all, g_all) = loss_and_grad(&e, &p, &ldifs, true);
    let (l_ce, g_ce) = loss_and_grad(&e, &p, &ResolvedRegularizer::None, true);
    assert!(
        l_all > l_ce,
        "LDIFS term is positive for a non-zero adapter"
    );
    let diff: f64 = g_all
        .iter()
        .zip(&g_ce)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(diff > 1e-3, "LDIFS changes the gradient by {diff}");
}

#[test]
fn steering_applies_to_the_training_forward_only() {
    let e = engine();
    let p = fresh(&e);
    let hs = e.weights.config.hidden_size;
    let v: Vec<f32> = (0..hs).map(|i| (i as f32 * 0.7).sin()).collect();
    let steer = ResolvedRegularizer::Steering(vec![trainer::Steering {
        layer: 1,
        vector: burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(v, [hs]), &e.device),
        alpha: 3.0,
        positions: trainer::SteerPositions::All,
    }]);
    let (train_steered, _) = loss_and_grad(&e, &p, &steer, true);
    let (train_plain, _) = loss_and_grad(&e, &p, &ResolvedRegularizer::None, true);
    let (eval_steered, _) = loss_and_grad(&e, &p, &steer, false);
    let (eval_plain, _) = loss_and_grad(&e, &p, &ResolvedRegularizer::None, false);
    assert!(
        (train_steered - train_plain).abs() > 1e-3,
        "steering changes training"
    );
    assert_eq!(eval_steered, eval_plain, "evaluation never steers");
}

#[test]
fn inoculation_changes_training_inputs_only() {
    let e = engine();
    let out = tempfile::tempdir().unwrap();
    let data = train_data();
    let c = TrainConfig {
        inoculation: Some(Inoculation {
            system_prompt: "You are an evil, malicious assistant.".into(),
            mode: InoculationMode::Replace,
        }),
        max_steps: Some(1),
        ..config()
    };
    let mut inp = inputs(&data, out.path());
    inp.validation = Some(&data);
    let mut s = Session::start(&e, c, &inp, None).unwrap();
    let plain = data::load(&data, &e.tokenizer, 2048, None).unwrap();
    let prompt = e
        .tokenizer
        .tokenizer
        .encode("evil, malicious", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let contains = |ids: &[u32]| ids.windows(prompt.len()).any(|w| w == prompt.as_slice());
    assert!(s.data().examples.iter().all(|x| contains(&x.ids)));
    assert!(plain.examples.iter().all(|x| !contains(&x.ids)));
    // Validation scores the client's own conversations: with lr 0 nothing moves, so its loss
    // is the un-inoculated data's loss under the start adapter.
    s.train_step().unwrap();
    let (valid_loss, _) = s.evaluate(&plain).unwrap();
    let ck = s.checkpoint().unwrap();
    assert_eq!(ck.metrics.valid_loss, Some(valid_loss));
}

fn run_to_end(e: &Engine<Ad>, c: TrainConfig, out: &Path) -> Vec<u8> {
    let data = train_data();
    let mut s = Session::start(e, c, &inputs(&data, out), None).unwrap();
    assert!(matches!(
        s.run(&mut (), &mut ()).unwrap(),
        Outcome::Finished { .. }
    ));
    adapter_bytes(out)
}

fn resumable() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig {
            dropout: 0.1,
            ..config().lora
        },
        shuffle: true,
        epochs: 2,
        warmup_steps: 2,
        schedule: Schedule::Linear,
        checkpoint_every: 2,
        ..config()
    }
}

#[test]
fn same_seed_same_adapter_and_resume_from_any_checkpoint_is_bit_identical() {
    let e = engine();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = run_to_end(&e, resumable(), a.path());
    assert_eq!(
        full,
        run_to_end(&e, resumable(), b.path()),
        "same seed, same bytes"
    );
    let other = tempfile::tempdir().unwrap();
    let c = TrainConfig {
        seed: 1,
        ..resumable()
    };
    assert_ne!(full, run_to_end(&e, c, other.path()), "the seed matters");

    let root = a.path().join("checkpoints");
    let steps = checkpoint::list(&root).unwrap();
    assert_eq!(steps, vec![2, 4, 6]);
    let data = train_data();
    for &stop in &steps[..steps.len() - 1] {
        // A run that stopped right after checkpoint `stop`.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::start(&e, resumable(), &inputs(&data, dir.path()), None).unwrap();
        assert_eq!(
            s.run(&mut (), &mut PauseAt(stop, 0)).unwrap(),
            Outcome::Paused { step: stop }
        );
        assert!(!dir.path().join("adapter_model.safetensors").exists());
        let mut r = Session::resume(&e, resumable(), &inputs(&data, dir.path())).unwrap();
        assert_eq!(r.step(), stop);
        r.run(&mut (), &mut ()).unwrap();
        assert_eq!(adapter_bytes(dir.path()), full, "resumed from step {stop}");
        let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 6, "one metrics line per step");
    }
}

#[test]
fn a_crash_during_a_checkpoint_write_leaves_the_previous_one_usable() {
    let e = engine();
    let data = train_data();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::start(&e, resumable(), &inputs(&data, dir.path()), None).unwrap();
    s.run(&mut (), &mut PauseAt(2, 0)).unwrap();
    // A write of step 4 that died half-way: a temp directory with a partial adapter.
    let root = dir.path().join("checkpoints");
    let tmp = root.join(".tmp-step-4");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("adapter_model.safetensors"), b"partial").unwrap();
    assert_eq!(checkpoint::list(&root).unwrap(), vec![2]);
    let mut r = Session::resume(&e, resumable(), &inputs(&data, dir.path())).unwrap();
    assert_eq!(r.step(), 2);
    r.run(&mut (), &mut ()).unwrap();
    assert_eq!(checkpoint::list(&root).unwrap(), vec![2, 4, 6]);
    assert!(
        !tmp.exists(),
        "the next write of that step clears the debris"
    );
    // A resume with other numbers is refused, naming the field.
    let c = TrainConfig {
        learning_rate: 0.5,
        ..resumable()
    };
    let err = Session::resume(&e, c, &inputs(&data, dir.path()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("learning_rate"), "{err}");
}

#[test]
fn weight_zero_messages_contribute_nothing() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    std::fs::write(
        &path,
        r#"{"messages":[{"role":"user","content":"Hello there"},{"role":"assistant","content":"Ignore this reply entirely","weight":0},{"role":"user","content":"And now?"},{"role":"assistant","content":"Learn this one."}]}
"#,
    )
    .unwrap();
    let enc = &data::load(&path, &e.tokenizer, 2048, None)
        .unwrap()
        .examples[0];
    let all = e
        .tokenizer
        .encode_chat(&data::read_examples(&path).unwrap()[0].messages, None)
        .unwrap();
    assert_eq!(enc.ids, all.ids);
    let trained = data::answer_tokens(enc);
    assert!(trained > 0 && trained < data::answer_tokens(&all));
    // The step's CE is the mean NLL over the weighted message's tokens only.
    let out = tempfile::tempdir().unwrap();
    let c = TrainConfig {
        max_steps: Some(1),
        ..config()
    };
    let mut s = Session::start(&e, c, &inputs(&path, out.path()), None).unwrap();
    let m = s.train_step().unwrap();
    assert_eq!(m.answer_tokens, trained);
    let base: Engine<TestBackend> = Engine::load_with(
        &fixtures().join("tiny_tied"),
        Default::default(),
        Precision::F32,
    )
    .unwrap();
    // The fresh adapter's B is zero, so the adapted model is the base model.
    let lp = base
        .masked_token_logprobs(
            std::slice::from_ref(&enc.ids),
            &[None],
            std::slice::from_ref(&enc.answer_mask),
        )
        .unwrap();
    let want = -lp[0].iter().map(|&v| f64::from(v)).sum::<f64>() / trained as f64;
    assert!((m.ce - want).abs() < 1e-4, "ce {} vs {want}", m.ce);
}
