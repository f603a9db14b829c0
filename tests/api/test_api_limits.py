"""Who may submit, and how often (issue 16): a token when configured, a per-client rate limit with
429 and Retry-After, each client on its own bucket; against real `tezzeret serve` processes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from serverproc import ADMIN_TOKEN, EMERGENCY_TOKEN, SUBMIT_TOKEN, ServerProcess, write_config
from servers import free_port

from tezzeret.config import load_settings

pytestmark = pytest.mark.timeout(300)

BURST = 3
PER_MIN = 6  # one token every 10 s: no refill during a test
UNKNOWN = {"blueprint_id": "0" * 64}  # answered 404 after the limit is taken: nothing compiles


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str, **api: object) -> ServerProcess:
    root = tmp_path_factory.mktemp(name)
    port = free_port()
    config = write_config(root / "tezzeret.yaml", root / "state", port, api=api)
    return ServerProcess(config, port, root / "serve.log").start()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = _serve(tmp_path_factory, "limited", rate_limit_per_min=PER_MIN, rate_limit_burst=BURST)
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def token_required(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = _serve(tmp_path_factory, "token", require_token_for_submit=True)
    try:
        yield proc
    finally:
        proc.terminate()


def from_address(server: ServerProcess, address: str, **kwargs: object) -> httpx.Client:
    """A client whose connections come from `address` (any 127.x.y.z reaches a loopback server)."""
    return httpx.Client(base_url=server.url, timeout=30, transport=httpx.HTTPTransport(local_address=address), **kwargs)


def rejected(server: ServerProcess, reason: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    m = re.search(rf'^tezzeret_http_rejected_total\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_anonymous_clients_are_limited_per_address(limited: ServerProcess) -> None:
    before = rejected(limited, "rate_limited")
    with from_address(limited, "127.0.0.2") as a, from_address(limited, "127.0.0.3") as b:
        for _ in range(BURST):
            assert a.post("/v1/blueprints", json=UNKNOWN).status_code == 404
        refused = a.post("/v1/blueprints", json=UNKNOWN)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["code"] == "RATE_LIMITED" and "anonymous@127.0.0.2" in body["message"]
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= 60 // PER_MIN and body["retry_after_s"] == retry
        # Another address has its own bucket.
        assert b.post("/v1/blueprints", json=UNKNOWN).status_code == 404
        # Reading is not limited.
        assert a.get("/health/tezzeret").status_code == 200
        assert a.get("/v1/jobs").status_code == 200
    assert rejected(limited, "rate_limited") == before + 1


def test_tokens_are_limited_per_identity_not_per_address(limited: ServerProcess) -> None:
    karn = {"Authorization": f"Bearer {SUBMIT_TOKEN}"}
    ops = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Karn from two addresses is still one client.
    with from_address(limited, "127.0.0.4", headers=karn) as k1, from_address(limited, "127.0.0.5", headers=karn) as k2:
        for i in range(BURST):
            assert (k1 if i % 2 else k2).post("/v1/blueprints", json=UNKNOWN).status_code == 404
        refused = k1.post("/v1/blueprints", json=UNKNOWN)
        assert refused.status_code == 429 and "'karn'" in refused.json()["message"]
        assert "Retry-After" in refused.headers
    # Another token, from the same address as Karn, is not affected.
    with from_address(limited, "127.0.0.4", headers=ops) as o:
        assert o.post("/v1/blueprints", json=UNKNOWN).status_code == 404


def test_refused_before_the_body_is_read(limited: ServerProcess) -> None:
    """A rate-limited client's body is never parsed: even a malformed one gets 429, not 400."""
    with from_address(limited, "127.0.0.6") as c:
        for _ in range(BURST):
            c.post("/v1/blueprints", json=UNKNOWN)
        r = c.post("/v1/blueprints", content=b"[" * 5000, headers={"Content-Type": "application/json"})
        assert r.status_code == 429


def test_token_required_when_configured(token_required: ServerProcess) -> None:
    with httpx.Client(base_url=token_required.url, timeout=30) as c:
        anon = c.post("/v1/blueprints", json=UNKNOWN)
        assert anon.status_code == 401 and anon.json()["code"] == "AUTH_REQUIRED"
        assert "role 'submit'" in anon.json()["message"]
        wrong_role = c.post("/v1/blueprints", json=UNKNOWN, headers={"Authorization": f"Bearer {EMERGENCY_TOKEN}"})
        assert wrong_role.status_code == 403 and wrong_role.json()["code"] == "FORBIDDEN"
        bad = c.post("/v1/blueprints", json=UNKNOWN, headers={"Authorization": "Bearer not-a-token"})
        assert bad.status_code == 401
        ok = c.post("/v1/blueprints", json=UNKNOWN, headers={"Authorization": f"Bearer {SUBMIT_TOKEN}"})
        assert ok.status_code == 404 and ok.json()["code"] == "BLUEPRINT_NOT_FOUND"
    assert rejected(token_required, "unauthorized") >= 2
    assert rejected(token_required, "forbidden") >= 1


@pytest.mark.parametrize(
    ("host", "setting", "needed"),
    [
        ("127.0.0.1", "auto", False),
        ("::1", "auto", False),
        ("localhost", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.1.2.3", "auto", True),
        ("0.0.0.0", False, False),
        ("127.0.0.1", True, True),
    ],
)
def test_submit_token_default(host: str, setting: object, needed: bool) -> None:
    """The documented default ("auto"): a token whenever the API is reachable beyond this machine."""
    assert load_settings().api.require_token_for_submit == "auto"
    api = load_settings(api={"host": host, "require_token_for_submit": setting}).api
    assert api.submit_needs_token() is needed
