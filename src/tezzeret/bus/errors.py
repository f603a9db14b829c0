"""Typed errors of the bus stage (Oona).

Owns: the exceptions the bus raises on purpose, each with a stable `code` and a message that says
what went wrong, where, and how to fix it. Must never import another bus module or any other stage.
"""

from __future__ import annotations

from tezzeret.errors import TezzeretError


class BusError(TezzeretError):
    """Base of every bus error."""

    code = "BUS_ERROR"


class UnknownTopic(BusError):
    code = "BUS_UNKNOWN_TOPIC"

    def __init__(self, topic: str, known: list[str]) -> None:
        super().__init__(
            f"topic {topic!r} is not one of Tezzeret's Oona topics ({', '.join(sorted(known))}); "
            "add it to tezzeret.bus.topics.TOPICS with its message types first"
        )
        self.topic = topic


class WrongMessageType(BusError):
    code = "BUS_WRONG_MESSAGE_TYPE"

    def __init__(self, topic: str, got: str, allowed: list[str]) -> None:
        super().__init__(
            f"topic {topic!r} carries {', '.join(allowed)}, not {got}; publish the right message or "
            "pick the topic that carries it"
        )
        self.topic = topic


class UnknownKey(BusError):
    code = "BUS_UNKNOWN_KEY"

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"bus key {key_id!r} is not configured; add it under bus.keys "
            "(key_id, secret_env or secret, roles)"
        )
        self.key_id = key_id


class EnvelopeRejected(BusError):
    """An envelope that must never reach a handler: bad bytes, bad signature, missing role."""

    code = "BUS_ENVELOPE_REJECTED"

    def __init__(self, reason: str, *, key_id: str = "") -> None:
        super().__init__(f"envelope rejected: {reason}")
        self.reason = reason
        self.key_id = key_id


class OutboxFull(BusError):
    code = "BUS_OUTBOX_FULL"

    def __init__(self, limit: int, topic: str) -> None:
        super().__init__(
            f"Redis is unreachable and the outbox already holds bus.outbox_limit={limit} events; "
            f"the event for {topic!r} was not accepted. Restore Redis or raise bus.outbox_limit"
        )
        self.limit = limit
        self.topic = topic


class BusUnavailable(BusError):
    """Redis refused an unbuffered command (a reply, another party's request)."""

    code = "BUS_UNAVAILABLE"


class BusClosed(BusError):
    code = "BUS_CLOSED"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: the bus is closed; call start() on a new bus")


class EmergencyTimeout(BusError):
    code = "BUS_EMERGENCY_TIMEOUT"

    def __init__(self, request_id: str, what: str, timeout_s: float) -> None:
        super().__init__(
            f"emergency request {request_id}: no {what} on the reply stream within {timeout_s:.3f} s; "
            "check that a forge listens on emergency.stream and that Redis is up"
        )
        self.request_id = request_id
