#!/usr/bin/env python3
"""Peak RSS of the real `tuneguard` binary while large files stream in (issue 2 benchmark).

Goal (issue 2): the gateway's RSS grows by less than 64 MiB during a 2 GiB upload.

Usage (from the repository root):
    cargo build --bin tuneguard                 # or --release, then TUNEGUARD_BIN=target/release/tuneguard
    .venv/bin/python scripts/bench/upload_rss.py [--gib 2] [--part-mib 64] [--files-mib 512]
                                                 [--sdk] [--only uploads|files] [--keep DIR]
                                                 [--csv FILE]

Two scenarios, each on a freshly started gateway (so each VmHWM is its own):
  uploads  POST /v1/uploads, `--gib` GiB in `--part-mib` MiB parts (multipart POST
           /v1/uploads/{id}/parts), then POST /v1/uploads/{id}/complete with the md5.
  files    one multipart POST /v1/files of `--files-mib` MiB (purpose fine-tune); the config
           raises server.max_body_bytes so the body fits.
The JSONL is generated on the fly and streamed with http.client in 1 MiB chunks: neither the
file nor a part is ever held whole in Python memory and nothing is written to disk on the client
side. `--sdk` instead writes the file into the temp dir and sends it with the openai SDK's
`client.uploads.upload_file_chunked` (the SDK reads one part at a time into memory).

The server's VmRSS is sampled from /proc/PID/status every `--interval-ms` (50) ms from a
thread; the baseline is VmRSS after a warm-up (GET /v1/files and one small POST /v1/files);
the peak is max(sampled VmRSS, VmHWM at the end). Everything lives in a temp dir
(config, data_dir with SQLite and blobs, stderr log) that is removed at the end unless --keep.
Exit status 1 when a growth exceeds --goal-mib (64) or the gateway does not exit 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TUNEGUARD_BIN", str(ROOT / "target" / "debug" / "tuneguard"))
KEY = "sk-bench-upload-rss-0123456789"
MIB = 1 << 20
CHUNK = MIB
BOUNDARY = "tuneguardbenchboundary7d1f0c"


# ---------------------------------------------------------------- gateway process


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def write_config(work: Path, max_body_bytes: int) -> Path:
    cfg = work / "tuneguard.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\nmax_body_bytes = {max_body_bytes}\n'
        f"shutdown_grace_seconds = 30\n\n"
        f'[storage]\ndata_dir = "{work / "data"}"\n\n'
        f'[[tenants]]\nname = "bench"\napi_key_hashes = ["{key_hash(KEY)}"]\n\n'
        f'[policies]\ndir = "{ROOT / "conf" / "policies"}"\nreload_interval_ms = 1000\n\n'
        f"[limits]\nupload_max_bytes = 8589934592\nupload_part_max_bytes = 67108864\n"
    )
    return cfg


class Gateway:
    def __init__(self, work: Path, cfg: Path) -> None:
        self.log = work / "stderr.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([BIN, "serve", "--config", str(cfg)], cwd=work,
                                         stdout=subprocess.PIPE, stderr=log)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        prefix = "tuneguard listening on "
        deadline = time.monotonic() + 30
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                raise SystemExit(f"gateway did not start; stderr:\n{self.log.read_text()[-3000:]}")
            if line.startswith(prefix):
                u = urlsplit(line[len(prefix):].strip())
                self.host, self.port = u.hostname, u.port
                self.url = f"http://{self.host}:{self.port}"
                return

    def _pump(self, lines: queue.Queue) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # -- raw HTTP (http.client; bodies streamed chunk by chunk)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1800)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {KEY}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        return _reply(conn, method, path)

    def multipart(self, path: str, fields: dict[str, str], file_field: str, filename: str,
                  size: int, chunks) -> dict:
        """POST multipart/form-data: `fields` first, then `file_field` streamed from `chunks`
        (an iterator of bytes adding up to exactly `size`)."""
        head = b"".join(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items())
        head += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
                 f'filename="{filename}"\r\nContent-Type: application/jsonl\r\n\r\n').encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1800)
        conn.putrequest("POST", path)
        conn.putheader("Authorization", f"Bearer {KEY}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders()
        conn.send(head)
        sent = 0
        for c in chunks:
            conn.send(c)
            sent += len(c)
        assert sent == size, (sent, size)
        conn.send(tail)
        return _reply(conn, "POST", path)


def _reply(conn: http.client.HTTPConnection, method: str, path: str) -> dict:
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"{method} {path} -> {resp.status}: {text[:500]!r}")
    return json.loads(text)


# ---------------------------------------------------------------- data


class Jsonl:
    """Deterministic chat JSONL of exactly `size` bytes, produced lazily (never whole in memory)."""

    PAD = "x" * 200

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = size
        self.i = 0
        self.buf = b""

    def _line(self) -> bytes:
        i = self.i
        self.i += 1
        return (f'{{"messages": [{{"role": "user", "content": "question {i}: {self.PAD}"}}, '
                f'{{"role": "assistant", "content": "answer {i}: {self.PAD}"}}]}}\n').encode()

    def _last(self, n: int) -> bytes:
        """One valid line of exactly n bytes."""
        pre = b'{"messages": [{"role": "user", "content": "last"}, {"role": "assistant", "content": "'
        post = b'"}]}\n'
        assert n >= len(pre) + len(post), n
        return pre + b"z" * (n - len(pre) - len(post)) + post

    def _fill(self, want: int) -> None:
        lines, have = [self.buf], len(self.buf)
        while have < want and self.left:
            line = self._line()
            if self.left < 3 * len(line):
                line = self._last(self.left)
            lines.append(line)
            have += len(line)
            self.left -= len(line)
        self.buf = b"".join(lines)

    def read(self, n: int) -> bytes:
        if len(self.buf) < n:
            self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def chunks(self, n: int, md5=None):
        """Yields the next `n` bytes in CHUNK-sized pieces."""
        while n > 0:
            c = self.read(min(CHUNK, n))
            if not c:
                raise AssertionError("generator ran dry")
            if md5 is not None:
                md5.update(c)
            n -= len(c)
            yield c


# ---------------------------------------------------------------- RSS sampling


def proc_kib(pid: int, *fields: str) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in fields:
                out[k] = int(v.split()[0])
    return out


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, int, str]] = []  # (t, VmRSS KiB, phase)
        self.phase = "idle"
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.done.is_set():
            try:
                rss = proc_kib(self.pid, "VmRSS")["VmRSS"]
            except (OSError, KeyError):
                return
            self.samples.append((time.monotonic() - t0, rss, self.phase))
            self.done.wait(self.interval_s)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def peak(self, phase: str | None = None) -> int:
        return max((r for _, r, p in self.samples if phase is None or p == phase), default=0)


# ---------------------------------------------------------------- scenarios


def warm_up(gw: Gateway) -> None:
    gw.request("GET", "/v1/files")
    small = Jsonl(256 * 1024)
    gw.multipart("/v1/files", {"purpose": "fine-tune"}, "file", "warm.jsonl", small.size,
                 small.chunks(small.size))
    time.sleep(0.5)


def run_uploads(gw: Gateway, s: Sampler, total: int, part: int, work: Path, sdk: bool) -> dict:
    md5 = hashlib.md5()
    if sdk:
        import openai  # noqa: PLC0415

        path = work / "big.jsonl"
        gen = Jsonl(total)
        with open(path, "wb") as f:
            for c in gen.chunks(total, md5):
                f.write(c)
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=1800)
        s.phase = "parts"
        t0 = time.monotonic()
        up = client.uploads.upload_file_chunked(file=path, mime_type="application/jsonl",
                                                purpose="fine-tune", part_size=part,
                                                md5=md5.hexdigest())
        t_all = time.monotonic() - t0
        s.phase = "after"
        path.unlink()
        assert up.status == "completed" and up.file.bytes == total, up
        return {"elapsed": t_all, "parts": -(-total // part), "t_parts": None}
    gen = Jsonl(total)
    t0 = time.monotonic()
    up = gw.request("POST", "/v1/uploads", {"bytes": total, "filename": "big.jsonl",
                                             "mime_type": "application/jsonl",
                                             "purpose": "fine-tune"})
    ids, sent = [], 0
    s.phase = "parts"
    while sent < total:
        n = min(part, total - sent)
        p = gw.multipart(f"/v1/uploads/{up['id']}/parts", {}, "data", "part", n,
                         gen.chunks(n, md5))
        ids.append(p["id"])
        sent += n
    t_parts = time.monotonic() - t0
    s.phase = "complete"
    done = gw.request("POST", f"/v1/uploads/{up['id']}/complete",
                      {"part_ids": ids, "md5": md5.hexdigest()})
    t_all = time.monotonic() - t0
    s.phase = "after"
    assert done["status"] == "completed" and done["file"]["bytes"] == total, done
    return {"elapsed": t_all, "parts": len(ids), "t_parts": t_parts}


def run_files(gw: Gateway, s: Sampler, total: int) -> dict:
    gen = Jsonl(total)
    s.phase = "body"
    t0 = time.monotonic()
    f = gw.multipart("/v1/files", {"purpose": "fine-tune"}, "file", "big.jsonl", total,
                     gen.chunks(total))
    t_all = time.monotonic() - t0
    s.phase = "after"
    assert f["bytes"] == total, f
    return {"elapsed": t_all}


def scenario(name: str, args, total: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tuneguard-rss-", dir=args.tmp) as tmp:
        work = Path(tmp)
        cfg = write_config(work, max_body_bytes=max(total + 16 * MIB, 512 * MIB))
        gw = Gateway(work, cfg)
        s = Sampler(gw.pid, args.interval_ms / 1000)
        s.start()
        try:
            warm_up(gw)
            base = proc_kib(gw.pid, "VmRSS", "VmHWM")
            s.phase = "start"
            if name == "uploads":
                r = run_uploads(gw, s, total, args.part_mib * MIB, work, args.sdk)
            else:
                r = run_files(gw, s, total)
            time.sleep(0.3)
            end = proc_kib(gw.pid, "VmRSS", "VmHWM")
        finally:
            s.stop()
            code = gw.stop()
        blobs = sum(p.stat().st_size for p in (work / "data" / "blobs").iterdir())
        if args.keep:
            keep = Path(args.keep) / name
            shutil.copytree(work, keep, ignore=shutil.ignore_patterns("blobs"))
    r.update(name=name, total=total, base=base, end=end, code=code, samples=s.samples,
             peak=max(s.peak(), end["VmHWM"]), blobs=blobs)
    return r


def report(r: dict, goal_mib: float) -> bool:
    k = 1 / 1024
    mb = r["total"] / MIB
    print(f"== {r['name']}: {mb:.0f} MiB"
          + (f" in {r['parts']} parts" if "parts" in r else " in one multipart POST /v1/files"))
    print(f"  baseline VmRSS (after warm-up): {r['base']['VmRSS'] * k:8.1f} MiB"
          f"   (VmHWM so far {r['base']['VmHWM'] * k:.1f} MiB)")
    phases = []
    for _, _, p in r["samples"]:
        if p not in phases:
            phases.append(p)
    peaks = "  ".join(f"{p}={max(x for _, x, q in r['samples'] if q == p) * k:.1f}" for p in phases)
    print(f"  peak sampled VmRSS by phase (MiB): {peaks}   [{len(r['samples'])} samples]")
    print(f"  VmHWM at end: {r['end']['VmHWM'] * k:.1f} MiB   VmRSS at end: {r['end']['VmRSS'] * k:.1f} MiB")
    growth = (r["peak"] - r["base"]["VmRSS"]) * k
    ok = growth < goal_mib
    print(f"  peak RSS: {r['peak'] * k:.1f} MiB   growth: {growth:.1f} MiB   "
          f"goal < {goal_mib:.0f} MiB: {'PASS' if ok else 'FAIL'}")
    line = f"  elapsed: {r['elapsed']:.1f} s   throughput: {mb / r['elapsed']:.0f} MiB/s end to end"
    if r.get("t_parts"):
        line += (f" (parts {r['t_parts']:.1f} s = {mb / r['t_parts']:.0f} MiB/s, "
                 f"complete {r['elapsed'] - r['t_parts']:.1f} s)")
    print(line)
    print(f"  blob bytes on disk after: {r['blobs'] / MIB:.0f} MiB   exit code on SIGTERM: {r['code']}")
    return ok and r["code"] == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=2.0, help="uploads API total (GiB)")
    ap.add_argument("--part-mib", type=int, default=64, help="part size (MiB)")
    ap.add_argument("--files-mib", type=int, default=512, help="single POST /v1/files size (MiB)")
    ap.add_argument("--only", choices=["uploads", "files"])
    ap.add_argument("--sdk", action="store_true",
                    help="uploads via openai SDK upload_file_chunked (writes the file to the temp dir)")
    ap.add_argument("--interval-ms", type=float, default=50)
    ap.add_argument("--goal-mib", type=float, default=64)
    ap.add_argument("--tmp", default=None, help="parent of the temp dir (default $TMPDIR or /tmp)")
    ap.add_argument("--keep", default=None, help="copy config and stderr log (not blobs) here")
    ap.add_argument("--csv", default=None,
                    help="write the RSS samples here (scenario,t_s,vmrss_kib,phase)")
    args = ap.parse_args()
    if not Path(BIN).is_file():
        raise SystemExit(f"{BIN} not found: cargo build --bin tuneguard (or set TUNEGUARD_BIN)")
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"binary: {BIN} (mtime {time.strftime('%Y-%m-%d %H:%M', time.gmtime(os.path.getmtime(BIN)))} UTC)")
    print(f"client: {'openai SDK upload_file_chunked' if args.sdk else 'http.client, streamed 1 MiB chunks'}; "
          f"RSS sampled every {args.interval_ms:.0f} ms from /proc/PID/status")
    ok, results = True, []
    if args.only in (None, "uploads"):
        results.append(scenario("uploads", args, int(args.gib * (1 << 30))))
        ok &= report(results[-1], args.goal_mib)
    if args.only in (None, "files"):
        results.append(scenario("files", args, args.files_mib * MIB))
        ok &= report(results[-1], args.goal_mib)
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("scenario,t_s,vmrss_kib,phase\n")
            for r in results:
                f.writelines(f"{r['name']},{t:.3f},{kib},{p}\n" for t, kib, p in r["samples"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
