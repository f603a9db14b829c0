"""The HTTP face of the forge (FastAPI): health, metrics, submissions, jobs, artifacts, admin.

Owns: routing and bounding HTTP requests, authentication, role checks and per-client rate limits,
mapping typed errors to JSON `{code, message, ...}` bodies, the OpenAPI description of every
status and body, and (through `AuditMiddleware`) one audit record per request. Every decision
about work (validation, dedup, journaling, scheduling) belongs to the `Forge`; this module must
never compile, touch the store or the WAL directly, or block the event loop: bodies are parsed
and validated by `BodyParser`'s processes, and the forge validates in a worker thread.

Routes: `GET /health/tezzeret`, `GET /metrics`, `POST /v1/blueprints` (JSON or protobuf),
`GET /v1/jobs`, `GET /v1/jobs/{id}`, `GET /v1/artifacts?blueprint_id=`, `GET /v1/artifacts/{id}`,
`GET /v1/artifacts/{id}/download`, `GET /v1/keys/public`, `POST /v1/emergency` (role emergency),
`POST /v1/admin/conservative-mode`, `POST /v1/admin/drain`, `POST /v1/admin/wal/acknowledge`,
`POST /v1/admin/blueprints/{digest}/release` and `POST /v1/admin/store/scrub` (role admin). OpenAPI at
`/openapi.json`, docs at `/docs`.

Who asked: `requested_by` of a submission is always the authenticated identity (a token's
configured name), or `anonymous@<client address>`; whatever the body says is overwritten.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tezzeret import metrics
from tezzeret.api import openapi as oa
from tezzeret.api import status
from tezzeret.api.auth import Principal, TokenAuthority
from tezzeret.api.bodies import (
    JSON_TYPES,
    PROTOBUF_TYPES,
    BodyParser,
    BodyTooLarge,
    ClientDisconnected,
    UnsupportedMediaType,
    media_type,
    read_body,
    require_media,
)
from tezzeret.api.middleware import (
    AuditMiddleware,
    anonymous_identity,
    claimed_identity,
    count_rejection,
    init_rejection_counts,
)
from tezzeret.api.ratelimit import ClientRateLimiter
from tezzeret.config import Settings
from tezzeret.forge.audit import AuditLog
from tezzeret.forge.errors import ForgeError, RequestInvalid
from tezzeret.leyline import Strategy, UnknownStrategy, pb, to_json

if TYPE_CHECKING:
    from tezzeret.forge.service import Forge

log = logging.getLogger(__name__)

__all__ = ["BodyTooLarge", "RateLimited", "UnsupportedMediaType", "create_app"]

# An admin route's JSON is a handful of fields.
ADMIN_BODY_LIMIT = 64 * 1024


class RateLimited(ForgeError):
    """This client submitted more than `api.rate_limit_per_min`; `retry_after_s` says when to retry."""

    code = "RATE_LIMITED"
    http_status = 429


def _strategy_param(value: str | None) -> pb.CompilationStrategy:
    if not value:
        return pb.STRATEGY_UNSPECIFIED
    try:
        return Strategy.parse(value).pb
    except UnknownStrategy:
        raise RequestInvalid(
            f"unknown strategy '{value}'; use EMERGENCY, FAST, STANDARD or AGGRESSIVE", field="strategy"
        ) from None


def _priority_param(value: str | None) -> pb.CompilationPriority:
    if not value:
        return pb.PRIORITY_UNSPECIFIED
    name = value.upper()
    name = name if name.startswith("PRIORITY_") else "PRIORITY_" + name
    allowed = ("PRIORITY_STRATEGIC", "PRIORITY_NORMAL", "PRIORITY_EXPERIMENTAL", "PRIORITY_BACKGROUND")
    if name not in allowed:
        raise RequestInvalid(
            f"priority '{value}' is not allowed here; use STRATEGIC, NORMAL, EXPERIMENTAL or "
            "BACKGROUND (EMERGENCY goes through POST /v1/emergency)",
            field="priority",
        )
    return cast(pb.CompilationPriority, pb.CompilationPriority.Value(name))


def _error_response(exc: ForgeError) -> JSONResponse:
    headers = None
    retry = exc.details.get("retry_after_s")
    if isinstance(retry, int):
        headers = {"Retry-After": str(retry)}
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


def create_app(forge: "Forge", settings: Settings) -> FastAPI:
    """The FastAPI app serving `forge`. The caller owns the forge's start and close, and closes
    `app.state.parser` (the body-parsing processes) when the server stops."""
    app = FastAPI(
        title="Tezzeret",
        description="The compilation forge: blueprints in, verified signed artifacts out. Every refusal "
        "is a JSON body `{code, message, ...}`.",
        version=_version(),
    )
    api = settings.api
    authority = TokenAuthority.from_tokens(list(api.tokens))
    audit: AuditLog = forge.audit
    limiter = ClientRateLimiter(api.rate_limit_per_min, api.rate_limit_burst)
    parser = BodyParser(settings.blueprint.limits(), large_workers=api.parse_workers)
    parser.warm()
    app.state.audit = audit
    app.state.parser = parser
    app.state.limiter = limiter
    limit = api.max_body_bytes
    submit_needs_token = api.submit_needs_token()
    app.add_middleware(AuditMiddleware, audit=audit)
    init_rejection_counts()

    @app.exception_handler(ForgeError)
    async def forge_error(request: Request, exc: ForgeError) -> JSONResponse:
        request.state.error_code = exc.code
        return _error_response(exc)

    @app.exception_handler(ClientDisconnected)
    async def client_gone(request: Request, exc: ClientDisconnected) -> Response:
        request.state.error_code = exc.code
        if getattr(request.state, "cut_off", None) is None:
            # One line, no traceback: a client that goes away is not the server's failure.
            request.state.outcome = "client_disconnected"
            client = request.client.host if request.client else "?"
            log.info("client %s disconnected during %s %s (%s)", client, request.method, request.url.path, exc)
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        request.state.error_code = "REQUEST_INVALID"
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            {"code": "REQUEST_INVALID", "message": "the request does not match the route's schema", "errors": errors},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        request.state.error_code = code
        return JSONResponse(
            {"code": code, "message": f"{exc.detail}: {request.method} {request.url.path}"},
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        request.state.error_code = "INTERNAL_ERROR"
        return JSONResponse(
            {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}, status_code=500
        )

    def identify(request: Request) -> Principal:
        request.state.requestor = claimed_identity(request.scope)
        principal = authority.identify(request.headers.get("authorization"))
        request.state.principal = principal
        request.state.requestor = principal.name if principal.authenticated else anonymous_identity(request.scope)
        return principal

    def rate_limit(request: Request, identity: str) -> None:
        wait = limiter.take(identity)
        if wait is not None:
            retry = ClientRateLimiter.retry_after(wait)
            raise RateLimited(
                f"'{identity}' sent more than api.rate_limit_per_min={limiter.per_minute} submissions "
                f"(burst {int(limiter.burst)}); retry in {retry} s",
                retry_after_s=retry,
            )

    @app.get("/health/tezzeret", summary="Service health", responses=oa.HEALTH_RESPONSES)
    async def health(request: Request) -> JSONResponse:
        request.state.action = "health"
        report = forge.health()
        code = 503 if report.status in ("UNHEALTHY", "CRITICAL") else 200
        return JSONResponse(report.model_dump(mode="json"), status_code=code)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response, responses=oa.METRICS_RESPONSES)
    async def get_metrics(request: Request) -> Response:
        request.state.action = "metrics"
        forge.refresh_gauges()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/blueprints", status_code=202, summary="Submit a blueprint for compilation",
        responses=oa.SUBMIT_RESPONSES, openapi_extra={**oa.SUBMIT_BODY, "parameters": oa.SUBMIT_PARAMETERS},
    )
    async def submit(request: Request) -> JSONResponse:
        # Query parameters are read here rather than declared: FastAPI's per-request parameter
        # solving was a tenth of a cached submission's cost. They are documented in SUBMIT_PARAMETERS.
        request.state.action = "submit"
        strategy = request.query_params.get("strategy")
        priority = request.query_params.get("priority")
        target = request.query_params.get("target")
        principal = identify(request)
        if submit_needs_token:
            authority.require(principal, "submit", "submitting a blueprint")
        identity: str = request.state.requestor
        rate_limit(request, identity)
        media = media_type(request)
        require_media(
            media, JSON_TYPES + PROTOBUF_TYPES,
            "application/json (a CompilationRequest or a BlueprintIR) or application/x-protobuf (a CompilationRequest)",
        )
        body = await read_body(request, limit)
        req = await parser.submission(body, media)
        if strategy:
            req.strategy = _strategy_param(strategy)
        if priority:
            req.priority = _priority_param(priority)
        if target:
            req.options.target_hardware = target  # intake resolves it against what the workers build
        if req.priority == pb.PRIORITY_EMERGENCY:
            raise RequestInvalid("EMERGENCY priority is only available through POST /v1/emergency", field="priority")
        req.requested_by = identity
        request.state.blueprint = req.blueprint_id or req.blueprint.metadata.name or None
        sub = await forge.submit(req, "api")
        request.state.blueprint = sub.job.digest
        return JSONResponse(sub.to_dict(), status_code=200 if sub.from_cache else 202)

    @app.get("/v1/jobs", summary="Recent jobs", responses=oa.QUERY_RESPONSES)
    async def list_jobs(request: Request, limit: int = 50) -> JSONResponse:
        request.state.action = "list_jobs"
        return JSONResponse({"jobs": forge.recent_jobs(max(1, min(limit, 1000)))})

    @app.get("/v1/jobs/{job_id}", summary="One job: request, status, result", responses=oa.not_found("job"))
    async def get_job(request: Request, job_id: str) -> JSONResponse:
        request.state.action = "get_job"
        return JSONResponse(forge.job(job_id))

    @app.get("/v1/artifacts", summary="Artifacts, optionally of one blueprint", responses=oa.QUERY_RESPONSES)
    async def list_artifacts(request: Request, blueprint_id: str | None = None) -> JSONResponse:
        request.state.action = "list_artifacts"
        request.state.blueprint = blueprint_id
        return JSONResponse({"artifacts": forge.list_artifacts(blueprint_id)})

    @app.get("/v1/artifacts/{artifact_id}", summary="An artifact's manifest", responses=oa.not_found("artifact"))
    async def get_artifact(request: Request, artifact_id: str) -> Response:
        request.state.action = "get_artifact"
        manifest = forge.artifact_manifest(artifact_id)
        request.state.blueprint = manifest.blueprint_digest
        return Response(to_json(manifest), media_type="application/json")

    @app.get(
        "/v1/artifacts/{artifact_id}/download", summary="The signed artifact file",
        response_class=FileResponse, responses=oa.DOWNLOAD_RESPONSES,
    )
    async def download(request: Request, artifact_id: str) -> FileResponse:
        request.state.action = "download_artifact"
        path = await forge.artifact_file(artifact_id)
        return FileResponse(path, media_type="application/octet-stream", filename=f"{artifact_id}.tzk")

    @app.get("/v1/keys/public", summary="The Ed25519 public key that verifies artifacts", responses=oa.READ_RESPONSES)
    async def public_key(request: Request) -> JSONResponse:
        request.state.action = "public_key"
        return JSONResponse({"algorithm": "ed25519", "public_key_hex": forge.public_key_bytes().hex()})

    @app.post(
        "/v1/emergency", status_code=202, summary="Tamiyo's emergency compile (role: emergency)",
        responses=oa.EMERGENCY_RESPONSES, openapi_extra=oa.EMERGENCY_BODY,
    )
    async def emergency(request: Request) -> JSONResponse:
        request.state.action = "emergency"
        principal = identify(request)
        authority.require(principal, "emergency", "an emergency compile")
        media = media_type(request)
        require_media(media, JSON_TYPES + PROTOBUF_TYPES, "application/json or application/x-protobuf (an EmergencyCompile)")
        body = await read_body(request, limit)
        msg = await parser.emergency(body, media)
        msg.requested_by = principal.name
        request.state.blueprint = msg.blueprint_id or msg.blueprint.metadata.name or None
        ack = await forge.handle_emergency(msg)
        request.state.blueprint = ack.request_id and (msg.blueprint_id or request.state.blueprint)
        return JSONResponse(json.loads(to_json(ack)), status_code=202 if ack.accepted else 429)

    @app.post(
        "/v1/admin/conservative-mode", summary="Enter conservative mode (role: admin)",
        responses=oa.CONSERVATIVE_RESPONSES, openapi_extra=oa.CONSERVATIVE_BODY,
    )
    async def conservative(request: Request) -> JSONResponse:
        request.state.action = "admin_conservative_mode"
        principal = identify(request)
        authority.require(principal, "admin", "changing conservative mode")
        require_media(media_type(request), JSON_TYPES, 'application/json: {"active": true, "reason": "..."}')
        admin_limit = min(limit, ADMIN_BODY_LIMIT)
        obj = await parser.json_object(await read_body(request, admin_limit, "the admin body limit"))
        if not isinstance(obj.get("active"), bool):
            raise RequestInvalid('body must be {"active": true|false, "reason": "..."}', field="active")
        reason = obj.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise RequestInvalid("`reason` must be a string", field="reason")
        return JSONResponse(forge.set_conservative(obj["active"], reason or f"admin:{principal.name}"))

    @app.post("/v1/admin/wal/acknowledge", summary="Acknowledge what WAL recovery lost (role: admin)",
              responses=oa.ADMIN_RESPONSES)
    async def acknowledge_wal(request: Request) -> JSONResponse:
        request.state.action = "admin_wal_acknowledge"
        principal = identify(request)
        authority.require(principal, "admin", "acknowledging WAL losses")
        return JSONResponse(await forge.acknowledge_wal_losses(principal.name))

    @app.post("/v1/admin/blueprints/{digest}/release", summary="Lift a blueprint's quarantine (role: admin)",
              responses=oa.RELEASE_RESPONSES)
    async def release_blueprint(request: Request, digest: str) -> JSONResponse:
        request.state.action = "admin_release_blueprint"
        request.state.blueprint = digest
        principal = identify(request)
        authority.require(principal, "admin", "releasing a quarantined blueprint")
        return JSONResponse(await forge.release_blueprint(digest, principal.name))

    @app.post("/v1/admin/store/scrub", summary="Re-hash every stored artifact now (role: admin)",
              responses=oa.ADMIN_RESPONSES)
    async def scrub(request: Request) -> JSONResponse:
        request.state.action = "admin_store_scrub"
        principal = identify(request)
        authority.require(principal, "admin", "scrubbing the store")
        return JSONResponse(await forge.scrub())

    @app.post(
        "/v1/admin/drain", summary="Stop intake; running and queued work continues (role: admin)",
        responses=oa.DRAIN_RESPONSES, openapi_extra=oa.DRAIN_BODY,
    )
    async def drain(request: Request) -> JSONResponse:
        request.state.action = "admin_drain"
        principal = identify(request)
        authority.require(principal, "admin", "draining the forge")
        # No body is needed; one that is sent must still be well-formed (an empty JSON object).
        body = await read_body(request, min(limit, ADMIN_BODY_LIMIT), "the admin body limit")
        if body.strip():
            require_media(media_type(request), JSON_TYPES, "no body, or application/json: {}")
            await parser.json_object(body)
        return JSONResponse(forge.drain())

    status.register(app)
    declared_422 = {"POST /v1/blueprints", "POST /v1/emergency"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = oa.finish_openapi(document, declared_422=declared_422)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend its OpenAPI document
    return app


def cut_off_reporter(audit: AuditLog) -> Any:
    """The protocol's `on_cut_off`: one log line and one count per slow client; an audit record
    too when no route handler was reading that request (it audits the cut itself)."""

    def report(client: str | None, request: str | None, in_handler: bool) -> None:
        count_rejection("slow_client")
        log.warning(
            "slow client %s cut off: %s not received within api.read_timeout_s",
            client or "?", request or "request",
        )
        if not in_handler:
            try:
                audit.record(
                    requestor=f"anonymous@{client}" if client else "anonymous",
                    action=request or "http_request", blueprint=None,
                    outcome="slow_client", code="SLOW_CLIENT", client=client,
                )
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not break the connection handling
                log.warning("audit record for a slow client not written: %s", exc)

    return report


def malformed_reporter(client: str | None) -> None:
    """The protocol's `on_malformed`: uvicorn answered 400 to bytes that are not HTTP."""
    count_rejection("malformed")


def _version() -> str:
    from tezzeret import __version__

    return __version__
