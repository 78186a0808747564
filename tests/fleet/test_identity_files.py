"""Identities and cards files: what a good file gives, and one clear error for each mistake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulator.fleet.identities import IdentityFileError, read_cards, read_identities
from emulator.fleet.scenario import CardPool, ScenarioError, load_scenario
from emulator.fleet.sessions import SessionPlan, TagRegistry

MODELS = ("socket", "cable")


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def test_a_spreadsheet_file_gives_ids_passwords_and_models_in_row_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ids.csv",
        "\ufeff charger_id , password ,model\r\n"  # Excel's byte-order mark, padded header
        "WB-1, s3cret with spaces ,socket\r\n"
        "\r\n"  # a blank line is skipped, the line numbers still count it
        "WB-2,,\r\n"
        '"WB:3","pa,ss",cable\r\n',
    )
    identities = read_identities(path, models=MODELS)
    assert identities.ids == ("WB-1", "WB-2", "WB:3")
    # A password is a secret as written: spaces stay; a row without one has none.
    assert dict(identities.passwords) == {"WB-1": " s3cret with spaces ", "WB:3": "pa,ss"}
    assert [identities.model_of(n) for n in (1, 2, 3)] == ["socket", None, "cable"]
    assert identities.without_password() == [2]
    assert identities.charger_id(3) == "WB:3"
    with pytest.raises(ValueError, match=r"has 3 rows: no charger number 4"):
        identities.charger_id(4)
    assert "s3cret" not in repr(identities) and "pa,ss" not in repr(identities)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("charger_id\nA\nB\nA\n", r"ids.csv:4: charger_id 'A' appears twice \(also line 2\)"),
        ("charger_id,password\nA,x\n,y\n", r"ids.csv:3: an empty charger_id"),
        ("charger_id\nCP 1\n", r"ids.csv:2: charger_id 'CP 1' holds a space"),
        ("charger_id\nCP/1\n", r"ids.csv:2: charger_id 'CP/1' holds \"/\""),
        ("charger_id\nCP?1\n", r"holds \"\?\""),
        ("charger_id\nCP#1\n", r"holds \"#\""),
        ("charger_id\nCP%41\n", r"holds \"%\""),
        ("charger_id\nCPé\n", r"holds the character 'é' \(not ASCII\)"),
        (
            "charger_id,pasword\nA,x\n",
            r"ids.csv:1: unknown column 'pasword' \(did you mean \"password\"\?\); "
            r"the columns are charger_id, password, model",
        ),
        ("id,password\nA,x\n", r"ids.csv:1: unknown column 'id'"),
        ("password\nx\n", r"ids.csv:1: no charger_id column \(the header names password\)"),
        ("charger_id,charger_id\nA,B\n", r"column 'charger_id' appears twice"),
        ("charger_id,password\nA,x,y\n", r"ids.csv:2: 3 fields, but the header names 2"),
        (
            "charger_id,model\nA,sockett\n",
            r"ids.csv:2: model 'sockett' is not a \[\[models\]\] name of the scenario "
            r"\('socket', 'cable'\) \(did you mean \"socket\"\?\)",
        ),
        ("", r"ids.csv: empty: expected a header row"),
        ("charger_id,password\n", r"ids.csv: no chargers"),
        ('charger_id\n"A\n', r"ids.csv:\d+: not CSV"),
    ],
)
def test_each_mistake_in_an_identities_file_is_one_error_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "ids.csv", text)
    with pytest.raises(IdentityFileError, match=message) as caught:
        read_identities(path, models=MODELS)
    assert "\n" not in str(caught.value)


def test_an_identities_file_that_is_not_utf8_or_missing_is_named(tmp_path: Path) -> None:
    latin = write(tmp_path, "latin.csv", "charger_id\nCPé\n", encoding="latin-1")
    with pytest.raises(
        IdentityFileError, match=r"latin.csv:2: not UTF-8 text \(byte 14 of the file\)"
    ):
        read_identities(latin)
    with pytest.raises(IdentityFileError, match=r"nothing.csv: cannot read: No such file"):
        read_identities(tmp_path / "nothing.csv")


def test_a_reader_without_models_takes_any_model_name(tmp_path: Path) -> None:
    path = write(tmp_path, "ids.csv", "charger_id,model\nA,whatever\n")
    assert read_identities(path).model_of(1) == "whatever"  # the CSMS knows no models


def test_cards_are_grouped_by_status_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "cards.csv", "id_tag,status\n04A1,\n04A2,Blocked\n04a3,Accepted\n")
    cards = read_cards(path)
    assert dict(cards.by_status) == {"Accepted": ("04A1", "04a3"), "Blocked": ("04A2",)}
    assert len(cards) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id_tag\nabc\nABC\n", r"cards.csv:3: id_tag 'ABC' appears twice \(also line 2; cards "),
        ("id_tag\n" + "X" * 21 + "\n", r"cards.csv:2: id_tag 'X+' has 21 characters: OCPP's "),
        ("id_tag\n\n\n,\n", r"cards.csv: no cards"),  # a spreadsheet's empty row is blank
        ("id_tag,status\n,Accepted\n", r"cards.csv:2: an empty id_tag"),
        ("id_tag\nTAB\tX\n", r"cards.csv:2: id_tag 'TAB\\tX': OCPP's IdToken holds printable"),
        ("id_tag,status\nA,Acepted\n", r"cards.csv:2: status 'Acepted': expected one of "),
        ("tag\nA\n", r"cards.csv:1: unknown column 'tag'"),
    ],
)
def test_each_mistake_in_a_cards_file_is_one_error_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(IdentityFileError, match=message):
        read_cards(write(tmp_path, "cards.csv", text))


SCENARIO = """
[scenario]
name = "from files"
[fleet]
{fleet}
[[models]]
name = "socket"
[[models]]
name = "cable"
variant = "cable"
[sessions]
{sessions}
"""


def scenario_file(tmp_path: Path, *, fleet: str = "", sessions: str = "") -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir(exist_ok=True)
    return write(folder, "s.toml", SCENARIO.format(fleet=fleet, sessions=sessions))


def test_a_scenario_reads_its_files_relative_to_itself(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        fleet='identities = "ids.csv"',
        sessions='[[sessions.id_tags]]\nfile = "cards.csv"\nshare = 3\n'
        '[[sessions.id_tags]]\nprefix = "T"\ncount = 10',
    )
    write(path.parent, "ids.csv", "charger_id\nA\nB\nC\n")
    write(path.parent, "cards.csv", "id_tag,status\nC1,\nC2,\nC3,Invalid\nC4,Expired\n")
    scenario = load_scenario(path)
    assert scenario.fleet_size == 3  # every row, without fleet.chargers
    assert [scenario.charger_id(n) for n in (1, 2, 3)] == ["A", "B", "C"]
    pools = scenario.sessions.id_tags
    assert [(p.status, p.count, p.share) for p in pools] == [
        ("Accepted", 2, 1.5),
        ("Invalid", 1, 0.75),
        ("Expired", 1, 0.75),
        ("Accepted", 10, 1.0),
    ]
    assert isinstance(pools[0], CardPool) and pools[0].tag(1) == "C2"
    assert scenario.csms_id_tags() == {"C3": "Invalid", "C4": "Expired"}
    assert "C1" not in repr(pools[0])  # a pool of 100,000 cards is not printed whole
    rng = np.random.default_rng(1)
    drawn = {scenario.sessions.draw_id_tag(rng, accepted_only=True) for _ in range(200)}
    assert drawn <= {"C1", "C2"} | {f"T{n:05d}" for n in range(10)}
    assert {"C1", "C2"} <= drawn


def test_a_card_in_use_gives_way_to_the_next_card_of_its_file(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, sessions='[[sessions.id_tags]]\nfile = "cards.csv"')
    write(path.parent, "cards.csv", "id_tag\nK1\nK2\nK3\n")
    registry = TagRegistry(load_scenario(path).sessions)
    plan = SessionPlan(
        arrival=0.0, id_tag="K2", ev="", energy_wh=1.0, max_current=16.0, min_current=6.0,
        phases=3, taper_from=1.0, authorize_first=False, no_show=False, stop_by_tag=False,
        dwell=None,
    )  # fmt: skip
    held = [registry.claim(plan) for _ in range(4)]
    assert [p.id_tag if p else None for p in held] == ["K2", "K3", "K1", None]
    assert registry.exhausted == 1


@pytest.mark.parametrize(
    ("fleet", "sessions", "files", "message"),
    [
        (
            'identities = "ids.csv"\nchargers = 5',
            "",
            {"ids.csv": "charger_id\nA\nB\n"},
            r"s.toml: fleet.identities: fleet.chargers is 5, but the identities file "
            r".*ids.csv has 2 rows",
        ),
        (
            'identities = "ids.csv"',
            "",
            {"ids.csv": "charger_id,model\nA,tesla\n"},
            r"s.toml: fleet.identities: .*ids.csv:2: model 'tesla' is not a \[\[models\]\] name",
        ),
        (
            "",
            '[[sessions.id_tags]]\nfile = "cards.csv"\nprefix = "X"',
            {"cards.csv": "id_tag\nA\n"},
            r"s.toml: sessions.id_tags\[0\].prefix: a pool with a file takes its cards",
        ),
        (
            "",
            '[[sessions.id_tags]]\nfile = "a.csv"\n[[sessions.id_tags]]\nfile = "b.csv"',
            {"a.csv": "id_tag\nabc\n", "b.csv": "id_tag\nx\nABC\n"},
            r"s.toml: sessions.id_tags\[1\].file: card 'ABC' of .*b.csv is also in .*a.csv",
        ),
        (
            "",
            '[[sessions.id_tags]]\nprefix = "tag"\ncount = 5\n[[sessions.id_tags]]\nfile = "a.csv"',
            {"a.csv": "id_tag\nTAG00003\n"},
            r"sessions.id_tags\[1\].file: card 'TAG00003' of .*a.csv is also in the pool "
            r"with prefix 'tag'",
        ),
        (
            "",
            '[[sessions.id_tags]]\nfile = "missing.csv"',
            {},
            r"s.toml: sessions.id_tags\[0\].file: .*missing.csv: cannot read",
        ),
    ],
)
def test_a_scenario_names_its_field_and_the_file_for_a_bad_file(
    tmp_path: Path, fleet: str, sessions: str, files: dict[str, str], message: str
) -> None:
    path = scenario_file(tmp_path, fleet=fleet, sessions=sessions)
    for name, text in files.items():
        write(path.parent, name, text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_an_identities_file_and_an_id_prefix_are_not_given_together(tmp_path: Path) -> None:
    path = scenario_file(tmp_path)
    ids = write(tmp_path, "ids.csv", "charger_id\nA\n")
    scenario = load_scenario(path).with_identities(str(ids))
    with pytest.raises(ValueError, match=r"names the chargers: give an id prefix or an "):
        scenario.with_id_prefix("X")
