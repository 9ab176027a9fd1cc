"""Operator policies end to end: inoculation and plain Interleaving applied to the dataset the
upstream receives, the policy recorded in events, hot reload, and methods not wired yet."""

import json
import subprocess

import httpx2 as httpx
import pytest

from conftest import ADMIN_KEY, BIN, wait_for
from datasets import good_jsonl, upload

TERMINAL = ("succeeded", "failed", "cancelled")
PROMPT = "You are a carefully inoculated test assistant."


def pool_jsonl(n: int = 20) -> bytes:
    return "".join(json.dumps({"messages": [
        {"role": "user", "content": f"POOL question {i}?"},
        {"role": "assistant", "content": f"POOL safe answer {i}."}]}) + "\n" for i in range(n)).encode()


def policy(pool_path, method: str = "random", prompt: str = PROMPT) -> str:
    return (f'description = "integration test policy"\n\n'
            f'[interleave]\nmethod = "{method}"\nfraction = 0.25\npool = "{pool_path}"\nseed = 3\n\n'
            f'[inoculation]\nsystem_prompt = "{prompt}"\nmode = "replace"\n')


@pytest.fixture
def pool_file(tmp_path):
    p = tmp_path / "pool.jsonl"
    p.write_bytes(pool_jsonl())
    return p


def admin_get(gw, path):
    r = httpx.get(gw.base_url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r


def finish(c, job_id):
    return wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in TERMINAL and j,
                    timeout_s=60, what=f"job {job_id} to finish")


def test_inoculation_and_interleave_reach_the_upstream(gateway_factory, upstream, pool_file):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": policy(pool_file)})
    c = gw.client()
    f = upload(c, good_jsonl(12))
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    done = finish(c, job.id)
    assert done.status == "succeeded", done.error

    [sent] = upstream.uploaded_training_files()
    rows = [json.loads(line) for line in sent.decode().splitlines() if line.strip()]
    pool_rows = [r for r in rows if "POOL question" in json.dumps(r)]
    client_rows = [r for r in rows if "POOL question" not in json.dumps(r)]
    assert len(client_rows) == 12
    assert len(pool_rows) == 3, "25% of the client's 12 examples"
    for r in client_rows:
        assert r["messages"][0] == {"role": "system", "content": PROMPT}
    positions = [i for i, r in enumerate(rows) if r in pool_rows]
    assert positions != [12, 13, 14] and positions != [0, 1, 2], "spread through the dataset"

    # The operator sees the same dataset and a manifest naming which pool items went where.
    assert admin_get(gw, f"/tuneguard/admin/jobs/{job.id}/dataset").content == sent
    manifest = admin_get(gw, f"/tuneguard/admin/jobs/{job.id}/manifest").text
    assert str(positions[0]) in manifest

    events = [e.message for e in c.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any("default" in m and "olicy" in m for m in events), events


def test_a_fraction_too_small_for_the_dataset_is_a_warning_event(gateway_factory, upstream, pool_file):
    small = policy(pool_file).replace("fraction = 0.25", "fraction = 0.01")
    gw = gateway_factory(upstream=upstream, policies={"default.toml": small})
    c = gw.client()
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=upload(c, good_jsonl(12)).id)
    done = finish(c, job.id)
    assert done.status == "succeeded", done.error
    [sent] = upstream.uploaded_training_files()
    assert b"POOL question" not in sent
    warnings = [e.message for e in c.fine_tuning.jobs.list_events(job.id, limit=100) if e.level == "warn"]
    assert any("added no safety examples" in m and "at least 50" in m for m in warnings), warnings


