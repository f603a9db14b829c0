"""The store's read-only views of its rows: blueprints, artifacts, recompilation candidates.

Owns: the frozen dataclasses the store hands out, and their conversion to Leyline enums and
messages. States and strategies are held by name ("COMPILING", "FAST"); the `*_value` properties
give the `pb` enum numbers. Must never query the database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from tezzeret.leyline import Strategy, codec, pb
from tezzeret.store.lifecycle import blueprint_state_value, kernel_status_value


def strategy_name(value: int | str) -> str:
    """`pb.STRATEGY_FAST`, `"STRATEGY_FAST"` or `"fast"` → `"FAST"` (`UnknownStrategy`, a
    ValueError, for anything else)."""
    return Strategy.parse(value).value


def outcome_name(value: int | str) -> str:
    """`pb.OUTCOME_TIMEOUT`, `"OUTCOME_TIMEOUT"` or `"timeout"` → `"TIMEOUT"`."""
    if isinstance(value, str):
        name = value.upper().removeprefix("OUTCOME_")
        pb.JobOutcome.Value("OUTCOME_" + name)  # raises ValueError on an unknown name
    else:
        name = pb.JobOutcome.Name(int(value)).removeprefix("OUTCOME_")
    if name == "UNSPECIFIED":
        raise ValueError("a compile attempt needs an outcome; OUTCOME_UNSPECIFIED is not one")
    return name


@dataclass(frozen=True)
class AttemptOutcome:
    """One compile attempt as the payback predictor sees it: what was compiled (`features`, JSON
    the store does not read), where, and what it cost and bought (None when not measured)."""

    digest: str
    strategy: str
    outcome: str
    toolchain: str | None
    machine: str
    features: str
    compile_s: float | None
    served_speedup: float | None
    eager_step_ms: float | None
    at_ns: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AttemptOutcome:
        return cls(
            digest=row["digest"], strategy=row["strategy"], outcome=row["outcome"], toolchain=row["toolchain"],
            machine=row["machine"], features=row["features"], compile_s=row["compile_s"],
            served_speedup=row["served_speedup"], eager_step_ms=row["eager_step_ms"], at_ns=int(row["at_ns"]),
        )


@dataclass(frozen=True)
class BlueprintRecord:
    digest: str
    name: str
    source: str
    state: str
    ir: bytes
    tamiyo_interest: float
    value: float
    claimed_by: str | None
    claimed_at_ns: int | None
    compilation_attempts: int
    successful_compilations: int
    strategies_tried: tuple[str, ...]
    created_at_ns: int
    updated_at_ns: int
    # Set while no automatic path (polling, idle recompilation, fallback) may submit it.
    quarantine_reason: str = ""

    @property
    def quarantined(self) -> bool:
        return bool(self.quarantine_reason)

    @property
    def state_value(self) -> int:
        return blueprint_state_value(self.state)

    @property
    def blueprint(self) -> pb.BlueprintIR:
        return codec.decode(pb.BlueprintIR, self.ir)

    @classmethod
    def from_row(cls, row: sqlite3.Row, strategies: tuple[str, ...]) -> BlueprintRecord:
        return cls(
            digest=row["digest"],
            name=row["name"],
            source=row["source"],
            state=row["state"],
            ir=bytes(row["ir"]),
            tamiyo_interest=float(row["tamiyo_interest"]),
            value=float(row["value"]),
            claimed_by=row["claimed_by"],
            claimed_at_ns=row["claimed_at_ns"],
            compilation_attempts=int(row["compilation_attempts"]),
            successful_compilations=int(row["successful_compilations"]),
            strategies_tried=strategies,
            created_at_ns=int(row["created_at_ns"]),
            updated_at_ns=int(row["updated_at_ns"]),
            quarantine_reason=row["quarantine_reason"],
        )


@dataclass(frozen=True)
class ArtifactRecord:
    artifact_id: str
    blueprint_digest: str
    strategy: str
    target: str
    toolchain_hash: str
    manifest_bytes: bytes
    manifest_sha256: str
    signature_bytes: bytes
    key_id: str
    file_sha256: str
    file_size: int
    status: str
    status_reason: str
    created_at_ns: int
    updated_at_ns: int
    # Set when the blob was found damaged; cleared by the rebuild that replaces it.
    corrupt_at_ns: int | None = None

    @property
    def corrupt(self) -> bool:
        return self.corrupt_at_ns is not None

    @property
    def status_value(self) -> int:
        return kernel_status_value(self.status)

    @property
    def strategy_value(self) -> pb.CompilationStrategy:
        return Strategy.parse(self.strategy).pb

    @property
    def manifest(self) -> pb.CompiledKernelArtifact:
        return codec.decode(pb.CompiledKernelArtifact, self.manifest_bytes)

    @property
    def signature(self) -> pb.ArtifactSignature:
        return codec.decode(pb.ArtifactSignature, self.signature_bytes)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ArtifactRecord:
        return cls(
            artifact_id=row["artifact_id"],
            blueprint_digest=row["blueprint_digest"],
            strategy=row["strategy"],
            target=row["target"],
            toolchain_hash=row["toolchain_hash"],
            manifest_bytes=bytes(row["manifest"]),
            manifest_sha256=row["manifest_sha256"],
            signature_bytes=bytes(row["signature"]),
            key_id=row["key_id"],
            file_sha256=row["file_sha256"],
            file_size=int(row["file_size"]),
            status=row["status"],
            status_reason=row["status_reason"],
            created_at_ns=int(row["created_at_ns"]),
            updated_at_ns=int(row["updated_at_ns"]),
            corrupt_at_ns=row["corrupt_at_ns"],
        )


@dataclass(frozen=True)
class RecompilationCandidate:
    """One piece of idle work (upstream §3.5): recompile `digest` with `strategy`, because `reason`."""

    digest: str
    strategy: str
    reason: str

    @property
    def strategy_value(self) -> pb.CompilationStrategy:
        return Strategy.parse(self.strategy).pb
