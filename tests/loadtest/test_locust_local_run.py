"""Locust runs the fleet: options from the command line, locust.conf and the web UI,
a load shape, and the Fleet tab (Locust in a child process, the CSMS in this one)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from emulator.csms import ReferenceCsms
from tests.integration.support import eventually
from tests.loadtest.support import locust, write_scenario
from tests.ports import free_port


def stats_by_name(path: Path) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(path.read_text())}


def test_a_headless_run_configured_in_locust_conf_reports_each_action(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="HL", mode="random")
    conf = tmp_path / "locust.conf"
    report = tmp_path / "stats.json"

    async def main() -> tuple[int, str, dict[str, Any]]:
        async with ReferenceCsms() as csms:
            conf.write_text(
                f"scenario = {scenario}\ncsms-url = {csms.url}\nseed = 5\n"
                "headless = true\nusers = 6\nspawn-rate = 6\nrun-time = 6s\n"
            )
            code, out = await locust(
                "--config",
                str(conf),
                "--json-file",
                str(report.with_suffix("")),  # Locust adds ".json"
            )
            return code, out, dict(csms.chargers)

    code, out, chargers = asyncio.run(main())
    assert code == 0, out
    assert sorted(chargers) == [f"HL{n:06d}" for n in range(1, 7)]
    assert all(r.boot_count == 1 and not r.connected for r in chargers.values())
    stats = stats_by_name(report)
    assert stats["BootNotification"]["num_requests"] == 6
    assert stats["BootNotification"]["method"] == "OCPP"
    assert stats["connect"]["method"] == "WebSocket"
    assert "Fleet summary (ocpp-fleet)" in out
    assert "wallboxes 6 at most" in out


def test_a_fleet_shape_drives_the_user_count(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="SH")

    async def main() -> tuple[int, str, int]:
        async with ReferenceCsms() as csms:
            code, out = await locust(
                "--headless",
                "--scenario",
                str(scenario),
                "--host",
                csms.url,
                "--fleet-shape",
                "steps:sizes=2/5,hold=3,rate=20",
            )
            return code, out, len(csms.chargers)

    code, out, chargers = asyncio.run(main())
    assert code == 0, out
    assert chargers == 5
    assert "Shape test completed" in out or "shape" in out.lower()


def test_a_bad_scenario_ends_a_headless_run_with_one_clear_error(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        return await locust(
            "--headless",
            "-u",
            "1",
            "--run-time",
            "5s",
            "--scenario",
            str(tmp_path / "missing.toml"),
            "--csms-url",
            "ws://127.0.0.1:9/x",
        )

    code, out = asyncio.run(main())
    assert code == 2, out
    assert "ocpp-fleet cannot start" in out
    assert "missing.toml" in out


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_web_ui_starts_a_fleet_from_its_form_and_shows_the_fleet_tab(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, prefix="UI")
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def main() -> dict[str, Any]:
        async with ReferenceCsms() as csms:
            quit_ = asyncio.Event()
            run = asyncio.create_task(
                locust(
                    "--web-host", "127.0.0.1", "--web-port", str(port), timeout=120, terminate=quit_
                )
            )
            found: dict[str, Any] = {}
            failure: BaseException | None = None
            try:

                async def ui_up() -> bool:
                    try:
                        page = await asyncio.to_thread(urllib.request.urlopen, base + "/", None, 2)
                        found["index"] = page.read().decode()
                        return True
                    except OSError:
                        return False

                for _ in range(300):  # Locust starts in a second or two; allow a busy machine
                    if await ui_up():
                        break
                    await asyncio.sleep(0.1)
                form = urllib.parse.urlencode(
                    {
                        "user_count": 3,
                        "spawn_rate": 10,
                        "host": "",
                        "scenario": str(scenario),
                        "csms_url": csms.url,
                    }
                ).encode()
                await asyncio.to_thread(urllib.request.urlopen, base + "/swarm", form, 5)
                await eventually(
                    lambda: len([r for r in csms.chargers.values() if r.booted]) == 3,
                    30,
                    "3 booted wallboxes",
                )

                async def fleet() -> dict[str, Any]:
                    return await asyncio.to_thread(get_json, base + "/fleet/counts")

                for _ in range(50):
                    found["fleet"] = await fleet()
                    if found["fleet"]["totals"]["booted"] == 3:
                        break
                    await asyncio.sleep(0.2)
                found["stats"] = await asyncio.to_thread(get_json, base + "/stats/requests")
                page = await asyncio.to_thread(urllib.request.urlopen, base + "/fleet", None, 5)
                found["page"] = page.read().decode()
                await asyncio.to_thread(urllib.request.urlopen, base + "/stop", b"", 5)
                await eventually(
                    lambda: not any(r.connected for r in csms.chargers.values()),
                    20,
                    "every wallbox to close",
                )
            except Exception as exc:
                failure = exc
            finally:
                quit_.set()  # also when something above failed: never leave Locust running
                found["exit"] = await run
            if failure is not None:
                output = found["exit"][1][-4000:]
                raise AssertionError(f"{failure!r}; Locust said:\n{output}") from failure
            return found

    found = asyncio.run(main())
    code, out = found["exit"]
    assert code == 0, out
    assert '"extended_tabs": [{"key": "fleet", "title": "Fleet"}]' in found["index"]
    assert found["fleet"]["totals"]["booted"] == 3
    assert found["fleet"]["totals"]["statuses"] == {"Available": 3}
    assert any(r["name"] == "Generator" for r in found["fleet"]["rows"])
    tab = [s for s in found["stats"]["extended_stats"] if s["key"] == "fleet"]
    assert tab and {"name": "Connected", "value": "3"} in tab[0]["data"]
    assert "fleet/counts" in found["page"]


def test_the_start_time_option_sets_the_virtual_clock_of_a_warm_fleet() -> None:
    steady = str(Path(__file__).resolve().parents[2] / "scenarios" / "steady.toml")

    async def run(start_time: str) -> tuple[int, str, int]:
        async with ReferenceCsms() as csms:
            code, out = await locust(
                "--headless",
                "-u",
                "40",
                "-r",
                "40",
                "--run-time",
                "5s",
                "--scenario",
                steady,
                "--csms-url",
                csms.url,
                "--seed",
                "3",
                "--start-time",
                start_time,
            )
            # A busy charger's cable is in from its boot (Preparing until its driver's card,
            # which comes within one sample interval, then Charging; Finishing once the
            # stop has ended its transaction): its connector was never left Available.
            busy = sum(
                1
                for record in csms.chargers.values()
                if (status := record.statuses.get(1)) is not None and status.status != "Available"
            )
            return code, out, busy

    async def main() -> list[tuple[int, str, int]]:
        return [await run("03:00"), await run("14:00"), await run("25:00")]

    (night_code, night_out, night), (day_code, day_out, day), (bad_code, bad_out, _) = asyncio.run(
        main()
    )
    assert night_code == 0 and day_code == 0, night_out + day_out
    # steady's public profile: ~6 % of the chargers busy at 03:00, ~51 % at 14:00.
    assert night <= 6 and day >= 12, (night, day)
    assert bad_code == 2, bad_out
    assert '--start-time: expected "HH:MM" (00:00 to 23:59) or "now", got "25:00"' in bad_out
