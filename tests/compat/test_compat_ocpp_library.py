"""ocpp-fleet against a CSMS built on the mobilityhouse ``ocpp`` library, validation on.

tests/compat/ocpp_lib_csms.py: ``ocpp.v16.ChargePoint`` handlers on ``websockets.serve``;
the library checks every frame both ways against the OCPP 1.6 JSON schemas it ships.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.compat.compat_support import (
    COMPAT,
    assert_compatible,
    assert_probe_refused,
    probe,
    run_fleet,
    running_csms,
)


def test_a_fleet_runs_clean_against_an_ocpp_library_csms(tmp_path: Path) -> None:
    argv = [sys.executable, str(COMPAT / "ocpp_lib_csms.py"), "--port", "0"]
    with running_csms(argv, tmp_path) as csms:
        frames = probe(csms.url)
        fleet = run_fleet(csms.url, tmp_path)
        events = csms.stop()
    assert_probe_refused(events, frames)
    figures = assert_compatible(events, fleet)
    print(f"ocpp library CSMS: {figures}")
