"""The one CI check of every skip site (tests/support/requirements.py): missing tools fail under CI, and skip with an
install hint elsewhere."""

from __future__ import annotations

import pytest

from tests.support.requirements import require


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="chromium is missing: apt-get install chromium"):
        require(False, "chromium", "apt-get install chromium")


@pytest.mark.parametrize("ci", [None, "", "false", "0", "no"])
def test_a_missing_tool_skips_with_its_install_hint_elsewhere(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="checkov is missing: pip install checkov"):
        require(False, "checkov", "pip install checkov")


def test_a_present_tool_goes_on_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require(True, "bash", "apt-get install bash")
