"""Debian packages the tests run for real (prometheus, faketime), installed when missing.

CI (.ci/run) installs them first; this keeps a developer's ``make test`` working on a
fresh Debian machine too.  Fails, never skips: what needs them must be tested.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def ensure_debian_package(package: str, *tools: str) -> None:
    """Install ``package`` with apt-get unless every one of ``tools`` is on the PATH."""
    if all(shutil.which(tool) for tool in tools):
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(
            f"these tests need Debian's `{package}` package: "
            f"run `apt-get install {package}` as root (CI's .ci/run does)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", package],
    ):
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        pytest.fail(f"apt-get install {package} did not provide {', '.join(missing)}")
