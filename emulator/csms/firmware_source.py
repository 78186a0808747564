"""The firmware file the reference CSMS signs, fetched from where chargers will fetch it.

Security whitepaper L01: SignedUpdateFirmware.req carries a signature over the whole
firmware file (L01.FR.04) and the CSMS SHOULD check the firmware before it sends the
certificate (A00.FR.706).  When a scenario leaves the signature to the reference CSMS, it
downloads the file from the request's ``firmware.location`` (FTP, as the reference
charger downloads it) and signs those bytes, so the charger verifies exactly what it got.

aioftp on the event loop, no thread.  The location's password never reaches an error
message or a log line: errors name the host and the step only.
"""

from __future__ import annotations

import asyncio
from typing import Final
from urllib.parse import unquote, urlsplit

import aioftp

__all__ = ["MAX_FIRMWARE_BYTES", "FirmwareFetchError", "fetch_firmware"]

#: A firmware image larger than this is refused (the CSMS keeps it in memory to sign it).
MAX_FIRMWARE_BYTES: Final = 256 * 1024 * 1024
_BLOCK: Final = 64 * 1024


class FirmwareFetchError(Exception):
    """The firmware could not be fetched; the message has no credentials in it."""


async def fetch_firmware(
    url: str,
    *,
    timeout: float = 60.0,  # noqa: ASYNC109 - bounds each socket wait as well as the whole
    max_bytes: int = MAX_FIRMWARE_BYTES,
) -> bytes:
    """The bytes of the file at ``url`` (``ftp://[user[:password]@]host[:port]/path``)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 21
    except ValueError:
        raise FirmwareFetchError("firmware location: not a valid URL") from None
    if parts.scheme.lower() != "ftp" or not parts.hostname:
        raise FirmwareFetchError(
            f"firmware location: expected ftp://host/path to sign the file, got "
            f"{parts.scheme or 'no'} scheme"
        )
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        raise FirmwareFetchError("firmware location: no file name")
    user = unquote(parts.username) if parts.username else "anonymous"
    password = unquote(parts.password) if parts.password is not None else "anon@"
    where = f"{parts.hostname}:{port}{path}"
    client = aioftp.Client(socket_timeout=timeout, connection_timeout=timeout)
    step = "connect"
    try:
        async with asyncio.timeout(timeout):
            await client.connect(parts.hostname, port)
            step = "login"
            await client.login(user, password)
            step = "RETR"
            data = bytearray()
            async with client.download_stream(path) as stream:
                async for block in stream.iter_by_block(_BLOCK):
                    data += block
                    if len(data) > max_bytes:
                        raise FirmwareFetchError(f"{where}: larger than {max_bytes} bytes")
            return bytes(data)
    except FirmwareFetchError:
        raise
    except aioftp.StatusCodeError as exc:
        codes = "/".join(str(code) for code in exc.received_codes)
        raise FirmwareFetchError(f"{where}: {step} refused ({codes})") from None
    except TimeoutError:
        raise FirmwareFetchError(f"{where}: {step} timed out") from None
    except (OSError, EOFError, asyncio.IncompleteReadError, aioftp.AIOFTPException) as exc:
        raise FirmwareFetchError(f"{where}: {step} failed ({type(exc).__name__})") from None
    finally:
        client.close()
