"""Request bodies: reading them bounded, and parsing them away from the server's event loop.

Owns: `read_body` (refuses a body past `api.max_body_bytes` without buffering it, and turns a
client that goes away mid-body into `ClientDisconnected`), and `BodyParser`, which parses JSON and
protobuf bodies into leyline messages and statically validates any inline blueprint in separate
processes: one lane for small bodies and `api.parse_workers` for large ones (at low CPU
priority), so neither a flood of big bodies nor one slow parse can hold the server's event loop
(or its GIL: the C JSON parser never lets go of it) or delay ordinary submissions. Results of
small bodies are remembered by the body's SHA-256, so a resubmitted blueprint is not parsed again.

Every malformed body, whatever is wrong with it (bad JSON, nesting deep enough to exhaust the
parser's recursion, a non-object document, wrong field types, unknown fields, undecodable or
non-canonical protobuf) is a `RequestInvalid` (400); a blueprint that parses but fails static
validation is a `BlueprintInvalid` (422) naming the node and field. Must never let any other
exception escape for a bad body, and never parse on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import ClientDisconnect, Request

from tezzeret.blueprint import BlueprintRejected, ValidationLimits
from tezzeret.blueprint.ir import json_depth
from tezzeret.forge.errors import BlueprintInvalid, ForgeError, RequestInvalid
from tezzeret.leyline import ContractError, decode, pb

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")
# Bodies up to this size share the small lane, and their parse results are remembered.
SMALL_BODY_BYTES = 256 * 1024
CACHEABLE_BODY_BYTES = 64 * 1024
# Small bodies parse in a millisecond and a submitter waits for them; large ones yield the CPU
# to the server (and to training) whenever they want it.
SMALL_NICENESS = 0
LARGE_NICENESS = 10
# A CompilationRequest or EmergencyCompile wraps its BlueprintIR one level deeper than the
# blueprint's own `blueprint.max_json_depth`, and an attribute value one more.
ENVELOPE_DEPTH = 2


class BodyTooLarge(ForgeError):
    code = "BODY_TOO_LARGE"
    http_status = 413


class UnsupportedMediaType(ForgeError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class ClientDisconnected(ForgeError):
    """The client closed the connection before its request body arrived in full. Nobody reads the
    answer; the status (499, nginx's "client closed request") is for the audit record."""

    code = "CLIENT_DISCONNECTED"
    http_status = 499


class ParserUnavailable(ForgeError):
    """The body-parsing processes could not be used (being replaced after a crash, or shut down)."""

    code = "PARSER_UNAVAILABLE"
    http_status = 503


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_media(media: str, allowed: tuple[str, ...], what: str) -> None:
    if media not in allowed:
        raise UnsupportedMediaType(f"Content-Type '{media or '(none)'}' is not accepted; send {what}")


async def read_body(request: Request, limit: int, setting: str = "api.max_body_bytes") -> bytes:
    """The body, refused as soon as it passes `limit` bytes (never buffering more than that).

    A client that disconnects mid-body raises `ClientDisconnected`; so does one the server cut off
    for sending too slowly (the connection's read deadline), which the audit tells apart.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestInvalid("Content-Length is not a number") from None
        if size > limit:
            raise BodyTooLarge(f"body of {size} bytes exceeds {setting}={limit}", limit=limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body exceeds {setting}={limit}", limit=limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected(
            f"the client went away after {size} bytes of the body", received_bytes=size
        ) from None
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# What the parsing processes run. Plain functions of bytes: they return ("ok", wire bytes) or
# ("err", error class name, message, details) so nothing but builtins crosses the process boundary.

_ERRORS: dict[str, type[ForgeError]] = {"RequestInvalid": RequestInvalid, "BlueprintInvalid": BlueprintInvalid}
Outcome = tuple[Any, ...]


def _load_json(body: bytes, max_depth: int) -> Any:
    if json_depth(body) > max_depth:
        raise RequestInvalid(f"the JSON body is nested more than {max_depth} levels deep")
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestInvalid(f"the JSON body is nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestInvalid(f"body is not valid JSON: {str(exc)[:200]}") from None


def _message_from_dict(cls: type[Message], obj: dict[str, Any]) -> Any:
    message = cls()
    try:
        json_format.ParseDict(obj, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise RequestInvalid(f"{cls.DESCRIPTOR.full_name}: {str(exc)[:300]}") from None
    return message


def _check_nodes(obj: Any, limits: ValidationLimits) -> None:
    # Counted before the (slow, pure-Python) protobuf JSON parser walks every node.
    nodes = obj.get("nodes") if isinstance(obj, dict) else None
    if isinstance(nodes, list) and len(nodes) > limits.max_nodes:
        raise BlueprintInvalid(
            f"{len(nodes)} nodes, more than blueprint.max_nodes={limits.max_nodes}; split the blueprint",
            code="BLUEPRINT_INVALID", reason="TOO_MANY_NODES", field="nodes",
        )


def _decode(cls: type[Message], body: bytes) -> Any:
    try:
        return decode(cls, body)
    except ContractError as exc:
        raise RequestInvalid(f"body is not a canonical {exc.message_type}: {exc.reason}") from None


def _validate_inline(message: Any, limits: ValidationLimits) -> None:
    if not message.HasField("blueprint"):
        return
    from tezzeret.blueprint import validate

    try:
        validate(message.blueprint, limits)
    except BlueprintRejected as exc:
        raise BlueprintInvalid(
            str(exc), code="BLUEPRINT_INVALID", reason=exc.code,
            node=getattr(exc, "node", None), field=getattr(exc, "field", None),
        ) from None


def _submission(body: bytes, media: str, limits: ValidationLimits) -> bytes:
    if media in PROTOBUF_TYPES:
        req = _decode(pb.CompilationRequest, body)
    else:
        obj = _load_json(body, limits.max_json_depth + ENVELOPE_DEPTH)
        if not isinstance(obj, dict):
            raise RequestInvalid("body must be a JSON object (a CompilationRequest or a BlueprintIR)")
        if "nodes" in obj or "inputs" in obj:  # a bare BlueprintIR
            _check_nodes(obj, limits)
            req = pb.CompilationRequest(blueprint=_message_from_dict(pb.BlueprintIR, obj))
        else:
            _check_nodes(obj.get("blueprint"), limits)
            req = _message_from_dict(pb.CompilationRequest, obj)
    _validate_inline(req, limits)
    return req.SerializeToString()


def _emergency(body: bytes, media: str, limits: ValidationLimits) -> bytes:
    if media in PROTOBUF_TYPES:
        msg = _decode(pb.EmergencyCompile, body)
    else:
        obj = _load_json(body, limits.max_json_depth + ENVELOPE_DEPTH)
        if not isinstance(obj, dict):
            raise RequestInvalid("body must be a JSON object (an EmergencyCompile)")
        _check_nodes(obj.get("blueprint"), limits)
        msg = _message_from_dict(pb.EmergencyCompile, obj)
    _validate_inline(msg, limits)
    return msg.SerializeToString()


def _json_object(body: bytes, media: str, limits: ValidationLimits) -> bytes:
    obj = _load_json(body or b"{}", 8)
    if not isinstance(obj, dict):
        raise RequestInvalid("body must be a JSON object")
    return json.dumps(obj).encode()


def run_parse(kind: str, body: bytes, media: str, limits: ValidationLimits) -> Outcome:
    """One body, in a parsing process. Never raises: a bad body is an ("err", ...) outcome."""
    fn = {"submission": _submission, "emergency": _emergency, "json_object": _json_object}[kind]
    try:
        return ("ok", fn(body, media, limits))
    except (RequestInvalid, BlueprintInvalid) as exc:
        return ("err", type(exc).__name__, str(exc), {k: v for k, v in exc.details.items() if v is not None}
                | ({"code": exc.code} if exc.code != type(exc).code else {}))
    except (RecursionError, MemoryError) as exc:
        return ("err", "RequestInvalid", f"the body is too complex to parse ({type(exc).__name__})", {})
    except Exception as exc:  # noqa: BLE001 - whatever a hostile body provokes, it is the body's fault
        return ("err", "RequestInvalid", f"the body could not be parsed ({type(exc).__name__}: {str(exc)[:200]})",
                {"parser_error": type(exc).__name__})


def _worker_init(niceness: int) -> None:
    import signal

    # Ctrl-C reaches the whole process group: the server decides when these processes stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(niceness)
    except OSError:
        pass
    import tezzeret.blueprint.validate  # noqa: F401 - imported once here, not on the first body


def _warm() -> int:
    return os.getpid()


# ---------------------------------------------------------------------------------------------


class BodyParser:
    """Parses request bodies in worker processes, small and large bodies in separate lanes."""

    def __init__(self, limits: ValidationLimits, *, large_workers: int = 1, cache_entries: int = 1024,
                 on_crash: Callable[[], None] | None = None) -> None:
        self.limits = limits
        self._large_workers = large_workers
        self._cache: OrderedDict[bytes, Outcome] = OrderedDict()
        self._cache_entries = cache_entries
        self._on_crash = on_crash
        self._closed = False
        self._small = self._pool(1, SMALL_NICENESS)
        self._large = self._pool(large_workers, LARGE_NICENESS)

    def _pool(self, workers: int, niceness: int) -> ProcessPoolExecutor:
        import multiprocessing

        # forkserver: never fork this (threaded) process itself; each worker starts from a clean
        # interpreter that imports the parser once.
        ctx = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(niceness,))

    def warm(self) -> None:
        """Start the worker processes now rather than on the first body."""
        for pool, n in ((self._small, 1), (self._large, self._large_workers)):
            for _ in range(n):
                pool.submit(_warm)

    def close(self) -> None:
        self._closed = True
        for pool in (self._small, self._large):
            pool.shutdown(wait=False, cancel_futures=True)

    async def submission(self, body: bytes, media: str) -> pb.CompilationRequest:
        return pb.CompilationRequest.FromString(await self._run("submission", body, media))

    async def emergency(self, body: bytes, media: str) -> pb.EmergencyCompile:
        return pb.EmergencyCompile.FromString(await self._run("emergency", body, media))

    async def json_object(self, body: bytes) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(await self._run("json_object", body, "application/json"))
        return obj

    async def _run(self, kind: str, body: bytes, media: str) -> bytes:
        key = None
        if len(body) <= CACHEABLE_BODY_BYTES:
            key = hashlib.sha256(b"%s\0%s\0" % (kind.encode(), media.encode()) + body).digest()
            outcome = self._cache.get(key)
            if outcome is not None:
                self._cache.move_to_end(key)
                return self._unwrap(outcome)
        outcome = await self._submit(kind, body, media)
        if key is not None:
            self._cache[key] = outcome
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        return self._unwrap(outcome)

    async def _submit(self, kind: str, body: bytes, media: str) -> Outcome:
        if self._closed:
            raise ParserUnavailable("the server is shutting down")
        small = len(body) <= SMALL_BODY_BYTES
        pool = self._small if small else self._large
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, run_parse, kind, body, media, self.limits)
        except BrokenProcessPool:
            # A parsing process died (killed, or out of memory on this body): replace the lane.
            # The body is refused rather than retried, in case it is what killed the process.
            self._replace(pool, small)
            raise RequestInvalid(
                "the body could not be parsed: the parsing process died on it; a blueprint this "
                "large or complex is refused"
            ) from None

    def _replace(self, broken: ProcessPoolExecutor, small: bool) -> None:
        current = self._small if small else self._large
        if current is not broken or self._closed:
            return  # another request already replaced it
        log.warning("a body-parsing process died; starting a new %s-body lane", "small" if small else "large")
        if self._on_crash is not None:
            self._on_crash()
        fresh = self._pool(1, SMALL_NICENESS) if small else self._pool(self._large_workers, LARGE_NICENESS)
        if small:
            self._small = fresh
        else:
            self._large = fresh
        broken.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _unwrap(outcome: Outcome) -> bytes:
        if outcome[0] == "ok":
            data: bytes = outcome[1]
            return data
        _, kind, message, details = outcome
        details = dict(details)
        code = details.pop("code", None)
        raise _ERRORS.get(kind, RequestInvalid)(message, code=code, **details)