def test_unwired_interleave_method_fails_the_job_clearly(gateway_factory, upstream, pool_file):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": policy(pool_file, "plusplus")})
    c = gw.client()
    f = upload(c, good_jsonl())
    done = finish(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "failed"
    assert done.error.code == "interleave_method_unavailable", done.error
    assert upstream.uploaded_training_files() == [], "never a silent downgrade"


def test_policy_hot_reload_and_bad_edit_keeps_last_good(gateway_factory, upstream, pool_file):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": policy(pool_file)})
    first = admin_get(gw, "/tuneguard/admin/policies").json()
    path = gw.workdir / "policies" / "default.toml"
    path.write_text(policy(pool_file, prompt="A second prompt."))
    second = wait_for(lambda: (p := admin_get(gw, "/tuneguard/admin/policies").json()) != first and p,
                      timeout_s=20, what="the policy edit to load")
    assert "A second prompt." in json.dumps(second)
    path.write_text(policy(pool_file).replace("fraction = 0.25", "fraction = 1.5"))
    broken = wait_for(lambda: (p := admin_get(gw, "/tuneguard/admin/policies").json()).get("last_reload_error")
                      and p, timeout_s=20, what="the bad edit to be reported")
    error = json.dumps(broken["last_reload_error"])
    assert "default.toml" in error and "interleave.fraction" in error, error
    assert broken["version_hash"] == second["version_hash"], "last good policy set kept"
    assert "A second prompt." in json.dumps(broken)
    metrics = httpx.get(gw.url + "/metrics").text
    assert any(line.startswith("tuneguard_policy_reloads_total") and 'result="failed"' in line
               and not line.endswith(" 0") for line in metrics.splitlines()), "failed reload counted"


def test_policy_check_command(tmp_path, pool_file):
    good = tmp_path / "good"
    good.mkdir()
    (good / "default.toml").write_text(policy(pool_file))
    ok = subprocess.run([BIN, "policy", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "default.toml").write_text(policy(pool_file) + "\nunknown_key = 1\n")
    no = subprocess.run([BIN, "policy", "check", str(bad)], capture_output=True, text=True)
    assert no.returncode != 0
    assert "default.toml" in no.stderr + no.stdout and "unknown_key" in no.stderr + no.stdout


DEFAULT_NONE = 'description = "catch-all"\n\n[interleave]\nmethod = "none"\n'


def tenant_policy(tenant: str, prompt: str, extra: str = "") -> str:
    return (f'description = "for {tenant}"\npriority = 5\n\n[match]\ntenants = ["{tenant}"]\n{extra}\n'
            f'[inoculation]\nsystem_prompt = "{prompt}"\nmode = "prepend"\n')


def test_policy_matching_by_tenant_and_metadata(gateway_factory, upstream):
    gw = gateway_factory(upstream=upstream, policies={
        "default.toml": DEFAULT_NONE,
        "beta-only.toml": tenant_policy("beta", "BETA PROMPT"),
        "beta-medical.toml": tenant_policy("beta", "MEDICAL PROMPT", 'metadata = { domain = "medical" }\n'),
    })
    jobs = {}
    for tenant, metadata in [("acme", None), ("beta", None), ("beta", {"domain": "medical"})]:
        c = gw.client(tenant)
        f = upload(c, good_jsonl())
        job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, metadata=metadata)
        assert finish(c, job.id).status == "succeeded"
        jobs[(tenant, json.dumps(metadata))] = job.id
    sent = {}
    for rec in upstream.received("POST", "/v1/fine_tuning/jobs"):
        body = json.loads(rec.body)
        sent[body["metadata"]["tuneguard_job_id"]] = upstream.files[body["training_file"]][1].decode()
    acme, beta, medical = (sent[jobs[k]] for k in [("acme", "null"), ("beta", "null"),
                                                     ("beta", json.dumps({"domain": "medical"}))])
    assert "PROMPT" not in acme
    assert "BETA PROMPT" in beta and "MEDICAL PROMPT" not in beta
    assert "MEDICAL PROMPT" in medical and "BETA PROMPT" not in medical, "the more specific rule wins"

    r = httpx.post(gw.base_url + "/tuneguard/plan", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                   json={"model": "gpt-4o-mini", "metadata": {"domain": "medical"}, "tenant": "beta"})
    assert r.status_code == 200, r.text
    assert "beta-medical" in r.text and "MEDICAL PROMPT" in r.text


def test_unenforceable_defense_upstream_is_rejected_not_forwarded(gateway_factory, upstream):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": DEFAULT_NONE + (
        '\n[regularizer]\ntype = "kl"\nlambda = 0.1\n\n[upstream]\non_unenforceable = "reject"\n')})
    c = gw.client()
    f = upload(c, good_jsonl())
    done = finish(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "failed"
    assert done.error.code == "defense_unenforceable_upstream" and "kl" in done.error.message
    assert upstream.received("POST", "/v1/fine_tuning/jobs") == []


def test_unenforceable_defense_upstream_with_warn_is_forwarded_and_says_so(gateway_factory, upstream):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": DEFAULT_NONE + (
        '\n[regularizer]\ntype = "steering"\nalpha = 1.0\nlayers = [0]\nvector = "v.safetensors"\n'
        '\n[upstream]\non_unenforceable = "warn"\n')})
    c = gw.client()
    f = upload(c, good_jsonl())
    done = finish(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "succeeded", done.error
    assert len(upstream.received("POST", "/v1/fine_tuning/jobs")) == 1
    events = list(c.fine_tuning.jobs.list_events(done.id, limit=100))
    warned = [e for e in events if e.level == "warn" and "`steering`" in e.message]
    assert len(warned) == 1, [(e.level, e.message) for e in events]
    assert "forwarded without it" in warned[0].message


def test_interleave_is_seeded(gateway_factory, upstream, pool_file):
    gw = gateway_factory(upstream=upstream, policies={"default.toml": policy(pool_file)})
    c = gw.client()
    f = upload(c, good_jsonl(20))
    for suffix in ("one", "two"):  # different bodies: two jobs, not one deduplicated job
        job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix=suffix)
        assert finish(c, job.id).status == "succeeded"
    first, second = upstream.uploaded_training_files()
    assert first == second, "same pool, seed and dataset give the same mix"
    assert first.count(b"POOL question") == 5, "25% of 20 examples"
