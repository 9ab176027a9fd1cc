#!/usr/bin/env python3
"""Peak RSS of the real `tuneguard` binary while a large file goes through the uploads API.

Usage: .venv/bin/python scripts/bench/upload_rss.py [--gib 2] [--part-mib 64]
(TUNEGUARD_BIN picks the binary, default target/debug/tuneguard; build it with --release for
release figures). Starts the gateway on a temp data dir (127.0.0.1:0), records its VmRSS after
a warm-up request, streams `--gib` GiB of chat JSONL in `--part-mib` MiB parts (one part in
memory at a time on the client side), completes the upload (md5 checked by the server), and
prints the gateway's VmHWM (peak RSS) growth over the warm baseline, plus throughput.
Goal (issue 2): growth < 64 MiB for a 2 GiB upload.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration"))

from conftest import BIN, Gateway, render_config  # noqa: E402


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def part_bytes(size: int, seed: int) -> bytes:
    line = (json.dumps({"messages": [
        {"role": "user", "content": f"question {seed} " + "q" * 180},
        {"role": "assistant", "content": f"answer {seed} " + "a" * 180}]}) + "\n").encode()
    reps, rest = divmod(size, len(line))
    return line * reps + b" " * (rest - 1) + b"\n" if rest else line * reps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--part-mib", type=int, default=64)
    args = ap.parse_args()
    total = int(args.gib * (1 << 30))
    part = args.part_mib << 20
    with tempfile.TemporaryDirectory(prefix="tuneguard-rss-") as tmp:
        work = Path(tmp)
        (work / "policies").mkdir()
        shutil.copy(ROOT / "conf" / "policies" / "default.toml", work / "policies")
        cfg = work / "tuneguard.toml"
        cfg.write_text(render_config(work / "data", work / "policies", None, ""))
        gw = Gateway(work, cfg).start()
        pid = gw.proc.pid
        c = gw.client(timeout=600.0)
        c.files.list()
        base_rss = proc_kib(pid, "VmRSS")
        base_hwm = proc_kib(pid, "VmHWM")
        md5 = hashlib.md5()
        t0 = time.monotonic()
        up = c.uploads.create(bytes=total, filename="big.jsonl", mime_type="application/jsonl",
                              purpose="fine-tune")
        ids, sent, i = [], 0, 0
        while sent < total:
            data = part_bytes(min(part, total - sent), i)
            md5.update(data)
            ids.append(c.uploads.parts.create(up.id, data=data).id)
            sent += len(data)
            i += 1
        t_parts = time.monotonic() - t0
        done = c.uploads.complete(up.id, part_ids=ids, md5=md5.hexdigest())
        t_all = time.monotonic() - t0
        assert done.status == "completed" and done.file.bytes == total, done
        peak = proc_kib(pid, "VmHWM")
        code = gw.stop()
    mib = 1 / 1024
    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''}".strip())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"binary: {BIN}")
    print(f"upload: {total / (1 << 30):.2f} GiB in {len(ids)} parts of {args.part_mib} MiB")
    print(f"parts sent in {t_parts:.1f}s ({total / (1 << 20) / t_parts:.0f} MiB/s), complete in {t_all - t_parts:.1f}s")
    print(f"RSS after warm-up: {base_rss * mib:.1f} MiB (peak so far {base_hwm * mib:.1f} MiB)")
    print(f"peak RSS during upload: {peak * mib:.1f} MiB")
    growth = (peak - max(base_rss, base_hwm)) * mib
    print(f"peak RSS growth: {growth:.1f} MiB (goal < 64 MiB)")
    print(f"gateway exit code on SIGTERM: {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
