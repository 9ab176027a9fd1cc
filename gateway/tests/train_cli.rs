//! `tuneguard train` on the trainer's tiny fixture model: equal to PyTorch's reference
//! (transformers + PEFT + torch AdamW, `trainer/reference/make_train_fixtures.py`) within 2e-5
//! for plain training, KL, LDIFS and steering; PEFT output layout; bad input refused naming the
//! line, key or tensor with nothing left under --out; Ctrl-C checkpoints, exits 130 and
//! `--resume` finishes with the same adapter as an uninterrupted run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use trainer::weights::read_safetensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

fn train_fixtures() -> PathBuf {
    fixtures().join("train")
}

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args)
        .output()
        .expect("run tuneguard")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn train(case: &str, out: &Path) -> Output {
    train_with_policy(
        &train_fixtures()
            .join("cases")
            .join(case)
            .join("policy.toml"),
        out,
    )
}

fn train_with_policy(policy: &Path, out: &Path) -> Output {
    let f = train_fixtures();
    tuneguard(&[
        "train",
        "--model",
        s(&fixtures().join("tiny_tied")),
        "--data",
        s(&f.join("data.jsonl")),
        "--policy",
        s(policy),
        "--init-adapter",
        s(&f.join("init_adapter")),
        "--max-steps",
        "3",
        "--out",
        s(out),
    ])
}

