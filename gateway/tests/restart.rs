//! The real binary, killed with SIGKILL in the middle of an upload: after a restart every
//! acknowledged file is there with its bytes, and nothing partial is listed or left on disk.

mod common;

use bytes::Bytes;
use common::{send, start};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper::Request;
use std::path::Path;
use std::time::Duration;

const BOUNDARY: &str = "KillBoundary";

fn head(filename: &str) -> String {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\r\n")
}

fn upload_req<B>(body: B) -> Request<B> {
    Request::post("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .unwrap()
}

fn temp_blobs(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn kill_9_during_upload_loses_nothing_acknowledged_and_lists_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("tuneguard.toml");
    let hash = gateway::auth::hash_key("sk-test");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[[tenants]]\nname = \"t\"\napi_key_hashes = [\"sha256:{hash}\"]\n", data.display().to_string()),
    )
    .unwrap();

    let mut srv = start(&config);
    let full = format!("{}{{\"ok\":1}}\n\r\n--{BOUNDARY}--\r\n", head("done.jsonl"));
    let (s, body) = send(&srv.addr, upload_req(Full::new(Bytes::from(full)))).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let acked: serde_json::Value = serde_json::from_slice(&body).unwrap();

    // a second upload streams part of its body, then the process is killed
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let stream = StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let addr = srv.addr.clone();
    let pending = tokio::spawn(async move { send(&addr, upload_req(stream)).await });
    tx.send(Ok(Frame::data(Bytes::from(head("partial.jsonl")))))
        .await
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 256 * 1024]))))
        .await
        .unwrap();
    for _ in 0..200 {
        if temp_blobs(&data) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        temp_blobs(&data),
        1,
        "the partial upload is being written to a temp blob"
    );
    srv.child.kill().unwrap(); // SIGKILL
    srv.child.wait().unwrap();
    drop(srv);
    drop(tx);
    pending.abort();

    let srv = start(&config);
    assert_eq!(
        temp_blobs(&data),
        0,
        "the startup sweep removed the partial blob"
    );
    let list_req = Request::get("/v1/files")
        .header("host", "localhost")
        .header("authorization", "Bearer sk-test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (s, body) = send(&srv.addr, list_req).await;
    assert_eq!(s, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(ids, vec![acked["id"].clone()]);
    let content_req = Request::get(format!(
        "/v1/files/{}/content",
        acked["id"].as_str().unwrap()
    ))
    .header("host", "localhost")
    .header("authorization", "Bearer sk-test")
    .body(Full::new(Bytes::new()))
    .unwrap();
    let (s, body) = send(&srv.addr, content_req).await;
    assert_eq!(s, 200);
    assert_eq!(body, b"{\"ok\":1}\n");
}
