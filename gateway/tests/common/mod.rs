//! Helpers for tests that run the real `tuneguard` binary.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tokio::net::TcpStream;

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tuneguard serve --config <config>` and waits for its listening line.
pub fn start(config: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tuneguard");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("tuneguard listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server { child, addr }
}

/// Writes a config with one tenant (`sk-test`) and an admin (`sk-admin`) plus `extra`.
pub fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let config = dir.join("tuneguard.toml");
    let tenant = gateway::auth::hash_key("sk-test");
    let admin = gateway::auth::hash_key("sk-admin");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[auth]\nadmin_key_hashes = [\"sha256:{admin}\"]\n[[tenants]]\nname = \"t\"\napi_key_hashes = [\"sha256:{tenant}\"]\n{extra}",
            data.display().to_string()
        ),
    )
    .expect("write config");
    config
}

pub async fn send<B>(addr: &str, req: Request<B>) -> (u16, Vec<u8>)
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (mut c, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = c.send_request(req).await.expect("request");
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
}

pub async fn get_json(addr: &str, path: &str, key: &str) -> (u16, serde_json::Value) {
    let req = Request::get(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (s, b) = send(addr, req).await;
    (
        s,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}
