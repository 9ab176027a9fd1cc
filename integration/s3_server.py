"""A throwaway S3-wire server for end-to-end tests: moto's server mode (`.s3venv/bin/moto_server`,
made by scripts/setup-test-deps.sh, or `$TUNEGUARD_MOTO_SERVER`) on 127.0.0.1 on a free port,
one per test session; each test gets a bucket of its own. The gateway signs its requests with
the dummy credentials in `env()` (moto accepts any). Missing: the test fails unless
`TUNEGUARD_SKIP_S3=1`, which skips it. The Rust tests have the same recipe in
`gateway/src/store/s3_test_server.rs`.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def program() -> Path:
    return Path(os.environ.get("TUNEGUARD_MOTO_SERVER", ROOT / ".s3venv" / "bin" / "moto_server"))


class S3Server:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self._names = itertools.count()

    def start(self) -> "S3Server":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([str(program()), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        # A separate process: its readiness is its port answering (polled, with a deadline).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                assert self.proc.poll() is None, f"moto_server exited with {self.proc.returncode}"
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not listen on {self.port} within 60 s")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_bucket(self) -> str:
        name = f"tg-e2e-{os.getpid()}-{next(self._names)}"
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"))
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The bucket's object keys under `prefix` (ListObjectsV2, unsigned: moto takes it)."""
        import xml.etree.ElementTree as ET
        out, token = [], None
        while True:
            url = f"{self.endpoint}/{bucket}?list-type=2&prefix={prefix}"
            if token:
                url += "&continuation-token=" + urllib.request.quote(token)
            root = ET.fromstring(urllib.request.urlopen(url).read())
            ns = {"s3": root.tag.split("}")[0].strip("{")}
            out += [k.text for k in root.findall("s3:Contents/s3:Key", ns)]
            nxt = root.find("s3:NextContinuationToken", ns)
            if nxt is None:
                return out
            token = nxt.text

    def env(self, bucket: str, prefix: str = "tg/") -> dict:
        return {
            "TUNEGUARD__STORAGE__BLOBS": "s3",
            "TUNEGUARD__STORAGE__S3_BUCKET": bucket,
            "TUNEGUARD__STORAGE__S3_PREFIX": prefix,
            "TUNEGUARD__STORAGE__S3_ENDPOINT": self.endpoint,
            "TUNEGUARD__STORAGE__S3_REGION": "us-east-1",
            "TUNEGUARD__STORAGE__S3_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def s3_server():
    if os.environ.get("TUNEGUARD_SKIP_S3") == "1":
        pytest.skip("TUNEGUARD_SKIP_S3=1")
    if not program().is_file():
        pytest.fail(f"{program()} not found: run bash scripts/setup-test-deps.sh "
                    "or set TUNEGUARD_SKIP_S3=1", pytrace=False)
    server = S3Server()
    try:
        yield server.start()
    finally:
        server.stop()
