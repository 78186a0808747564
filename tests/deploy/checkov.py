"""checkov, run offline (``--skip-download``: no guideline or policy download) as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_checkov(files: list[str], framework: str) -> dict[str, Any]:
    checkov = Path(sys.executable).with_name("checkov")
    assert checkov.exists(), "checkov is a test dependency: pip install -e '.[test]'"
    done = subprocess.run(
        [
            str(checkov),
            *files,
            "--framework",
            framework,
            "--skip-download",
            "--compact",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [check for r in reports for check in r.get("results", {}).get("failed_checks", [])]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    return {"failed": failed, "passed": passed}
