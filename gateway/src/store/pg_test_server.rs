//! A throwaway PostgreSQL server for the store's contract tests: one per test binary, started
//! on first use from Debian's `postgresql` binaries (`/usr/lib/postgresql/<version>/bin`, or
//! `$TUNEGUARD_PG_BINDIR`) with `initdb` + `pg_ctl` in a temporary directory, listening on
//! 127.0.0.1 on a free port with its unix socket in that directory. PostgreSQL refuses to run
//! as root: as root the server runs as `nobody` (through `runuser`). Each test gets a database
//! of its own. A watchdog process stops the server and removes the directory once the test
//! binary has exited (statics are never dropped, so nothing in-process could).
//!
//! The server takes TLS too (`ssl = on`) with a certificate for 127.0.0.1 signed by a CA made
//! for the run ([`tls_ca`]); plaintext connections still work, so only the TLS tests use it.
//!
//! Missing binaries or a server that will not start fail the test — CI installs the package
//! (`scripts/setup-test-deps.sh`) — unless `TUNEGUARD_SKIP_POSTGRES=1`, which turns the
//! PostgreSQL half of the suite into no-ops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The unprivileged account the server runs as when the tests run as root.
const ROOT_RUNS_AS: &str = "nobody";

struct Server {
    port: u16,
    /// The PEM file of the CA that signed the server's certificate.
    ca: PathBuf,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// Whether the PostgreSQL half is switched off (`TUNEGUARD_SKIP_POSTGRES=1`).
pub(crate) fn skipped() -> bool {
    std::env::var("TUNEGUARD_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// A connection URL to a new, empty database on the shared test server; `None` only when
/// [`skipped`]. Panics (failing the test) when the server cannot be had.
pub(crate) fn fresh_database() -> Option<String> {
    if skipped() {
        eprintln!("TUNEGUARD_SKIP_POSTGRES=1: PostgreSQL contract test not run");
        return None;
    }
    let server = match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!(
            "no PostgreSQL server for the store contract tests: {e}\n\
             install Debian's `postgresql` package (bash scripts/setup-test-deps.sh), \
             or set TUNEGUARD_SKIP_POSTGRES=1 to skip the PostgreSQL half"
        ),
    };
    let name = format!(
        "tg_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let admin = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        server.port
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    Some(format!(
        "postgresql://postgres@127.0.0.1:{}/{name}",
        server.port
    ))
}

/// The CA file of the shared test server's TLS certificate (start it with [`fresh_database`]).
pub(crate) fn tls_ca() -> Option<PathBuf> {
    SERVER.get()?.as_ref().ok().map(|s| s.ca.clone())
}

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn certificates() -> Result<(String, String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let e = |e: rcgen::Error| format!("making the test server's certificate: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tuneguard test CA");
    let ca = ca.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut srv = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(e)?;
    srv.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let srv = srv.signed_by(&key, &ca, &ca_key).map_err(e)?;
    Ok((ca.pem(), srv.pem(), key.serialize_pem()))
}

/// Writes `text` to `path`, mode 0600, owned by `user` when set (PostgreSQL refuses a key file
/// anyone else can read).
fn write_private(path: &Path, text: &str, user: Option<&str>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(u) = user {
        let (uid, gid) = account(u)?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}

fn start() -> Result<Server, String> {
    let bin = bin_dir()?;
    let as_root = running_as_root();
    let base = if as_root {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let root = tempfile::Builder::new()
        .prefix("tuneguard-pg-")
        .tempdir_in(&base)
        .map_err(|e| format!("temporary directory in {}: {e}", base.display()))?
        .keep();
    let user = if as_root {
        let (uid, gid) = account(ROOT_RUNS_AS)?;
        std::os::unix::fs::chown(&root, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to {ROOT_RUNS_AS}: {e}", root.display()))?;
        Some(ROOT_RUNS_AS)
    } else {
        None
    };
    watchdog(&bin, &root, user)?;
    let data = root.join("data");
    run(
        &bin,
        user,
        &root,
        "initdb",
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-E".as_ref(),
            "UTF8".as_ref(),
            "--locale=C".as_ref(),
            "--no-sync".as_ref(),
        ],
    )?;
    let (ca_pem, cert_pem, key_pem) = certificates()?;
    let ca = root.join("ca.pem");
    std::fs::write(&ca, ca_pem).map_err(|e| format!("{}: {e}", ca.display()))?;
    let (cert, key) = (root.join("server.crt"), root.join("server.key"));
    write_private(&cert, &cert_pem, user)?;
    write_private(&key, &key_pem, user)?;
    // A port that was free a moment ago; another process may take it first, so try a few.
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
             -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            root.display(),
            cert.display(),
            key.display()
        );
        let log = root.join("server.log");
        match run(
            &bin,
            user,
            &root,
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        ) {
            Ok(()) => return Ok(Server { port, ca }),
            Err(e) => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                last = format!(
                    "{e}\n{}",
                    tail.lines().rev().take(10).collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
    Err(last)
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("TUNEGUARD_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .map_err(|e| format!("{}: {e}", base.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| format!("no initdb and pg_ctl under {}/*/bin", base.display()))
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// (uid, gid) of a local account, from /etc/passwd.
fn account(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("no account `{name}` in /etc/passwd to run PostgreSQL as"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Runs one of the server's programs (as `user` when set) and waits for it.
fn run(
    bin: &Path,
    user: Option<&str>,
    cwd: &Path,
    program: &str,
    args: &[&std::ffi::OsStr],
) -> Result<(), String> {
    let exe = bin.join(program);
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A shell that waits for this process to exit, then stops the server and removes `root`.
fn watchdog(bin: &Path, root: &Path, user: Option<&str>) -> Result<(), String> {
    let as_user = user
        .map(|u| format!("runuser -u {u} -- "))
        .unwrap_or_default();
    after_this_process(&format!(
        "{as_user}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
        pg_ctl = bin.join("pg_ctl").display(),
        data = root.join("data").display(),
        root = root.display(),
    ))
}

/// Runs the shell command `cleanup` once this test process has exited (statics are never
/// dropped, so nothing in-process could): the test servers' watchdog.
pub(crate) fn after_this_process(cleanup: &str) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {cleanup}",
        pid = std::process::id(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the server's watchdog: {e}"))
}
