"""Flex Consumption concurrency, chosen so that every call and every queued message an instance takes has a thread.

Documented facts the defaults rest on (Microsoft Learn, the Python worker's and the queue extension's sources):
Flex runs a Python app one HTTP call per instance unless `perInstanceConcurrency` says otherwise; the Python
worker runs synchronous functions on `PYTHON_THREADPOOL_THREAD_COUNT` threads, `min(32, CPUs + 4)` when unset
(about 5 on a one-vCPU 2048 MB instance); a queue function instance takes `batchSize + newBatchThreshold`
messages at once (also its scale target); each queue function scales on instances of its own; a queue that holds
only delayed messages reads as empty to the scale controller, so a waiting function scales to zero unless an
instance is kept always ready (`function:<name>`, in lower case).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infra import bicep_model as bm
from tests.support.rigs import function_metadata

ROOT = Path(__file__).resolve().parents[2]


def _param(name: str) -> dict[str, Any]:
    param: dict[str, Any] = bm.main()["parameters"][name]
    return param


def _queues() -> dict[str, Any]:
    queues: dict[str, Any] = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    return queues


def test_the_worker_has_a_thread_for_every_message_a_queue_instance_takes() -> None:
    in_flight = _queues()["batchSize"] + _queues()["newBatchThreshold"]
    threads = _param("pythonThreadCount")
    assert bm.decorators(threads)["min_value"] >= in_flight, "a queue instance would take messages it has no thread for"
    assert threads["default"] >= in_flight


def test_the_worker_has_a_thread_for_every_http_call_an_instance_takes() -> None:
    http = _param("httpPerInstanceConcurrency")
    assert 1 < http["default"] <= _param("pythonThreadCount")["default"]  # Flex's default for Python is 1
    settings = {name: value for name, value, _ in bm.app_settings(bm.main())}
    threads = bm.function_call(settings["PYTHON_THREADPOOL_THREAD_COUNT"], "string")
    assert threads is not None
    larger = bm.function_call(threads["value_to_convert"], "max")
    assert larger is not None and set(larger.values()) == {"pythonThreadCount", "httpPerInstanceConcurrency"}


def test_a_queue_batch_stays_small_and_within_the_extensions_bounds() -> None:
    queues = _queues()
    assert 1 <= queues["batchSize"] <= 32 and 0 <= queues["newBatchThreshold"] <= queues["batchSize"]
    assert queues["batchSize"] + queues["newBatchThreshold"] <= bm.decorators(_param("pythonThreadCount"))["max_value"]


def test_waiting_functions_can_be_kept_always_ready_by_their_flex_names() -> None:
    waiting = sorted(name for name, function in function_metadata().items()
                     for binding in function["bindings"]
                     if binding["type"] == "queueTrigger" and binding["queueName"] != "%REQUESTS_QUEUE%")
    assert waiting == ["WaitCreateAlert", "WaitFileAlerts", "WaitFileInfo", "WaitHunting"]
    app = bm.module("functionApp")
    assert app["variables"]["waitingFunctionNames"]["value"] == waiting
    loop = app["variables"]["waitingAlwaysReady"]["value"]
    assert "function:${toLower(name)}" in json.dumps(loop)  # Flex matches always-ready names in lower case
    always = _param("waitingFunctionsAlwaysReady")
    assert always["default"] == 0  # no standing cost unless asked for
    assert bm.module_params("functionApp")["waitingFunctionsAlwaysReady"] == "waitingFunctionsAlwaysReady"
    _, site = bm.the_resource(app, "Microsoft.Web/sites")
    chosen = bm.operator(site["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"], "conditional")
    assert chosen is not None and chosen["true_value"] == [] and chosen["false_value"] == "waitingAlwaysReady"
