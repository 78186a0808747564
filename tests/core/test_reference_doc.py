"""docs/reference-charger.md shows the key table the code really implements."""

from pathlib import Path

from emulator.core.configuration import markdown_table


def test_the_documented_key_table_is_the_one_the_code_implements() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reference-charger.md").read_text()
    assert markdown_table() in doc
