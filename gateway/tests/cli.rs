//! The binary's offline commands and its policy wiring.

mod common;

use common::{get_json, start, write_config};
use std::process::Command;

fn policy_check(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["policy", "check"])
        .arg(dir)
        .output()
        .expect("run tuneguard")
}

#[test]
fn policy_check_reports_ok_and_every_bad_file() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/policies");
    let out = policy_check(&shipped);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (default)"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "bogus = 1\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "priority = \"high\"\n").unwrap();
    let out = policy_check(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.toml") && err.contains("bogus"), "{err}");
    assert!(err.contains("b.toml"), "{err}");
}

#[tokio::test]
async fn serve_loads_the_policy_directory_and_explains_plans() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    std::fs::write(pol.join("default.toml"), "").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[policies]\ndir = {:?}\nreload_interval_ms = 50\n",
            pol.display().to_string()
        ),
    );
    let srv = start(&config);
    let (s, v) = get_json(&srv.addr, "/v1/tuneguard/admin/policies", "sk-admin").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["source"], "dir");
    let first = v["version_hash"].clone();
    // a broken edit keeps the last good set and is reported
    std::fs::write(pol.join("broken.toml"), "bogus = 1\n").unwrap();
    let mut reported = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, v) = get_json(&srv.addr, "/v1/tuneguard/admin/policies", "sk-admin").await;
        if !v["last_reload_error"].is_null() {
            reported = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        reported["last_reload_error"]
            .as_str()
            .unwrap_or("")
            .contains("broken.toml"),
        "{reported}"
    );
    assert_eq!(reported["version_hash"], first);
    let (_, metrics) = {
        let req = hyper::Request::get("/metrics")
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        common::send(&srv.addr, req).await
    };
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.contains("tuneguard_policy_reloads_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tuneguard_policy_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_refuses_an_invalid_policy_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    std::fs::write(pol.join("x.toml"), "bogus = 1\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!("[policies]\ndir = {:?}\n", pol.display().to_string()),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policies.dir") && err.contains("x.toml"),
        "{err}"
    );
}

/// The listening line promises a ready server: a SIGTERM sent right after it is a graceful
/// stop with exit status 0, never the default action (the handler is installed before the line).
#[cfg(unix)]
#[test]
fn sigterm_right_after_the_listening_line_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    for round in 0..5 {
        let mut server = start(&config);
        let pid = server.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = server.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no exit after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
    }
}

fn serve_fails_naming(policies_dir: &std::path::Path, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[policies]\ndir = {:?}\n",
            policies_dir.display().to_string()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing may be listening");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policies.dir")
            && err.contains(&policies_dir.display().to_string())
            && err.contains(expected),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_missing_or_empty_configured_policy_directory() {
    let dir = tempfile::tempdir().unwrap();
    serve_fails_naming(&dir.path().join("no-such-policies"), "does not exist");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("README.md"), "not a policy\n").unwrap();
    serve_fails_naming(&empty, "no *.toml policy files");
    serve_fails_naming(&empty.join("README.md"), "is not a directory");
}

#[test]
fn serve_uses_the_embedded_policies_when_the_default_dir_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[policies]\ndir = \"conf/policies\"\n");
    // Run where `conf/policies` does not exist: the embedded default set applies.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        line.starts_with("tuneguard listening on http://"),
        "{line} {err}"
    );
    assert!(err.contains("embedded default policy set"), "{err}");
}

/// Waits for `child` to exit, killing it and failing after `limit` (a hang is the bug).
fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_worker_whose_supervisor_is_already_gone_stops_instead_of_running_orphaned() {
    // serve can die (SIGKILL) before the worker it just spawned has looked at its parent:
    // the worker compares against the pid serve handed it, so it still notices.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["worker", "--config"])
        .arg(&config)
        .env("TUNEGUARD_SUPERVISOR_PID", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, std::time::Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
}

#[test]
fn killing_serve_leaves_no_worker_holding_its_output() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[local]\nworkers = 1\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The worker logs to the same stderr: wait until it has started, then SIGKILL serve.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("worker started"));
    assert!(started, "no worker started");
    child.kill().unwrap();
    child.wait().unwrap();
    // stderr reaches end-of-file only once every process holding it (the worker) is gone.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        lines.for_each(drop);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("a worker outlived serve and still holds its stderr");
}
