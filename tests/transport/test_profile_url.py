"""The URL a charger connects to after a SecurityProfile raise (Security Whitepaper A05)."""

from __future__ import annotations

import pytest

from emulator.transport.driver import profile_url


@pytest.mark.parametrize(
    ("url", "profile", "expected"),
    [
        ("ws://csms.example:8180/ocpp", 2, "wss://csms.example:8180/ocpp"),
        ("ws://csms.example/ocpp", 3, "wss://csms.example/ocpp"),
        ("wss://csms.example/ocpp", 1, "ws://csms.example/ocpp"),
        ("ws://csms.example/ocpp", 1, "ws://csms.example/ocpp"),
        ("wss://csms.example:443/a/b", 3, "wss://csms.example:443/a/b"),
    ],
)
def test_the_scheme_follows_the_profile_and_the_rest_stays(
    url: str, profile: int, expected: str
) -> None:
    assert profile_url(url, profile) == expected
