#!/usr/bin/env python3
"""What checkpoint monitoring costs: evaluation time per checkpoint as a share of the training
time before it, at the default cadence (issue 10, item 9).

Usage: .venv/bin/python scripts/bench/monitor_cost.py [--model tiny|smollm2] [--judge none|local]
       [--checkpoints 3]
(TUNEGUARD_BIN picks the binary; use a release build.) Starts a gateway with one local worker,
trains one job whose policy leaves `[monitor]` at its defaults (a checkpoint, and an
evaluation, every 10 optimizer steps; the shipped sets and probes), and reads each evaluation's
cost from its mirrored event: probes (the judge-free signals), answer generation, judging, all
against the training seconds since the previous evaluation. `--judge local` adds the
engine-served judge (`[monitor] local_judge_model` = the job's own model). Goals: probes alone
<= 2 %, full generation + local judging <= 15 %.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))

from conftest import Gateway, render_config  # noqa: E402
from datasets import good_jsonl  # noqa: E402
from monitor_helpers import monitor_events  # noqa: E402

EVERY = 10  # the default `checkpoint_every_steps`


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--judge", choices=["none", "local"], default="none")
    ap.add_argument("--checkpoints", type=int, default=3, help="evaluations after step 0")
    a = ap.parse_args()
    path = (ROOT / "trainer/tests/fixtures/tiny_tied" if a.model == "tiny"
            else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    work = Path(tempfile.mkdtemp())
    pol = work / "policies"
    pol.mkdir()
    # Batch 2 over 2·EVERY·checkpoints examples, one epoch: exactly `checkpoints` evaluations
    # after step 0, each after EVERY steps. No rules: nothing pauses the job.
    n = 2 * EVERY * a.checkpoints
    (pol / "default.toml").write_text(
        "[training]\nlora_rank = 8\nlora_alpha = 16.0\nbatch_size = 2\ngradient_accumulation_steps = 1\n"
        "warmup_steps = 0\nepochs = 1\nmax_length_tokens = 512\n[monitor]\nrules = []\n")
    judge = '\n[monitor]\nlocal_judge_model = "bench-model"\n' if a.judge == "local" else ""
    extra = (f'[local]\nworkers = 1\nlease_seconds = 30\npoll_interval_ms = 100\n\n'
             f'[[models]]\nmodel = "bench-*"\npath = "{path}"\n{judge}')
    cfg = work / "tuneguard.toml"
    cfg.write_text(render_config(work / "data", pol, None, extra))
    gw = Gateway(work, cfg).start()
    try:
        c = gw.client(timeout=60)
        f = c.files.create(file=("t.jsonl", io.BytesIO(good_jsonl(n))), purpose="fine-tune")
        job = c.fine_tuning.jobs.create(model="bench-model", training_file=f.id, seed=0)
        t0 = time.time()
        while (j := c.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
            print(f"\r{j.status} {time.time() - t0:6.0f} s", end="", file=sys.stderr, flush=True)
            time.sleep(2)
        print(file=sys.stderr)
        if j.status != "succeeded":
            sys.exit(f"the job ended {j.status}: {j.error}")
        rows = []
        for e in monitor_events(c, job.id):
            cost = e.data["monitor"]["cost"]
            if e.data["monitor"]["error"]:
                sys.exit(f"step {e.data['step']}: {e.data['monitor']['error']}")
            rows.append({"step": e.data["step"], **{k: cost[k] for k in
                         ("eval_seconds", "probe_seconds", "generation_seconds", "judge_seconds",
                          "train_seconds")}})
        timed = [r for r in rows if r["train_seconds"]]
        share = lambda k: statistics.mean(r[k] / r["train_seconds"] for r in timed)  # noqa: E731
        print(json.dumps({
            "model": a.model, "judge": a.judge, "every_steps": EVERY,
            "step0_eval_seconds": next((r["eval_seconds"] for r in rows if r["step"] == 0), None),
            "per_checkpoint": rows,
            "mean_train_seconds": round(statistics.mean(r["train_seconds"] for r in timed), 3),
            "mean_eval_seconds": round(statistics.mean(r["eval_seconds"] for r in timed), 3),
            "share_probes": round(share("probe_seconds"), 4),
            "share_generation": round(share("generation_seconds"), 4),
            "share_judge": round(share("judge_seconds"), 4),
            "share_total": round(share("eval_seconds"), 4),
        }, indent=1))
    finally:
        gw.kill()


if __name__ == "__main__":
    main()
