#!/usr/bin/env python3
"""What checkpoint monitoring costs: evaluation time as a share of training time, at the
default cadence (issue 10, item 9).

Usage: .venv/bin/python scripts/bench/monitor_cost.py [--model tiny|smollm2] [--judge none|local]
       [--checkpoints 3] [--budgets default|off]
(TUNEGUARD_BIN picks the binary; use a release build.) Starts a gateway with one local worker,
trains one job whose policy leaves `[monitor]` at its defaults (a checkpoint every 10 optimizer
steps; the shipped sets and probes; the cost budgets `eval_budget` 0.15 and `probe_budget`
0.02), and reads each checkpoint's record from its mirrored event: its scope (full, probes,
skipped) and cost — probes (the judge-free signals), answer generation, judging — against the
training seconds before it. `--budgets off` sets `eval_budget = 0`: every checkpoint in full,
which gives the fixed cost of one evaluation against ten steps. `--judge local` adds the
engine-served judge (`[monitor] local_judge_model` = the job's own model). Goals: probes alone
<= 2 %, full generation + local judging <= 15 %: the cadence shares below are the evaluations
between step 0 and the final checkpoint over the training time; the final checkpoint (always
evaluated in full) is reported apart, as the per-job fixed cost it is.
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

from conftest import Gateway, render_config  # noqa: E402
from datasets import good_jsonl  # noqa: E402
from monitor_helpers import monitor_events  # noqa: E402

EVERY = 10  # the default `checkpoint_every_steps`


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    ap.add_argument("--judge", choices=["none", "local"], default="none")
    ap.add_argument("--checkpoints", type=int, default=3, help="checkpoints after step 0")
    ap.add_argument("--budgets", choices=["default", "off"], default="default")
    a = ap.parse_args()
    path = (ROOT / "trainer/tests/fixtures/tiny_tied" if a.model == "tiny"
            else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    work = Path(tempfile.mkdtemp())
    pol = work / "policies"
    pol.mkdir()
    # Batch 2 over 2·EVERY·checkpoints examples, one epoch: exactly `checkpoints` checkpoints
    # after step 0, each after EVERY steps. No rules: nothing pauses the job.
    n = 2 * EVERY * a.checkpoints
    budgets = "eval_budget = 0\n" if a.budgets == "off" else ""
    (pol / "default.toml").write_text(
        "[training]\nlora_rank = 8\nlora_alpha = 16.0\nbatch_size = 2\ngradient_accumulation_steps = 1\n"
        f"warmup_steps = 0\nepochs = 1\nmax_length_tokens = 512\n[monitor]\n{budgets}rules = []\n")
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
            rows.append({"step": e.data["step"], "scope": e.data["monitor"]["scope"],
                         **{k: cost[k] for k in
                            ("eval_seconds", "probe_seconds", "generation_seconds",
                             "judge_seconds", "train_seconds")}})
        trained = [r for r in rows if r["step"] > 0]
        middle, final = trained[:-1], trained[-1]
        train = sum(r["train_seconds"] or 0 for r in trained)
        middle_train = sum(r["train_seconds"] or 0 for r in middle)
        tier = lambda s, k="eval_seconds": sum(r[k] for r in middle if r["scope"] == s)  # noqa: E731
        ratio = lambda x, t: round(x / t, 4) if t else None  # noqa: E731
        timed = [r for r in trained if r["train_seconds"]]
        print(json.dumps({
            "model": a.model, "judge": a.judge, "every_steps": EVERY, "budgets": a.budgets,
            "step0_eval_seconds": next((r["eval_seconds"] for r in rows if r["step"] == 0), None),
            "per_checkpoint": rows,
            "scopes": {s: sum(r["scope"] == s for r in middle) for s in ("full", "probes", "skipped")},
            "train_seconds": round(train, 2),
            "mean_train_seconds_per_checkpoint": round(train / len(trained), 3),
            # One evaluation against the ten steps before it (the fixed cost; `--budgets off`).
            "per_evaluation_share": ratio(
                sum(r["eval_seconds"] for r in timed if r["scope"] == "full"),
                sum(r["train_seconds"] for r in timed if r["scope"] == "full")),
            # The cadence: evaluations between step 0 and the final checkpoint, per tier.
            "cadence_share_full": ratio(tier("full"), middle_train),
            "cadence_share_full_probes_part": ratio(tier("full", "probe_seconds"), middle_train),
            "cadence_share_probes_tier": ratio(tier("probes"), middle_train),
            "final_eval_seconds": final["eval_seconds"],
            "job_share_with_final": ratio(sum(r["eval_seconds"] for r in trained), train),
        }, indent=1))
    finally:
        gw.kill()


if __name__ == "__main__":
    main()
