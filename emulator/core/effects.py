"""What the charger asks of the world around it: one channel of effects, in order.

The core never touches a socket, a file server or a clock, so whatever needs one comes
out of :meth:`emulator.core.wallbox.Wallbox.take_effects` (through the charger link,
:meth:`emulator.core.link.ChargerLink.take_effects`) as one list, in the order it
happened:

* :class:`SendPing`: send a websocket ping now (WebSocketPingInterval), its pong due
  within ``pong_timeout``;
* :class:`Reboot`: close the websocket (1001) and reconnect after ``delay`` seconds
  (a reset, a firmware restart, a power loss with its outage);
* :class:`Reconnect`: close the websocket (1000) once the frames the link has to send now
  are sent, and connect again at once (a new AuthorizationKey): not a restart;
* the FTP jobs of Firmware Management (:class:`~emulator.core.firmware.FtpUpload`,
  :class:`~emulator.core.firmware.FtpDownload`, :class:`~emulator.core.firmware.CancelTransfer`),
  run by the I/O layer, online or not, and reported back with ``transfer_done``;
* :class:`ClientCertificate`: the charger's new certificate chain and its key, for its
  TLS connections from now on (security profile 3; Security Whitepaper A02);
* :class:`UseSecurityProfile`: connect with this security profile from now on; when
  connected, close (1000) once the answers are out and connect again at once (a
  SecurityProfile raise, or its fallback);
* :class:`Event`: what happened, for the session behaviour and the fleet (a boot was
  accepted, a transaction started, a connector's status changed...).

Every effect is a frozen dataclass; the I/O layer matches on the type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from emulator.core.firmware import CancelTransfer, FtpDownload, FtpUpload


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
    """Something happened on ``connector_id`` (0: the charger itself)."""

    kind: EventKind
    connector_id: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a websocket ping; without its pong within ``pong_timeout`` seconds the
    connection is dead (a half-open one): abort it and reconnect."""

    pong_timeout: float


@dataclass(frozen=True, slots=True)
class Reboot:
    """The charger restarts: close the connection now, connect again after ``delay`` s."""

    delay: float


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the connection normally (1000) and connect again at once, with the password
    the configuration holds now.

    OCPP 1.6 Security Whitepaper A01 (Update Charge Point Password), scenario steps 2-4:
    the charger answers the ChangeConfiguration.req Accepted, "disconnects its current
    connection (storing any queued messages)" and "connects to the Central System with the
    new password".  So the I/O layer sends the frames the link has to send (that
    CALLRESULT) before it closes.  Not a restart: transactions go on, queued messages stay
    queued (the outbox keeps what any lost connection keeps) and no BootNotification
    follows, as after any reconnect of an accepted charger."""


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """Use this certificate chain (PEM, the charger's own certificate first) and private
    key (PKCS #8 PEM) as the TLS client certificate of this charger's next connections.

    OCPP 1.6 Security Whitepaper A02.FR.08: "switch to the new certificate" once it is
    valid (the core checked that, emulator.core.certificates); A00.FR.402: the Charge
    Point certificate is the TLS client certificate of security profile 3.  The open
    connection stays (a connection may outlive a certificate, §2.6.3).  The key is a
    secret of this charger (A02.FR.05): never shown, logged or sent anywhere else."""

    certificate_chain: str
    private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class UseSecurityProfile:
    """Connect with security profile ``profile`` (Security Whitepaper §2) from now on.

    A05 (Upgrade Charge Point Security Profile), steps 4-6: after the Accepted answer the
    charger disconnects and connects with the new profile (A05.FR.06/07); when it cannot,
    it falls back to the previous one (A05.FR.08), which is this effect again with the old
    profile.  The I/O layer knows how: ``ws://`` and Basic authentication for 1, ``wss://``
    and Basic for 2, ``wss://`` and the client certificate for 3.  An open connection is
    closed (1000) once the frames the link has to send now are out, and the charger
    connects again at once; offline, the next connection uses it.  Not a restart, as
    :class:`Reconnect`.  ``central_system_roots``: the CentralSystemRootCertificates the
    charger has installed (PEM, M05), trusted for the CSMS's TLS certificate besides the
    fleet's CA file."""

    profile: int
    central_system_roots: tuple[str, ...] = ()


Effect = (
    SendPing
    | Reboot
    | Reconnect
    | UseSecurityProfile
    | FtpUpload
    | FtpDownload
    | CancelTransfer
    | ClientCertificate
    | Event
)
"""Everything :meth:`~emulator.core.wallbox.Wallbox.take_effects` may return."""
