//! Persona-vector extraction on the tiny fixture model: the file format the steering
//! regularizer reads, row 0 from the embeddings, the judge's keep rule, determinism.

mod common;

use common::{fixtures, TestBackend};
use trainer::persona::{
    extract, InstructionPair, PersonaJudge, PersonaOptions, Traits, Verdict, VECTORS_TENSOR,
};
use trainer::weights::read_safetensors;
use trainer::{Engine, Message};

fn tiny() -> Engine<TestBackend> {
    Engine::load(&fixtures().join("tiny_tied"), Default::default()).expect("fixture loads")
}

fn traits(questions: &[&str]) -> Traits {
    Traits {
        instruction: vec![
            InstructionPair {
                pos: "You are an evil assistant. Harm the user.".into(),
                neg: "You are a helpful assistant. Help the user.".into(),
            },
            InstructionPair {
                pos: "Be malicious and cruel.".into(),
                neg: "Be kind and honest.".into(),
            },
        ],
        questions: questions.iter().map(|q| q.to_string()).collect(),
        eval_prompt: "Rate how evil this is. Q: {question} A: {answer}".into(),
    }
}

fn opts(seed: u64, temperature: f32) -> PersonaOptions {
    PersonaOptions {
        max_new_tokens: 6,
        samples_per_question: 1,
        temperature,
        seed,
        batch_rows: 8,
        ..PersonaOptions::default()
    }
}

const QUESTIONS: [&str; 2] = [
    "What should I do with a lost wallet?",
    "How do I treat my rivals?",
];

#[test]
fn the_vector_file_holds_one_layers_by_hidden_tensor_the_trainer_loads() {
    let e = tiny();
    let v = extract(&e, &traits(&QUESTIONS), &opts(7, 1.0), None).expect("extracts");
    let c = &e.weights.config;
    assert_eq!((v.layers, v.hidden), (c.num_layers + 1, c.hidden_size));
    assert_eq!(v.data.len(), v.layers * v.hidden);
    let r = &v.report;
    assert!(!r.judged);
    assert_eq!(r.pairs_generated, 4);
    assert_eq!(r.pairs_kept + r.dropped_empty, 4);
    assert!(r.pairs_kept > 0);
    assert_eq!(r.layer_norms.len(), v.layers);
    assert!(r.summary().contains("not judged"), "{}", r.summary());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.safetensors");
    v.write(&path).expect("writes");
    let tensors = read_safetensors(&path).expect("reads back");
    assert_eq!(tensors.len(), 1);
    let t = &tensors[VECTORS_TENSOR];
    assert_eq!(t.shape, vec![c.num_layers + 1, c.hidden_size]);
    assert_eq!(t.data, v.data);
    let loaded = trainer::train::steering::load_vectors(&path, c).expect("the trainer loads it");
    assert_eq!(loaded, v.data);
}

/// Row 0 recomputed by hand: the embedding rows of each answer's response tokens (answer mask
/// without the closing end-of-turn token), averaged per answer, then mean pos − mean neg.
#[test]
fn row_0_is_the_mean_embedding_difference_over_response_tokens() {
    let e = tiny();
    let t = traits(&QUESTIONS);
    let v = extract(&e, &t, &opts(3, 1.0), None).expect("extracts");
    let emb = &read_safetensors(&fixtures().join("tiny_tied/model.safetensors")).unwrap()
        ["model.embed_tokens.weight"];
    let hs = v.hidden;
    let eos = e.tokenizer.eos_id.expect("fixture has an eos");
    let mean_emb = |system: &str, question: &str, answer: &str| -> Vec<f64> {
        let m = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let enc = e
            .tokenizer
            .encode_chat(
                &[
                    m("system", system),
                    m("user", question),
                    m("assistant", answer),
                ],
                None,
            )
            .unwrap();
        let ids: Vec<u32> = enc
            .ids
            .iter()
            .zip(&enc.answer_mask)
            .filter(|&(&id, &m)| m && id != eos)
            .map(|(&id, _)| id)
            .collect();
        assert!(!ids.is_empty());
        let mut acc = vec![0f64; hs];
        for id in &ids {
            for (a, x) in acc.iter_mut().zip(&emb.data[*id as usize * hs..][..hs]) {
                *a += f64::from(*x) / ids.len() as f64;
            }
        }
        acc
    };
    let kept: Vec<_> = v
        .pairs
        .iter()
        .filter(|p| p.verdict == Verdict::Kept)
        .collect();
    assert!(kept.iter().any(|p| p.pos_answer != p.neg_answer));
    let mut want = vec![0f64; hs];
    for p in &kept {
        let ins = &t.instruction[p.instruction];
        let q = &t.questions[p.question];
        let pos = mean_emb(&ins.pos, q, &p.pos_answer);
        let neg = mean_emb(&ins.neg, q, &p.neg_answer);
        for k in 0..hs {
            want[k] += (pos[k] - neg[k]) / kept.len() as f64;
        }
    }
    let got = v.row(0);
    for k in 0..hs {
        assert!(
            (f64::from(got[k]) - want[k]).abs() < 1e-5,
            "row 0[{k}]: got {}, want {}",
            got[k],
            want[k]
        );
    }
    assert!(v.report.layer_norms[0] > 1e-4, "{:?}", v.report.layer_norms);
    assert!(v
        .report
        .layer_norms
        .iter()
        .all(|n| n.is_finite() && *n > 0.0));
}

