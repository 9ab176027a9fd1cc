"""Tenant isolation on every route: tenant B gets exactly the 404 a missing id gets, and
never sees tenant A's objects in lists."""

import httpx2 as httpx
import openai
import pytest

from conftest import KEYS, wait_for
from datasets import good_jsonl, upload


@pytest.fixture
def two_tenants(gw_up, upstream):
    upstream.hold_running = True
    a = gw_up.client("acme")
    f = upload(a, good_jsonl())
    up = a.uploads.create(bytes=20, filename="p.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    part = a.uploads.parts.create(up.id, data=b'{"messages": []}\n')
    job = a.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, metadata={"t": "a"})
    wait_for(lambda: a.fine_tuning.jobs.retrieve(job.id).status == "running", timeout_s=60,
             what="tenant A's job to run")
    return gw_up, {"file": f.id, "upload": up.id, "part": part.id, "job": job.id}


def routes(ids):
    f, u, p, j = ids["file"], ids["upload"], ids["part"], ids["job"]
    return [
        ("GET", f"/files/{f}", None), ("GET", f"/files/{f}/content", None), ("DELETE", f"/files/{f}", None),
        ("POST", f"/uploads/{u}/parts", "part"), ("POST", f"/uploads/{u}/complete", {"part_ids": [p]}),
        ("POST", f"/uploads/{u}/cancel", None),
        ("GET", f"/fine_tuning/jobs/{j}", None), ("POST", f"/fine_tuning/jobs/{j}/cancel", None),
        ("POST", f"/fine_tuning/jobs/{j}/pause", None), ("POST", f"/fine_tuning/jobs/{j}/resume", None),
        ("GET", f"/fine_tuning/jobs/{j}/events", None), ("GET", f"/fine_tuning/jobs/{j}/checkpoints", None),
    ]


def call(gw, key, method, path, body):
    headers = {"Authorization": f"Bearer {key}"}
    if body == "part":
        return httpx.request(method, gw.base_url + path, headers=headers, files={"data": ("blob", b"xx")})
    return httpx.request(method, gw.base_url + path, headers=headers, json=body)


def missing(ids):
    """The same ids with the random part changed: ids that exist for nobody."""
    return {k: v[:-4] + "ZZZZ" for k, v in ids.items()}


def test_other_tenant_gets_404_like_a_missing_id(two_tenants):
    gw, ids = two_tenants
    gone_ids = missing(ids)
    swap = {v: "ID" for v in list(ids.values()) + list(gone_ids.values())}

    def shape(msg: str) -> str:
        for real, placeholder in swap.items():
            msg = msg.replace(real, placeholder)
        return msg

    for (method, path, body), (_, gone_path, _) in zip(routes(ids), routes(gone_ids)):
        r = call(gw, KEYS["beta"], method, path, body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error", err
        gone = call(gw, KEYS["beta"], method, gone_path, body)
        assert gone.status_code == 404
        # Same message shape as for an id that does not exist (only the id differs).
        assert shape(err["message"]) == shape(gone.json()["error"]["message"]), (err, gone.text)


def test_other_tenant_lists_are_empty_and_owner_objects_intact(two_tenants):
    gw, ids = two_tenants
    b = gw.client("beta")
    assert b.files.list().data == []
    assert b.fine_tuning.jobs.list().data == []
    assert b.fine_tuning.jobs.list(metadata={"t": "a"}).data == []
    with pytest.raises(openai.NotFoundError):
        b.fine_tuning.jobs.retrieve(ids["job"])
    # After B's attempts (delete, cancel, complete…), A's objects are untouched.
    a = gw.client("acme")
    assert a.files.retrieve(ids["file"]).id == ids["file"]
    assert a.fine_tuning.jobs.retrieve(ids["job"]).status == "running"
    cancelled = a.uploads.cancel(ids["upload"])  # still A's, still pending after B's tries
    assert cancelled.status == "cancelled"
    assert [f.id for f in a.files.list()] == [ids["file"]]
    assert [j.id for j in a.fine_tuning.jobs.list()] == [ids["job"]]


def test_admin_dataset_routes_need_admin(two_tenants):
    gw, ids = two_tenants
    for kind in ("dataset", "manifest"):
        path = f"/tuneguard/admin/jobs/{ids['job']}/{kind}"
        r = call(gw, KEYS["acme"], "GET", path, None)
        assert r.status_code in (401, 403), (path, r.status_code)
        ok = call(gw, "sk-admin-operator", "GET", path, None)
        assert ok.status_code == 200, (path, ok.text)


def test_list_cursor_with_a_foreign_id_behaves_like_a_missing_id(two_tenants):
    """`after=<A's id>` must not tell B that the id exists (a side channel on ids)."""
    gw, ids = two_tenants
    b = gw.client("beta")
    upload(b, good_jsonl())
    b_job_file = upload(b, good_jsonl(11))
    b.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=b_job_file.id)
    gone = missing(ids)

    def outcome(list_call, cursor):
        try:
            return ("ok", [x.id for x in list_call(after=cursor).data])
        except openai.APIStatusError as e:
            return (e.status_code, e.body.get("param"), e.message.replace(cursor, "ID"))

    for kind, list_call in (("file", b.files.list), ("job", b.fine_tuning.jobs.list)):
        assert outcome(list_call, ids[kind]) == outcome(list_call, gone[kind]), kind


def test_plan_route_explains_only_the_callers_own_plans(gateway_factory):
    acme_only = ('description = "acme"\npriority = 1\n[match]\ntenants = ["acme"]\n'
                 '[inoculation]\nsystem_prompt = "ACME ONLY PROMPT"\n')
    default = 'description = "catch-all"\n\n[interleave]\nmethod = "none"\n'
    gw = gateway_factory(policies={"default.toml": default, "acme.toml": acme_only})

    def plan(key, body):
        return httpx.post(gw.base_url + "/tuneguard/plan", headers={"Authorization": f"Bearer {key}"}, json=body)

    body = {"model": "gpt-4o-mini", "metadata": {}}
    assert "ACME ONLY PROMPT" in plan(KEYS["acme"], body).text
    own = plan(KEYS["beta"], body)
    assert own.status_code == 200 and "ACME ONLY PROMPT" not in own.text
    other = plan(KEYS["beta"], {**body, "tenant": "acme"})
    assert other.status_code in (403, 404) and "ACME ONLY PROMPT" not in other.text
