"""Bearer tokens configured as SHA-256 hashes, with roles."""

from __future__ import annotations

import pytest

from tezzeret.api.auth import AuthRequired, RoleMissing, TokenAuthority, token_sha256
from tezzeret.config import ApiToken


def authority() -> TokenAuthority:
    return TokenAuthority.from_tokens(
        [
            ApiToken(name="ops", sha256=token_sha256("s3cret-admin"), roles=["admin", "submit"]),
            ApiToken(name="tamiyo", sha256=token_sha256("s3cret-em"), roles=["emergency"]),
        ]
    )


def test_identify_and_roles() -> None:
    a = authority()
    p = a.identify("Bearer s3cret-admin")
    assert p.name == "ops" and "admin" in p.roles
    a.require(p, "admin", "drain")
    with pytest.raises(RoleMissing) as exc:
        a.require(a.identify("bearer s3cret-em"), "admin", "drain")
    assert exc.value.http_status == 403 and "tamiyo" in str(exc.value)
    anon = a.identify(None)
    assert not anon.authenticated
    with pytest.raises(AuthRequired):
        a.require(anon, "emergency", "emergency compile")


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic abc", "Bearer", "s3cret-admin"])
def test_bad_headers(header: str) -> None:
    with pytest.raises(AuthRequired) as exc:
        authority().identify(header)
    assert exc.value.code == "AUTH_REQUIRED"
