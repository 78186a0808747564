"""The virtual wallbox: OCPP 1.6 Core behaviour of the reference AC charger, sans I/O.

Feed it what happened (``connected``, ``handle_call``, ``handle_result``,
``handle_error``, driver actions such as ``plug_in``), each with the current time;
drain what it wants to do (``next_call``, ``take_effects``, ``take_events``) and
wake it at ``next_deadline()`` with ``tick(now)``.  It never reads a clock, opens a
socket or sleeps, so every rule below is tested with a fake clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from emulator.core.authorization import AuthorizationStatus, Authorizer, Decision, IdTagInfo
from emulator.core.configuration import Configuration, ConfigurationStatus
from emulator.core.connector import Connector, Intent
from emulator.core.metering import Ev, Meter
from emulator.core.model import ChargerModel, Variant
from emulator.core.outbox import Message, Outbox, OutgoingCall
from emulator.core.status import Status, check_transition
from emulator.core.timefmt import format_timestamp
from emulator.core.transaction import StopReason, Transaction
from emulator.protocol.errors import ErrorCode, RemoteProtocolError

PROFILE_OF_ACTION: dict[str, str] = {
    "ChangeAvailability": "Core",
    "ChangeConfiguration": "Core",
    "ClearCache": "Core",
    "DataTransfer": "Core",
    "GetConfiguration": "Core",
    "RemoteStartTransaction": "Core",
    "RemoteStopTransaction": "Core",
    "Reset": "Core",
    "UnlockConnector": "Core",
    "GetDiagnostics": "FirmwareManagement",
    "UpdateFirmware": "FirmwareManagement",
    "GetLocalListVersion": "LocalAuthListManagement",
    "SendLocalList": "LocalAuthListManagement",
    "CancelReservation": "Reservation",
    "ReserveNow": "Reservation",
    "ClearChargingProfile": "SmartCharging",
    "GetCompositeSchedule": "SmartCharging",
    "SetChargingProfile": "SmartCharging",
    "TriggerMessage": "RemoteTrigger",
}
"""CSMS-initiated actions of OCPP 1.6 by feature profile (OCPP 1.6 §3.1)."""

SECURITY_EXTENSION_ACTIONS = frozenset(
    {
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)
"""Known to OCPP 1.6 (security whitepaper) but not implemented by the reference charger."""

VENDOR_ID = "ocpp-fleet"
"""DataTransfer vendorId this emulator answers (messageId "echo" returns the data)."""

BOOT_RETRY_DEFAULT = 60
SOFT_RESET_FLUSH_SECONDS = 30.0
REBOOT_SECONDS = 5.0


class EventKind(StrEnum):
    """What the wallbox tells the session behaviour and the fleet runner."""

    BOOT_ACCEPTED = "boot_accepted"
    REMOTE_START_ACCEPTED = "remote_start_accepted"
    AUTHORIZED = "authorized"
    AUTHORIZATION_REJECTED = "authorization_rejected"
    CONNECTION_TIMEOUT = "connection_timeout"
    TRANSACTION_STARTED = "transaction_started"
    TRANSACTION_STOPPED = "transaction_stopped"
    EV_FULL = "ev_full"
    REBOOTED = "rebooted"
    STATUS_CHANGED = "status_changed"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    connector_id: int
    detail: str = ""


class Effect(StrEnum):
    """I/O the wallbox asks the transport for."""

    SEND_PING = "send_ping"
    REBOOT = "reboot"  # close the websocket, reconnect after ``reboot_seconds``


class Wallbox:
    """One emulated charger with its connectors (reference: one connector, id 1)."""

    def __init__(
        self,
        *,
        charge_point_id: str,
        model: ChargerModel,
        rng: np.random.Generator,
        now: float,
        response_timeout: float = 30.0,
        boot_on_reconnect: bool = False,
        drain_interval: float = 0.1,
        reboot_seconds: float = REBOOT_SECONDS,
        strict: bool = False,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.model = model
        self.rng = rng
        self.strict = strict  # raise on a derived status change OCPP does not list (tests)
        self.boot_on_reconnect = boot_on_reconnect
        self.reboot_seconds = reboot_seconds
        self.config = Configuration(profiles=model.profiles, overrides=model.configuration)
        self.auth = Authorizer(
            config=self.config, offline_local_list_only=model.offline_local_list_only
        )
        self.outbox = Outbox(
            config=self.config, response_timeout=response_timeout, drain_interval=drain_interval
        )
        self.firmware_version = model.firmware_version
        lifetime_wh = float(rng.uniform(100_000, 20_000_000))
        self.connectors: list[Connector] = [
            Connector(
                id=i,
                meter=Meter(
                    phases=model.phases,
                    nominal_voltage=model.nominal_voltage,
                    lifetime_wh=lifetime_wh if i else 0.0,
                    rng=rng,
                    now=now,
                ),
            )
            for i in range(self.config.get_int("NumberOfConnectors") + 1)
        ]
        self.online = False
        self.registration: str | None = None  # BootNotification.conf status of this power cycle
        self.boot_retry_at: float | None = None
        self.last_activity = now
        self.next_ping_at: float | None = None
        self.next_aligned_at: float | None = None
        self.aligned_register: int = self.connectors[1].meter.register_wh()
        self.reboot_at: float | None = None
        self.reboot_deadline: float | None = None
        self._tx_counter = 0
        self.transactions: list[
            Transaction
        ] = []  # every transaction of this wallbox, for the ledger
        self.lost_transactions: list[Transaction] = []  # hard reset: "data ... will be lost"
        self.timeouts = 0  # charger-initiated CALLs the CSMS never answered
        self._hard_reset_pending = False
        self._effects: deque[Effect] = deque()
        self._events: deque[Event] = deque()
        self._schedule_aligned(now)
        for connector in self.connectors:
            self._refresh(connector, now)

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> None:
        self.online = True
        self.last_activity = now
        interval = self.config.get_int("WebSocketPingInterval")
        self.next_ping_at = now + interval if interval else None
        if self.registration != "Accepted" or self.boot_on_reconnect:
            self.registration = None
            self._send_boot(now)

    def disconnected(self, now: float) -> None:
        self.online = False
        self.next_ping_at = None
        lost: list[Message] = []
        failed = self.outbox.connection_lost(now)
        if failed is not None:
            self.outbox.ledger.dropped[f"{failed.action}: connection lost"] += 1
            lost.append(failed)
        # Heartbeat and Boot are made again when needed; an Authorize still waiting for
        # the line is decided as offline now, like one lost in flight (OCPP 1.6 §3.5);
        # statuses (coalesced) and transaction messages are kept.
        lost += self.outbox.drop_where(
            lambda m: m.action in ("Heartbeat", "BootNotification", "Authorize"),
            "connection lost",
        )
        for message in lost:
            if message.on_failure:
                message.on_failure("connection lost", now)
        self.boot_retry_at = None  # after the callbacks: a failed boot would re-arm it

    @property
    def accepted(self) -> bool:
        return self.registration == "Accepted"

    # ------------------------------------------------------------------ outgoing

    def next_call(self, now: float) -> OutgoingCall | None:
        """The next CALL to send now (one outstanding at a time), or None."""
        if not self.online:
            return None
        call = self.outbox.pop_ready(now, boot_only=not self.accepted)
        if call is not None:
            self.last_activity = now
        return call

    def take_effects(self) -> list[Effect]:
        effects = list(self._effects)
        self._effects.clear()
        return effects

    def take_events(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        return events

    def _emit(self, kind: EventKind, connector_id: int, detail: str = "") -> None:
        self._events.append(Event(kind, connector_id, detail))

    def _enqueue(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        transactional: bool = False,
        tx: Transaction | None = None,
        on_result: Callable[[dict[str, Any], float], None] | None = None,
        on_failure: Callable[[str, float], None] | None = None,
        coalesce_key: tuple[str, int] | None = None,
        not_before: float = 0.0,
    ) -> None:
        self.outbox.enqueue(
            Message(
                action=action,
                payload=payload,
                transactional=transactional,
                tx=tx,
                on_result=on_result,
                on_failure=on_failure,
                coalesce_key=coalesce_key,
                not_before=not_before,
            )
        )

    # ------------------------------------------------------------------ answers

    def handle_result(self, unique_id: str, payload: dict[str, Any], now: float) -> str | None:
        """A CALLRESULT arrived; returns the action it answered (None: unexpected id)."""
        self.last_activity = now
        message = self.outbox.take_in_flight(unique_id)
        if message is None:
            return None
        self.outbox.acknowledged(message, payload, now)
        return message.action

    def handle_error(self, unique_id: str, code: str, now: float) -> str | None:
        """A CALLERROR arrived (or the response broke the schema: treat alike)."""
        self.last_activity = now
        message = self.outbox.take_in_flight(unique_id)
        if message is None:
            return None
        self.outbox.failed(message, f"CALLERROR {code}", now)
        return message.action

    def action_in_flight(self, unique_id: str) -> str | None:
        flight = self.outbox.in_flight
        return flight.message.action if flight and flight.unique_id == unique_id else None

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has something to do."""
        times: list[float] = []
        if self.online:
            flight = self.outbox.in_flight
            if flight is not None:
                times.append(flight.deadline)
            else:
                ready = self.outbox.next_ready_at(boot_only=not self.accepted)
                if ready is not None:
                    times.append(ready)
            if self.accepted:
                times.append(self.last_activity + self.config.heartbeat_interval)
            if self.next_ping_at is not None:
                times.append(self.next_ping_at)
            if self.boot_retry_at is not None:
                times.append(self.boot_retry_at)
        for c in self.connectors:
            if c.next_sample_at is not None:
                times.append(c.next_sample_at)
            if c.intent is not None:
                times.append(c.intent.deadline)
            ev_full_at = self._ev_full_at(c)
            if ev_full_at is not None:
                times.append(ev_full_at)
        if self.next_aligned_at is not None:
            times.append(self.next_aligned_at)
        if self.reboot_deadline is not None:
            if self.outbox.transaction_backlog == 0:
                # A reset restarts as soon as no transaction message waits (see tick): now.
                times.append(min(self.reboot_deadline, self.last_activity))
            else:
                times.append(self.reboot_deadline)
        return min(times) if times else None

    def tick(self, now: float) -> None:
        """Do whatever is due at ``now``."""
        expired = self.outbox.expired(now) if self.online else None
        if expired is not None:
            self.outbox.failed(expired, "timeout", now)
            self.timeouts += 1
        if self.online:
            if self.boot_retry_at is not None and now >= self.boot_retry_at:
                self.boot_retry_at = None
                self._send_boot(now)
            if self.accepted and now >= self.last_activity + self.config.heartbeat_interval:
                # Re-arm even when a Heartbeat already waits behind an unanswered CALL:
                # otherwise next_deadline() stays in the past and the driver spins.
                if not self.outbox.has_queued("Heartbeat"):
                    self._enqueue("Heartbeat", {})
                self.last_activity = now
            if self.next_ping_at is not None and now >= self.next_ping_at:
                self._effects.append(Effect.SEND_PING)
                interval = self.config.get_int("WebSocketPingInterval")
                self.next_ping_at = now + interval if interval else None
        for c in self.connectors:
            if c.intent is not None and now >= c.intent.deadline:
                c.intent = None  # ConnectionTimeOut: the cable never came
                self._emit(EventKind.CONNECTION_TIMEOUT, c.id)
                self._refresh(c, now)
            ev_full_at = self._ev_full_at(c)
            if ev_full_at is not None and now >= ev_full_at:
                self._update_draw(c, now)
            if c.next_sample_at is not None and now >= c.next_sample_at:
                self._send_sampled(c, now)
        if self.next_aligned_at is not None and now >= self.next_aligned_at:
            self._send_aligned(now)
            self._schedule_aligned(now)
        if self.reboot_deadline is not None and (
            now >= self.reboot_deadline or self.outbox.transaction_backlog == 0
        ):
            if self._hard_reset_pending:
                self._hard_reset_pending = False
                self.hard_reset(now)
            else:
                self._reboot(now)

    # ------------------------------------------------------------------ boot

    def _send_boot(self, now: float) -> None:
        payload: dict[str, Any] = {
            "chargePointVendor": self.model.vendor,
            "chargePointModel": self.model.model,
            "chargePointSerialNumber": self.charge_point_id[-25:],
            "firmwareVersion": self.firmware_version,
        }
        self._enqueue(
            "BootNotification", payload, on_result=self._boot_result, on_failure=self._boot_failed
        )

    def _boot_result(self, payload: dict[str, Any], now: float) -> None:
        status = payload["status"]
        interval = int(payload["interval"])
        self.registration = status
        if status == "Accepted":
            if interval > 0:
                # OCPP 1.6 §4.2.1: adjust the heartbeat interval to the one in the response.
                self.config.change("HeartbeatInterval", str(interval))
            self.last_activity = now
            for c in self.connectors:
                c.reported = None  # after a boot the CSMS learns every connector's status
                self._refresh(c, now, coalesce=True)
            self._emit(EventKind.BOOT_ACCEPTED, 0)
        else:
            # Pending / Rejected: nothing but BootNotification until the interval has passed.
            self.boot_retry_at = now + (interval if interval > 0 else BOOT_RETRY_DEFAULT)

    def _boot_failed(self, reason: str, now: float) -> None:
        self.boot_retry_at = now + BOOT_RETRY_DEFAULT

    # ------------------------------------------------------------------ status

    def _refresh(self, c: Connector, now: float, *, coalesce: bool = False) -> None:
        """Re-derive the connector's status; queue a StatusNotification on a change."""
        if (
            c.pending_operative is not None
            and c.id > 0
            and c.transaction is None
            and c.derive_status() is not Status.PREPARING
        ):
            self._set_operative(c, c.pending_operative)  # a Scheduled change falls due
        if c.id == 0:
            faulted = c.fault is not None
            status = (
                Status.FAULTED
                if faulted
                else Status.AVAILABLE
                if c.operative
                else Status.UNAVAILABLE
            )
        else:
            status = c.derive_status()
        if status == c.reported:
            return
        try:
            check_transition(c.id, c.reported, status)
        except Exception:
            if self.strict:
                raise
        c.reported = status
        self._emit(EventKind.STATUS_CHANGED, c.id, status)
        self._enqueue(
            "StatusNotification",
            {
                "connectorId": c.id,
                "errorCode": c.error_code if status == Status.FAULTED else "NoError",
                "status": status.value,
                "timestamp": format_timestamp(now),
            },
            coalesce_key=(
                ("StatusNotification", c.id)
                if coalesce or not (self.online and self.accepted)
                else None
            ),
        )

    def status(self, connector_id: int = 1) -> Status:
        reported = self.connectors[connector_id].reported
        assert reported is not None
        return reported

    # ------------------------------------------------------------------ metering

    def _offered_current(self, c: Connector) -> float:
        """Current.Offered: the lowest of the charger's maximum and any limit (issue 3)."""
        return float(self.model.max_current)

    def _update_draw(self, c: Connector, now: float) -> None:
        """Set the EV's draw from the facts at ``now`` (integrating what came before)."""
        tx = c.transaction
        ev = c.ev
        phases = ev.phases if ev else None
        if ev is not None and tx is not None:
            added = c.meter.advance(now, phases=phases)
            ev.delivered_wh += added
        offered = self._offered_current(c)
        c.offered_a = offered
        current = 0.0
        c.evse_suspended = False
        if tx is not None and tx.energy_cap_wh is not None:
            if c.meter.register_wh() - tx.meter_start >= tx.energy_cap_wh:
                c.evse_suspended = True
        if tx is not None and ev is not None and c.plugged and not c.evse_suspended:
            if ev.full:
                if not c.ev_suspended:
                    self._emit(EventKind.EV_FULL, c.id)
                c.ev_suspended = True
            elif offered < ev.min_current:
                c.evse_suspended = True
            elif c.ev_paused:
                c.ev_suspended = True
            else:
                c.ev_suspended = False
                current = min(offered, ev.max_current)
        c.meter.set_current(now, current, phases=phases)
        self._refresh(c, now)

    def _ev_full_at(self, c: Connector) -> float | None:
        ev = c.ev
        if ev is None or c.transaction is None or c.meter.current_a <= 0:
            return None
        power = c.meter.power_w(ev.phases)
        remaining = ev.energy_wanted_wh - ev.delivered_wh
        if not math.isfinite(remaining):  # an EV that never gets full (remote-only scenario)
            return None
        deadline = c.meter.last_update + max(0.0, remaining) * 3600.0 / power
        cap = c.transaction.energy_cap_wh
        if cap is not None:
            cap_remaining = c.transaction.meter_start + cap - c.meter.energy_wh + 1e-6
            deadline = min(deadline, c.meter.last_update + max(0.0, cap_remaining) * 3600.0 / power)
        return deadline

    def _sampled_values(
        self, c: Connector, measurands: list[str], context: str, now: float
    ) -> list[dict[str, Any]]:
        phases = c.ev.phases if c.ev else self.model.phases
        phases = min(phases, self.model.phases)
        voltage = c.meter.sample_voltage(now, phases=phases)
        values: list[dict[str, Any]] = []
        for measurand in measurands:
            if measurand == "Energy.Active.Import.Register":
                values.append(
                    _sv(str(c.meter.register_wh()), context, measurand, "Wh", location="Outlet")
                )
            elif measurand == "Energy.Active.Import.Interval":
                register = c.meter.register_wh()
                values.append(
                    _sv(
                        str(register - self.aligned_register),
                        context,
                        measurand,
                        "Wh",
                        location="Outlet",
                    )
                )
            elif measurand == "Power.Active.Import":
                values.append(
                    _sv(
                        f"{c.meter.power_w(phases):.0f}", context, measurand, "W", location="Outlet"
                    )
                )
            elif measurand == "Power.Offered":
                offered_w = phases * c.meter.nominal_voltage * c.offered_a
                values.append(_sv(f"{offered_w:.0f}", context, measurand, "W", location="Outlet"))
            elif measurand == "Current.Offered":
                values.append(_sv(f"{c.offered_a:.1f}", context, measurand, "A", location="Outlet"))
            elif measurand == "Current.Import":
                for phase in range(phases):
                    values.append(
                        _sv(
                            f"{c.meter.current_a:.1f}",
                            context,
                            measurand,
                            "A",
                            phase=f"L{phase + 1}",
                            location="Outlet",
                        )
                    )
            elif measurand == "Voltage":
                for phase in range(self.model.phases):
                    values.append(
                        _sv(
                            f"{voltage:.1f}",
                            context,
                            measurand,
                            "V",
                            phase=f"L{phase + 1}-N",
                            location="Outlet",
                        )
                    )
        return values

    def _meter_values(self, c: Connector, measurands: list[str], context: str, now: float) -> None:
        tx = c.transaction
        payload: dict[str, Any] = {
            "connectorId": c.id,
            "meterValue": [
                {
                    "timestamp": format_timestamp(now),
                    "sampledValue": self._sampled_values(c, measurands, context, now),
                }
            ],
        }
        if tx is not None:
            payload["transactionId"] = tx.transaction_id or 0
            tx.samples_sent += 1
            self._enqueue("MeterValues", payload, transactional=True, tx=tx)
        else:
            # Without a transaction a reading is best-effort: while offline only the newest
            # per connector waits, instead of a day of 15-s readings bursting at reconnect.
            self._enqueue(
                "MeterValues",
                payload,
                coalesce_key=None if self.online and self.accepted else ("MeterValues", c.id),
            )

    def _send_sampled(self, c: Connector, now: float) -> None:
        interval = self.config.get_int("MeterValueSampleInterval")
        measurands = self.config.get_list("MeterValuesSampledData")
        if c.transaction is None or interval == 0:
            c.next_sample_at = None
            return
        self._update_draw(c, now)
        if measurands:
            self._meter_values(c, measurands, "Sample.Periodic", now)
        assert c.next_sample_at is not None
        # Samples stay on the grid that started with the transaction (reference §3.2.1).
        c.next_sample_at += interval * max(1, math.floor((now - c.next_sample_at) / interval) + 1)

    def _schedule_aligned(self, now: float) -> None:
        interval = self.config.get_int("ClockAlignedDataInterval")
        if interval <= 0:
            self.next_aligned_at = None
            return
        midnight = now - (now % 86400)  # UTC midnight; intervals restart every day
        k = math.floor((now - midnight) / interval) + 1
        boundary = midnight + k * interval
        self.next_aligned_at = min(boundary, midnight + 86400)

    def _send_aligned(self, now: float) -> None:
        measurands = self.config.get_list("MeterValuesAlignedData")
        c = self.connectors[1]
        if self.accepted and measurands:
            self._update_draw(c, now)
            self._meter_values(c, measurands, "Sample.Clock", now)
        self.aligned_register = c.meter.register_wh()

    # ------------------------------------------------------------------ sessions

    def plug_in(self, now: float, *, ev: Ev, connector_id: int = 1) -> None:
        """The driver connects the EV."""
        c = self.connectors[connector_id]
        if c.plugged:
            return
        c.plugged = True
        c.ev = ev
        c.ev_suspended = False
        c.ev_paused = False
        if self.model.variant is Variant.SOCKET:
            c.locked = True
        if c.transaction is not None:  # re-plugged after an EV-side disconnect
            self._update_draw(c, now)
            return
        intent = c.intent
        if intent is not None and c.fault is None and c.operative:
            c.intent = None
            self._start_transaction(c, intent.id_tag, now, reservation_id=intent.reservation_id)
            return
        self._refresh(c, now)

    def unplug(self, now: float, *, connector_id: int = 1) -> None:
        """The driver pulls the cable at the EV side."""
        c = self.connectors[connector_id]
        if not c.plugged:
            return
        tx = c.transaction
        if tx is not None:
            self._update_draw(c, now)
            c.plugged = False
            if self.config.get_bool("StopTransactionOnEVSideDisconnect"):
                self._stop_transaction(c, StopReason.EV_DISCONNECTED, now)
            else:
                c.meter.set_current(now, 0.0)
                self._refresh(c, now)  # SuspendedEV until re-plugged or stopped
            if self.config.get_bool("UnlockConnectorOnEVSideDisconnect"):
                c.locked = False
        else:
            c.plugged = False
            c.locked = False
        c.ev = None if c.transaction is None else c.ev
        c.finishing = False
        self._refresh(c, now)

    def present_id_tag(self, id_tag: str, now: float, *, connector_id: int = 1) -> None:
        """A driver holds an RFID card to the reader."""
        c = self.connectors[connector_id]
        tx = c.transaction
        if tx is not None:
            if id_tag == tx.id_tag or (
                self.auth.parent_of(id_tag) is not None
                and self.auth.parent_of(id_tag) == self.auth.parent_of(tx.id_tag)
            ):
                self._stop_transaction(c, StopReason.LOCAL, now, id_tag=id_tag)
            return
        restart = c.finishing and c.plugged and c.fault is None and c.operative  # §4.9 F2
        if not (c.free or restart) or c.awaiting_authorization is not None:
            return
        if c.reserved_for is not None and c.reserved_for != id_tag:
            return
        self._authorize(c, id_tag, now, remote=False)

    def ev_pause(self, now: float, *, paused: bool, connector_id: int = 1) -> None:
        """The EV stops or resumes drawing on its own (SuspendedEV)."""
        c = self.connectors[connector_id]
        if c.ev is None:
            return
        # A fact, not a status: every later _update_draw (samples, triggers) must keep it.
        c.ev_paused = paused
        self._update_draw(c, now)

    def set_fault(self, now: float, *, error_code: str, connector_id: int = 1) -> None:
        c = self.connectors[connector_id]
        c.fault = error_code
        c.error_code = error_code
        if c.transaction is not None:
            self._stop_transaction(c, StopReason.OTHER, now)
        self._refresh(c, now)

    def clear_fault(self, now: float, *, connector_id: int = 1) -> None:
        c = self.connectors[connector_id]
        c.fault = None
        c.error_code = "NoError"
        self._refresh(c, now)

    def _authorize(self, c: Connector, id_tag: str, now: float, *, remote: bool) -> None:
        decision = self.auth.decide(id_tag, now, online=self.online and self.accepted)
        if decision is Decision.ACCEPT:
            self._authorized(c, id_tag, now, remote=remote)
        elif decision is Decision.REJECT:
            self._emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
        else:
            c.awaiting_authorization = id_tag
            self._refresh(c, now)

            def on_result(payload: dict[str, Any], at: float) -> None:
                c.awaiting_authorization = None
                info = IdTagInfo.from_json(payload["idTagInfo"])
                self.auth.learn(id_tag, info)
                if info.valid_at(at) is AuthorizationStatus.ACCEPTED:
                    self._authorized(c, id_tag, at, remote=remote)
                else:
                    self._emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
                    self._refresh(c, at)

            def on_failure(reason: str, at: float) -> None:
                # No answer: OCPP 1.6 §3.5 — decide as an offline charger would.
                c.awaiting_authorization = None
                if self.auth.decide_offline(id_tag, at) is Decision.ACCEPT:
                    self._authorized(c, id_tag, at, remote=remote)
                else:
                    self._emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
                    self._refresh(c, at)

            self._enqueue(
                "Authorize", {"idTag": id_tag}, on_result=on_result, on_failure=on_failure
            )

    def _authorized(self, c: Connector, id_tag: str, now: float, *, remote: bool) -> None:
        if c.transaction is not None or not c.operative or c.fault is not None:
            return
        self._emit(EventKind.AUTHORIZED, c.id, id_tag)
        if c.plugged:
            if c.finishing:  # F2: Finishing -> Preparing -> Charging, never F -> C
                c.finishing = False
                self._refresh(c, now)
            self._start_transaction(c, id_tag, now)
            return
        timeout = self.config.get_int("ConnectionTimeOut")
        c.intent = Intent(id_tag=id_tag, deadline=now + timeout, remote=remote)
        self._refresh(c, now)

    def _start_transaction(
        self, c: Connector, id_tag: str, now: float, *, reservation_id: int | None = None
    ) -> None:
        self._tx_counter += 1
        c.meter.advance(now)
        tx = Transaction(
            local_id=self._tx_counter,
            connector_id=c.id,
            id_tag=id_tag,
            meter_start=c.meter.register_wh(),
            started_at=now,
            reservation_id=reservation_id,
        )
        c.transaction = tx
        c.finishing = False
        self.transactions.append(tx)
        payload: dict[str, Any] = {
            "connectorId": c.id,
            "idTag": id_tag,
            "meterStart": tx.meter_start,
            "timestamp": format_timestamp(now),
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id

        def on_result(result: dict[str, Any], at: float) -> None:
            tx.transaction_id = int(result["transactionId"])
            info = IdTagInfo.from_json(result["idTagInfo"])
            tx.id_tag_status = info.status.value
            self.auth.learn(id_tag, info)
            if info.status is not AuthorizationStatus.ACCEPTED and c.transaction is tx:
                if self.config.get_bool("StopTransactionOnInvalidId"):
                    self._stop_transaction(c, StopReason.DE_AUTHORIZED, at)
                else:
                    tx.energy_cap_wh = float(self.config.get_int("MaxEnergyOnInvalidId"))
                    self._update_draw(c, at)

        self._enqueue("StartTransaction", payload, transactional=True, tx=tx, on_result=on_result)
        interval = self.config.get_int("MeterValueSampleInterval")
        c.next_sample_at = now + interval if interval else None
        self._emit(EventKind.TRANSACTION_STARTED, c.id, id_tag)
        self._update_draw(c, now)

    def _stop_transaction(
        self, c: Connector, reason: StopReason, now: float, *, id_tag: str | None = None
    ) -> None:
        tx = c.transaction
        if tx is None:
            return
        if c.ev is not None:
            c.ev.delivered_wh += c.meter.set_current(now, 0.0, phases=c.ev.phases)
        else:
            c.meter.set_current(now, 0.0)
        tx.meter_stop = c.meter.register_wh()
        tx.stopped_at = now
        tx.stop_reason = reason
        c.transaction = None
        c.next_sample_at = None
        c.ev_suspended = False
        c.evse_suspended = False
        c.finishing = c.plugged
        if self.model.variant is Variant.SOCKET and reason is not StopReason.EV_DISCONNECTED:
            c.locked = False  # the driver may take the cable now
        payload: dict[str, Any] = {
            "transactionId": tx.transaction_id or 0,
            "meterStop": tx.meter_stop,
            "timestamp": format_timestamp(now),
            "reason": reason.value,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag

        def on_result(result: dict[str, Any], at: float) -> None:
            info = result.get("idTagInfo")
            if info is not None and id_tag is not None:
                self.auth.learn(id_tag, IdTagInfo.from_json(info))

        self._enqueue("StopTransaction", payload, transactional=True, tx=tx, on_result=on_result)
        self._emit(EventKind.TRANSACTION_STOPPED, c.id, reason.value)
        if c.pending_operative is not None:
            self._set_operative(c, c.pending_operative)
        self._refresh(c, now)

    def stop_all_transactions(self, now: float, reason: StopReason) -> None:
        """End every running transaction (e.g. the emulator is shutting down)."""
        for c in self.connectors:
            if c.transaction is not None:
                self._stop_transaction(c, reason, now)

    # ------------------------------------------------------------------ reset

    def _reboot(self, now: float) -> None:
        """The charger restarts: the websocket closes, a new BootNotification follows."""
        self.reboot_deadline = None
        for c in self.connectors:
            c.intent = None
            c.awaiting_authorization = None
            c.finishing = False
            c.reported = None
        self.registration = None
        self.outbox.clear_normal("charger restarted")
        self._effects.append(Effect.REBOOT)
        self._emit(EventKind.REBOOTED, 0)
        for c in self.connectors:
            self._refresh(c, now)

    def hard_reset(self, now: float) -> None:
        """Reference §3.1 Reset: restart at once; the running transaction's data is lost."""
        for c in self.connectors:
            tx = c.transaction
            if tx is None:
                continue
            # The EV keeps what it got, even though the charger forgets the transaction.
            added = c.meter.set_current(now, 0.0, phases=c.ev.phases if c.ev else None)
            if c.ev is not None:
                c.ev.delivered_wh += added
            c.transaction = None
            c.next_sample_at = None
            c.ev_suspended = c.evse_suspended = False
            tx.stop_reason = StopReason.HARD_RESET
            self.lost_transactions.append(tx)
            self.outbox.drop_where(
                _belongs_to(tx),
                "hard reset loses the running transaction (reference §3.1)",
                in_flight=True,
            )
        self._reboot(now)

    def soft_reset(self, now: float) -> None:
        """Reference §3.1 Reset: stop the transaction, then restart."""
        for c in self.connectors:
            if c.transaction is not None:
                self._stop_transaction(c, StopReason.SOFT_RESET, now)
        # Give the StopTransaction a chance to reach the CSMS before the restart;
        # it stays queued across the restart anyway.
        self.reboot_deadline = now + SOFT_RESET_FLUSH_SECONDS

    # ------------------------------------------------------------------ CSMS calls

    def handle_call(self, action: str, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """Answer a schema-valid CSMS-initiated CALL; raises RemoteProtocolError for a CALLERROR."""
        self.last_activity = now
        if self.registration == "Rejected":
            raise RemoteProtocolError(ErrorCode.SECURITY_ERROR, "BootNotification was Rejected")
        profile = PROFILE_OF_ACTION.get(action)
        if profile is None:
            if action in SECURITY_EXTENSION_ACTIONS:
                raise RemoteProtocolError(
                    ErrorCode.NOT_SUPPORTED, f"{action} is not supported by this charger"
                )
            raise RemoteProtocolError(ErrorCode.NOT_IMPLEMENTED, f"unknown action {action}")
        if profile not in self.config.profiles:
            raise RemoteProtocolError(
                ErrorCode.NOT_SUPPORTED, f"feature profile {profile} is not supported"
            )
        handler = getattr(self, f"_on_{action}", None)
        if handler is None:
            raise RemoteProtocolError(ErrorCode.NOT_SUPPORTED, f"{action} is not emulated yet")
        result: dict[str, Any] = handler(payload, now)
        return result

    def _connector_or_none(self, connector_id: int) -> Connector | None:
        if 0 <= connector_id < len(self.connectors):
            return self.connectors[connector_id]
        return None

    def _on_ChangeAvailability(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        connector_id = payload["connectorId"]
        operative = payload["type"] == "Operative"
        if self._connector_or_none(connector_id) is None:
            return {"status": "Rejected"}
        targets = self.connectors if connector_id == 0 else [self.connectors[connector_id]]
        scheduled = False
        for c in targets:
            # OCPP 1.6 §4.9 has no Preparing -> Unavailable (no B8), so like a running
            # transaction a session being prepared makes the change Scheduled; it applies
            # once the connector is free (as EVerest libocpp does).
            busy = c.transaction is not None or (c.id > 0 and c.derive_status() is Status.PREPARING)
            if busy and not operative:
                c.pending_operative = operative
                scheduled = True
            else:
                self._set_operative(c, operative)
        for c in targets:
            self._refresh(c, now)
        return {"status": "Scheduled" if scheduled else "Accepted"}

    @staticmethod
    def _set_operative(c: Connector, operative: bool) -> None:
        c.operative = operative
        c.pending_operative = None
        if not operative:
            # Out of service ends the session's leftovers: an authorized start waiting
            # for the cable, and Finishing (§4.9 has no Unavailable -> Finishing; with
            # the cable still in, Operative again is Preparing, H2).
            c.intent = None
            c.finishing = False

    def _on_ChangeConfiguration(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        key, value = payload["key"], payload["value"]
        status = self.config.change(key, value)
        if status is ConfigurationStatus.ACCEPTED:
            self._apply_configuration(key, now)
        return {"status": status.value}

    def _apply_configuration(self, key: str, now: float) -> None:
        """Configuration changes apply live (reference §3.2, OCPP 1.6 §5.3)."""
        if key == "WebSocketPingInterval" and self.online:
            interval = self.config.get_int(key)
            self.next_ping_at = now + interval if interval else None
        elif key == "MeterValueSampleInterval":
            interval = self.config.get_int(key)
            for c in self.connectors:
                if c.transaction is not None:
                    c.next_sample_at = now + interval if interval else None
        elif key == "ClockAlignedDataInterval":
            self._schedule_aligned(now)
        elif key == "AuthorizationCacheEnabled" and not self.config.get_bool(key):
            self.auth.clear_cache()

    def _on_ClearCache(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        self.auth.clear_cache()
        return {"status": "Accepted"}

    def _on_DataTransfer(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        if payload["vendorId"] != VENDOR_ID:
            return {"status": "UnknownVendorId"}
        if payload.get("messageId") != "echo":
            return {"status": "UnknownMessageId"}
        answer: dict[str, Any] = {"status": "Accepted"}
        if "data" in payload:
            answer["data"] = payload["data"]
        return answer

    def _on_GetConfiguration(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        keys = payload.get("key")
        limit = self.config.get_int("GetConfigurationMaxKeys")
        if keys is not None and len(keys) > limit:
            raise RemoteProtocolError(
                ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
                f"{len(keys)} keys requested; GetConfigurationMaxKeys is {limit}",
            )
        known, unknown = self.config.get_configuration(keys or None)
        result: dict[str, Any] = {"configurationKey": [k.to_json() for k in known]}
        if unknown:
            result["unknownKey"] = unknown
        return result

    def _on_RemoteStartTransaction(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        connector_id = payload.get("connectorId", 1)
        id_tag = payload["idTag"]
        c = self._connector_or_none(connector_id)
        if c is None or connector_id == 0 or not c.free or c.awaiting_authorization is not None:
            return {"status": "Rejected"}
        if c.reserved_for is not None and c.reserved_for != id_tag:
            return {"status": "Rejected"}
        self._emit(EventKind.REMOTE_START_ACCEPTED, c.id, id_tag)
        if self.config.get_bool("AuthorizeRemoteTxRequests"):
            self._authorize(c, id_tag, now, remote=True)
        else:
            self._authorized(c, id_tag, now, remote=True)
        return {"status": "Accepted"}

    def _on_RemoteStopTransaction(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        wanted = payload["transactionId"]
        for c in self.connectors:
            tx = c.transaction
            if tx is not None and tx.transaction_id == wanted:
                self._stop_transaction(c, StopReason.REMOTE, now)
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _on_Reset(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        # The answer goes out first; the restart happens on the next tick.
        if payload["type"] == "Hard":
            self.reboot_deadline = now
            self._hard_reset_pending = True
        else:
            self.soft_reset(now)
        return {"status": "Accepted"}

    def _on_UnlockConnector(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        connector_id = payload["connectorId"]
        c = self._connector_or_none(connector_id)
        if c is None or connector_id == 0:
            return {"status": "NotSupported"}
        if self.model.variant is Variant.CABLE:
            # Reference §3.1: "If send the message to cable variants, the charger will do
            # nothing."  NotSupported is the OCPP answer that says exactly that.
            return {"status": "NotSupported"}
        if c.transaction is not None:
            self._stop_transaction(c, StopReason.UNLOCK_COMMAND, now)
        c.locked = False
        return {"status": "Unlocked"}

    def _on_TriggerMessage(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        requested = payload["requestedMessage"]
        connector_id = payload.get("connectorId")
        if connector_id is not None and self._connector_or_none(connector_id) is None:
            return {"status": "Rejected"}
        if requested == "BootNotification":
            self._send_boot(now)
        elif requested == "Heartbeat":
            self._enqueue("Heartbeat", {})
        elif requested == "StatusNotification":
            targets = self.connectors if connector_id is None else [self.connectors[connector_id]]
            for c in targets:
                c.reported = None
                self._refresh(c, now)
        elif requested == "MeterValues":
            targets = self.connectors[1:] if not connector_id else [self.connectors[connector_id]]
            for c in targets:
                self._update_draw(c, now)
                self._meter_values(
                    c, self.config.get_list("MeterValuesSampledData"), "Trigger", now
                )
        elif requested == "DiagnosticsStatusNotification":
            self._enqueue("DiagnosticsStatusNotification", {"status": "Idle"})
        elif requested == "FirmwareStatusNotification":
            self._enqueue("FirmwareStatusNotification", {"status": "Idle"})
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}


def _sv(
    value: str,
    context: str,
    measurand: str,
    unit: str,
    *,
    phase: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    sampled: dict[str, Any] = {
        "value": value,
        "context": context,
        "measurand": measurand,
        "unit": unit,
    }
    if phase is not None:
        sampled["phase"] = phase
    if location is not None:
        sampled["location"] = location
    return sampled


def _belongs_to(tx: Transaction) -> Callable[[Message], bool]:
    return lambda message: message.tx is tx
