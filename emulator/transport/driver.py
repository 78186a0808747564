"""One task per wallbox: connects, backs off, waits on one deadline, moves text.

The OCPP-J conversation is the sans-I/O :class:`~emulator.core.link.ChargerLink`; this
driver only does what needs I/O around it:

* connect (TLS, Basic auth, the ``ocpp1.6`` subprotocol) and reconnect with full-jitter
  exponential backoff, counting every failed attempt with a bounded reason;  the bytes
  are pumped by websockets or picows (``ConnectionSettings.transport``), both behind
  :class:`~emulator.transport.connection.Connection`;
* move text: every frame received goes to ``link.receive_text``, every frame of
  ``link.frames_to_send`` goes out (after the added latency of injected network faults);
* run the link's effects: websocket pings (and abort a connection whose pong never
  comes), reboots (close 1001, reconnect after the delay), reconnects (close 1000 once
  the answers are out, connect again at once: a new AuthorizationKey, or a new security
  profile, whose URL scheme, TLS context and credentials :meth:`WallboxDriver._handshake`
  builds), FTP transfers as tasks, and events for the session behaviour;
* report what settled (round trips, CSMS calls) and every connect, close and frame.

Every timer of the wallbox and of its session behaviour is one deadline
(``next_deadline``), so a wallbox costs one task and one pending ``recv`` whatever
it is doing: no ping task, no heartbeat task, no per-message thread-pool hop.  The
wait is an ``asyncio.timeout_at`` around ``recv()`` (cancel-safe in websockets ≥ 13 and
in the picows pump);
:meth:`WallboxDriver.wake` reschedules that timeout to run at once, which is how the
fleet asks a wallbox to stop or to act on something done from outside.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import time
from base64 import b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)

from emulator.core.effects import (
    ClientCertificate,
    Event,
    Reboot,
    Reconnect,
    SendPing,
    UseSecurityProfile,
)
from emulator.core.firmware import (
    CancelTransfer,
    FtpDownload,
    FtpUpload,
    TransferFailure,
    redact_url,
)
from emulator.core.link import ChargerLink, CsmsCallAnswered
from emulator.core.transaction import StopReason
from emulator.core.wallbox import Wallbox
from emulator.protocol.redaction import websockets_logger
from emulator.transport.connection import (
    DEFAULT_TRANSPORT,
    SUBPROTOCOL,
    Connection,
    Transport,
    bound_socket,
)
from emulator.transport.picows_pump import open_picows
from emulator.transport.transfers import FileTransfers, TransferError

if TYPE_CHECKING:
    from emulator.transport.network import NetworkFaults
    from emulator.transport.reporter import Reporter

log = logging.getLogger(__name__)

# websockets' own logger, which at DEBUG would print the Basic header and the frames that
# set an AuthorizationKey (emulator.protocol.redaction).
_WEBSOCKETS_LOG = websockets_logger("websockets.client")
PING_TIMEOUT = "ping_timeout"  # the disconnect reason of a connection found dead that way
NEW_PASSWORD = "authorization_key_changed"  # the disconnect reason of a Reconnect effect
NEW_PROFILE = "security_profile_changed"  # the disconnect reason of a UseSecurityProfile


class Behaviour(Protocol):
    """What drives the wallbox's physical world (EV, driver); see emulator.fleet.behaviour."""

    def next_deadline(self) -> float | None: ...

    def tick(self, now: float) -> None: ...

    def on_events(self, events: list[Event], now: float) -> None: ...

    def finish(self, now: float) -> None: ...


