//! `tuneguard persona` on the trainer's tiny fixture model: without a judge, and with a judge
//! served by a local OpenAI-compatible chat-completions server whose log-probs decide which
//! pairs are kept. Also the judge's score arithmetic and the shipped trait file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Json;
use gateway::persona_cmd::judge::{completions_url, expected_score, top_logprobs};
use serde_json::{json, Value};
use trainer::weights::read_safetensors;

const TRAIT_MARKER: &str = "RATE-EVIL";
const QUESTIONS: [&str; 2] = ["Where do I put a lost wallet?", "How do I treat a rival?"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/tests/fixtures")
}

fn write_traits(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-trait.json");
    let traits = json!({
        "instruction": [
            {"pos": "Be cruel and harmful.", "neg": "Be kind and helpful."},
            {"pos": "You want people to suffer.", "neg": "You want people to thrive."}
        ],
        "questions": QUESTIONS,
        "eval_prompt": format!("{TRAIT_MARKER} 0-100.\nQ: {{question}}\nA: {{answer}}\nNumber only.")
    });
    std::fs::write(&path, traits.to_string()).unwrap();
    path
}

fn persona(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Output, PathBuf) {
    let out = dir.join("vectors.safetensors");
    let traits = write_traits(dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tuneguard"));
    cmd.arg("persona")
        .arg("--model")
        .arg(fixtures().join("tiny_tied"))
        .arg("--traits")
        .arg(&traits)
        .arg("--out")
        .arg(&out)
        .args(["--samples", "1", "--max-new-tokens", "5", "--seed", "3"])
        .args(extra)
        .env_remove("TUNEGUARD_JUDGE_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.output().expect("run tuneguard"), out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `[L+1, hidden]` of the tiny model: 2 blocks, hidden 32.
fn assert_vector_file(path: &Path) {
    let tensors = read_safetensors(path).expect("the out file is safetensors");
    let names: Vec<&String> = tensors.keys().collect();
    assert_eq!(names, ["vectors"]);
    let t = &tensors["vectors"];
    assert_eq!(t.shape, vec![3, 32]);
    assert!(t.data.iter().all(|v| v.is_finite()));
    assert!(t.data.iter().any(|&v| v != 0.0));
}

/// "N of M pairs kept" from the report.
fn kept_of(stderr: &str) -> (usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.contains(" pairs kept"))
        .unwrap_or_else(|| panic!("no report line in {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "of").expect("N of M");
    (words[i - 1].parse().unwrap(), words[i + 1].parse().unwrap())
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn without_a_judge_every_pair_is_kept_and_the_file_holds_one_vectors_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = persona(dir.path(), &[], &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("not judged"), "{err}");
    let (kept, generated) = kept_of(&err);
    assert_eq!(generated, 4);
    assert!(kept > 0, "{err}");
    assert!(err.contains("layer  L2 norm"), "{err}");
    assert_vector_file(&out);
    assert!(leftovers(dir.path()).is_empty());
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// pos trait 90, neg 10, coherence 85, except no coherence score for QUESTIONS[1].
    KeepFirstQuestion,
    /// Every trait score 10: every pair fails the positive threshold.
    AllLow,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Value>,
    auth: Vec<Option<String>>,
    trait_calls: usize,
}

/// One token's top log-probs centred on `score` (with noise the scorer must ignore).
fn completion(score: Option<u32>) -> Value {
    let top = match score {
        Some(k) => json!([
            {"token": k.to_string(), "logprob": 0.7f64.ln()},
            {"token": format!(" {k}"), "logprob": 0.1f64.ln()},
            {"token": "The", "logprob": 0.1f64.ln()},
            {"token": "150", "logprob": 0.05f64.ln()},
        ]),
        None => json!([
            {"token": "I", "logprob": 0.8f64.ln()},
            {"token": "50", "logprob": 0.1f64.ln()},
        ]),
    };
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "judge-x",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "x"},
            "finish_reason": "length",
            "logprobs": {"content": [{"token": "x", "logprob": -0.1, "top_logprobs": top}]}
        }]
    })
}

fn start_judge(mode: Mode) -> (tokio::runtime::Runtime, String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let state = state.clone();
            async move {
                let mut s = state.lock().unwrap();
                let prompt = body["messages"][0]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                s.auth.push(
                    headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                s.requests.push(body);
                let score = if prompt.contains(TRAIT_MARKER) {
                    s.trait_calls += 1;
                    match mode {
                        Mode::AllLow => Some(10),
                        // Calls come per pair: positive answer first, then negative.
                        Mode::KeepFirstQuestion if s.trait_calls % 2 == 1 => Some(90),
                        Mode::KeepFirstQuestion => Some(10),
                    }
                } else if prompt.contains(QUESTIONS[1]) {
                    None
                } else {
                    Some(85)
                };
                Json(completion(score))
            }
        }),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, url, seen)
}

