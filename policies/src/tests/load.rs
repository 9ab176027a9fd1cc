use crate::*;
use std::path::{Path, PathBuf};

fn conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/policies")
}

#[test]
fn shipped_default_states_the_builtin_defaults() {
    let set = PolicySet::load_dir(&conf()).unwrap();
    let shipped = set.get(DEFAULT_POLICY).unwrap().clone();
    assert_eq!(
        Policy {
            description: String::new(),
            ..shipped
        },
        Policy::builtin_default()
    );
    // The embedded set is the same file.
    let embedded = PolicySet::embedded();
    assert_eq!(embedded.policies(), &set.policies()[..1]);
    assert_eq!(embedded.version(), set.version());
}

#[test]
fn shipped_default_spells_out_every_training_key() {
    let text = EMBEDDED_DEFAULT;
    let start = text.find("\n[training]\n").expect("a [training] section");
    let rest = &text[start + "\n[training]\n".len()..];
    let section = &rest[..rest.find("\n[").unwrap_or(rest.len())];
    let keys: Vec<&str> = section
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.starts_with('#'))
        .collect();
    let training = serde_json::to_value(Training::default()).unwrap();
    let mut want: Vec<&str> = training
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn shipped_examples_are_valid() {
    let report = check_dir(&conf().join("examples")).unwrap();
    assert_eq!(
        report.policies,
        ["medical-plusplus", "qwen-kl", "strict-bank"]
    );
    assert!(
        report.warnings[0].starts_with("no `default` policy"),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains(r#"key "interleave.pool": file "#)),
        "{:?}",
        report.warnings
    );
}

#[test]
fn load_dir_reads_toml_files_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("acme.toml"),
        "[match]\ntenants = [\"acme\"]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a policy").unwrap();
    std::fs::write(dir.path().join(".acme.toml.swp"), "junk").unwrap();
    std::fs::write(dir.path().join(".hidden.toml"), "junk = 1").unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap();
    let names: Vec<&str> = set.policies().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["acme", "default"]);
    assert_eq!(set.base_dir(), dir.path());
}

#[test]
fn check_dir_reports_every_bad_file_and_pool_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), "").unwrap();
    std::fs::write(dir.path().join("a.toml"), "[training]\nepochs = 0\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "bogus = true\n").unwrap();
    let errors = check_dir(dir.path()).unwrap_err();
    let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let d = dir.path().display();
    assert_eq!(
        msgs,
        [
            format!(r#"{d}/a.toml: key "training.epochs": must be >= 1, got 0"#),
            format!(
                r#"{d}/b.toml: key "bogus": unknown key (expected one of: description, inoculation, interleave, match, monitor, priority, regularizer, training, upstream)"#
            ),
        ]
    );
    std::fs::remove_file(dir.path().join("a.toml")).unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "[interleave]\nmethod = \"random\"\npool = \"pool.jsonl\"\n",
    )
    .unwrap();
    let report = check_dir(dir.path()).unwrap();
    assert_eq!(
        report.warnings,
        [format!(
            r#"{d}/b.toml: key "interleave.pool": file {d}/pool.jsonl does not exist"#
        )]
    );
    std::fs::write(dir.path().join("pool.jsonl"), "{}\n").unwrap();
    let report = check_dir(dir.path()).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.to_string().contains("2 policies OK (b, default)"));
}

#[test]
fn empty_or_missing_dir_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = PolicySet::load_dir(dir.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no *.toml policy files in this directory",
            dir.path().display()
        )
    );
    let missing = dir.path().join("nope");
    let e = PolicySet::load_dir(&missing).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: ", missing.display())),
        "{e}"
    );
}
