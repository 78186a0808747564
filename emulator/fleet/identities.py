"""Identities from files: the chargers a CSMS has registered, their passwords, its cards.

A production CSMS refuses charger ids it has not registered, wants a different password
per charger (OCPP 1.6 Security Whitepaper ed. 3, A01.FR.06) and knows its own RFID
cards.  Two CSV files (UTF-8, a header row; a byte-order mark from a spreadsheet is
fine) carry them:

* the identities file (``[fleet] identities``, ``--identities``): columns ``charger_id``
  (required), ``password`` (the plain HTTP Basic password of security profiles 1 and 2)
  and ``model`` (a ``[[models]]`` name of the scenario; empty: the scenario's mix).  Row
  *i* is charger number *i*.
* a cards file (``[[sessions.id_tags]] file``): columns ``id_tag`` (required, OCPP
  IdToken: CiString20, printable ASCII) and ``status`` (what the embedded reference CSMS
  answers; empty: Accepted).

Everything is checked when the file is read, and the first mistake raises one
:class:`IdentityFileError` naming the file, the line and what is wrong, so a run never
starts with a file the CSMS and the fleet would read differently.  Passwords stay in
memory: nothing here formats them (:class:`Identities` hides them from ``repr``).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CARD_COLUMNS",
    "CARD_STATUSES",
    "IDENTITY_COLUMNS",
    "Cards",
    "Identities",
    "IdentityFileError",
    "check_charger_id",
    "read_cards",
    "read_identities",
]

IDENTITY_COLUMNS = ("charger_id", "password", "model")
CARD_COLUMNS = ("id_tag", "status")
# What the embedded reference CSMS may answer for a card (OCPP 1.6 AuthorizationStatus
# without ConcurrentTx, which depends on where the card is, not on the card).
CARD_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")
ID_TAG_MAX = 20  # OCPP 1.6 IdToken is CiString20Type
# Characters a charger id may hold: RFC 3986 pchar without "%", so the id ends the
# websocket URL path as it is (no percent-encoding a CSMS could decode differently).
_URL_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)


class IdentityFileError(ValueError):
    """An identities or cards file cannot be used; the message is one line for the user."""


@dataclass(frozen=True, slots=True, eq=False)
class Identities:
    """The chargers of an identities file, in file order (charger number *n* is row *n*)."""

    path: str
    ids: tuple[str, ...]
    # charger id -> its password (only the rows that have one)
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    # charger number - 1 -> a model name of the scenario; None: the scenario's mix
    models: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return (
            f"Identities({self.path!r}, {len(self.ids)} chargers, {len(self.passwords)} passwords)"
        )

    def charger_id(self, number: int) -> str:
        """The id of charger ``number`` (1-based); ValueError past the file's rows."""
        if not 1 <= number <= len(self.ids):
            raise ValueError(
                f"the identities file {self.path} has {len(self.ids)} rows: "
                f"no charger number {number}"
            )
        return self.ids[number - 1]

    def model_of(self, number: int) -> str | None:
        """The model row ``number`` names, or None (the scenario's mix decides)."""
        models = self.models
        return models[number - 1] if number <= len(models) else None

    def without_password(self) -> list[int]:
        """The line-order numbers of the chargers the file gives no password."""
        return [n for n, cid in enumerate(self.ids, start=1) if cid not in self.passwords]


@dataclass(frozen=True, slots=True, eq=False)
class Cards:
    """The cards of a cards file, by status, each group in file order."""

    path: str
    by_status: Mapping[str, tuple[str, ...]]

    def __len__(self) -> int:
        return sum(len(tags) for tags in self.by_status.values())


def check_charger_id(charger_id: str) -> str | None:
    """What keeps ``charger_id`` from standing unescaped in a URL path, or None."""
    if not charger_id:
        return "an empty charger_id"
    bad = next((c for c in charger_id if c not in _URL_SAFE), None)
    if bad is None:
        return None
    what = {" ": "a space", "/": '"/"', "?": '"?"', "#": '"#"', "%": '"%"'}.get(bad)
    if what is None:
        what = f"the character {bad!r}" + (" (not ASCII)" if not bad.isascii() else "")
    return (
        f"charger_id {charger_id!r} holds {what}: a charger id ends the websocket URL's "
        "path, so it may hold only A-Z a-z 0-9 and -._~!$&'()*+,;=:@"
    )


