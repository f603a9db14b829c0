"""Bearer-token authentication and role checks for the HTTP API.

Owns: turning an `Authorization: Bearer <token>` header into a `Principal` (the token's configured
name and roles) by comparing SHA-256 digests in constant time against `settings.api.tokens`. Only
hashes are configured; a token is never stored or logged. Must never decide what a route does, only
who is asking and whether they hold a role.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from tezzeret.config import ApiToken
from tezzeret.forge.errors import ForgeError

ANONYMOUS = "anonymous"


class AuthRequired(ForgeError):
    """No bearer token, or one that matches no configured hash."""

    code = "AUTH_REQUIRED"
    http_status = 401


class RoleMissing(ForgeError):
    """The token is valid but its roles do not include the one this route needs."""

    code = "FORBIDDEN"
    http_status = 403


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def authenticated(self) -> bool:
        return self.name != ANONYMOUS


def token_sha256(token: str) -> str:
    """The hex digest to put in `api.tokens[].sha256` for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenAuthority:
    tokens: tuple[ApiToken, ...]

    @classmethod
    def from_tokens(cls, tokens: list[ApiToken]) -> "TokenAuthority":
        return cls(tuple(tokens))

    def identify(self, authorization: str | None) -> Principal:
        """The principal behind a header; anonymous when there is none. Raises on a bad token."""
        if not authorization:
            return Principal(ANONYMOUS)
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise AuthRequired(
                "the Authorization header must be 'Bearer <token>'", where="Authorization"
            )
        digest = token_sha256(value)
        match: ApiToken | None = None
        # Compare against every entry so timing does not reveal which one matched.
        for tok in self.tokens:
            if hmac.compare_digest(digest, tok.sha256):
                match = tok
        if match is None:
            raise AuthRequired(
                "the bearer token matches no configured token; check api.tokens (SHA-256 hashes)",
                where="Authorization",
            )
        return Principal(match.name, frozenset(match.roles))

    def require(self, principal: Principal, role: str, action: str) -> None:
        if not principal.authenticated:
            raise AuthRequired(
                f"{action} needs a bearer token with role '{role}'", where="Authorization", role=role
            )
        if role not in principal.roles:
            raise RoleMissing(
                f"token '{principal.name}' lacks role '{role}' needed for {action}",
                where="Authorization",
                role=role,
            )
