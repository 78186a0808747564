"""ocpp-fleet against a Node.js CSMS on ``ocpp-rpc`` in strict mode.

tests/compat/node/csms.js: ``RPCServer`` with ``strictMode: true``, which validates every
frame both ways against the official OCPP 1.6 JSON schemas (ajv, formats included).
Node.js and npm come from Debian (installed when missing, as CI's .ci/run does); the
pinned ocpp-rpc from tests/compat/node/package-lock.json (``npm ci``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compat.compat_support import (
    COMPAT,
    assert_compatible,
    assert_probe_refused,
    probe,
    run_fleet,
    running_csms,
)
from tests.debian import ensure_debian_package

NODE_DIR = COMPAT / "node"


@pytest.fixture(scope="module")
def node() -> str:
    """``node``, with the compat server's pinned packages installed."""
    ensure_debian_package("nodejs", "node")
    if not (NODE_DIR / "node_modules" / "ocpp-rpc" / "package.json").exists():
        ensure_debian_package("npm", "npm")
        npm = shutil.which("npm")
        assert npm is not None
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.fail(
                f"npm ci in {NODE_DIR} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
    node = shutil.which("node")
    assert node is not None
    return node


def test_a_fleet_runs_clean_against_an_ocpp_rpc_strict_csms(node: str, tmp_path: Path) -> None:
    argv = [node, str(NODE_DIR / "csms.js"), "--port", "0"]
    with running_csms(argv, tmp_path) as csms:
        frames = probe(csms.url)
        fleet = run_fleet(csms.url, tmp_path)
        events = csms.stop()
    assert_probe_refused(events, frames)
    figures = assert_compatible(events, fleet)
    print(f"ocpp-rpc strict CSMS: {figures}")
