"""The README's configuration table and the settings cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.shared.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_lists_every_setting_and_nothing_else():
    table = re.findall(r"^\| `(TRIAGED_[A-Z_]+)` \|", README.read_text(), re.MULTILINE)
    expected = [f"TRIAGED_{name.upper()}" for name in Settings.model_fields]
    assert table == expected


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text
