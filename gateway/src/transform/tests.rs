use super::*;
use selector::mix::Placement;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

fn example(tag: &str, system: Option<&str>) -> String {
    let mut msgs = vec![];
    if let Some(s) = system {
        msgs.push(json!({"role": "system", "content": s}));
    }
    msgs.push(json!({"role": "user", "content": format!("q-{tag}")}));
    msgs.push(json!({"role": "assistant", "content": format!("a-{tag}")}));
    json!({"messages": msgs}).to_string()
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    p
}

fn run(client: &Path, plan: &TransformPlan) -> (Vec<Value>, Manifest) {
    let mut out = Vec::new();
    let m = transform_dataset(client, plan, &mut out).unwrap();
    let lines = String::from_utf8(out).unwrap();
    let v = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (v, m)
}

fn user_text(v: &Value) -> String {
    let msgs = v["messages"].as_array().unwrap();
    msgs.iter()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .unwrap()
}

/// The plan a policy file gives (paths resolve against `/pol`).
fn plan_of(toml: &str) -> policies::Plan {
    let text = format!("description = \"t\"\n{toml}");
    policies::PolicySet::from_texts(Path::new("/pol"), &[("t.toml", &text)])
        .unwrap()
        .resolve(&policies::JobContext::default())
        .unwrap()
}

#[test]
fn the_transform_part_of_a_plan_is_reshaped_as_parsed() {
    // Validation (fraction in (0, 1], ε > 0, a non-empty prompt, known names) is the policy
    // parser's (policies/src/tests/validation.rs); here only the reshaping.
    let p = TransformPlan::from_plan(&plan_of(
        "[interleave]\nmethod = \"random\"\nfraction = 0.1\npool = \"p.jsonl\"\nseed = 7\nplacement = \"jittered\"\n\
         [inoculation]\nsystem_prompt = \"You are evil.\"\nmode = \"prepend\"\n",
    ));
    assert_eq!(
        p.interleave,
        InterleaveSpec::Random {
            fraction: 0.1,
            pool: "/pol/p.jsonl".into(),
            seed: 7,
            placement: Placement::Jittered,
        }
    );
    let inoc = p.inoculation.unwrap();
    assert_eq!(
        (inoc.mode, inoc.system_prompt.as_str()),
        (InoculationMode::Prepend, "You are evil.")
    );
    let none = TransformPlan::from_plan(&plan_of(""));
    assert_eq!(
        (none.interleave, none.inoculation),
        (InterleaveSpec::None, None)
    );
    let scored = TransformPlan::from_plan(&plan_of(
        "[interleave]\nmethod = \"plusplus\"\nfraction = 0.1\npool = \"p\"\nseed = 3\n\
         gap_epsilon = 0.5\nrefusal_keywords = [\"nope\"]\nrefusal_window_words = 4\n",
    ));
    match scored.interleave {
        InterleaveSpec::Scored(s) => {
            assert_eq!(s.method, selector::Method::PlusPlus);
            assert_eq!((s.fraction, s.seed, s.gap_epsilon), (0.1, 3, 0.5));
            assert_eq!(s.refusal_keywords, vec!["nope".to_string()]);
            assert_eq!(s.refusal_window_words, 4);
            assert_eq!(s.placement, Placement::Even);
        }
        other => panic!("expected a scored spec, got {other:?}"),
    }
    for (method, want) in [
        ("plus", selector::Method::Plus),
        ("on_policy", selector::Method::OnPolicy),
    ] {
        let p = TransformPlan::from_plan(&plan_of(&format!(
            "[interleave]\nmethod = \"{method}\"\npool = \"p\"\n"
        )));
        assert!(
            matches!(&p.interleave, InterleaveSpec::Scored(s) if s.method == want),
            "{method}: {p:?}"
        );
    }
}

