"""scripts/python.sh, which the Makefile asks for its interpreter: a version is found on PATH or in pyenv's versions
(pyenv's shims answer `python3.X` only with PYENV_VERSION set), an unsupported one is refused, and a missing
supported one is skipped with a hint except under CI.

The interpreters here are stand-ins (a shell script answering the two questions the finder asks), so the test
needs no particular Python installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.pythons import supported_pythons

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "python.sh"

# Answers `-c <version question>` with its X.Y and `-c <path question>` with its own path, as an interpreter would.
FAKE_PYTHON = """#!/bin/bash
case "$2" in
  *realpath*) echo "$0" ;;
  *platform*) echo "{version}.0" ;;
  *) echo "{version}" ;;
esac
"""
# What pyenv's shim does for a version no PYENV_VERSION selects.
FAKE_SHIM = """#!/bin/bash
echo "pyenv: python3.13: command not found" >&2
exit 127
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _fake_python(path: Path, version: str) -> Path:
    return _executable(path, FAKE_PYTHON.format(version=version))


def _run(tmp_path: Path, *args: str, ci: str = "") -> subprocess.CompletedProcess[str]:
    environment = {"PATH": f"{tmp_path / 'shims'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                   "PYENV_ROOT": str(tmp_path / "pyenv")}
    if ci:
        environment["CI"] = ci
    return subprocess.run(["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True,
                          timeout=30, check=False)


def test_supported_versions_are_pyprojects() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "supported"], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.split() == supported_pythons()


def test_a_version_behind_a_pyenv_shim_is_found_in_pyenvs_versions_newest_patch_first(tmp_path: Path) -> None:
    _executable(tmp_path / "shims" / "python3.13", FAKE_SHIM)
    _fake_python(tmp_path / "pyenv" / "versions" / "3.13.2" / "bin" / "python3.13", "3.13")
    newest = _fake_python(tmp_path / "pyenv" / "versions" / "3.13.10" / "bin" / "python3.13", "3.13")
    for which in ("3.13", "python3.13"):
        done = _run(tmp_path, "find", which)
        assert (done.returncode, done.stdout.strip()) == (0, str(newest)), done.stderr


def test_a_version_that_answers_on_path_is_taken_from_path(tmp_path: Path) -> None:
    on_path = _fake_python(tmp_path / "shims" / "python3.12", "3.12")
    _fake_python(tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12", "3.12")
    done = _run(tmp_path, "find", "3.12")
    assert (done.returncode, done.stdout.strip()) == (0, str(on_path)), done.stderr


def test_an_unsupported_python_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    old = _fake_python(tmp_path / "elsewhere" / "python3.10", "3.10")
    done = _run(tmp_path, "find", str(old))
    assert done.returncode == 1
    assert "supports 3.11 3.12 3.13" in done.stderr


@pytest.mark.parametrize(("ci", "status"), [("", 3), ("false", 3), ("true", 1), ("1", 1)])
def test_a_missing_supported_python_is_skipped_with_a_hint_except_under_ci(tmp_path: Path, ci: str,
                                                                             status: int) -> None:
    done = _run(tmp_path, "required", "3.13", ci=ci)
    assert done.returncode == status
    assert "pyenv install 3.13" in done.stderr


def test_the_makefile_says_which_interpreter_it_uses(tmp_path: Path) -> None:
    newest = _fake_python(tmp_path / "pyenv" / "versions" / "3.13.0" / "bin" / "python3.13", "3.13")
    environment = {**os.environ, "PYENV_ROOT": str(tmp_path / "pyenv"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["make", "--no-print-directory", "-s", "interpreter", "PYTHON=3.13"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"Python 3.13.0: {newest} (venv .venvs/3.13;")
