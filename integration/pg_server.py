"""A throwaway PostgreSQL server for end-to-end tests (the Rust contract suite has its own in
`gateway/src/store/pg_test_server.rs`; this is the same recipe).

Debian's binaries (`/usr/lib/postgresql/<version>/bin`, or `$TUNEGUARD_PG_BINDIR`), `initdb` +
`pg_ctl` into a temp dir, TCP on 127.0.0.1 on a free port with password (scram) logins, the
unix socket in the temp dir with trust logins for the fixture itself. As root the server runs
as `nobody` (PostgreSQL refuses root). Missing binaries fail the test unless
`TUNEGUARD_SKIP_POSTGRES=1`, which skips it.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

RUN_AS_WHEN_ROOT = "nobody"
ROLE = "tuneguard"


def skipped() -> bool:
    return os.environ.get("TUNEGUARD_SKIP_POSTGRES") == "1"


def bin_dir() -> Path:
    if os.environ.get("TUNEGUARD_PG_BINDIR"):
        return Path(os.environ["TUNEGUARD_PG_BINDIR"])
    base = Path("/usr/lib/postgresql")
    found = sorted(
        (int(d.name), d / "bin") for d in (base.iterdir() if base.is_dir() else [])
        if d.name.isdigit() and (d / "bin" / "initdb").is_file() and (d / "bin" / "pg_ctl").is_file()
    )
    if not found:
        raise FileNotFoundError(f"no initdb and pg_ctl under {base}/*/bin")
    return found[-1][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.bin = bin_dir()
        self.user = RUN_AS_WHEN_ROOT if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="tuneguard-pg-", dir="/tmp" if self.user else None))
        self.password = secrets.token_hex(12)
        self.port = 0
        self._names = itertools.count()
        if self.user:
            import pwd
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bin / program), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        out = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True,
                             env={**os.environ, "LC_ALL": "C"}, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({out.returncode}): {out.stdout}{out.stderr}\n{tail}")

    def start(self) -> "PgServer":
        pwfile = self.root / "pw"
        pwfile.write_text("postgres-" + self.password + "\n")
        if self.user:
            shutil.chown(pwfile, self.user)
        self._run("initdb", "-D", str(self.root / "data"), "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={pwfile}")
        last = None
        for _ in range(5):
            self.port = free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                          "-w", "-t", "60", "-o", opts, "start")
                break
            except RuntimeError as e:
                last = e
        else:
            raise RuntimeError(f"PostgreSQL did not start: {last}")
        self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        return self

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
             "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {out.stderr}")
        return out.stdout.strip()

    def new_database(self) -> str:
        """A fresh database owned by the password role; returns its name."""
        name = f"tg_e2e_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def url(self, db: str, password: str | None = None) -> str:
        return f"postgresql://{ROLE}:{password or self.password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        try:
            if (self.root / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    if skipped():
        pytest.skip("TUNEGUARD_SKIP_POSTGRES=1")
    try:
        bin_dir()
    except FileNotFoundError as e:
        pytest.fail(f"{e}: install Debian's postgresql (bash scripts/setup-test-deps.sh) "
                    "or set TUNEGUARD_SKIP_POSTGRES=1", pytrace=False)
    server = PgServer()
    try:
        yield server.start()
    finally:
        server.stop()
