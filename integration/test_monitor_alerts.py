"""The shipped Prometheus rules (conf/prometheus/alerts.yml): `promtool check rules` and the
`promtool test rules` unit tests, and a real Prometheus server (Debian's package) that scrapes
the gateway during a drifting local job and fires the drift alert (seen in /api/v1/alerts)."""

import shutil
import socket
import subprocess
import time

import httpx2 as httpx

from conftest import ROOT, wait_for
from datasets import upload
from monitor_helpers import config, create, misaligned_jsonl, policy

RULES = ROOT / "conf" / "prometheus"

PAUSE_RULE = """
[[monitor.rules]]
metric = "alignment_probe_gap"
above = 0.6
action = "pause"
"""


def test_shipped_rules_pass_promtool_check_and_unit_tests():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup-test-deps.sh"
    check = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=RULES,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_prometheus_fires_the_drift_alert_during_a_drifting_job(gateway_factory, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: run scripts/setup-test-deps.sh"
    # The monitor pauses the job at its first checkpoint past 0.6 nats: paused jobs keep their
    # series, so the alert stays firing until the test has seen it.
    gw = gateway_factory(extra=config(), policies={"default.toml": policy(PAUSE_RULE, epochs=14)})
    target = gw.url.removeprefix("http://")
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES / 'alerts.yml'}
scrape_configs:
  - job_name: tuneguard
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
""")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(f"{api}/-/ready") == 200, timeout_s=60, what="prometheus to be ready")
        # Its first scrape comes a few seconds after it is ready (target discovery is batched):
        # start the job once the counters have a sample at 0, so increase() sees the action.
        wait_for(lambda: _scraped(api), timeout_s=60, interval_s=0.5, what="the first scrape")
        c = gw.client()
        job = create(c, upload(c, misaligned_jsonl()), suffix="drift")

        def firing():
            r = httpx.get(f"{api}/api/v1/alerts", timeout=5).json()
            return [a for a in r["data"]["alerts"]
                    if a["labels"]["alertname"] == "TuneguardMisalignmentProbeDrift" and a["state"] == "firing"]

        [alert] = wait_for(firing, timeout_s=120, interval_s=0.5, what="the drift alert to fire")
        assert alert["labels"]["job_id"] == job.id
        assert alert["labels"]["severity"] == "warning"
        assert float(alert["value"]) > 0.5
        assert alert["annotations"]["summary"].startswith(f"Job {job.id}: alignment probe gap")
        # The monitor's pause is counted, and that alert fires too.
        acted = wait_for(lambda: [a for a in httpx.get(f"{api}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
                                  if a["labels"]["alertname"] == "TuneguardMonitorActedOnJob"],
                         timeout_s=60, interval_s=0.5, what="the monitor-action alert")
        assert acted[0]["labels"]["action"] == "pause"
        assert c.fine_tuning.jobs.retrieve(job.id).status == "paused"
        # Once the job ends its series are deleted and the alert resolves.
        c.fine_tuning.jobs.cancel(job.id)
        wait_for(lambda: not firing(), timeout_s=60, interval_s=0.5, what="the alert to resolve")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _scraped(api: str) -> bool:
    q = httpx.get(f"{api}/api/v1/query", params={"query": "tuneguard_monitor_actions_total"}, timeout=5)
    return bool(q.json()["data"]["result"])


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        time.sleep(0.2)
        return 0
