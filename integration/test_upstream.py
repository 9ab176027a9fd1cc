"""Upstream mode against the fake OpenAI upstream: jobs forwarded and mirrored under the
gateway's ids, cancel forwarded, other /v1 routes proxied (JSON and SSE) with the key swapped."""

import json
import threading

import httpx2 as httpx
import openai
import pytest

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
    # The provider's resolved "auto"s are shown, as OpenAI shows them once a job runs; the
    # client's own n_epochs stays.
    assert job.hyperparameters.batch_size == "auto"
    assert (done.hyperparameters.batch_size, done.hyperparameters.learning_rate_multiplier,
            done.hyperparameters.n_epochs) == (1, 1.8, 2)
    assert done.method.supervised.hyperparameters.batch_size == 1
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
    # Metrics events come through as OpenAI sends them: type, data and time unchanged.
    metrics = sorted((e for e in events if e.type == "metrics"), key=lambda e: e.data["step"])
    up_metrics = sorted((e for e in up_job.events if e["type"] == "metrics"), key=lambda e: e["data"]["step"])
    assert [e.data for e in metrics] == [e["data"] for e in up_metrics] == \
        [{"step": 1, "train_loss": 0.5}, {"step": 2, "train_loss": 0.5}]
    assert [e.created_at for e in metrics] == [e["created_at"] for e in up_metrics]
    assert all(e.type == "message" for e in events if e.message.startswith("Validating"))
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
    ckpts = c.fine_tuning.jobs.checkpoints.list(job.id, limit=1)
    assert len(ckpts.data) == 1 and ckpts.has_more is True
    rest = c.fine_tuning.jobs.checkpoints.list(job.id, limit=1, after=ckpts.data[0].id)
    assert len(rest.data) == 1 and rest.data[0].id != ckpts.data[0].id
    assert ckpts.data[0].step_number > rest.data[0].step_number, "newest first"


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


def test_a_cancel_the_provider_fails_is_forwarded_until_it_takes(gw_up, upstream):
    # The provider answers the first two cancels with 503: the gateway has acknowledged the
    # client's cancel and keeps forwarding it, backing off, until the provider's job is
    # cancelled too (else the provider would train, and bill, a job the client cancelled).
    upstream.hold_running = True
    c = gw_up.client()
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(c, good_jsonl()).id)
    wait_status(c, job.id, ("running",))
    upstream.fail_next(2, 503, path_suffix="/cancel")
    assert c.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    delivered = "The cancellation was delivered to the execution backend."
    wait_for(lambda: any(e.message == delivered for e in c.fine_tuning.jobs.list_events(job.id).data),
             timeout_s=30, what="the cancel to be delivered")
    cancels = [r for r in upstream.received("POST", "/v1/fine_tuning/jobs/") if r.path.endswith("/cancel")]
    assert len(cancels) == 3, [r.path for r in cancels]
    assert all(j.obj["status"] == "cancelled" for j in upstream.jobs.values())
    assert c.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_chat_completions_proxied(gw_up, upstream):
    c = gw_up.client()
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "echo: hello there"
    rec = upstream.received("POST", "/v1/chat/completions")[-1]
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert json.loads(rec.body)["messages"][0]["content"] == "hello there"


def test_chat_completions_streaming_proxied(gw_up, upstream):
    c = gw_up.client()
    upstream.sse_gate = threading.Event()
    stream = c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                       messages=[{"role": "user", "content": "one two three"}])
    chunks = iter(stream)
    first = next(chunks)  # arrives while the upstream still holds the rest back
    upstream.sse_gate.set()
    assert not upstream.sse_gate_timed_out, "the gateway buffered the event stream"
    pieces = [ch.choices[0].delta.content or "" for ch in [first, *chunks] if ch.choices]
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


def test_look_alikes_of_gateway_routes_are_not_proxied(gw_up, upstream):
    """A trailing slash, an encoded byte or another case must not carry a files, uploads or
    fine-tuning request past the gateway to the upstream under the gateway's key."""
    before = len(upstream.requests)
    auth = {"Authorization": f"Bearer {KEYS['acme']}"}
    for method, path in [("GET", "/fine_tuning/jobs/"), ("POST", "/files/"), ("GET", "/fine%5Ftuning/jobs"),
                         ("GET", "/Files"), ("POST", "/uploads//")]:
        r = httpx.request(method, gw_up.base_url + path, headers=auth)
        assert r.status_code == 404, (path, r.status_code, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"].startswith("Invalid URL"), err
    assert len(upstream.requests) == before, [r.path for r in upstream.requests[before:]]


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


def test_upstream_down_is_a_stated_failure_and_counted(gateway_factory):
    from fake_upstream import FakeUpstream

    with FakeUpstream() as up:
        gw = gateway_factory(upstream=up)
    # The upstream is gone now.
    c = gw.client()
    f = upload(c, good_jsonl())
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code in (502, 503, 504) and e.value.body["type"] == "api_error"
    assert "127.0.0.1" not in e.value.message, "the upstream address is not leaked"
    done = wait_status(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id, TERMINAL)
    assert done.status == "failed" and done.error.code and done.error.message
    metrics = httpx.get(gw.url + "/metrics").text
    assert any(line.startswith("tuneguard_upstream_errors_total") and not line.endswith(" 0")
               for line in metrics.splitlines())


def test_logs_carry_request_ids_and_no_secrets(gw_up, upstream):
    from conftest import ADMIN_KEY

    c = gw_up.client()
    f = upload(c, good_jsonl())
    wait_status(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id, TERMINAL)
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    httpx.get(gw_up.base_url + "/tuneguard/admin/policies", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with pytest.raises(openai.AuthenticationError):
        gw_up.client("sk-wrong-but-secret-1234").files.list()
    assert gw_up.stop() == 0
    log = gw_up.log_path().read_text(errors="replace")
    for secret in (KEYS["acme"], ADMIN_KEY, UPSTREAM_KEY, "sk-wrong-but-secret-1234"):
        assert secret not in log, f"secret {secret[:6]}… in the log"
    assert "req_" in log, "log lines carry request ids"
