"""A real Prometheus server (Debian's ``prometheus`` package) scraping given targets every
second, for the tests of the ``/metrics`` endpoints."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from globalmart.embedded import free_port

BINARY = shutil.which("prometheus")


class Prometheus:
    """``prometheus`` on a free port with its data in ``directory``, scraping ``targets``
    (job name -> host:port) every second."""

    def __init__(self, directory: Path, targets: dict[str, str]) -> None:
        if BINARY is None:
            pytest.fail("prometheus is required (apt-get install prometheus)")
        self.port = free_port()
        config = directory / "prometheus.yml"
        jobs = "".join(f"  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
                       for job, target in targets.items())
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                          f"scrape_configs:\n{jobs}")
        self._log = (directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [BINARY, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.wait(lambda: self._ready(), 60, "Prometheus ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, "prometheus exited"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def value(self, expression: str) -> float | None:
        """The instant value of a PromQL expression with one result (None when empty)."""
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}).json()
        assert body["status"] == "success", body
        results = body["data"]["result"]
        assert len(results) <= 1, results
        return float(results[0]["value"][1]) if results else None

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``condition()`` holds, failing after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()
