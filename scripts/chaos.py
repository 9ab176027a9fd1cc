#!/usr/bin/env python3
"""The long chaos run (issue 13): N concurrent jobs across two replicas and two remote workers
over a throwaway PostgreSQL server and moto's S3 server, a random one of the four killed -9 and
restarted every --kill-every seconds (seeded). Fails unless every job succeeds with each step,
event and checkpoint recorded once and the adapter of an uninterrupted run.

Usage: .venv/bin/python scripts/chaos.py [--jobs 8] [--epochs 25] [--kill-every 4] [--seed 1]
(TUNEGUARD_BIN picks the binary.) Prints each kill and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "integration"))

from chaos import run  # noqa: E402
from machines import shared_env  # noqa: E402
from pg_server import PgServer  # noqa: E402
from s3_server import S3Server  # noqa: E402
from test_local_training import POLICY, TINY  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--kill-every", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tg-chaos-"))
    pg, s3 = PgServer().start(), S3Server().start()
    try:
        env = shared_env(pg, pg.new_database(), s3, s3.new_bucket())
        r = run(root, env, POLICY, TINY, jobs=a.jobs, epochs=a.epochs, kill_every_s=a.kill_every,
                seed=a.seed, timeout_s=a.timeout)
        print(json.dumps({"jobs": len(r.jobs), "steps_per_job": r.steps_per_job,
                          "kills": len(r.kills), "killed": {k: r.kills.count(k) for k in set(r.kills)},
                          "seconds": round(r.seconds, 1), "result": "every job succeeded, each step once, "
                          "adapters equal to the uninterrupted run"}))
    finally:
        s3.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
