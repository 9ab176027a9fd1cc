//! The fuzz targets' checks (`fuzz/checks/`, the same code `cargo fuzz` runs) over the
//! committed seeds (`fuzz/seeds/<target>/`) and every input a fuzz run ever found a bug with
//! (`fuzz/regressions/<target>/`), in the ordinary test build: the targets cannot rot, and a
//! fixed crash stays fixed. The fuzzing itself is `scripts/fuzz.sh` (an instrumented build of
//! the whole engine, about 20 minutes on 2 cores, too long for every CI run). What CI runs
//! instead is a short, bounded, deterministic fuzz of each target in this build: [`MUTANTS`]
//! mutants of the seeds per target (bit flips, boundary bytes, cut, duplicated and inserted
//! ranges, splices of two seeds, truncation), from a fixed RNG seed so a failure reproduces —
//! not coverage-guided, but every target runs on inputs nobody wrote down.

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

/// Mutants of the seeds each target is fuzzed with in every test run.
const MUTANTS: usize = 2000;

/// xorshift64*: a fixed sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four mutations of `seed` (splices take from `other`).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'\\', b'\n', b'{'][rng.below(8)];
            }
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                v.drain(a..b);
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let piece = v[a..b].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, piece);
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            5 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => v.truncate(rng.below(len + 1)),
        }
    }
    v
}

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
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
            inputs.push(data);
            n += 1;
        }
    }
    assert!(n > 0, "no seeds for fuzz target {target}");
    // And the empty input.
    check(b"");
    // The bounded fuzz. Each mutant is on disk while it runs, so a failing one is left there
    // and the test's last line of output names it (for `fuzz/regressions/<target>/`).
    let mut rng = Rng(target.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    for i in 0..MUTANTS {
        let seed = &inputs[i % inputs.len()];
        let other = &inputs[rng.below(inputs.len())];
        let input = mutate(&mut rng, seed, other);
        let out =
            std::env::temp_dir().join(format!("fuzz-{target}-mutant-{i}-{}", std::process::id()));
        std::fs::write(&out, &input).unwrap();
        eprintln!("{target}: mutant {}", out.display());
        check(&input);
        let _ = std::fs::remove_file(&out);
    }
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
