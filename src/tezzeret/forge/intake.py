"""Intake: turn a submission from any source into a resolved, validated, identified request.

Owns: resolving the blueprint (inline, or by digest from Urza), static validation (mapping
`BlueprintRejected` to `BlueprintInvalid` with its code, node and field), the digest, the strategy
decision and the artifact id, and the *resolved* request that gets journaled: blueprint inlined,
strategy and priority fixed, so WAL recovery can rebuild the job without consulting anything that
may have changed. Must never journal, queue or compile (the service does those, in that order).

Why the strategy is decided here rather than at dequeue: the artifact id contains the strategy,
and dedup (L1 in flight, L2 store) needs the artifact id before anything is journaled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

from tezzeret.blueprint import digest as blueprint_digest
from tezzeret.blueprint import validate as validate_blueprint
from tezzeret.blueprint.errors import BlueprintRejected
from tezzeret.compile.identity import artifact_id_for
from tezzeret.config import Settings
from tezzeret.forge.errors import BlueprintInvalid, BlueprintNotFound, RequestInvalid
from tezzeret.forge.queue import normalize_priority
from tezzeret.forge.strategy import StrategyDecision, select_strategy
from tezzeret.leyline import SCHEMA_VERSION, pb


@dataclass(frozen=True)
class Prepared:
    """A request ready to be deduplicated and journaled."""

    request: pb.CompilationRequest  # resolved: blueprint inline, strategy and priority set
    digest: str
    name: str
    artifact_id: str
    decision: StrategyDecision

    @property
    def ir(self) -> pb.BlueprintIR:
        return self.request.blueprint

    @property
    def strategy(self) -> int:
        return self.request.strategy

    @property
    def priority(self) -> int:
        return self.request.priority


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:20]


def check_blueprint(ir: pb.BlueprintIR) -> None:
    """Static validation; raises `BlueprintInvalid` pointing at the node and field."""
    try:
        validate_blueprint(ir)
    except BlueprintRejected as exc:
        raise BlueprintInvalid(
            str(exc),
            code="BLUEPRINT_INVALID",
            reason=exc.code,
            node=getattr(exc, "node", None),
            field=getattr(exc, "field", None),
        ) from None
    meta = ir.metadata
    if meta.quarantine_only or meta.tier == pb.TIER_ADVERSARIAL:
        raise BlueprintInvalid(
            "adversarial / quarantine-only blueprints are never compiled into Urza",
            code="BLUEPRINT_INVALID",
            reason="QUARANTINED",
            field="metadata.tier",
        )


class Intake:
    def __init__(self, settings: Settings, lookup_blueprint: Callable[[str], pb.BlueprintIR | None]) -> None:
        self.settings = settings
        self._lookup = lookup_blueprint

    def resolve(self, request: pb.CompilationRequest) -> pb.BlueprintIR:
        if request.HasField("blueprint"):
            return request.blueprint
        if request.blueprint_id:
            ir = self._lookup(request.blueprint_id)
            if ir is None:
                raise BlueprintNotFound(
                    f"blueprint_id '{request.blueprint_id}' is not in the store; inline the blueprint "
                    "or submit it first",
                    field="blueprint_id",
                )
            return ir
        raise RequestInvalid(
            "the request carries neither `blueprint` (a BlueprintIR) nor `blueprint_id`",
            field="blueprint",
        )

    def prepare(
        self,
        request: pb.CompilationRequest,
        *,
        system_load: float,
        conservative_downgrade: Callable[[int], int] | None,
        default_priority: int = pb.PRIORITY_NORMAL,
    ) -> Prepared:
        ir = self.resolve(request)
        check_blueprint(ir)
        decision = select_strategy(
            self.settings,
            requested=request.strategy,
            metadata=ir.metadata,
            system_load=system_load,
            conservative_downgrade=conservative_downgrade,
        )
        return self.finish(request, ir, decision, default_priority)

    def finish(
        self, request: pb.CompilationRequest, ir: pb.BlueprintIR, decision: StrategyDecision, default_priority: int
    ) -> Prepared:
        resolved = pb.CompilationRequest()
        resolved.CopyFrom(request)
        resolved.schema_version = resolved.schema_version or SCHEMA_VERSION
        resolved.blueprint.CopyFrom(ir)
        resolved.strategy = decision.strategy
        prio = request.priority if request.priority != pb.PRIORITY_UNSPECIFIED else default_priority
        resolved.priority = normalize_priority(prio)
        if not resolved.request_id:
            resolved.request_id = "req-" + uuid.uuid4().hex[:20]
        digest = blueprint_digest(ir)
        resolved.blueprint_id = digest
        artifact_id = artifact_id_for(ir, decision.strategy)
        name = ir.metadata.name or digest[:16]
        return Prepared(resolved, digest, name, artifact_id, decision)

    def restore(self, request: pb.CompilationRequest) -> Prepared:
        """A journaled (already resolved) request, for recovery: no re-decision, no re-validation
        beyond what identity needs, so the job keeps its strategy and artifact id."""
        decision = StrategyDecision(request.strategy, "journaled")
        return self.finish(request, request.blueprint, decision, request.priority)


def describe(prepared: Prepared) -> dict[str, Any]:
    return {
        "blueprint_digest": prepared.digest,
        "blueprint_name": prepared.name,
        "artifact_id": prepared.artifact_id,
        "strategy": prepared.decision.name,
    }
