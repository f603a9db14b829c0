"""Helpers for the forge tests: settings on a tmp state dir, small library blueprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tezzeret.blueprint import library
from tezzeret.config import Settings, load_settings
from tezzeret.leyline import SCHEMA_VERSION, pb

# The cheapest library blueprints to compile on a 2-core machine.
SMALL = ("mlp_512", "residual_mlp_256", "swiglu_mlp_512", "lora_adapter_1024", "rmsnorm_gated_mlp_768")


def forge_settings(state_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "state_dir": state_dir,
        "compilation": {"max_concurrent_jobs": 1, "idle_recompilation": False},
        "polling": {"initial_full_scan": False, "refresh_interval_minutes": 0},
        "sandbox": {"grace_period_s": 5.0},
        "wal": {"durability_mode": "fsync"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


def blueprint(name: str) -> pb.BlueprintIR:
    for lb in library():
        if lb.name == name:
            ir = pb.BlueprintIR()
            ir.CopyFrom(lb.ir)
            return ir
    raise KeyError(name)


def request(name: str, strategy: int = pb.STRATEGY_EMERGENCY, **fields: Any) -> pb.CompilationRequest:
    return pb.CompilationRequest(
        schema_version=SCHEMA_VERSION, blueprint=blueprint(name), strategy=strategy, **fields
    )


class RedisServer:
    """A real redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.workdir = workdir
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        import subprocess
        import time

        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.exceptions.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


TAMIYO_SECRET = b"tamiyo-test-secret"
KARN_SECRET = b"karn-test-secret"

BUS_KEYS = [
    {"key_id": "tezzeret", "secret": "tezzeret-test-secret", "roles": ["publisher", "emergency", "admin"]},
    {"key_id": "tamiyo", "secret": TAMIYO_SECRET.decode(), "roles": ["emergency"]},
    {"key_id": "karn", "secret": KARN_SECRET.decode(), "roles": ["publisher"]},
]
