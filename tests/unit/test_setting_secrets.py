"""No value of a setting that could hold a secret reaches an answer or a log: a bad URL setting is named with its
problem and at most its scheme and host; an anonymous route hears only that the gateway is misconfigured."""

from __future__ import annotations

import json
import logging

import azure.functions as func
import pytest

from localdev.azurite import DEV_ACCOUNT, DEV_KEY
from shared import runtime
from shared.catalogue import CATALOGUE
from shared.configuration import ConfigurationError, shown, shown_url
from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.http.misconfigured import MisconfiguredEdge
from shared.http.settings import AuthMode
from shared.settings import load_settings

PASSWORD = "hunter2pw"
SIGNATURE = "SAS0signature"
ACCOUNT_KEY = "QWNjb3VudEtleQ" * 6 + "=="
GUID = "00000000-0000-4000-8000-00000000000{}"
#: Values that hold a secret, each shaped as it would be put into a setting (the right one or the wrong one).
SECRET_VALUES = (
    f"https://user:{PASSWORD}@api.securitycenter.microsoft.com",
    f"https://user:{PASSWORD}@127.0.0.1:8443",
    f"https://acct.queue.core.windows.net/?sv=2022-11-02&ss=q&srt=sco&sp=rwdlacup&sig={SIGNATURE}%2Bx%3D",
    f"https://127.0.0.1/?sig={SIGNATURE}",
    f"https://localhost:{PASSWORD}",  # a password where the port goes
    f"user:{PASSWORD}@localhost",
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
    f"Bearer {ACCOUNT_KEY}.{ACCOUNT_KEY}",
)
SECRETS = (PASSWORD, SIGNATURE, ACCOUNT_KEY)

LOCAL = {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                                f"TableEndpoint=http://127.0.0.1:10002/{DEV_ACCOUNT};"
                                f"QueueEndpoint=http://127.0.0.1:10001/{DEV_ACCOUNT};"}
#: Identity-based storage and many tenants: the settings only Azure reads (storage URIs, the authority host).
AZURE = {"AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
         "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
         "AzureWebJobsStorage__credential": "managedidentity", "MDE_TENANTS": f"contoso={GUID.format(1)}",
         "MDE_MULTITENANT_CLIENT_ID": GUID.format(2), "AZURE_CLIENT_ID": GUID.format(3)}


#: Entra ID in front: the settings only that mode reads (the token's issuer and audiences).
ENTRA = {**LOCAL, "GATEWAY_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True",
         "GATEWAY_TOKEN_ISSUER": f"https://login.microsoftonline.com/{GUID.format(4)}/v2.0",
         "GATEWAY_TOKEN_AUDIENCES": f"{GUID.format(5)},api://mde-alert-gateway"}
#: Secrets as they are, not inside a URL: a SAS signature's value, a function key, an account key put in the wrong
#: setting.
BARE_SECRETS = ("sv2ZQnVwq8XlR0mZ3y0FJw5Bq3cH1kq9GQm5VZb6D4E=", "Xq3lZ0e9W1cTj8w7yD5m2Kp4sNh6Gv0bRa9uYo1iQe3z==",
                ACCOUNT_KEY)


def _problem_text(env: dict[str, str]) -> str:
    try:
        load_settings(env)
    except ConfigurationError as error:
        return str(error) + json.dumps([(problem.setting, problem.reason) for problem in error.problems])
    return ""


@pytest.mark.parametrize("base", [LOCAL, AZURE, ENTRA], ids=["local", "azure", "entra"])
@pytest.mark.parametrize("name", [spec.name for spec in CATALOGUE])
def test_no_setting_repeats_a_secret_put_in_it(base: dict[str, str], name: str) -> None:
    assert _problem_text(dict(base)) == ""  # the base is good: any problem below is the setting's
    for value in SECRET_VALUES:
        text = _problem_text({**base, name: value})
        assert not [secret for secret in SECRETS if secret in text], (name, value, text)
    for secret in BARE_SECRETS:
        text = _problem_text({**base, name: secret})
        assert secret not in text, (name, text)


