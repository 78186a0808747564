"""CSMS-initiated operations of the reference CSMS: builders, targets and scenario schedules.

**Python API.**  Each builder returns a :class:`CsmsRequest` ``(action, payload)``, which
unpacks into :meth:`ReferenceCsms.call` (one charger) and :meth:`ReferenceCsms.call_all`
(the whole fleet, or the ids :func:`select_targets` picks)::

    await csms.call("CP000001", *reserve_now(reservation_id=1, id_tag="TAG00001",
                                             expiry=time.time() + 900))
    results = await csms.call_all(*send_local_list(1, {"TAG00001": "Accepted"}))

Every CSMS-initiated operation of the five optional feature profiles of OCPP 1.6 has one
(Firmware Management, Local Auth List Management, Reservation, Smart Charging, Remote
Trigger), and so has every CSMS call of the OCPP 1.6 security whitepaper (edition 3);
any other action goes through ``call`` with a hand-written payload.

**Scenarios.**  A scenario's ``[[csms.operations]]`` tables are run by
:class:`OperationSchedule` while ``ocpp-fleet run`` drives a fleet against the embedded
reference CSMS: at ``at`` seconds after the start (and every ``every`` seconds after
that), the CALL goes to the chargers ``target`` names, and the answers are counted.  The
schedule reads each entry as a :class:`ScheduledCall`, so anything with those five
attributes can be scheduled, whoever parsed it.
A date-time field of the payload may be written ``"now"``, ``"now+900"`` or ``"now-60"``
(seconds): it is filled in when the CALL is sent, so a reservation made 10 minutes into a
run still expires in the future.

**What the CSMS fills in** (security whitepaper): a scenario may leave out what only the
CSMS's CA can produce, and the reference CSMS puts it in when the CALL is sent
(:func:`csms_fills` lists it, :func:`fill_in` does it):

* InstallCertificate without ``certificate``: the CA's certificate (M05), a root the
  chargers can then check CertificateSigned chains and firmware signing certificates with;
* DeleteCertificate without ``certificateHashData``: that certificate's hash data (M04);
* SignedUpdateFirmware without ``firmware.signingCertificate`` and ``firmware.signature``
  (both or neither): the CSMS downloads ``firmware.location`` (FTP) and signs the file
  with its CA's Firmware Signing key (L01.FR.04, L01.FR.11).

A scenario is checked before the run with stand-ins for these (:func:`with_placeholders`),
so the rest of the payload still meets the action's schema.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import numpy as np

from emulator.protocol.timefmt import format_timestamp

if TYPE_CHECKING:
    from emulator.csms.certificate_authority import CertificateAuthority
    from emulator.csms.server import ReferenceCsms

__all__ = [
    "DATE_TIME_FIELDS",
    "CsmsRequest",
    "OperationOutcome",
    "OperationSchedule",
    "ScheduledCall",
    "cancel_reservation",
    "certificate_signed",
    "clear_charging_profile",
    "csms_fills",
    "delete_certificate",
    "describe_answer",
    "extended_trigger_message",
    "fill_in",
    "fleet_part",
    "get_composite_schedule",
    "get_diagnostics",
    "get_installed_certificate_ids",
    "get_local_list_version",
    "get_log",
    "install_certificate",
    "materialize",
    "reserve_now",
    "select_targets",
    "send_local_list",
    "set_charging_profile",
    "signed_update_firmware",
    "trigger_message",
    "update_firmware",
    "with_placeholders",
]

_log = logging.getLogger("emulator.csms")

#: Fields of OCPP 1.6 CSMS-initiated requests whose schema type is a date-time.
DATE_TIME_FIELDS: frozenset[str] = frozenset(
    {
        "expiryDate",
        "retrieveDate",
        "startSchedule",
        "startTime",
        "stopTime",
        "validFrom",
        "validTo",
        # security whitepaper: FirmwareType, LogParametersType
        "installDateTime",
        "latestTimestamp",
        "oldestTimestamp",
        "retrieveDateTime",
    }
)
_RELATIVE = re.compile(r"^now(?:\s*(?P<sign>[+-])\s*(?P<seconds>\d+(?:\.\d+)?))?$")

Moment = dt.datetime | float
"""A point in time: an aware datetime, or seconds since the epoch."""


class CsmsRequest(NamedTuple):
    """One CSMS-initiated CALL: ``csms.call(charger_id, *request)``."""

    action: str
    payload: dict[str, Any]


class ScheduledCall(Protocol):
    """One CSMS-initiated CALL on a schedule: a scenario's ``[[csms.operations]]`` entry."""

    @property
    def at(self) -> float:
        """Seconds after the schedule starts when the CALL is first sent."""
        ...

    @property
    def action(self) -> str:
        """A CSMS-initiated OCPP 1.6 action."""
        ...

    @property
    def payload(self) -> Mapping[str, Any]:
        """The request payload; date-time fields may be ``"now"``, ``"now+S"``, ``"now-S"``
        (:func:`materialize`)."""
        ...

    @property
    def target(self) -> str | float | Sequence[int | str]:
        """``"all"``, ``"K/N"`` (the K-th of N parts of the fleet), a share of the fleet in
        (0, 1], or charger numbers and/or ids (:func:`select_targets`)."""
        ...

    @property
    def every(self) -> float | None:
        """Repeat every so many seconds until the schedule is stopped (None: once)."""
        ...


