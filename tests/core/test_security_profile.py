"""Raising SecurityProfile (OCPP 1.6 Security Whitepaper A05): what a raise needs, the
reconnect with the new profile, and the fallback when it cannot connect."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulator.core.effects import UseSecurityProfile
from emulator.core.security_profile import FALLBACK_AFTER_ATTEMPTS
from tests.core.conftest import FakeCsms
from tests.core.test_security_extension import SECURE, Ca, request_csr

MakeCsms = Callable[..., FakeCsms]
HEX_KEY = "00112233445566778899aabbccddeeff"


def events(csms: FakeCsms) -> list[tuple[str, str]]:
    return [(p["type"], p.get("techInfo", "")) for p in csms.payloads("SecurityEventNotification")]


def profile_of(csms: FakeCsms) -> str:
    value: str = csms.get_configuration("SecurityProfile")["SecurityProfile"]["value"]
    return value


def secure(make_csms: MakeCsms, *, profile: int = 1, **material: bool) -> FakeCsms:
    """A booted charger with the extension at ``profile``, the fleet's ``fleet_*``."""
    return make_csms(security_extension=True, security_profile=profile, config=SECURE, **material)


def raise_without_reconnect(csms: FakeCsms, value: str) -> str:
    """The ChangeConfiguration only: the charger has not connected again yet."""
    answer = csms.send_call("ChangeConfiguration", {"key": "SecurityProfile", "value": value})
    assert not isinstance(answer, Exception)
    csms.disconnect()  # the transport closes the connection (A05.FR.06)
    status: str = answer.payload["status"]
    return status


@pytest.mark.parametrize("value", ["1", "0"])
def test_a_value_equal_or_lower_is_rejected_and_nothing_reconnects(
    make_csms: MakeCsms, value: str
) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True, fleet_ca=True)
    assert csms.change_configuration("SecurityProfile", value) == "Rejected"  # A05.FR.01
    assert profile_of(csms) == "1"
    assert csms.profiles == [] and csms.reconnects == []
    assert "ReconfigurationOfSecurityParameters" not in [kind for kind, _ in events(csms)]


def test_a_raise_to_2_without_a_root_certificate_or_a_ca_file_is_rejected(
    make_csms: MakeCsms,
) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True)
    assert csms.change_configuration("SecurityProfile", "2") == "Rejected"  # A05.FR.03
    assert profile_of(csms) == "1"
    assert csms.profiles == []


def test_a_raise_to_1_needs_a_password(make_csms: MakeCsms) -> None:
    csms = secure(make_csms, profile=0)
    assert csms.change_configuration("SecurityProfile", "1") == "Rejected"  # A05.FR.02
    assert csms.change_configuration("AuthorizationKey", HEX_KEY) == "Accepted"
    assert csms.change_configuration("SecurityProfile", "1") == "Accepted"
    assert csms.profiles == [UseSecurityProfile(1)]


def test_an_accepted_raise_reconnects_with_the_new_profile_and_raises_the_event(
    make_csms: MakeCsms,
) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True, fleet_ca=True)
    assert csms.change_configuration("SecurityProfile", "2") == "Accepted"  # A05.FR.05
    assert csms.profiles == [UseSecurityProfile(2)]  # A05.FR.06/07, done by the transport
    assert not csms.wb.online or csms.wb.profile_raise is None  # reconnected: confirmed
    assert profile_of(csms) == "2"
    csms.advance(5)  # the event goes out over the new connection
    assert ("ReconfigurationOfSecurityParameters", "SecurityProfile changed from 1 to 2") in (
        events(csms)
    )
    # Confirmed: later failed connections never undo it.
    csms.disconnect()
    for _ in range(FALLBACK_AFTER_ATTEMPTS + 1):
        csms.wb.connect_failed("refused", csms.now)
    csms.connect()
    assert profile_of(csms) == "2"
    assert csms.profiles == [UseSecurityProfile(2)]


