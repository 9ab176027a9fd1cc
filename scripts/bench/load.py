#!/usr/bin/env python3
"""Throughput and latency of the read routes under load with `wrk` (Debian package, installed
here when missing), on SQLite and on PostgreSQL, same binary, same data, one run.

Usage: .venv/bin/python scripts/bench/load.py [--seconds 10] [--connections 32] [--jobs 200]
(TUNEGUARD_BIN picks the binary: use a release build.) For each backend it starts a gateway
(the PostgreSQL one on a throwaway server, integration/pg_server.py), uploads one file and
creates `--jobs` jobs (they fail at once: no models, no upstream — the rows are what is read),
then runs `wrk --latency` against `GET /v1/fine_tuning/jobs?limit=20`,
`GET /v1/fine_tuning/jobs/{id}` and `GET /v1/files/{id}`, and prints one row per route and
backend: requests/s, p50, p99. The gateway and wrk share this machine's cores.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))

from conftest import KEYS, Gateway, render_config  # noqa: E402
from datasets import good_jsonl  # noqa: E402
from pg_server import PgServer  # noqa: E402


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        [ensure_wrk(), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"Authorization: Bearer {KEYS['acme']}", url],
        capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": round(to_ms(lat["50"]), 3),
        "p99_ms": round(to_ms(lat["99"]), 3),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_backend(name: str, env: dict, a) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"tg-load-{name}-"))
    pol = work / "policies"
    pol.mkdir()
    (pol / "default.toml").write_text((ROOT / "conf/policies/default.toml").read_text())
    cfg = work / "tuneguard.toml"
    cfg.write_text(render_config(work / "data", pol, None, "[local]\nworkers = 0\n"))
    gw = Gateway(work, cfg, env).start()
    try:
        c = gw.client(timeout=60)
        f = c.files.create(file=("t.jsonl", io.BytesIO(good_jsonl(48))), purpose="fine-tune")
        jobs = [c.fine_tuning.jobs.create(model="none", training_file=f.id).id for _ in range(a.jobs)]
        routes = {
            "GET /v1/fine_tuning/jobs?limit=20": f"{gw.base_url}/fine_tuning/jobs?limit=20",
            "GET /v1/fine_tuning/jobs/{id}": f"{gw.base_url}/fine_tuning/jobs/{jobs[len(jobs) // 2]}",
            "GET /v1/files/{id}": f"{gw.base_url}/files/{f.id}",
        }
        rows = []
        for route, url in routes.items():
            r = wrk(url, a.seconds, a.connections)
            rows.append({"backend": name, "route": route, **r})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        gw.kill()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=200)
    a = ap.parse_args()
    print(f"# {platform.node()} {platform.machine()}, wrk -t2 -c{a.connections} -d{a.seconds}s", flush=True)
    rows = run_backend("sqlite", {}, a)
    pg = PgServer().start()
    try:
        db = pg.new_database()
        env = {"TUNEGUARD__STORAGE__BACKEND": "postgres",
               "TUNEGUARD__STORAGE__POSTGRES_URL_ENV": "TG_LOAD_PG", "TG_LOAD_PG": pg.url(db)}
        rows += run_backend("postgres", env, a)
    finally:
        pg.stop()
    print("\n| route | backend | requests/s | p50 | p99 | non-2xx |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['route']}` | {r['backend']} | {r['rps']:.0f} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['non_2xx']} |")


if __name__ == "__main__":
    main()
