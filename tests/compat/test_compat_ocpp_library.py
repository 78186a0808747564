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
    assert_security_extension,
    probe,
    run_fleet,
    running_csms,
    security_scenario,
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


def test_a_security_extension_fleet_runs_clean_against_an_ocpp_library_csms(
    tmp_path: Path,
) -> None:
    """The security whitepaper's calls both ways, the library validating every frame:
    CSRs signed, chains accepted, roots installed, listed and deleted, a security log
    uploaded by FTP, a signed firmware update accepted, every ExtendedTriggerMessage."""
    argv = [sys.executable, str(COMPAT / "ocpp_lib_csms.py"), "--port", "0", "--security"]
    with running_csms(argv, tmp_path) as csms:
        frames = probe(csms.url)
        fleet = run_fleet(csms.url, tmp_path, security_scenario(tmp_path))
        events = csms.stop()
    assert_probe_refused(events, frames)
    figures = assert_compatible(events, fleet)
    figures |= assert_security_extension(events)
    print(f"ocpp library CSMS, security extension: {figures}")
