"""Durability: `kill -9` during uploads and during a job, restart on the same data dir:
every acknowledged object is there, nothing partial is listed, jobs resume or fail with a reason."""

import hashlib
import json
import socket
from urllib.parse import urlsplit

from conftest import KEYS, wait_for
from datasets import good_jsonl, upload

TERMINAL = ("succeeded", "failed", "cancelled")


def start_partial_post(gw, path: str, total_body: int, head: bytes) -> socket.socket:
    """Opens a POST that announces `total_body` bytes of multipart but sends only `head`."""
    u = urlsplit(gw.url)
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    req = (f"POST /v1{path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {KEYS['acme']}\r\n"
           f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {total_body}\r\n\r\n")
    s.sendall(req.encode() + head)
    return s


def multipart_head(field: str, filename: str, extra_fields: dict) -> bytes:
    out = b""
    for k, v in extra_fields.items():
        out += f'--XyZ\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--XyZ\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return out


def test_kill9_during_uploads_keeps_acknowledged_and_hides_partial(gateway_factory):
    gw = gateway_factory()
    c = gw.client()
    kept = good_jsonl(20)
    f = upload(c, kept, name="kept.jsonl")
    pieces = [good_jsonl(15), good_jsonl(16), good_jsonl(17)]
    total = sum(len(p) for p in pieces)
    up = c.uploads.create(bytes=total, filename="big.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    acked = [c.uploads.parts.create(up.id, data=pieces[0]).id]

    # In flight when the process dies: a part and a plain file upload, each half-sent.
    head = multipart_head("data", "blob", {}) + pieces[1][: len(pieces[1]) // 2]
    s1 = start_partial_post(gw, f"/uploads/{up.id}/parts", len(head) * 2 + 1000, head)
    head2 = multipart_head("file", "partial.jsonl", {"purpose": "fine-tune"}) + kept[:100]
    s2 = start_partial_post(gw, "/files", 10 * len(kept), head2)
    wait_for(lambda: len(list((gw.data_dir).rglob("*"))) > 0, what="data dir in use")
    gw.kill()
    s1.close()
    s2.close()

    c = gw.start().client()  # a restart binds a new port
    files = c.files.list()
    assert [x.id for x in files] == [f.id], "only the acknowledged file is listed"
    assert c.files.content(f.id).read() == kept
    # The pending upload and its acknowledged part survived; finishing it gives the full content.
    acked += [c.uploads.parts.create(up.id, data=p).id for p in pieces[1:]]
    done = c.uploads.complete(up.id, part_ids=acked, md5=hashlib.md5(b"".join(pieces)).hexdigest())
    assert done.status == "completed"
    assert c.files.content(done.file.id).read() == b"".join(pieces)
    assert sorted(x.id for x in c.files.list()) == sorted([f.id, done.file.id])


def test_kill9_during_running_job_resumes_without_duplicating_upstream(gateway_factory, upstream):
    upstream.hold_running = True
    gw = gateway_factory(upstream=upstream)
    c = gw.client()
    f = upload(c, good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    wait_for(lambda: c.fine_tuning.jobs.retrieve(job.id).status == "running", timeout_s=60,
             what="job running")
    gw.kill()
    for j in upstream.jobs.values():
        j.hold = False
    c = gw.start().client()
    assert [j.id for j in c.fine_tuning.jobs.list()] == [job.id]
    done = wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j,
                    timeout_s=60, what="job to finish after restart")
    assert done.status == "succeeded", done.error
    assert len(upstream.jobs) == 1, "the restarted gateway must not create a second upstream job"
    assert len(upstream.received("POST", "/v1/fine_tuning/jobs")) == 1


def test_kill9_right_after_create_finishes_or_fails_with_reason(gateway_factory, upstream):
    gw = gateway_factory(upstream=upstream)
    c = gw.client()
    f = upload(c, good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    gw.kill()  # acknowledged, somewhere in validating_files / plan / transform / queued
    c = gw.start().client()
    done = wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j,
                    timeout_s=60, what="job to finish after restart")
    if done.status == "failed":
        assert done.error and done.error.message, "a failed job states its reason"
    else:
        assert done.status == "succeeded"
    assert len({json.loads(r.body)["metadata"]["tuneguard_job_id"]
                for r in upstream.received("POST", "/v1/fine_tuning/jobs")}) <= 1
    assert len(upstream.jobs) <= 1


def test_sigterm_exits_zero_and_state_survives(gateway_factory):
    gw = gateway_factory()
    c = gw.client()
    f = upload(c, good_jsonl())
    c = gw.restart().client()  # SIGTERM, exit code 0 asserted
    assert c.files.retrieve(f.id).bytes == len(good_jsonl())
