//! The server over real sockets: HTTP/1.1, h2c, TLS with ALPN h2, and a graceful shutdown
//! that lets an in-flight upload finish.

use bytes::Bytes;
use gateway::config::Config;
use gateway::jobs::Seams;
use gateway::server::{load_tls, run_with, ServeOptions};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

fn state(dir: &Path) -> gateway::state::AppState {
    let key_hash = format!("sha256:{}", gateway::auth::hash_key("sk-test"));
    let text = format!(
        "[storage]\ndata_dir = {:?}\n[[tenants]]\nname = \"t\"\napi_key_hashes = [\"{key_hash}\"]\n",
        dir.display().to_string()
    );
    let cfg = Config::from_sources(Some(("t.toml", &text)), Vec::new()).unwrap();
    let s = gateway::serve::build_state_with(cfg, Seams::builtin()).unwrap();
    s.set_ready(true);
    s
}

struct Running {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let app = gateway::api::app(state(dir.path()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        tls,
        grace: Duration::from_secs(5),
    };
    let done = tokio::spawn(run_with(listener, app, opts, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop,
        done,
        _dir: dir,
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn http1_and_h2c() {
    let srv = start(None).await;
    let io = TokioIo::new(TcpStream::connect(srv.addr).await.unwrap());
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = h1.send_request(get("/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));

    let io = TokioIo::new(TcpStream::connect(srv.addr).await.unwrap());
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h2
        .send_request(get("http://localhost/readyz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    srv.stop.send(()).unwrap();
    srv.done.await.unwrap();
}

#[tokio::test]
async fn tls_negotiates_h2() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let server_cfg = load_tls(
        &fixtures.join("test-cert.pem"),
        &fixtures.join("test-key.pem"),
    )
    .unwrap();
    let srv = start(Some(server_cfg)).await;

    let pem = std::fs::read(fixtures.join("test-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = h2
        .send_request(get("https://localhost/healthz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    srv.stop.send(()).unwrap();
    srv.done.await.unwrap();
}

#[test]
fn tls_errors_name_the_file() {
    let e = load_tls(
        Path::new("/nonexistent/cert.pem"),
        Path::new("/nonexistent/key.pem"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/cert.pem"));
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_upload_finish() {
    let srv = start(None).await;
    let io = TokioIo::new(TcpStream::connect(srv.addr).await.unwrap());
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let boundary = "B0undary";
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n");
    let tail = format!("\r\n--{boundary}--\r\n");
    let req = Request::post("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .unwrap();
    let pending = tokio::spawn(async move { h1.send_request(req).await });
    tx.send(Ok(Frame::data(Bytes::from(head)))).await.unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"{\"a\":1}\n"))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.stop.send(()).unwrap(); // shutdown starts while the upload is in flight
    tokio::time::sleep(Duration::from_millis(50)).await;
    // new connections are refused once the listener is closed
    assert!(TcpStream::connect(srv.addr).await.is_err());
    tx.send(Ok(Frame::data(Bytes::from(tail)))).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["bytes"], 8);
    srv.done.await.unwrap();
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_client_that_disconnects_mid_upload_leaves_no_temp_file() {
    let srv = start(None).await;
    let blobs = srv._dir.path().join("blobs");
    let count = || std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    let io = TokioIo::new(TcpStream::connect(srv.addr).await.unwrap());
    let (mut h1, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let boundary = "B0undary";
    let req = Request::post("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(StreamBody::new(tokio_stream_from(rx)))
        .unwrap();
    let pending = tokio::spawn(async move { h1.send_request(req).await });
    let head = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n");
    tx.send(Ok(Frame::data(Bytes::from(head)))).await.unwrap();
    tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024]))))
        .await
        .unwrap();
    for _ in 0..200 {
        if count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(count(), 1, "the upload is being written");
    pending.abort();
    conn_task.abort(); // the client goes away
    drop(tx);
    for _ in 0..200 {
        if count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(count(), 0, "the abandoned temp blob is removed at once");
    srv.stop.send(()).unwrap();
    srv.done.await.unwrap();
}
