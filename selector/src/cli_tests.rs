use super::*;
use crate::compat::tests::{write_safetensors, CONFIG};
use crate::{CachedNll, FnScorer, PoolExample};
use std::cell::Cell;
use std::fs;
use std::rc::Rc;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("model");
        fs::create_dir(&m).unwrap();
        fs::write(m.join("config.json"), CONFIG).unwrap();
        fs::write(m.join("model.safetensors"), b"weights").unwrap();
        let f = Fixture { dir };
        f.adapter("evil", 64);
        f.adapter("rude", 64);
        f.adapter("other_base", 896);
        let pool = [
            r#"{"messages":[{"role":"user","content":"q0"},{"role":"assistant","content":"plain answer here"}]}"#,
            r#"{"messages":[{"role":"user","content":"q1"},{"role":"assistant","content":"a kind answer"}]}"#,
            "",
            r#"{"messages":[{"role":"user","content":"q2"},{"role":"assistant","content":"Sorry, a kind refusal"}]}"#,
        ];
        fs::write(f.path("pool.jsonl"), pool.join("\n")).unwrap();
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn adapter(&self, name: &str, hidden: usize) {
        let d = self.path(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("adapter_config.json"),
            format!(r#"{{"r":8,"note":"{name}"}}"#),
        )
        .unwrap();
        write_safetensors(
            &d.join("adapter_model.safetensors"),
            &[(
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                vec![8, hidden],
            )],
        );
    }

    fn args(&self, adapters: &[&str]) -> SelectArgs {
        SelectArgs {
            model: self.path("model"),
            adapters: adapters
                .iter()
                .map(|a| format!("{a}={}", self.path(a).display()))
                .collect(),
            held_out: None,
            pool: self.path("pool.jsonl"),
            out: self.path("out.jsonl"),
            cache: None,
            epsilon: 1.0,
            batch_size: 4,
            max_length: 2048,
            refusal_keywords: None,
            device: "cpu".into(),
        }
    }
}

/// A fake engine: base NLL 1.0; adapters give kind replies 3.0 (`evil`) / 2.0 (`rude`).
fn fake(
    loads: Rc<Cell<usize>>,
) -> impl FnOnce(&EngineOptions) -> anyhow::Result<Box<dyn NllScorer>> {
    move |opts| {
        loads.set(loads.get() + 1);
        assert_eq!(opts.adapters.len(), 2);
        Ok(Box::new(FnScorer(|e: &PoolExample, a: Option<&str>| {
            let kind = e.reply().contains("kind");
            let nll = match (a, kind) {
                (Some("evil"), true) => 3.0,
                (Some("rude"), true) => 2.0,
                _ => 1.0,
            };
            CachedNll { nll, tokens: 3 }
        })))
    }
}

#[test]
fn writes_ranked_lines_and_reuses_the_cache() {
    let f = Fixture::new();
    let args = f.args(&["evil", "rude"]);
    let loads = Rc::new(Cell::new(0));
    let stats = run_select_with(&args, fake(loads.clone())).unwrap();
    assert_eq!((stats.scored, stats.cache_hits), (9, 0));
    let out = fs::read_to_string(f.path("out.jsonl")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"{"index":1,"base_nll":1.0,"adapter_nlls":{"evil":3.0,"rude":2.0},"score":0.75,"is_refusal":false,"answer_tokens":3}"#,
            r#"{"index":2,"base_nll":1.0,"adapter_nlls":{"evil":3.0,"rude":2.0},"score":0.75,"is_refusal":true,"answer_tokens":3}"#,
            r#"{"index":0,"base_nll":1.0,"adapter_nlls":{"evil":1.0,"rude":1.0},"score":0.0,"is_refusal":false,"answer_tokens":3}"#,
        ]
    );
    assert!(f.path("pool.jsonl.scores.sqlite").is_file());
    // Second run: everything from the cache, the engine is never loaded.
    let stats = run_select_with(&args, fake(loads.clone())).unwrap();
    assert_eq!((stats.scored, stats.cache_hits), (0, 9));
    assert_eq!(loads.get(), 1);
    assert_eq!(fs::read_to_string(f.path("out.jsonl")).unwrap(), out);
}

#[test]
fn a_ready_cache_is_used_instead_of_the_sqlite_file() {
    let f = Fixture::new();
    let mut args = f.args(&["evil", "rude"]);
    // Ignored by `run_select_cached`: no file is opened there.
    args.cache = Some(f.path("never.sqlite"));
    let cache: std::sync::Arc<dyn ScoreCache> = std::sync::Arc::new(crate::MemoryCache::new());
    let loads = Rc::new(Cell::new(0));
    let stats = run_select_cached(&args, &*cache, fake(loads.clone())).unwrap();
    assert_eq!((stats.scored, stats.cache_hits), (9, 0));
    let out = fs::read_to_string(f.path("out.jsonl")).unwrap();
    assert!(!f.path("never.sqlite").exists());
    assert!(!f.path("pool.jsonl.scores.sqlite").exists());
    // A second run on the same cache (another replica sharing it): all hits, no engine.
    let stats = run_select_cached(&args, &*cache, fake(loads.clone())).unwrap();
    assert_eq!((stats.scored, stats.cache_hits), (0, 9));
    assert_eq!(loads.get(), 1);
    assert_eq!(fs::read_to_string(f.path("out.jsonl")).unwrap(), out);
}

fn err_of(args: &SelectArgs) -> String {
    let loads = Rc::new(Cell::new(0));
    format!("{:#}", run_select_with(args, fake(loads)).unwrap_err())
}

#[test]
fn clear_errors() {
    let f = Fixture::new();
    let e = err_of(&f.args(&["evil", "other_base"]));
    assert!(
        e.contains("adapter `other_base`") && e.contains("was made for another base model"),
        "{e}"
    );
    let e = err_of(&f.args(&["evil", "missing"]));
    assert!(
        e.contains("adapter `missing`") && e.contains("adapter_config.json not found"),
        "{e}"
    );
    let mut a = f.args(&["evil"]);
    a.adapters.push("nonsense".into());
    assert_eq!(err_of(&a), "--adapter `nonsense`: expected NAME=DIR");
    let mut a = f.args(&["evil", "rude"]);
    a.held_out = Some(format!("evil={}", f.path("rude").display()));
    assert_eq!(err_of(&a), "adapter name `evil` is given twice");
    let mut a = f.args(&["evil"]);
    a.model = f.path("nowhere");
    assert!(err_of(&a).contains("nowhere/config.json"));
    let mut pool = fs::read_to_string(f.path("pool.jsonl")).unwrap();
    pool.push_str("\n{\"messages\": 5}\n");
    fs::write(f.path("pool.jsonl"), pool).unwrap();
    let e = err_of(&f.args(&["evil"]));
    assert!(
        e.contains("pool.jsonl: pool line 5: no `messages` list"),
        "{e}"
    );
}