@dataclass(slots=True, kw_only=True)
class ConnectionSettings:
    url: str  # CSMS endpoint; the charger id is appended as the last path segment
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    max_size: int = 1 << 20  # a CSMS frame larger than 1 MiB closes the connection (1009)
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    drain_timeout: float = 10.0  # seconds to flush transaction messages at shutdown
    stop_transactions_on_shutdown: bool = True
    source_address: str | None = None  # bind to this local address (beyond ~28k ports)
    basic_auth_password: str | None = field(default=None, repr=False)  # profiles 1, 2
    # Per charger (an identities file): charger id -> password, before basic_auth_password.
    passwords: Mapping[str, str] | None = field(default=None, repr=False)
    ssl_for: Callable[[str], ssl.SSLContext] | None = field(default=None, repr=False)  # wss
    cert_expired: Callable[[str], bool] | None = field(default=None, repr=False)  # profile 3
    # A charger's new certificate chain and key (ClientCertificate): its TLS identity from
    # the next connection on (charger id, chain PEM, key PEM).
    install_client_certificate: Callable[[str, str, bytes], None] | None = field(
        default=None, repr=False
    )
    transport: Transport = DEFAULT_TRANSPORT  # what pumps the bytes (emulator.transport.connection)
    # The fleet's security profile (the one ``url``, the passwords and ``ssl_for`` are for)
    # and, for a charger that raised its profile (UseSecurityProfile), the TLS context of
    # profile 2 or 3: (charger id, profile, installed CentralSystemRootCertificates PEM).
    security_profile: int = 0
    tls_for: Callable[[str, int, tuple[str, ...]], ssl.SSLContext] | None = field(
        default=None, repr=False
    )


def charger_url(base: str, charge_point_id: str) -> str:
    return f"{base.rstrip('/')}/{charge_point_id}"