def test_an_installed_root_is_enough_for_profile_2_and_goes_with_the_profile(
    make_csms: MakeCsms,
) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True)
    root = Ca("Central System Root")
    installed = csms.call(
        "InstallCertificate",
        {"certificateType": "CentralSystemRootCertificate", "certificate": root.pem},
    )
    assert installed == {"status": "Accepted"}
    assert csms.change_configuration("SecurityProfile", "2") == "Accepted"
    (use,) = csms.profiles
    assert use.profile == 2 and use.central_system_roots == (root.pem,)


def test_a_raise_to_3_needs_a_client_certificate(make_csms: MakeCsms) -> None:
    csms = secure(make_csms, profile=2, fleet_password=True, fleet_ca=True)
    csms.answer("SignCertificate", {"status": "Accepted"})
    assert csms.change_configuration("SecurityProfile", "3") == "Rejected"  # A05.FR.04
    chain = Ca().sign(request_csr(csms))
    assert csms.call("CertificateSigned", {"certificateChain": chain}) == {"status": "Accepted"}
    assert csms.change_configuration("SecurityProfile", "3") == "Accepted"
    assert csms.profiles[-1].profile == 3


def test_the_factory_client_certificate_is_enough_for_profile_3(make_csms: MakeCsms) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True, fleet_ca=True)
    assert csms.change_configuration("SecurityProfile", "3") == "Rejected"
    other = secure(
        make_csms, profile=1, fleet_password=True, fleet_ca=True, fleet_client_certificates=True
    )
    assert other.change_configuration("SecurityProfile", "3") == "Accepted"


def test_a_raise_that_cannot_connect_falls_back_after_the_bounded_attempts(
    make_csms: MakeCsms,
) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True, fleet_ca=True)
    assert raise_without_reconnect(csms, "2") == "Accepted"
    for _ in range(FALLBACK_AFTER_ATTEMPTS - 1):
        csms.wb.connect_failed("tls_unknown_ca", csms.now)
        csms.advance(1)
    assert csms.profiles == [UseSecurityProfile(2)]  # still trying the new profile
    csms.wb.connect_failed("tls_unknown_ca", csms.now)
    csms.advance(1)
    assert csms.profiles == [UseSecurityProfile(2), UseSecurityProfile(1)]  # A05.FR.08
    assert csms.wb.profile_raise is None
    csms.connect()  # with the previous profile: it works
    assert profile_of(csms) == "1"
    csms.advance(5)
    fallback = (
        "ReconfigurationOfSecurityParameters",
        f"SecurityProfile fell back from 2 to 1 after {FALLBACK_AFTER_ATTEMPTS} failed "
        "connection attempts",
    )
    assert fallback in events(csms)
    assert b"security: SecurityProfile fell back from 2 to 1" in csms.wb.firmware.log.render()
    # A raise may be tried again once the CSMS is ready for it.
    assert csms.change_configuration("SecurityProfile", "2") == "Accepted"
    assert profile_of(csms) == "2"


def test_a_connection_between_failures_confirms_the_raise(make_csms: MakeCsms) -> None:
    csms = secure(make_csms, profile=1, fleet_password=True, fleet_ca=True)
    assert raise_without_reconnect(csms, "2") == "Accepted"
    for _ in range(FALLBACK_AFTER_ATTEMPTS - 1):
        csms.wb.connect_failed("timeout", csms.now)
    csms.connect()
    csms.disconnect()
    csms.wb.connect_failed("timeout", csms.now)
    csms.connect()
    assert profile_of(csms) == "2"
    assert csms.profiles == [UseSecurityProfile(2)]


def test_without_the_extension_a_raise_works_without_events(make_csms: MakeCsms) -> None:
    csms = make_csms(security_profile=1, fleet_password=True, fleet_ca=True)
    assert csms.change_configuration("SecurityProfile", " 2 ") == "Accepted"
    assert csms.profiles == [UseSecurityProfile(2)]
    assert events(csms) == []
