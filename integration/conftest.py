"""Fixtures that run the real `tuneguard` binary and drive it with the official openai SDK.

`gateway_factory(...)` writes a config (two tenants with known keys, an admin key, a temp
data_dir, `listen = "127.0.0.1:0"`), starts `$TUNEGUARD_BIN serve --config FILE`, waits for the
`tuneguard listening on URL` stdout line and returns a `Gateway`. Every gateway still running at
the end of a test is stopped with SIGTERM and must exit 0.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest

from fake_upstream import UPSTREAM_KEY, FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("TUNEGUARD_BIN", str(ROOT / "target" / "debug" / "tuneguard"))
KEYS = {"acme": "sk-acme-0123456789", "beta": "sk-beta-9876543210"}
ADMIN_KEY = "sk-admin-operator"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def sha(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition", interval_s: float = 0.1):
    """Polls `predicate` until it returns a truthy value (returned) or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


class Gateway:
    """One `tuneguard serve` process on a config file and data dir that survive restarts."""

    def __init__(self, workdir: Path, config_path: Path, env: dict | None = None) -> None:
        self.workdir = workdir
        self.config_path = config_path
        self.data_dir = workdir / "data"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0
        self.clients: list[openai.OpenAI] = []

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_path(self) -> Path:
        return self.workdir / f"stderr.{self.starts}.log"

    def start(self) -> "Gateway":
        assert self.proc is None, "already running"
        self.starts += 1
        with open(self.log_path(), "wb") as log:
            self.proc = subprocess.Popen(
                [BIN, "serve", "--config", str(self.config_path)],
                cwd=self.workdir,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        lines: queue.Queue = queue.Queue()
        self._stdout = lines
        threading.Thread(target=_pump, args=(self.proc.stdout, lines), daemon=True).start()
        prefix = "tuneguard listening on "
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = None
            if line is None or remaining <= 0:
                code = self.proc.poll()
                self.kill()
                raise AssertionError(
                    f"gateway did not print '{prefix}URL' (exit {code}); stderr:\n{self.stderr()}"
                )
            if line.startswith(prefix):
                self.url = line[len(prefix):].strip().rstrip("/")
                return self

    def later_stdout(self) -> list[str]:
        """stdout lines after the listening line (the contract says there are none); call
        after the process exited so the pipe is drained."""
        out = []
        while True:
            try:
                line = self._stdout.get(timeout=5)
            except queue.Empty:
                return out
            if line is None:
                return out
            out.append(line)

    def stderr(self) -> str:
        try:
            return self.log_path().read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def client(self, tenant: str = "acme", **kw) -> openai.OpenAI:
        key = KEYS.get(tenant, tenant)
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 60.0)
        client = openai.OpenAI(base_url=self.base_url, api_key=key, **kw)
        self.clients.append(client)
        return client

    def admin(self) -> openai.OpenAI:
        return self.client(ADMIN_KEY)

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code (asserted 0 by callers that care)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gateway ignored SIGTERM for {STOP_TIMEOUT_S}s; stderr:\n{self.stderr()}")
        self.proc = None
        return code

    def kill(self) -> None:
        """`kill -9`: no chance to flush or clean up."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def restart(self, hard: bool = False) -> "Gateway":
        if hard:
            self.kill()
        else:
            code = self.stop()
            assert code == 0, f"exit code {code} on SIGTERM; stderr:\n{self.stderr()}"
        return self.start()


def _pump(stream, lines: queue.Queue) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode(errors="replace"))
    lines.put(None)


def render_config(data_dir: Path, policies_dir: Path, upstream_url: str | None, extra: str,
                  tenants: bool = True) -> str:
    tenants_toml = "".join(
        f'[[tenants]]\nname = "{name}"\napi_key_hashes = ["{sha(key)}"]\n\n' for name, key in KEYS.items()
    ) if tenants else ""
    up = f'[upstream]\nbase_url = "{upstream_url}"\napi_key = "{UPSTREAM_KEY}"\n\n' if upstream_url else ""
    return (
        f'[server]\nlisten = "127.0.0.1:0"\nshutdown_grace_seconds = 5\n\n'
        f'[storage]\ndata_dir = "{data_dir}"\n\n'
        f'[auth]\nadmin_key_hashes = ["{sha(ADMIN_KEY)}"]\n\n'
        f"{tenants_toml}"
        f'[policies]\ndir = "{policies_dir}"\nreload_interval_ms = 200\n\n'
        f"{up}{extra}"
    )


@pytest.fixture
def gateway_factory(tmp_path):
    started: list[Gateway] = []

    def make(upstream: FakeUpstream | None = None, extra: str = "", policies: dict | None = None,
             env: dict | None = None, name: str = "gw", tenants: bool = True) -> Gateway:
        workdir = tmp_path / name
        policies_dir = workdir / "policies"
        policies_dir.mkdir(parents=True)
        if policies is None:  # the shipped catch-all policy (no data-level defenses)
            policies = {"default.toml": (ROOT / "conf" / "policies" / "default.toml").read_text()}
        for fname, text in policies.items():
            (policies_dir / fname).write_text(text)
        cfg = workdir / "tuneguard.toml"
        cfg.write_text(render_config(workdir / "data", policies_dir,
                                     upstream.base_url if upstream else None, extra, tenants))
        gw = Gateway(workdir, cfg, env).start()
        started.append(gw)
        return gw

    yield make
    failures = []
    for gw in started:
        for client in gw.clients:
            client.close()
        if gw.proc is not None:
            code = gw.stop()
            if code != 0:
                failures.append(f"{gw.workdir.name}: exit {code}\n{gw.stderr()}")
    assert not failures, "gateway did not exit 0 on SIGTERM: " + "\n".join(failures)


@pytest.fixture
def upstream():
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def gateway(gateway_factory):
    """Local execution mode (no upstream)."""
    return gateway_factory()


@pytest.fixture
def gw_up(gateway_factory, upstream):
    """Upstream mode against the fake upstream."""
    return gateway_factory(upstream=upstream)
