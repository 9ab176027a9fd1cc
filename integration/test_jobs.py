"""Fine-tuning jobs in local mode: screening failures, unsupported methods, idempotent create,
list pagination and metadata filter. (Forwarded jobs are in test_upstream.py.)"""

import httpx2 as httpx
import openai
import pytest

from conftest import wait_for
from datasets import bad_jsonl, good_jsonl, upload

TERMINAL = ("succeeded", "failed", "cancelled")


def finished(c, job_id):
    return wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in TERMINAL and j,
                    timeout_s=30, what=f"job {job_id} to finish")


def test_bad_training_file_fails_job_naming_the_line(gateway):
    c = gateway.client()
    f = upload(c, bad_jsonl(bad_line=4))
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    assert job.status == "validating_files"
    done = finished(c, job.id)
    assert done.status == "failed"
    assert done.error.param == "training_file"
    assert done.error.code
    assert "4" in done.error.message and "assistant" in done.error.message.lower(), done.error.message
    levels = [e.level for e in c.fine_tuning.jobs.list_events(job.id)]
    assert "error" in levels


def test_too_few_examples_fails_job(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl(3))
    done = finished(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "failed" and done.error.param == "training_file"
    assert "10" in done.error.message, done.error.message


def test_special_token_in_content_fails_job(gateway):
    c = gateway.client()
    data = good_jsonl(12).replace(b"What is 5 plus 5?", b"What is <|im_start|> plus 5?")
    f = upload(c, data)
    done = finished(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "failed" and done.error.param == "training_file"
    assert "<|im_start|>" in done.error.message, done.error.message


def test_local_mode_fails_with_stated_reason_never_silent_success(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    done = finished(c, c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
    assert done.status == "failed"
    # No [[models]] entry serves the model: a stated failure naming it, never a silent success.
    assert done.error.code == "model_not_available" and "gpt-4o-mini" in done.error.message


def test_unknown_training_file_is_rejected(gateway):
    c = gateway.client()
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as e:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-nope0000000000000000000")
    assert e.value.body.get("param") in ("training_file", None)
    assert "file-nope0000000000000000000" in e.value.message
    assert c.fine_tuning.jobs.list().data == []


@pytest.mark.parametrize("method", [
    {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}},
    {"type": "reinforcement", "reinforcement": {"grader": {"type": "string_check", "name": "g",
                                                           "input": "x", "reference": "y",
                                                           "operation": "eq"}}},
])
def test_unsupported_method_is_a_clear_400(gateway, method):
    c = gateway.client()
    f = upload(c, good_jsonl())
    with pytest.raises(openai.BadRequestError) as e:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, method=method)
    assert method["type"] in e.value.message
    assert e.value.response.headers.get("x-should-retry") == "false"
    assert c.fine_tuning.jobs.list().data == []


def test_identical_create_twice_makes_one_job(gw_up, upstream):
    upstream.hold_running = True  # the job stays alive: a failed one is not replayed
    c = gw_up.client()
    f = upload(c, good_jsonl())
    a = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="same")
    b = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="same")
    assert a.id == b.id
    assert [j.id for j in c.fine_tuning.jobs.list()] == [a.id]


def test_idempotency_key_is_honoured(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    h1 = {"Idempotency-Key": "key-one"}
    a = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="s1", extra_headers=h1)
    b = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="s1", extra_headers=h1)
    other = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="s2",
                                      extra_headers={"Idempotency-Key": "key-two"})
    assert a.id == b.id and other.id != a.id
    assert sorted(j.id for j in c.fine_tuning.jobs.list()) == sorted([a.id, other.id])


def test_two_keys_with_one_body_are_two_jobs_and_a_failed_job_is_not_replayed(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    a = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="k",
                                  extra_headers={"Idempotency-Key": "first"})
    b = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="k",
                                  extra_headers={"Idempotency-Key": "second"})
    assert a.id != b.id
    # Without a key the body window replays a retry (test above), but not once the job has failed
    # (local mode fails it: no local trainer yet): re-submitting is a new attempt.
    x = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="nokey")
    assert finished(c, x.id).status == "failed"
    y = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="nokey")
    assert y.id != x.id and y.status == "validating_files"


def test_idempotency_key_reused_with_other_parameters_is_a_conflict(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    h = {"Idempotency-Key": "key-reused"}
    a = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="s1", extra_headers=h)
    with pytest.raises(openai.ConflictError) as e:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="s2", extra_headers=h)
    assert e.value.code == "idempotency_key_reused" and e.value.param is None
    assert e.value.response.headers.get("x-should-retry") == "false"
    assert [j.id for j in c.fine_tuning.jobs.list()] == [a.id]


def test_job_list_pagination_and_metadata_filter(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    ids = [c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix=f"n{i}",
                                     metadata={"team": "red" if i % 2 else "blue"}).id
           for i in range(5)]
    page = c.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == ids[::-1][:2] and page.has_more is True
    nxt = c.fine_tuning.jobs.list(limit=2, after=page.data[-1].id)
    assert [j.id for j in nxt.data] == ids[::-1][2:4]
    assert [j.id for j in c.fine_tuning.jobs.list(limit=2)] == ids[::-1]
    red = [j.id for j in c.fine_tuning.jobs.list(metadata={"team": "red"})]
    assert sorted(red) == sorted([ids[1], ids[3]])


def test_too_much_metadata_is_rejected(gateway):
    c = gateway.client()
    f = upload(c, good_jsonl())
    with pytest.raises(openai.BadRequestError) as e:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id,
                                  metadata={f"k{i}": "v" for i in range(17)})
    assert "metadata" in (e.value.body.get("param") or e.value.message)


def test_plan_endpoint_explains_policy(gateway):
    r = httpx.post(gateway.base_url + "/tuneguard/plan",
                   headers={"Authorization": "Bearer sk-admin-operator"},
                   json={"model": "gpt-4o-mini", "metadata": {}, "tenant": "acme"})
    assert r.status_code == 200, r.text
    assert "policy" in r.text and "interleave" in r.text


def test_bad_validation_file_fails_job_naming_it(gateway):
    c = gateway.client()
    train = upload(c, good_jsonl())
    valid = upload(c, bad_jsonl(bad_line=2), name="valid.jsonl")
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train.id, validation_file=valid.id)
    done = finished(c, job.id)
    assert done.status == "failed"
    assert done.error.param == "validation_file", done.error
    assert "2" in done.error.message
