"""The caller's bearer token, validated by the gateway itself: App Service authentication in front is defence in
depth, not the only gate (a portal toggle, a slot without it, or a header that got through cannot name a caller).

The token must be signed (RS256) by a key the issuer publishes: the issuer's OpenID metadata
(`<issuer>/.well-known/openid-configuration`) names its `jwks_uri`, which PyJWT's `PyJWKClient` reads and caches
(a token with an unknown key id makes it read the set again: Entra ID rolls its keys). Then PyJWT checks the
issuer, the audience, the expiry and not-before, and that the claims the gateway uses are present.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jwt
import requests

from shared.http.settings import TokenCheck

logger = logging.getLogger("mde_alert_gateway")

#: Entra ID signs access tokens with RS256; anything else (HS256 with a public key, `none`) is refused.
ALGORITHMS = ("RS256",)
#: The claims the gateway reads; a token without them is refused.
REQUIRED_CLAIMS = ("exp", "iss", "aud", "oid", "tid")
#: Clock skew allowed between the issuer and this instance.
LEEWAY_SECONDS = 60
#: How long the metadata and the key set are kept before they are read again.
KEYS_LIFESPAN_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 10
#: After the metadata could not be read, how long callers are answered 503 before it is asked for again.
METADATA_RETRY_SECONDS = 10


class TokenRefusedError(Exception):
    """The token is not one the gateway accepts; `reason` says why without quoting it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailableError(Exception):
    """The issuer's metadata or keys could not be read: no token can be checked now (503, not the caller's fault)."""


class SigningKeys(Protocol):
    """The key a token names (its `kid`), as the issuer publishes it."""

    def key_for(self, token: str) -> Any: ...


class IssuerKeys:
    """The issuer's published keys: its OpenID metadata read once, then its JWKS through `PyJWKClient`.

    Requests go through `requests` for the metadata and urllib (PyJWKClient) for the key set, both trusting what
    `requests` trusts (REQUESTS_CA_BUNDLE, as azure-identity does: the local token endpoint's test CA). Metadata
    that cannot be read is not asked for again within METADATA_RETRY_SECONDS: meanwhile callers hear 503 at once
    instead of each waiting out a timeout. `get` and `clock`: the unit tests' own."""

    def __init__(self, check: TokenCheck, *, get: Callable[..., Any] = requests.get,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check = check
        self._get = get
        self._clock = clock
        self._client: jwt.PyJWKClient | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, token: str) -> Any:
        try:
            return self._jwks().get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as error:
            logger.warning("the token issuer's keys could not be read: %s", error)
            raise KeysUnavailableError from None
        except jwt.PyJWKSetError as error:  # the issuer published no key PyJWT can use: no token can be checked now
            logger.warning("the token issuer's key set has no usable key: %s", type(error).__name__)
            raise KeysUnavailableError from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as error:
            raise TokenRefusedError(f"its signing key is not one the issuer publishes ({type(error).__name__})") \
                from None

    def _jwks(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                if self._failed_at is not None and self._clock() - self._failed_at < METADATA_RETRY_SECONDS:
                    raise KeysUnavailableError
                try:
                    jwks_uri = self._jwks_uri()
                except KeysUnavailableError:
                    self._failed_at = self._clock()
                    raise
                self._client = jwt.PyJWKClient(jwks_uri, cache_jwk_set=True, lifespan=KEYS_LIFESPAN_SECONDS,
                                               timeout=FETCH_TIMEOUT_SECONDS, ssl_context=_ssl_context(jwks_uri))
            return self._client

    def _jwks_uri(self) -> str:
        url = self.check.metadata_url
        try:
            answer = self._get(url, timeout=FETCH_TIMEOUT_SECONDS, allow_redirects=False)
            answer.raise_for_status()
            metadata = answer.json()
        except (requests.RequestException, ValueError) as error:
            logger.warning("the token issuer's OpenID metadata could not be read from %s: %s", url,
                           type(error).__name__)
            raise KeysUnavailableError from None
        jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
        # OpenID Connect Discovery: the metadata's issuer is the one it was fetched for.
        if (not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://")
                or metadata.get("issuer") != self.check.issuer):
            logger.warning("the token issuer's OpenID metadata at %s names another issuer or no https jwks_uri", url)
            raise KeysUnavailableError
        return jwks_uri


def _ssl_context(url: str) -> ssl.SSLContext | None:
    """The CA bundle `requests` would trust for `url` (REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE), for urllib; None: the
    system's."""
    verify = requests.Session().merge_environment_settings(url, {}, None, None, None)["verify"]
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else None


def validated_claims(token: str, check: TokenCheck, keys: SigningKeys) -> Mapping[str, Any]:
    """The claims of a token the gateway accepts; TokenRefusedError (401) or KeysUnavailableError (503)."""
    if token.count(".") != 2 or len(token) > 16 * 1024:
        raise TokenRefusedError("the bearer token is not a JWT")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, keys.key_for(token), algorithms=list(ALGORITHMS), audience=sorted(check.audiences),
            issuer=check.issuer, leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS), "verify_signature": True})
    except jwt.ExpiredSignatureError:
        raise TokenRefusedError("the bearer token has expired") from None
    except jwt.InvalidAudienceError:
        raise TokenRefusedError("the bearer token is not for this gateway's audience (GATEWAY_TOKEN_AUDIENCES)") \
            from None
    except jwt.InvalidIssuerError:
        raise TokenRefusedError("the bearer token is not from this gateway's issuer (GATEWAY_TOKEN_ISSUER)") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenRefusedError(f"the bearer token has no {error.claim!r} claim") from None
    except jwt.InvalidTokenError as error:
        raise TokenRefusedError(f"the bearer token is not valid ({type(error).__name__})") from None
    return claims
