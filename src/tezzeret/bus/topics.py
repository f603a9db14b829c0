"""Oona topics Tezzeret uses, the message types each carries, and their Redis stream names.

Owns: the one table that says which Leyline message may travel on which topic, and how a topic maps
to a stream (`bus.stream_prefix + topic`, except the emergency streams, which are named verbatim by
`emergency.stream` / `emergency.reply_stream`). Must never do I/O or import another stage than leyline.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from tezzeret.bus.errors import UnknownTopic, WrongMessageType
from tezzeret.config import Settings
from tezzeret.leyline import pb

# In (Karn/Urza, Oona, Urabrask).
BLUEPRINT_SUBMITTED = "compilation.blueprint.submitted"
COMPILATION_REQUEST = "compilation.request"
KERNEL_CHARACTERIZED = "validation.kernel.characterized"
# Out (Urabrask, Kasmina and everyone).
KERNEL_READY = "compilation.kernel.ready"
KERNELS_CATALOG = "kernels.catalog"
# Tamiyo's emergency path.
EMERGENCY = "tezzeret.emergency"
EMERGENCY_REPLY = "tezzeret.emergency.reply"

DEAD_SUFFIX = ".dead"


@dataclass(frozen=True)
class Topic:
    name: str
    types: tuple[type[Message], ...]
    # The role a signing key needs for a message on this topic to be delivered.
    role: str = "publisher"


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(BLUEPRINT_SUBMITTED, (pb.BlueprintSubmitted,)),
        Topic(COMPILATION_REQUEST, (pb.CompilationRequest,)),
        Topic(KERNEL_CHARACTERIZED, (pb.KernelCharacterized,)),
        Topic(KERNEL_READY, (pb.CompilationComplete,)),
        Topic(KERNELS_CATALOG, (pb.KernelCatalogUpdate,)),
        Topic(EMERGENCY, (pb.EmergencyCompile,), role="emergency"),
        Topic(EMERGENCY_REPLY, (pb.EmergencyAck, pb.CompilationComplete)),
    )
}

# Every message type any topic carries, by its Leyline full name (the envelope's `message_type`).
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls for topic in TOPICS.values() for cls in topic.types
}


def topic(name: str) -> Topic:
    try:
        return TOPICS[name]
    except KeyError:
        raise UnknownTopic(name, list(TOPICS)) from None


def type_name(message: Message | type[Message]) -> str:
    return message.DESCRIPTOR.full_name


def check_type(name: str, message_type: str) -> type[Message]:
    """The class for `message_type` if topic `name` carries it, else `WrongMessageType`."""
    t = topic(name)
    for cls in t.types:
        if cls.DESCRIPTOR.full_name == message_type:
            return cls
    raise WrongMessageType(name, message_type, [c.DESCRIPTOR.full_name for c in t.types])


def stream_name(settings: Settings, name: str) -> str:
    topic(name)
    if name == EMERGENCY:
        return settings.emergency.stream
    if name == EMERGENCY_REPLY:
        return settings.emergency.reply_stream
    return settings.bus.stream_prefix + name


def dead_stream_name(settings: Settings, name: str) -> str:
    return stream_name(settings, name) + DEAD_SUFFIX
