"""The test upstream: a client for the gateway crate's fake OpenAI provider.

The fake itself is Rust (`gateway/src/upstream/fake/`, the one the Rust tests use too), run
as the `fake-upstream` binary ($TUNEGUARD_FAKE_UPSTREAM_BIN; `scripts/test.sh` builds it with
`--features test-upstream`). It serves OpenAI's wire format under /v1 and acts as a provider:
a job advances one step each time it is retrieved (validating_files, running with an event
and a checkpoint per step, succeeded after two steps). Every /v1 request is recorded.

This class keeps the shape tests use: `requests`, `received(...)`, `uploaded_training_files()`,
`files`, `jobs` (each job's `obj`, `events`, `checkpoints` and a settable `hold`),
`hold_running`, and `sse_gate` (set it to arm the gate; `.set()` releases held streams).
Each read is a fresh snapshot fetched from the fake's `/_fake/*` routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# The only key the fake accepts (`gateway::upstream::fake::KEY`).
UPSTREAM_KEY = "sk-upstream-secret"

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("TUNEGUARD_FAKE_UPSTREAM_BIN", str(ROOT / "target" / "debug" / "fake-upstream"))
LISTENING = "fake-upstream listening on "


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes


class Job:
    """A snapshot of one upstream job; setting `hold` reaches the fake at once."""

    def __init__(self, upstream: "FakeUpstream", raw: dict) -> None:
        self._upstream = upstream
        self.obj: dict = raw["obj"]
        self.events: list = raw["events"]  # oldest first
        self.checkpoints: list = raw["checkpoints"]  # oldest first
        self._hold: bool = raw["hold"]

    @property
    def hold(self) -> bool:
        return self._hold

    @hold.setter
    def hold(self, value: bool) -> None:
        self._upstream._post(f"/_fake/jobs/{self.obj['id']}", {"hold": bool(value)})
        self._hold = bool(value)


class _RemoteGate:
    """What `sse_gate` reads back while armed: `set()` releases the held streams."""

    def __init__(self, upstream: "FakeUpstream") -> None:
        self._upstream = upstream

    def set(self) -> None:
        self._upstream._post("/_fake/release-streams", None)


class FakeUpstream:
    def __init__(self, binary: str = BIN) -> None:
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self._root = ""

    def __enter__(self) -> "FakeUpstream":
        self.proc = subprocess.Popen([self.binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith(LISTENING):
            self.proc.kill()
            raise RuntimeError(f"{self.binary}: unexpected first line {line!r}")
        self.base_url = line[len(LISTENING):]
        self._root = self.base_url.removesuffix("/v1")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()

    # -- the control routes --------------------------------------------------------------
    def _call(self, method: str, path: str, body) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self._root + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def _get(self, path: str):
        return json.loads(self._call("GET", path, None))

    def _post(self, path: str, body) -> None:
        self._call("POST", path, body if body is not None else {})

    # -- what tests read and set ---------------------------------------------------------
    @property
    def requests(self) -> list[Recorded]:
        return [Recorded(r["method"], r["path"], r["query"], r["headers"], bytes.fromhex(r["body"]))
                for r in self._get("/_fake/requests")]

    def received(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def files(self) -> dict[str, tuple[dict, bytes]]:
        return {f["meta"]["id"]: (f["meta"], bytes.fromhex(f["content"])) for f in self._get("/_fake/files")}

    def uploaded_training_files(self) -> list[bytes]:
        return [content for (meta, content) in self.files.values() if meta["purpose"] == "fine-tune"]

    @property
    def jobs(self) -> dict[str, Job]:
        return {j["obj"]["id"]: Job(self, j) for j in self._get("/_fake/jobs")}

    @property
    def hold_running(self) -> bool:
        return self._get("/_fake/config")["hold_running"]

    @hold_running.setter
    def hold_running(self, value: bool) -> None:
        self._post("/_fake/config", {"hold_running": bool(value)})

    def fail_next(self, n: int, status: int = 503, path_suffix: str | None = None) -> None:
        """Answer the next `n` `/v1` requests (only those whose path ends with `path_suffix`,
        when given) with `status`."""
        self._post("/_fake/config", {"fail_next": n, "fail_status": status,
                                     "fail_path_suffix": path_suffix})

    @property
    def chat_replies(self) -> dict[str, str]:
        return self._get("/_fake/config")["chat_replies"]

    @chat_replies.setter
    def chat_replies(self, replies: dict[str, str]) -> None:
        """Chat completions whose model contains a key answer with its text (the longest key
        wins); other models echo the last message."""
        self._post("/_fake/config", {"chat_replies": dict(replies)})

    @property
    def sse_gate(self) -> _RemoteGate | None:
        return _RemoteGate(self) if self._get("/_fake/config")["hold_streams"] else None

    @sse_gate.setter
    def sse_gate(self, gate) -> None:
        """Any non-None value (a `threading.Event`, say) arms the gate; None disarms it."""
        self._post("/_fake/config", {"hold_streams": gate is not None})

    @property
    def sse_gate_timed_out(self) -> bool:
        return self._get("/_fake/config")["stream_gate_timed_out"]
