use super::*;
use std::fs;
use std::time::Duration;

const ACME: &str = "[match]\ntenants = [\"acme\"]\n[interleave]\nmethod = \"random\"\nfraction = 0.1\npool = \"pool.jsonl\"\n";

fn setup() -> (
    tempfile::TempDir,
    PolicyWatcher,
    watch::Receiver<Arc<PolicyState>>,
) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("default.toml"), "").unwrap();
    let (w, rx) = PolicyWatcher::load(dir.path()).unwrap();
    (dir, w, rx)
}

fn names(state: &PolicyState) -> Vec<String> {
    state
        .current
        .policies()
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

#[test]
fn poll_picks_up_edits_and_keeps_the_last_good_set_on_a_bad_one() {
    let (dir, mut w, rx) = setup();
    let v0 = rx.borrow().current.version().to_string();
    assert_eq!(w.poll(), PollOutcome::Unchanged);

    fs::write(dir.path().join("acme.toml"), ACME).unwrap();
    assert_eq!(w.poll(), PollOutcome::Reloaded);
    let s = rx.borrow().clone();
    assert_eq!(names(&s), ["acme", "default"]);
    assert_ne!(s.current.version(), v0);
    assert_eq!(
        (s.reloads_ok, s.reloads_failed, s.last_error.clone()),
        (1, 0, None)
    );
    let good = s.current.version().to_string();

    fs::write(
        dir.path().join("acme.toml"),
        format!("{ACME}fraction_typo = 1\n"),
    )
    .unwrap();
    assert_eq!(w.poll(), PollOutcome::Failed);
    let s = rx.borrow().clone();
    assert_eq!(s.current.version(), good, "the last good set is kept");
    assert_eq!(names(&s), ["acme", "default"]);
    assert_eq!(s.reloads_failed, 1);
    let err = s.last_error.clone().unwrap();
    assert!(
        err.ends_with(r#"acme.toml: key "interleave.fraction_typo": unknown key (expected one of: fraction, method, placement, pool, seed)"#),
        "{err}"
    );
    // The same bad content is not counted twice.
    assert_eq!(w.poll(), PollOutcome::Unchanged);
    assert_eq!(rx.borrow().reloads_failed, 1);

    fs::remove_file(dir.path().join("acme.toml")).unwrap();
    assert_eq!(w.poll(), PollOutcome::Reloaded);
    let s = rx.borrow().clone();
    assert_eq!(s.current.version(), v0);
    assert_eq!(
        (s.reloads_ok, s.reloads_failed, s.last_error.clone()),
        (2, 1, None)
    );
}

#[test]
fn touching_a_file_without_changing_it_is_not_a_reload() {
    let (dir, mut w, rx) = setup();
    let f = fs::File::options()
        .write(true)
        .open(dir.path().join("default.toml"))
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    assert_eq!(w.poll(), PollOutcome::Unchanged);
    assert_eq!(rx.borrow().reloads_ok, 0);
}

#[test]
fn a_missing_directory_fails_once_and_keeps_the_set() {
    let (dir, mut w, rx) = setup();
    let v0 = rx.borrow().current.version().to_string();
    fs::remove_file(dir.path().join("default.toml")).unwrap();
    assert_eq!(w.poll(), PollOutcome::Failed);
    assert_eq!(w.poll(), PollOutcome::Unchanged);
    let s = rx.borrow().clone();
    assert_eq!((s.current.version(), s.reloads_failed), (v0.as_str(), 1));
    assert!(s
        .last_error
        .clone()
        .unwrap()
        .ends_with("no *.toml policy files in this directory"));
}

#[test]
fn load_refuses_a_bad_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("default.toml"), "[training]\nepochs = 0\n").unwrap();
    let e = PolicyWatcher::load(dir.path()).err().unwrap();
    assert!(
        e.to_string()
            .ends_with(r#"default.toml: key "training.epochs": must be >= 1, got 0"#),
        "{e}"
    );
}

#[tokio::test]
async fn the_running_watcher_publishes_edits_and_errors() {
    let (dir, w, mut rx) = setup();
    let v0 = rx.borrow_and_update().current.version().to_string();
    let task = tokio::spawn(w.run(Duration::from_millis(10)));
    let wait = Duration::from_secs(10);

    fs::write(dir.path().join("acme.toml"), ACME).unwrap();
    tokio::time::timeout(wait, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let s = rx.borrow_and_update().clone();
    assert_eq!(names(&s), ["acme", "default"]);
    assert_eq!(s.reloads_ok, 1);
    let good = s.current.version().to_string();
    assert_ne!(good, v0);

    fs::write(
        dir.path().join("acme.toml"),
        "[interleave]\nmethod = \"random\"\nfraction = 1.5\npool = \"p\"\n",
    )
    .unwrap();
    tokio::time::timeout(wait, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let s = rx.borrow_and_update().clone();
    assert_eq!(s.current.version(), good);
    assert!(s
        .last_error
        .clone()
        .unwrap()
        .ends_with(r#"acme.toml: key "interleave.fraction": must be in (0, 1], got 1.5"#));

    drop(rx);
    tokio::time::timeout(wait, task).await.unwrap().unwrap();
}

#[test]
fn watch_planner_resolves_against_the_current_set() {
    let (dir, mut w, rx) = setup();
    let planner = WatchPlanner::new(rx);
    let meta = BTreeMap::new();
    assert_eq!(
        planner.plan("acme", "m", &meta).unwrap().policy_name,
        "default"
    );
    fs::write(dir.path().join("acme.toml"), ACME).unwrap();
    assert_eq!(w.poll(), PollOutcome::Reloaded);
    let out = planner.plan("acme", "m", &meta).unwrap();
    assert_eq!(out.policy_name, "acme");
    assert_eq!(out.version_hash, w.subscribe().borrow().current.version());
    let plan = out.plan.to_json();
    assert_eq!(plan["interleave"]["method"], "random");
    assert_eq!(
        plan["interleave"]["pool"],
        json!(dir.path().join("pool.jsonl"))
    );
    assert_eq!(out.snapshot["version"], out.version_hash.as_str());
    let d = planner.describe();
    assert_eq!(
        (d["source"].as_str(), d["reloads_ok"].as_u64()),
        (Some("dir"), Some(1))
    );
    assert_eq!(d["policies"].as_array().map(Vec::len), Some(2));

    let embedded = WatchPlanner::embedded();
    let out = embedded.plan("t", "m", &meta).unwrap();
    assert_eq!(out.policy_name, "default");
    assert_eq!(embedded.describe()["source"], "embedded");
}

#[test]
fn no_matching_policy_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("acme.toml"), ACME).unwrap();
    let (_w, rx) = PolicyWatcher::load(dir.path()).unwrap();
    let e = WatchPlanner::new(rx)
        .plan("other", "m", &BTreeMap::new())
        .unwrap_err();
    assert_eq!(e.code, "no_matching_policy");
    assert!(e.message.contains(r#"tenant "other""#), "{}", e.message);
}
