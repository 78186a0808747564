"""Open a page in real headless Chromium: its DOM after scripts ran, its console, the
network requests it made, and a screenshot.

Chromium runs with the closed network's flags (no background networking, no component
updates) and ``--host-resolver-rules="MAP * ~NOTFOUND"``, so any fetch fails; its net log
still names every request the page asked for (Chromium's own requests, e.g. for Google
accounts, carry no page origin and are left out).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np

from tests.debian import ensure_debian_package
from tests.report.png import read_png

_CONSOLE = re.compile(r":CONSOLE[^\]]*\] \"(?P<message>.*)\", source: (?P<source>.*)$")


@dataclass
class Page:
    dom: str
    console: list[str]
    requests: list[str]
    screenshot: np.ndarray | None
    stderr: str = field(repr=False, default="")

    def plot(self, plot_id: str) -> str:
        """The DOM of one chart's box (up to the end of its section)."""
        start = self.dom.index(f'id="{plot_id}"')
        return self.dom[start : self.dom.index("</section>", start)]


def chromium() -> str:
    ensure_debian_package("chromium", "chromium")
    path = shutil.which("chromium")
    assert path is not None
    return path


def render(
    page: Path, workdir: Path, *, screenshot: bool = True, width: int = 1280, height: int = 1800
) -> Page:
    workdir.mkdir(parents=True, exist_ok=True)
    profile = workdir / "profile"
    netlog = workdir / "netlog.json"
    shot = workdir / "screenshot.png"
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--log-net-log={netlog}",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        # Virtual time: the page's timers and rendering run to completion, then the dump.
        "--virtual-time-budget=20000",
        "--dump-dom",
    ]
    if screenshot:
        args.append(f"--screenshot={shot}")
    args.append(page.resolve().as_uri())
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    console = []
    for line in done.stderr.splitlines():
        match = _CONSOLE.search(line)
        if match is not None:
            console.append(f"{match['message']} ({match['source']})")
    return Page(
        dom=done.stdout,
        console=console,
        requests=page_requests(netlog),
        screenshot=read_png(shot) if screenshot else None,
        stderr=done.stderr,
    )


def page_requests(netlog: Path) -> list[str]:
    """URLs the page (an origin under file://) asked the network stack for."""
    log = json.loads(netlog.read_text())
    types = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        if types.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        params: dict[str, Any] = event.get("params", {})
        if "file://" in str(params.get("network_isolation_key", "")):
            urls.append(str(params.get("url")))
    return urls


def colour_pixels(image: np.ndarray, colour: str, tolerance: int = 6) -> int:
    """Pixels within ``tolerance`` of ``colour`` (#rrggbb) in every channel."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    difference = np.abs(image[:, :, :3].astype(np.int16) - target)
    return int(np.count_nonzero(np.all(difference <= tolerance, axis=2)))


class Document(HTMLParser):
    """Tags with their attributes and the text, as a browser would show it."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if not self._in_script:
            self.text.append(data)

    def names(self) -> list[str]:
        return [tag for tag, _ in self.tags]

    def external_references(self) -> list[str]:
        """src/href/action/data/srcset values that leave the file (a scheme or //)."""
        found = []
        for _, attrs in self.tags:
            for name in ("src", "href", "action", "data", "srcset", "poster", "xlink:href"):
                value = (attrs.get(name) or "").strip()
                if re.match(r"^([a-z][a-z0-9+.-]*:|//)", value, re.I) and not value.startswith(
                    ("data:", "blob:", "#")
                ):
                    found.append(value)
        return found