def read_identities(path: str | Path, *, models: Collection[str] | None = None) -> Identities:
    """Read and check an identities file; ``models``: the scenario's model names (None:
    a reader that has no models, such as a CSMS, takes any)."""
    name = str(path)
    ids: list[str] = []
    passwords: dict[str, str] = {}
    row_models: list[str | None] = []
    seen: dict[str, int] = {}
    for line, row in _rows(name, IDENTITY_COLUMNS, required="charger_id"):
        charger_id = row["charger_id"]
        problem = check_charger_id(charger_id)
        if problem is not None:
            raise IdentityFileError(f"{name}:{line}: {problem}")
        if charger_id in seen:
            raise IdentityFileError(
                f"{name}:{line}: charger_id {charger_id!r} appears twice (also line {seen[charger_id]})"
            )
        seen[charger_id] = line
        ids.append(charger_id)
        password = row.get("password", "")
        if password:
            passwords[charger_id] = password
        model = row.get("model", "") or None
        if model is not None and models is not None and model not in models:
            known = ", ".join(repr(m) for m in models) or "none"
            raise IdentityFileError(
                f"{name}:{line}: model {model!r} is not a [[models]] name of the scenario "
                f"({known}){_did_you_mean(model, models)}"
            )
        row_models.append(model)
    if not ids:
        raise IdentityFileError(f"{name}: no chargers: expected a row per charger after the header")
    return Identities(
        path=name,
        ids=tuple(ids),
        passwords=passwords,
        models=tuple(row_models) if any(m is not None for m in row_models) else (),
    )


def read_cards(path: str | Path) -> Cards:
    """Read and check a cards file."""
    name = str(path)
    groups: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for line, row in _rows(name, CARD_COLUMNS, required="id_tag"):
        tag = row["id_tag"]
        problem = _card_problem(tag)
        if problem is not None:
            raise IdentityFileError(f"{name}:{line}: {problem}")
        key = tag.upper()  # OCPP compares idTags case-insensitively (CiString)
        if key in seen:
            raise IdentityFileError(
                f"{name}:{line}: id_tag {tag!r} appears twice (also line {seen[key]}; "
                "cards compare case-insensitively)"
            )
        seen[key] = line
        status = row.get("status", "") or "Accepted"
        if status not in CARD_STATUSES:
            raise IdentityFileError(
                f"{name}:{line}: status {status!r}: expected one of {', '.join(CARD_STATUSES)}"
                f" or nothing (Accepted){_did_you_mean(status, CARD_STATUSES)}"
            )
        groups.setdefault(status, []).append(tag)
    if not seen:
        raise IdentityFileError(f"{name}: no cards: expected a row per card after the header")
    return Cards(path=name, by_status={s: tuple(tags) for s, tags in groups.items()})


def _card_problem(tag: str) -> str | None:
    if not tag:
        return "an empty id_tag"
    if len(tag) > ID_TAG_MAX:
        return (
            f"id_tag {tag!r} has {len(tag)} characters: OCPP's IdToken holds at most {ID_TAG_MAX}"
        )
    if not all(" " <= c <= "~" for c in tag):
        return f"id_tag {tag!r}: OCPP's IdToken holds printable ASCII only"
    return None


def _rows(
    name: str, columns: tuple[str, ...], *, required: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: cell}) of each data row; a blank row is skipped."""
    text = _text(name)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise IdentityFileError(
                f"{name}: empty: expected a header row naming the columns ({', '.join(columns)})"
            )
        header = [h.strip() for h in header]
        _check_header(name, header, columns, required)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a spreadsheet's empty row (",,")
            if len(row) != len(header):
                raise IdentityFileError(
                    f"{name}:{reader.line_num}: {len(row)} fields, but the header names "
                    f"{len(header)} ({', '.join(header)})"
                )
            # Cells are stripped of the spaces a hand-edited file gathers, but a password
            # is a secret as written.
            yield (
                reader.line_num,
                {
                    h: cell if h == "password" else cell.strip()
                    for h, cell in zip(header, row, strict=True)
                },
            )
    except csv.Error as exc:
        raise IdentityFileError(f"{name}:{reader.line_num}: not CSV: {exc}") from None


def _text(name: str) -> str:
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise IdentityFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IdentityFileError(
            f"{name}:{line}: not UTF-8 text (byte {exc.start + 1} of the file): save it as UTF-8"
        ) from None


def _check_header(name: str, header: list[str], columns: tuple[str, ...], required: str) -> None:
    seen: set[str] = set()
    for column in header:
        if column not in columns:
            raise IdentityFileError(
                f"{name}:1: unknown column {column!r}{_did_you_mean(column, columns)}; "
                f"the columns are {', '.join(columns)}"
            )
        if column in seen:
            raise IdentityFileError(f"{name}:1: column {column!r} appears twice")
        seen.add(column)
    if required not in seen:
        raise IdentityFileError(
            f"{name}:1: no {required} column (the header names {', '.join(header)})"
        )


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""
