"""Any exception while the gateway starts, not only bad settings, leaves an app that says so: function_app imports,
every HTTP function answers 503 gateway-misconfigured without a word of the error (its text may hold a secret), the
log names the error's type and place once at CRITICAL, and no queue or timer function is registered (the host would
take, fail and finally poison the queued requests of a registered one; an unregistered one leaves them waiting).

No setting that passes its checks makes building the runtime fail today, so the failure is injected where it would
happen: `shared.runtime.build`, which function_app's `runtime.start()` calls after the settings are read."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from localdev.invocation import run
from localdev.workers import EmulatedWorker
from shared import runtime
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SETTINGS: dict[str, str] = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
SECRET = "hunter2-connection-password"


def failing_build(settings: Settings) -> runtime.Runtime:
    raise RuntimeError(f"could not reach the store with AccountKey={SECRET}")


@pytest.fixture
def failed_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """function_app imported afresh with valid settings and a runtime build that raises (all undone after)."""
    for name, value in LOCAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runtime, "build", failing_build)
    monkeypatch.setattr(runtime, "_runtime", None)
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    module = importlib.import_module("function_app")
    monkeypatch.delitem(sys.modules, "function_app")
    return module


def test_the_app_imports_and_registers_its_http_functions_alone(failed_app: Any) -> None:
    triggers = {function.name: function.trigger.get("type") for function in EmulatedWorker.index_app(failed_app.app)}
    assert "GetFileRelatedAlerts" in triggers, triggers
    assert set(triggers.values()) == {"httpTrigger"}, triggers  # no queue or timer function: nothing is taken


def test_every_http_function_answers_503_gateway_misconfigured_without_the_errors_text(failed_app: Any) -> None:
    functions = [f for f in EmulatedWorker.index_app(failed_app.app) if f.trigger.get("type") == "httpTrigger"]
    for function in functions:
        request = func.HttpRequest("GET", "http://localhost:7071/api/x", headers={"x-functions-key": "k"}, body=b"",
                                   route_params={"fileHash": "a" * 40, "operationId": "x", "tenant": "x"})
        response = run(function.name, function.handler, request)
        body = response.get_body().decode()
        problem = json.loads(body)
        assert response.status_code == 503 and problem["type"].endswith(":gateway-misconfigured"), function.name
        assert "could not start" in problem["detail"] and "settings" not in problem, function.name
        assert SECRET not in body and "RuntimeError" not in body, function.name


def test_the_log_names_the_errors_type_and_place_once_and_never_its_text(monkeypatch: pytest.MonkeyPatch,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(runtime, "build", failing_build)
    monkeypatch.setattr(runtime, "_runtime", None)
    with caplog.at_level(logging.DEBUG):
        started = runtime.start(LOCAL_SETTINGS)
    assert isinstance(started, runtime.Misconfigured) and started.edge.error is None
    (critical,) = [record for record in caplog.records if record.levelno == logging.CRITICAL]
    line = critical.getMessage()
    assert "RuntimeError raised at test_start_failure.py:" in line and "in failing_build" in line
    assert SECRET not in caplog.text
