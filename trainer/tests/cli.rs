//! `score` CLI: one JSON line per example and model, in input order, matching the engine.

mod common;

use common::{engine_in, fixtures, goldens};
use trainer::cli::{run_score, DeviceKind, ScoreArgs};
use trainer::Precision;

fn args(data: std::path::PathBuf, output: std::path::PathBuf) -> ScoreArgs {
    ScoreArgs {
        model: fixtures().join("tiny_tied"),
        adapters: vec![("evil".into(), fixtures().join("tiny_tied_a1"))],
        data,
        output: Some(output),
        max_len: 2048,
        batch_rows: 3,
        chunk_examples: 2,
        device: DeviceKind::Cpu,
        precision: None,
    }
}

#[test]
fn score_writes_lines_in_input_order_for_base_and_adapters() {
    score_matches_engine(None, Precision::F32);
}

#[test]
fn score_precision_flag_runs_the_bf16_path() {
    score_matches_engine(Some(Precision::Bf16), Precision::Bf16);
}

/// Runs `score` with `--precision flag` and checks every line against the engine in `want`.
fn score_matches_engine(flag: Option<Precision>, want_precision: Precision) {
    let g = goldens();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data.jsonl");
    let lines: Vec<String> = g
        .template
        .iter()
        .map(|c| serde_json::json!({ "messages": c.messages }).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").expect("write");
    let out = tmp.path().join("out.jsonl");
    run_score(ScoreArgs {
        precision: flag,
        ..args(data, out.clone())
    })
    .expect("scores");
    let text = std::fs::read_to_string(&out).expect("read");
    let got: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(got.len(), g.template.len() * 2);
    let e = engine_in("tiny_tied", want_precision);
    let enc: Vec<_> = g
        .template
        .iter()
        .map(|c| e.tokenizer.encode_chat(&c.messages, None).expect("enc"))
        .collect();
    let want = e
        .score(&enc, &[None, Some("a1")], &Default::default())
        .expect("score");
    for (k, line) in got.iter().enumerate() {
        let (i, m) = (k / 2, k % 2);
        assert_eq!(line["index"], i);
        assert_eq!(line["model"], ["base", "evil"][m]);
        assert_eq!(line["answer_tokens"], want[m][i].answer_tokens);
        let nll = line["nll"].as_f64().expect("nll");
        assert!((nll - want[m][i].nll).abs() < 1e-6, "line {k}");
    }
}

#[test]
fn bad_jsonl_line_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data.jsonl");
    std::fs::write(
        &data,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{not json}\n",
    )
    .expect("write");
    let err = run_score(args(data, tmp.path().join("o.jsonl"))).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("data.jsonl:2"), "{msg}");
}

#[test]
fn generate_runs_for_base_and_adapter() {
    let args = trainer::cli::GenerateArgs {
        model: fixtures().join("tiny_untied"),
        adapters: vec![("a1".into(), fixtures().join("tiny_untied_a1"))],
        prompts: vec!["How do I bake bread?".into()],
        max_new_tokens: 4,
        temperature: 0.7,
        top_p: 0.9,
        seed: 3,
        device: DeviceKind::Cpu,
        precision: None,
    };
    trainer::cli::run_generate(args).expect("generates");
}

#[test]
fn adapter_argument_needs_name_and_dir() {
    assert!(trainer::cli::parse_named_dir("evil=/tmp/x").is_ok());
    assert!(trainer::cli::parse_named_dir("base=/tmp/x").is_err());
    assert!(trainer::cli::parse_named_dir("/tmp/x").is_err());
}