def test_a_setting_that_urllib_cannot_read_is_a_setting_problem_named_with_the_others() -> None:
    """A bad IPv6 host makes urllib raise: still a problem naming the setting (not a start-up failure that hides the
    rest), and the value is not repeated."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**ENTRA, "GATEWAY_TOKEN_ISSUER": f"https://[{PASSWORD}", "MDE_CLOUD": "mooncake",
                       "AzureWebJobsStorage__queueServiceUri": f"https://[{SIGNATURE}"})
    named = {problem.setting for problem in caught.value.problems}
    assert {"GATEWAY_TOKEN_ISSUER", "MDE_CLOUD"} <= named
    assert PASSWORD not in str(caught.value) and SIGNATURE not in str(caught.value)


@pytest.mark.parametrize(("name", "value", "named"), [
    ("AzureWebJobsStorage__queueServiceUri", SECRET_VALUES[2], "'https://acct.queue.core.windows.net'"),
    ("AzureWebJobsStorage__tableServiceUri", f"https://u:{PASSWORD}@acct.table.core.windows.net",
     "'https://acct.table.core.windows.net'"),
    ("MDE_AUTHORITY_HOST", f"https://user:{PASSWORD}@login.example.com/x?sig={SIGNATURE}", "'https://login.example.com'"),
    ("MDE_BASE_URL", f"https://api.example.com:{PASSWORD}", "'https://api.example.com'"),
    ("GRAPH_BASE_URL", f"https://graph.microsoft.com:{PASSWORD}", "'https://graph.microsoft.com'"),
])
def test_a_bad_url_setting_is_named_by_its_scheme_and_host(name: str, value: str, named: str) -> None:
    text = _problem_text({**AZURE, name: value})
    assert name in text and named in text
    assert PASSWORD not in text and SIGNATURE not in text


def test_a_plain_bad_value_is_still_repeated_and_a_secret_shaped_one_is_not() -> None:
    assert "'mooncake'" in _problem_text({**LOCAL, "MDE_CLOUD": "mooncake"})
    assert shown("0 */1 * * * *") == "'0 */1 * * * *'"
    assert shown(f"a;AccountKey={PASSWORD}") == "a value of 22 characters (not shown: it may hold a secret)"
    assert shown_url("http://[::1]:7071/x") == "'http://[::1]'"
    assert PASSWORD not in shown_url(f"{PASSWORD}")


BAD = {**LOCAL, "AzureWebJobsStorage": "", **AZURE,
       "AzureWebJobsStorage__queueServiceUri": SECRET_VALUES[2],
       "MDE_AUTHORITY_HOST": f"https://user:{PASSWORD}@127.0.0.1:8443"}


def _request(path: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"http://localhost:7071/api/{path}", headers={}, body=b"")


def _answers(edge: MisconfiguredEdge) -> dict[str, func.HttpResponse]:
    def parse() -> DefenderRequest:
        raise AssertionError("a misconfigured gateway parses nothing")

    return {
        "openapi": edge.openapi(_request("openapi.json")),
        "create": edge.respond(_request("alerts/CreateAlertByReference"), Api.CREATE_ALERT, parse),
        "lookup": edge.lookup_file_alerts(_request("files/x/alerts"), lambda: pytest.fail("parsed")),
        "operation": edge.operation_status(_request("operations/x"), "x"),
        "health": edge.health(_request("health")),
        "operator": edge.operator_page(_request("operator")),
        "operator-state": edge.operator_state(_request("operator/state")),
        "operator-redrive": edge.operator_redrive(_request("operator/redrive")),
    }


@pytest.mark.parametrize(("auth", "listed"), [
    (AuthMode.FUNCTION_KEY, {"create", "lookup", "operation", "health", "operator", "operator-state",
                             "operator-redrive"}),
    (AuthMode.ENTRA, {"health", "operator", "operator-state", "operator-redrive"}),
])
def test_only_a_caller_the_host_checked_hears_which_settings_are_wrong(auth: AuthMode, listed: set[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(BAD)
    for route, response in _answers(MisconfiguredEdge(caught.value, auth)).items():
        body = response.get_body().decode()
        problem = json.loads(body)
        assert response.status_code == 503 and problem["type"].endswith(":gateway-misconfigured"), route
        assert PASSWORD not in body and SIGNATURE not in body, route
        if route in listed:
            assert {entry["setting"] for entry in problem["settings"]} == {
                "AzureWebJobsStorage__queueServiceUri", "MDE_AUTHORITY_HOST"}, route
        else:
            assert "settings" not in problem, route
            assert "MDE_" not in body and "AzureWebJobsStorage" not in body, route


def test_the_critical_log_line_names_the_settings_without_their_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        started = runtime.start(BAD)
    assert isinstance(started, runtime.Misconfigured)
    (critical,) = [record for record in caplog.records if record.levelno == logging.CRITICAL]
    line = critical.getMessage()
    assert "AzureWebJobsStorage__queueServiceUri" in line and "'https://acct.queue.core.windows.net'" in line
    assert "MDE_AUTHORITY_HOST" in line and "'https://127.0.0.1'" in line
    assert PASSWORD not in caplog.text and SIGNATURE not in caplog.text
