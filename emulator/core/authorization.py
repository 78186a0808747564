"""Authorization Cache and Local Authorization List (OCPP 1.6 §3.5, §5.15, §6.5).

Offline behaviour follows the reference document's remark on
AllowOfflineTxForUnknownId: "the charger will not allow any ID except in local
authentication list while it is offline" when the charger model keeps that
firmware quirk (``offline_local_list_only``); otherwise OCPP 1.6 §3.5.2 applies
(list, then cache, then AllowOfflineTxForUnknownId for unknown identifiers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from emulator.core.configuration import Configuration
from emulator.core.timefmt import parse_timestamp


class AuthorizationStatus(StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


@dataclass(frozen=True, slots=True)
class IdTagInfo:
    status: AuthorizationStatus
    expiry: float | None = None
    parent_id_tag: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdTagInfo:
        expiry = data.get("expiryDate")
        return cls(
            AuthorizationStatus(data["status"]),
            parse_timestamp(expiry) if isinstance(expiry, str) else None,
            data.get("parentIdTag"),
        )

    def valid_at(self, now: float) -> AuthorizationStatus:
        if (
            self.status is AuthorizationStatus.ACCEPTED
            and self.expiry is not None
            and now >= self.expiry
        ):
            return AuthorizationStatus.EXPIRED
        return self.status


class Decision(StrEnum):
    ACCEPT = "accept"  # start without asking the CSMS
    REJECT = "reject"
    ASK = "ask"  # send Authorize.req


class Authorizer:
    """Decides locally where it may; the Wallbox sends Authorize.req on ASK."""

    __slots__ = ("_config", "cache", "local_list", "local_list_version", "offline_local_list_only")

    def __init__(self, *, config: Configuration, offline_local_list_only: bool) -> None:
        self._config = config
        self.offline_local_list_only = offline_local_list_only
        self.cache: dict[str, IdTagInfo] = {}
        self.local_list: dict[str, IdTagInfo] = {}
        self.local_list_version = 0

    def _list_enabled(self) -> bool:
        return self._config.knows("LocalAuthListEnabled") and self._config.get_bool(
            "LocalAuthListEnabled"
        )

    def _cache_enabled(self) -> bool:
        return self._config.get_bool("AuthorizationCacheEnabled")

    def known(self, id_tag: str, now: float) -> AuthorizationStatus | None:
        """The locally known status of ``id_tag``: list first, then cache."""
        if self._list_enabled() and id_tag in self.local_list:
            return self.local_list[id_tag].valid_at(now)
        if self._cache_enabled() and id_tag in self.cache:
            return self.cache[id_tag].valid_at(now)
        return None

    def parent_of(self, id_tag: str) -> str | None:
        info = self.local_list.get(id_tag) or self.cache.get(id_tag)
        return info.parent_id_tag if info else None

    def decide(self, id_tag: str, now: float, *, online: bool) -> Decision:
        if online:
            if (
                self._config.get_bool("LocalPreAuthorize")
                and self.known(id_tag, now) is AuthorizationStatus.ACCEPTED
            ):
                return Decision.ACCEPT
            return Decision.ASK
        return self.decide_offline(id_tag, now)

    def decide_offline(self, id_tag: str, now: float) -> Decision:
        if self.offline_local_list_only:
            in_list = self._list_enabled() and id_tag in self.local_list
            ok = in_list and self.local_list[id_tag].valid_at(now) is AuthorizationStatus.ACCEPTED
            return Decision.ACCEPT if ok else Decision.REJECT
        if not self._config.get_bool("LocalAuthorizeOffline"):
            return Decision.REJECT
        status = self.known(id_tag, now)
        if status is None:
            allow = self._config.get_bool("AllowOfflineTxForUnknownId")
            return Decision.ACCEPT if allow else Decision.REJECT
        return Decision.ACCEPT if status is AuthorizationStatus.ACCEPTED else Decision.REJECT

    def learn(self, id_tag: str, info: IdTagInfo) -> None:
        """Update the cache from Authorize/StartTransaction/StopTransaction.conf (§3.5.1)."""
        if self._cache_enabled() and id_tag not in self.local_list:
            self.cache[id_tag] = info

    def clear_cache(self) -> None:
        self.cache.clear()
