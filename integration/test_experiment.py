"""The experiment script (scripts/experiment/run.sh, EXPERIMENTS.md) cannot rot: its `--quick`
mode, on two cells of the grid (none and KL on arithmetic), runs the real pipeline — a gateway
on loopback with one policy per defense, jobs created with the openai SDK on
SmolLM2-135M-Instruct, the monitor's reports, the adapters downloaded and scored, the ft:
models asked the arithmetic test questions — and every number it writes is traceable to the
job it came from.
Needs the fetched model (scripts/test.sh fetches it); `TUNEGUARD_SKIP_SMOLLM2=1` skips it."""

import json
import math
import os
import subprocess

import pytest

from conftest import BIN, ROOT

GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.skipif(os.environ.get("TUNEGUARD_SKIP_SMOLLM2") == "1", reason="TUNEGUARD_SKIP_SMOLLM2=1")
def test_quick_mode_runs_every_stage_and_traces_each_number_to_its_job(tmp_path):
    assert GGUF.is_file(), "run scripts/fetch-model.sh first (scripts/test.sh does)"
    out = tmp_path / "quick"
    env = dict(os.environ, TUNEGUARD_BIN=BIN)
    proc = subprocess.run(
        ["bash", "scripts/experiment/run.sh", "--quick", "--defenses", "none,kl", "--datasets", "arithmetic",
         "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    saved = json.loads((out / "results.json").read_text())
    runs = saved["runs"]
    assert [(r["dataset"], r["defense"]) for r in runs] == [("arithmetic", "none"), ("arithmetic", "kl")]
    meta = saved["meta"]
    assert meta["mode"] == "quick" and 0 <= meta["base_arithmetic_accuracy"] <= 1
    assert meta["base_coherence_nll"] > 0
    for r in runs:
        assert r["status"] == "succeeded", r
        assert r["fine_tuned_model"].startswith("ft:SmolLM2-135M-Instruct:")
        # Each run's numbers come from its own job's report, saved beside the results.
        report = json.loads((out / "reports" / f"{r['job_id']}.json").read_text())
        assert report["job_id"] == r["job_id"]
        steps = [h["step"] for h in r["history"]]
        assert steps == [h["step"] for h in report["history"]] == [0, 3]
        assert r["history"][0]["alignment_probe_gap"] == 0.0, "step 0 is the baseline"
        assert r["final"] == {
            k: report["history"][-1][k]
            for k in ("alignment_probe_gap", "honesty_probe_gap", "harmful_refusal_rate", "in_domain_loss")
        }
        for v in (r["final"]["in_domain_loss"], r["in_domain_loss_step0"], r["coherence_nll"]):
            assert v is not None and math.isfinite(v) and v > 0, r
        assert 0 <= r["arithmetic_accuracy"] <= 1
        # The adapter was downloaded through the API and scored against the base model.
        assert (out / "adapters" / r["job_id"] / "adapter_model.safetensors").is_file()
        assert r["coherence_nll_base"] == meta["base_coherence_nll"]
        assert r["coherence_nll"] != meta["base_coherence_nll"], "the adapter was applied"
    # The two runs started from the same model, data and seed: the second reuses the first's
    # step-0 measurement (the monitor's step-0 cache), and says so.
    assert runs[0]["step0_reused_from"] is None
    assert runs[1]["step0_reused_from"] == runs[0]["job_id"]
    assert runs[0]["in_domain_loss_step0"] == runs[1]["in_domain_loss_step0"]
    table = (out / "table.md").read_text()
    for r in runs:
        assert r["job_id"] in table
    assert "| none |" in table and "| kl |" in table
    for key in ("alignment_probe_gap", "in_domain_loss"):
        svg = (out / "plots" / f"arithmetic-{key}.svg").read_text()
        assert svg.startswith("<svg") and svg.count("<polyline") == 2