def _moment(value: Moment) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime for OCPP needs a time zone")
        return format_timestamp(value.timestamp())
    return format_timestamp(float(value))


def _put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        payload[key] = value


# ------------------------------------------------------------------ Local Auth List


def get_local_list_version() -> CsmsRequest:
    """GetLocalListVersion.req (OCPP 1.6 §5.10)."""
    return CsmsRequest("GetLocalListVersion", {})


def send_local_list(
    version: int,
    entries: Mapping[str, str | Mapping[str, Any] | None] | None = None,
    *,
    update_type: str = "Full",
) -> CsmsRequest:
    """SendLocalList.req (OCPP 1.6 §5.15).  ``entries`` maps idTag to an AuthorizationStatus
    (``"Accepted"``), a whole idTagInfo (with ``expiryDate``, ``parentIdTag``) or None (remove
    the tag: Differential only)."""
    items: list[dict[str, Any]] = []
    for id_tag, info in (entries or {}).items():
        item: dict[str, Any] = {"idTag": id_tag}
        if isinstance(info, str):
            item["idTagInfo"] = {"status": info}
        elif info is not None:
            item["idTagInfo"] = dict(info)
        items.append(item)
    payload: dict[str, Any] = {"listVersion": version, "updateType": update_type}
    if items or update_type == "Differential":
        payload["localAuthorizationList"] = items
    return CsmsRequest("SendLocalList", payload)


# ------------------------------------------------------------------ Reservation


def reserve_now(
    *,
    reservation_id: int,
    id_tag: str,
    expiry: Moment,
    connector_id: int = 0,
    parent_id_tag: str | None = None,
) -> CsmsRequest:
    """ReserveNow.req (OCPP 1.6 §5.13); connector 0 reserves any connector."""
    payload: dict[str, Any] = {
        "connectorId": connector_id,
        "expiryDate": _moment(expiry),
        "idTag": id_tag,
        "reservationId": reservation_id,
    }
    _put(payload, "parentIdTag", parent_id_tag)
    return CsmsRequest("ReserveNow", payload)


def cancel_reservation(reservation_id: int) -> CsmsRequest:
    """CancelReservation.req (OCPP 1.6 §5.1)."""
    return CsmsRequest("CancelReservation", {"reservationId": reservation_id})


# ------------------------------------------------------------------ Remote Trigger


def trigger_message(requested: str, connector_id: int | None = None) -> CsmsRequest:
    """TriggerMessage.req (OCPP 1.6 §5.17): BootNotification, DiagnosticsStatusNotification,
    FirmwareStatusNotification, Heartbeat, MeterValues or StatusNotification."""
    payload: dict[str, Any] = {"requestedMessage": requested}
    _put(payload, "connectorId", connector_id)
    return CsmsRequest("TriggerMessage", payload)


# ------------------------------------------------------------------ Firmware Management


def get_diagnostics(
    location: str,
    *,
    retries: int | None = None,
    retry_interval: int | None = None,
    start_time: Moment | None = None,
    stop_time: Moment | None = None,
) -> CsmsRequest:
    """GetDiagnostics.req (OCPP 1.6 §5.9); ``location`` e.g. ``ftp://user:pw@host/dir/``."""
    payload: dict[str, Any] = {"location": location}
    _put(payload, "retries", retries)
    _put(payload, "retryInterval", retry_interval)
    _put(payload, "startTime", None if start_time is None else _moment(start_time))
    _put(payload, "stopTime", None if stop_time is None else _moment(stop_time))
    return CsmsRequest("GetDiagnostics", payload)


