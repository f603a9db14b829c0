"""The OpenAPI document's parts FastAPI cannot infer: error answers and raw request bodies.

Owns: the error body schema (`{code, message, ...}`), the `responses` table of each route (every
status it answers with, and why), the JSON Schemas of the leyline messages routes accept or answer
with (written from the protobuf descriptors, in the proto3 JSON form `json_format` reads), and
`finish_openapi`, which merges them into the generated document. Generated clients and
schema-based testers must agree with the service; must never describe a status a route cannot
return.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from pydantic import BaseModel, ConfigDict, Field

from tezzeret.leyline import pb


class ErrorBody(BaseModel):
    """Every refusal: a stable machine-readable `code`, a message saying what to fix, and details
    (`field`, `node`, `reason`, `retry_after_s`, `limit`, ...) where there are some."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(description="Stable error code, e.g. REQUEST_INVALID, RATE_LIMITED, AUTH_REQUIRED.")
    message: str = Field(description="What is wrong and how to fix it.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def _headers_retry_after() -> dict[str, Any]:
    return {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


# Why each status is answered, by route family.
MALFORMED = _error("The request is malformed: bad JSON or protobuf, a non-object document, nesting "
                   "too deep, wrong field types, unknown fields, bad query parameters.")
UNAUTHORIZED = _error("No bearer token, or one that matches no configured token (AUTH_REQUIRED).")
FORBIDDEN = _error("The token is valid but lacks the route's role (FORBIDDEN).")
TOO_LARGE = _error("The body is larger than api.max_body_bytes (BODY_TOO_LARGE).")
MEDIA = _error("The Content-Type is not one the route accepts (UNSUPPORTED_MEDIA_TYPE).")
UNAVAILABLE = _error("The forge is not running, draining, or cannot accept work now (FORGE_NOT_STARTED, "
                     "INTAKE_CLOSED, QUEUE_FULL, STORE_UNAVAILABLE, PARSER_UNAVAILABLE); retry later.")
INTERNAL = _error("An unexpected failure inside the forge (INTERNAL_ERROR, JOURNAL_FAILED).")

SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Answered from cache: the artifact exists (`from_cache: true`).",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}}},
    202: {"description": "Accepted: journaled and queued, or joined a job already compiling it.",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}}},
    400: MALFORMED,
    401: _error("A token is required to submit (api.require_token_for_submit) and none or a bad one was given."),
    403: FORBIDDEN,
    404: _error("`blueprint_id` names no blueprint in the store (BLUEPRINT_NOT_FOUND)."),
    413: TOO_LARGE,
    415: MEDIA,
    422: _error("The blueprint failed static validation; `reason`, `node` and `field` point at the "
                "problem (BLUEPRINT_INVALID)."),
    429: {**_error("This client sent more than api.rate_limit_per_min submissions (RATE_LIMITED)."),
          "headers": _headers_retry_after()},
    500: INTERNAL,
    503: UNAVAILABLE,
}
EMERGENCY_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: the acknowledgement (queue position and estimate).",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/leyline.EmergencyAck"}}}},
    400: MALFORMED,
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    413: TOO_LARGE,
    415: MEDIA,
    422: _error("The inline blueprint failed static validation (BLUEPRINT_INVALID)."),
    429: {"description": "Refused (rate limit, disabled, or the forge could not take it): the "
                         "acknowledgement with `accepted: false` and the `reason`.",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/leyline.EmergencyAck"}}}},
    500: INTERNAL,
}
CONSERVATIVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Conservative mode's state after the change."},
    400: _error("Malformed JSON, `active` not a boolean, `active: false` (it exits by itself), or an "
                "unknown `reason`."),
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    413: TOO_LARGE,
    415: MEDIA,
    500: INTERNAL,
}
DRAIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Intake stopped; queued and running work continues."},
    400: _error("A body was sent and it is not a JSON object."),
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    413: TOO_LARGE,
    415: MEDIA,
    500: INTERNAL,
}
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Done: what changed, and who did it."},
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    500: INTERNAL,
    503: UNAVAILABLE,
}
RELEASE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ADMIN_RESPONSES,
    404: _error("No blueprint with that digest in the store (BLUEPRINT_NOT_FOUND)."),
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "HEALTHY or DEGRADED (the report says why)."},
    503: {"description": "UNHEALTHY or CRITICAL: the same report, so a load balancer stops sending work."},
    500: INTERNAL,
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {500: INTERNAL, 503: UNAVAILABLE}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format 0.0.4.",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    500: INTERNAL,
}
QUERY_RESPONSES: dict[int | str, dict[str, Any]] = {400: MALFORMED, **READ_RESPONSES}


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: _error(f"No such {what}."), **READ_RESPONSES}


DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The signed artifact file.",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    **not_found("artifact"),
    503: _error("The forge is not running, or the stored bytes failed their SHA-256 check: the artifact "
                "is quarantined and being rebuilt (ARTIFACT_CORRUPT)."),
}


SUBMISSION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The answer to a submission: the job that carries it and where its artifact will be.",
    "properties": {
        "job_id": {"type": "string"},
        "artifact_id": {"type": "string"},
        "blueprint_digest": {"type": "string"},
        "from_cache": {"type": "boolean"},
        "joined": {"type": "boolean"},
    },
    "additionalProperties": True,
}


def _json_body(*refs: str) -> dict[str, Any]:
    schemas = [{"$ref": f"#/components/schemas/{r}"} for r in refs]
    return {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}


PROTOBUF_BODY = {"schema": {"type": "string", "format": "binary"}}
PROTOBUF_MEDIA = ("application/x-protobuf", "application/protobuf", "application/octet-stream")


def request_body(description: str, json_refs: tuple[str, ...], protobuf: bool, required: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": _json_body(*json_refs)}
    if protobuf:
        for media in PROTOBUF_MEDIA:
            content[media] = PROTOBUF_BODY
    return {"requestBody": {"required": required, "description": description, "content": content}}


SUBMIT_PARAMETERS: list[dict[str, Any]] = [
    {"name": "strategy", "in": "query", "required": False,
     "description": "Overrides the request's strategy: EMERGENCY, FAST, STANDARD or AGGRESSIVE.",
     "schema": {"type": "string"}},
    {"name": "priority", "in": "query", "required": False,
     "description": "Overrides the request's priority: STRATEGIC, NORMAL, EXPERIMENTAL or BACKGROUND "
                    "(EMERGENCY only through POST /v1/emergency).",
     "schema": {"type": "string"}},
    {"name": "target", "in": "query", "required": False,
     "description": "Overrides the request's options.target_hardware: the device the artifact is built for "
                    "(cuda, cuda-sm90, cuda-sm90-cu130, cpu-x86_64-avx2); empty: this forge's CPU. A target "
                    "no compile worker builds is refused, naming the ones it has.",
     "schema": {"type": "string"}},
]
SUBMIT_BODY = request_body(
    "A leyline.CompilationRequest or a bare leyline.BlueprintIR as JSON (proto3 JSON form, field "
    "names as in leyline.proto), or a CompilationRequest as canonical protobuf bytes. "
    "`requested_by` is ignored: it is set to the authenticated identity.",
    ("leyline.CompilationRequest", "leyline.BlueprintIR"),
    protobuf=True,
)
EMERGENCY_BODY = request_body(
    "A leyline.EmergencyCompile as JSON or canonical protobuf bytes; `requested_by` is set to the token's name.",
    ("leyline.EmergencyCompile",),
    protobuf=True,
)
CONSERVATIVE_BODY = request_body(
    "`{\"active\": true, \"reason\": \"<trigger reason>\"}`",
    ("ConservativeModeRequest",),
    protobuf=False,
)
DRAIN_BODY = request_body("None needed; if one is sent, an empty JSON object.", ("EmptyObject",),
                          protobuf=False, required=False)
def _trigger_reasons() -> list[str]:
    from tezzeret.resilience import TriggerReason

    return [r.value for r in TriggerReason]


CONSERVATIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "active": {"type": "boolean", "description": "Only true: conservative mode exits by itself."},
        "reason": {"type": "string", "enum": _trigger_reasons(),
                   "description": "Why: one of the conservative-mode trigger reasons."},
    },
    "required": ["active"],
}

