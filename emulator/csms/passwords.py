"""Which HTTP Basic password the reference CSMS expects of each charger.

:class:`PasswordBook` is the ``basic_auth`` table of
:class:`~emulator.csms.server.ReferenceCsms`: a charger's own password (an identities
file's row), else one password for every charger (``--password-env``), else none (the
charger is refused).  It never formats a password (``repr`` counts them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["PasswordBook"]


class PasswordBook(Mapping[str, str]):
    """Charger id -> the password the CSMS expects: ``own`` first, then ``default``."""

    __slots__ = ("_default", "_own")

    def __init__(self, own: Mapping[str, str] | None = None, default: str | None = None) -> None:
        self._own: Mapping[str, str] = own or {}
        self._default = default

    def __getitem__(self, charger_id: str) -> str:
        password = self._own.get(charger_id, self._default)
        if password is None:
            raise KeyError(charger_id)
        return password

    def __iter__(self) -> Iterator[str]:
        return iter(self._own)  # the default stands for every other id: not listed

    def __len__(self) -> int:
        return len(self._own)

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        default = "***" if self._default is not None else None
        return f"PasswordBook({len(self._own)} own, default={default})"
