"""The OCPP 1.6 Security Whitepaper's CSMS calls (edition 3, §5), on a charger model with
``security_extension``: ExtendedTriggerMessage, CertificateSigned, InstallCertificate,
DeleteCertificate, GetInstalledCertificateIds.  (SignedUpdateFirmware and GetLog are
Firmware Management's, emulator.core.handlers.firmware.)

The certificate rules are emulator.core.certificates'; a certificate the charger refuses
is answered as the whitepaper says and raises the security event it names, never a
CALLERROR: a CSMS that sends a bad chain learns it from the answer and the event.
"""

from __future__ import annotations

from typing import Any

from emulator.core.certificates import CertificateProblem, CertificateUse
from emulator.core.effects import ClientCertificate
from emulator.core.handlers.remote_trigger import trigger_message
from emulator.core.wallbox import Wallbox

_LIKE_TRIGGER_MESSAGE = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification")


def extended_trigger_message(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """ExtendedTriggerMessage (§5.5, MessageTriggerEnumType §6.16).

    BootNotification, Heartbeat, MeterValues and StatusNotification as TriggerMessage
    (OCPP 1.6 §5.17, emulator.core.handlers.remote_trigger): the same rules, the same
    messages.  FirmwareStatusNotification triggers a SignedFirmwareStatusNotification
    (the secure update's status, §6.16) and LogStatusNotification a
    LogStatusNotification, Idle unless an update or upload runs (§6.19: "Idle SHALL only
    be used when the message was triggered").  SignChargePointCertificate starts A02: a
    new key and a SignCertificate with its CSR; Rejected while CpoName is not set (A02's
    prerequisite) or the charger id cannot be a CN.  A connectorId that does not exist
    is Rejected.
    """
    requested = payload["requestedMessage"]
    connector_id = payload.get("connectorId")
    if connector_id is not None and wb.connector_or_none(connector_id) is None:
        return {"status": "Rejected"}
    if requested in _LIKE_TRIGGER_MESSAGE:
        return trigger_message(wb, payload, now)
    if requested == "SignChargePointCertificate":
        return _sign_charge_point_certificate(wb, now)
    if requested == "FirmwareStatusNotification":
        if not wb.outbox.has_queued("SignedFirmwareStatusNotification"):
            wb.outbox.add(
                "SignedFirmwareStatusNotification",
                wb.firmware.signed_firmware_status(),
                triggered=True,
            )
    elif requested == "LogStatusNotification":
        if not wb.outbox.has_queued("LogStatusNotification"):
            wb.outbox.add("LogStatusNotification", wb.firmware.log_status(), triggered=True)
    else:  # pragma: no cover - the schema's enum has no other value
        return {"status": "NotImplemented"}
    wb.log(now, f"extended trigger {requested}")
    return {"status": "Accepted"}


def _sign_charge_point_certificate(wb: Wallbox, now: float) -> dict[str, Any]:
    """A02 steps 2-4: the answer, then a new key pair and the SignCertificate with its CSR
    (the answer goes out first: the link sends a CALLRESULT before the next CALL)."""
    cpo_name = wb.config.get("CpoName")
    if not cpo_name:
        wb.log(now, "extended trigger SignChargePointCertificate: CpoName is not set")
        return {"status": "Rejected"}
    if wb.outbox.has_queued("SignCertificate"):
        return {"status": "Accepted"}  # the one waiting complies (as TriggerMessage)
    store = wb.certificate_store()
    try:
        csr = store.new_csr(charger_id=wb.charge_point_id, cpo_name=cpo_name)
    except CertificateProblem as exc:
        wb.log(now, f"extended trigger SignChargePointCertificate: {exc.tech_info}")
        return {"status": "Rejected"}

    def on_result(result: dict[str, Any], at: float) -> None:
        if result["status"] != "Accepted":
            # A02.FR.12: the CSMS cannot process it; no certificate will come for it.
            store.pending_key = None
            wb.log(at, "SignCertificate Rejected by the CSMS")

    wb.outbox.add("SignCertificate", {"csr": csr}, on_result=on_result, triggered=True)
    wb.log(now, "extended trigger SignChargePointCertificate: CSR sent")
    return {"status": "Accepted"}


def certificate_signed(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """CertificateSigned (§5.1, A02.FR.06-08): Accepted and the chain becomes the client
    certificate of the charger's next TLS connections (a ClientCertificate effect); else
    Rejected, the chain discarded and InvalidChargePointCertificate raised (A02.FR.07).
    An accepted new key is a ReconfigurationOfSecurityParameters (§8: "keys ... were
    changed")."""
    store = wb.certificate_store()
    try:
        key = store.accept_signed_chain(
            payload["certificateChain"],
            max_size=wb.config.get_int("CertificateSignedMaxChainSize"),
            now=now,
        )
    except CertificateProblem as exc:
        wb.security_event(exc.event, now, exc.tech_info)
        return {"status": "Rejected"}
    wb.request(ClientCertificate(payload["certificateChain"], key.pem()))
    wb.security_event("ReconfigurationOfSecurityParameters", now, "new charge point certificate")
    return {"status": "Accepted"}


def install_certificate(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """InstallCertificate (§5.11, M05): Accepted, or Rejected for an invalid certificate
    (M05.FR.06) or a full store (M05.FR.03), with a security event."""
    use = CertificateUse(payload["certificateType"])
    try:
        status = wb.certificate_store().install(
            use,
            payload["certificate"],
            max_length=wb.config.get_int("CertificateStoreMaxLength"),
            now=now,
        )
    except CertificateProblem as exc:
        wb.security_event(exc.event, now, exc.tech_info)
        return {"status": "Rejected"}
    wb.log(now, f"certificate installed: {use}")
    return {"status": status}


def delete_certificate(wb: Wallbox, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """DeleteCertificate (§5.3, M04): Accepted when found and deleted (M04.FR.02; the
    whitepaper's text says Success, its schema Accepted), NotFound (M04.FR.04: the
    charger's own certificate is never in this store, M04.FR.05), Failed for the last
    CentralSystemRootCertificate while a TLS profile (2, 3) validates the connection
    with it (M04.FR.06)."""
    store = wb.certificates
    found = None if store is None else store.find(payload["certificateHashData"])
    if store is None or found is None:
        return {"status": "NotFound"}
    if found.use is CertificateUse.CENTRAL_SYSTEM_ROOT and _in_use(wb, found):
        return {"status": "Failed"}
    store.installed.remove(found)
    wb.log(now, f"certificate deleted: {found.use}")
    return {"status": "Accepted"}


def _in_use(wb: Wallbox, root: Any) -> bool:
    """Whether the connection is validated with ``root``: the only Central System root
    left, with a TLS security profile."""
    store = wb.certificates
    assert store is not None
    roots = [i for i in store.installed if i.use is CertificateUse.CENTRAL_SYSTEM_ROOT]
    return roots == [root] and wb.config.get_int("SecurityProfile") >= 2


def get_installed_certificate_ids(
    wb: Wallbox, payload: dict[str, Any], now: float
) -> dict[str, Any]:
    """GetInstalledCertificateIds (§5.7, M03): Accepted with the hash data of each
    certificate of the type (M03.FR.03-04), else NotFound (M03.FR.02)."""
    store = wb.certificates
    use = CertificateUse(payload["certificateType"])
    ids = [] if store is None else store.installed_ids(use)
    if not ids:
        return {"status": "NotFound"}
    return {"status": "Accepted", "certificateHashData": ids}
