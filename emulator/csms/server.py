"""The embedded reference CSMS: an OCPP 1.6J websocket server for tests and `ocpp-fleet run`.

This layer only pumps frames between websockets and the sans-I/O
:class:`~emulator.csms.central_system.CentralSystem`, matches answers to CSMS-initiated
calls (OCPP-J 1.6 §4.1.1: one outstanding CALL per direction, so calls to one charger
are serialised) and applies the test hook's :mod:`~emulator.csms.misbehaviour`.

Charge points connect to ``ws://host:port/<anything>/<chargerId>`` offering the
``ocpp1.6`` subprotocol (OCPP-J 1.6 §3.1); a handshake without it is refused with HTTP
400 by websockets. With ``basic_auth`` the username must be the charger id and the
password the table's (OCPP 1.6 security whitepaper, profile 1); otherwise HTTP 401. Once
a charger answers a ChangeConfiguration AuthorizationKey sent through :meth:`call` with
Accepted, the password is the bytes that key stands for, and the old one is refused
(Security Whitepaper A01.FR.03); passwords are compared as bytes, so a binary key works.
With ``known_chargers`` (an identities file's ids) any other id is refused with HTTP 404
before its password is looked at, as a CSMS refuses ids it has not registered (SteVe:
"ChargeBoxId ... is not recognized").

With ``service_time`` the CSMS has a known capacity: charger-initiated CALLs are served
one at a time from a single FIFO queue (:mod:`emulator.csms.service`), while connections,
reading and the CSMS's own calls go on. :attr:`ReferenceCsms.served` counts what it served.

Security whitepaper (edition 3) A02/A03: a SignCertificate.req whose CSR the
:class:`~emulator.csms.certificate_authority.CertificateAuthority` signs is answered
Accepted, and the CertificateSigned.req with the chain follows as soon as the answer is
out (through :meth:`ReferenceCsms.call`, so after any CSMS call already outstanding); the
charger's answers are counted in its record. With ``ssl`` that requires client
certificates, the CA's certificate is added to the trusted ones, so a charger may connect
with the certificate it was just given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from http import HTTPStatus
from ssl import CERT_REQUIRED, SSLContext
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.headers import build_www_authenticate_basic
from websockets.http11 import Request, Response
from websockets.typing import Data, Subprotocol

from emulator.csms.central_system import CentralSystem, DataTransferHandler, IdTagEntry
from emulator.csms.certificate_authority import CertificateAuthority
from emulator.csms.misbehaviour import (
    AnswerCallError,
    AnswerGarbage,
    Delay,
    DropConnection,
    Misbehaviour,
    Silence,
)
from emulator.csms.records import ChargerRecord, CsmsLedger
from emulator.csms.service import Served, ServiceQueue
from emulator.protocol.authorization_key import KEY_NAME, key_bytes
from emulator.protocol.codec import (
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    MessageTypeId,
    UniqueIdGenerator,
    decode,
    encode_call,
    encode_error,
    encode_result,
)
from emulator.protocol.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from emulator.protocol.redaction import websockets_logger
from emulator.protocol.schemas import SchemaRegistry

__all__ = [
    "CallErrorReceived",
    "ChargerNotConnected",
    "MisbehaviourHook",
    "ReferenceCsms",
    "basic_credentials",
    "charger_id_from_path",
    "serve_forever",
]

_log = logging.getLogger("emulator.csms")

OCPP16: Final = Subprotocol("ocpp1.6")

MisbehaviourHook = Callable[[str, Call], Misbehaviour | None]


class CallErrorReceived(Exception):
    """The charger answered a CSMS-initiated CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details: dict[str, Any] = details or {}


class ChargerNotConnected(KeyError):
    """No open connection for this charger id (or it closed while a call was pending)."""

    def __init__(self, charger_id: str) -> None:
        super().__init__(charger_id)
        self.charger_id = charger_id

    def __str__(self) -> str:
        return f"charger {self.charger_id!r} is not connected"


