"""Sentences of the README and the settings catalogue that the code can contradict, read against the code: what
`make run` prints, what `make test` sets up, and who reaches the home tenant under GATEWAY_TENANT_CALLERS."""

from __future__ import annotations

import re
from pathlib import Path

from shared.catalogue import CATALOGUE_BY_NAME
from shared.http.settings import TenantCallers

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
#: The one sentence the catalogue, docs/configuration.md and TenantCallers' docstring agree on.
HOME_RULE = "reaches the home tenant only if its entry names `home`, an unlisted one as before"


def banner() -> str:
    """The banner `make run` prints (localdev/stack.py's template)."""
    text = (ROOT / "localdev" / "stack.py").read_text()
    return text[text.index("is running locally"):text.index("Ctrl-C stops everything")]


def test_the_readme_says_how_many_curl_commands_make_run_prints() -> None:
    printed = len(re.findall(r"^\s*curl ", banner(), re.MULTILINE))
    said = re.search(r"prints the key and (\w+) ready curl commands", README)
    assert said is not None and NUMBERS[said[1]] == printed
    shown = README[README.index("It prints something like:"):README.index("### A request through the queue")]
    assert len(re.findall(r"^\s*curl ", shown, re.MULTILINE)) == printed


def test_the_readmes_banner_has_every_line_make_run_prints() -> None:
    labels = re.findall(r"^  ([A-Z][A-Za-z-]*(?: [A-Za-z()-]+)*?)  +", banner(), re.MULTILINE)
    assert len(labels) >= 8
    shown = README[README.index("It prints something like:"):README.index("Try:")]
    assert [label for label in labels if f"  {label}  " not in shown] == []


def test_the_readme_names_what_make_test_sets_up_beyond_make_run() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_line = README[README.index("make test   #"):README.index("```", README.index("make test   #"))]
    assert re.search(r"^test: .*\bbrowser\b", makefile, re.MULTILINE) and "Chromium" in test_line
    assert re.search(r"^setup: .*\$\(CHECKOV_VENV\)/\.installed", makefile, re.MULTILINE)
    assert re.search(r"^pytest: setup", makefile, re.MULTILINE) and "checkov" in test_line


def test_every_description_of_the_home_tenants_callers_says_what_the_code_does() -> None:
    callers = TenantCallers({"0" * 32: frozenset({"*"}), "1" * 32: frozenset({"home"})})
    assert callers.allows("f" * 32, None)  # unlisted: as before
    assert not callers.allows("0" * 32, None)  # listed without `home`
    assert callers.allows("1" * 32, None)  # listed with `home`
    page = (ROOT / "docs" / "configuration.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `GATEWAY_TENANT_CALLERS` |"))
    meaning = " ".join(CATALOGUE_BY_NAME["GATEWAY_TENANT_CALLERS"].description.split())
    assert HOME_RULE in meaning and HOME_RULE in row
    assert "every allowed caller's." not in meaning


def test_the_hunting_calls_budget_is_said_to_be_exact_only_for_the_gateways_own_calls() -> None:
    """Graph counts every hunting call of the tenant: other hunting clients share Graph's limit with the gateway."""
    page = (ROOT / "docs" / "migration-hunting.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| calls |"))
    assert "storm of playbooks never earns" not in row
    assert "exact for the gateway's own calls" in row and "lower `RATE_LIMIT_HUNTING`" in row
    meaning = " ".join(CATALOGUE_BY_NAME["RATE_LIMIT_HUNTING"].description.split())
    assert "lower it when other apps hunt in the tenant" in meaning