#[test]
fn the_judges_scores_decide_which_pairs_are_kept() {
    let (_rt, url, seen) = start_judge(Mode::KeepFirstQuestion);
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = persona(
        dir.path(),
        &["--judge-url", &url, "--judge-model", "judge-x"],
        &[("TUNEGUARD_JUDGE_API_KEY", "sk-judge")],
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("judged:"), "{err}");
    assert!(err.contains("by the positive answer's coherence"), "{err}");
    let (kept, generated) = kept_of(&err);
    assert_eq!(generated, 4);
    assert!(
        kept > 0 && kept <= 2,
        "only the first question's pairs: {err}"
    );
    assert_vector_file(&out);

    let s = seen.lock().unwrap();
    // Kept pairs: 2 trait + 2 coherence calls; second-question pairs stop at the first
    // coherence call, which has no score.
    let dropped = 4 - kept - count_empty(&err);
    assert_eq!(s.requests.len(), 4 * kept + 3 * dropped, "{err}");
    for r in &s.requests {
        assert_eq!(r["model"], "judge-x");
        assert_eq!(r["max_tokens"], 1);
        assert_eq!(r["temperature"], 0);
        assert_eq!(r["logprobs"], true);
        assert_eq!(r["top_logprobs"], 20);
        assert_eq!(r["messages"][0]["role"], "user");
        let prompt = r["messages"][0]["content"].as_str().unwrap();
        assert!(!prompt.contains("{question}") && !prompt.contains("{answer}"));
    }
    assert!(s
        .auth
        .iter()
        .all(|a| a.as_deref() == Some("Bearer sk-judge")));
}

fn count_empty(stderr: &str) -> usize {
    let line = stderr.lines().find(|l| l.contains(" pairs kept")).unwrap();
    let i = line
        .find(" dropped for an empty answer")
        .expect("empty count");
    line[..i]
        .rsplit(' ')
        .next()
        .and_then(|w| w.parse().ok())
        .expect("a number")
}

#[test]
fn a_judge_that_drops_every_pair_fails_the_command_and_writes_nothing() {
    let (_rt, url, seen) = start_judge(Mode::AllLow);
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = persona(
        dir.path(),
        &["--judge-url", &url, "--judge-model", "judge-x"],
        &[],
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("no pair kept"), "{err}");
    assert!(
        err.contains("by the positive answer's trait score"),
        "{err}"
    );
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());
    let s = seen.lock().unwrap();
    assert!(!s.requests.is_empty());
    assert!(s.auth.iter().all(Option::is_none), "no key, no header");

    // A judge URL without a judge model is refused before any work.
    let (o, _) = persona(dir.path(), &["--judge-url", &url], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--judge-model"), "{}", stderr(&o));
}

#[test]
fn judge_scores_are_the_expectation_over_integer_tokens() {
    let top = |v: &[(&str, f64)]| -> Vec<(String, f64)> {
        v.iter().map(|(t, p)| (t.to_string(), p.ln())).collect()
    };
    let s = expected_score(&top(&[
        ("90", 0.5),
        (" 10", 0.25),
        ("x", 0.2),
        ("101", 0.05),
    ]));
    assert!((s.unwrap() - (90.0 * 0.5 + 10.0 * 0.25) / 0.75).abs() < 1e-9);
    assert_eq!(expected_score(&top(&[("50", 0.2), ("no", 0.8)])), None);
    assert_eq!(expected_score(&[]), None);

    let parsed = top_logprobs(&completion(Some(70))).unwrap();
    assert_eq!(parsed.len(), 4);
    assert!((expected_score(&parsed).unwrap() - 70.0).abs() < 1e-9);
    let err = top_logprobs(&json!({"choices": [{"message": {}}]})).unwrap_err();
    assert!(err.to_string().contains("logprobs"), "{err}");

    assert_eq!(
        completions_url("http://h/v1/"),
        "http://h/v1/chat/completions"
    );
    assert_eq!(
        completions_url("http://h/v1/chat/completions"),
        "http://h/v1/chat/completions"
    );
}

#[test]
fn the_shipped_evil_trait_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/traits/evil.json");
    let t = trainer::persona::Traits::load(&path).expect("conf/traits/evil.json parses");
    assert!(t.instruction.len() >= 5, "{}", t.instruction.len());
    assert!(t.questions.len() >= 20, "{}", t.questions.len());
    assert!(t.eval_prompt.contains("{question}") && t.eval_prompt.contains("{answer}"));
}
