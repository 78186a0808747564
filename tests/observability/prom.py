"""A real Prometheus for the tests: Debian's package, on 127.0.0.1, in a temp directory."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.debian import ensure_debian_package
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = ROOT / "grafana" / "prometheus.yml"
JOB = "ocpp-fleet"  # the job of the shipped config the dashboards are tested with


def ensure_installed(*tools: str) -> None:
    """Debian's ``prometheus`` package (prometheus, promtool), installed when missing."""
    ensure_debian_package("prometheus", *tools)


def end_process(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a child's log file (for a failure message)."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def scrape_config_for(target: str) -> dict[str, Any]:
    """The shipped scrape config, scraping ``target`` every second."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert jobs, f"{SHIPPED_CONFIG} has no {JOB!r} job"
    job = jobs[0]
    job["static_configs"][0]["targets"] = [target]
    config["scrape_configs"] = [job]
    return config


class Prometheus:
    """``prometheus`` as a child process, and a small client of its HTTP API."""

    def __init__(self, *, config: dict[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_file = workdir / "prometheus.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout} s: {self.log()}")

    def stop(self) -> None:
        end_process(self.process)

    def log(self) -> str:
        return tail(self.log_file)

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns ``data``; raises AssertionError with Prometheus's error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(
        self, expr: str, seconds: float = 15.0, step: str = "1s"
    ) -> list[dict[str, Any]]:
        end = time.time()
        data = self.api(
            "query_range", query=expr, start=f"{end - seconds:.3f}", end=f"{end:.3f}", step=step
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan
