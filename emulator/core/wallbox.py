"""The virtual wallbox: OCPP 1.6 Core behaviour of the reference AC charger, sans I/O.

Feed it what happened (``connected``, ``handle_call``, ``handle_result``,
``handle_error``, driver actions such as ``plug_in``), each with the current time;
drain what it wants to do (``next_call``, ``take_effects``, ``take_events``) and
wake it at ``next_deadline()`` with ``tick(now)``.  It never reads a clock, opens a
socket or sleeps, so every rule below is tested with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

import numpy as np

from emulator.core.authorization import (
    AuthorizationStatus,
    Authorizer,
    Decision,
    IdTagInfo,
    UpdateStatus,
    same_tag,
)
from emulator.core.configuration import Configuration, ConfigurationStatus
from emulator.core.connector import Connector, Intent
from emulator.core.firmware import (
    CancelTransfer,
    FirmwareManagement,
    FtpDownload,
    FtpUpload,
    TransferEffect,
)
from emulator.core.metering import Ev, Meter
from emulator.core.model import ChargerModel, Variant
from emulator.core.outbox import Message, Outbox, OutgoingCall
from emulator.core.reservation import Admission, Reservation, Reservations
from emulator.core.rng import deferred
from emulator.core.smart_charging import (
    Capabilities,
    ConnectorState,
    Purpose,
    RateUnit,
    Site,
    SmartCharging,
    capabilities,
)
from emulator.core.status import Status, check_transition
from emulator.core.transaction import StopReason, Transaction
from emulator.protocol.errors import ErrorCode, RemoteProtocolError
from emulator.protocol.timefmt import format_timestamp, parse_timestamp

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
MAX_TRANSACTION_DATA = 100
PHYSICS_STEP = 60.0  # seconds between EV re-reads when MeterValueSampleInterval is 0
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


WallboxEffect = Effect | FtpUpload | FtpDownload | CancelTransfer
"""What ``take_effects`` returns: the members above, and the file transfers of Firmware
Management (frozen dataclasses, see emulator.core.firmware and ``take_transfers``)."""


class Wallbox:
    """One emulated charger with its connectors (reference: one connector, id 1)."""

    # Slots: past 30 attributes an instance dict stops sharing its keys (~1.6 KiB each).
    __slots__ = (
        "__weakref__",  # the metrics collector keeps weak references to wallboxes
        "_effects",
        "_events",
        "_hard_reset_pending",
        "_next_reboot_delay",
        "_tx_counter",
        "aligned_register",
        "auth",
        "boot_on_reconnect",
        "boot_retry_at",
        "charge_point_id",
        "config",
        "connectors",
        "firmware",
        "firmware_version",
        "last_activity",
        "lost_transactions",
        "model",
        "next_aligned_at",
        "next_ping_at",
        "online",
        "outbox",
        "reboot_at",
        "reboot_deadline",
        "reboot_seconds",
        "registration",
        "reservations",
        "rng",
        "smart_charging",
        "strict",
        "timeouts",
        "transactions",
    )

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
        self._next_reboot_delay: float | None = None
        self.config = Configuration(
            profiles=model.profiles,
            overrides=model.configuration,
            security_profile=model.security_profile,
        )
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
                    max_current=model.max_current,
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
        # Lists, not deques: drained whole, and an empty list is 56 bytes, a deque ~0.8 KiB.
        self._effects: list[WallboxEffect] = []
        self._events: list[Event] = []
        # Firmware Management (GetDiagnostics, UpdateFirmware): see the section below.
        self.firmware = FirmwareManagement(
            charge_point_id=charge_point_id,
            statuses=model.firmware_statuses,
            download_failure_share=model.firmware_download_failure_share,
            install_failure_share=model.firmware_install_failure_share,
            install_seconds=model.firmware_install_seconds,
            # Its own stream (the wallbox's draws stay as they were), built on first use.
            rng=deferred(partial(_spawn_one, rng)),
            notify=self._firmware_notify,
            request=self._effects.append,
            restart=self._firmware_restart,
        )
        self.firmware.record(now, f"power on, firmware {self.firmware_version}")
        # Reservation (ReserveNow, CancelReservation): see the section below.
        self.reservations = Reservations()
        # Smart Charging (charging profiles, composite schedule): see the section below.
        self.smart_charging = SmartCharging()
        self._schedule_aligned(now)
        for connector in self.connectors:
            self._refresh(connector, now)

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> None:
        self.online = True
        self._log(now, "websocket connected")
        self.last_activity = now
        interval = self.config.get_int("WebSocketPingInterval")
        self.next_ping_at = now + interval if interval else None
        if self.registration != "Accepted" or self.boot_on_reconnect:
            self.registration = None
            self._send_boot(now)

    def disconnected(self, now: float) -> None:
        self.online = False
        self._log(now, "websocket disconnected")
        self.next_ping_at = None
        lost: list[Message] = []
        failed = self.outbox.connection_lost(now)
        if failed is not None:
            self.outbox.ledger.drop(f"{failed.action}: connection lost")
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
    def authorization_key(self) -> str | None:
        """The Basic-auth password set by ChangeConfiguration AuthorizationKey, if any."""
        if not self.config.knows("AuthorizationKey"):
            return None
        return self.config.get("AuthorizationKey") or None

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

    def take_effects(self) -> list[WallboxEffect]:
        effects = self._effects.copy()
        self._effects.clear()  # the same list: the firmware holds its bound append
        return effects

    def take_events(self) -> list[Event]:
        events = self._events.copy()
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
        triggered: bool = False,
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
                triggered=triggered,
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
        self._log(now, f"error: {message.action} answered CALLERROR {code}")
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
        expiry = self.reservations.next_expiry()
        if expiry is not None:
            times.append(expiry)  # a reservation ends at its expiryDate (OCPP 1.6 §5.13)
        if self.reboot_deadline is not None:
            if self.outbox.transaction_backlog == 0:
                # A reset restarts as soon as no transaction message waits (see tick): now.
                times.append(min(self.reboot_deadline, self.last_activity))
            else:
                times.append(self.reboot_deadline)
        if self.firmware.active:  # Firmware Management timers (section below)
            firmware_at = self.firmware.next_deadline(busy=self._transaction_running())
            if firmware_at is not None:
                times.append(firmware_at)
        limit_change_at = self.smart_charging.next_change_at  # a schedule period boundary
        if limit_change_at is not None:
            times.append(limit_change_at)
        return min(times) if times else None

    def tick(self, now: float) -> None:
        """Do whatever is due at ``now``."""
        expired = self.outbox.expired(now) if self.online else None
        if expired is not None:
            self._log(now, f"error: {expired.action} unanswered")
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
        limit_change_at = self.smart_charging.next_change_at
        if limit_change_at is not None and now >= limit_change_at:
            self._smart_reevaluate(now)  # a charging schedule period starts or ends now
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
        if self.reservations.expire(now):
            self._reservations_changed(now)
        if self.firmware.active:  # Firmware Management timers (section below)
            self.firmware.tick(now, busy=self._transaction_running())
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
        self._log(now, f"boot {status}")
        if status == "Accepted":
            if interval > 0:
                # OCPP 1.6 §4.2.1: adjust the heartbeat interval to the one in the response.
                self.config.change("HeartbeatInterval", str(interval))
            self.last_activity = now
            self.boot_retry_at = None  # e.g. a triggered boot was Accepted while Pending
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
        self._refresh_one(c, now, coalesce=coalesce)
        if c.id and self.connectors[0].pending_operative is not None:
            self._station_change_due(now)

    def _station_change_due(self, now: float) -> None:
        """A Scheduled ChangeAvailability of connector 0 takes effect once every connector's
        own scheduled change has (their transactions and sessions ended), not before: the
        charge point reports Unavailable when it is, after the connectors."""
        station = self.connectors[0]
        pending = station.pending_operative
        if pending is None or any(c.pending_operative is not None for c in self.connectors[1:]):
            return
        self._set_operative(station, pending)
        self._refresh_one(station, now)

    def _refresh_one(self, c: Connector, now: float, *, coalesce: bool = False) -> None:
        if (
            c.pending_operative is not None
            and c.id > 0
            and c.transaction is None
            and c.derive_status() is not Status.PREPARING
        ):
            self._set_operative(c, c.pending_operative)  # a Scheduled change falls due
        if self.reservations.active:
            self._sync_reservations(c, now)  # which connectors are held (Reservation section)
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
        self._log(now, f"connector {c.id} {status} {c.error_code}")
        self._enqueue(
            "StatusNotification",
            _status_payload(c, status, now),
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

    def _offered_current(self, c: Connector, now: float) -> float:
        """Current.Offered: the lowest of the charger's maximum and the charging profiles'
        limit at ``now`` (OCPP 1.6 §3.13; see the Smart Charging section)."""
        if c.id == 0 or self.smart_charging.idle:
            self.smart_charging.next_change_by_connector.pop(c.id, None)
            return float(self.model.max_current)
        return self._smart_offered(c, now)

    def _update_draw(self, c: Connector, now: float) -> None:
        """Set the EV's draw from the facts at ``now`` (integrating what came before)."""
        tx = c.transaction
        ev = c.ev
        phases = ev.phases if ev else None
        if ev is not None and tx is not None:
            added = c.meter.advance(now, phases=phases)
            ev.delivered_wh += added
        offered = self._offered_current(c, now)
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
                current = min(offered, ev.current_wanted())
        c.meter.set_current(now, current, phases=phases)
        if current > 0 and ev is not None:
            self._last_stretch(c, ev, now)
        self._refresh(c, now)

    def _last_stretch(self, c: Connector, ev: Ev, now: float) -> None:
        """Near full, draw just what is missing until the next re-read (the CV phase).

        The EV's draw changes only when it is re-read, so without this it would overshoot
        its target by up to one sample interval of energy.
        """
        if c.next_sample_at is None or not math.isfinite(ev.energy_wanted_wh):
            return
        step = c.next_sample_at - now
        remaining = ev.energy_wanted_wh - ev.delivered_wh
        for _ in range(2):  # power is nearly proportional to current: one correction suffices
            energy = c.meter.power_w() * step / 3600.0
            if step <= 0 or energy <= remaining:
                return
            c.meter.set_current(now, c.meter.current_a * remaining / energy)

    def _ev_full_at(self, c: Connector) -> float | None:
        """When MaxEnergyOnInvalidId is reached: the charger cuts off precisely there.

        The EV's own state (taper, full) is re-read only at readings and physics steps,
        like a car's charge controller, so every power change the EV makes happens at an
        instant whose reading the CSMS receives.
        """
        tx = c.transaction
        if c.ev is None or tx is None or tx.energy_cap_wh is None or c.meter.current_a <= 0:
            return None
        power = c.meter.power_w()
        cap_remaining = tx.meter_start + tx.energy_cap_wh - c.meter.energy_wh + 1e-6
        return c.meter.last_update + max(0.0, cap_remaining) * 3600.0 / power

    def _sampled_values(
        self, c: Connector, measurands: list[str], context: str, now: float
    ) -> list[dict[str, Any]]:
        """One reading of ``measurands`` (reference §3.1 MeterValues, OCPP 1.6 §7.43).

        Callers re-read the meter first (:meth:`_read`), so the reported power is the
        power of the next interval: the register advances by exactly that power until
        something changes.
        """
        meter = c.meter
        values: list[dict[str, Any]] = []
        for measurand in measurands:
            if measurand == "Energy.Active.Import.Register":
                values.append(_sv(str(meter.register_wh()), context, measurand, "Wh"))
            elif measurand == "Energy.Active.Import.Interval":
                interval_wh = meter.register_wh() - self.aligned_register
                values.append(_sv(str(interval_wh), context, measurand, "Wh"))
            elif measurand == "Power.Active.Import":
                values.append(_sv(f"{meter.power_w():.0f}", context, measurand, "W"))
            elif measurand == "Power.Offered":
                offered_w = meter.active_phases * meter.nominal_voltage * c.offered_a
                values.append(_sv(f"{offered_w:.0f}", context, measurand, "W"))
            elif measurand == "Current.Offered":
                values.append(_sv(f"{c.offered_a:.1f}", context, measurand, "A"))
            elif measurand == "Current.Import":
                for phase, amps in enumerate(meter.phase_currents(), start=1):
                    values.append(_sv(f"{amps:.1f}", context, measurand, "A", phase=f"L{phase}"))
            elif measurand == "Voltage":
                for phase, volts in enumerate(meter.phase_voltages(), start=1):
                    values.append(_sv(f"{volts:.1f}", context, measurand, "V", phase=f"L{phase}-N"))
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
        triggered = context == "Trigger"  # may go out while Pending (OCPP 1.6 §4.2.1)
        if tx is not None and not triggered:
            payload["transactionId"] = tx.transaction_id or 0
            tx.samples_sent += 1
            self._enqueue("MeterValues", payload, transactional=True, tx=tx)
        elif tx is not None and tx.transaction_id is not None:
            # A triggered reading is an answer to the CSMS, not transaction data: best
            # effort, so a CSMS flooding TriggerMessage cannot grow the persistent queue.
            payload["transactionId"] = tx.transaction_id
            self._enqueue("MeterValues", payload, triggered=True)
        else:
            # Without a transaction a reading is best-effort: while offline only the newest
            # per connector waits, instead of a day of 15-s readings bursting at reconnect.
            self._enqueue(
                "MeterValues",
                payload,
                coalesce_key=None if self.online and self.accepted else ("MeterValues", c.id),
                triggered=triggered,
            )

    def _send_sampled(self, c: Connector, now: float) -> None:
        interval = self.config.get_int("MeterValueSampleInterval")
        measurands = self.config.get_list("MeterValuesSampledData")
        if c.transaction is None:
            c.next_sample_at = None
            return
        step = interval or PHYSICS_STEP  # sampling off: the EV is still re-read each minute
        assert c.next_sample_at is not None
        # Samples stay on the grid that started with the transaction (reference §3.2.1).
        c.next_sample_at += step * max(1, math.floor((now - c.next_sample_at) / step) + 1)
        self._read(c, now)
        if interval:
            if measurands:
                self._meter_values(c, measurands, "Sample.Periodic", now)
            self._record_stop_data(c, "StopTxnSampledData", "Sample.Periodic", now)

    def _read(self, c: Connector, now: float) -> None:
        """A reading instant: new phase voltages, then the EV re-decides its draw.

        Every change of power happens at such an instant (or at an event), so the
        readings the CSMS receives integrate exactly to the energy register.
        """
        added = c.meter.advance(now)  # energy up to now at the old power, credited first
        if c.ev is not None and c.transaction is not None:
            c.ev.delivered_wh += added
        c.meter.sample_voltage(now)
        self._update_draw(c, now)

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
        if (self.accepted and measurands) or c.transaction is not None:
            self._read(c, now)
        if self.accepted and measurands:
            self._meter_values(c, measurands, "Sample.Clock", now)
        self._record_stop_data(c, "StopTxnAlignedData", "Sample.Clock", now)
        self.aligned_register = c.meter.register_wh()

    def _record_stop_data(self, c: Connector, key: str, context: str, now: float) -> None:
        """Keep a reading for StopTransaction's transactionData (OCPP 1.6 §4.10, §9.1.28).

        At most MAX_TRANSACTION_DATA readings are kept (the first, Transaction.Begin,
        and the newest), so a week-long session cannot grow a charger's memory.
        """
        tx = c.transaction
        if tx is None:
            return
        measurands = self.config.get_list(key)
        if not measurands:
            return
        reading = {
            "timestamp": format_timestamp(now),
            "sampledValue": self._sampled_values(c, measurands, context, now),
        }
        data = tx.transaction_data
        if len(data) >= MAX_TRANSACTION_DATA:
            del data[1]
        data.append(reading)

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
            # IdToken is a CiString20Type: the card that started it stops it, in any case;
            # so does another card of the same (case-insensitive) parentIdTag.
            parent = self.auth.parent_of(id_tag)
            if same_tag(id_tag, tx.id_tag) or (
                parent is not None and same_tag(parent, self.auth.parent_of(tx.id_tag))
            ):
                self._stop_transaction(c, StopReason.LOCAL, now, id_tag=id_tag)
            return
        restart = c.finishing and c.plugged and c.fault is None and c.operative  # §4.9 F2
        if not (c.free or restart) or c.awaiting_authorization is not None:
            return
        if self._reservation_refuses(c, id_tag, self._parent_known(id_tag)):
            self._emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
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
                info = IdTagInfo.from_answer(payload["idTagInfo"])
                self.auth.learn(id_tag, info)
                self._check_list_conflict(id_tag, info, at)
                if info.valid_at(at) is AuthorizationStatus.ACCEPTED:
                    parent = info.parent_id_tag or ""  # known now, even if it has none
                    self._authorized(c, id_tag, at, remote=remote, parent=parent)
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

    def _authorized(
        self, c: Connector, id_tag: str, now: float, *, remote: bool, parent: str | None = None
    ) -> None:
        if c.transaction is not None or not c.operative or c.fault is not None:
            return
        parent = self._parent_known(id_tag) if parent is None else parent
        if self._reservation_refuses(c, id_tag, parent, asked=True):
            self._emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
            self._refresh(c, now)
            return
        claimed = self.reservations.claim(c.id, id_tag, parent)
        reservation_id = claimed.reservation_id if claimed is not None else None
        self._emit(EventKind.AUTHORIZED, c.id, id_tag)
        timeout = self.config.get_int("ConnectionTimeOut")
        intent = Intent(
            id_tag=id_tag, deadline=now + timeout, remote=remote, reservation_id=reservation_id
        )
        if c.plugged:
            if c.finishing:  # F2: Finishing -> Preparing -> Charging, never F -> C
                c.finishing = False
                self._refresh(c, now)
            elif claimed is not None:  # G2 then B3: Reserved -> Preparing -> Charging
                c.intent = intent
                self._refresh(c, now)
                c.intent = None
            self._start_transaction(c, id_tag, now, reservation_id=reservation_id)
            return
        c.intent = intent
        self._refresh(c, now)

    def _start_transaction(
        self, c: Connector, id_tag: str, now: float, *, reservation_id: int | None = None
    ) -> None:
        # The transaction ends its reservation; the id tells the CSMS so (OCPP 1.6 §5.13).
        reservation_id = self.reservations.consume(reservation_id)
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
            info = IdTagInfo.from_answer(result["idTagInfo"])
            tx.id_tag_status = info.status.value
            self.auth.learn(id_tag, info)
            self._check_list_conflict(id_tag, info, at)
            if info.status is not AuthorizationStatus.ACCEPTED and c.transaction is tx:
                if self.config.get_bool("StopTransactionOnInvalidId"):
                    self._stop_transaction(c, StopReason.DE_AUTHORIZED, at)
                else:
                    tx.energy_cap_wh = float(self.config.get_int("MaxEnergyOnInvalidId"))
                    self._update_draw(c, at)

        self._enqueue(
            "StartTransaction",
            payload,
            transactional=True,
            tx=tx,
            on_result=on_result,
            on_failure=_note_drop(tx, "StartTransaction"),
        )
        interval = self.config.get_int("MeterValueSampleInterval")
        c.next_sample_at = now + (interval or PHYSICS_STEP)
        self._emit(EventKind.TRANSACTION_STARTED, c.id, id_tag)
        self._log(now, f"transaction start connector {c.id} meter {tx.meter_start} Wh")
        self._update_draw(c, now)
        self._record_stop_data(c, "StopTxnSampledData", "Transaction.Begin", now)

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
        self._record_stop_data(c, "StopTxnSampledData", "Transaction.End", now)
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
        if tx.transaction_data:
            payload["transactionData"] = tx.transaction_data

        def on_result(result: dict[str, Any], at: float) -> None:
            tx.stop_acknowledged = True
            info = result.get("idTagInfo")
            if info is not None and id_tag is not None:
                self.auth.learn(id_tag, IdTagInfo.from_answer(info))

        self._enqueue(
            "StopTransaction",
            payload,
            transactional=True,
            tx=tx,
            on_result=on_result,
            on_failure=_note_drop(tx, "StopTransaction"),
        )
        self._emit(EventKind.TRANSACTION_STOPPED, c.id, reason.value)
        self._log(now, f"transaction stop connector {c.id} {reason.value} meter {tx.meter_stop} Wh")
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
        self._firmware_restarted(now)

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

    def reboot(self, now: float) -> None:
        """The charger restarts on its own (watchdog, update): transactions end with Reboot."""
        self.stop_all_transactions(now, StopReason.REBOOT)
        self._reboot(now)

    def power_loss(self, now: float, *, outage: float) -> None:
        """Power is gone for ``outage`` seconds (fault injection).

        The running transaction ends with reason PowerLoss at the moment of the loss; its
        StopTransaction waits in the persistent queue and goes out after the restart
        (OCPP 1.6 §4.10), with the meter value the charger had when the power went.
        """
        self.stop_all_transactions(now, StopReason.POWER_LOSS)
        self._next_reboot_delay = outage
        self._reboot(now)

    def take_reboot_delay(self) -> float:
        """Seconds until the restarted charger is back on the network (driver's side)."""
        delay = self._next_reboot_delay
        self._next_reboot_delay = None
        return self.reboot_seconds if delay is None else delay

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
        self._log(now, f"csms {action}")
        result: dict[str, Any] = handler(payload, now)
        return result

    def answer_schema_violation(
        self, action: str, violation: RemoteProtocolError
    ) -> dict[str, Any] | None:
        """The charger's own answer to a schema violation, where it has one (else CALLERROR).

        Reference §3.1 SendLocalList: "each ID tag with max 20 characters" is one of the
        list limits the charger answers with ``Failed``, like 5 tags per message and 20 in
        total, rather than refusing the frame.
        """
        field = str(violation.details.get("field", ""))
        if (
            action == "SendLocalList"
            and violation.details.get("rule") == "maxLength"
            and field.endswith(("idTag", "parentIdTag"))
            and "LocalAuthListManagement" in self.config.profiles
            and self.config.get_bool("LocalAuthListEnabled")
        ):
            return {"status": "Failed"}
        return None

    def _connector_or_none(self, connector_id: int) -> Connector | None:
        if 0 <= connector_id < len(self.connectors):
            return self.connectors[connector_id]
        return None

    def _on_ChangeAvailability(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.2.  Inoperative while a connector is in use is Scheduled: it takes
        effect when the transaction (or the session being prepared) ends, connector 0's
        after every connector's.  A connector cannot be Operative while the charge point
        (connector 0) is, or is scheduled to become, Inoperative: that change is Rejected
        and the connector stays Unavailable."""
        connector_id = payload["connectorId"]
        operative = payload["type"] == "Operative"
        if self._connector_or_none(connector_id) is None:
            return {"status": "Rejected"}
        station = self.connectors[0]
        if (
            connector_id > 0
            and operative
            and (not station.operative or station.pending_operative is False)
        ):
            return {"status": "Rejected"}
        targets = self.connectors if connector_id == 0 else [self.connectors[connector_id]]
        scheduled = False
        for c in targets:
            if c.id == 0:
                continue  # connector 0 follows its connectors (below)
            # OCPP 1.6 §4.9 has no Preparing -> Unavailable (no B8), so like a running
            # transaction a session being prepared makes the change Scheduled; it applies
            # once the connector is free (as EVerest libocpp does).
            busy = c.transaction is not None or c.derive_status() is Status.PREPARING
            if busy and not operative:
                c.pending_operative = operative
                scheduled = True
            else:
                self._set_operative(c, operative)
        if connector_id == 0:
            if scheduled:
                station.pending_operative = operative  # _station_change_due applies it
            else:
                self._set_operative(station, operative)
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
                    c.next_sample_at = now + (interval or PHYSICS_STEP)
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
        if not self.accepted:
            # OCPP 1.6 §4.2.1: "While in pending state, the following Central System
            # initiated messages are not allowed: RemoteStartTransaction.req and
            # RemoteStopTransaction.req"; nor could the StartTransaction.req be sent.
            return {"status": "Rejected"}
        c = self._connector_or_none(connector_id)
        if c is None or connector_id == 0 or not c.free or c.awaiting_authorization is not None:
            return {"status": "Rejected"}
        # On a reserved connector a tag whose parent is unknown is accepted only if the
        # Authorize.req that AuthorizeRemoteTxRequests sends can tell (OCPP 1.6 §5.13).
        asks = self.config.get_bool("AuthorizeRemoteTxRequests")
        if self._reservation_refuses(c, id_tag, self._parent_known(id_tag), asked=not asks):
            return {"status": "Rejected"}
        if "chargingProfile" in payload and not self._smart_remote_start(c, id_tag, payload, now):
            return {"status": "Rejected"}  # its TxProfile breaks the charger's limits (§5.11)
        self._emit(EventKind.REMOTE_START_ACCEPTED, c.id, id_tag)
        if self.config.get_bool("AuthorizeRemoteTxRequests"):
            self._authorize(c, id_tag, now, remote=True)
        else:
            self._authorized(c, id_tag, now, remote=True)
        return {"status": "Accepted"}

    def _on_RemoteStopTransaction(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        if not self.accepted:
            return {"status": "Rejected"}  # not allowed while Pending (OCPP 1.6 §4.2.1)
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

    # ------------------------------------------------------ local list, reservations, triggers
    # GetLocalListVersion / SendLocalList, ReserveNow / CancelReservation and TriggerMessage
    # (the optional profiles).  The logic is emulator.core.authorization (the list) and
    # emulator.core.reservation; these methods connect it to the wallbox.

    def _on_GetLocalListVersion(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.10: 0 for an empty list, -1 while LocalAuthListEnabled is false."""
        return {"listVersion": self.auth.list_version()}

    def _on_SendLocalList(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.15 within the reference limits (authorization.Authorizer.update_list)."""
        status = self.auth.update_list(
            update_type=payload["updateType"],
            version=payload["listVersion"],
            entries=payload.get("localAuthorizationList", []),
        )
        if status is UpdateStatus.ACCEPTED:
            self._log(
                now,
                f"local list {payload['updateType']} version {self.auth.local_list_version}, "
                f"{len(self.auth.local_list)} idTags",
            )
        else:
            self._log(now, f"local list {status}: {self.auth.last_list_failure}")
        return {"status": status.value}

    def _check_list_conflict(self, id_tag: str, info: IdTagInfo, now: float) -> None:
        """OCPP 1.6 §3.5.2: a CSMS answer that contradicts the Local Authorization List is
        reported with a StatusNotification for connector 0, errorCode LocalListConflict."""
        if not self.auth.conflicts(id_tag, info, now):
            return
        station = self.connectors[0]
        self._log(now, f"local list conflict for {id_tag}")
        self._enqueue(
            "StatusNotification",
            {
                "connectorId": 0,
                "errorCode": "LocalListConflict",
                "status": (station.reported or Status.AVAILABLE).value,
                "timestamp": format_timestamp(now),
            },
        )

    def _on_ReserveNow(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.13; the answers are worked out in emulator.core.reservation."""
        try:
            expiry = parse_timestamp(payload["expiryDate"])
        except ValueError:
            expiry = -math.inf  # unreadable (the schema checks the format): refused below
        if expiry <= now:
            # A reservation that would end before it began holds nothing: refused.
            return {"status": "Rejected"}
        request = Reservation(
            reservation_id=payload["reservationId"],
            connector_id=payload["connectorId"],
            id_tag=payload["idTag"],
            parent_id_tag=payload.get("parentIdTag"),
            expiry=expiry,
        )
        zero_supported = self.config.knows("ReserveConnectorZeroSupported") and (
            self.config.get_bool("ReserveConnectorZeroSupported")
        )
        status = self.reservations.reserve(request, self.connectors, zero_supported=zero_supported)
        self._log(
            now,
            f"reservation {request.reservation_id} connector {request.connector_id} "
            f"for {request.id_tag}: {status}",
        )
        self._reservations_changed(now)
        return {"status": status.value}

    def _on_CancelReservation(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.1: Accepted for a reservation this charger has, else Rejected."""
        if not self.reservations.cancel(payload["reservationId"]):
            return {"status": "Rejected"}
        self._log(now, f"reservation {payload['reservationId']} cancelled")
        self._reservations_changed(now)
        return {"status": "Accepted"}

    def _reservations_changed(self, now: float) -> None:
        """Re-derive every connector: a reservation began or ended (Reserved and back)."""
        for c in self.connectors[1:]:
            self._refresh(c, now)

    def _sync_reservations(self, c: Connector, now: float) -> None:
        """Called by ``_refresh``: update which connectors are held; end reservations whose
        connector became Faulted or Unavailable; refresh the other connectors affected."""
        for cid in self.reservations.assign(self.connectors):
            if cid != c.id:
                self._refresh(self.connectors[cid], now)

    def _parent_known(self, id_tag: str) -> str | None:
        """The idTag's parentIdTag as the list or cache knows it ("" for none), None if the
        tag is unknown here (an Authorize.conf would tell)."""
        info = self.auth.info_of(id_tag)
        if info is None:
            return None
        return info.parent_id_tag or ""

    def _reservation_refuses(
        self, c: Connector, id_tag: str, parent: str | None, *, asked: bool = False
    ) -> bool:
        """A reservation holds ``c`` for someone else (OCPP 1.6 §5.13).  With ``asked``, a
        tag whose parent is still unknown counts as someone else: nobody will ask now."""
        admission = self.reservations.admission(c.id, id_tag, parent)
        return admission is Admission.NO or (asked and admission is Admission.ASK)

    def _on_TriggerMessage(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        """OCPP 1.6 §5.17; reference §3.1 lists all six MessageTriggers as supported.

        The answer goes out first, then the message (the transport sends a CALLRESULT
        before the next CALL).  A connectorId that does not exist is Rejected; one that
        is not relevant (BootNotification, Heartbeat, the status notifications of Firmware
        Management) is ignored, as §5.17 says.  Without connectorId a StatusNotification
        is sent for connector 0 and every connector, a MeterValues for every connector
        (connectorId 0 too: the charger has no meter of its own besides the connector's).
        While the registration is Pending every trigger is Accepted and its message goes
        out: triggered messages are the ones §4.2.1 lets a Pending charger send ("unless it
        has been instructed by the Central System to do so with a TriggerMessage.req"); the
        outbox lets them (and only them, besides BootNotification) pass.  A message already
        waiting to be sent complies with the request ("MAY be considered as complying") and
        is not doubled.
        """
        requested = payload["requestedMessage"]
        connector_id = payload.get("connectorId")
        if connector_id is not None and self._connector_or_none(connector_id) is None:
            return {"status": "Rejected"}
        if requested in ("DiagnosticsStatusNotification", "FirmwareStatusNotification") and (
            "FirmwareManagement" not in self.config.profiles
        ):
            return {"status": "NotImplemented"}  # a charger model without that profile
        if requested == "BootNotification":
            if not self.outbox.has_queued("BootNotification"):
                self._send_boot(now)
        elif requested == "Heartbeat":
            if not self.outbox.has_queued("Heartbeat"):
                self._enqueue("Heartbeat", {}, triggered=True)
        elif requested == "StatusNotification":
            targets = self.connectors if connector_id is None else [self.connectors[connector_id]]
            for c in targets:
                self._send_current_status(c, now)
        elif requested == "MeterValues":
            # "SHOULD return the most recent measurements for all measurands configured in
            # configuration key MeterValuesSampledData" (§5.17); the register if none is.
            measurands = self.config.get_list("MeterValuesSampledData") or [
                "Energy.Active.Import.Register"
            ]
            targets = self.connectors[1:] if not connector_id else [self.connectors[connector_id]]
            for c in targets:
                self._read(c, now)
                self._meter_values(c, measurands, "Trigger", now)
        elif requested == "DiagnosticsStatusNotification":
            # Idle unless an upload runs (OCPP 1.6 §4.4; emulator.core.firmware).
            status = self.firmware.diagnostics_status()
            self._enqueue("DiagnosticsStatusNotification", {"status": status}, triggered=True)
        elif requested == "FirmwareStatusNotification":
            # Idle unless an update runs (OCPP 1.6 §4.5; emulator.core.firmware).
            status = self.firmware.firmware_status()
            self._enqueue("FirmwareStatusNotification", {"status": status}, triggered=True)
        else:
            return {"status": "NotImplemented"}
        self._log(now, f"trigger {requested} connector {connector_id}")
        return {"status": "Accepted"}

    def _send_current_status(self, c: Connector, now: float) -> None:
        """A StatusNotification of the status last reported, not a change (no event);
        triggered, so it goes out while the registration is Pending too."""
        status = c.reported
        if status is None:
            self._refresh(c, now)
            return
        self._enqueue("StatusNotification", _status_payload(c, status, now), triggered=True)

    # ------------------------------------------------------------------ Smart Charging
    # SetChargingProfile / ClearChargingProfile / GetCompositeSchedule and the live limit
    # (Smart Charging).  The logic is emulator.core.smart_charging; these methods connect
    # it to the wallbox: the charger's limits from its configuration, each connector's
    # transaction and phases, and re-deriving the draw whenever the limit may change.

    def _on_SetChargingProfile(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        connector_id = payload["connectorId"]
        c = self._connector_or_none(connector_id)
        self._smart_sync(now)
        accepted = self.smart_charging.set_profile(
            connector_id,
            payload["csChargingProfiles"],
            now=now,
            caps=self._smart_caps(),
            transaction=c.transaction if c is not None and c.id > 0 else None,
        )
        if not accepted:
            self._log(now, f"SetChargingProfile Rejected: {self.smart_charging.last_rejection}")
            return {"status": "Rejected"}
        self._smart_reevaluate(now)
        return {"status": "Accepted"}

    def _on_ClearChargingProfile(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        self._smart_sync(now)
        purpose = payload.get("chargingProfilePurpose")
        removed = self.smart_charging.clear(
            profile_id=payload.get("id"),
            connector_id=payload.get("connectorId"),
            purpose=None if purpose is None else Purpose(purpose),
            stack_level=payload.get("stackLevel"),
        )
        if not removed:
            return {"status": "Unknown"}  # §7.15: no profile matched
        self._smart_reevaluate(now)
        return {"status": "Accepted"}

    def _on_GetCompositeSchedule(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        connector_id = payload["connectorId"]
        duration = payload["duration"]
        unit = RateUnit(payload.get("chargingRateUnit", RateUnit.A))
        if (
            self._connector_or_none(connector_id) is None  # §5.7: unknown connector
            or duration < 0
            or unit not in self._smart_caps().units
        ):
            return {"status": "Rejected"}
        self._smart_sync(now)
        schedule = self.smart_charging.composite(
            connector_id,
            now=now,
            duration=duration,
            unit=unit,
            site=self._smart_site(),
            connectors={c.id: self._smart_state(c) for c in self.connectors},
            # Bounded like the charger's memory: at most 7 days, and as many periods as
            # a charging schedule may have (reference §3.2.1 ChargingScheduleMaxPeriods).
            max_periods=self.config.get_int("ChargingScheduleMaxPeriods"),
        )
        return schedule.to_json()

    def _smart_remote_start(
        self, c: Connector, id_tag: str, payload: dict[str, Any], now: float
    ) -> bool:
        """RemoteStartTransaction's chargingProfile (§5.11): kept for the transaction this
        start produces; False if it breaks the charger's limits."""
        if "SmartCharging" not in self.config.profiles:
            return True  # §5.11: without Smart Charging the profile "SHOULD be ignored"
        # The start may wait for an Authorize.conf and then for the cable.
        expires_at = now + self.outbox.response_timeout + self.config.get_int("ConnectionTimeOut")
        accepted = self.smart_charging.remote_start(
            c.id,
            id_tag,
            payload["chargingProfile"],
            now=now,
            caps=self._smart_caps(),
            expires_at=expires_at,
        )
        if not accepted:
            self._log(now, f"RemoteStartTransaction profile: {self.smart_charging.last_rejection}")
        return accepted

    def _smart_offered(self, c: Connector, now: float) -> float:
        """The connector's limit at ``now``, and when it may change next (next_deadline)."""
        smart = self.smart_charging
        smart.sync_transaction(c.id, c.transaction, now, self._smart_caps())
        state = self._smart_state(c)
        offered = smart.offered(c.id, now, state=state, site=self._smart_site())
        change_at = smart.next_change(c.id, now, state=state)
        if change_at is None:
            smart.next_change_by_connector.pop(c.id, None)
        else:
            smart.next_change_by_connector[c.id] = change_at
        return offered

    def _smart_reevaluate(self, now: float) -> None:
        """Profiles changed or a schedule period starts: every connector re-derives its draw
        (Current.Offered, the EV's current, SuspendedEVSE) at once."""
        for c in self.connectors[1:]:
            self._update_draw(c, now)

    def _smart_sync(self, now: float) -> None:
        """TxProfiles of ended transactions go; a remote start's profile joins its one."""
        caps = self._smart_caps()
        for c in self.connectors[1:]:
            self.smart_charging.sync_transaction(c.id, c.transaction, now, caps)

    def _smart_state(self, c: Connector) -> ConnectorState:
        phases = self.model.phases if c.ev is None else min(self.model.phases, c.ev.phases)
        return ConnectorState(transaction=c.transaction, phases=phases)

    def _smart_site(self) -> Site:
        return Site(max_current=float(self.model.max_current), voltage=self.model.nominal_voltage)

    def _smart_caps(self) -> Capabilities:
        """The §3.13.5 configuration keys (reference §3.2.1 Smart charging profile)."""
        return capabilities(
            max_stack_level=self.config.get_int("ChargeProfileMaxStackLevel"),
            max_periods=self.config.get_int("ChargingScheduleMaxPeriods"),
            max_installed=self.config.get_int("MaxChargingProfilesInstalled"),
            allowed_units=self.config.get_list("ChargingScheduleAllowedChargingRateUnit"),
            connectors=len(self.connectors) - 1,
        )

    # ------------------------------------------------------------------ Firmware Management
    # GetDiagnostics / UpdateFirmware.  The logic is emulator.core.firmware;
    # these methods connect it to the wallbox: CSMS calls, transfers, notifications, restart.

    def _on_GetDiagnostics(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        return self.firmware.get_diagnostics(payload, now)

    def _on_UpdateFirmware(self, payload: dict[str, Any], now: float) -> dict[str, Any]:
        return self.firmware.update_firmware(payload, now)

    def take_transfers(self) -> list[TransferEffect]:
        """Take only the file-transfer effects (the transport runs them even offline)."""
        effects = self._effects
        if not effects:
            return []
        transfers = [e for e in effects if not isinstance(e, Effect)]
        if transfers:
            kept = [e for e in effects if isinstance(e, Effect)]
            effects.clear()
            effects.extend(kept)
        return transfers

    def transfer_done(self, job_id: int, ok: bool, detail: str, now: float) -> None:
        """The transport finished a transfer the wallbox asked for (``detail`` for the log)."""
        self.firmware.transfer_done(job_id, ok, detail, now)

    def _log(self, now: float, text: str) -> None:
        """A line of the charger's own event log (uploaded by GetDiagnostics)."""
        self.firmware.record(now, text)

    def _transaction_running(self) -> bool:
        return any(c.transaction is not None for c in self.connectors)

    def _firmware_notify(
        self, action: str, payload: dict[str, Any], on_done: Callable[[float], None] | None
    ) -> None:
        if on_done is None:
            self._enqueue(action, payload)
            return
        done = on_done
        self._enqueue(
            action,
            payload,
            on_result=lambda _result, at: done(at),
            on_failure=lambda _reason, at: done(at),
        )

    def _firmware_restart(self, now: float) -> None:
        """Installed: restart like a soft reset (reference §3.1 Reset), new firmware after it.

        No transaction runs when installing starts; one begun since ends with reason
        Reboot.  The restart waits for the transaction messages, as a soft reset does.
        """
        for c in self.connectors:
            if c.transaction is not None:
                self._stop_transaction(c, StopReason.REBOOT, now)
        self.reboot_deadline = now + SOFT_RESET_FLUSH_SECONDS

    def _firmware_restarted(self, now: float) -> None:
        version = self.firmware.restarted(now, self.firmware_version)
        if version is not None:
            self.firmware_version = version  # the next BootNotification carries it


def _spawn_one(rng: np.random.Generator) -> np.random.Generator:
    return rng.spawn(1)[0]


def _sv(
    value: str,
    context: str,
    measurand: str,
    unit: str,
    *,
    phase: str | None = None,
    location: str | None = "Outlet",
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


def _note_drop(tx: Transaction, action: str) -> Callable[[str, float], None]:
    """Remember on the transaction why its message was given up (for the ledger)."""

    def failed(reason: str, now: float) -> None:
        tx.dropped.append(f"{action}: {reason}")

    return failed


def _status_payload(c: Connector, status: Status, now: float) -> dict[str, Any]:
    """StatusNotification.req for ``c`` (errorCode only when Faulted, OCPP 1.6 §4.9)."""
    return {
        "connectorId": c.id,
        "errorCode": c.error_code if status == Status.FAULTED else "NoError",
        "status": status.value,
        "timestamp": format_timestamp(now),
    }
