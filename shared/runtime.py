"""Per-process singletons: settings checked once, one credential, one session, one set of limiters."""

from __future__ import annotations

import os
import threading

from shared.credentials import build_credential
from shared.defender_client import DefenderClient
from shared.gateway import Gateway
from shared.ratelimit import load_rate_limit_settings, rate_limiters_from_env
from shared.settings import ConfigurationError, load_defender_settings, setting

_lock = threading.Lock()
_gateway: Gateway | None = None


def check_configuration() -> None:
    """Fail at start-up, with a clear message, on any bad setting (e.g. a base URL off the allowlist)."""
    load_defender_settings()
    load_rate_limit_settings(os.environ)
    auth = setting(os.environ, "GATEWAY_AUTH")
    if auth not in ("function-key", "entra"):
        raise ConfigurationError(f"GATEWAY_AUTH must be function-key or entra, got {auth!r}.")


def gateway() -> Gateway:
    """The worker process's gateway, built on first use."""
    global _gateway
    if _gateway is None:
        with _lock:
            if _gateway is None:
                settings = load_defender_settings()
                client = DefenderClient(settings, build_credential(settings))
                _gateway = Gateway(client, rate_limiters_from_env(os.environ))
    return _gateway
