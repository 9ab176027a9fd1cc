"""/metrics: Prometheus text that passes `promtool check metrics`, with the series operators need."""

import shutil
import subprocess

import httpx2 as httpx
import openai
import pytest

from conftest import wait_for
from datasets import bad_jsonl, good_jsonl, upload


def test_metrics_pass_promtool_and_count_traffic(gw_up, upstream):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup-test-deps.sh"
    c = gw_up.client()
    upload(c, good_jsonl())
    bad = upload(c, bad_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=bad.id)
    wait_for(lambda: c.fine_tuning.jobs.retrieve(job.id).status == "failed", what="bad job to fail")
    with pytest.raises(openai.AuthenticationError):
        gw_up.client("sk-wrong").files.list()
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    r = httpx.get(gw_up.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

    samples = [line for line in text.splitlines() if line and not line.startswith("#")]

    def total(name: str, *labels: str) -> float:
        return sum(float(s.rsplit(" ", 1)[1]) for s in samples
                   if s.split("{")[0].split(" ")[0] == name and all(lb in s for lb in labels))

    assert total("tuneguard_http_requests_total", 'status="401"') >= 1
    assert total("tuneguard_http_requests_total", 'status="200"') >= 4
    assert total("tuneguard_http_request_duration_seconds_count") >= 5
    assert total("tuneguard_upload_bytes_total") >= len(good_jsonl()) + len(bad_jsonl())
    assert total("tuneguard_screening_rejections_total") >= 1
    assert total("tuneguard_jobs", 'status="failed"') >= 1
    assert total("tuneguard_job_transitions_total", 'status="failed"') >= 1
    # Labels come from bounded sets: raw ids never appear.
    for s in samples:
        assert "file-" not in s and "ftjob-" not in s, s