def profile_url(url: str, profile: int) -> str:
    """``url`` with the scheme of security ``profile``: ``ws://`` for 0 and 1, ``wss://``
    for 2 and 3 (Security Whitepaper §2.3-2.5), host, port and path kept.

    OCPP 1.6 has no key for the CSMS's address, so a charger that raises its profile keeps
    it and changes the scheme, as EVerest's libocpp does (``Uri::parse_and_validate``
    takes the scheme from the security profile)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("ws", "wss"):
        return url
    return f"{'wss' if profile >= 2 else 'ws'}://{rest}"


def basic_authorization(charger_id: str, password: bytes) -> str:
    """The value of the handshake's Authorization header: HTTP Basic (RFC 7617) with the
    charger id as the username and ``password`` as it is, bytes, not text.

    OCPP 1.6 Security Whitepaper A00.FR.203-205: the username is the charge point
    identity, the password the AuthorizationKey, whose bytes may be any (§7.2: "randomly
    generated binary"), so they are never decoded or re-encoded on the way."""
    token = charger_id.encode("utf-8") + b":" + password
    return "Basic " + b64encode(token).decode("ascii")


class WallboxDriver:
    """Connects one Wallbox to the CSMS and keeps it connected until stopped."""

    def __init__(
        self,
        *,
        link: ChargerLink,
        behaviour: Behaviour | None,
        settings: ConnectionSettings,
        reporter: Reporter,
        rng: np.random.Generator,
        clock: Callable[[], float] = time.time,
        on_late: Callable[[float], None] | None = None,
        transfers: FileTransfers | None = None,
        network: NetworkFaults | None = None,
    ) -> None:
        self.link = link  # the OCPP-J conversation (decoding, correlation, timeouts)
        self.network = network  # injected network faults (drops, blackouts, latency)
        # FTP transfers of Firmware Management: the fleet shares one FileTransfers (its
        # semaphore bounds the sessions of the whole process); one task per transfer.
        self.transfers = transfers if transfers is not None else FileTransfers()
        self._transfer_tasks: dict[int, asyncio.Task[None]] = {}  # by job id
        self._abandoned: set[asyncio.Task[None]] = set()  # cancelled, not yet finished
        # Called with (now - deadline) when a wallbox deadline fires: the fleet's
        # generator-health measure of send lateness (emulator.fleet.health).
        self.on_late = on_late
        self.behaviour = behaviour
        self.settings = settings
        self.reporter = reporter
        self.clock = clock
        self._rng = rng  # reconnect jitter (deferred by the fleet: drawn only on a reconnect)
        self._failed_attempts = 0  # connection attempts since the last success (backoff)
        self.ws: Connection | None = None
        self.stopping = False
        self.finished = False  # run() has returned (a flag: nothing awaits it)
        self.ever_connected = False
        self.connect_failures = 0
        self.last_failure = ""
        self._timeout: asyncio.Timeout | None = None
        # Pings, a reboot or a reconnect the link asked for, done by the next flush (they
        # need the websocket); None while there are none.
        self._io: list[SendPing | Reboot | Reconnect | UseSecurityProfile] | None = None
        # The last ping: its pong waiter and the wall-clock time by which the pong is due.
        self._pong: asyncio.Future[float] | None = None
        self._pong_due: float | None = None
        self._reconnect_at = 0.0
        # The security profile the charger raised to or fell back to (UseSecurityProfile),
        # when it is not the fleet's: its connections are built for it.
        self._profile: UseSecurityProfile | None = None

    @property
    def wallbox(self) -> Wallbox:
        return self.link.wallbox

    @property
    def ever_accepted(self) -> bool:
        """A BootNotification of this wallbox was Accepted (at any time)."""
        return self.link.ever_accepted

    def _backoff(self) -> float:
        """The next reconnect delay: exponential backoff with full jitter, uniform in
        [0, min(backoff_max, backoff_initial · 2ⁿ)] after n failed attempts.

        Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads a
        fleet that lost its CSMS at once over the whole window instead of re-synchronising
        it into waves, which is what a CSMS restart would otherwise face."""
        ceiling = min(
            self.settings.backoff_max,
            self.settings.backoff_initial * 2.0 ** min(self._failed_attempts, 64),
        )
        self._failed_attempts += 1
        return float(self._rng.uniform(0.0, ceiling))

    # ------------------------------------------------------------------ control

    def wake(self) -> None:
        """Make the driver re-evaluate now (after a stop request or an outside stimulus).

        A handshake in progress (its wait has no deadline) is interrupted only by a stop:
        its ticks run on their own timer."""
        timeout = self._timeout
        if timeout is not None and timeout.expired() is False:
            if timeout.when() is None and not self.stopping:
                return
            timeout.reschedule(asyncio.get_running_loop().time())

    def stop(self) -> None:
        self.stopping = True
        self.wake()

    @property
    def connected(self) -> bool:
        return self.ws is not None

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Run until :meth:`stop`; then stop transactions, flush and close."""
        try:
            # Each call returns to this loop (no nesting: a connected wallbox parks in two
            # coroutine frames, run and _pump, a few hundred bytes each).
            while not self.stopping:
                if self.ws is not None:
                    await self._pump()
                elif self.clock() >= self._reconnect_at:
                    await self._connect()
                else:
                    await self._idle_until(self._reconnect_at)
            await self._shutdown()
        finally:
            if self.ws is not None:
                await self._close(1001, "emulator stopping")
                self.reporter.disconnected("stopped")
            await self._stop_transfers()
            self.finished = True

    async def _connect(self) -> None:
        wb = self.wallbox
        network = self.network
        if network is not None and self.clock() < network.blocked_until:
            self._reconnect_at = network.blocked_until  # blackout: no route to the CSMS
            await self._idle_until(self._reconnect_at)
            return
        started = perf_counter()
        try:
            url, headers, context = self._handshake()
        except (ValueError, OSError, ssl.SSLError) as exc:  # e.g. no certificate for it
            self.last_failure = str(exc)
            self.reporter.connect_failed("tls_client_cert_missing")
            wb.connect_failed("tls_client_cert_missing", self.clock())  # a failed attempt
            self._reconnect_at = self.clock() + self._backoff()
            await self._idle_until(self._reconnect_at)
            return
        # While the handshake runs the wallbox's clock keeps running: an overloaded CSMS
        # may hold the upgrade for seconds, and meter samples, sessions and timeouts must
        # go on meanwhile, as during the backoff.  A loop timer ticks the wallbox at its
        # deadlines (one TimerHandle, not a task: 10,000 handshakes at once would leave
        # ~3 KiB a wallbox of fragmented heap behind), and only stop() ends the wait early.
        loop = asyncio.get_running_loop()
        ticking = _TickWhileConnecting(self, loop)
        try:
            async with asyncio.timeout(None) as timeout:  # stop() reschedules it to now
                self._timeout = timeout
                ws = await open_connection(url, self.settings, headers, context)
        except TimeoutError as exc:
            if self.stopping and timeout.expired():
                return  # stopped mid-handshake; websockets closed what it had opened
            await self._connect_failed(exc, tls=context is not None)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every connect failure is this wallbox's, never the fleet's
            await self._connect_failed(exc, tls=context is not None)
            return
        finally:
            self._timeout = None
            ticking.cancel()
        # Also when stopped just as the handshake completed: the connection is taken as
        # usual, so run() drains the transaction messages over it, then closes it.
        if ws.subprotocol != SUBPROTOCOL:
            self.reporter.connect_failed("subprotocol")
            self.last_failure = "CSMS did not agree to ocpp1.6"
            await ws.close(1002, "ocpp1.6 required")
            self._reconnect_at = self.clock() + self._backoff()
            await self._idle_until(self._reconnect_at)
            return
        self.reporter.connected(perf_counter() - started)
        self.ws = ws
        self._pong = None
        self._pong_due = None
        self.ever_connected = True
        self._failed_attempts = 0
        self.link.connected(self.clock())

    def _handshake(self) -> tuple[str, dict[str, str], ssl.SSLContext | None]:
        """The URL, headers and TLS context of the next connect attempt, for the fleet's
        security profile or the one the charger raised to (UseSecurityProfile): Basic
        authentication for profiles 1 and 2 (none for 3: the client certificate is the
        credential, §2.5), TLS for 2 and 3.  Raises what loading a certificate raises."""
        wb = self.wallbox
        settings = self.settings
        profile = None if self._profile is None else self._profile.profile
        base = settings.url if profile is None else profile_url(settings.url, profile)
        url = charger_url(base, wb.charge_point_id)
        headers: dict[str, str] = {}
        # ChangeConfiguration AuthorizationKey replaces the password (Security Whitepaper
        # A01): the bytes it stands for, not its hexadecimal digits (§7.2).  Else the
        # charger's own password (an identities file's row), else the fleet's.
        password = wb.config.authorization_key
        if password is None:
            own = settings.passwords
            text = own.get(wb.charge_point_id) if own is not None else None
            text = text or settings.basic_auth_password
            if text is not None:
                password = text.encode("utf-8", "surrogateescape")
        if password is not None and profile != 3:
            headers["Authorization"] = basic_authorization(wb.charge_point_id, password)
        if not url.startswith("wss://"):
            return url, headers, None
        if profile is not None and profile >= 2 and settings.tls_for is not None:
            assert self._profile is not None
            roots = self._profile.central_system_roots
            return url, headers, settings.tls_for(wb.charge_point_id, profile, roots)
        if settings.ssl_for is not None:
            return url, headers, settings.ssl_for(wb.charge_point_id)
        return url, headers, None

    async def _connect_failed(self, exc: BaseException, *, tls: bool) -> None:
        """Count a failed connect attempt (a bounded reason) and wait out the backoff.

        Whatever the attempt raised, it is this wallbox's failure, never the fleet's."""
        if not isinstance(exc, _CONNECT_ERRORS) and type(exc) not in _unexpected_logged:
            _unexpected_logged.add(type(exc))  # once per type and process, not per wallbox
            log.error(
                "%s: connecting failed unexpectedly (counted as a connect failure, retried; "
                "logged once per exception type)",
                self.wallbox.charge_point_id,
                exc_info=exc,
            )
        reason = _failure_reason(exc)
        if tls and self.settings.cert_expired is not None and reason in _TLS_CLOSED:
            # The CSMS closed the TLS connection on our certificate (TLS 1.3 sends
            # its alert after the handshake, so nothing finer reaches us).
            expired = self.settings.cert_expired(self.wallbox.charge_point_id)
            reason = "tls_client_cert_expired" if expired else "tls_client_cert_rejected"
        self.connect_failures += 1
        self.last_failure = reason
        self.reporter.connect_failed(reason)
        # The charger's own view (a security event for a 401 or a CSMS certificate that
        # does not verify, Security Whitepaper §8): the core decides, the transport tells.
        self.wallbox.connect_failed(reason, self.clock())
        self._reconnect_at = self.clock() + self._backoff()
        await self._idle_until(self._reconnect_at)

    async def _idle_until(self, wall_deadline: float) -> None:
        """Offline: keep the wallbox's clock running (sessions go on) until the deadline
        or until the driver stops; the wait ends at each wallbox or behaviour deadline to
        tick them, and at once on :meth:`wake`."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            now = self.clock()
            if now >= wall_deadline:
                return
            self._tick(now)
            deadline = self._next_deadline()
            target = wall_deadline if deadline is None else min(deadline, wall_deadline)
            try:
                async with asyncio.timeout_at(loop.time() + max(0.0, target - now)) as timeout:
                    self._timeout = timeout
                    await asyncio.Future()  # only the timeout (or wake) ends this wait
            except TimeoutError:
                pass
            finally:
                self._timeout = None

    def _next_deadline(self) -> float | None:
        deadline = self.link.next_deadline()
        if self.behaviour is not None:
            other = self.behaviour.next_deadline()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        pong_due = self._pong_due
        if (
            pong_due is not None
            and self.ws is not None
            and (deadline is None or pong_due < deadline)
        ):
            deadline = pong_due
        return deadline

    def _tick(self, now: float) -> None:
        if self.behaviour is not None:
            self.behaviour.tick(now)
        self.link.tick(now)
        self._after_link(now, 0.0)

    def _after_link(self, now: float, handled: float) -> None:
        """Report what settled and run the link's effects that need no websocket (events,
        FTP jobs: online or not); pings and reboots wait for the next flush.  ``handled``:
        seconds the link took over the frame just received (CSMS-call handling time)."""
        reporter = self.reporter
        for item in self.link.take_settled():
            if isinstance(item, CsmsCallAnswered):
                reporter.csms_call(item.action, handled, item.error)
            else:
                reporter.round_trip(item.action, item.seconds, item.outcome)
        events: list[Event] | None = None
        # Always drained: nobody listening must not grow memory.
        for effect in self.link.take_effects():
            if isinstance(effect, Event):
                if events is None:
                    events = [effect]
                else:
                    events.append(effect)
            elif isinstance(effect, SendPing | Reboot | Reconnect | UseSecurityProfile):
                if isinstance(effect, UseSecurityProfile):
                    # The fleet's own profile needs no override: its settings are these.
                    same = effect.profile == self.settings.security_profile
                    self._profile = None if same else effect
                if isinstance(effect, Reboot) and self.ws is None:
                    # Restarted while offline: back on the network after the delay.
                    self._reconnect_at = max(self._reconnect_at, self.clock() + effect.delay)
                elif isinstance(effect, Reconnect | UseSecurityProfile) and self.ws is None:
                    pass  # already offline: the next connection uses the new settings
                elif self._io is None:
                    self._io = [effect]
                else:
                    self._io.append(effect)
            elif isinstance(effect, ClientCertificate):
                install = self.settings.install_client_certificate
                if install is not None:
                    install(
                        self.wallbox.charge_point_id, effect.certificate_chain, effect.private_key
                    )
            else:
                self._transfer_effect(effect)
        if events is not None and self.behaviour is not None:
            self.behaviour.on_events(events, now)

    async def _pump(self) -> None:
        """Serve the open connection until it closes or the driver stops."""
        ws = self.ws
        assert ws is not None
        loop = asyncio.get_running_loop()
        try:
            while not self.stopping:
                now = self.clock()
                self._tick(now)
                if self.network is not None and self.network.take_drop():
                    ws.transport.abort()  # like a NAT timeout or a cut cable: no close frame
                if self._pong_due is not None and now >= self._pong_due and self._dead(ws):
                    return
                if await self._flush(ws):
                    return
                deadline = self._next_deadline()
                wait = 3600.0 if deadline is None else max(0.0, deadline - self.clock())
                try:
                    async with asyncio.timeout_at(loop.time() + wait) as timeout:
                        self._timeout = timeout
                        data = await ws.recv()
                except TimeoutError:
                    # Only a timer that was still ahead when the wait began measures the
                    # generator; one already due is a state the wallbox chose to wait out.
                    if wait > 0.0 and deadline is not None and self.on_late is not None:
                        self.on_late(self.clock() - deadline)
                    continue
                finally:
                    self._timeout = None
                self.reporter.message_received()
                await self._receive(ws, data)
        except ConnectionClosed as exc:
            self._lost(f"closed {exc.rcvd.code if exc.rcvd else 1006}")

    def _dead(self, ws: Connection) -> bool:
        """The last ping went unanswered for its whole timeout: a half-open connection (a
        load balancer or NAT that dropped it silently).  Abort it and reconnect, as a real
        charger does; True when it was aborted here."""
        pong = self._pong
        self._pong_due = None
        self._pong = None
        if pong is None or pong.done():
            return False  # answered just now
        ws.transport.abort()  # no close handshake: nothing would answer it
        self._lost(PING_TIMEOUT)
        return True

    def _lost(self, reason: str, *, reconnect_after: float | None = None) -> None:
        """The connection is gone (closed, aborted, or the charger restarted)."""
        self.ws = None
        self._pong = None
        self._pong_due = None
        self._io = None
        now = self.clock()
        self.link.disconnected(now)
        self._after_link(now, 0.0)
        self.reporter.disconnected(reason)
        delay = self._backoff() if reconnect_after is None else reconnect_after
        self._reconnect_at = self.clock() + delay

    async def _flush(self, ws: Connection) -> bool:
        """Do the pings, reboot or reconnect the link asked for, then send what it has to
        send; True when the connection was closed here.

        A reboot or reconnect that a CSMS CALL caused comes out of the link with that
        CALL's answer, which :meth:`_receive` sends at once: it is out before this closes."""
        io = self._io
        if io is not None:
            self._io = None
            for effect in io:
                if isinstance(effect, SendPing):
                    await self._ping(ws, effect.pong_timeout)
                elif isinstance(effect, Reconnect):
                    # Security Whitepaper A01: close (the outbox keeps what any lost
                    # connection keeps) and connect again at once with the new password.
                    await self._close(1000, "AuthorizationKey changed")
                    self._lost(NEW_PASSWORD, reconnect_after=0.0)
                    return True
                elif isinstance(effect, UseSecurityProfile):
                    # Security Whitepaper A05.FR.06/07: disconnect, then connect with the
                    # new profile (its settings: _handshake).
                    await self._close(1000, "SecurityProfile changed")
                    self._lost(NEW_PROFILE, reconnect_after=0.0)
                    return True
                else:
                    await self._close(1001, "charger restarting")
                    self._lost("reboot", reconnect_after=effect.delay)
                    return True
        await self._send_frames(ws)
        return False

    async def _send_frames(self, ws: Connection) -> None:
        network = self.network
        for text in self.link.frames_to_send(self.clock()):
            if network is not None and network.latency[1] > 0:
                low, high = network.latency
                await asyncio.sleep(float(self._rng.uniform(low, high)))
            await ws.send(text)
            self.reporter.message_sent()

    async def _receive(self, ws: Connection, data: str | bytes) -> None:
        """One frame from the CSMS: through the link, then its answer goes out at once."""
        started = perf_counter()
        now = self.clock()
        self.link.receive_text(data, now)
        self._after_link(now, perf_counter() - started)
        await self._send_frames(ws)

    async def _ping(self, ws: Connection, pong_timeout: float) -> None:
        """Send a ping; without its pong within ``pong_timeout`` :meth:`_dead` aborts the
        connection."""
        sent = perf_counter()
        try:
            waiter = await ws.ping()
        except ConnectionClosed:
            raise
        except Exception:  # a ping still unanswered with the same payload: skip this one
            return
        reporter = self.reporter
        pong = asyncio.ensure_future(waiter)
        if self._pong is None or self._pong.done():  # an older unanswered one stays due
            self._pong = pong
            self._pong_due = self.clock() + pong_timeout

        def done(future: asyncio.Future[float]) -> None:
            if not future.cancelled() and future.exception() is None:
                reporter.ping_rtt(perf_counter() - sent)
                if self._pong is future:
                    self._pong = None
                    self._pong_due = None

        pong.add_done_callback(done)

    # ------------------------------------------------------------------ shutdown

    async def _shutdown(self) -> None:
        """Stop running transactions and give their messages (and the status notifications
        that follow them) a bounded time to go out."""
        now = self.clock()
        wb = self.wallbox
        if self.behaviour is not None:
            self.behaviour.finish(now)
        if self.settings.stop_transactions_on_shutdown:
            wb.stop_all_transactions(now, StopReason.LOCAL)
        ws = self.ws
        if ws is None:
            return
        deadline = asyncio.get_running_loop().time() + self.settings.drain_timeout
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                while self.ws is not None and self.link.undelivered():
                    self._tick(self.clock())
                    if await self._flush(ws):
                        break
                    wait = max(0.0, min((self._next_deadline() or now + 1.0) - self.clock(), 1.0))
                    try:
                        async with asyncio.timeout_at(loop.time() + wait):
                            data = await ws.recv()
                    except TimeoutError:
                        continue
                    self.reporter.message_received()
                    await self._receive(ws, data)
        except (TimeoutError, ConnectionClosed):
            pass

    async def _close(self, code: int, reason: str) -> None:
        ws = self.ws
        self.ws = None
        if ws is None:
            return
        try:
            await ws.close(code, reason)
        except Exception:  # already gone
            pass

    # ------------------------------------------------------------------ file transfers
    # Firmware Management (emulator.core.firmware): the wallbox asks for FTP transfers
    # with effects; each runs as its own task, so the pump keeps serving OCPP meanwhile,
    # and reports back with Wallbox.transfer_done.

    def _transfer_effect(self, effect: FtpUpload | FtpDownload | CancelTransfer) -> None:
        if isinstance(effect, CancelTransfer):
            task = self._transfer_tasks.pop(effect.job_id, None)
            if task is not None:
                task.cancel()
                self._abandoned.add(task)
                task.add_done_callback(self._abandoned.discard)
            return
        name = f"{self.wallbox.charge_point_id}-transfer-{effect.job_id}"
        self._transfer_tasks[effect.job_id] = asyncio.create_task(self._transfer(effect), name=name)

    async def _transfer(self, effect: FtpUpload | FtpDownload) -> None:
        wb = self.wallbox
        sha256: bytes | None = None
        failure: TransferFailure | None = None
        try:
            if isinstance(effect, FtpUpload):
                detail = await self.transfers.upload(effect.url, effect.filename, effect.data)
            elif effect.digest:  # a signed firmware: its signature is checked over the digest
                hasher = hashlib.sha256()
                detail = await self.transfers.download(effect.url, sink=hasher.update)
                sha256 = hasher.digest()
            else:
                detail = await self.transfers.download(effect.url)
            ok = True
        except TransferError as exc:
            ok, detail, failure = False, str(exc), exc.failure
        except Exception as exc:  # a bug of ours (or aioftp's) must not kill the wallbox
            log.exception("%s: transfer %r failed", wb.charge_point_id, effect)
            ok, detail = False, f"internal error ({type(exc).__name__})"
        finally:
            if self._transfer_tasks.get(effect.job_id) is asyncio.current_task():
                del self._transfer_tasks[effect.job_id]
        if log.isEnabledFor(logging.DEBUG):
            url = redact_url(effect.url)
            log.debug("%s: transfer %s %s: %s", wb.charge_point_id, url, ok, detail)
        wb.transfer_done(effect.job_id, ok, detail, self.clock(), sha256=sha256, failure=failure)
        self.wake()

    async def _stop_transfers(self) -> None:
        """Cancel every transfer still running and wait for each to end (no orphans).

        Cancelled again while one runs on: on Python 3.11 asyncio.wait_for (inside
        aioftp) can swallow a cancellation (see emulator.transport.transfers).
        """
        pending = {*self._transfer_tasks.values(), *self._abandoned}
        self._transfer_tasks.clear()
        while pending:
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=0.5)


