"""Processes as on separate machines, for the multi-machine test and the chaos run: a
`tuneguard worker` with its own config and data folder, and the environment that points
every process at one PostgreSQL database and one S3 bucket."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import httpx2 as httpx

from conftest import BIN, KEYS, render_config


def adapter(gw, job_id: str, checkpoint: int | None = None) -> dict:
    """The job's adapter as downloaded through `gw` (file name → bytes)."""
    q = f"?checkpoint={checkpoint}" if checkpoint else ""
    r = httpx.get(f"{gw.base_url}/tuneguard/jobs/{job_id}/adapter{q}",
                  headers={"Authorization": f"Bearer {KEYS['acme']}"}, timeout=60)
    assert r.status_code == 200, r.text
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        return {m.name.split("/")[-1]: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def shared_env(pg, db: str, s3, bucket: str) -> dict:
    url_var = "TUNEGUARD_TEST_PG_URL"
    return {
        "TUNEGUARD__STORAGE__BACKEND": "postgres",
        "TUNEGUARD__STORAGE__POSTGRES_URL_ENV": url_var,
        "TUNEGUARD__STORAGE__POSTGRES_POOL_SIZE": "4",
        url_var: pg.url(db),
        **s3.env(bucket),
    }


def models_toml(model_path: Path, workers: int) -> str:
    return (f"[local]\nworkers = {workers}\nlease_seconds = 3\npoll_interval_ms = 100\n\n"
            f'[[models]]\nmodel = "tiny-*"\npath = "{model_path}"\n')


class Worker:
    """`tuneguard worker` on a machine of its own: its own config and data folder."""

    def __init__(self, workdir: Path, env: dict, policy: str, model_path: Path):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        policies = workdir / "policies"
        policies.mkdir(parents=True)
        (policies / "default.toml").write_text(policy)
        self.config = workdir / "tuneguard.toml"
        self.config.write_text(render_config(self.data_dir, policies, None, models_toml(model_path, 1)))
        self.env = {**os.environ, **env}
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> "Worker":
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = open(self.workdir / f"worker.{self.starts}.log", "wb")
        self.proc = subprocess.Popen([BIN, "worker", "--config", str(self.config)], cwd=self.workdir,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(60)
            assert code == 0, (self.workdir / f"worker.{self.starts}.log").read_text()
