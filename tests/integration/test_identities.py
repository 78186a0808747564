"""A fleet that logs in as the chargers a CSMS registered: ids, passwords, models and cards
from files, against the reference CSMS on 127.0.0.1 that knows the same files."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
from pathlib import Path
from types import SimpleNamespace

import pytest

from emulator.csms import PasswordBook, ReferenceCsms
from emulator.fleet.identities import read_identities
from emulator.fleet.scenario import load_scenario
from emulator.loadtest.options import WORKERS_OPTION, fleet_options
from emulator.run.setup import SetupError, build_setup
from tests.integration.support import eventually, ocpp_fleet, running_fleet

ALPHABET = string.ascii_letters + string.digits

SCENARIO = """
[scenario]
name = "registered fleet"
[fleet]
identities = "ids.csv"
connect_timeout = 10.0
[[models]]
name = "socket"
[models.configuration]
ClockAlignedDataInterval = 0
[[models]]
name = "cable"
variant = "cable"
phases = 1
[models.configuration]
ClockAlignedDataInterval = 0
[sessions]
arrivals_per_hour = 600
time_compression = 10
plug_in_delay = [0.1, 0.3]
energy_kwh = [0.01, 0.02]
idle_after_full = [0.0, 1.0]
[[sessions.id_tags]]
file = "cards.csv"
[security]
{security}
"""


def password() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(20))


def registered(folder: Path, *, chargers: int = 6, security: str = "profile = 1") -> Path:
    """A scenario, an identities file (a password and a model per charger) and cards."""
    rows = [
        f"WB-{n:03d},{password()},{'cable' if n % 3 == 0 else ''}" for n in range(1, chargers + 1)
    ]
    (folder / "ids.csv").write_text("charger_id,password,model\n" + "\n".join(rows) + "\n")
    cards = [f"04A1B2C3D4{n:04X}," for n in range(40)] + ["04FFFFFFFF0000,Blocked"]
    (folder / "cards.csv").write_text("id_tag,status\n" + "\n".join(cards) + "\n")
    path = folder / "fleet.toml"
    path.write_text(SCENARIO.format(security=security))
    return path


def test_a_run_logs_in_as_the_files_chargers_and_never_shows_a_password(tmp_path: Path) -> None:
    scenario = registered(tmp_path)
    out = tmp_path / "out"
    done = ocpp_fleet(
        "--log-level", "DEBUG", "run", "--scenario", str(scenario), "--duration", "12",
        "--no-progress", "--json", str(out / "summary.json"), "--ledger", str(out / "ledger"),
        "--report", str(out / "report"), timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ledger = (out / "ledger" / "csms-ledger.json").read_text()
    assert "WB-001" in ledger and "04A1B2C3D4" in ledger  # the file's chargers and cards
    summary = json.loads((out / "summary.json").read_text())
    assert summary["connections"]["connect_failures"] == {}  # every password was right
    passwords = read_identities(tmp_path / "ids.csv").passwords
    # The password as written, and as the Basic header carries it (base64 of id:password).
    secrets_ = [*passwords.values()] + [
        base64.b64encode(f"{cid}:{pw}".encode()).decode() for cid, pw in passwords.items()
    ]
    assert "Authorization: Basic ***" in done.stderr  # websockets' DEBUG handshake lines
    written = [done.stdout, done.stderr] + [
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
    ]
    for text in written:
        assert not any(secret in text for secret in secrets_)


def test_the_csms_refuses_an_unregistered_id_and_a_wrong_password(tmp_path: Path) -> None:
    """What the CSMS knows (its own copy of the file) and what the fleet sends differ for
    two chargers: one has another password, one is not registered at all."""
    scenario = load_scenario(registered(tmp_path, chargers=4))
    theirs = dict(read_identities(tmp_path / "ids.csv").passwords)
    theirs["WB-002"] = password()  # the CSMS expects another password of WB-002
    del theirs["WB-004"]  # and never registered WB-004

    async def main() -> None:
        async with ReferenceCsms(
            basic_auth=PasswordBook(theirs), known_chargers=list(theirs)
        ) as csms:
            async with running_fleet(scenario, csms.url, chargers=4) as (fleet, stats):
                await eventually(lambda: {"WB-001", "WB-003"} <= csms.connected, 15.0, "two logins")
                await eventually(
                    lambda: (
                        stats.connect_failures["http_401"] >= 1
                        and stats.connect_failures["http_404"] >= 1
                    ),
                    15.0,
                    "a 401 and a 404",
                )
                assert csms.connected == {"WB-001", "WB-003"}
                models = {d.wallbox.charge_point_id: d.wallbox.model.name for d in fleet.drivers}
                assert models["WB-003"] == "cable"  # the row's model
                assert models["WB-001"] in {"socket", "cable"}  # no model: the mix

    asyncio.run(main())


def test_the_csms_command_refuses_an_identities_file_it_cannot_read(tmp_path: Path) -> None:
    done = ocpp_fleet("csms", "--port", "0", "--identities", str(tmp_path / "nope.csv"), timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("nope.csv: cannot read: No such file or directory")
    assert "Traceback" not in done.stderr


def test_profile_1_needs_a_password_for_every_charger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = registered(tmp_path, chargers=3)
    (tmp_path / "ids.csv").write_text("charger_id,password\nA,pw-of-a-16chars!\nB,\nC,\n")
    values = SimpleNamespace(scenario=str(scenario), duration="5")
    with pytest.raises(SetupError, match=r"gives 2 of its 3 chargers no password \(the first: B\)"):
        build_setup("run", values, environ={})
    # A password for the others from the environment makes the file's gaps fine.
    monkeypatch.setenv("PW", "pw-of-the-others-16")
    (tmp_path / "fleet.toml").write_text(
        SCENARIO.format(security='profile = 1\npassword_env = "PW"')
    )
    assert build_setup("run", values, environ={}).scenario.identities is not None


def test_chargers_beyond_the_file_and_a_prefix_with_a_file_are_refused(tmp_path: Path) -> None:
    scenario = str(registered(tmp_path, chargers=3))
    values = SimpleNamespace(scenario=scenario, chargers="4")
    with pytest.raises(SetupError, match=r"--chargers 4: the identities file .*ids.csv has 3 rows"):
        build_setup("run", values, environ={})
    values = SimpleNamespace(scenario=scenario, id_prefix="X")
    with pytest.raises(SetupError, match=r"--id-prefix: the identities file .* names the chargers"):
        build_setup("run", values, environ={})
    capacity = SimpleNamespace(
        scenario=scenario, csms_url="ws://127.0.0.1:9/", slo=["*:p99<1s"], max="10"
    )
    with pytest.raises(SetupError, match=r"--max 10: the identities file .* has 3 rows"):
        build_setup("capacity", capacity, environ={})
    capacity.max = ""
    search = build_setup("capacity", capacity, environ={}).search
    assert search is not None and (search.start, search.max) == (3, 3)  # the file bounds it


def test_identities_on_the_command_line_replace_the_scenarios(tmp_path: Path) -> None:
    scenario = str(registered(tmp_path, chargers=3))
    other = tmp_path / "other.csv"
    other.write_text("charger_id,password\nX-1,pw-of-x1-16chars\nX-2,pw-of-x2-16chars\n")
    setup = build_setup(
        "run", SimpleNamespace(scenario=scenario, identities=str(other)), environ={}
    )
    assert (setup.chargers, setup.scenario.charger_id(2)) == (2, "X-2")
    bad = tmp_path / "bad.csv"
    bad.write_text("charger_id,pasword\nA,x\n")
    with pytest.raises(SetupError, match=r"--identities: .*bad.csv:1: unknown column 'pasword'"):
        build_setup("run", SimpleNamespace(scenario=scenario, identities=str(bad)), environ={})


def test_locust_workers_take_equal_disjoint_blocks_of_the_rows(tmp_path: Path) -> None:
    scenario = str(registered(tmp_path, chargers=10))
    values = SimpleNamespace(scenario=scenario, csms_url="ws://127.0.0.1:9/")
    assert fleet_options(values, host=None).ids_per_worker == 10  # a local run: every row
    setattr(values, WORKERS_OPTION, [0, 1, 2])
    assert fleet_options(values, host=None).ids_per_worker == 4  # rows 1-4, 5-8, 9-10
    values.ids_per_worker = "5"
    assert fleet_options(values, host=None).ids_per_worker == 5  # as given
