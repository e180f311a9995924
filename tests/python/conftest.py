"""Starts the real `herald` binary on a fresh data directory for each test."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def herald_binary() -> str:
    path = os.environ.get("HERALD_BIN") or str(ROOT / "target" / "debug" / "herald")
    if not Path(path).exists():
        raise RuntimeError(f"{path} is missing: build it first (cargo build), or set HERALD_BIN")
    return path


class Herald:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def put(self, path: str, body) -> requests.Response:
        return requests.put(self.url + path, json=body, timeout=10)


@pytest.fixture
def herald():
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            [herald_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "HERALD_LOG": "warn", "HERALD_ALLOW_PRIVATE_TARGETS": "true"},
            text=True,
        )
        try:
            line = process.stdout.readline().strip()
            assert line.startswith("listening on "), f"unexpected first line: {line!r}"
            yield Herald("http://" + line.removeprefix("listening on "))
        finally:
            process.terminate()
            assert process.wait(timeout=20) == 0, "herald exits 0 on SIGTERM"
            # A task that panics (a delivery worker, say) answers no request
            # with a 5xx: only its stderr tells.
            stderr.seek(0)
            log = stderr.read()
            assert "panicked" not in log, log[-5000:]