def update_firmware(
    location: str,
    retrieve: Moment,
    *,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> CsmsRequest:
    """UpdateFirmware.req (OCPP 1.6 §5.19): download ``location`` from ``retrieve`` on."""
    payload: dict[str, Any] = {"location": location, "retrieveDate": _moment(retrieve)}
    _put(payload, "retries", retries)
    _put(payload, "retryInterval", retry_interval)
    return CsmsRequest("UpdateFirmware", payload)


# ------------------------------------------------------------------ Smart Charging


def set_charging_profile(connector_id: int, profile: Mapping[str, Any]) -> CsmsRequest:
    """SetChargingProfile.req (OCPP 1.6 §5.16); ``profile`` is a csChargingProfiles object."""
    return CsmsRequest(
        "SetChargingProfile", {"connectorId": connector_id, "csChargingProfiles": dict(profile)}
    )


def clear_charging_profile(
    *,
    profile_id: int | None = None,
    connector_id: int | None = None,
    purpose: str | None = None,
    stack_level: int | None = None,
) -> CsmsRequest:
    """ClearChargingProfile.req (OCPP 1.6 §5.5); no criteria clears every profile."""
    payload: dict[str, Any] = {}
    _put(payload, "id", profile_id)
    _put(payload, "connectorId", connector_id)
    _put(payload, "chargingProfilePurpose", purpose)
    _put(payload, "stackLevel", stack_level)
    return CsmsRequest("ClearChargingProfile", payload)


def get_composite_schedule(
    connector_id: int, duration: int, *, unit: str | None = None
) -> CsmsRequest:
    """GetCompositeSchedule.req (OCPP 1.6 §5.7); ``unit`` ``"A"`` or ``"W"``."""
    payload: dict[str, Any] = {"connectorId": connector_id, "duration": duration}
    _put(payload, "chargingRateUnit", unit)
    return CsmsRequest("GetCompositeSchedule", payload)


# ------------------------------------------------------------------ Security whitepaper


def extended_trigger_message(requested: str, connector_id: int | None = None) -> CsmsRequest:
    """ExtendedTriggerMessage.req (security whitepaper §5.5): BootNotification,
    LogStatusNotification, FirmwareStatusNotification (a SignedFirmwareStatusNotification),
    Heartbeat, MeterValues, SignChargePointCertificate (a SignCertificate, A02) or
    StatusNotification."""
    payload: dict[str, Any] = {"requestedMessage": requested}
    _put(payload, "connectorId", connector_id)
    return CsmsRequest("ExtendedTriggerMessage", payload)


def certificate_signed(certificate_chain: str) -> CsmsRequest:
    """CertificateSigned.req (§5.1): the charger's certificate and its CA's, PEM.  The
    reference CSMS sends one by itself after each SignCertificate it accepts; this one is
    for a chain of your own (e.g. one the charger must reject)."""
    return CsmsRequest("CertificateSigned", {"certificateChain": certificate_chain})


def install_certificate(certificate_type: str, certificate: str) -> CsmsRequest:
    """InstallCertificate.req (§5.11): ``certificate_type`` CentralSystemRootCertificate or
    ManufacturerRootCertificate, ``certificate`` PEM."""
    return CsmsRequest(
        "InstallCertificate", {"certificateType": certificate_type, "certificate": certificate}
    )


def delete_certificate(hash_data: Mapping[str, str]) -> CsmsRequest:
    """DeleteCertificate.req (§5.3); ``hash_data`` as GetInstalledCertificateIds answers it
    (:func:`emulator.csms.certificate_authority.certificate_hash_data` makes one)."""
    return CsmsRequest("DeleteCertificate", {"certificateHashData": dict(hash_data)})


def get_installed_certificate_ids(certificate_type: str) -> CsmsRequest:
    """GetInstalledCertificateIds.req (§5.7)."""
    return CsmsRequest("GetInstalledCertificateIds", {"certificateType": certificate_type})


def signed_update_firmware(
    *,
    request_id: int,
    location: str,
    retrieve: Moment,
    signing_certificate: str,
    signature: str,
    install: Moment | None = None,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> CsmsRequest:
    """SignedUpdateFirmware.req (§5.21, L01): ``signature`` is base64 of the signature over
    the whole file, verified with ``signing_certificate`` (PEM); a CertificateAuthority's
    ``sign_firmware`` makes both."""
    firmware: dict[str, Any] = {
        "location": location,
        "retrieveDateTime": _moment(retrieve),
        "signingCertificate": signing_certificate,
        "signature": signature,
    }
    _put(firmware, "installDateTime", None if install is None else _moment(install))
    payload: dict[str, Any] = {"requestId": request_id, "firmware": firmware}
    _put(payload, "retries", retries)
    _put(payload, "retryInterval", retry_interval)
    return CsmsRequest("SignedUpdateFirmware", payload)


def get_log(
    *,
    log_type: str,
    request_id: int,
    location: str,
    oldest: Moment | None = None,
    latest: Moment | None = None,
    retries: int | None = None,
    retry_interval: int | None = None,
) -> CsmsRequest:
    """GetLog.req (§5.9, N01): ``log_type`` DiagnosticsLog or SecurityLog, uploaded to
    ``location`` (an FTP directory, as for GetDiagnostics)."""
    log: dict[str, Any] = {"remoteLocation": location}
    _put(log, "oldestTimestamp", None if oldest is None else _moment(oldest))
    _put(log, "latestTimestamp", None if latest is None else _moment(latest))
    payload: dict[str, Any] = {"logType": log_type, "requestId": request_id, "log": log}
    _put(payload, "retries", retries)
    _put(payload, "retryInterval", retry_interval)
    return CsmsRequest("GetLog", payload)


# ------------------------------------------------------------------ what the CSMS fills in

_SIGNATURE_FIELDS = ("signingCertificate", "signature")
#: Stand-ins of the right type for the pre-run schema check (never sent).
_PLACEHOLDER_HASH_DATA: Final = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "0",
    "issuerKeyHash": "0",
    "serialNumber": "0",
}


def csms_fills(action: str, payload: Mapping[str, Any]) -> list[str]:
    """The fields of ``payload`` the reference CSMS's CA will fill in, by path (``[]``: the
    payload is sent as it is).  Raises ValueError for a SignedUpdateFirmware that gives
    only one of signingCertificate and signature."""
    if action == "InstallCertificate" and "certificate" not in payload:
        return ["certificate"]
    if action == "DeleteCertificate" and "certificateHashData" not in payload:
        return ["certificateHashData"]
    if action == "SignedUpdateFirmware" and isinstance(payload.get("firmware"), Mapping):
        firmware = payload["firmware"]
        missing = [name for name in _SIGNATURE_FIELDS if name not in firmware]
        if len(missing) == 1:
            given = next(name for name in _SIGNATURE_FIELDS if name in firmware)
            raise ValueError(
                f"firmware.{missing[0]}: give it with firmware.{given}, or leave both out "
                "for the reference CSMS to sign the firmware"
            )
        return [f"firmware.{name}" for name in missing]
    return []


def with_placeholders(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with stand-ins where the CSMS fills in (:func:`csms_fills`), for
    checking the rest against the action's schema before the run."""
    out = dict(payload)
    for path in csms_fills(action, payload):
        if path == "certificateHashData":
            out[path] = dict(_PLACEHOLDER_HASH_DATA)
        elif path.startswith("firmware."):
            out["firmware"] = {**out["firmware"], path.removeprefix("firmware."): "-"}
        else:
            out[path] = "-"
    return out


async def fill_in(
    action: str, payload: Mapping[str, Any], authority: CertificateAuthority
) -> dict[str, Any]:
    """``payload`` with what :func:`csms_fills` names produced by ``authority``.

    Raises :class:`~emulator.csms.firmware_source.FirmwareFetchError` if the firmware to
    sign cannot be downloaded (its message has no credentials)."""
    out = dict(payload)
    fills = csms_fills(action, payload)
    if "certificate" in fills:
        out["certificate"] = authority.root_pem
    if "certificateHashData" in fills:
        from emulator.csms.certificate_authority import certificate_hash_data

        out["certificateHashData"] = certificate_hash_data(authority.root_pem)
    if any(path.startswith("firmware.") for path in fills):
        from emulator.csms.firmware_source import fetch_firmware

        firmware = dict(out["firmware"])
        signed = authority.sign_firmware(await fetch_firmware(str(firmware["location"])))
        firmware["signingCertificate"] = signed.signing_certificate
        firmware["signature"] = signed.signature
        out["firmware"] = firmware
    return out


# ------------------------------------------------------------------ scenario operations


def materialize(payload: Any, now: float) -> Any:
    """A copy of a scenario payload ready to send at ``now``: date-time fields written
    ``"now"`` / ``"now+S"`` / ``"now-S"`` become RFC 3339 times, TOML date-times too.

    Raises ValueError for a date-time field starting with "now" that is not of that form.
    """
    if isinstance(payload, Mapping):
        out: dict[str, Any] = {}
        for key, value in payload.items():
            if key in DATE_TIME_FIELDS and isinstance(value, str) and value.startswith("now"):
                match = _RELATIVE.match(value)
                if match is None:
                    raise ValueError(
                        f"{key}: expected now, now+SECONDS or now-SECONDS, got {value!r}"
                    )
                seconds = float(match["seconds"] or 0.0)
                out[key] = format_timestamp(
                    now - seconds if match["sign"] == "-" else now + seconds
                )
            else:
                out[key] = materialize(value, now)
        return out
    if isinstance(payload, list | tuple):
        return [materialize(item, now) for item in payload]
    if isinstance(payload, dt.datetime):
        aware = payload if payload.tzinfo is not None else payload.replace(tzinfo=dt.UTC)
        return format_timestamp(aware.timestamp())
    if isinstance(payload, dt.date | dt.time):
        return payload.isoformat()  # not an OCPP date-time: the schema check says so
    return payload


_PART = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def fleet_part(target: str) -> tuple[int, int] | None:
    """``(K, N)`` for a target ``"K/N"`` with 1 <= K <= N, else None.  Part K holds the
    chargers ``(K-1)*size//N + 1`` to ``K*size//N`` by number: the N parts are disjoint,
    cover the fleet and differ in size by at most one."""
    match = _PART.match(target)
    if match is None:
        return None
    k, n = int(match[1]), int(match[2])
    return (k, n) if 1 <= k <= n else None


def select_targets(
    target: str | float | Sequence[int | str],
    charger_ids: Sequence[str],
    rng: np.random.Generator,
) -> list[str]:
    """The charger ids an operation goes to.

    ``"all"``: every charger.  ``"K/N"``: the K-th of N parts of the fleet in charger
    order (:func:`fleet_part`), so N operations ``"1/N"`` ... ``"N/N"`` reach every charger
    once, in waves.  A number in (0, 1]: that share of the fleet (at least one
    charger), drawn with ``rng``, in charger order.  A list: charger numbers (1 is the
    first charger, ``charger_ids[0]``) and/or charger ids; numbers beyond the fleet are
    skipped.
    """
    if isinstance(target, str):
        if target == "all":
            return list(charger_ids)
        part = fleet_part(target)
        if part is None:
            raise ValueError(f'target: expected "all", "K/N", a share or a list, got {target!r}')
        k, n = part
        size = len(charger_ids)
        return list(charger_ids[(k - 1) * size // n : k * size // n])
    if isinstance(target, bool):
        raise ValueError(f"target: expected a share in (0, 1], got {target!r}")
    if isinstance(target, int | float):
        if not 0 < target <= 1:
            raise ValueError(f"target: expected a share in (0, 1], got {target!r}")
        if not charger_ids:
            return []
        count = min(len(charger_ids), max(1, round(target * len(charger_ids))))
        picked = rng.choice(len(charger_ids), size=count, replace=False)
        return [charger_ids[int(i)] for i in sorted(picked)]
    chosen: list[str] = []
    for item in target:
        if isinstance(item, str):
            chosen.append(item)
        elif 1 <= item <= len(charger_ids):
            chosen.append(charger_ids[item - 1])
    return list(dict.fromkeys(chosen))


def describe_answer(action: str, answer: Mapping[str, Any] | BaseException) -> str:
    """A short label for one charger's answer, for counting: the status, or the error."""
    from emulator.csms.server import CallErrorReceived, ChargerNotConnected

    if isinstance(answer, CallErrorReceived):
        return f"CALLERROR {answer.code}"
    if isinstance(answer, ChargerNotConnected):
        return "not connected"
    if isinstance(answer, TimeoutError):
        return "timeout"
    if isinstance(answer, BaseException):
        return type(answer).__name__
    if "status" in answer:
        return str(answer["status"])
    if action == "GetLocalListVersion":
        return f"listVersion {answer.get('listVersion')}"
    return "answered"


@dataclass(slots=True)
class OperationOutcome:
    """What one ``[[csms.operations]]`` entry did over the run (all its repetitions)."""

    index: int
    action: str
    runs: int = 0
    calls: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # chargers the target named that are not in the fleet

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "action": self.action,
            "runs": self.runs,
            "calls": self.calls,
            "answers": dict(sorted(self.answers.items())),
            "skipped": self.skipped,
        }

    def line(self) -> str:
        answers = ", ".join(f"{label} {n}" for label, n in sorted(self.answers.items()))
        runs = f" ×{self.runs}" if self.runs != 1 else ""
        skipped = f" ({self.skipped} charger numbers beyond the fleet)" if self.skipped else ""
        return (
            f"[{self.index}] {self.action}{runs}: {self.calls} calls: {answers or 'none'}{skipped}"
        )


class OperationSchedule:
    """Runs a scenario's ``[[csms.operations]]`` against the fleet through a ReferenceCsms.

    ``charger_ids`` are the fleet's ids in charger-number order; ``seed`` makes the share
    targets reproducible (operation ``i`` draws from ``default_rng([seed, i])``).  Run
    :meth:`run` as a task alongside the fleet and cancel it when the run ends; the counts
    so far are in :attr:`outcomes`.
    """

    def __init__(
        self,
        *,
        csms: ReferenceCsms,
        operations: Sequence[ScheduledCall],
        charger_ids: Sequence[str],
        seed: int,
        clock: Callable[[], float] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.csms = csms
        self.operations = tuple(operations)
        self.charger_ids = list(charger_ids)
        self.seed = seed
        self.timeout = timeout
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.outcomes = [OperationOutcome(i, op.action) for i, op in enumerate(self.operations)]

    def start(self) -> None:
        """Run :meth:`run` in the background from now on (``at`` counts from here)."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="csms-operations")

    async def stop(self) -> None:
        """Cancel what is left (the run is over) and wait for it; a failure is logged."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # we were cancelled ourselves
        except Exception:
            _log.exception("! csms operations failed")

    def _wall(self) -> float:
        return (self._clock or time.time)()

    async def run(self) -> None:
        """Send every operation at its time; returns when none is left (never, with
        ``every``: cancel it)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.TaskGroup() as group:
            for i, op in enumerate(self.operations):
                group.create_task(self._repeat(i, op, started), name=f"csms-operation-{i}")

    async def _repeat(self, index: int, op: ScheduledCall, started: float) -> None:
        loop = asyncio.get_running_loop()
        rng = np.random.default_rng([self.seed, index])
        targets = self._targets(index, op, rng)
        at = started + op.at
        while True:
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.send(index, op, targets)
            if op.every is None:
                return
            at += op.every

    def _targets(self, index: int, op: ScheduledCall, rng: np.random.Generator) -> list[str]:
        target = op.target
        if not isinstance(target, str | int | float):
            size = len(self.charger_ids)
            beyond = [n for n in target if isinstance(n, int) and not 1 <= n <= size]
            self.outcomes[index].skipped = len(beyond)
        return select_targets(target, self.charger_ids, rng)

    async def send(self, index: int, op: ScheduledCall, targets: Iterable[str]) -> None:
        """One run of operation ``index``: the CALL to each target, answers counted.

        A run is counted once every answer is in; one cut short by the end of the run
        (cancelled) counts neither as a run nor with its answers.
        """
        outcome = self.outcomes[index]
        payload = materialize(op.payload, self._wall())
        ids = list(targets)
        if ids and csms_fills(op.action, payload):
            try:
                payload = await fill_in(op.action, payload, self.csms.central.certificate_authority)
            except Exception as exc:  # e.g. the firmware to sign cannot be downloaded
                from emulator.csms.firmware_source import FirmwareFetchError

                reason = str(exc) if isinstance(exc, FirmwareFetchError) else type(exc).__name__
                _log.error("! csms operation [%d] %s not sent: %s", index, op.action, reason)
                outcome.runs += 1
                outcome.answers[f"not sent: {reason}"] += len(ids)
                return
        results = (
            await self.csms.call_all(
                op.action, payload, charger_ids=ids, timeout=self.timeout, check_request=False
            )
            if ids
            else {}
        )
        outcome.runs += 1
        for answer in results.values():
            outcome.calls += 1
            outcome.answers[describe_answer(op.action, answer)] += 1
        _log.info("csms operation [%d] %s: %s", index, op.action, outcome.line())