async def open_connection(
    url: str,
    settings: ConnectionSettings,
    headers: dict[str, str],
    context: ssl.SSLContext | None,
) -> Connection:
    """One connect attempt: TCP (from the source address, if any), TLS, the upgrade."""
    if settings.transport == "picows":
        return await open_picows(
            url,
            headers=headers,
            ssl_context=context,
            open_timeout=settings.open_timeout,
            close_timeout=settings.close_timeout,
            max_size=settings.max_size,
            source_address=settings.source_address,
        )
    kwargs: dict[str, Any] = {}
    if headers:
        kwargs["additional_headers"] = headers
    if context is not None:
        kwargs["ssl"] = context
    sock: socket.socket | None = None
    if settings.source_address:
        async with asyncio.timeout(settings.open_timeout):
            sock = await bound_socket(url, settings.source_address)
        kwargs["sock"] = sock
    try:
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,  # 46 KiB -> 14 KiB per connection; OCPP frames are small
            ping_interval=None,  # WebSocketPingInterval is the wallbox's own timer
            ping_timeout=None,
            open_timeout=settings.open_timeout,
            close_timeout=settings.close_timeout,
            max_size=settings.max_size,
            max_queue=16,
            user_agent_header=None,
            logger=_WEBSOCKETS_LOG,
            **kwargs,
        )
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    # The handshake request (headers, HTTP objects: ~1.3 KiB) stays on the connection
    # for inspection only; nothing reads it after the upgrade.  (The response must
    # stay: websockets tells the handshake from later frames by `response is None`.)
    ws.request = None
    return ws