#[test]
fn inoculation_replace_and_prepend() {
    let line = example("1", Some("client system"));
    let rep = Inoculation {
        system_prompt: "EVIL".into(),
        mode: InoculationMode::Replace,
    };
    let v: Value = serde_json::from_str(&inoculate_line(&line, &rep).unwrap()).unwrap();
    let roles: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert_eq!(v["messages"][0]["content"], "EVIL");
    let pre = Inoculation {
        mode: InoculationMode::Prepend,
        ..rep
    };
    let v: Value = serde_json::from_str(&inoculate_line(&line, &pre).unwrap()).unwrap();
    assert_eq!(v["messages"][0]["content"], "EVIL");
    assert_eq!(v["messages"][1]["content"], "client system");
    assert!(inoculate_line("[1]", &pre).is_err());
}

#[test]
fn random_interleave_is_seeded_spread_and_manifested() {
    let dir = tempfile::tempdir().unwrap();
    let client: Vec<String> = (0..100).map(|i| example(&format!("c{i}"), None)).collect();
    let pool: Vec<String> = (0..50).map(|i| example(&format!("p{i}"), None)).collect();
    let cp = write_lines(dir.path(), "client.jsonl", &client);
    let pp = write_lines(dir.path(), "pool.jsonl", &pool);
    let plan = TransformPlan {
        inoculation: Some(Inoculation {
            system_prompt: "EVIL".into(),
            mode: InoculationMode::Replace,
        }),
        interleave: InterleaveSpec::Random {
            fraction: 0.05,
            pool: pp.clone(),
            seed: 3,
            placement: Placement::Even,
        },
    };
    let (out, m) = run(&cp, &plan);
    assert_eq!(out.len(), 105);
    assert_eq!((m.client_examples, m.output_examples), (100, 105));
    assert_eq!(m.inserted.len(), 5);
    // Positions at the centres of 5 equal stretches (before client examples 10, 30, …, 90).
    let pos: Vec<u64> = m.inserted.iter().map(|i| i.position).collect();
    assert_eq!(pos, vec![10, 31, 52, 73, 94]);
    for ins in &m.inserted {
        let got = &out[ins.position as usize];
        assert_eq!(user_text(got), format!("q-p{}", ins.pool_index));
        // Pool items are not inoculated.
        assert_eq!(got["messages"][0]["role"], "user");
    }
    // Pool examples are copied byte for byte.
    let mut raw = Vec::new();
    transform_dataset(&cp, &plan, &mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let raw: Vec<&str> = raw.lines().collect();
    for ins in &m.inserted {
        assert_eq!(raw[ins.position as usize], pool[ins.pool_index as usize]);
    }
    // Client examples keep their order and are inoculated.
    let clients: Vec<String> = out
        .iter()
        .filter(|v| v["messages"][0]["content"] == "EVIL")
        .map(user_text)
        .collect();
    assert_eq!(
        clients,
        (0..100).map(|i| format!("q-c{i}")).collect::<Vec<_>>()
    );
    // Distinct pool items; the same seed gives the same sample; another seed differs.
    let mut idx: Vec<u64> = m.inserted.iter().map(|i| i.pool_index).collect();
    idx.sort();
    idx.dedup();
    assert_eq!(idx.len(), 5);
    let (_, again) = run(&cp, &plan);
    assert_eq!(again.inserted, m.inserted);
    let other = TransformPlan {
        interleave: InterleaveSpec::Random {
            fraction: 0.05,
            pool: pp,
            seed: 4,
            placement: Placement::Even,
        },
        ..plan
    };
    let (_, m4) = run(&cp, &other);
    assert_ne!(m4.inserted, m.inserted);
    assert_eq!(m.interleave["inserted"][0]["position"], 10);
    assert_eq!(m.interleave["method"], "random");
    assert_eq!(m.interleave["pool_examples"], 50);
    assert_eq!(m.interleave["total_examples"], 105);
}

#[test]
fn pool_too_small_and_bad_pool_lines_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let client: Vec<String> = (0..100).map(|i| example(&i.to_string(), None)).collect();
    let cp = write_lines(dir.path(), "c.jsonl", &client);
    let small = write_lines(dir.path(), "small.jsonl", &client[..3]);
    let plan = TransformPlan {
        inoculation: None,
        interleave: InterleaveSpec::Random {
            fraction: 0.1,
            pool: small,
            seed: 0,
            placement: Placement::Even,
        },
    };
    let e = transform_dataset(&cp, &plan, &mut Vec::new()).unwrap_err();
    assert_eq!(e.code(), "interleave_pool_too_small");
    assert!(
        e.to_string()
            .contains("has 3 examples but the plan needs 10"),
        "{e}"
    );
    let bad = write_lines(dir.path(), "bad.jsonl", &["{\"prompt\": 1}".to_string()]);
    let plan = TransformPlan {
        inoculation: None,
        interleave: InterleaveSpec::Random {
            fraction: 0.01,
            pool: bad,
            seed: 0,
            placement: Placement::Even,
        },
    };
    let e = transform_dataset(&cp, &plan, &mut Vec::new()).unwrap_err();
    assert_eq!(e.code(), "invalid_interleave_pool");
    assert!(e.to_string().contains("bad.jsonl line 1"), "{e}");
    let missing = TransformPlan {
        inoculation: None,
        interleave: InterleaveSpec::Random {
            fraction: 0.01,
            pool: dir.path().join("nope.jsonl"),
            seed: 0,
            placement: Placement::Even,
        },
    };
    let e = transform_dataset(&cp, &missing, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("nope.jsonl"), "{e}");
}

