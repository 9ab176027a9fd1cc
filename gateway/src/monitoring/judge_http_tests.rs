use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A judge double on a plain socket: answers the `i`-th request with `replies[i]` (status,
/// body; the last repeats), recording request bodies.
fn serve(replies: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            log.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let (status, text) = replies[i.min(replies.len() - 1)].clone();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

fn completion(top: &[(&str, f64)]) -> String {
    let top: Vec<Value> = top
        .iter()
        .map(|(t, p)| json!({"token": t, "logprob": p.ln()}))
        .collect();
    json!({"choices": [{"logprobs": {"content": [{"token": "x", "logprob": 0.0, "top_logprobs": top}]}}]})
        .to_string()
}

fn config(url: &str) -> JudgeConfig {
    JudgeConfig {
        base_url: url.to_string(),
        model: "judge-x".into(),
        api_key_env: "TUNEGUARD_TEST_JUDGE_KEY_UNSET".into(),
        concurrency: 2,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn retries_transient_errors_scores_by_logprobs_and_caches() {
    let (url, seen) = serve(vec![
        (429, "{}".into()),
        (503, "{}".into()),
        (200, completion(&[("80", 0.5), ("90", 0.3), ("CODE", 0.2)])),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cache = JudgeCache::open(&dir.path().join("c.sqlite")).unwrap();
    let judge = HttpJudge::new(&config(&url), Some(cache)).unwrap();
    let got = judge.score("rate this {answer}").unwrap().unwrap();
    assert!(
        (got - (80.0 * 0.5 + 90.0 * 0.3) / 0.8).abs() < 1e-9,
        "{got}"
    );
    let body = seen.lock().unwrap()[2].clone();
    assert_eq!(body["max_tokens"], 1);
    assert_eq!(body["top_logprobs"], 20);
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["model"], "judge-x");
    // Cached: the endpoint is not asked again.
    let again = judge.score_all(&["rate this {answer}".to_string()]);
    assert_eq!(again[0], Ok(Some(got)));
    assert_eq!(seen.lock().unwrap().len(), 3);
    let s = judge.take_stats();
    assert_eq!((s.requests, s.cached, s.errors), (1, 1, 0));
}

#[test]
fn a_judge_that_keeps_failing_is_an_error_not_a_score() {
    let (url, seen) = serve(vec![(500, "{\"error\":\"down\"}".into())]);
    let judge = HttpJudge::new(&config(&url), None).unwrap();
    let r = judge.score_all(&["p1".into(), "p2".into()]);
    assert!(
        r.iter()
            .all(|x| matches!(x, Err(JudgeError::Unavailable { .. }))),
        "{r:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2 * ATTEMPTS as usize);
    let s = judge.take_stats();
    assert_eq!(s.errors, 2);
    assert!(s.first_error.unwrap().contains("HTTP 500"));
    // A 400 is not retried; a body without logprobs is a bad response.
    let (url, seen) = serve(vec![(200, "{\"choices\": []}".into())]);
    let judge = HttpJudge::new(&config(&url), None).unwrap();
    assert!(matches!(
        judge.score("p"),
        Err(JudgeError::BadResponse { .. })
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
}
