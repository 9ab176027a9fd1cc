use super::*;
use crate::monitoring::record::{Cost, JudgeStats};
use trainer::EncodedChat;

fn chat(ids: &[u32], mask: &[bool]) -> EncodedChat {
    EncodedChat {
        ids: ids.to_vec(),
        answer_mask: mask.to_vec(),
        truncated: false,
    }
}

fn key_with(
    f: impl FnOnce(&mut (String, String, String, String, String, Vec<EncodedChat>)),
) -> String {
    let mut p = (
        "model-fp".to_string(),
        "F32 Cpu".to_string(),
        "EvalSets { .. }".to_string(),
        "{\"probe_pairs\":8}".to_string(),
        "seed 0".to_string(),
        vec![chat(&[1, 2, 3], &[false, true, true])],
    );
    f(&mut p);
    key(&KeyParts {
        model: &p.0,
        engine: &p.1,
        sets: &p.2,
        monitor: &p.3,
        settings: &p.4,
        holdout: &p.5,
    })
}

#[test]
fn the_key_is_stable_and_changes_with_every_input() {
    let base = key_with(|_| {});
    assert_eq!(base, key_with(|_| {}), "same inputs, same key");
    assert_eq!(base.len(), 64);
    let changed = [
        key_with(|p| p.0.push('x')),
        key_with(|p| p.1 = "Bf16 Cpu".into()),
        key_with(|p| p.2.push(' ')),
        key_with(|p| p.3 = "{\"probe_pairs\":9}".into()),
        key_with(|p| p.4 = "seed 1".into()),
        key_with(|p| p.5[0].ids[2] = 4),
        key_with(|p| p.5[0].answer_mask[1] = false),
        key_with(|p| p.5.push(chat(&[], &[]))),
        key_with(|p| p.5.clear()),
        // Field boundaries are length-prefixed: moving bytes between fields changes the key.
        key_with(|p| {
            p.0 = "model-fpF".into();
            p.1 = "32 Cpu".into();
        }),
    ];
    for (i, k) in changed.iter().enumerate() {
        assert_ne!(&base, k, "change {i} must change the key");
    }
}

fn step0(gap: f64) -> StepRecord {
    let mut rec = StepRecord::empty(0);
    rec.signals.alignment_probe_gap = Some(gap);
    rec.cost = Cost {
        eval_seconds: 12.5,
        ..Cost::default()
    };
    rec
}

#[test]
fn a_stored_step_0_comes_back_naming_the_job_that_measured_it() {
    let d = tempfile::tempdir().unwrap();
    let cache = BaselineCache::new(&d.path().join("cache"));
    assert!(cache.get("k").is_none(), "empty cache: a miss");
    let rec = step0(0.0);
    cache.put("k", "ftjob-first", &rec);
    let got = cache.get("k").expect("stored");
    assert_eq!(got.reused_from.as_deref(), Some("ftjob-first"));
    assert_eq!(
        StepRecord {
            reused_from: None,
            ..got.clone()
        },
        rec,
        "the same record otherwise, cost included"
    );
    assert!(cache.get("other").is_none());
    // A reused record is not stored again (it would rename its origin).
    cache.put("k2", "ftjob-second", &got);
    assert!(cache.get("k2").is_none());
}

#[test]
fn partial_or_failed_evaluations_are_never_shared() {
    let d = tempfile::tempdir().unwrap();
    let cache = BaselineCache::new(d.path());
    let mut failed = step0(0.0);
    failed.error = Some("the probe file is unreadable".into());
    let mut judge_failed = step0(0.0);
    judge_failed.judge = Some(JudgeStats {
        model: "judge".into(),
        errors: 1,
        ..JudgeStats::default()
    });
    let mut local_failed = step0(0.0);
    local_failed.local_judge = judge_failed.judge.clone();
    let mut later = step0(0.0);
    later.step = 4;
    for (i, r) in [failed, judge_failed, local_failed, later]
        .iter()
        .enumerate()
    {
        let k = format!("k{i}");
        cache.put(&k, "ftjob-x", r);
        assert!(cache.get(&k).is_none(), "record {i} must not be stored");
    }
    let mut judged = step0(0.0);
    judged.judge = Some(JudgeStats {
        model: "judge".into(),
        requests: 40,
        ..JudgeStats::default()
    });
    cache.put("judged", "ftjob-x", &judged);
    assert!(
        cache.get("judged").is_some(),
        "a fully judged step 0 is shared"
    );
}

#[test]
fn an_unreadable_entry_is_a_miss_and_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    let cache = BaselineCache::new(d.path());
    std::fs::write(d.path().join("k.json"), b"{ torn").unwrap();
    assert!(cache.get("k").is_none());
    cache.put("k", "ftjob-y", &step0(0.0));
    assert_eq!(
        cache.get("k").unwrap().reused_from.as_deref(),
        Some("ftjob-y")
    );
}

#[test]
fn the_model_fingerprint_follows_the_file_not_the_memo() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("model.gguf");
    std::fs::write(&f, b"GGUF weights one").unwrap();
    let a = model_fingerprint(&f).unwrap();
    assert_eq!(a, model_fingerprint(&f).unwrap(), "memoised");
    assert_eq!(
        a,
        selector::fingerprint::model_fingerprint(&f).unwrap(),
        "the selector's content fingerprint"
    );
    // Another content (and length): a new fingerprint, not the memoised one.
    std::fs::write(&f, b"GGUF weights two!").unwrap();
    let b = model_fingerprint(&f).unwrap();
    assert_ne!(a, b);
    assert_eq!(b, selector::fingerprint::model_fingerprint(&f).unwrap());
    assert!(model_fingerprint(&d.path().join("absent.gguf"))
        .unwrap_err()
        .contains("absent.gguf"));
}
