"""Envelope signing, the keyring, the seen-id set and the token bucket, without any server."""

from __future__ import annotations

from pathlib import Path

import pytest
from bus_helpers import bus_settings, sample
from settings import KARN_SECRET

from tezzeret.bus import EnvelopeRejected, Keyring, SeenSet, TokenBucket, open_envelope, seal, topics
from tezzeret.bus.envelope import signature_of
from tezzeret.errors import ConfigError
from tezzeret.leyline import decode, encode, pb


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_seal_and_open(tmp_path: Path) -> None:
    keyring = Keyring.from_settings(bus_settings(tmp_path, None))
    msg = sample(topics.KERNEL_READY)
    env = seal(msg, key_id="karn", secret=KARN_SECRET.encode(), message_id="m1", attributes={"b": "2", "a": "1"})
    data = encode(env)
    assert decode(pb.BusEnvelope, data) == env  # canonical bytes
    assert [kv.key for kv in env.attributes] == ["a", "b"]
    opened = open_envelope(data, keyring, topics.KERNEL_READY)
    assert opened.message == msg and opened.key_id == "karn" and opened.roles == frozenset({"publisher"})
    # The signature covers every field, attributes included.
    env.attributes[0].value = "changed"
    with pytest.raises(EnvelopeRejected, match="bad signature"):
        open_envelope(encode(env), keyring, topics.KERNEL_READY)


def test_signature_is_over_envelope_without_signature(tmp_path: Path) -> None:
    env = seal(sample(topics.KERNELS_CATALOG), key_id="karn", secret=b"s", message_id="x", issued_at_ns=5)
    again = seal(sample(topics.KERNELS_CATALOG), key_id="karn", secret=b"s", message_id="x", issued_at_ns=5)
    assert env.signature == again.signature == signature_of(env, b"s")
    assert len(env.signature) == 32


def test_emergency_topic_needs_emergency_role(tmp_path: Path) -> None:
    keyring = Keyring.from_settings(bus_settings(tmp_path, None))
    env = seal(sample(topics.EMERGENCY), key_id="karn", secret=KARN_SECRET.encode())
    with pytest.raises(EnvelopeRejected, match="lacks role 'emergency'") as err:
        open_envelope(encode(env), keyring, topics.EMERGENCY)
    assert err.value.code == "BUS_ENVELOPE_REJECTED" and err.value.key_id == "karn"


def test_keyring_reads_secret_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [{"key_id": "tezzeret", "secret_env": "TEST_BUS_SECRET", "roles": ["publisher"]}]
    settings = bus_settings(tmp_path, None, bus={"keys": keys})
    with pytest.raises(ConfigError, match="TEST_BUS_SECRET is not set"):
        Keyring.from_settings(settings)
    monkeypatch.setenv("TEST_BUS_SECRET", "from-env")
    assert Keyring.from_settings(settings).get("tezzeret").secret == b"from-env"


def test_stream_names(tmp_path: Path) -> None:
    s = bus_settings(tmp_path, None)
    assert topics.stream_name(s, topics.KERNEL_READY) == "oona.compilation.kernel.ready"
    assert topics.stream_name(s, topics.EMERGENCY) == "tezzeret.emergency"
    assert topics.stream_name(s, topics.EMERGENCY_REPLY) == "tezzeret.emergency.reply"
    assert topics.dead_stream_name(s, topics.KERNELS_CATALOG) == "oona.kernels.catalog.dead"


def test_seen_set_ttl_and_bound() -> None:
    clock = Clock()
    seen = SeenSet(ttl_s=10, max_entries=3, clock=clock)
    assert seen.check_and_add("a") and not seen.check_and_add("a")
    seen.add("b", value=("sid", 1))
    assert seen.get("b") == ("sid", 1) and seen.get("zzz") is None
    clock.t += 9.9
    assert "a" in seen
    clock.t += 0.2
    assert "a" not in seen and "b" not in seen and len(seen) == 0
    for k in "wxyz":
        seen.add(k)
    assert "w" not in seen and len(seen) == 3


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(120, clock=clock)
    assert sum(bucket.try_take() for _ in range(200)) == 120
    clock.t += 0.5  # 120/min refills one token per half second
    assert bucket.try_take() and not bucket.try_take()
    clock.t += 3600
    assert sum(bucket.try_take() for _ in range(200)) == 120
