"""Static description of an emulated charger model (hardware facts, not state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Variant(StrEnum):
    """Reference document §3.1 UnlockConnector: socket variants have an E-lock, cable ones don't."""

    SOCKET = "socket"
    CABLE = "cable"


class FirmwareStatusSet(StrEnum):
    """Which FirmwareStatusNotification statuses a charger sends (Firmware Management).

    ``ocpp``: every status of OCPP 1.6 §4.5 (Downloading, Downloaded, Installing, Installed
    and the failures).  ``reference``: only those the reference document lists (§3.1:
    Downloading, Installed, DownloadFailed, InstallationFailed).
    """

    OCPP = "ocpp"
    REFERENCE = "reference"


ALL_PROFILES: tuple[str, ...] = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerModel:
    """One kind of wallbox in a fleet; a scenario may mix several in proportions."""

    name: str = "ac-wallbox"
    vendor: str = "ACWallbox"
    model: str = "AC22-3P"
    firmware_version: str = "1.09.0"
    variant: Variant = Variant.SOCKET
    phases: int = 3
    max_current: float = 32.0  # A per phase, the charger's own limit
    nominal_voltage: float = 230.0
    profiles: tuple[str, ...] = ALL_PROFILES
    # Configuration defaults that differ from the reference document (validated like
    # ChangeConfiguration, so a scenario can't install a value the charger would refuse).
    configuration: dict[str, str] = field(default_factory=dict)
    # Reference §3.2.1 AllowOfflineTxForUnknownId: "the charger will not allow any ID
    # except in local authentication list while it is offline".  True emulates that
    # firmware; False gives the OCPP 1.6 behaviour (cache, list, unknown ids per key).
    # Either way LocalAuthorizeOffline = false lets no idTag start offline.
    offline_local_list_only: bool = True
    # OCPP 1.6 Security Whitepaper profile 1-3 (0: none); adds SecurityProfile and the
    # write-only AuthorizationKey to the configuration.
    security_profile: int = 0
    # The OCPP 1.6 Security Whitepaper's messages (edition 3, "Improved security for
    # OCPP 1.6-J"): SecurityEventNotification, ExtendedTriggerMessage, the certificate
    # messages and their configuration keys.  Off: those CALLs are answered NotSupported
    # and nothing of it is sent, as by the reference charger.
    security_extension: bool = False
    # What the fleet holds for a SecurityProfile raise (Security Whitepaper A05.FR.02-04;
    # emulator.core.security_profile): a Basic password for every charger, a CA file for
    # the CSMS's TLS certificate, a factory client certificate for every charger.
    fleet_password: bool = False
    fleet_ca: bool = False
    fleet_client_certificates: bool = False
    # Firmware Management (emulator.core.firmware): the FirmwareStatusNotification set,
    # the share of UpdateFirmware requests whose download / installation fails (drawn per
    # request from the wallbox's seeded generator) and how long installing takes.
    firmware_statuses: FirmwareStatusSet = FirmwareStatusSet.OCPP
    firmware_download_failure_share: float = 0.0
    firmware_install_failure_share: float = 0.0
    firmware_install_seconds: float = 5.0
