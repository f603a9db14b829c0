"""Leyline BusEnvelope: build, sign and verify (HMAC-SHA256), and open to a typed message.

Owns: the signature rule — HMAC-SHA256 under the key named by `key_id`, over the envelope encoded
deterministically with `signature` cleared — and the keyring built from `bus.keys`. Must never hand
out a payload whose envelope failed verification, and never compare signatures with `==` (timing).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from google.protobuf.message import Message

from tezzeret.bus import topics
from tezzeret.bus.errors import EnvelopeRejected, UnknownKey, WrongMessageType
from tezzeret.config import Settings
from tezzeret.leyline import SCHEMA_VERSION, ContractError, decode, encode, pb


@dataclass(frozen=True)
class BusKeyInfo:
    key_id: str
    secret: bytes
    roles: frozenset[str]


class Keyring:
    """Signing keys by id, with their roles. Secrets are resolved once, at construction."""

    def __init__(self, keys: list[BusKeyInfo]) -> None:
        self._keys = {k.key_id: k for k in keys}

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        return cls(
            [BusKeyInfo(k.key_id, k.resolve(), frozenset(k.roles)) for k in settings.bus.keys]
        )

    def get(self, key_id: str) -> BusKeyInfo:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKey(key_id) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys


@dataclass(frozen=True)
class Opened:
    """A verified envelope and its decoded payload."""

    envelope: pb.BusEnvelope
    message: Message
    message_type: str
    key_id: str
    roles: frozenset[str]


def signature_of(envelope: pb.BusEnvelope, secret: bytes) -> bytes:
    unsigned = pb.BusEnvelope()
    unsigned.CopyFrom(envelope)
    unsigned.ClearField("signature")
    return hmac.new(secret, encode(unsigned), hashlib.sha256).digest()


def seal(
    message: Message,
    *,
    key_id: str,
    secret: bytes,
    message_id: str | None = None,
    issued_at_ns: int | None = None,
    attributes: dict[str, str] | None = None,
) -> pb.BusEnvelope:
    """Wrap `message` in a signed envelope. `message_id` defaults to a fresh UUID4 hex."""
    env = pb.BusEnvelope(
        schema_version=SCHEMA_VERSION,
        message_type=topics.type_name(message),
        payload=encode(message),
        message_id=message_id or uuid.uuid4().hex,
        key_id=key_id,
        issued_at_ns=time.time_ns() if issued_at_ns is None else issued_at_ns,
    )
    for key in sorted(attributes or {}):
        env.attributes.add(key=key, value=(attributes or {})[key])
    env.signature = signature_of(env, secret)
    return env


def parse(data: bytes) -> pb.BusEnvelope:
    if not data:
        raise EnvelopeRejected("undecodable envelope (empty entry: no envelope bytes)")
    try:
        return decode(pb.BusEnvelope, data)
    except ContractError as exc:
        raise EnvelopeRejected(f"undecodable envelope ({exc.reason})") from None


def authenticate(envelope: pb.BusEnvelope, keyring: Keyring) -> BusKeyInfo:
    """The signing key if the signature is valid; `EnvelopeRejected` otherwise."""
    key_id = envelope.key_id
    if not key_id:
        raise EnvelopeRejected("unsigned envelope (no key_id)")
    try:
        key = keyring.get(key_id)
    except UnknownKey:
        raise EnvelopeRejected(f"unknown signing key {key_id!r}", key_id=key_id) from None
    if not envelope.signature:
        raise EnvelopeRejected(f"unsigned envelope (key {key_id!r}, no signature)", key_id=key_id)
    if not hmac.compare_digest(signature_of(envelope, key.secret), envelope.signature):
        raise EnvelopeRejected(f"bad signature for key {key_id!r}", key_id=key_id)
    return key


def open_envelope(data: bytes, keyring: Keyring, topic_name: str) -> Opened:
    """Parse, authenticate, check the key's role and the topic's type, and decode the payload."""
    env = parse(data)
    key = authenticate(env, keyring)
    role = topics.topic(topic_name).role
    if role not in key.roles:
        raise EnvelopeRejected(
            f"key {key.key_id!r} lacks role {role!r} needed on {topic_name!r}", key_id=key.key_id
        )
    try:
        cls = topics.check_type(topic_name, env.message_type)
    except WrongMessageType as exc:
        raise EnvelopeRejected(str(exc), key_id=key.key_id) from None
    try:
        message = decode(cls, env.payload)
    except ContractError as exc:
        raise EnvelopeRejected(f"undecodable {env.message_type} payload ({exc.reason})", key_id=key.key_id) from None
    return Opened(env, message, env.message_type, key.key_id, key.roles)
