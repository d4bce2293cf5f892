"""Many tenants, in process: the settings (MDE_TENANTS, MDE_MULTITENANT_CLIENT_ID, MDE_AUTHORITY_HOST,
GATEWAY_TENANT_CALLERS), which callers may act for which tenant, and a token per tenant (a failure remembered)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.configuration import ConfigurationError
from shared.defender.client import DefenderClient, IdentityError
from shared.defender.tenants import MultiTenant, Tenant, parse_tenants
from shared.settings import load_settings
from tests.support.rigs import UNIT_ENV

CONTOSO = "c0c0c0c0-1111-4222-8333-444455556666"
FABRIKAM = "f0f0f0f0-2222-4333-8444-555566667777"
APP = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
ALICE = "5f9a1c2e-0000-4000-8000-0000000a11ce"
MANY = {"MDE_TENANTS": f"contoso={CONTOSO},{FABRIKAM}", "MDE_MULTITENANT_CLIENT_ID": APP,
        "AZURE_CLIENT_ID": "0d1e2f30-4152-4637-8899-aabbccddeeff"}


def settings(**env: str) -> Any:
    return load_settings({**UNIT_ENV, **env})


def test_tenants_are_listed_by_short_name_or_id_and_one_tenant_is_the_default() -> None:
    assert settings().defender.multi_tenant is None
    multi = settings(**MANY).defender.multi_tenant
    assert multi is not None and multi.tenants == (Tenant(CONTOSO, "contoso"), Tenant(FABRIKAM, FABRIKAM))
    assert multi.find("CONTOSO") == multi.find(CONTOSO) == Tenant(CONTOSO, "contoso") and multi.find("x") is None
    assert multi.authority == "https://login.microsoftonline.com"
    assert multi.exchange_audience == "api://AzureADTokenExchange"
    gov = settings(**MANY, MDE_CLOUD="gcc-high").defender.multi_tenant
    assert gov is not None and gov.exchange_audience == "api://AzureADTokenExchangeUSGov"
    assert gov.authority == "https://login.microsoftonline.us"


@pytest.mark.parametrize(("raw", "says"), [("contoso=not-a-guid", "tenant id"), (f"Bad Name={CONTOSO}", "short name"),
                                           (f"a={CONTOSO},b={CONTOSO}", "repeats")])
def test_a_bad_tenant_list_is_refused(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_tenants(raw)


@pytest.mark.parametrize(("changes", "setting"), [
    ({"MDE_MULTITENANT_CLIENT_ID": ""}, "MDE_MULTITENANT_CLIENT_ID"),
    ({"AZURE_CLIENT_ID": ""}, "AZURE_CLIENT_ID"),
    ({"MDE_CREDENTIAL": "default"}, "AZURE_CLIENT_ID"),
    ({"MDE_AUTHORITY_HOST": "http://127.0.0.1:8443"}, "MDE_AUTHORITY_HOST"),
    ({"MDE_AUTHORITY_HOST": "https://login.example.com"}, "MDE_AUTHORITY_HOST"),
    ({"GATEWAY_TENANT_CALLERS": f"{ALICE}=nobody"}, "GATEWAY_TENANT_CALLERS"),
    ({"GATEWAY_TENANT_CALLERS": "not-an-id=contoso"}, "GATEWAY_TENANT_CALLERS"),
])
def test_a_many_tenants_misconfiguration_names_its_setting(changes: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        settings(**{**MANY, **changes})
    assert setting in [problem.setting for problem in raised.value.problems]


def test_a_loopback_https_authority_is_the_local_token_endpoint() -> None:
    multi = settings(**MANY, MDE_AUTHORITY_HOST="https://127.0.0.1:8443/").defender.multi_tenant
    assert multi is not None and multi.authority == "https://127.0.0.1:8443"


def test_a_listed_caller_acts_for_its_tenants_and_the_home_tenant_only_when_named() -> None:
    bob = "5f9a1c2e-0000-4000-8000-000000000b0b"
    callers = settings(**MANY, GATEWAY_TENANT_CALLERS=f"{ALICE}=contoso;{bob}=home+*;{ALICE}={FABRIKAM}").access \
        .tenant_callers
    assert callers.allows(ALICE, CONTOSO) and callers.allows(ALICE, FABRIKAM)  # both entries of alice's count
    assert not callers.allows(ALICE, None)  # confined to customers: not the home tenant
    assert callers.allows(bob, None) and callers.allows(bob, CONTOSO)
    carol = "5f9a1c2e-0000-4000-8000-0000000ca201"
    assert callers.allows(carol, None) and not callers.allows(carol, CONTOSO)  # unlisted: as before


class _Refusing:
    """A customer tenant's credential that refuses as a tenant without consent does, counting the asks."""

    def __init__(self) -> None:
        self.asked = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked += 1
        raise ClientAuthenticationError("Microsoft Entra ID error '(invalid_client) AADSTS7000229: The client "
                                        "application is missing service principal in the tenant'")


class _Tenants:
    def __init__(self, multi: MultiTenant) -> None:
        self.multi_tenant = multi
        self.refusing = _Refusing()

    def credential(self, tenant: Tenant) -> _Refusing:
        return self.refusing


def test_a_tenant_without_consent_is_named_with_its_consent_link_and_not_asked_again_for_a_minute() -> None:
    defender = settings(**MANY).defender
    assert defender.multi_tenant is not None
    tenants = _Tenants(defender.multi_tenant)
    client = DefenderClient(defender, _Refusing(), tenants=tenants)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(IdentityError) as raised:
            client.token(CONTOSO)
    error = raised.value
    assert error.tenant == Tenant(CONTOSO, "contoso") and error.consent_url == (
        f"https://login.microsoftonline.com/{CONTOSO}/v2.0/adminconsent?client_id={APP}"
        "&scope=https://api.securitycenter.microsoft.com/.default")
    assert tenants.refusing.asked == 1
    with pytest.raises(IdentityError, match="not one of MDE_TENANTS"):
        client.token("5f9a1c2e-0000-4000-8000-000000000000")
