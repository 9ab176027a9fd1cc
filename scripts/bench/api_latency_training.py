#!/usr/bin/env python3
"""API latency while a local training job runs on the same machine, against idle.

Usage: .venv/bin/python scripts/bench/api_latency_training.py [--requests 400] [--model tiny|smollm2]
(TUNEGUARD_BIN picks the binary; use a release build.) Starts a gateway with one local worker,
measures p50/p99 of `jobs.retrieve` and `jobs.list` with the openai SDK sequentially while idle,
then creates a long job and measures again while it trains; also the time from job creation to
its first optimizer step (the first `metrics` event's step 1, by the worker's metrics.jsonl
timestamp on disk). Goal (issue 9): p99 <= 20 ms during training.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))

from conftest import KEYS, Gateway, render_config  # noqa: E402
from datasets import good_jsonl  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def measure(c, job_id, n):
    out = {"retrieve": [], "list": []}
    for _ in range(n):
        t = time.perf_counter()
        c.fine_tuning.jobs.retrieve(job_id)
        out["retrieve"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        c.fine_tuning.jobs.list(limit=20)
        out["list"].append((time.perf_counter() - t) * 1000)
    return {k: {"p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2)} for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    a = ap.parse_args()
    path = (ROOT / "trainer/tests/fixtures/tiny_tied" if a.model == "tiny"
            else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    work = Path(tempfile.mkdtemp())
    pol = work / "policies"
    pol.mkdir()
    (pol / "default.toml").write_text(
        "[training]\nlora_rank = 8\nlora_alpha = 16.0\nbatch_size = 2\ngradient_accumulation_steps = 1\n"
        "warmup_steps = 0\nmax_length_tokens = 512\n[monitor]\ncheckpoint_every_steps = 50\n")
    extra = f'[local]\nworkers = 1\nlease_seconds = 10\npoll_interval_ms = 100\n\n[[models]]\nmodel = "bench-*"\npath = "{path}"\n'
    cfg = work / "tuneguard.toml"
    cfg.write_text(render_config(work / "data", pol, None, extra))
    gw = Gateway(work, cfg).start()
    try:
        c = gw.client(timeout=30)
        f = c.files.create(file=("t.jsonl", io.BytesIO(good_jsonl(48))), purpose="fine-tune")
        warm = c.fine_tuning.jobs.create(model="none", training_file=f.id)
        idle = measure(c, warm.id, a.requests)
        t0 = time.time()
        job = c.fine_tuning.jobs.create(model="bench-model", training_file=f.id,
                                        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50}}})
        metrics = gw.data_dir / "jobs" / job.id / "run" / "metrics.jsonl"
        while not (metrics.exists() and metrics.stat().st_size > 0):
            time.sleep(0.01)
        first_step = time.time() - t0
        busy = measure(c, job.id, a.requests)
        still = c.fine_tuning.jobs.retrieve(job.id).status
        print(json.dumps({"model": a.model, "idle": idle, "training": busy, "job_status_after": still,
                          "create_to_first_step_s": round(first_step, 2)}))
    finally:
        gw.kill()


if __name__ == "__main__":
    main()
