"""One audit record per HTTP request, and the count of every refusal, as plain ASGI middleware.

Owns: appending `{time, requestor, action, blueprint, outcome, code, client}` for each request
once its answer is known, and counting refusals in `tezzeret_http_rejected{reason}`. Route
handlers leave what they learn in the request state (`action`, `blueprint`, `requestor`,
`error_code`, and `outcome` or `cut_off` when the answer is not a status: a client that went away,
or one cut off for sending too slowly). Plain ASGI rather than Starlette's `BaseHTTPMiddleware`:
no extra task and stream per request, and a client's disconnect reaches the handler as itself.
Must never hold a token's value, and never fail a request because of its own bookkeeping.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tezzeret import metrics
from tezzeret.forge.audit import AuditLog

log = logging.getLogger(__name__)

# Error code -> `tezzeret_http_rejected` reason. SLOW_CLIENT is counted where the cut happens.
REJECTION_REASONS = {
    "RATE_LIMITED": "rate_limited",
    "BODY_TOO_LARGE": "too_large",
    "REQUEST_INVALID": "malformed",
    "UNSUPPORTED_MEDIA_TYPE": "unsupported_media_type",
    "AUTH_REQUIRED": "unauthorized",
    "FORBIDDEN": "forbidden",
    "CLIENT_DISCONNECTED": "client_disconnected",
}


REASONS = (*REJECTION_REASONS.values(), "slow_client")


def init_rejection_counts() -> None:
    """Every reason shows in /metrics from the start (at 0), so a dashboard's rate() has a series."""
    for reason in REASONS:
        metrics.HTTP_REJECTED.labels(reason=reason)


def count_rejection(reason: str) -> None:
    metrics.HTTP_REJECTED.labels(reason=reason).inc()


def claimed_identity(scope: Scope) -> str:
    """Who a request refused before identification claimed to be, without the secret."""
    for name, _ in scope.get("headers", ()):
        if name == b"authorization":
            return "bearer-token"
    return anonymous_identity(scope)


def anonymous_identity(scope: Scope) -> str:
    client = scope.get("client")
    return f"anonymous@{client[0]}" if client else "anonymous"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            self._record(scope, state, "500", "INTERNAL_ERROR")
            raise
        code = state.get("error_code")
        outcome = state.get("outcome") or str(status)
        if state.get("cut_off"):
            outcome, code = state["cut_off"], "SLOW_CLIENT"
        elif code in REJECTION_REASONS:
            count_rejection(REJECTION_REASONS[code])
        self._record(scope, state, outcome, code)

    def _record(self, scope: Scope, state: dict[str, Any], outcome: str, code: str | None) -> None:
        client = scope.get("client")
        try:
            self.audit.record(
                requestor=state.get("requestor") or claimed_identity(scope),
                action=state.get("action") or f"{scope['method']} {scope['path']}",
                blueprint=state.get("blueprint"),
                outcome=outcome,
                code=code,
                client=client[0] if client else None,
            )
        except Exception as exc:  # noqa: BLE001 - the audit log's own failures are its concern, not the client's
            log.warning("audit record for %s %s not written: %s", scope["method"], scope["path"], exc)