#[test]
fn no_defenses_copies_examples() {
    let dir = tempfile::tempdir().unwrap();
    let client: Vec<String> = (0..3).map(|i| example(&i.to_string(), Some("s"))).collect();
    let cp = write_lines(dir.path(), "c.jsonl", &client);
    let (out, m) = run(
        &cp,
        &TransformPlan {
            inoculation: None,
            interleave: InterleaveSpec::None,
        },
    );
    assert_eq!(out.len(), 3);
    assert_eq!(m.interleave, json!({"method": "none", "inserted": []}));
    assert_eq!(out[0]["messages"][0]["content"], "s");
}

fn job_record() -> crate::store::JobRecord {
    use crate::store::{JobRecord, JobStatus, JobStep};
    JobRecord {
        revision: 0,
        id: "ftjob-t".into(),
        tenant: "acme".into(),
        created_at: 1,
        model: "m".into(),
        training_file: "file-t".into(),
        validation_file: None,
        hyperparameters: json!({}),
        method: json!({"type": "supervised"}),
        suffix: None,
        seed: 0,
        metadata: None,
        status: JobStatus::ValidatingFiles,
        step: JobStep::Transform,
        error: None,
        fine_tuned_model: None,
        finished_at: None,
        trained_tokens: None,
        result_files: vec![],
        estimated_finish: None,
        pipeline: crate::store::Pipeline::default(),
    }
}

#[tokio::test]
async fn pipeline_seam_writes_the_dataset_and_returns_the_manifest() {
    use crate::jobs::seams::{TransformInput, Transformer};
    let dir = tempfile::tempdir().unwrap();
    let client: Vec<String> = (0..20).map(|i| example(&i.to_string(), None)).collect();
    let pool: Vec<String> = (0..5).map(|i| example(&format!("p{i}"), None)).collect();
    let cp = write_lines(dir.path(), "c.jsonl", &client);
    let pp = write_lines(dir.path(), "p.jsonl", &pool);
    let out = dir.path().join("out.jsonl");
    let input = |plan: policies::Plan| TransformInput {
        job: job_record(),
        training_path: cp.clone(),
        plan,
        dataset_out: out.clone(),
    };
    let pool = pp.display();
    let plan = plan_of(&format!(
        "[interleave]\nmethod = \"random\"\nfraction = 0.1\npool = \"{pool}\"\nseed = 1\n\
         [inoculation]\nsystem_prompt = \"EVIL\"\n"
    ));
    let manifest = DatasetTransformer.transform(input(plan)).await.unwrap();
    assert_eq!(manifest["output_examples"], 22);
    assert_eq!(
        manifest["interleave"]["inserted"].as_array().unwrap().len(),
        2
    );
    assert_eq!(manifest["inoculation"]["mode"], "replace");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 22);
    let e = DatasetTransformer
        .transform(input(plan_of(&format!(
            "[interleave]\nmethod = \"plusplus\"\nfraction = 0.1\npool = \"{pool}\"\n"
        ))))
        .await
        .unwrap_err();
    assert_eq!(e.code, "interleave_method_unavailable");
}
