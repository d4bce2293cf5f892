"""The quickstart, as a stranger runs it: `make run` in a clean shell (PATH and HOME only), the five curl commands it
prints (the last hunts and pipes the event it found into a create), the README's queue snippet as printed, then
Ctrl-C, after which every process and port is released.

`make test` runs it once on each Python it tests: MDEGW_QUICKSTART_PYTHON names the interpreter to pass as
`make run PYTHON=...` (unset: none, as a stranger types it); either way `make run` must say which it uses.

`make run` listens on the fixed ports the README prints (7071-7073, 10000-10002). Where something else holds
one of them (a developer's own `make run`), the test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.requirements import require

ROOT = Path(__file__).resolve().parents[2]
PORTS = (7071, 7072, 7073, 10000, 10001, 10002)
README_SNIPPET_MARKER = "<!-- make-test: queue-snippet"


def clean_environment() -> dict[str, str]:
    """What `env -i PATH="$PATH" HOME="$HOME" bash` leaves."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}


def make_run_command() -> list[str]:
    """`make run`, with the interpreter `make test` is testing (MDEGW_QUICKSTART_PYTHON), if any."""
    python = os.environ.get("MDEGW_QUICKSTART_PYTHON", "")
    return ["make", "run", f"PYTHON={python}"] if python else ["make", "run"]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (any session), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def printed_curl_commands(output: str) -> list[str]:
    """The curl commands of the banner, continuation lines joined (as the before-stop check reads them)."""
    joined = re.sub(r"\\\n\s*", "", output)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(README_SNIPPET_MARKER)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.DOTALL)
    assert match, "no bash block after the queue-snippet marker in README.md"
    return match.group(1)


@pytest.mark.timeout(420)
def test_make_run_and_what_it_prints_work_in_a_clean_shell(tmp_path: Path) -> None:
    busy = [port for port in PORTS if listening(port)]
    require(not busy, f"free ports {busy}",
            "stop what holds them (a `make run` of your own?): the quickstart needs them")
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        make = subprocess.Popen(make_run_command(), cwd=ROOT, env=clean_environment(), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    processes = {make.pid}
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C" not in log_path.read_text(errors="replace"):
            assert make.poll() is None, f"make run exited ({make.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"make run printed no banner in time:\n{log_path.read_text()}"
            time.sleep(0.5)
        banner = log_path.read_text(errors="replace")
        interpreter = re.search(r"^Python 3\.\d+\.\d+: (/\S+) \(venv ", banner, re.MULTILINE)
        assert interpreter, f"make run does not say which Python it uses:\n{banner}"
        if os.environ.get("MDEGW_QUICKSTART_PYTHON"):
            assert interpreter.group(1) == os.environ["MDEGW_QUICKSTART_PYTHON"], banner
        for port in PORTS:
            assert f":{port}" in banner, f"the banner does not show port {port}"

        commands = printed_curl_commands(banner)
        # The home tenant's lookup, the customer tenant's, the create, a hunting query, and the same query piped
        # into a create of the event it found.
        assert len(commands) == 5, banner
        answers = []
        for command in commands:
            done = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], cwd=ROOT, env=clean_environment(),
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.stdout.rstrip().endswith("\n200"), f"{command}\n-> {done.stdout}{done.stderr}"
            answers.append(done.stdout.rstrip().rsplit("\n", 1)[0])
            if "/tenants/" in command:  # contoso's own data, through the token exchange
                assert "Contoso: suspicious PowerShell" in done.stdout, done.stdout
        hunted = json.loads(answers[3])  # Defender's shape, served by Graph's runHuntingQuery
        assert [column["Name"] for column in hunted["Schema"]][:3] == ["Timestamp", "ReportId", "DeviceId"], hunted
        assert hunted["Results"] and "ExecutionTime" in hunted["Stats"], hunted
        created = json.loads(answers[4])  # the alert Defender made from the newest event the query found
        newest = hunted["Results"][0]
        assert (created["title"], created["machineId"]) == ("Found by advanced hunting", newest["DeviceId"]), created

        snippet = subprocess.run(["bash", "-c", readme_snippet()], cwd=ROOT, env=clean_environment(),
                                 capture_output=True, text=True, timeout=120, check=False)
        assert snippet.returncode == 0, snippet.stderr
        answer = snippet.stdout.strip().splitlines()[-1]
        assert '"@odata.context"' in answer and '"value": [{' in answer, snippet.stdout + snippet.stderr

        processes |= descendants(make.pid)
        assert len(processes) >= 4, processes  # make, the stack, Azurite and the host at least
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal: the foreground process group
        make.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := [pid for pid in processes if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes still running after Ctrl-C: {left}"
        assert [port for port in PORTS if listening(port)] == []
        assert "Stopped." in log_path.read_text(errors="replace")
    finally:  # whatever a failure left behind
        for pid in processes | descendants(make.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        make.wait(timeout=10)
