"""Reading a BlueprintIR from a file, JSON text or protobuf bytes.

Owns `load_blueprint` and `parse_blueprint`: size and JSON-depth checks BEFORE any parser runs,
then `codec.from_json` or `codec.decode` (with the decode -> re-encode check), then validation.
The depth pre-scan is written here (a vectorised bracket count outside string literals) because
the standard JSON parsers recurse and fail with a RecursionError only after doing the work. It
must never let anything but `BlueprintRejected` escape and never read more bytes than the limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tezzeret.blueprint.analysis import ValidationLimits
from tezzeret.blueprint.errors import BlueprintRejected
from tezzeret.blueprint.validate import validate
from tezzeret.leyline import ContractError, decode, from_json, pb

# A JSON string literal, written unrolled so matching stays linear on long strings.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Deepest nesting of objects/arrays in `data`, ignoring brackets inside strings."""
    skeleton = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    opens = (skeleton == 0x7B) | (skeleton == 0x5B)
    n_open = int(opens.sum())
    if n_open <= 1:
        return n_open
    closes = (skeleton == 0x7D) | (skeleton == 0x5D)
    return int(np.cumsum(opens.astype(np.int32) - closes.astype(np.int32)).max())


def _is_json_text(text: str) -> bool:
    return text.lstrip(" \t\r\n\ufeff")[:1] in ("{", "[")


def _looks_like_json(data: bytes) -> bool:
    # A BlueprintIR's wire form never starts with '{' (0x7b would be field 15, wire type 3).
    return data.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"[")


def _parse_json(data: bytes, limits: ValidationLimits) -> pb.BlueprintIR:
    if len(data) > limits.max_json_bytes:
        raise BlueprintRejected(
            "TOO_LARGE", f"{len(data):,} bytes of JSON, more than blueprint.max_json_bytes={limits.max_json_bytes:,}"
        )
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise BlueprintRejected(
            "TOO_DEEP", f"JSON nested {depth} levels deep, more than blueprint.max_json_depth={limits.max_json_depth}"
        )
    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BlueprintRejected("MALFORMED", f"not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise BlueprintRejected("MALFORMED", f"the JSON document is a {type(doc).__name__}; a BlueprintIR is an object")
    # Count before the (slow, pure-Python) protobuf JSON parser walks every node.
    nodes = doc.get("nodes")
    if isinstance(nodes, list) and len(nodes) > limits.max_nodes:
        raise BlueprintRejected(
            "TOO_MANY_NODES",
            f"{len(nodes)} nodes, more than blueprint.max_nodes={limits.max_nodes}; split the blueprint",
            field="nodes",
        )
    try:
        return from_json(pb.BlueprintIR, text)
    except ContractError as exc:
        raise BlueprintRejected(
            "MALFORMED",
            f"the JSON is not a leyline.BlueprintIR: {exc.reason[:300]}; field names are those of leyline.proto",
        ) from None


def _parse_proto(data: bytes, limits: ValidationLimits) -> pb.BlueprintIR:
    if len(data) > limits.max_proto_bytes:
        raise BlueprintRejected(
            "TOO_LARGE", f"{len(data):,} bytes of protobuf, more than blueprint.max_proto_bytes={limits.max_proto_bytes:,}"
        )
    try:
        return decode(pb.BlueprintIR, data)
    except ContractError as exc:
        code = "NOT_CANONICAL" if "re-encode" in exc.reason else "MALFORMED"
        raise BlueprintRejected(code, f"protobuf bytes rejected: {exc.reason[:300]}") from None


def parse_blueprint(source: str | bytes | bytearray | Path, limits: ValidationLimits | None = None) -> pb.BlueprintIR:
    """Parse (without the semantic checks) JSON text, a file path, or protobuf bytes."""
    limits = limits or ValidationLimits()
    try:
        if isinstance(source, Path) or (isinstance(source, str) and not _is_json_text(source)):
            return _parse_file(Path(source), limits)
        if isinstance(source, str):
            return _parse_json(source.encode("utf-8", "surrogatepass"), limits)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            return _parse_json(data, limits) if _looks_like_json(data) else _parse_proto(data, limits)
    except BlueprintRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - nothing but BlueprintRejected may escape
        raise BlueprintRejected("INTERNAL", f"the parser failed ({type(exc).__name__}: {str(exc)[:200]})") from exc
    raise BlueprintRejected("MALFORMED", f"cannot read a blueprint from a {type(source).__name__}")


def _parse_file(path: Path, limits: ValidationLimits) -> pb.BlueprintIR:
    cap = max(limits.max_json_bytes, limits.max_proto_bytes)
    try:
        with path.open("rb") as fh:
            data = fh.read(cap + 1)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BlueprintRejected("MALFORMED", f"cannot read the file: {reason[:200]}") from None
    if len(data) > cap:
        raise BlueprintRejected("TOO_LARGE", f"{path} is larger than {cap:,} bytes")
    if _looks_like_json(data):
        return _parse_json(data, limits)
    return _parse_proto(data, limits)


def load_blueprint(source: str | bytes | bytearray | Path, limits: ValidationLimits | None = None) -> pb.BlueprintIR:
    """Read and validate a blueprint from a JSON file/text or protobuf bytes.

    A `str` starting with '{' is JSON text, any other `str` a path; bytes are sniffed (JSON when
    they start with '{', else protobuf wire form). Raises `BlueprintRejected` (naming the file
    when there is one) and nothing else.
    """
    try:
        ir = parse_blueprint(source, limits)
        validate(ir, limits)
    except BlueprintRejected as exc:
        if isinstance(source, Path) or (isinstance(source, str) and not _is_json_text(source)):
            raise exc.with_source(str(source)) from None
        raise
    return ir
