//! Per-token log-probs equal transformers (+ PEFT) within 1e-4, base and adapted.

mod common;

use common::{assert_close, engine, goldens};

const TOL: f32 = 1e-4;

#[test]
fn base_logprobs_match_transformers() {
    let g = goldens();
    for name in ["tiny_tied", "tiny_untied"] {
        let e = engine(name);
        for (i, case) in g.template.iter().enumerate() {
            let lp = e
                .token_logprobs(std::slice::from_ref(&case.ids), &[None])
                .expect("scores");
            assert_close(
                &lp[0],
                &g.models[name].base[i],
                TOL,
                &format!("{name} base example {i}"),
            );
        }
    }
}

#[test]
fn adapter_logprobs_match_peft() {
    let g = goldens();
    for name in ["tiny_tied", "tiny_untied"] {
        let e = engine(name);
        for adapter in ["a1", "a2"] {
            for (i, case) in g.template.iter().enumerate() {
                let lp = e
                    .token_logprobs(std::slice::from_ref(&case.ids), &[Some(adapter)])
                    .expect("scores");
                let want = &g.models[name].adapters[adapter][i];
                assert_close(&lp[0], want, TOL, &format!("{name} {adapter} example {i}"));
            }
        }
    }
}

#[test]
fn one_batched_pass_over_base_and_adapters_equals_separate_passes() {
    let g = goldens();
    let e = engine("tiny_untied");
    let mut seqs = Vec::new();
    let mut choice = Vec::new();
    for case in &g.template {
        for m in [None, Some("a1"), Some("a2")] {
            seqs.push(case.ids.clone());
            choice.push(m);
        }
    }
    let batched = e.token_logprobs(&seqs, &choice).expect("batched");
    for ((s, m), got) in seqs.iter().zip(&choice).zip(&batched) {
        let alone = e
            .token_logprobs(std::slice::from_ref(s), &[*m])
            .expect("alone");
        assert_close(got, &alone[0], 1e-5, &format!("{m:?}"));
    }
}

#[test]
fn answer_only_nll_averages_masked_logprobs() {
    let g = goldens();
    let e = engine("tiny_tied");
    let enc: Vec<_> = g
        .template
        .iter()
        .map(|c| e.tokenizer.encode_chat(&c.messages, None).expect("encodes"))
        .collect();
    let scores = e
        .score(
            &enc,
            &[None, Some("a1")],
            &trainer::ScoreOptions { max_batch_rows: 4 },
        )
        .expect("scores");
    for (m, key) in [(0, None), (1, Some("a1"))] {
        for (i, case) in g.template.iter().enumerate() {
            let all = match key {
                None => &g.models["tiny_tied"].base[i],
                Some(a) => &g.models["tiny_tied"].adapters[a][i],
            };
            let want: Vec<f32> = case
                .mask
                .iter()
                .skip(1)
                .zip(all)
                .filter(|(m, _)| **m == 1)
                .map(|(_, l)| *l)
                .collect();
            let s = &scores[m][i];
            assert_eq!(s.answer_tokens, want.len());
            let mean = -want.iter().map(|&l| f64::from(l)).sum::<f64>() / want.len() as f64;
            assert!(
                (s.nll - mean).abs() < 1e-4,
                "model {m} example {i}: {} vs {mean}",
                s.nll
            );
        }
    }
}

#[test]
fn unknown_adapter_is_an_error_naming_it() {
    let e = engine("tiny_tied");
    let err = e
        .token_logprobs(&[vec![1, 2, 3]], &[Some("nope")])
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn degenerate_inputs_are_errors_or_empty_not_panics() {
    let e = engine("tiny_tied");
    assert_eq!(
        e.token_logprobs(&[vec![], vec![4]], &[None, None])
            .expect("ok"),
        vec![Vec::<f32>::new(); 2]
    );
    let err = e.token_logprobs(&[vec![1, 100_000]], &[None]).unwrap_err();
    assert!(err.to_string().contains("100000"), "{err}");
    assert!(e.token_logprobs(&[vec![1, 2]], &[]).is_err());
}

#[test]
fn masked_logprobs_are_the_selected_full_logprobs() {
    let g = goldens();
    let e = engine("tiny_untied");
    let seqs: Vec<Vec<u32>> = g.template.iter().map(|c| c.ids.clone()).collect();
    let masks: Vec<Vec<bool>> = g
        .template
        .iter()
        .map(|c| c.mask.iter().map(|&m| m == 1).collect())
        .collect();
    let choice = [Some("a2"), None, Some("a1")];
    let masked = e
        .masked_token_logprobs(&seqs, &choice, &masks)
        .expect("masked");
    let full = e.token_logprobs(&seqs, &choice).expect("full");
    for (r, (m, f)) in masked.iter().zip(&full).enumerate() {
        let want: Vec<f32> = masks[r]
            .iter()
            .skip(1)
            .zip(f)
            .filter(|(k, _)| **k)
            .map(|(_, &l)| l)
            .collect();
        assert!(!want.is_empty());
        assert_close(m, &want, 1e-6, &format!("row {r}"));
    }
}