def charger_id_from_path(path: str) -> str:
    """The last segment of the request path, percent-decoded ("" if there is none)."""
    return unquote(path.partition("?")[0].rpartition("/")[2])


def basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """The username and password of an HTTP Basic Authorization header, as bytes (RFC
    7617 §2: base64 of user-id ":" password), or None if it is not one.

    Not websockets' ``parse_authorization_basic``: it decodes them as UTF-8 and fails on
    a password of random bytes, which an AuthorizationKey may be (Security Whitepaper
    §7.2).  The user-id cannot contain a colon (RFC 7617), so it ends at the first."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return username, password


class _Session:
    """One open websocket of one charger."""

    __slots__ = (
        "charger_id",
        "closed",
        "delayed",
        "key_changes",
        "lock",
        "pending",
        "record",
        "tasks",
        "ws",
    )

    def __init__(self, *, charger_id: str, ws: ServerConnection, record: ChargerRecord) -> None:
        self.charger_id = charger_id
        self.ws = ws
        self.record = record
        self.closed = False
        # OCPP-J allows one outstanding CALL per direction; the lock enforces it, the
        # dict matches answers by unique id (so a late answer to a timed-out call is
        # recognised as unmatched rather than taken for the next call's).
        self.lock = asyncio.Lock()
        self.pending: dict[str, asyncio.Future[Frame]] = {}
        self.delayed: set[asyncio.Task[None]] = set()
        self.tasks: asyncio.TaskGroup | None = None
        # ChangeConfiguration AuthorizationKey calls awaiting their answer: unique id ->
        # the password the charger will use once it answers Accepted (None: none pending).
        self.key_changes: dict[str, bytes] | None = None


class ReferenceCsms:
    """A small, strict, observable OCPP 1.6J CSMS (not a product: no persistence).

    Use as ``async with ReferenceCsms() as csms:``; chargers connect to
    ``f"{csms.url}/{charger_id}"``. :attr:`chargers` and :attr:`ledger` record what was
    received; :meth:`call` sends CSMS-initiated CALLs. The behaviour knobs
    (``boot_status``, ``heartbeat_interval``, ...) live on :attr:`central` and may be
    changed while running; :attr:`misbehave` may be set at any time.

    ``service_time`` (seconds) gives the CSMS a known capacity of 1/service_time CALLs per
    second. Charger-initiated CALLs, from all chargers, wait in one queue in arrival
    order and are handled one at a time; each answer goes out when its service ends
    (:mod:`emulator.csms.service`). Handshakes, reading, malformed frames and the answers
    to :meth:`call` are not queued. :meth:`stop` and :meth:`restart` drop the queue, as
    a crash would. Without ``service_time`` every CALL is answered as soon as it is read.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval: int = 60,
        boot_status: str = "Accepted",
        id_tags: Mapping[str, IdTagEntry] | None = None,
        unknown_tag_status: str = "Accepted",
        call_timeout: float = 30.0,
        basic_auth: Mapping[str, str] | None = None,
        known_chargers: Collection[str] | None = None,
        data_transfer_vendors: Mapping[str, DataTransferHandler] | None = None,
        registry: SchemaRegistry | None = None,
        misbehave: MisbehaviourHook | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        call_all_concurrency: int = 64,
        ssl: SSLContext | None = None,
        service_time: float | None = None,
        certificate_authority: CertificateAuthority | None = None,
    ) -> None:
        if service_time is not None and not (0.0 < service_time and math.isfinite(service_time)):
            raise ValueError(f"service_time must be a positive number of seconds: {service_time}")
        self.central = CentralSystem(
            registry=registry,
            heartbeat_interval=heartbeat_interval,
            boot_status=boot_status,
            id_tags=id_tags,
            unknown_tag_status=unknown_tag_status,
            data_transfer_vendors=data_transfer_vendors,
            certificate_authority=certificate_authority,
        )
        self.registry = self.central.registry
        self.call_timeout = call_timeout
        self.misbehave: MisbehaviourHook | None = misbehave
        self._host = host
        self._port = port
        self._basic_auth = basic_auth  # any Mapping: .get(charger id) -> password
        self._known = None if known_chargers is None else frozenset(known_chargers)
        # Passwords set by an Accepted ChangeConfiguration AuthorizationKey: they replace
        # the charger's password in basic_auth (Security Whitepaper A01.FR.03).
        self._changed_keys: dict[str, bytes] = {}
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._call_all_concurrency = call_all_concurrency
        # TLS (security profiles 2 and 3); with CERT_REQUIRED the client certificate's
        # commonName must be the charger id (Security Whitepaper §2.4).
        self._ssl = ssl
        self._server: Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._ids = UniqueIdGenerator(prefix="csms-")
        self._debug = False
        # What was served (see `served`): CALLs per action, and the queue if there is one.
        self._service_time = service_time
        self._queue: ServiceQueue[tuple[_Session, Call]] | None = (
            None if service_time is None else ServiceQueue(service_time, self._serve)
        )
        self._answering: set[asyncio.Task[None]] = set()
        self._calls: Counter[str] = Counter()
        self._served = 0  # CALLs handled at once (no service time)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = 0.0  # loop time of the first start
        self._stopped: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; returns once the port is bound (see :attr:`url`)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._debug = _log.isEnabledFor(logging.DEBUG)
        if self._ssl is not None and self._ssl.verify_mode == CERT_REQUIRED:
            # Certificates this CSMS's CA signs (CertificateSigned) must open profile 3
            # connections too (A02.FR.08: the charger switches to them at once).
            self._ssl.load_verify_locations(cadata=self.central.certificate_authority.root_pem)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._started = self._loop.time()
        self._stopped = None
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            subprotocols=[OCPP16],
            compression=None,  # 14 KiB per connection instead of 64 (ARCHITECTURE.md)
            process_request=self._process_request,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=self._close_timeout,
            ssl=self._ssl,
            # At DEBUG websockets would print Basic headers and AuthorizationKey frames.
            logger=websockets_logger("websockets.server"),
        )
        sockname = self._server.sockets[0].getsockname()
        self._port = sockname[1]

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening.

        CALLs still waiting for service are dropped unanswered."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        await self._drop_queue()
        if self._loop is not None and self._stopped is None:
            self._stopped = self._loop.time()

    async def restart(self, *, down_for: float) -> None:
        """Go away like a crashed or redeployed CSMS, and come back on the same port.

        Every charger loses its connection at once; what follows is the mass reconnect
        (with the chargers' jittered backoff) a real restart causes.  The ledger and
        charger records survive, as a CSMS's database would; CALLs waiting for service
        (with ``service_time``) are lost, as its memory would be. :attr:`served` goes on
        counting.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()  # closes every connection (1001)
            await server.wait_closed()
        await self._drop_queue()
        await asyncio.sleep(down_for)
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (the real one once started with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port/ocpp``; a charger appends ``/<chargerId>``."""
        host = self._host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{host}:{self._port}/ocpp"

    # -- observation -----------------------------------------------------------------

    @property
    def chargers(self) -> Mapping[str, ChargerRecord]:
        """Every charger seen, connected or not."""
        return self.central.chargers

    @property
    def ledger(self) -> CsmsLedger:
        return self.central.ledger

    @property
    def connected(self) -> frozenset[str]:
        """Ids of the chargers with an open connection."""
        return frozenset(self._sessions)

    @property
    def service_time(self) -> float | None:
        """Seconds each charger-initiated CALL takes to serve, or None (answer at once)."""
        return self._service_time

    @property
    def served(self) -> Served:
        """A snapshot of what was served since the first :meth:`start`.

        These are CALLs per action, CALLs served, busy seconds and the queue length. The
        difference of two snapshots is a window: ``(later - earlier).utilisation``."""
        loop, queue = self._loop, self._queue
        now = self._started if loop is None else loop.time()
        end = now if self._stopped is None else self._stopped
        return Served(
            elapsed=end - self._started,
            calls=dict(self._calls),
            served=self._served + (0 if queue is None else queue.served),
            busy=0.0 if queue is None else queue.busy(end),
            waiting=0 if queue is None else len(queue),
        )

    @property
    def schema_violations(self) -> int:
        """CALLs answered with a CALLERROR because of their payload or action, fleet-wide."""
        return sum(record.schema_violations for record in self.central.chargers.values())

    # The OCPP timeouts below are protocol values, part of the API, not cancel scopes.
    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``predicate()`` is true; raise TimeoutError after ``timeout`` s.

        Re-checked after every message, connection and disconnection, and at least every
        0.1 s (for predicates on state this server does not own).
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.add(waiter)
                try:
                    await asyncio.wait((waiter,), timeout=0.1)
                finally:
                    self._waiters.discard(waiter)

    def _notify(self) -> None:
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    # -- CSMS-initiated calls ----------------------------------------------------------

    async def call(
        self,
        charger_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        check_request: bool = True,
    ) -> dict[str, Any]:
        """Send a CALL to a connected charger and return its CALLRESULT payload.

        The response is validated against ``<action>Response.json``
        (:class:`RemoteProtocolError` if it fails). Raises :class:`CallErrorReceived` on
        a CALLERROR, :class:`TimeoutError` after ``timeout`` (default ``call_timeout``;
        includes waiting for an earlier call to the same charger), and
        :class:`ChargerNotConnected` (a KeyError) if the charger is not, or no longer,
        connected. ``check_request=False`` sends a payload that fails its schema, to test
        the charger's validation; otherwise such a payload raises LocalProtocolError.
        """
        if check_request:
            try:
                self.registry.validate_request(action, payload)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"invalid {action}.req: {exc.description}") from exc
        session = self._sessions.get(charger_id)
        if session is None:
            raise ChargerNotConnected(charger_id)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.call_timeout if timeout is None else timeout):
            async with session.lock:
                if session.closed:
                    raise ChargerNotConnected(charger_id)
                unique_id = self._ids()
                future: asyncio.Future[Frame] = loop.create_future()
                session.pending[unique_id] = future
                self._expect_key_change(session, unique_id, action, payload)
                try:
                    if self._debug:
                        _log.debug("> %s %s %s", charger_id, unique_id, action)
                    try:
                        await session.ws.send(encode_call(unique_id, action, payload))
                    except ConnectionClosed:
                        raise ChargerNotConnected(charger_id) from None
                    frame = await future
                finally:
                    session.pending.pop(unique_id, None)
                    if session.key_changes is not None:
                        session.key_changes.pop(unique_id, None)
        if isinstance(frame, CallError):
            raise CallErrorReceived(frame.code, frame.description, frame.details)
        assert isinstance(frame, CallResult)  # only CALLRESULT / CALLERROR resolve a call
        try:
            self.registry.validate_response(action, frame.payload)
        except RemoteProtocolError:
            session.record.response_violations += 1
            raise
        return frame.payload

    async def call_all(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        charger_ids: Iterable[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        concurrency: int | None = None,
        check_request: bool = True,
    ) -> dict[str, dict[str, Any] | Exception]:
        """:meth:`call` every connected charger (or ``charger_ids``), at most
        ``concurrency`` at once; each result is the payload or the exception raised."""
        if check_request:
            try:
                self.registry.validate_request(action, payload)
            except RemoteProtocolError as exc:
                raise LocalProtocolError(f"invalid {action}.req: {exc.description}") from exc
        ids = list(self._sessions if charger_ids is None else charger_ids)
        results: dict[str, dict[str, Any] | Exception] = {}
        todo = iter(ids)

        async def worker() -> None:
            for charger_id in todo:
                try:
                    results[charger_id] = await self.call(
                        charger_id, action, payload, timeout=timeout, check_request=False
                    )
                except Exception as exc:
                    results[charger_id] = exc

        workers = min(len(ids), concurrency or self._call_all_concurrency)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
        return {charger_id: results[charger_id] for charger_id in ids}

    async def send_raw(self, charger_id: str, text: str) -> None:
        """Send any text to a charger (to test its handling of broken frames)."""
        session = self._sessions.get(charger_id)
        if session is None:
            raise ChargerNotConnected(charger_id)
        try:
            await session.ws.send(text)
        except ConnectionClosed:
            raise ChargerNotConnected(charger_id) from None

    async def disconnect(self, charger_id: str, *, graceful: bool = True) -> None:
        """Close a charger's connection (1000), or abort its TCP connection."""
        session = self._sessions.get(charger_id)
        if session is None:
            raise ChargerNotConnected(charger_id)
        if graceful:
            await session.ws.close()
        else:
            session.ws.transport.abort()

    # -- connections -----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = charger_id_from_path(request.path)
        if not charger_id:
            return connection.respond(HTTPStatus.NOT_FOUND, "No charge point id in the path\n")
        if self._known is not None and charger_id not in self._known:
            return connection.respond(
                HTTPStatus.NOT_FOUND, "This charge point id is not registered\n"
            )
        if self._ssl is not None and self._ssl.verify_mode == CERT_REQUIRED:
            peer = connection.transport.get_extra_info("peercert") or {}
            names = [
                value
                for rdn in peer.get("subject", ())
                for key, value in rdn
                if key == "commonName"
            ]
            if charger_id not in names:
                return connection.respond(
                    HTTPStatus.FORBIDDEN, "Client certificate is not for this charge point\n"
                )
        if self._basic_auth is not None and not self._authorised(charger_id, request):
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials\n")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic("ocpp-fleet")
            return response
        return None

    def _authorised(self, charger_id: str, request: Request) -> bool:
        """The Basic credentials are the charger id and its password, compared as bytes:
        the AuthorizationKey it accepted last, else its ``basic_auth`` entry (UTF-8)."""
        assert self._basic_auth is not None
        expected = self._changed_keys.get(charger_id)
        if expected is None:
            password = self._basic_auth.get(charger_id)
            if password is None:
                return False
            expected = password.encode("utf-8", "surrogateescape")
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            return False
        username, secret = credentials
        return hmac.compare_digest(
            username, charger_id.encode("utf-8", "surrogateescape")
        ) & hmac.compare_digest(secret, expected)

    def _expect_key_change(
        self, session: _Session, unique_id: str, action: str, payload: dict[str, Any]
    ) -> None:
        """Remember a ChangeConfiguration AuthorizationKey on its way to the charger, when
        this CSMS checks passwords: :meth:`_key_answered` applies it once it is Accepted."""
        if (
            self._basic_auth is None
            or action != "ChangeConfiguration"
            or payload.get("key") != KEY_NAME
            or not isinstance(payload.get("value"), str)
        ):
            return
        if session.key_changes is None:
            session.key_changes = {}
        session.key_changes[unique_id] = key_bytes(payload["value"])

    def _key_answered(self, session: _Session, frame: Frame) -> None:
        """The charger answered a ChangeConfiguration AuthorizationKey.  Accepted: from now
        on only the new key is its password (A01.FR.03); otherwise the old one stays
        (A01.FR.04).  Applied as the answer is read, before :meth:`call` returns and before
        the charger, which reconnects at once with the new key, can open its next
        connection."""
        assert session.key_changes is not None
        new_key = session.key_changes.pop(frame.unique_id, None)
        if (
            new_key is not None
            and isinstance(frame, CallResult)
            and frame.payload.get("status") == "Accepted"
        ):
            self._changed_keys[session.charger_id] = new_key

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charger_id = charger_id_from_path(ws.request.path)
        previous = self._sessions.get(charger_id)
        if previous is not None:
            # The charger reconnected before we noticed the old socket died: the new
            # connection wins, as a CSMS must route CALLs to the live one.
            previous.ws.transport.abort()
        session = _Session(charger_id=charger_id, ws=ws, record=self.central.connected(charger_id))
        self._sessions[charger_id] = session
        if self._debug:
            _log.debug("= %s connected", charger_id)
        self._notify()
        try:
            async with asyncio.TaskGroup() as tasks:
                session.tasks = tasks
                try:
                    async for message in ws:
                        await self._on_message(session, message)
                except ConnectionClosed:
                    pass
                finally:
                    for task in session.delayed:
                        task.cancel()
        finally:
            session.closed = True
            for future in session.pending.values():
                if not future.done():
                    future.set_exception(ChargerNotConnected(charger_id))
            current = self._sessions.get(charger_id) is session
            if current:
                del self._sessions[charger_id]
            self.central.disconnected(charger_id, replaced=not current)
            if self._debug:
                _log.debug("= %s disconnected", charger_id)
            self._notify()

    async def _on_message(self, session: _Session, message: Data) -> None:
        try:
            frame = decode(message)
        except FrameError as exc:
            session.record.frame_errors += 1
            if self._debug:
                _log.debug("! %s %s", session.charger_id, exc)
            if exc.answerable:
                assert exc.unique_id is not None
                await self._send(session, encode_error(exc.unique_id, exc.code, exc.description))
            elif exc.unique_id is not None and exc.message_type_id in (
                MessageTypeId.CALLRESULT,
                MessageTypeId.CALLERROR,
            ):
                future = session.pending.get(exc.unique_id)
                if future is not None and not future.done():
                    future.set_exception(exc)
            self._notify()
            return
        if type(frame) is Call:
            await self._on_call(session, frame)
        else:
            if self._debug:
                _log.debug("< %s %s", session.charger_id, frame)
            future = session.pending.get(frame.unique_id)
            if future is None or future.done():
                session.record.unmatched_results += 1
            else:
                if session.key_changes:
                    self._key_answered(session, frame)
                future.set_result(frame)
        self._notify()

    async def _on_call(self, session: _Session, call: Call) -> None:
        if self._debug:
            _log.debug("< %s %s %s", session.charger_id, call.unique_id, call.action)
        self._calls[call.action] += 1
        if self._queue is not None:
            # Served later, in arrival order; meanwhile this connection is read on.
            self._queue.arrive((session, call))
            return
        self._served += 1
        await self._answer(session, call)

    def _serve(self, item: tuple[_Session, Call]) -> None:
        """The service of a queued CALL is complete: handle it and answer, in a task so
        that a slow socket or a graceful close cannot hold up the queue.

        Tasks run their first step in the order they were created. That step handles the
        CALL and writes the answer to the socket, so answers keep the queue's order. A
        CALL whose connection has closed meanwhile is still handled, like one whose answer
        was lost; a retransmission after the reconnect is recognised as one."""
        assert self._loop is not None
        task = self._loop.create_task(self._answer(*item))
        self._answering.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._answering.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("! answering a CALL failed", exc_info=exc)
        self._notify()  # the CALL changed the state wait_until looks at

    async def _drop_queue(self) -> None:
        """Forget the CALLs waiting for service (the connections are closed by now)."""
        if self._queue is not None and self._loop is not None:
            dropped = self._queue.clear(self._loop.time())
            if dropped:
                _log.info("= %d CALLs dropped from the queue unanswered", dropped)
        # CALLs already served are still handled; their answers fail at once on the
        # closed connections. Only a task stuck anyway is cancelled.
        if self._answering:
            _, stuck = await asyncio.wait(set(self._answering), timeout=self._close_timeout)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)

    async def _answer(self, session: _Session, call: Call) -> None:
        hook = self.misbehave
        misbehaviour = hook(session.charger_id, call) if hook is not None else None
        reply: str | None
        follow_ups: list[tuple[str, dict[str, Any]]] = []
        if type(misbehaviour) is AnswerCallError:
            self.central.count_call(session.record, call)
            reply = encode_error(call.unique_id, misbehaviour.code, misbehaviour.description)
        else:
            try:
                payload = self.central.handle_call(session.charger_id, call)
                reply = encode_result(call.unique_id, payload)
                follow_ups = self.central.take_follow_ups(session.charger_id)
            except RemoteProtocolError as exc:
                reply = encode_error(call.unique_id, exc.code, exc.description, exc.details)
            except Exception:
                # A bug here or in a DataTransfer handler: tell the charger, keep serving.
                _log.exception("! %s %s failed", session.charger_id, call.action)
                reply = encode_error(
                    call.unique_id, ErrorCode.INTERNAL_ERROR, f"{call.action} handler failed"
                )
            if misbehaviour is not None:
                if type(misbehaviour) is Silence:
                    reply = None
                elif type(misbehaviour) is AnswerGarbage:
                    reply = misbehaviour.text
                elif type(misbehaviour) is DropConnection:
                    if misbehaviour.graceful:
                        await session.ws.close(1011, "reference CSMS told to drop")
                    else:
                        session.ws.transport.abort()
                    self._follow_up(session, follow_ups)  # counted as not connected
                    return
                elif type(misbehaviour) is Delay:
                    assert reply is not None
                    self._in_session(
                        session,
                        self._send_later(session, reply, misbehaviour.seconds, follow_ups),
                    )
                    return
        if reply is not None:
            await self._send(session, reply)
        self._follow_up(session, follow_ups)

    def _in_session(self, session: _Session, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` as a task of the charger's connection, cancelled when it closes;
        False (and ``work`` closed unrun) if the connection is already gone."""
        if session.closed or session.tasks is None:  # served after the charger went
            work.close()
            return False
        task = session.tasks.create_task(work)
        session.delayed.add(task)
        task.add_done_callback(session.delayed.discard)
        return True

    async def _send_later(
        self,
        session: _Session,
        text: str,
        delay: float,
        follow_ups: list[tuple[str, dict[str, Any]]],
    ) -> None:
        await asyncio.sleep(delay)
        await self._send(session, text)
        self._follow_up(session, follow_ups)

    def _follow_up(self, session: _Session, follow_ups: list[tuple[str, dict[str, Any]]]) -> None:
        """Send the CALLs the answered CALL calls for (CertificateSigned.req after an
        Accepted SignCertificate.req), each in its own task of the connection."""
        for action, payload in follow_ups:
            if not self._in_session(session, self._deliver(session, action, payload)):
                _count(session.record.certificate_signed_answers, "not connected")

    async def _deliver(self, session: _Session, action: str, payload: dict[str, Any]) -> None:
        """One follow-up CALL; its outcome is counted, never raised (it would end the
        connection's task group).  The payload is not logged: it may carry a certificate."""
        answers = session.record.certificate_signed_answers
        try:
            answer = await self.call(session.charger_id, action, payload)
        except CallErrorReceived as exc:
            _count(answers, f"CALLERROR {exc.code}")
        except ChargerNotConnected:
            _count(answers, "not connected")
        except TimeoutError:
            _count(answers, "timeout")
        except RemoteProtocolError:
            _count(answers, "invalid answer")
        except asyncio.CancelledError:
            _count(answers, "not connected")  # the connection closed meanwhile
            raise
        except Exception as exc:
            _log.error("! %s %s failed: %s", session.charger_id, action, type(exc).__name__)
            _count(answers, type(exc).__name__)
        else:
            _count(answers, str(answer.get("status", "answered")))

    async def _send(self, session: _Session, text: str) -> None:
        if self._debug:
            _log.debug("> %s %s", session.charger_id, text[:200])
        try:
            await session.ws.send(text)
        except ConnectionClosed:
            pass


def _count(counts: dict[str, int], label: str) -> None:
    counts[label] = counts.get(label, 0) + 1


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[ReferenceCsms], None] | None = None,
    **options: Any,
) -> None:
    """Run a :class:`ReferenceCsms` until cancelled (for ``ocpp-fleet csms --port PORT``).

    Prints nothing: ``on_ready(csms)`` is called once listening, e.g. to print
    ``csms.url``. ``options`` are :class:`ReferenceCsms` keyword arguments. On
    cancellation the server closes its connections and the CancelledError propagates
    (swallowing it would break ``asyncio.timeout`` and TaskGroup around the caller).
    """
    async with ReferenceCsms(host=host, port=port, **options) as csms:
        if on_ready is not None:
            on_ready(csms)
        await asyncio.get_running_loop().create_future()