# ---------------------------------------------------------------------------------------------
# leyline messages as JSON Schema (the proto3 JSON mapping that `json_format.ParseDict` accepts).

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
          FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_UNSIGNED = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_UINT32,
             FieldDescriptor.TYPE_FIXED32}


def _scalar(field: FieldDescriptor) -> dict[str, Any]:
    t = field.type
    if t in _INT64:
        lo = 0 if t in _UNSIGNED else -(2**63)
        hi = 2**64 - 1 if t in _UNSIGNED else 2**63 - 1
        pattern = "^[0-9]+$" if t in _UNSIGNED else "^-?[0-9]+$"
        return {"anyOf": [{"type": "integer", "minimum": lo, "maximum": hi}, {"type": "string", "pattern": pattern}]}
    if t in _INT32:
        lo = 0 if t in _UNSIGNED else -(2**31)
        hi = 2**32 - 1 if t in _UNSIGNED else 2**31 - 1
        return {"type": "integer", "minimum": lo, "maximum": hi}
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
    if t == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if t == FieldDescriptor.TYPE_STRING:
        return {"type": "string"}
    if t == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        assert enum is not None  # an enum field always has its type
        return {"type": "string", "enum": [v.name for v in enum.values]}
    raise ValueError(f"no JSON Schema for field type {t}")


def _field_schema(field: FieldDescriptor, ref: Any) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        inner = ref(value.message_type) if value.message_type is not None else _scalar(value)
        return {"type": "object", "additionalProperties": inner}
    one = ref(field.message_type) if field.message_type is not None else _scalar(field)
    if field.is_repeated:
        return {"type": "array", "items": one}
    return one


def leyline_schemas(*roots: Any) -> dict[str, dict[str, Any]]:
    """`components.schemas` entries (`leyline.<Name>`) for `roots` and every message they use."""
    out: dict[str, dict[str, Any]] = {}

    def ref(desc: Any) -> dict[str, Any]:
        name = desc.full_name
        if name not in out:
            out[name] = {}  # placeholder first: messages may refer to themselves
            out[name] = build(desc)
        return {"$ref": f"#/components/schemas/{name}"}

    def build(desc: Any) -> dict[str, Any]:
        props = {f.name: _field_schema(f, ref) for f in desc.fields}
        oneofs = [o for o in desc.oneofs if not (len(o.fields) == 1 and o.name.startswith("_"))]
        note = "".join(f" At most one of {', '.join(f.name for f in o.fields)}." for o in oneofs)
        return {
            "type": "object",
            "title": desc.full_name,
            "description": f"leyline.proto message {desc.name} in its proto3 JSON form.{note}",
            "properties": props,
            "additionalProperties": False,
        }

    for root in roots:
        ref(root)
    return out


def finish_openapi(document: dict[str, Any], *, declared_422: set[str]) -> dict[str, Any]:
    """Add the components the routes refer to and drop FastAPI's default 422 (this service
    answers a bad query parameter with 400, and 422 only where a route declares it)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(leyline_schemas(pb.CompilationRequest.DESCRIPTOR, pb.BlueprintIR.DESCRIPTOR,
                                      pb.EmergencyCompile.DESCRIPTOR, pb.EmergencyAck.DESCRIPTOR))
    components["Submission"] = SUBMISSION_SCHEMA
    components["ConservativeModeRequest"] = CONSERVATIVE_SCHEMA
    components["EmptyObject"] = {"type": "object", "description": "Fields are ignored."}
    for path, item in document.get("paths", {}).items():
        for method, op in item.items():
            responses = op.get("responses", {})
            if "422" in responses and f"{method.upper()} {path}" not in declared_422:
                del responses["422"]
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return document
