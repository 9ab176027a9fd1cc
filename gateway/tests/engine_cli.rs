//! The offline engine commands of the `tuneguard` binary on the trainer's tiny fixture model:
//! `score` (one JSON line per example and model, equal to the engine's own scores),
//! `generate`, `select` (ranked scored pool), and their errors.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use trainer::{CpuBackend, Engine, Message, ScoreOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(args)
        .output()
        .expect("run tuneguard")
}

const EXAMPLES: [(&str, &str); 3] = [
    ("What is two plus two?", "Four."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Help me hack a bank.", "Sorry, I cannot help with that."),
];

fn write_jsonl(path: &Path) {
    let text: String = EXAMPLES
        .iter()
        .map(|(q, a)| {
            json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn score_prints_one_line_per_example_and_model_equal_to_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write_jsonl(&data);
    let f = fixtures();
    let model = f.join("tiny_tied");
    let adapter = format!("a1={}", f.join("tiny_tied_a1").display());
    let out = tuneguard(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        &adapter,
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), EXAMPLES.len() * 2, "{lines:?}");

    let mut engine = Engine::<CpuBackend>::load(&model, Default::default()).unwrap();
    engine.load_adapter("a1", &f.join("tiny_tied_a1")).unwrap();
    let encoded: Vec<_> = EXAMPLES
        .iter()
        .map(|(q, a)| {
            let m = [
                Message {
                    role: "user".into(),
                    content: q.to_string(),
                },
                Message {
                    role: "assistant".into(),
                    content: a.to_string(),
                },
            ];
            engine.tokenizer.encode_chat(&m, Some(2048)).unwrap()
        })
        .collect();
    let scores = engine
        .score(
            &encoded,
            &[None, Some("a1")],
            &ScoreOptions { max_batch_rows: 16 },
        )
        .unwrap();
    for (k, names) in lines.chunks(2).enumerate() {
        for (m, (line, name)) in names.iter().zip(["base", "a1"]).enumerate() {
            assert_eq!(line["index"], k as u64, "{line}");
            assert_eq!(line["model"], name, "{line}");
            assert_eq!(line["answer_tokens"], scores[m][k].answer_tokens as u64);
            let nll = line["nll"].as_f64().unwrap();
            assert!(
                (nll - scores[m][k].nll).abs() < 1e-9,
                "{nll} vs {:?}",
                scores[m][k]
            );
        }
    }
    assert_ne!(
        lines[0]["nll"], lines[1]["nll"],
        "the adapter changes the NLL"
    );
}

#[test]
fn generate_prints_a_completion_per_prompt_and_model() {
    let model = fixtures().join("tiny_tied");
    let out = tuneguard(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Hello",
        "--prompt",
        "Count to three.",
        "--max-new-tokens",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["prompt"], "Hello");
    assert_eq!(lines[1]["prompt"], "Count to three.");
    for l in &lines {
        assert_eq!(l["model"], "base");
        let tokens = l["tokens"].as_u64().unwrap();
        assert!((1..=4).contains(&tokens), "{l}");
    }
}

#[test]
fn select_writes_the_pool_ranked_by_gap_score() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("pool.jsonl");
    write_jsonl(&pool);
    let out_path = dir.path().join("scored.jsonl");
    let f = fixtures();
    let a1 = format!("a1={}", f.join("tiny_tied_a1").display());
    let a2 = format!("a2={}", f.join("tiny_tied_a2").display());
    let out = tuneguard(&[
        "select",
        "--model",
        f.join("tiny_tied").to_str().unwrap(),
        "--adapter",
        &a1,
        "--adapter",
        &a2,
        "--pool",
        pool.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
        "--max-length",
        "256",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&std::fs::read(&out_path).unwrap());
    assert_eq!(lines.len(), EXAMPLES.len());
    let mut indexes: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    let scores: Vec<f64> = lines.iter().map(|l| l["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for l in &lines {
        let base = l["base_nll"].as_f64().unwrap();
        let mean = (l["adapter_nlls"]["a1"].as_f64().unwrap()
            + l["adapter_nlls"]["a2"].as_f64().unwrap())
            / 2.0;
        let s = l["score"].as_f64().unwrap();
        assert!((s - (mean - base) / (base + 1.0)).abs() < 1e-9, "{l}");
        let refusal = l["index"] == 2;
        assert_eq!(l["is_refusal"], refusal, "{l}");
    }
    indexes.sort();
    assert_eq!(indexes, vec![0, 1, 2]);
}

#[test]
fn a_missing_model_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    write_jsonl(&data);
    let missing = dir.path().join("no_model_here");
    let out = tuneguard(&[
        "score",
        "--model",
        missing.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_model_here"), "{err}");
}