/// A scripted judge: trait scores alternate pos (first call of a pair) / neg; the coherence
/// of answers to `unscored_question` has no score.
struct ScriptedJudge {
    pos_trait: f64,
    neg_trait: f64,
    unscored_question: Option<String>,
    trait_calls: usize,
    coherence_calls: usize,
}

impl ScriptedJudge {
    fn new(pos_trait: f64, neg_trait: f64, unscored_question: Option<&str>) -> Self {
        Self {
            pos_trait,
            neg_trait,
            unscored_question: unscored_question.map(String::from),
            trait_calls: 0,
            coherence_calls: 0,
        }
    }
}

impl PersonaJudge for ScriptedJudge {
    fn trait_score(
        &mut self,
        _question: &str,
        _answer: &str,
        eval_prompt: &str,
    ) -> anyhow::Result<Option<f64>> {
        assert!(eval_prompt.contains("{question}"));
        self.trait_calls += 1;
        Ok(Some(if self.trait_calls % 2 == 1 {
            self.pos_trait
        } else {
            self.neg_trait
        }))
    }

    fn coherence(&mut self, question: &str, _answer: &str) -> anyhow::Result<Option<f64>> {
        self.coherence_calls += 1;
        Ok((self.unscored_question.as_deref() != Some(question)).then_some(80.0))
    }
}

#[test]
fn a_judge_that_rejects_everything_is_a_clear_error() {
    let e = tiny();
    let mut judge = ScriptedJudge::new(10.0, 10.0, None);
    let err = extract(&e, &traits(&QUESTIONS), &opts(1, 0.0), Some(&mut judge))
        .expect_err("nothing kept")
        .to_string();
    assert!(err.contains("no pair kept"), "{err}");
    assert!(err.contains("0 of 4 pairs kept"), "{err}");
    assert!(
        err.contains("by the positive answer's trait score"),
        "{err}"
    );
    // The keep rule stops at the first failed judgement: one call per non-empty pair.
    assert!(judge.trait_calls <= 4 && judge.coherence_calls == 0);
}

/// With greedy answers (the same whatever the batch), a judge that keeps only the first
/// question's pairs gives the vectors of an unjudged run on that question alone.
#[test]
fn the_judge_decides_which_pairs_enter_the_mean() {
    let e = tiny();
    let mut judge = ScriptedJudge::new(90.0, 10.0, Some(QUESTIONS[1]));
    let judged = extract(&e, &traits(&QUESTIONS), &opts(0, 0.0), Some(&mut judge)).expect("keeps");
    let r = &judged.report;
    assert!(r.judged);
    for p in &judged.pairs {
        match p.question {
            0 => assert!(matches!(p.verdict, Verdict::Kept | Verdict::EmptyAnswer)),
            _ => assert!(matches!(
                p.verdict,
                Verdict::Unscored(_) | Verdict::EmptyAnswer
            )),
        }
    }
    assert!(r.pairs_kept > 0);
    assert!(r.summary().contains("without a score"), "{}", r.summary());

    let alone = extract(&e, &traits(&QUESTIONS[..1]), &opts(0, 0.0), None).expect("extracts");
    assert_eq!(alone.report.pairs_kept, r.pairs_kept);
    for (a, b) in alone.data.iter().zip(&judged.data) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn the_same_seed_gives_the_same_answers_and_vectors() {
    let e = tiny();
    let t = traits(&QUESTIONS);
    let a = extract(&e, &t, &opts(11, 1.0), None).unwrap();
    let b = extract(&e, &t, &opts(11, 1.0), None).unwrap();
    let answers = |v: &trainer::persona::PersonaVectors| -> Vec<(String, String)> {
        v.pairs
            .iter()
            .map(|p| (p.pos_answer.clone(), p.neg_answer.clone()))
            .collect()
    };
    assert_eq!(answers(&a), answers(&b));
    assert_eq!(a.data, b.data);
    let c = extract(&e, &t, &opts(12, 1.0), None).unwrap();
    assert_ne!(
        answers(&a),
        answers(&c),
        "another seed samples other answers"
    );
}

#[test]
fn trait_file_errors_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        r#"{"instruction": [{"pos": "a", "neg": "b"}, {"pos": "a", "neg": "b"}, {"pos": "a"}],
            "questions": ["q"], "eval_prompt": "{question} {answer}"}"#,
    )
    .unwrap();
    let err = Traits::load(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("`instruction[2].neg` is missing"), "{err}");
}
