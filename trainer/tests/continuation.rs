//! `Engine::continuation_logprobs` (a prefix once, its continuations on copies of its KV cache)
//! equals brute force: each `prefix ++ continuation` scored whole. And the engine-served
//! judge's teacher-forced expectation over the answers 0..=100 built on it equals the brute
//! force expectation.

mod common;

use common::engine;
use trainer::{Message, ScoreOptions};

fn brute(
    e: &trainer::Engine<common::TestBackend>,
    prefix: &[u32],
    c: &[u32],
    adapter: Option<&str>,
) -> f64 {
    let mut seq = prefix.to_vec();
    seq.extend_from_slice(c);
    let lps = e.token_logprobs(&[seq], &[adapter]).expect("scores")[0].clone();
    lps[prefix.len() - 1..].iter().map(|&v| f64::from(v)).sum()
}

#[test]
fn continuations_on_a_shared_prefix_equal_whole_sequences() {
    let e = engine("tiny_untied");
    let prefix: Vec<u32> = vec![5, 17, 42, 8, 99, 3];
    // Different lengths (one token, several), repeated tokens, padding in the batch.
    let conts: Vec<Vec<u32>> = vec![
        vec![7],
        vec![7, 7, 7],
        vec![120, 4],
        vec![1, 2, 3, 4, 5],
        vec![64],
    ];
    for adapter in [None, Some("a1")] {
        let got = e
            .continuation_logprobs(&prefix, &conts, adapter)
            .expect("continuations");
        assert_eq!(got.len(), conts.len());
        for (c, g) in conts.iter().zip(&got) {
            let want = brute(&e, &prefix, c, adapter);
            assert!(
                (g - want).abs() <= 1e-4,
                "{adapter:?} {c:?}: got {g}, want {want}"
            );
            assert!(*g < 0.0);
        }
    }
    // The adapter changes the answer (so the test would see an adapter that was ignored).
    let base = e.continuation_logprobs(&prefix, &conts, None).unwrap();
    let a1 = e
        .continuation_logprobs(&prefix, &conts, Some("a1"))
        .unwrap();
    assert!(base.iter().zip(&a1).any(|(b, a)| (b - a).abs() > 1e-3));
    // Bad input is an error, not a panic.
    assert!(e.continuation_logprobs(&[], &conts, None).is_err());
    assert!(e.continuation_logprobs(&prefix, &[vec![]], None).is_err());
    assert!(e
        .continuation_logprobs(&prefix, &[vec![u32::MAX]], None)
        .is_err());
    assert!(e
        .continuation_logprobs(&prefix, &[], None)
        .unwrap()
        .is_empty());
}

#[test]
fn the_teacher_forced_judge_expectation_equals_brute_force() {
    let e = engine("tiny_tied");
    let tok = &e.tokenizer;
    let prompt = vec![Message {
        role: "user".into(),
        content: "Rate the answer from 0 to 100. Answer with a number only.".into(),
    }];
    // Every candidate as the chat template tokenizes it: its answer tokens, end of turn
    // included, after the shared prompt prefix.
    let mut prefix: Option<Vec<u32>> = None;
    let mut conts = Vec::new();
    let mut chats = Vec::new();
    for k in 0..=100 {
        let mut m = prompt.clone();
        m.push(Message {
            role: "assistant".into(),
            content: k.to_string(),
        });
        let enc = tok.encode_chat(&m, None).expect("encodes");
        let start = enc.answer_mask.iter().position(|&b| b).expect("an answer");
        // The template may close the turn with more (a newline): not part of the answer.
        let end = start + enc.answer_mask[start..].iter().take_while(|&&b| b).count();
        assert!(!enc.answer_mask[end..].contains(&true), "one answer");
        let p = enc.ids[..start].to_vec();
        assert_eq!(
            prefix.get_or_insert_with(|| p.clone()),
            &p,
            "one shared prefix"
        );
        conts.push(enc.ids[start..end].to_vec());
        chats.push(enc);
    }
    let prefix = prefix.unwrap();
    // Multi-digit numbers are several tokens here, as with Qwen's and SmolLM's tokenizers.
    assert!(conts.iter().any(|c| c.len() > 2), "{:?}", &conts[100]);
    let fast = e
        .continuation_logprobs(&prefix, &conts, Some("a2"))
        .unwrap();
    // Brute force: every candidate chat scored whole (mean answer NLL × answer tokens).
    let scores = e
        .score(&chats, &[Some("a2")], &ScoreOptions::default())
        .expect("scores");
    let brute: Vec<f64> = scores[0]
        .iter()
        .map(|s| -s.nll * s.answer_tokens as f64)
        .collect();
    for (k, (f, b)) in fast.iter().zip(&brute).enumerate() {
        assert!((f - b).abs() <= 1e-4, "candidate {k}: {f} vs {b}");
    }
    // Σ k·p_k / Σ p_k (monitor::judge::teacher_forced_expectation, written out here).
    let expect = |lps: &[f64]| {
        let (w, m) = lps.iter().enumerate().fold((0.0, 0.0), |(w, m), (k, lp)| {
            (w + k as f64 * lp.exp(), m + lp.exp())
        });
        w / m
    };
    let (a, b) = (expect(&fast), expect(&brute));
    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    assert!((0.0..=100.0).contains(&a));
}
