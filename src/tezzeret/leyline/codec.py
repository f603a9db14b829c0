"""Deterministic encoding of Leyline messages, the decode→re-encode check, and the JSON form.

Owns: turning messages into bytes that are identical for identical content (so digests, WAL
payloads and signatures are stable) and back. Must never accept bytes whose re-encoding differs:
that is how unknown fields, duplicated fields and non-canonical varints are kept out.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

SCHEMA_VERSION = 1

M = TypeVar("M", bound=Message)


class ContractError(ValueError):
    """Bytes or JSON that do not form a valid, canonical Leyline message."""

    def __init__(self, message_type: str, reason: str) -> None:
        super().__init__(f"{message_type}: {reason}")
        self.message_type = message_type
        self.reason = reason


def encode(message: Message) -> bytes:
    """Deterministic wire bytes: fields in number order, no map-order freedom (there are no maps)."""
    return message.SerializeToString(deterministic=True)


def decode(cls: type[M], data: bytes, *, canonical: bool = True) -> M:
    """Parse `data` as `cls`; with `canonical`, also require that re-encoding gives the same bytes."""
    name = cls.DESCRIPTOR.full_name
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ContractError(name, f"expected bytes, got {type(data).__name__}")
    message = cls()
    try:
        message.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ContractError(name, f"undecodable protobuf ({exc})") from None
    if canonical:
        # Unknown fields survive a re-encode byte for byte, so drop them before comparing.
        known = cls()
        known.CopyFrom(message)
        known.DiscardUnknownFields()
        if encode(known) != bytes(data):
            raise ContractError(
                name,
                "decode→re-encode changed the bytes (unknown, repeated or non-canonical fields)",
            )
    return message


def roundtrip_equal(message: Message) -> bool:
    """True when encode → decode → encode is a fixed point for this message."""
    data = encode(message)
    again = type(message)()
    again.ParseFromString(data)
    return encode(again) == data


def to_json(message: Message) -> str:
    """The human form: field names as in the .proto, enums by name, stable key order."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, sort_keys=True, indent=2
    )


def from_json(cls: type[M], text: str | bytes) -> M:
    """Parse the JSON form; unknown fields are an error, never silently dropped."""
    name = cls.DESCRIPTOR.full_name
    message = cls()
    try:
        json_format.Parse(text, message, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise ContractError(name, f"invalid JSON form ({exc})") from None
    return message
