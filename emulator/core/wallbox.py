"""The virtual wallbox: the reference AC charger's own rules and its physical world.

A :class:`Wallbox` keeps the charger's state (connectors, meter, configuration,
authorization, outbox, reservations, charging profiles, firmware) and its rules: boot
and registration, heartbeats and pings, connector statuses derived from facts, meter
readings, authorization, transactions, resets.  Its physical-world API is what a driver
or the grid does to it: ``plug_in``, ``present_id_tag``, ``ev_pause``, ``unplug``,
``set_fault``, ``reboot``, ``power_loss``.

Its conversation with the CSMS is the charger link's (emulator.core.link: frames in and
out, validation, correlation); the answers to CSMS calls are the handlers of
emulator.core.handlers, found through the one table of emulator.core.csms_calls.  What
the world around must do comes out of :meth:`Wallbox.take_effects` (emulator.core.effects).
Every method takes the current time: it never reads a clock, opens a socket or sleeps,
so every rule is tested with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any, Final

import numpy as np

from emulator.core.authorization import (
    AuthorizationStatus,
    Authorizer,
    Decision,
    IdTagInfo,
    same_tag,
)
from emulator.core.certificates import CertificateStore, CertificateUse
from emulator.core.configuration import Configuration
from emulator.core.connector import Connector, Intent
from emulator.core.effects import Effect, Event, EventKind, Reboot, Reconnect, SendPing
from emulator.core.firmware import TransferFailure
from emulator.core.metering import Ev, Meter, sampled_values
from emulator.core.model import ChargerModel, Variant
from emulator.core.outbox import Message, Outbox, OutgoingCall
from emulator.core.reservation import Reservations
from emulator.core.rng import deferred
from emulator.core.security_profile import ProfileRaise
from emulator.core.security_profile import connect_failed as _profile_connect_failed
from emulator.core.security_profile import connected as _profile_connected
from emulator.core.signed_firmware import SecureFirmwareManagement
from emulator.core.smart_charging import (
    Capabilities,
    ConnectorState,
    Site,
    SmartCharging,
    capabilities,
)
from emulator.core.status import (
    Status,
    TransitionLog,
    TransitionSink,
    allowed,
    check_transition,
    status_payload,
)
from emulator.core.timers import (
    PartTimer,
    Timer,
    earliest,
    earliest_of_parts,
    serve,
    serve_parts,
)
from emulator.core.transaction import StopReason, Transaction
from emulator.protocol.timefmt import format_timestamp

BOOT_RETRY_DEFAULT = 60
SOFT_RESET_FLUSH_SECONDS = 30.0
PHYSICS_STEP = 60.0  # seconds between EV re-reads when MeterValueSampleInterval is 0
REBOOT_SECONDS = 5.0
PONG_TIMEOUT_MAX = 60.0  # seconds a ping may go unanswered at most (WebSocketPingInterval)


class Wallbox:
    """One emulated charger with its connectors (reference: one connector, id 1)."""

    # Slots: past 30 attributes an instance dict stops sharing its keys (~1.6 KiB each).
    __slots__ = (
        "__weakref__",  # the metrics collector keeps weak references to wallboxes
        "_connect_failure",
        "_effects",
        "_tx_counter",
        "aligned_register",
        "auth",
        "boot_on_reconnect",
        "boot_retry_at",
        "certificates",
        "charge_point_id",
        "config",
        "connectors",
        "firmware",
        "firmware_version",
        "hard_reset_pending",
        "last_activity",
        "lost_transactions",
        "model",
        "next_aligned_at",
        "next_ping_at",
        "online",
        "outbox",
        "profile_raise",
        "reboot_deadline",
        "reboot_seconds",
        "registration",
        "reservations",
        "rng",
        "smart_charging",
        "strict",
        "timeouts",
        "transactions",
        "transitions",
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
        transitions: TransitionSink | None = None,
    ) -> None:
        """``strict``: raise LocalProtocolError on a derived status change OCPP 1.6 §4.9
        does not list (tests); otherwise it is sent and ``transitions`` is told (the
        fleet's conformance record; None: this wallbox's own TransitionLog)."""
        self.charge_point_id = charge_point_id
        self.model = model
        self.rng = rng
        self.strict = strict
        self.transitions = transitions
        self.boot_on_reconnect = boot_on_reconnect
        self.reboot_seconds = reboot_seconds
        self.config = Configuration(
            profiles=model.profiles,
            overrides=model.configuration,
            security_profile=model.security_profile,
            security_extension=model.security_extension,
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
        self.reboot_deadline: float | None = None
        self._tx_counter = 0
        self.transactions: list[Transaction] = []  # every one of this wallbox, for the ledger
        self.lost_transactions: list[Transaction] = []  # hard reset: "data ... will be lost"
        self.timeouts = 0  # charger-initiated CALLs the CSMS never answered
        self.hard_reset_pending = False
        # What the world around must do, in order (emulator.core.effects).  A list, not
        # a deque: drained whole, and an empty list is 56 bytes, a deque ~0.8 KiB.
        self._effects: list[Effect] = []
        # Firmware Management (GetDiagnostics, UpdateFirmware, and the security extension's
        # SignedUpdateFirmware and GetLog): see the section below.
        self.firmware = SecureFirmwareManagement(
            charge_point_id=charge_point_id,
            statuses=model.firmware_statuses,
            download_failure_share=model.firmware_download_failure_share,
            install_failure_share=model.firmware_install_failure_share,
            install_seconds=model.firmware_install_seconds,
            # Its own stream (the wallbox's draws stay as they were), built on first use.
            rng=deferred(partial(_spawn_one, rng)),
            enqueue=self.outbox.add,
            request=self._effects.append,
            restart=self._firmware_restart,
            host=self,
        )
        self.firmware.record(now, f"power on, firmware {self.firmware_version}")
        # Security extension: the certificate store is made on first use (a CSR, an
        # InstallCertificate), so a wallbox that never needs one pays one slot.
        self.certificates: CertificateStore | None = None
        self._connect_failure: str | None = None  # the last one reported as an event
        # A SecurityProfile raise not yet confirmed by a connection (A05).
        self.profile_raise: ProfileRaise | None = None
        self.security_event("StartupOfTheDevice", now)
        # Reservation (ReserveNow, CancelReservation): see the section below.
        self.reservations = Reservations()
        # Smart Charging (charging profiles, composite schedule): see the section below.
        self.smart_charging = SmartCharging()
        self.schedule_aligned(now)
        for connector in self.connectors:
            self.refresh(connector, now)

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> None:
        self.online = True
        self._connect_failure = None
        self.log(now, "websocket connected")
        _profile_connected(self, now)
        self.last_activity = now
        interval = self.config.get_int("WebSocketPingInterval")
        self.next_ping_at = now + interval if interval else None
        if self.registration != "Accepted" or self.boot_on_reconnect:
            self.registration = None
            self.send_boot(now)

    def disconnected(self, now: float) -> None:
        self.online = False
        self.log(now, "websocket disconnected")
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
        """Everything the world around must do or know, in order (emulator.core.effects):
        pings, reboots with their delay, FTP jobs and events.  Drain it after every call."""
        effects = self._effects
        if not effects:
            return []
        taken = effects.copy()
        effects.clear()  # the same list: the firmware holds its bound append
        return taken

    def emit(self, kind: EventKind, connector_id: int, detail: str = "") -> None:
        self._effects.append(Event(kind, connector_id, detail))

    def reconnect(self) -> None:
        """Close the connection once the answers are out and connect again at once, with
        the password the configuration holds now (emulator.core.effects.Reconnect): not a
        restart.  Offline, nothing to do: the next connection uses it anyway."""
        if self.online:
            self._effects.append(Reconnect())

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
        self.log(now, f"error: {message.action} answered CALLERROR {code}")
        self.outbox.failed(message, f"CALLERROR {code}", now)
        return message.action

    # ------------------------------------------------------------------ time
    # Every timer is declared once, in TIMERS (end of this module): when it is due and
    # what it does then.  next_deadline() and tick() both read that list, so no timer can
    # be waited for and never served (its deadline left in the past: the driver would
    # spin) or served and never waited for.  tick() serves them in the list's order.

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` (or the link, for a queued CALL) has something to do."""
        return earliest(TIMERS, self)

    def tick(self, now: float) -> None:
        """Do whatever is due at ``now``, in the order of TIMERS."""
        serve(TIMERS, self, now)

    def _response_due(self) -> float | None:
        flight = self.outbox.in_flight
        return flight.deadline if flight is not None and self.online else None

    def _response_timeout(self, now: float) -> None:
        expired = self.outbox.expired(now)
        if expired is not None:
            self.log(now, f"error: {expired.action} unanswered")
            self.outbox.failed(expired, "timeout", now)
            self.timeouts += 1

    def _send_due(self) -> float | None:
        if not self.online or self.outbox.in_flight is not None:
            return None
        return self.outbox.next_ready_at(boot_only=not self.accepted)

    def _boot_retry(self, now: float) -> None:
        self.boot_retry_at = None
        self.send_boot(now)

    def _heartbeat_due(self) -> float | None:
        if self.online and self.accepted:
            return self.last_activity + self.config.heartbeat_interval
        return None

    def _heartbeat(self, now: float) -> None:
        # Re-arm even when a Heartbeat already waits behind an unanswered CALL: otherwise
        # the heartbeat stays due in the past.
        if not self.outbox.has_queued("Heartbeat"):
            self.outbox.add("Heartbeat", {})
        self.last_activity = now

    def _ping(self, now: float) -> None:
        interval = self.config.get_int("WebSocketPingInterval")
        # The pong is due within one interval (at most PONG_TIMEOUT_MAX).
        pong_timeout = min(float(interval), PONG_TIMEOUT_MAX) if interval > 0 else PONG_TIMEOUT_MAX
        self._effects.append(SendPing(pong_timeout))
        self.next_ping_at = now + interval if interval else None

    def _connectors_due(self) -> float | None:
        return earliest_of_parts(CONNECTOR_TIMERS, self.connectors)

    def _connectors_tick(self, now: float) -> None:
        serve_parts(CONNECTOR_TIMERS, self, self.connectors, now)

    def _connection_timeout(self, c: Connector, now: float) -> None:
        c.intent = None  # ConnectionTimeOut: the cable never came
        self.emit(EventKind.CONNECTION_TIMEOUT, c.id)
        self.refresh(c, now)

    def _aligned(self, now: float) -> None:
        self._send_aligned(now)
        self.schedule_aligned(now)

    def _expiry_due(self) -> float | None:
        return self.reservations.next_expiry() if self.reservations else None

    def _expire(self, now: float) -> None:
        if self.reservations.expire(now):
            self.reservations_changed(now)

    def _firmware_due(self) -> float | None:
        if not self.firmware.active:  # the usual case: no upload or update under way
            return None
        return self.firmware.next_deadline(busy=self._transaction_running())

    def _firmware_tick(self, now: float) -> None:
        self.firmware.tick(now, busy=self._transaction_running())

    def _reset_due(self) -> float | None:
        if self.reboot_deadline is None or self.outbox.transaction_backlog:
            return self.reboot_deadline
        # A reset restarts as soon as no transaction message waits: now.
        return min(self.reboot_deadline, self.last_activity)

    def _reset(self, now: float) -> None:
        if self.hard_reset_pending:
            self.hard_reset_pending = False
            self.hard_reset(now)
        else:
            self._reboot(now)

    # ------------------------------------------------------------------ boot

    def send_boot(self, now: float) -> None:
        payload: dict[str, Any] = {
            "chargePointVendor": self.model.vendor,
            "chargePointModel": self.model.model,
            "chargePointSerialNumber": self.charge_point_id[-25:],
            "firmwareVersion": self.firmware_version,
        }
        self.outbox.add(
            "BootNotification", payload, on_result=self._boot_result, on_failure=self._boot_failed
        )

    def _boot_result(self, payload: dict[str, Any], now: float) -> None:
        status = payload["status"]
        interval = int(payload["interval"])
        self.registration = status
        self.log(now, f"boot {status}")
        if status == "Accepted":
            if interval > 0:
                # OCPP 1.6 §4.2.1: adjust the heartbeat interval to the one in the response.
                self.config.change("HeartbeatInterval", str(interval))
            self.last_activity = now
            self.boot_retry_at = None  # e.g. a triggered boot was Accepted while Pending
            for c in self.connectors:
                c.reported = None  # after a boot the CSMS learns every connector's status
                self.refresh(c, now, coalesce=True)
            self.emit(EventKind.BOOT_ACCEPTED, 0)
        else:
            # Pending / Rejected: nothing but BootNotification until the interval has passed.
            self.boot_retry_at = now + (interval if interval > 0 else BOOT_RETRY_DEFAULT)

    def _boot_failed(self, reason: str, now: float) -> None:
        self.boot_retry_at = now + BOOT_RETRY_DEFAULT

    # ------------------------------------------------------------------ status

    def refresh(self, c: Connector, now: float, *, coalesce: bool = False) -> None:
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
        self.set_operative(station, pending)
        self._refresh_one(station, now)

    def _refresh_one(self, c: Connector, now: float, *, coalesce: bool = False) -> None:
        if (
            c.pending_operative is not None
            and c.id > 0
            and c.transaction is None
            and c.derive_status() is not Status.PREPARING
        ):
            self.set_operative(c, c.pending_operative)  # a Scheduled change falls due
        if self.reservations.active:
            self._sync_reservations(c, now)  # which connectors are held (Reservation section)
        status = c.derive_status()
        if status == c.reported:
            return
        if not allowed(c.id, c.reported, status):
            self._forbidden_transition(c, status)
        c.reported = status
        self.emit(EventKind.STATUS_CHANGED, c.id, status)
        self.log(now, f"connector {c.id} {status} {c.error_code}")
        self.outbox.add(
            "StatusNotification",
            status_payload(c.id, c.error_code, status, now),
            coalesce_key=(
                ("StatusNotification", c.id)
                if coalesce or not (self.online and self.accepted)
                else None
            ),
        )

    def _forbidden_transition(self, c: Connector, status: Status) -> None:
        """A derived change §4.9 has no cell for: raise (strict) or report it, then send it."""
        if self.strict:
            check_transition(c.id, c.reported, status)  # raises LocalProtocolError
        if self.transitions is None:
            self.transitions = TransitionLog()
        self.transitions.forbidden_transition(
            charger_id=self.charge_point_id, connector_id=c.id, old=c.reported, new=status
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
        if c.set_draw(now, lambda: self._offered_current(c, now)):
            self.emit(EventKind.EV_FULL, c.id)
        self.refresh(c, now)

    def _reading(
        self, c: Connector, measurands: list[str], context: str, now: float
    ) -> dict[str, Any]:
        """One MeterValue: the time and the sampled values of ``measurands``."""
        values = sampled_values(
            c.meter,
            measurands,
            context,
            offered_a=c.offered_a,
            interval_start_wh=self.aligned_register,
        )
        return {"timestamp": format_timestamp(now), "sampledValue": values}

    def meter_values(self, c: Connector, measurands: list[str], context: str, now: float) -> None:
        tx = c.transaction
        reading = self._reading(c, measurands, context, now)
        payload: dict[str, Any] = {"connectorId": c.id, "meterValue": [reading]}
        triggered = context == "Trigger"  # may go out while Pending (OCPP 1.6 §4.2.1)
        if tx is not None and not triggered:
            payload["transactionId"] = tx.transaction_id or 0
            tx.samples_sent += 1
            self.outbox.add("MeterValues", payload, transactional=True, tx=tx)
        elif tx is not None and tx.transaction_id is not None:
            # A triggered reading is an answer to the CSMS, not transaction data: best
            # effort, so a CSMS flooding TriggerMessage cannot grow the persistent queue.
            payload["transactionId"] = tx.transaction_id
            self.outbox.add("MeterValues", payload, triggered=True)
        else:
            # Without a transaction a reading is best-effort: while offline only the newest
            # per connector waits, instead of a day of 15-s readings bursting at reconnect.
            self.outbox.add(
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
        self.read_meter(c, now)
        if interval:
            if measurands:
                self.meter_values(c, measurands, "Sample.Periodic", now)
            self._record_stop_data(c, "StopTxnSampledData", "Sample.Periodic", now)

    def read_meter(self, c: Connector, now: float) -> None:
        """A reading instant: new phase voltages, then the EV re-decides its draw.

        Every change of power happens at such an instant (or at an event), so the
        readings the CSMS receives integrate exactly to the energy register.
        """
        c.read(now)
        self._update_draw(c, now)

    def schedule_aligned(self, now: float) -> None:
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
            self.read_meter(c, now)
        if self.accepted and measurands:
            self.meter_values(c, measurands, "Sample.Clock", now)
        self._record_stop_data(c, "StopTxnAlignedData", "Sample.Clock", now)
        self.aligned_register = c.meter.register_wh()

    def _record_stop_data(self, c: Connector, key: str, context: str, now: float) -> None:
        """Keep a reading for StopTransaction's transactionData (OCPP 1.6 §4.10, §9.1.28),
        at most MAX_TRANSACTION_DATA of them (Transaction.keep_reading)."""
        measurands = self.config.get_list(key)
        if c.transaction is not None and measurands:
            c.transaction.keep_reading(self._reading(c, measurands, context, now))

    # ------------------------------------------------------------------ sessions

    def plug_in(self, now: float, *, ev: Ev, connector_id: int = 1) -> None:
        """The driver connects the EV."""
        c = self.connectors[connector_id]
        if c.plugged:
            return
        c.plug(ev, lock=self.model.variant is Variant.SOCKET)
        if c.transaction is not None:  # re-plugged after an EV-side disconnect
            self._update_draw(c, now)
            return
        intent = c.intent
        if intent is not None and c.fault is None and c.operative:
            c.intent = None
            self._start_transaction(c, intent.id_tag, now, reservation_id=intent.reservation_id)
            return
        self.refresh(c, now)

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
                self.stop_transaction(c, StopReason.EV_DISCONNECTED, now)
            else:
                c.meter.set_current(now, 0.0)
                self.refresh(c, now)  # SuspendedEV until re-plugged or stopped
            if self.config.get_bool("UnlockConnectorOnEVSideDisconnect"):
                c.locked = False
        else:
            c.plugged = False
            c.locked = False
        c.ev = None if c.transaction is None else c.ev
        c.finishing = False
        self.refresh(c, now)

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
                self.stop_transaction(c, StopReason.LOCAL, now, id_tag=id_tag)
            return
        restart = c.finishing and c.plugged and c.fault is None and c.operative  # §4.9 F2
        if not (c.free or restart) or c.awaiting_authorization is not None:
            return
        if self.reservations.refuses(c.id, id_tag, self.auth.known_parent(id_tag)):
            self.emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
            return
        self.authorize(c, id_tag, now, remote=False)

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
            self.stop_transaction(c, StopReason.OTHER, now)
        self.refresh(c, now)

    def clear_fault(self, now: float, *, connector_id: int = 1) -> None:
        c = self.connectors[connector_id]
        c.fault = None
        c.error_code = "NoError"
        self.refresh(c, now)

    def authorize(self, c: Connector, id_tag: str, now: float, *, remote: bool) -> None:
        decision = self.auth.decide(id_tag, now, online=self.online and self.accepted)
        if decision is Decision.ACCEPT:
            self.authorized(c, id_tag, now, remote=remote)
        elif decision is Decision.REJECT:
            self.emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
        else:
            c.awaiting_authorization = id_tag
            self.refresh(c, now)

            def on_result(payload: dict[str, Any], at: float) -> None:
                c.awaiting_authorization = None
                info = IdTagInfo.from_answer(payload["idTagInfo"])
                self.auth.learn(id_tag, info)
                self._check_list_conflict(id_tag, info, at)
                if info.valid_at(at) is AuthorizationStatus.ACCEPTED:
                    parent = info.parent_id_tag or ""  # known now, even if it has none
                    self.authorized(c, id_tag, at, remote=remote, parent=parent)
                else:
                    self.emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
                    self.refresh(c, at)

            def on_failure(reason: str, at: float) -> None:
                # No answer: OCPP 1.6 §3.5 — decide as an offline charger would.
                c.awaiting_authorization = None
                if self.auth.decide_offline(id_tag, at) is Decision.ACCEPT:
                    self.authorized(c, id_tag, at, remote=remote)
                else:
                    self.emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
                    self.refresh(c, at)

            self.outbox.add(
                "Authorize", {"idTag": id_tag}, on_result=on_result, on_failure=on_failure
            )

    def authorized(
        self, c: Connector, id_tag: str, now: float, *, remote: bool, parent: str | None = None
    ) -> None:
        if c.transaction is not None or not c.operative or c.fault is not None:
            return
        parent = self.auth.known_parent(id_tag) if parent is None else parent
        if self.reservations.refuses(c.id, id_tag, parent, asked=True):
            self.emit(EventKind.AUTHORIZATION_REJECTED, c.id, id_tag)
            self.refresh(c, now)
            return
        claimed = self.reservations.claim(c.id, id_tag, parent)
        reservation_id = claimed.reservation_id if claimed is not None else None
        self.emit(EventKind.AUTHORIZED, c.id, id_tag)
        timeout = self.config.get_int("ConnectionTimeOut")
        intent = Intent(
            id_tag=id_tag, deadline=now + timeout, remote=remote, reservation_id=reservation_id
        )
        if c.plugged:
            if c.finishing:  # F2: Finishing -> Preparing -> Charging, never F -> C
                c.finishing = False
                self.refresh(c, now)
            elif claimed is not None:  # G2 then B3: Reserved -> Preparing -> Charging
                c.intent = intent
                self.refresh(c, now)
                c.intent = None
            self._start_transaction(c, id_tag, now, reservation_id=reservation_id)
            return
        c.intent = intent
        self.refresh(c, now)

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
                    self.stop_transaction(c, StopReason.DE_AUTHORIZED, at)
                else:
                    tx.energy_cap_wh = float(self.config.get_int("MaxEnergyOnInvalidId"))
                    self._update_draw(c, at)

        self.outbox.add(
            "StartTransaction",
            payload,
            transactional=True,
            tx=tx,
            on_result=on_result,
            on_failure=_note_drop(tx, "StartTransaction"),
        )
        interval = self.config.get_int("MeterValueSampleInterval")
        c.next_sample_at = now + (interval or PHYSICS_STEP)
        self.emit(EventKind.TRANSACTION_STARTED, c.id, id_tag)
        self.log(now, f"transaction start connector {c.id} meter {tx.meter_start} Wh")
        self._update_draw(c, now)
        self._record_stop_data(c, "StopTxnSampledData", "Transaction.Begin", now)

    def stop_transaction(
        self, c: Connector, reason: StopReason, now: float, *, id_tag: str | None = None
    ) -> None:
        tx = c.transaction
        if tx is None:
            return
        c.stop_draw(now)
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

        self.outbox.add(
            "StopTransaction",
            payload,
            transactional=True,
            tx=tx,
            on_result=on_result,
            on_failure=_note_drop(tx, "StopTransaction"),
        )
        self.emit(EventKind.TRANSACTION_STOPPED, c.id, reason.value)
        self.log(now, f"transaction stop connector {c.id} {reason.value} meter {tx.meter_stop} Wh")
        if c.pending_operative is not None:
            self.set_operative(c, c.pending_operative)
        self.refresh(c, now)

    def stop_all_transactions(self, now: float, reason: StopReason) -> None:
        """End every running transaction (e.g. the emulator is shutting down)."""
        for c in self.connectors:
            if c.transaction is not None:
                self.stop_transaction(c, reason, now)

    # ------------------------------------------------------------------ reset

    def _reboot(self, now: float, *, offline_for: float | None = None) -> None:
        """The charger restarts: the websocket closes, and after ``offline_for`` seconds
        (``reboot_seconds`` by default) it connects again and a BootNotification follows.

        Security events (Security Whitepaper §8): a reset or restart is ResetOrReboot; a
        power loss is StartupOfTheDevice when the power is back."""
        self.reboot_deadline = None
        if offline_for is None:
            self.security_event("ResetOrReboot", now)
        else:
            self.security_event("StartupOfTheDevice", now + offline_for)
        for c in self.connectors:
            c.intent = None
            c.awaiting_authorization = None
            c.finishing = False
            c.reported = None
        self.registration = None
        self.outbox.clear_normal("charger restarted")
        self._effects.append(Reboot(self.reboot_seconds if offline_for is None else offline_for))
        self.emit(EventKind.REBOOTED, 0)
        for c in self.connectors:
            self.refresh(c, now)
        self._firmware_restarted(now)

    def hard_reset(self, now: float) -> None:
        """Reference §3.1 Reset: restart at once; the running transaction's data is lost."""
        for c in self.connectors:
            tx = c.transaction
            if tx is None:
                continue
            c.stop_draw(now)  # the EV keeps what it got; the charger forgets the transaction
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
        self._reboot(now, offline_for=outage)

    # ------------------------------------------------------------------ CSMS calls

    def connector_or_none(self, connector_id: int) -> Connector | None:
        if 0 <= connector_id < len(self.connectors):
            return self.connectors[connector_id]
        return None

    @staticmethod
    def set_operative(c: Connector, operative: bool) -> None:
        c.operative = operative
        c.pending_operative = None
        if not operative:
            # Out of service ends the session's leftovers: an authorized start waiting
            # for the cable, and Finishing (§4.9 has no Unavailable -> Finishing; with
            # the cable still in, Operative again is Preparing, H2).
            c.intent = None
            c.finishing = False

    # ------------------------------------------------------ local list, reservations, triggers
    # GetLocalListVersion / SendLocalList, ReserveNow / CancelReservation and TriggerMessage
    # (the optional profiles).  The logic is emulator.core.authorization (the list) and
    # emulator.core.reservation; these methods connect it to the wallbox.

    def _check_list_conflict(self, id_tag: str, info: IdTagInfo, now: float) -> None:
        """OCPP 1.6 §3.5.2: a CSMS answer that contradicts the Local Authorization List is
        reported with a StatusNotification for connector 0, errorCode LocalListConflict."""
        if not self.auth.conflicts(id_tag, info, now):
            return
        station = self.connectors[0]
        self.log(now, f"local list conflict for {id_tag}")
        status = station.reported or Status.AVAILABLE
        payload = status_payload(0, "LocalListConflict", status, now, always_error_code=True)
        self.outbox.add("StatusNotification", payload)

    def reservations_changed(self, now: float) -> None:
        """Re-derive every connector: a reservation began or ended (Reserved and back)."""
        for c in self.connectors[1:]:
            self.refresh(c, now)

    def _sync_reservations(self, c: Connector, now: float) -> None:
        """Called by ``refresh``: update which connectors are held; end reservations whose
        connector became Faulted or Unavailable; refresh the other connectors affected."""
        for cid in self.reservations.assign(self.connectors):
            if cid != c.id:
                self.refresh(self.connectors[cid], now)

    # ------------------------------------------------------------------ Smart Charging
    # SetChargingProfile / ClearChargingProfile / GetCompositeSchedule and the live limit
    # (Smart Charging).  The logic is emulator.core.smart_charging; these methods connect
    # it to the wallbox: the charger's limits from its configuration, each connector's
    # transaction and phases, and re-deriving the draw whenever the limit may change.

    def _smart_offered(self, c: Connector, now: float) -> float:
        """The connector's limit at ``now``, and when it may change next (next_deadline)."""
        smart = self.smart_charging
        smart.sync_transaction(c.id, c.transaction, now, self.smart_caps())
        return smart.offered_until_change(
            c.id, now, state=self.smart_state(c), site=self.smart_site()
        )

    def smart_reevaluate(self, now: float) -> None:
        """Profiles changed or a schedule period starts: every connector re-derives its draw
        (Current.Offered, the EV's current, SuspendedEVSE) at once."""
        for c in self.connectors[1:]:
            self._update_draw(c, now)

    def smart_state(self, c: Connector) -> ConnectorState:
        phases = self.model.phases if c.ev is None else min(self.model.phases, c.ev.phases)
        return ConnectorState(transaction=c.transaction, phases=phases)

    def smart_site(self) -> Site:
        return Site(max_current=float(self.model.max_current), voltage=self.model.nominal_voltage)

    def smart_caps(self) -> Capabilities:
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

    def transfer_done(
        self,
        job_id: int,
        ok: bool,
        detail: str,
        now: float,
        *,
        sha256: bytes | None = None,
        failure: TransferFailure | None = None,
    ) -> None:
        """The transport finished a transfer the wallbox asked for (``detail`` for the log;
        ``sha256`` of a download asked with a digest, ``failure`` its kind when it failed)."""
        self.firmware.transfer_done(job_id, ok, detail, now, sha256=sha256, failure=failure)

    def log(self, now: float, text: str) -> None:
        """A line of the charger's own event log (uploaded by GetDiagnostics)."""
        self.firmware.record(now, text)

    def manufacturer_root_certificates(self) -> tuple[Any, ...]:
        """The installed ManufacturerRootCertificates a firmware signing certificate must
        chain to (cryptography ``x509.Certificate``s)."""
        if self.certificates is None:
            return ()
        return tuple(
            i.certificate
            for i in self.certificates.installed
            if i.use is CertificateUse.MANUFACTURER_ROOT
        )

    def _transaction_running(self) -> bool:
        return any(c.transaction is not None for c in self.connectors)

    def _firmware_restart(self, now: float) -> None:
        """Installed: restart like a soft reset (reference §3.1 Reset), new firmware after it.

        No transaction runs when installing starts; one begun since ends with reason
        Reboot.  The restart waits for the transaction messages, as a soft reset does.
        """
        for c in self.connectors:
            if c.transaction is not None:
                self.stop_transaction(c, StopReason.REBOOT, now)
        self.reboot_deadline = now + SOFT_RESET_FLUSH_SECONDS

    def _firmware_restarted(self, now: float) -> None:
        version = self.firmware.restarted(now, self.firmware_version)
        if version is not None:
            self.firmware_version = version  # the next BootNotification carries it

    # ------------------------------------------------------------------ Security extension
    # The OCPP 1.6 Security Whitepaper's messages (model.security_extension): the CSMS
    # calls are emulator.core.handlers.security, the certificates emulator.core.certificates.

    def security_event(self, kind: str, now: float, tech_info: str | None = None) -> None:
        """A security event (Security Whitepaper §8, A04), with the extension (else
        nothing): a line of the charger's log (A04.FR.04) and a SecurityEventNotification
        queued with the transaction messages (A04.FR.02 "queued with a guaranteed
        delivery": kept while offline and across restarts, resent on a CALLERROR or no
        answer, sent once the registration is Accepted).  ``tech_info`` must hold no
        secret."""
        if not self.model.security_extension:
            return
        self.log(now, f"security event {kind}" + (f": {tech_info}" if tech_info else ""))
        self.firmware.record_security_event(now, kind, tech_info)  # the log GetLog uploads
        payload: dict[str, Any] = {"type": kind, "timestamp": format_timestamp(now)}
        if tech_info:
            payload["techInfo"] = tech_info[:255]
        self.outbox.add("SecurityEventNotification", payload, transactional=True)

    def connect_failed(self, reason: str, now: float) -> None:
        """The transport could not connect, for ``reason`` (its bounded label, e.g.
        ``http_401``, ``tls_unknown_ca``).  A refused password is
        FailedToAuthenticationAtCentralSystem, a server certificate that does not verify
        InvalidCentralSystemCertificate (A00.FR.413); once per run of the same failure
        (until a connection succeeds), not once per backoff attempt: a charger offline
        for a day must not queue a thousand of them.  Every failed attempt counts towards
        a SecurityProfile raise's fallback (emulator.core.security_profile)."""
        _profile_connect_failed(self, now)
        kind = CONNECT_FAILURE_EVENTS.get(reason)
        if kind is None or self._connect_failure == kind:
            return
        self._connect_failure = kind
        self.security_event(kind, now, reason)

    def certificate_store(self) -> CertificateStore:
        """The charger's certificates, made on first use."""
        if self.certificates is None:
            self.certificates = CertificateStore()
        return self.certificates

    def request(self, effect: Effect) -> None:
        """Ask the world around for ``effect`` (e.g. a new client certificate)."""
        self._effects.append(effect)


CONNECT_FAILURE_EVENTS: Final[dict[str, str]] = {
    "http_401": "FailedToAuthenticationAtCentralSystem",
    "tls_unknown_ca": "InvalidCentralSystemCertificate",
    "tls_verify_failed": "InvalidCentralSystemCertificate",
    "tls_server_cert_expired": "InvalidCentralSystemCertificate",
}
"""The transport's connect-failure labels (emulator.transport.driver) that are security
events (Security Whitepaper §8; the spelling of its table)."""


def _spawn_one(rng: np.random.Generator) -> np.random.Generator:
    return rng.spawn(1)[0]


def _belongs_to(tx: Transaction) -> Callable[[Message], bool]:
    return lambda message: message.tx is tx


def _note_drop(tx: Transaction, action: str) -> Callable[[str, float], None]:
    """Remember on the transaction why its message was given up (for the ledger)."""

    def failed(reason: str, now: float) -> None:
        tx.dropped.append(f"{action}: {reason}")

    return failed


CONNECTOR_TIMERS: Final[tuple[PartTimer[Wallbox, Connector], ...]] = (
    PartTimer(
        "ConnectionTimeOut",
        lambda c: None if c.intent is None else c.intent.deadline,
        Wallbox._connection_timeout,
    ),
    # The MaxEnergyOnInvalidId cap: the charger cuts off precisely there.
    PartTimer("energy cap", Connector.ev_full_at, Wallbox._update_draw),
    PartTimer("meter sample", attrgetter("next_sample_at"), Wallbox._send_sampled),
)
"""Each connector's timers, in the order ``tick`` serves them (connector by connector)."""

TIMERS: Final[tuple[Timer[Wallbox], ...]] = (
    Timer("response timeout", Wallbox._response_due, Wallbox._response_timeout),
    Timer("next CALL", Wallbox._send_due, None),  # sent by the link (frames_to_send)
    Timer("boot retry", lambda wb: wb.boot_retry_at if wb.online else None, Wallbox._boot_retry),
    Timer("heartbeat", Wallbox._heartbeat_due, Wallbox._heartbeat),
    Timer("websocket ping", lambda wb: wb.next_ping_at if wb.online else None, Wallbox._ping),
    Timer(
        "charging schedule", attrgetter("smart_charging.next_change_at"), Wallbox.smart_reevaluate
    ),
    Timer("connectors", Wallbox._connectors_due, Wallbox._connectors_tick),  # CONNECTOR_TIMERS
    Timer("clock-aligned data", attrgetter("next_aligned_at"), Wallbox._aligned),
    # A reservation ends at its expiryDate (OCPP 1.6 §5.13).
    Timer("reservation expiry", Wallbox._expiry_due, Wallbox._expire),
    Timer("firmware management", Wallbox._firmware_due, Wallbox._firmware_tick),
    Timer("reset", Wallbox._reset_due, Wallbox._reset),
)
"""Every timer of a wallbox, in the order ``tick`` serves them (emulator.core.timers)."""
