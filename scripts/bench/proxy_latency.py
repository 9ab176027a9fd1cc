#!/usr/bin/env python3
"""Added latency of a request proxied by the real `tuneguard` binary vs the same request sent
straight to the test upstream, at a fixed rate with a load generator (`hey`, Debian package).

Usage: .venv/bin/python scripts/bench/proxy_latency.py [--rate 1000] [--seconds 10] [--workers 20]
(TUNEGUARD_BIN picks the binary). Starts the test upstream through integration/fake_upstream.py
(the gateway's `fake-upstream` binary, TUNEGUARD_FAKE_UPSTREAM_BIN; it records every request)
and a gateway forwarding to it, runs `hey -o csv` at `--rate` requests/s total against
`GET /v1/models` directly and then through the gateway, and prints p50/p99 for both and the
difference. Both figures include the upstream's latency; only the difference is
the gateway's. Goal (issue 2): added p99 <= 1 ms at 1,000 requests/s on loopback.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))

from conftest import BIN, KEYS, Gateway, render_config  # noqa: E402
from fake_upstream import UPSTREAM_KEY, FakeUpstream  # noqa: E402


def percentile(sorted_ms: list[float], p: float) -> float:
    k = min(len(sorted_ms) - 1, max(0, round(p / 100 * (len(sorted_ms) - 1))))
    return sorted_ms[k]


def run_hey(url: str, key: str, rate: int, seconds: int, workers: int) -> dict:
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate / workers), "-o", "csv",
           "-H", f"Authorization: Bearer {key}", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = sorted(float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200")
    errors = sum(1 for r in rows if r["status-code"] != "200")
    return {"n": len(rows), "errors": errors, "rps": len(rows) / seconds,
            "p50": percentile(ok, 50), "p99": percentile(ok, 99), "max": ok[-1]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=20)
    args = ap.parse_args()
    if not shutil.which("hey"):
        print("needs `hey`: apt-get install hey", file=sys.stderr)
        return 2
    with FakeUpstream() as up, tempfile.TemporaryDirectory(prefix="tuneguard-lat-") as tmp:
        work = Path(tmp)
        (work / "policies").mkdir()
        shutil.copy(ROOT / "conf" / "policies" / "default.toml", work / "policies")
        cfg = work / "tuneguard.toml"
        cfg.write_text(render_config(work / "data", work / "policies", up.base_url, ""))
        gw = Gateway(work, cfg, env={"RUST_LOG": "warn"}).start()
        gw.client().models.list()  # warm
        direct = run_hey(up.base_url + "/models", UPSTREAM_KEY, args.rate, args.seconds, args.workers)
        proxied = run_hey(gw.base_url + "/models", KEYS["acme"], args.rate, args.seconds, args.workers)
        code = gw.stop()
    print(f"machine: {platform.node()} {platform.machine()}; date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"binary: {BIN}; load: hey, {args.rate} req/s target, {args.workers} workers, {args.seconds}s each")
    for name, r in (("direct ", direct), ("proxied", proxied)):
        print(f"{name}: {r['n']} requests ({r['rps']:.0f}/s, {r['errors']} errors) "
              f"p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  max {r['max']:.2f} ms")
    print(f"added by the gateway: p50 {proxied['p50'] - direct['p50']:+.2f} ms  "
          f"p99 {proxied['p99'] - direct['p99']:+.2f} ms (goal p99 <= 1 ms)")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
