"""Fixtures shared by the test packages."""

from __future__ import annotations

import pytest

from emulator.transport.connection import TRANSPORTS, Transport


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each byte pump of the wallbox driver in turn (``[fleet] transport``): a test that
    takes it runs over websockets and over picows."""
    value: Transport = request.param
    return value
