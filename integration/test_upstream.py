"""Upstream mode against the fake OpenAI upstream: jobs forwarded and mirrored under the
gateway's ids, cancel forwarded, other /v1 routes proxied (JSON and SSE) with the key swapped."""

import json

import httpx2 as httpx

from conftest import KEYS, wait_for
from datasets import good_jsonl, upload
from fake_upstream import UPSTREAM_KEY

TERMINAL = ("succeeded", "failed", "cancelled")


def wait_status(c, job_id, wanted, timeout_s=60):
    return wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in wanted and j,
                    timeout_s=timeout_s, what=f"job {job_id} to reach {wanted}")


def test_job_is_forwarded_and_mirrored(gw_up, upstream):
    c = gw_up.client()
    data = good_jsonl(12)
    f = upload(c, data)
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, seed=7,
                                    hyperparameters={"n_epochs": 2})
    done = wait_status(c, job.id, TERMINAL)
    assert done.status == "succeeded", done.error
    assert done.id == job.id and done.training_file == f.id
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:gpt-4o-mini")

    # Upstream got the dataset (the client's examples) and a job, with the upstream key only.
    forwarded = upstream.uploaded_training_files()
    assert len(forwarded) == 1
    sent = [json.loads(line) for line in forwarded[0].decode().splitlines() if line.strip()]
    client_examples = [json.loads(line) for line in data.decode().splitlines()]
    for ex in client_examples:
        user = ex["messages"][0]["content"]
        assert any(user in json.dumps(s) for s in sent), user
    creates = upstream.received("POST", "/v1/fine_tuning/jobs")
    assert creates
    body = json.loads(creates[0].body)
    assert body["model"] == "gpt-4o-mini" and body["training_file"] != f.id
    assert body["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2 and body["seed"] == 7
    for r in upstream.requests:
        assert r.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"
        assert KEYS["acme"] not in json.dumps(r.headers)

    # Events and checkpoints mirrored under gateway ids.
    up_job = next(iter(upstream.jobs.values()))
    events = list(c.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert any("successfully completed" in m for m in messages), messages
    assert any("Fine-tuning job started" in m for m in messages)
    up_event_ids = {e["id"] for e in up_job.events}
    assert all(e.id.startswith("ftevent-") and e.id not in up_event_ids for e in events)
    ckpts = list(c.fine_tuning.jobs.checkpoints.list(job.id))
    assert sorted(k.step_number for k in ckpts) == [1, 2]
    up_ckpt_ids = {k["id"] for k in up_job.checkpoints}
    for k in ckpts:
        assert k.id.startswith("ftckpt-") and k.id not in up_ckpt_ids
        assert k.fine_tuning_job_id == job.id
        assert k.fine_tuned_model_checkpoint.endswith(f"ckpt-step-{k.step_number}")
        assert k.metrics.train_loss == 0.5


def test_events_paginate(gw_up):
    c = gw_up.client()
    f = upload(c, good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    wait_status(c, job.id, TERMINAL)
    everything = [e.id for e in c.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert len(everything) >= 4 and len(set(everything)) == len(everything)
    first = c.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more is True and [e.id for e in first.data] == everything[:2]
    second = c.fine_tuning.jobs.list_events(job.id, limit=2, after=first.data[-1].id)
    assert [e.id for e in second.data] == everything[2:4]
    assert [e.id for e in c.fine_tuning.jobs.list_events(job.id, limit=2)] == everything


def test_cancel_is_forwarded(gw_up, upstream):
    upstream.hold_running = True
    c = gw_up.client()
    f = upload(c, good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    wait_status(c, job.id, ("running",))
    cancelled = c.fine_tuning.jobs.cancel(job.id)
    assert cancelled.id == job.id and cancelled.status in ("cancelled", "running")
    wait_status(c, job.id, ("cancelled",))
    wait_for(lambda: upstream.received("POST", "/v1/fine_tuning/jobs/") and
             any(r.path.endswith("/cancel") for r in upstream.received("POST", "/v1/fine_tuning/jobs/")),
             what="the cancel to reach the upstream")
    assert all(j.obj["status"] == "cancelled" for j in upstream.jobs.values())


def test_chat_completions_proxied(gw_up, upstream):
    c = gw_up.client()
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "echo: hello there"
    rec = upstream.received("POST", "/v1/chat/completions")[-1]
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert json.loads(rec.body)["messages"][0]["content"] == "hello there"


def test_chat_completions_streaming_proxied(gw_up, upstream):
    c = gw_up.client()
    stream = c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                       messages=[{"role": "user", "content": "one two three"}])
    pieces = [ch.choices[0].delta.content or "" for ch in stream if ch.choices]
    assert len(pieces) >= 4
    assert "".join(pieces) == "echo: one two three"
    rec = upstream.received("POST", "/v1/chat/completions")[-1]
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_proxy_drops_hop_by_hop_headers(gw_up, upstream):
    r = httpx.get(gw_up.base_url + "/models",
                  headers={"Authorization": f"Bearer {KEYS['acme']}", "Connection": "keep-alive, X-Hop",
                           "X-Hop": "secret-hop", "Proxy-Authorization": "Basic abc", "X-Keep": "kept"})
    assert r.status_code == 200 and r.headers.get("x-request-id")
    rec = upstream.received("GET", "/v1/models")[-1]
    assert "x-hop" not in rec.headers and "proxy-authorization" not in rec.headers
    assert rec.headers.get("x-keep") == "kept", "end-to-end headers pass through"
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_models_proxied_and_auth_still_required(gw_up, upstream):
    c = gw_up.client()
    assert [m.id for m in c.models.list()] == ["gpt-4o-mini"]
    before = len(upstream.requests)
    r = httpx.get(gw_up.base_url + "/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert len(upstream.requests) == before  # an unauthenticated request never reaches upstream


def test_pause_and_resume_are_forwarded(gw_up, upstream):
    upstream.hold_running = True
    c = gw_up.client()
    f = upload(c, good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    wait_status(c, job.id, ("running",))
    assert c.fine_tuning.jobs.pause(job.id).status == "paused"
    # The provider must stop too: a paused gateway job whose upstream keeps training still bills.
    wait_for(lambda: any(r.path.endswith("/pause") for r in upstream.received("POST", "/v1/fine_tuning/jobs/")),
             timeout_s=10, what="the pause to reach the upstream")
    assert all(j.obj["status"] == "paused" for j in upstream.jobs.values())
    assert c.fine_tuning.jobs.resume(job.id).status == "running"
    wait_for(lambda: any(r.path.endswith("/resume") for r in upstream.received("POST", "/v1/fine_tuning/jobs/")),
             timeout_s=10, what="the resume to reach the upstream")
    for j in upstream.jobs.values():
        j.hold = False
    assert wait_status(c, job.id, TERMINAL).status == "succeeded"
