"""Durability: `kill -9` during uploads and during a job, restart on the same data dir:
every acknowledged object is there, nothing partial is listed, jobs resume or fail with a reason."""

import hashlib
import json

from conftest import wait_for
from datasets import good_jsonl, upload
from rawhttp import multipart_head, start_partial_post

TERMINAL = ("succeeded", "failed", "cancelled")


def test_kill9_during_uploads_keeps_acknowledged_and_hides_partial(gateway_factory):
    gw = gateway_factory()
    c = gw.client()
    kept = good_jsonl(20)
    f = upload(c, kept, name="kept.jsonl")
    pieces = [good_jsonl(15), good_jsonl(16), good_jsonl(17)]
    total = sum(len(p) for p in pieces)
    up = c.uploads.create(bytes=total, filename="big.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    acked = [c.uploads.parts.create(up.id, data=pieces[0]).id]

    # In flight when the process dies: a part and a plain file upload, each half-sent, each
    # already being written to disk by the gateway.
    stored = set(gw.data_dir.rglob("*"))
    head = multipart_head("data", "blob", {}) + pieces[1][: len(pieces[1]) // 2]
    s1 = start_partial_post(gw, f"/uploads/{up.id}/parts", len(head) * 2 + 1000, head)
    head2 = multipart_head("file", "partial.jsonl", {"purpose": "fine-tune"}) + kept[:100]
    s2 = start_partial_post(gw, "/files", 10 * len(kept), head2)
    in_flight = wait_for(lambda: len(new := [p for p in gw.data_dir.rglob("*")
                                             if p.is_file() and p not in stored]) >= 2 and new,
                         what="both in-flight bodies to reach the disk")
    gw.kill()
    s1.close()
    s2.close()

    c = gw.start().client()  # a restart binds a new port
    leftovers = [p for p in in_flight if p.exists()]
    assert leftovers == [], "the startup sweep removes half-written bodies"
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
    key = {"Idempotency-Key": "survives-restart"}
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, extra_headers=key)
    c = gw.restart().client()  # SIGTERM, exit code 0 asserted
    assert c.files.retrieve(f.id).bytes == len(good_jsonl())
    again = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, extra_headers=key)
    assert again.id == job.id, "idempotency keys are durable"
    assert [j.id for j in c.fine_tuning.jobs.list()] == [job.id]
