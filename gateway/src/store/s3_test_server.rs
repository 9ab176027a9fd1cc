//! A throwaway S3-wire server for the blob store's tests: moto's server mode (`moto_server`,
//! from `.s3venv`, which `scripts/setup-test-deps.sh` makes; or `$TUNEGUARD_MOTO_SERVER`),
//! one per test binary, on 127.0.0.1 on a free port, stopped by a watchdog once the test binary
//! has exited. Each test gets a bucket of its own.
//!
//! Why moto: it speaks S3's REST wire format (SigV4-signed requests, multipart uploads,
//! ListObjectsV2, ETags as md5) from one `pip install`, where the s3s-fs server would be a
//! second Rust build of several minutes in every CI run.
//!
//! A missing server fails the test — CI installs it — unless `TUNEGUARD_SKIP_S3=1`, which turns
//! the S3 half of the blob tests into no-ops.

use crate::config::S3Config;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Result<u16, String>> = OnceLock::new();
static NEXT_BUCKET: AtomicUsize = AtomicUsize::new(0);

/// The `moto_server` executable.
fn program() -> PathBuf {
    if let Some(p) = std::env::var_os("TUNEGUARD_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.s3venv/bin/moto_server")
}

/// A new, empty bucket on the shared test server, as blob-store config (moto accepts any
/// credentials: [`ACCESS_KEY`]); `None` only with `TUNEGUARD_SKIP_S3=1`.
pub(crate) fn fresh_bucket() -> Option<S3Config> {
    if std::env::var("TUNEGUARD_SKIP_S3").is_ok_and(|v| v == "1") {
        eprintln!("TUNEGUARD_SKIP_S3=1: S3 blob test not run");
        return None;
    }
    let port = match SERVER.get_or_init(start) {
        Ok(p) => *p,
        Err(e) => panic!(
            "no S3 server for the blob tests: {e}\n\
             run `bash scripts/setup-test-deps.sh` (it makes .s3venv with moto's server), \
             or set TUNEGUARD_SKIP_S3=1 to skip the S3 half"
        ),
    };
    let bucket = format!(
        "tg-{}-{}",
        std::process::id(),
        NEXT_BUCKET.fetch_add(1, Ordering::SeqCst)
    );
    // moto takes unsigned bucket creation.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request as u; u.urlopen(u.Request(sys.argv[1], method='PUT'))",
            &format!("http://127.0.0.1:{port}/{bucket}"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e}"));
    assert!(
        out.status.success(),
        "creating bucket {bucket}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(S3Config {
        bucket,
        prefix: "t/".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        allow_http: true,
    })
}

/// The credentials the tests sign with (moto checks the signature's shape, not the key).
pub(crate) const ACCESS_KEY: (&str, &str) = ("testing", "testing");

fn start() -> Result<u16, String> {
    let exe = program();
    if !exe.is_file() {
        return Err(format!("{} not found", exe.display()));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))?;
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    super::pg_test_server::after_this_process(&format!("kill {} 2>/dev/null", child.id()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{} did not listen on port {port} within 60 s",
        exe.display()
    ))
}
