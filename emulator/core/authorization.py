"""Authorization Cache and Local Authorization List (OCPP 1.6 §3.5, §5.15, §6.5).

Offline behaviour follows the reference document's remark on
AllowOfflineTxForUnknownId: "the charger will not allow any ID except in local
authentication list while it is offline" when the charger model keeps that
firmware quirk (``offline_local_list_only``); otherwise OCPP 1.6 §3.5.2 applies
(list, then cache, then AllowOfflineTxForUnknownId for unknown identifiers).  Either
way LocalAuthorizeOffline false lets no identifier start offline.

idTags are compared case-insensitively everywhere (IdToken is a CiString20Type); the
list and the cache are :class:`IdTagMap` mappings, which keep each tag as it was given.

The Local Authorization List is managed by SendLocalList and GetLocalListVersion
(OCPP 1.6 §5.10, §5.15) within the reference document's limits (§3.1 SendLocalList:
"Each list is limited to 5 ID tag, each ID tag with max 20 characters; The charger has
a total limit of 20 ID tags", i.e. SendLocalListMaxLength and LocalAuthListMaxLength).
Like the configuration it lives in the charger's flash: it survives resets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from emulator.core.configuration import Configuration
from emulator.protocol.timefmt import parse_timestamp


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
    def from_json(cls, data: Mapping[str, Any]) -> IdTagInfo:
        """Parse an idTagInfo; ``ValueError`` for an unreadable expiryDate (SendLocalList
        answers ``Failed`` then)."""
        expiry = data.get("expiryDate")
        return cls(
            AuthorizationStatus(data["status"]),
            parse_timestamp(expiry) if isinstance(expiry, str) else None,
            data.get("parentIdTag"),
        )

    @classmethod
    def from_answer(cls, data: Mapping[str, Any]) -> IdTagInfo:
        """The idTagInfo of an Authorize / StartTransaction / StopTransaction.conf: never
        raises into the callback that must decide.  An expiryDate the charger cannot read
        counts as already past (the tag is Expired), the cautious reading of an answer
        that says the authorization ends at some unknown time."""
        try:
            return cls.from_json(data)
        except ValueError:
            return cls(AuthorizationStatus(data["status"]), -math.inf, data.get("parentIdTag"))

    def valid_at(self, now: float) -> AuthorizationStatus:
        if (
            self.status is AuthorizationStatus.ACCEPTED
            and self.expiry is not None
            and now >= self.expiry
        ):
            return AuthorizationStatus.EXPIRED
        return self.status


ID_TAG_MAX = 20
"""OCPP 1.6 IdToken is CiString20Type; reference §3.1: "each ID tag with max 20 characters"."""


def tag_key(id_tag: str) -> str:
    """What two idTags are compared by: OCPP 1.6 IdToken is a CiString20Type, a
    case-insensitive string; ``alice`` and ``ALICE`` are the same card."""
    return id_tag.casefold()


def same_tag(a: str | None, b: str | None) -> bool:
    """Case-insensitive equality of two idTags (or parentIdTags); None equals only None."""
    if a is None or b is None:
        return a is b
    return a == b or a.casefold() == b.casefold()


class IdTagMap(MutableMapping[str, IdTagInfo]):
    """idTag -> IdTagInfo, looked up case-insensitively (CiString20), iterated with each
    tag as it was first given: the charger sends a tag as it was presented."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, IdTagInfo] | None = None) -> None:
        self._items: dict[str, tuple[str, IdTagInfo]] = {}
        if items:
            self.update(items)

    def __getitem__(self, id_tag: str) -> IdTagInfo:
        return self._items[tag_key(id_tag)][1]

    def __setitem__(self, id_tag: str, info: IdTagInfo) -> None:
        key = tag_key(id_tag)
        old = self._items.get(key)
        self._items[key] = (id_tag if old is None else old[0], info)

    def __delitem__(self, id_tag: str) -> None:
        del self._items[tag_key(id_tag)]

    def __contains__(self, id_tag: object) -> bool:
        return isinstance(id_tag, str) and tag_key(id_tag) in self._items

    def __iter__(self) -> Iterator[str]:
        return (tag for tag, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"IdTagMap({dict(self.items())!r})"

    def copy(self) -> IdTagMap:
        new = IdTagMap()
        new._items = dict(self._items)
        return new


class UpdateStatus(StrEnum):
    """SendLocalList.conf status (OCPP 1.6 §7.46 UpdateStatus)."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


class Decision(StrEnum):
    ACCEPT = "accept"  # start without asking the CSMS
    REJECT = "reject"
    ASK = "ask"  # send Authorize.req


class Authorizer:
    """Decides locally where it may; the Wallbox sends Authorize.req on ASK."""

    __slots__ = (
        "_config",
        "cache",
        "last_list_failure",
        "local_list",
        "local_list_version",
        "offline_local_list_only",
    )

    def __init__(self, *, config: Configuration, offline_local_list_only: bool) -> None:
        self._config = config
        self.offline_local_list_only = offline_local_list_only
        self.cache = IdTagMap()  # case-insensitive, like every idTag comparison here
        self.local_list = IdTagMap()
        self.local_list_version = 0
        self.last_list_failure = ""  # why the last SendLocalList was not Accepted

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

    def info_of(self, id_tag: str) -> IdTagInfo | None:
        """What the list (first) or the cache knows of ``id_tag``, enabled or not."""
        return self.local_list.get(id_tag) or self.cache.get(id_tag)

    def parent_of(self, id_tag: str) -> str | None:
        info = self.info_of(id_tag)
        return info.parent_id_tag if info else None

    def known_parent(self, id_tag: str) -> str | None:
        """The idTag's parentIdTag as the list or cache knows it ("" for none), None if the
        tag is unknown here (an Authorize.conf would tell)."""
        info = self.info_of(id_tag)
        if info is None:
            return None
        return info.parent_id_tag or ""

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
        """Offline (or no answer to Authorize.req): may ``id_tag`` start?

        LocalAuthorizeOffline false: nobody (the list and the cache are not used offline,
        and in the reference mode nothing else is).  Reference mode
        (``offline_local_list_only``): only an Accepted, unexpired entry of the enabled
        Local Authorization List, whatever AllowOfflineTxForUnknownId says ("the charger
        will not allow any ID except in local authentication list while it is offline").
        """
        if not self._config.get_bool("LocalAuthorizeOffline"):
            return Decision.REJECT
        if self.offline_local_list_only:
            in_list = self._list_enabled() and id_tag in self.local_list
            ok = in_list and self.local_list[id_tag].valid_at(now) is AuthorizationStatus.ACCEPTED
            return Decision.ACCEPT if ok else Decision.REJECT
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

    # --- Local Authorization List management (OCPP 1.6 §5.10, §5.15) ---

    def list_version(self) -> int:
        """GetLocalListVersion.conf listVersion (OCPP 1.6 §5.10).

        "A version number of 0 (zero) SHALL be used to indicate that the local
        authorization list is empty, and a version number of -1 SHALL be used to indicate
        that the Charge Point does not support Local Authorization Lists": -1 while
        LocalAuthListEnabled is false (the list is kept, unused, until it is enabled again).
        """
        if not self._list_enabled():
            return -1
        return self.local_list_version if self.local_list else 0

    def update_list(
        self, *, update_type: str, version: int, entries: Sequence[Mapping[str, Any]]
    ) -> UpdateStatus:
        """SendLocalList (OCPP 1.6 §5.15): all of it applies, or nothing does.

        * LocalAuthListEnabled false: ``NotSupported`` ("Update of Local Authorization List
          is not supported by Charge Point", §7.46), as the list would not be used.
        * More idTags than SendLocalListMaxLength (5), a total above LocalAuthListMaxLength
          (20), an idTag or parentIdTag over 20 characters, an idTag twice in one message,
          a Full entry without idTagInfo (§7.1 AuthorizationData: required for Full), or a
          non-empty list with a version below 1 (0 and -1 mean "empty" and "not supported"
          in GetLocalListVersion.conf): ``Failed``.
        * Differential with ``version`` not above the current one: ``VersionMismatch``
          (§7.46: "less or equal then version number of current list").
        * Differential: an entry with idTagInfo is added or replaced, one without is
          removed (removing an unknown idTag is a no-op: the wanted state already holds).
        """
        status, why = self._apply_update(update_type, version, entries)
        self.last_list_failure = why
        return status

    def _apply_update(
        self, update_type: str, version: int, entries: Sequence[Mapping[str, Any]]
    ) -> tuple[UpdateStatus, str]:
        if not self._list_enabled():
            return UpdateStatus.NOT_SUPPORTED, "LocalAuthListEnabled is false"
        per_message = self._config.get_int("SendLocalListMaxLength")
        if len(entries) > per_message:
            return (
                UpdateStatus.FAILED,
                f"{len(entries)} idTags in one message; SendLocalListMaxLength is {per_message}",
            )
        seen: set[str] = set()
        for entry in entries:
            id_tag = entry["idTag"]
            parent = (entry.get("idTagInfo") or {}).get("parentIdTag")
            if len(id_tag) > ID_TAG_MAX or (parent is not None and len(parent) > ID_TAG_MAX):
                return UpdateStatus.FAILED, f"idTag {id_tag!r}: more than {ID_TAG_MAX} characters"
            if tag_key(id_tag) in seen:  # CiString20: "abc" and "ABC" are one idTag
                return UpdateStatus.FAILED, f"idTag {id_tag!r} twice in one message"
            seen.add(tag_key(id_tag))
        differential = update_type == "Differential"
        if differential and version <= self.local_list_version:
            return (
                UpdateStatus.VERSION_MISMATCH,
                f"differential version {version} <= current {self.local_list_version}",
            )
        new_list = self.local_list.copy() if differential else IdTagMap()
        try:
            for entry in entries:
                info = entry.get("idTagInfo")
                if info is not None:
                    new_list[entry["idTag"]] = IdTagInfo.from_json(info)
                elif differential:
                    new_list.pop(entry["idTag"], None)
                else:
                    return UpdateStatus.FAILED, f"Full entry {entry['idTag']!r} has no idTagInfo"
        except (KeyError, ValueError) as exc:
            return UpdateStatus.FAILED, f"unreadable idTagInfo: {exc}"
        total = self._config.get_int("LocalAuthListMaxLength")
        if len(new_list) > total:
            return (
                UpdateStatus.FAILED,
                f"the list would hold {len(new_list)} idTags; LocalAuthListMaxLength is {total}",
            )
        if new_list and version < 1:
            return UpdateStatus.FAILED, f"version {version} is reserved for an empty list"
        self.local_list = new_list
        self.local_list_version = version if new_list else 0
        return UpdateStatus.ACCEPTED, ""

    def conflicts(self, id_tag: str, info: IdTagInfo, now: float) -> bool:
        """The CSMS's idTagInfo disagrees with the list entry (OCPP 1.6 §3.5.2 LocalListConflict).

        ConcurrentTx counts as Accepted: the tag is valid, it is just in use elsewhere.
        """
        if not self._list_enabled() or id_tag not in self.local_list:
            return False
        entry = self.local_list[id_tag]

        def norm(status: AuthorizationStatus) -> AuthorizationStatus:
            concurrent = status is AuthorizationStatus.CONCURRENT_TX
            return AuthorizationStatus.ACCEPTED if concurrent else status

        return norm(entry.valid_at(now)) is not norm(info.valid_at(now)) or not same_tag(
            entry.parent_id_tag, info.parent_id_tag
        )
