"""Whether a Defender (or Microsoft Graph) base URL may receive the gateway's token, judged as the HTTP client will use
it.

The gateway sends its bearer token to this URL, so anything URL parsers may read differently is refused rather
than interpreted, and the target judged here must be the one `requests` connects to (shared.defender.outbound). Used at
start-up for MDE_BASE_URL and GRAPH_BASE_URL (shared.settings); the client checks every request against the judged
target again.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from shared.configuration import ConfigurationError, shown_url
from shared.defender.clouds import ALLOWED_HOST_SUFFIXES, GRAPH_HOSTS, Cloud, is_loopback
from shared.defender.facts import Service
from shared.defender.outbound import DEFAULT_PORTS, Target, connection_target

#: Printable ASCII without space (0x21-0x7E): no whitespace, control or non-ASCII character in a base URL.
_URL_CHARACTERS = re.compile(r"[!-~]+", re.ASCII)
#: A host name as DNS spells it: letters, digits and hyphens in non-empty labels (an IDN in its xn-- form).
_DNS_NAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*", re.ASCII)


def judge_base_url(url: str, *, setting_name: str = "MDE_BASE_URL", service: Service = Service.DEFENDER) -> Target:
    """Accept https on a documented Defender domain (for Graph: exactly one of Graph's hosts, GRAPH_HOSTS) or
    http(s) on loopback and return where it connects.

    The gateway sends its bearer token to this URL, so anything URL parsers may read differently is
    refused rather than interpreted (a backslash, `%`, `@`, whitespace, an IDN, a trailing dot, a
    non-canonical IP address ...), and the target judged here must be the one requests connects to.
    """
    def refused(problem: str) -> ConfigurationError:
        return ConfigurationError(f"{setting_name} {problem}, got {shown_url(url)}.", setting=setting_name)

    if not _URL_CHARACTERS.fullmatch(url):
        raise refused("must be printable ASCII without spaces (an international host name in its xn-- form)")
    if any(character in url for character in "@?#"):
        # Not repeated in the message: credentials or a query may hold a secret.
        raise ConfigurationError(f"{setting_name} must be a plain base URL without credentials, query or fragment.",
                                 setting=setting_name)
    if any(character in url for character in "\\%"):
        raise refused("must be a plain base URL without backslashes or percent-encoding")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # its message repeats part of the URL (a "port" may be a password)
        raise refused("is not a valid URL") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise refused("must use http or https")
    if parts.path not in ("", "/"):
        raise refused("must be the API's root URL without a path")
    host = parts.hostname or ""
    if not host:
        raise refused("has no host")
    if host.endswith("."):
        raise refused(f"host {host!r} must not end with a dot")
    judged = Target(parts.scheme, host, DEFAULT_PORTS[parts.scheme] if port is None else port)
    problem = None if is_loopback(host) else (
        _graph_target_problem(judged) if service is Service.GRAPH else _defender_target_problem(judged))
    if problem:
        raise refused(problem)
    try:
        actual = connection_target(url)
    except ValueError as error:
        raise refused(str(error)) from None
    if actual != judged:
        raise refused(f"would connect to {actual}, not to {judged} as it reads")
    return judged


def judge_graph_base_url(url: str, cloud: Cloud) -> Target:
    """judge_base_url for GRAPH_BASE_URL, and over https exactly `cloud`'s Graph host: the Graph token is always
    for MDE_CLOUD's Graph, so another cloud's Graph host would make that token leave its cloud."""
    judged = judge_base_url(url, setting_name="GRAPH_BASE_URL", service=Service.GRAPH)
    if not is_loopback(judged.host) and judged.host != cloud.graph_host:
        raise ConfigurationError(
            f"GRAPH_BASE_URL must be the Microsoft Graph of MDE_CLOUD {cloud.name} ({cloud.graph}) or loopback: "
            f"the gateway's Graph token is for that cloud, got {shown_url(url)}.", setting="GRAPH_BASE_URL")
    return judged


def _defender_target_problem(judged: Target) -> str | None:
    """Why `judged` is not https on port 443 of a documented Defender API host, or None if it is."""
    if judged.scheme != "https":
        return "must use https unless it points at loopback"
    host = judged.host
    if not (_DNS_NAME.fullmatch(host)
            and any(host == suffix or host.endswith("." + suffix) for suffix in ALLOWED_HOST_SUFFIXES)):
        return (f"host {host!r} is not a Defender for Endpoint API host; allowed are "
                + ", ".join(f"*.{s}" for s in ALLOWED_HOST_SUFFIXES) + " and loopback")
    if judged.port != DEFAULT_PORTS["https"]:
        return f"must use the default https port 443 on a Defender host, not {judged.port}"
    return None


def _graph_target_problem(judged: Target) -> str | None:
    """Why `judged` is not https on port 443 of exactly one of Microsoft Graph's hosts, or None if it is."""
    if judged.scheme != "https":
        return "must use https unless it points at loopback"
    if judged.host not in GRAPH_HOSTS:
        return (f"host {judged.host!r} is not a Microsoft Graph host; allowed are exactly "
                + ", ".join(sorted(GRAPH_HOSTS)) + " and loopback")
    if judged.port != DEFAULT_PORTS["https"]:
        return f"must use the default https port 443 on a Graph host, not {judged.port}"
    return None
