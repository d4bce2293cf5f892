"""Where the HTTP client really connects for a URL: the one answer the allowlist and the client both check.

A URL can mean different hosts to different parsers (`https://evil.com\\.securitycenter.microsoft.com`
is host `evil.com\\.securitycenter.microsoft.com` to urllib.parse, but requests connects to `evil.com`).
So nothing here parses URLs its own way: `connection_target` asks requests to prepare the URL and then
reads it exactly as requests' HTTPAdapter does when it picks a connection pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import requests

DEFAULT_PORTS: dict[str, int] = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Target:
    """The scheme, host (lower case, IPv6 without brackets) and port a connection goes to."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def connection_target(url: str) -> Target:
    """The target requests connects to for `url`; ValueError if requests cannot prepare it."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except requests.RequestException as error:  # InvalidURL, MissingSchema, InvalidSchema
        raise ValueError(f"cannot be prepared as an HTTP request: {error}") from None
    return prepared_target(prepared)


def prepared_target(prepared: requests.PreparedRequest) -> Target:
    """The target requests' HTTPAdapter connects to for a prepared request; ValueError if it has none.

    As requests.adapters does when it picks a connection pool: urlparse(prepared.url) gives scheme,
    hostname and port, and a missing port is the scheme's default.
    """
    parts = urlparse(prepared.url or "")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"cannot be prepared as an HTTP request: {error}") from None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in DEFAULT_PORTS:
        raise ValueError(f"has no http(s) host to connect to: {prepared.url!r}")
    return Target(scheme, parts.hostname, DEFAULT_PORTS[scheme] if port is None else port)
