//! The fuzz targets' checks (`fuzz/checks/`, the same code `cargo fuzz` runs) over the
//! committed seeds (`fuzz/seeds/<target>/`) and every input a fuzz run ever found a bug with
//! (`fuzz/regressions/<target>/`), in the ordinary test build: the targets cannot rot, and a
//! fixed crash stays fixed. The fuzzing itself is `scripts/fuzz.sh` (an instrumented build of
//! the whole engine, about 20 minutes on 2 cores, too long for every CI run).

#[path = "../../fuzz/checks/chat_template.rs"]
mod chat_template;
#[path = "../../fuzz/checks/gguf.rs"]
mod gguf;
#[path = "../../fuzz/checks/policy_file.rs"]
mod policy_file;
#[path = "../../fuzz/checks/screen_jsonl.rs"]
mod screen_jsonl;
#[path = "../../fuzz/checks/upload.rs"]
mod upload;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{target}: {}", path.display());
            check(&data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds for fuzz target {target}");
    // And the empty input.
    check(b"");
}

#[test]
fn screen_jsonl_seeds() {
    replay("screen_jsonl", screen_jsonl::check);
}

#[test]
fn policy_file_seeds() {
    replay("policy_file", policy_file::check);
}

#[test]
fn gguf_seeds() {
    replay("gguf", gguf::check);
}

#[test]
fn chat_template_seeds() {
    replay("chat_template", chat_template::check);
}

#[test]
fn upload_seeds() {
    replay("upload", upload::check);
}
