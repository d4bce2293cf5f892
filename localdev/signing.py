"""RS256 signing keys shaped like Entra ID's: the local token endpoint signs the gateway's callers' tokens with one
and publishes it as a JWKS, and the unit tests sign theirs (its `key_for` is the gateway's SigningKeys)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from localdev.tokens import LOCAL_TENANT_ID
from shared.http.tokens import TokenRefusedError


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair and its key id."""

    private: rsa.RSAPrivateKey
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), uuid.uuid4().hex)

    def jwks(self) -> dict[str, Any]:
        """The public key as the issuer's `jwks_uri` serves it."""
        public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})

    def key_for(self, token: str) -> Any:
        """The verification key of a token this key signed (the gateway's SigningKeys, without a JWKS endpoint):
        a token naming another key id gets none, as from the issuer's key set."""
        if jwt.get_unverified_header(token).get("kid") != self.kid:
            raise TokenRefusedError("its signing key is not one the issuer publishes")
        return self.private.public_key()


def caller_claims(issuer: str, audience: str, object_id: str, *, app_id: str, roles: tuple[str, ...] = (),
                  tenant_id: str = LOCAL_TENANT_ID, lifetime: int = 3600, **extra: Any) -> dict[str, Any]:
    """The claims of an app-only v2.0 access token for the gateway (a playbook's managed identity calling it)."""
    now = int(time.time())
    return {"aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime, "tid": tenant_id,
            "azp": app_id, "oid": object_id, "sub": object_id, "idtyp": "app", "ver": "2.0", "roles": list(roles),
            **extra}
