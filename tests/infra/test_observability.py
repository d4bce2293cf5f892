"""The workbook and the alert rules (infra/observability.bicep, infra/workbook.json) query only what the gateway's
telemetry catalogue names: a renamed metric fails here, not silently in Azure Monitor."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.telemetry.catalogue import SpanName
from tests.infra import bicep_model as bm
from tests.support.metrics import METRICS_BY_NAME

OBSERVABILITY = bm.INFRA / "observability.bicep"
WORKBOOK = bm.INFRA / "workbook.json"
_NAMED = re.compile(r"""\bname\s*(?:==|in\s*\()\s*((?:"[^"]+"\s*,?\s*)+)""")
_DIMENSION = re.compile(r"""customDimensions\[\\?"([^"\\]+)\\?"\]""")


def names_in(query: str) -> set[str]:
    """The metric or span names a KQL query filters on (`name == "x"`, `name in ("x", "y")`)."""
    return {name for match in _NAMED.finditer(query) for name in re.findall(r'"([^"]+)"', match.group(1))}


def check_query(query: str) -> set[str]:
    """Every name the query uses is a catalogued metric (over customMetrics) or span (over dependencies), and every
    dimension it reads is an attribute of those metrics; the names it uses."""
    names = names_in(query)
    assert names, f"a query that names nothing: {query}"
    if "customMetrics" in query:
        unknown = names - set(METRICS_BY_NAME)
        assert not unknown, f"not in the telemetry catalogue: {unknown}"
        attributes = {attribute for name in names for attribute in METRICS_BY_NAME[name].attributes}
        assert set(_DIMENSION.findall(query)) <= attributes, query
    else:
        assert "dependencies" in query and names <= {span.value for span in SpanName}, query
    return names


def workbook_queries() -> list[str]:
    document = json.loads(WORKBOOK.read_text())
    assert document["version"] == "Notebook/1.0"
    return [item["content"]["query"] for item in document["items"] if item["type"] == 3]


def test_the_workbook_parses_and_queries_only_catalogued_metrics() -> None:
    queries = workbook_queries()
    used = set().union(*(check_query(query) for query in queries))
    # What the issue asks the workbook to show: budget used against the limit, admitted against refused, upstream
    # 429s, backlog and the oldest pending age, cache hits, Defender latency, errors by kind.
    assert {"mdegw.ratelimit.remaining", "mdegw.ratelimit.limit", "mdegw.ratelimit.decisions",
            "mdegw.defender.throttled", "mdegw.queue.depth", "mdegw.operations.oldest_pending_age",
            "mdegw.lookups.cache", SpanName.DEFENDER.value, "mdegw.errors"} <= used
    # Hunting (issue 27): its budget, Graph's 429s by the limit they name, the CPU blocks, its durations.
    hunting = [query for query in queries if 'customDimensions["api"]) == "hunting"' in query
               or "mdegw.hunting." in query]
    assert {"mdegw.ratelimit.remaining", "mdegw.ratelimit.limit", "mdegw.defender.throttled",
            "mdegw.hunting.cpu_blocks", "mdegw.defender.duration",
            "mdegw.defender.requests"} <= set().union(*(names_in(query) for query in hunting))
    assert any('customDimensions["limit"]' in query for query in hunting), "429s by kind"


def _module() -> dict[str, Any]:
    return bm.module("observability")


def test_the_workbook_is_shared_named_by_guid_and_reads_the_gateways_component() -> None:
    _, workbook = bm.the_resource(_module(), "Microsoft.Insights/workbooks")
    assert workbook["kind"] == "shared"
    assert bm.function_call(workbook["name"], "guid") is not None
    assert bm.property_access(workbook["properties"]["sourceId"]) == ("appInsights", "id")
    loaded = bm.function_call(workbook["properties"]["serializedData"], "load_text_content")
    assert loaded is not None and loaded["file_path"] == WORKBOOK.name
    assert bm.module_output(bm.module_params("observability")["appInsightsName"]) == ("monitoring", "appInsightsName")


def test_alert_rules_watch_429s_poison_storage_and_identity_and_the_backlog() -> None:
    rules = _module()["variables"]["alertRules"]["value"]
    used = {rule["name"]: check_query(rule["query"]) for rule in rules}
    assert used == {"upstream-429": {"mdegw.defender.throttled"}, "poisoned-requests": {"mdegw.queue.poisoned"},
                    "storage-or-identity-down": {"mdegw.errors"},
                    "oldest-pending-age": {"mdegw.operations.oldest_pending_age"}}
    thresholds = {rule["name"]: rule["threshold"] for rule in rules}
    assert thresholds == {"upstream-429": 0, "poisoned-requests": 0, "storage-or-identity-down": 0,
                          "oldest-pending-age": "oldestPendingAlertSeconds"}
    assert all("summarize value =" in rule["query"] for rule in rules)  # the rules' measure column
    # Graph's CPU 429 is no budget's failure: the calls 429s alone fire the rule.
    upstream = next(rule["query"] for rule in rules if rule["name"] == "upstream-429")
    assert 'where tostring(customDimensions["limit"]) != "cpu"' in upstream


def test_each_rule_notifies_the_action_group_given_and_reads_with_its_own_identity() -> None:
    module = _module()
    (name, element), = bm.resources_of_type(module, "Microsoft.Insights/scheduledQueryRules").items()
    rule = bm.body(element)
    assert element["config"]["loop_type"]["detail"]["array_name"] == "alertRules"
    assert rule["identity"] == {"type": "SystemAssigned"}
    criterion = rule["properties"]["criteria"]["allOf"][0]
    assert criterion["metricMeasureColumn"] == "value" and criterion["operator"] == "GreaterThan"
    groups = bm.operator(rule["properties"]["actions"]["actionGroups"], "conditional")
    assert groups is not None and groups["true_value"] == [] and groups["false_value"] == ["actionGroupId"]
    assert bm.module_params("observability")["actionGroupId"] == "alertActionGroupId"
    assert bm.main()["parameters"]["alertActionGroupId"]["default"] == ""
    (_, readers), = bm.resources_of_type(module, "Microsoft.Authorization/roleAssignments").items()
    reader = bm.body(readers)
    assert reader["scope"] == "appInsights"
    assert bm.function_call(reader["name"], "guid") is not None
    assert module["variables"]["readerRoleId"]["value"] == "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # Reader
    assert name == "rules"
