"""The container's HEALTHCHECK: does this process's HTTP endpoint answer?

    python -m emulator.healthcheck [URL]

URL defaults to ``$OCPP_FLEET_HEALTH_URL``, else the metrics endpoint
``http://127.0.0.1:$OCPP_FLEET_METRICS_PORT/metrics`` (port 9100 in the image).  Any
HTTP answer counts as healthy, an error status included (the reference CSMS answers a
plain GET with 404 Not Found): the check asks "is the process serving?", not
"is the run going well?", which the metrics answer.  Exit 0 healthy, 1 not.  Standard
library only, so it costs a few milliseconds per check and nothing to install.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_PORT = "9100"


def health_url(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    explicit = env.get("OCPP_FLEET_HEALTH_URL")
    if explicit:
        return explicit
    port = env.get("OCPP_FLEET_METRICS_PORT") or DEFAULT_PORT
    return f"http://127.0.0.1:{port}/metrics"


def check(url: str, timeout: float = 3.0) -> str | None:
    """None when ``url`` answers with any HTTP status, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else health_url()
    problem = check(url)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
