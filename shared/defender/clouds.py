"""Defender for Endpoint clouds: API hosts, token scopes and the hosts a base-URL override may name."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GCC_SCOPE = "https://api-gcc.securitycenter.microsoft.us/.default"
GOV_SCOPE = "https://api-gov.securitycenter.microsoft.us/.default"


#: Microsoft Graph per national cloud (its hunting API, runHuntingQuery): the host and the token scope are the same.
GLOBAL_GRAPH = "https://graph.microsoft.com"
US_GOVERNMENT_L4_GRAPH = "https://graph.microsoft.us"
US_GOVERNMENT_L5_GRAPH = "https://dod-graph.microsoft.us"
CHINA_GRAPH = "https://microsoftgraph.chinacloudapi.cn"
#: The hosts a GRAPH_BASE_URL override may name over https: exactly these (Graph's national cloud deployments), no
#: sub-domain, so a mistyped or malicious setting cannot make the gateway send its Graph token elsewhere.
GRAPH_HOSTS: frozenset[str] = frozenset(url.removeprefix("https://") for url in (
    GLOBAL_GRAPH, US_GOVERNMENT_L4_GRAPH, US_GOVERNMENT_L5_GRAPH, CHINA_GRAPH))

PUBLIC_LOGIN = "https://login.microsoftonline.com"
US_GOVERNMENT_LOGIN = "https://login.microsoftonline.us"
PUBLIC_EXCHANGE = "api://AzureADTokenExchange"
US_GOVERNMENT_EXCHANGE = "api://AzureADTokenExchangeUSGov"


@dataclass(frozen=True)
class Cloud:
    """One Defender for Endpoint cloud."""

    name: str
    base_url: str
    scope: str
    #: Its Entra ID login endpoint, and the audience a managed identity's assertion has there (many tenants).
    login: str = PUBLIC_LOGIN
    exchange_audience: str = PUBLIC_EXCHANGE
    #: Microsoft Graph in this cloud (advanced hunting); its token scope is `{graph}/.default`.
    graph: str = GLOBAL_GRAPH

    @property
    def graph_scope(self) -> str:
        return f"{self.graph}/.default"

    @property
    def graph_host(self) -> str:
        """The host of its Graph: the only one an https GRAPH_BASE_URL may name (its token is for this Graph)."""
        return self.graph.removeprefix("https://")


CLOUDS: dict[str, Cloud] = {
    cloud.name: cloud
    for cloud in (
        Cloud("commercial", "https://api.securitycenter.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("us", "https://us.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("eu", "https://eu.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("uk", "https://uk.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("au", "https://au.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("swa", "https://swa.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("ina", "https://ina.api.security.microsoft.com", COMMERCIAL_SCOPE),
        Cloud("gcc", "https://api-gcc.securitycenter.microsoft.us", GCC_SCOPE),
        # GCC (moderate) uses the global Graph; GCC High is US Government L4, DoD is L5.
        Cloud("gcc-high", "https://api-gov.securitycenter.microsoft.us", GOV_SCOPE, US_GOVERNMENT_LOGIN,
              US_GOVERNMENT_EXCHANGE, US_GOVERNMENT_L4_GRAPH),
        Cloud("dod", "https://api-gov.securitycenter.microsoft.us", GOV_SCOPE, US_GOVERNMENT_LOGIN,
              US_GOVERNMENT_EXCHANGE, US_GOVERNMENT_L5_GRAPH),
    )
}

# An https base-URL override must be one of these hosts or a sub-domain of them
# (the documented Defender API domains); anything else is refused so that a
# mistyped or malicious setting cannot make the gateway send its token elsewhere.
ALLOWED_HOST_SUFFIXES: tuple[str, ...] = (
    "securitycenter.microsoft.com",
    "security.microsoft.com",
    "securitycenter.windows.com",
    "securitycenter.microsoft.us",
)

# A loopback base URL (the local simulator) may name its host only as `localhost`, `[::1]` or a canonical
# dotted IPv4 address in this network: spellings such as `127.1`, `0x7f.0.0.1` or `2130706433` are refused,
# because resolvers and URL parsers disagree on them.
LOOPBACK_HOSTS: frozenset[str] = frozenset({"localhost", "::1"})
LOOPBACK_IPV4_NETWORK = "127.0.0.0/8"


def is_loopback(host: str) -> bool:
    """`localhost`, `::1`, or a canonical dotted IPv4 address in LOOPBACK_IPV4_NETWORK (as URL parsers give a host)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return str(address) == host and address in ipaddress.IPv4Network(LOOPBACK_IPV4_NETWORK)
