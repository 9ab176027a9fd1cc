"""Serving and configuration: TLS, env overrides, limits, upload expiry, the demo tenant,
and SIGTERM with a request in flight."""

import re
import ssl
import subprocess
import time

import httpx2 as httpx
import openai
import pytest

from conftest import wait_for
from datasets import good_jsonl, upload
from rawhttp import multipart_head, start_partial_post


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_from_env_overrides(gateway_factory, tmp_path):
    cert, key = self_signed(tmp_path)
    gw = gateway_factory(env={"TUNEGUARD__SERVER__TLS_CERT_PATH": str(cert),
                              "TUNEGUARD__SERVER__TLS_KEY_PATH": str(key)})
    assert gw.url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(cert))
    c = gw.client(http_client=openai.DefaultHttpxClient(verify=ctx))
    f = upload(c, good_jsonl())
    assert c.files.retrieve(f.id).id == f.id
    with pytest.raises(openai.APIConnectionError):
        gw.client(http_client=openai.DefaultHttpxClient(verify=True)).files.list()  # untrusted cert


def test_http2_cleartext_and_over_tls(gateway_factory, tmp_path):
    plain = gateway_factory(name="plain")
    c = plain.client(http_client=openai.DefaultHttpxClient(http1=False, http2=True))
    f = upload(c, good_jsonl())
    assert c.files.retrieve(f.id).id == f.id
    with httpx.Client(http1=False, http2=True) as h:
        assert h.get(plain.url + "/healthz").http_version == "HTTP/2"
    cert, key = self_signed(tmp_path)
    tls = gateway_factory(name="tls", env={"TUNEGUARD__SERVER__TLS_CERT_PATH": str(cert),
                                           "TUNEGUARD__SERVER__TLS_KEY_PATH": str(key)})
    ctx = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(http2=True, verify=ctx) as h:  # ALPN picks h2
        r = h.get(tls.base_url + "/files", headers={"Authorization": "Bearer sk-acme-0123456789"})
        assert r.status_code == 200 and r.http_version == "HTTP/2"


def test_part_size_limit_from_env(gateway_factory):
    gw = gateway_factory(env={"TUNEGUARD__LIMITS__UPLOAD_PART_MAX_BYTES": "1024"})
    c = gw.client()
    up = c.uploads.create(bytes=4096, filename="a.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    with pytest.raises(openai.APIStatusError) as e:
        c.uploads.parts.create(up.id, data=b"x" * 2048)
    assert e.value.status_code in (400, 413)
    assert e.value.body and "message" in e.value.body
    assert c.uploads.parts.create(up.id, data=b"x" * 1024).id.startswith("part_")


def test_upload_too_big_is_refused_at_create(gateway_factory):
    gw = gateway_factory(env={"TUNEGUARD__LIMITS__UPLOAD_MAX_BYTES": "10000",
                              "TUNEGUARD__LIMITS__UPLOAD_PART_MAX_BYTES": "1024"})
    with pytest.raises(openai.BadRequestError) as e:
        gw.client().uploads.create(bytes=10001, filename="a.jsonl", mime_type="application/jsonl",
                                   purpose="fine-tune")
    assert e.value.body.get("param") == "bytes" or "bytes" in e.value.message


def test_invalid_config_is_refused_naming_the_key(tmp_path):
    from conftest import BIN, render_config
    cfg = tmp_path / "bad.toml"
    cfg.write_text(render_config(tmp_path / "data", tmp_path, None, "[limits]\nupload_part_max_bytes = 0\n"))
    r = subprocess.run([BIN, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0"})
    assert r.returncode != 0 and r.stdout == ""
    assert "limits.upload_part_max_bytes" in r.stderr, r.stderr


def test_upload_expires(gateway_factory):
    gw = gateway_factory(env={"TUNEGUARD__LIMITS__UPLOAD_EXPIRY_SECONDS": "1"})
    c = gw.client()
    up = c.uploads.create(bytes=20, filename="a.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    assert up.expires_at - up.created_at == 1
    wait_for(lambda: time.time() >= up.expires_at + 1.5, timeout_s=5, what="the expiry time")
    with pytest.raises((openai.BadRequestError, openai.ConflictError, openai.NotFoundError)) as e:
        c.uploads.parts.create(up.id, data=b'{"messages": []}\n')
    assert "expire" in e.value.message.lower()


def test_demo_tenant_key_printed_once_and_persisted(gateway_factory):
    gw = gateway_factory(tenants=False)
    m = re.search(r"demo tenant key: (\S+)", gw.stderr())
    assert m, gw.stderr()
    key = m.group(1)
    assert gw.client(key).files.list().data == []
    f = upload(gw.client(key), good_jsonl())
    c = gw.restart().client(key)  # the same key works after a restart
    assert c.files.retrieve(f.id).id == f.id


def test_sigterm_with_upload_in_flight_exits_zero_and_hides_it(gateway_factory):
    gw = gateway_factory()
    assert gw.client().files.list().data == []  # serving (see the test below for the start race)
    head = multipart_head("file", "slow.jsonl", {"purpose": "fine-tune"}) + good_jsonl()[:50]
    s = start_partial_post(gw, "/files", 100000, head)
    try:
        assert gw.stop() == 0, gw.stderr()
    finally:
        s.close()
    c = gw.start().client()
    assert c.files.list().data == []


def test_sigterm_right_after_the_listening_line_exits_zero(gateway_factory):
    """The line promises a ready server; SIGTERM from then on must be a graceful stop (the
    handler has to be installed before the line is printed, or the default action kills it)."""
    gw = gateway_factory()
    codes = []
    for _ in range(5):
        codes.append(gw.stop())
        gw.start()
    assert codes == [0] * 5, codes


def test_stdout_is_exactly_the_listening_line(gateway_factory):
    gw = gateway_factory()
    upload(gw.client(), good_jsonl())
    assert gw.stop() == 0
    assert gw.later_stdout() == [], "logs go to stderr"
    assert "tuneguard listening on" not in gw.stderr()


def test_x_request_id_on_every_response(gateway):
    for path, headers in [("/healthz", {}), ("/metrics", {}), ("/v1/files", {}),
                          ("/v1/files", {"Authorization": "Bearer sk-acme-0123456789"}),
                          ("/v1/nope", {"Authorization": "Bearer sk-acme-0123456789"})]:
        r = httpx.get(gateway.url + path, headers=headers)
        assert r.headers.get("x-request-id"), (path, r.status_code)


def test_sigterm_lets_an_in_flight_part_finish(gateway_factory):
    import signal

    gw = gateway_factory()
    c = gw.client()
    data = good_jsonl(12)
    up = c.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    head = multipart_head("data", "blob", {})
    tail = b"\r\n--XyZ--\r\n"
    s = start_partial_post(gw, f"/uploads/{up.id}/parts", len(head) + len(data) + len(tail),
                           head + data[:100])
    try:
        c.files.list()  # the server is serving (the handler race is covered above)
        gw.proc.send_signal(signal.SIGTERM)
        s.sendall(data[100:] + tail)
        reply = ""
        while '"upload_id"' not in reply and not reply.startswith("HTTP/1.1 4"):
            got = s.recv(65536).decode(errors="replace")
            if not got:
                break
            reply += got
    finally:
        s.close()
    assert reply.startswith("HTTP/1.1 200"), reply
    part_id = reply.split('"id":"', 1)[1].split('"', 1)[0]
    assert gw.proc.wait(timeout=30) == 0
    gw.proc = None
    c = gw.start().client()
    done = c.uploads.complete(up.id, part_ids=[part_id])
    assert c.files.content(done.file.id).read() == data