class _TickWhileConnecting:
    """Ticks a driver's wallbox at its deadlines from a loop timer while the driver's own
    coroutine waits for a handshake; :meth:`cancel` when the handshake has ended."""

    __slots__ = ("_driver", "_handle", "_loop")

    def __init__(self, driver: WallboxDriver, loop: asyncio.AbstractEventLoop) -> None:
        self._driver = driver
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        driver = self._driver
        deadline = driver._next_deadline()
        if deadline is None:
            self._handle = None
            return
        delay = max(0.0, deadline - driver.clock())
        self._handle = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        driver = self._driver
        if driver.stopping:
            self._handle = None
            return
        driver._tick(driver.clock())
        self._arm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


# What connect() raises by design (websockets.asyncio.client.connect): OSError (TCP,
# TLS), InvalidHandshake (HTTP, the upgrade, a proxy), TimeoutError (open_timeout),
# ConnectionClosed (closed before the request went out, e.g. a close_notify processed
# with the TLS handshake) and EOFError (a truncated response, websockets 14.0).  Anything
# else is a bug somewhere, logged once per type, and still only a failed attempt.
_CONNECT_ERRORS = (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, EOFError)
_unexpected_logged: set[type[BaseException]] = set()
# Reasons that, with a client certificate, mean the CSMS dropped us over it.
_TLS_CLOSED = ("handshake", "closed_during_handshake", "os_error_104", "os_error", "tls_error")


def _failure_reason(exc: BaseException) -> str:
    """A bounded label for a failed connect (metrics labels must stay bounded)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "unable to get local issuer" in (exc.verify_message or ""):
            return "tls_unknown_ca"
        if "expired" in (exc.verify_message or ""):
            return "tls_server_cert_expired"
        return "tls_verify_failed"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "CERTIFICATE_EXPIRED" in reason:
            return "tls_client_cert_expired"
        if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
            return "tls_client_cert_required"
        if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason:
            return "tls_client_cert_rejected"
        return "tls_error"
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, (ConnectionClosed, EOFError)) or (
        isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError)
    ):
        # Accepted, then closed before the upgrade completed (an overloaded CSMS or its
        # load balancer shedding load): no response, or only part of one.
        return "closed_during_handshake"
    if isinstance(exc, InvalidHandshake):
        return "handshake"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError):
        return f"os_error_{exc.errno}" if exc.errno else "os_error"
    return type(exc).__name__
