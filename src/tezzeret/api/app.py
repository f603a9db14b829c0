"""The HTTP face of the forge (FastAPI): health, metrics, submissions, jobs, artifacts, admin.

Owns: parsing and bounding HTTP requests, authentication and role checks, mapping typed errors to
JSON `{code, message, ...}` bodies, and appending one audit record per request. Every decision about
work (validation, dedup, journaling, scheduling) belongs to the `Forge`; this module must never
compile, touch the store or the WAL directly, or block the event loop.

Routes: `GET /health/tezzeret`, `GET /metrics`, `POST /v1/blueprints` (JSON or protobuf),
`GET /v1/jobs`, `GET /v1/jobs/{id}`, `GET /v1/artifacts?blueprint_id=`, `GET /v1/artifacts/{id}`,
`GET /v1/artifacts/{id}/download`, `GET /v1/keys/public`, `POST /v1/emergency` (role emergency),
`POST /v1/admin/conservative-mode`, `POST /v1/admin/drain`, `POST /v1/admin/wal/acknowledge`,
`POST /v1/admin/blueprints/{digest}/release` and `POST /v1/admin/store/scrub` (role admin). OpenAPI at
`/openapi.json`, docs at `/docs`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tezzeret import metrics
from tezzeret.api import status
from tezzeret.api.auth import Principal, TokenAuthority
from tezzeret.config import Settings
from tezzeret.forge.audit import AuditLog
from tezzeret.forge.errors import ForgeError, RequestInvalid
from tezzeret.leyline import ContractError, Strategy, UnknownStrategy, decode, from_json, pb, to_json

if TYPE_CHECKING:
    from tezzeret.forge.service import Forge

JSON_TYPES = ("application/json",)
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")


class BodyTooLarge(ForgeError):
    code = "BODY_TOO_LARGE"
    http_status = 413


class UnsupportedMediaType(ForgeError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, refusing it as soon as it passes `limit` bytes (never buffering more than that)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge(
                    f"body of {declared} bytes exceeds api.max_body_bytes={limit}", limit=limit
                )
        except ValueError:
            raise RequestInvalid("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds api.max_body_bytes={limit}", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _strategy_param(value: str | None) -> int:
    if not value:
        return pb.STRATEGY_UNSPECIFIED
    try:
        return Strategy.parse(value).pb
    except UnknownStrategy:
        raise RequestInvalid(
            f"unknown strategy '{value}'; use EMERGENCY, FAST, STANDARD or AGGRESSIVE", field="strategy"
        ) from None


def _priority_param(value: str | None) -> int:
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
    return int(pb.CompilationPriority.Value(name))


def parse_submission(body: bytes, media_type: str) -> pb.CompilationRequest:
    """A `CompilationRequest` from a JSON body (a request, or a bare BlueprintIR) or protobuf bytes."""
    if media_type in PROTOBUF_TYPES:
        try:
            return decode(pb.CompilationRequest, body)
        except ContractError as exc:
            raise RequestInvalid(f"body is not a canonical leyline.CompilationRequest: {exc.reason}") from None
    if media_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type '{media_type or '(none)'}' is not accepted; send application/json "
            "(a CompilationRequest or a BlueprintIR) or application/x-protobuf (a CompilationRequest)"
        )
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestInvalid(f"body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RequestInvalid("body must be a JSON object (a CompilationRequest or a BlueprintIR)")
    try:
        if "nodes" in obj or "inputs" in obj:
            return pb.CompilationRequest(blueprint=from_json(pb.BlueprintIR, body))
        return from_json(pb.CompilationRequest, body)
    except ContractError as exc:
        raise RequestInvalid(f"{exc.message_type}: {exc.reason}") from None


def _error_response(exc: ForgeError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.http_status)


def create_app(forge: "Forge", settings: Settings) -> FastAPI:
    """The FastAPI app serving `forge`. The caller owns the forge's start and close."""
    app = FastAPI(
        title="Tezzeret",
        description="The compilation forge: blueprints in, verified signed artifacts out.",
        version=_version(),
    )
    authority = TokenAuthority.from_tokens(list(settings.api.tokens))
    audit: AuditLog = forge.audit
    app.state.audit = audit
    limit = settings.api.max_body_bytes

    @app.middleware("http")
    async def audit_every_request(request: Request, call_next: Any) -> Response:
        request.state.principal = None
        request.state.blueprint = None
        request.state.action = None
        request.state.error_code = None
        try:
            response: Response = await call_next(request)
        except Exception:
            audit.record(
                requestor=_claimed(request), action=request.state.action or f"{request.method} {request.url.path}",
                blueprint=request.state.blueprint, outcome="500", code="INTERNAL_ERROR",
            )
            raise
        principal: Principal | None = request.state.principal
        audit.record(
            requestor=principal.name if principal else _claimed(request),
            action=request.state.action or f"{request.method} {request.url.path}",
            blueprint=request.state.blueprint,
            outcome=str(response.status_code),
            code=request.state.error_code,
            client=request.client.host if request.client else None,
        )
        return response

    @app.exception_handler(ForgeError)
    async def forge_error(request: Request, exc: ForgeError) -> JSONResponse:
        request.state.error_code = exc.code
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
        principal = authority.identify(request.headers.get("authorization"))
        request.state.principal = principal
        return principal

    @app.get("/health/tezzeret", summary="Service health")
    async def health(request: Request) -> JSONResponse:
        request.state.action = "health"
        report = forge.health()
        code = 503 if report.status in ("UNHEALTHY", "CRITICAL") else 200
        return JSONResponse(report.model_dump(mode="json"), status_code=code)

    @app.get("/metrics", summary="Prometheus metrics")
    async def get_metrics(request: Request) -> Response:
        request.state.action = "metrics"
        forge.refresh_gauges()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/blueprints", status_code=202, summary="Submit a blueprint for compilation")
    async def submit(request: Request, strategy: str | None = None, priority: str | None = None) -> JSONResponse:
        request.state.action = "submit"
        principal = identify(request)
        if settings.api.require_token_for_submit:
            authority.require(principal, "submit", "submitting a blueprint")
        body = await read_bounded(request, limit)
        req = parse_submission(body, _media_type(request))
        if strategy:
            req.strategy = _strategy_param(strategy)
        if priority:
            req.priority = _priority_param(priority)
        if req.priority == pb.PRIORITY_EMERGENCY:
            raise RequestInvalid("EMERGENCY priority is only available through POST /v1/emergency", field="priority")
        if not req.requested_by:
            req.requested_by = principal.name
        request.state.blueprint = req.blueprint_id or req.blueprint.metadata.name or None
        sub = await forge.submit(req, "api")
        request.state.blueprint = sub.job.digest
        return JSONResponse(sub.to_dict(), status_code=200 if sub.from_cache else 202)

    @app.get("/v1/jobs", summary="Recent jobs")
    async def list_jobs(request: Request, limit: int = 50) -> JSONResponse:
        request.state.action = "list_jobs"
        return JSONResponse({"jobs": forge.recent_jobs(max(1, min(limit, 1000)))})

    @app.get("/v1/jobs/{job_id}", summary="One job: request, status, result")
    async def get_job(request: Request, job_id: str) -> JSONResponse:
        request.state.action = "get_job"
        return JSONResponse(forge.job(job_id))

    @app.get("/v1/artifacts", summary="Artifacts, optionally of one blueprint")
    async def list_artifacts(request: Request, blueprint_id: str | None = None) -> JSONResponse:
        request.state.action = "list_artifacts"
        request.state.blueprint = blueprint_id
        return JSONResponse({"artifacts": forge.list_artifacts(blueprint_id)})

    @app.get("/v1/artifacts/{artifact_id}", summary="An artifact's manifest")
    async def get_artifact(request: Request, artifact_id: str) -> Response:
        request.state.action = "get_artifact"
        manifest = forge.artifact_manifest(artifact_id)
        request.state.blueprint = manifest.blueprint_digest
        return Response(to_json(manifest), media_type="application/json")

    @app.get("/v1/artifacts/{artifact_id}/download", summary="The signed artifact file")
    async def download(request: Request, artifact_id: str) -> FileResponse:
        request.state.action = "download_artifact"
        path = await forge.artifact_file(artifact_id)
        return FileResponse(path, media_type="application/octet-stream", filename=f"{artifact_id}.tzk")

    @app.get("/v1/keys/public", summary="The Ed25519 public key that verifies artifacts")
    async def public_key(request: Request) -> JSONResponse:
        request.state.action = "public_key"
        return JSONResponse({"algorithm": "ed25519", "public_key_hex": forge.public_key_bytes().hex()})

    @app.post("/v1/emergency", summary="Tamiyo's emergency compile (role: emergency)")
    async def emergency(request: Request) -> JSONResponse:
        request.state.action = "emergency"
        principal = identify(request)
        authority.require(principal, "emergency", "an emergency compile")
        body = await read_bounded(request, limit)
        media = _media_type(request)
        try:
            if media in JSON_TYPES:
                msg = from_json(pb.EmergencyCompile, body)
            elif media in PROTOBUF_TYPES:
                msg = decode(pb.EmergencyCompile, body)
            else:
                raise UnsupportedMediaType(
                    f"Content-Type '{media or '(none)'}' is not accepted; send application/json or application/x-protobuf"
                )
        except ContractError as exc:
            raise RequestInvalid(f"{exc.message_type}: {exc.reason}") from None
        if not msg.requested_by:
            msg.requested_by = principal.name
        request.state.blueprint = msg.blueprint_id or msg.blueprint.metadata.name or None
        ack = await forge.handle_emergency(msg)
        request.state.blueprint = ack.request_id and (msg.blueprint_id or request.state.blueprint)
        return JSONResponse(json.loads(to_json(ack)), status_code=202 if ack.accepted else 429)

    @app.post("/v1/admin/conservative-mode", summary="Enter or leave conservative mode (role: admin)")
    async def conservative(request: Request) -> JSONResponse:
        request.state.action = "admin_conservative_mode"
        principal = identify(request)
        authority.require(principal, "admin", "changing conservative mode")
        body = await read_bounded(request, limit)
        if _media_type(request) not in JSON_TYPES:
            raise UnsupportedMediaType("send application/json: {\"active\": true|false, \"reason\": \"...\"}")
        try:
            obj = json.loads(body or b"{}")
        except ValueError as exc:
            raise RequestInvalid(f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("active"), bool):
            raise RequestInvalid('body must be {"active": true|false, "reason": "..."}', field="active")
        reason = str(obj.get("reason") or f"admin:{principal.name}")
        return JSONResponse(forge.set_conservative(obj["active"], reason))

    @app.post("/v1/admin/wal/acknowledge", summary="Acknowledge what WAL recovery lost (role: admin)")
    async def acknowledge_wal(request: Request) -> JSONResponse:
        request.state.action = "admin_wal_acknowledge"
        principal = identify(request)
        authority.require(principal, "admin", "acknowledging WAL losses")
        return JSONResponse(await forge.acknowledge_wal_losses(principal.name))

    @app.post("/v1/admin/blueprints/{digest}/release", summary="Lift a blueprint's quarantine (role: admin)")
    async def release_blueprint(request: Request, digest: str) -> JSONResponse:
        request.state.action = "admin_release_blueprint"
        request.state.blueprint = digest
        principal = identify(request)
        authority.require(principal, "admin", "releasing a quarantined blueprint")
        return JSONResponse(await forge.release_blueprint(digest, principal.name))

    @app.post("/v1/admin/store/scrub", summary="Re-hash every stored artifact now (role: admin)")
    async def scrub(request: Request) -> JSONResponse:
        request.state.action = "admin_store_scrub"
        principal = identify(request)
        authority.require(principal, "admin", "scrubbing the store")
        return JSONResponse(await forge.scrub())

    @app.post("/v1/admin/drain", summary="Stop intake; running and queued work continues (role: admin)")
    async def drain(request: Request) -> JSONResponse:
        request.state.action = "admin_drain"
        principal = identify(request)
        authority.require(principal, "admin", "draining the forge")
        return JSONResponse(forge.drain())

    status.register(app)
    return app


def _claimed(request: Request) -> str:
    # A request refused before identification still says who it claimed to be, without the secret.
    return "bearer-token" if request.headers.get("authorization") else "anonymous"


def _version() -> str:
    from tezzeret import __version__

    return __version__
