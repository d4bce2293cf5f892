"""The settings catalogue is the one list: the code reads nothing else, and docs/configuration.md documents it all."""

from __future__ import annotations

import re
from pathlib import Path

from shared.catalogue import CATALOGUE_BY_NAME

ROOT = Path(__file__).resolve().parents[2]
APP_SOURCES = [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py"),
               *(path for folder in sorted(ROOT.glob("*_fn")) for path in folder.rglob("*.py"))]


def settings_read_by_code() -> set[str]:
    names: set[str] = set()
    for path in APP_SOURCES:
        text = path.read_text()
        names |= set(re.findall(r"(?:setting|_number|_whole)\(\s*\w+\s*,\s*\"([^\"]+)\"", text))
        names |= set(re.findall(r"environ(?:\.get)?\(\s*\"([^\"]+)\"", text))
        names |= set(re.findall(r"environ\[\"([^\"]+)\"\]", text))
    return names


def test_code_reads_only_catalogued_settings() -> None:
    read = settings_read_by_code()
    assert read, "the scan found no setting reads at all"
    assert read - CATALOGUE_BY_NAME.keys() == set()


def test_every_catalogued_setting_is_used_by_the_code() -> None:
    """Each name appears as a literal somewhere in the app besides its own catalogue entry."""
    sources = []
    for path in APP_SOURCES:
        text = path.read_text()
        if path == ROOT / "shared" / "catalogue.py":
            text = text[:text.index("CATALOGUE: tuple")] + text[text.index("CATALOGUE_BY_NAME"):]
        sources.append(text)
    code = "\n".join(sources)
    unused = [name for name in CATALOGUE_BY_NAME if f'"{name}"' not in code]
    assert unused == []


def test_the_configuration_page_lists_every_setting() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name in CATALOGUE_BY_NAME:
        assert f"| `{name}` |" in page, f"docs/configuration.md's table misses {name}"
