"""Request validation on the wire: OpenAI's status, error type and the `param` that names the field."""

import io

import httpx2 as httpx
import openai
import pytest

from conftest import KEYS
from datasets import good_jsonl, upload

CASES = {
    "bad purpose": (lambda c, f: c.files.create(file=("a.jsonl", io.BytesIO(good_jsonl())), purpose="nonsense"),
                    "purpose"),
    "suffix too long": (lambda c, f: c.fine_tuning.jobs.create(model="m", training_file=f, suffix="x" * 65),
                        "suffix"),
    "n_epochs out of range": (lambda c, f: c.fine_tuning.jobs.create(
        model="m", training_file=f, hyperparameters={"n_epochs": 0}), "hyperparameters.n_epochs"),
    "training file with another purpose": (lambda c, f: c.fine_tuning.jobs.create(
        model="m", training_file=upload(c, b"hello", name="x.txt", purpose="user_data").id), "training_file"),
    "unknown argument": (lambda c, f: c.fine_tuning.jobs.create(model="m", training_file=f, extra_body={"bogus": 1}),
                         "bogus"),
    "files limit 0": (lambda c, f: c.files.list(limit=0), "limit"),
    "jobs limit 1000": (lambda c, f: c.fine_tuning.jobs.list(limit=1000), "limit"),
    "fine-tune upload that is not jsonl": (lambda c, f: c.uploads.create(
        bytes=10, filename="a.csv", mime_type="text/csv", purpose="fine-tune"), "mime_type"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_request_is_400_naming_the_param(gateway, name):
    call, param = CASES[name]
    c = gateway.client()
    f = upload(c, good_jsonl()).id
    jobs_before = c.fine_tuning.jobs.list().data
    with pytest.raises(openai.BadRequestError) as e:
        call(c, f)
    assert e.value.body["type"] == "invalid_request_error"
    assert e.value.body["param"] == param, e.value.body
    assert e.value.response.headers.get("x-should-retry") == "false"
    assert c.fine_tuning.jobs.list().data == jobs_before


def test_unknown_validation_file_is_not_found(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    with pytest.raises(openai.NotFoundError) as e:
        c.fine_tuning.jobs.create(model="m", training_file=f.id, validation_file="file-nope")
    assert e.value.body["param"] == "validation_file" and "file-nope" in e.value.message


def test_malformed_json_body_is_400(gateway):
    r = httpx.post(gateway.base_url + "/fine_tuning/jobs", content=b"{nope",
                   headers={"Authorization": f"Bearer {KEYS['acme']}", "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_cancel_or_pause_a_finished_job_is_400(gateway):
    from conftest import wait_for
    c = gateway.client()
    f = upload(c, good_jsonl())
    j = c.fine_tuning.jobs.create(model="m", training_file=f.id)
    wait_for(lambda: c.fine_tuning.jobs.retrieve(j.id).status == "failed", what="local job to fail")
    for op in (c.fine_tuning.jobs.cancel, c.fine_tuning.jobs.pause, c.fine_tuning.jobs.resume):
        with pytest.raises(openai.BadRequestError) as e:
            op(j.id)
        assert j.id in e.value.message
    assert c.fine_tuning.jobs.retrieve(j.id).status == "failed"