#[test]
fn three_steps_equal_pytorch_for_plain_kl_ldifs_and_steering() {
    for case in ["plain", "kl", "ldifs", "steering"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let o = train(case, &out);
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = read_safetensors(&out.join("adapter_model.safetensors")).unwrap();
        let want = read_safetensors(
            &train_fixtures()
                .join("cases")
                .join(case)
                .join("expected")
                .join("adapter_model.safetensors"),
        )
        .unwrap();
        let mut keys: Vec<&String> = want.keys().collect();
        keys.sort();
        assert_eq!(got.len(), want.len(), "{case}: same PEFT tensor names");
        let mut worst = 0.0f32;
        for k in keys {
            let g = got.get(k).unwrap_or_else(|| panic!("{case}: missing {k}"));
            assert_eq!(g.shape, want[k].shape, "{case}: {k}");
            for (a, b) in g.data.iter().zip(&want[k].data) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst < 2e-5, "{case}: max abs diff {worst}");
        // Per-step terms equal the reference's too.
        let steps: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(
                train_fixtures()
                    .join("cases")
                    .join(case)
                    .join("expected")
                    .join("steps.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(metrics.len(), 3);
        for (m, r) in metrics.iter().zip(&steps) {
            for key in ["lr", "loss", "ce", "kl", "ldifs", "grad_norm"] {
                let (a, b) = (m[key].as_f64().unwrap(), r[key].as_f64().unwrap());
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{case} step {}: {key} {a} vs {b}",
                    m["step"]
                );
            }
            assert_eq!(m["answer_tokens"], r["tokens"], "{case}");
        }
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(cfg["r"], 4);
        assert!(out
            .join("checkpoints/step-3/optimizer.safetensors")
            .is_file());
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("checkpoints/step-3/state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["step"], 3);
        assert!(state["metrics"]["train_loss"].as_f64().unwrap() > 0.0);
    }
}

/// persona_vectors saves its vectors with `torch.save` (a bare tensor in a `.pt` file):
/// steer.pt holds steer.safetensors' tensor so (trainer/reference/make_pt_vectors.py), and
/// training with it gives the very same adapter and per-step metrics.
#[test]
fn steering_from_a_pt_file_trains_exactly_as_its_safetensors_twin() {
    let dir = tempfile::tempdir().unwrap();
    let steering = train_fixtures().join("cases/steering/policy.toml");
    let text = std::fs::read_to_string(&steering).unwrap();
    let twin = "vector = \"../../steer.safetensors\"";
    assert!(text.contains(twin));
    let pt = train_fixtures().join("steer.pt");
    let policy = write(
        dir.path(),
        "steer_pt.toml",
        &text.replace(twin, &format!("vector = {:?}", s(&pt))),
    );
    let (a, b) = (dir.path().join("st"), dir.path().join("pt"));
    for (o, out) in [
        (train("steering", &a), &a),
        (train_with_policy(&policy, &b), &b),
    ] {
        assert!(o.status.success(), "{}: {}", out.display(), stderr(&o));
    }
    let adapter = |d: &Path| read_safetensors(&d.join("adapter_model.safetensors")).unwrap();
    let (ta, tb) = (adapter(&a), adapter(&b));
    assert_eq!(ta.len(), tb.len());
    for (k, t) in &ta {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(t.shape, tb[k].shape, "{k}");
        assert_eq!(bits(&t.data), bits(&tb[k].data), "{k}: bit-identical");
    }
    let losses = |d: &Path| -> Vec<(f64, f64)> {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let m: Value = serde_json::from_str(l).unwrap();
                (
                    m["loss"].as_f64().unwrap(),
                    m["grad_norm"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(losses(&a).len(), 3);
    assert_eq!(losses(&a), losses(&b));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_is_refused_by_name_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("tiny_tied");
    let good = train_fixtures().join("data.jsonl");
    let run = |data: &Path, extra: &[&str], out: &Path| {
        let mut args = vec![
            "train",
            "--model",
            s(&model),
            "--data",
            s(data),
            "--out",
            s(out),
            "--max-steps",
            "1",
        ];
        args.extend_from_slice(extra);
        tuneguard(&args)
    };
    // No assistant message on line 2.
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n",
    );
    let out = dir.path().join("o1");
    let o = run(&bad, &[], &out);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing written for a refused run");

    // A policy key out of range.
    let pol = write(dir.path(), "p.toml", "[training]\nlearning_rate = -1.0\n");
    let out = dir.path().join("o2");
    let o = run(&good, &["--policy", s(&pol)], &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("training.learning_rate"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // A steering vector of the wrong shape.
    let vec_path = dir.path().join("v.safetensors");
    let mut t = std::collections::BTreeMap::new();
    t.insert("persona".to_string(), (vec![2usize, 32], vec![0.0f32; 64]));
    trainer::weights::write_safetensors(&vec_path, &t).unwrap();
    let pol = write(
        dir.path(),
        "steer.toml",
        "[regularizer]\ntype = \"steering\"\nlayers = [1]\nvector = \"v.safetensors\"\n",
    );
    let out = dir.path().join("o3");
    let o = run(&good, &["--policy", s(&pol)], &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("persona") && stderr(&o).contains("[3, 32]"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // An adapter made for another model (hidden 48, not 32).
    let other = dir.path().join("other_adapter");
    std::fs::create_dir(&other).unwrap();
    let init = train_fixtures().join("init_adapter");
    std::fs::copy(
        init.join("adapter_config.json"),
        other.join("adapter_config.json"),
    )
    .unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    for (k, t) in read_safetensors(&init.join("adapter_model.safetensors")).unwrap() {
        let shape: Vec<usize> = t
            .shape
            .iter()
            .map(|&d| if d == 32 { 48 } else { d })
            .collect();
        let n = shape.iter().product();
        tensors.insert(k, (shape, vec![0.01f32; n]));
    }
    trainer::weights::write_safetensors(&other.join("adapter_model.safetensors"), &tensors)
        .unwrap();
    let out = dir.path().join("o4");
    let o = run(&good, &["--init-adapter", s(&other)], &out);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("tensor `base_model.model.model.layers."),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn ctrl_c_checkpoints_and_resume_finishes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("tiny_tied");
    let data = train_fixtures().join("data.jsonl");
    let pol = write(
        dir.path(),
        "p.toml",
        "[training]\nlora_rank = 4\nlora_alpha = 8.0\nlearning_rate = 0.001\nbatch_size = 2\ngradient_accumulation_steps = 1\nepochs = 40\n[monitor]\ncheckpoint_every_steps = 1000\n",
    );
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--policy",
            s(&pol),
            "--out",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let full = dir.path().join("full");
    let o = tuneguard(&args(&full).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));

    let out = dir.path().join("interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args(&out))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The command announces the run on stderr once its Ctrl-C handler is in place.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(first.starts_with("training "), "{first}");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).ok();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    let steps = trainer::train::checkpoint::list(&out.join("checkpoints")).unwrap();
    assert_eq!(steps.len(), 1, "one checkpoint at the interruption: {rest}");
    assert!(steps[0] < 240, "interrupted before the end");
    assert!(!out.join("adapter_model.safetensors").exists());

    let mut a = args(&out);
    a.push("--resume".into());
    let o = tuneguard(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(full.join("adapter_model.safetensors")).unwrap(),
        "resumed after Ctrl-C at step {}",
        steps[0]
    );
}
