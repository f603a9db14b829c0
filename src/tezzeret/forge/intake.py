"""Intake: turn a submission from any source into a validated, identified, resolved `Job`.

Owns: resolving the blueprint (inline, or by digest from Urza), static validation with the
configured `blueprint` limits (once per submission: the summary carries the digest and shapes
downstream), mapping `BlueprintRejected` to `BlueprintInvalid` with its code, node and field, the
strategy decision, the artifact id, and the *resolved* request that gets journaled: blueprint
inlined, strategy, priority and request id fixed, so WAL recovery can rebuild the job without
consulting anything that may have changed. Must never journal, queue or compile (the service does
those, in that order).

Why the strategy is decided here rather than at dequeue: the artifact id contains the strategy,
and dedup (in flight, L1, L2) needs the artifact id before anything is journaled.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from tezzeret.artifact.errors import TargetUnavailable
from tezzeret.artifact.target import parse_target, target_string
from tezzeret.blueprint import BlueprintRejected, BlueprintSummary, validate
from tezzeret.blueprint.analysis import ADVERSARIAL_RISK
from tezzeret.compile.identity import artifact_id, host_target
from tezzeret.compile.tiers import tier_for
from tezzeret.config import Settings
from tezzeret.forge.errors import BlueprintInvalid, BlueprintNotFound, RequestInvalid, RiskRefused
from tezzeret.forge.jobs import Job
from tezzeret.forge.queue import normalize_priority
from tezzeret.forge.strategy import StrategyDecision, select_strategy
from tezzeret.leyline import SCHEMA_VERSION, Strategy, decode, pb


log = logging.getLogger(__name__)


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:20]


def buildable_targets(settings: Settings) -> list[str]:
    """The targets this forge's compile workers build for. With Ray, every target `ray.targets`
    maps (a node offering it may join later; meanwhile the job waits and says why). Locally, this
    host's CPU and, where NVML sees the GPU `resources.gpu_device` (else GPU 0) and torch is a
    CUDA build, that GPU. Reads NVML: call it once, at start. A `ray.targets` key that is not a
    target name (`cpu-<arch>-<isa>`, `cuda-sm<NN>-cu<NNN>`) places jobs but is never offered to
    requests: no artifact id can be computed for it."""
    if settings.sandbox.backend == "ray":
        named = []
        for key in sorted(settings.ray.targets):
            try:
                parse_target(key)
            except ValueError:
                log.warning("ray.targets key %r is not a target name: requests cannot ask for it", key)
                continue
            named.append(key)
        return named
    offered = [target_string(host_target())]
    try:
        offered.append(target_string(host_target("cuda", settings.resources.gpu_device or 0)))
    except TargetUnavailable:
        pass  # no GPU here, or a CPU build of torch: CPU artifacts only
    return offered


def check_blueprint(ir: pb.BlueprintIR, settings: Settings) -> BlueprintSummary:
    """Static validation with the configured limits; raises `BlueprintInvalid` pointing at the
    node and field. Returns the summary (digest, shapes, costs) for everything downstream."""
    try:
        summary = validate(ir, settings.blueprint.limits())
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
    return summary


# Karn's risk bands (upstream §5): above 0.8 is adversarial (never compiled into Urza; the
# validator refuses such metadata too); in a degraded state (conservative mode) only up to 0.3.
CONSERVATIVE_MAX_RISK = 0.3


def check_risk(request: pb.CompilationRequest, ir: pb.BlueprintIR, *, conservative: bool) -> None:
    """The request's `options.risk_level` (or the blueprint's own `risk`, whichever is higher)."""
    risk = max(request.options.risk_level, ir.metadata.risk)
    if risk > ADVERSARIAL_RISK:
        raise BlueprintInvalid(
            f"risk {risk:.2f} is in the adversarial band (> {ADVERSARIAL_RISK}); such blueprints are "
            "never compiled into Urza", code="BLUEPRINT_INVALID", reason="ADVERSARIAL_RISK",
            field="options.risk_level",
        )
    if conservative and risk > CONSERVATIVE_MAX_RISK:
        raise RiskRefused(
            f"risk {risk:.2f}: while conservative mode is on only blueprints of risk <= "
            f"{CONSERVATIVE_MAX_RISK} are compiled; retry once it ends (see /health/tezzeret)",
            field="options.risk_level",
        )


class Intake:
    def __init__(
        self,
        settings: Settings,
        lookup_blueprint: Callable[[str], pb.BlueprintIR | None],
        buildable_targets: Callable[[], list[str]] | None = None,
    ) -> None:
        self.settings = settings
        self._lookup = lookup_blueprint
        # The targets this forge's executors can build for (the local host's, or a cluster's).
        self._targets = buildable_targets or (lambda: [target_string(host_target())])

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

    def check_target(self, request: pb.CompilationRequest) -> str:
        """The target the request's artifact is built for: "" (this host's CPU) when it names none
        or this host's CPU, else the offered target it names in full (`cuda` or `cuda-sm90` becomes
        `cuda-sm90-cu130`). Raises `RequestInvalid` for a target this forge cannot build."""
        wanted = request.options.target_hardware.strip()
        if not wanted:
            return ""
        offered = self._targets()
        if wanted == "cuda":
            name = "cuda"
        else:
            try:
                spec = parse_target(wanted)
            except ValueError as exc:
                raise RequestInvalid(str(exc), field="options.target_hardware") from None
            name = target_string(spec) if spec.device == "cpu" or spec.cuda_version else wanted
        match = next((t for t in offered if t == name or t.startswith(name + "-")), None)
        if match is None:
            raise RequestInvalid(
                f"options.target_hardware={wanted!r}: this forge builds for {', '.join(offered)} only; "
                "send the request to a forge with such compile nodes, or leave the field empty",
                field="options.target_hardware",
            )
        return "" if match == target_string(host_target()) else match

    def prepare(
        self,
        request: pb.CompilationRequest,
        *,
        system_load: float,
        conservative_downgrade: Callable[[Strategy], Strategy] | None,
        source: str = "api",
        default_priority: int = pb.PRIORITY_NORMAL,
        conservative: bool = False,
    ) -> Job:
        """Validate and identify one submission; the job is not yet admitted (nothing durable)."""
        ir = self.resolve(request)
        summary = check_blueprint(ir, self.settings)
        target = self.check_target(request)
        check_risk(request, ir, conservative=conservative)
        decision = select_strategy(
            self.settings,
            requested=request.strategy or None,
            metadata=ir.metadata,
            system_load=system_load,
            conservative_downgrade=conservative_downgrade,
        )
        resolved = pb.CompilationRequest()
        resolved.CopyFrom(request)
        resolved.schema_version = resolved.schema_version or SCHEMA_VERSION
        resolved.blueprint.CopyFrom(ir)
        resolved.blueprint_id = summary.digest
        resolved.strategy = decision.strategy.pb
        if resolved.options.target_hardware != target:
            resolved.options.target_hardware = target
        prio = request.priority if request.priority != pb.PRIORITY_UNSPECIFIED else default_priority
        resolved.priority = normalize_priority(prio)
        if not resolved.request_id:
            resolved.request_id = "req-" + uuid.uuid4().hex[:20]
        return self._job(resolved, summary.digest, decision, source, summary)

    def retier(self, job: Job, tier: Strategy, why: str) -> None:
        """Admit `job` at `tier` instead of the one decided (history says the decided one fails for
        this blueprint); the job remembers what was asked and why."""
        job.requested_strategy = job.requested_strategy or job.strategy
        job.request.strategy = tier.pb
        job.artifact_id = artifact_id(job.digest, tier_for(tier), job.target_spec)
        job.strategy_reason = f"{job.strategy_reason}; {why}"
        job.fallback_notes = (*job.fallback_notes, why)

    def restore(self, record: pb.JobRecord) -> Job:
        """A journaled job, for recovery: nothing is re-decided or re-validated, so the job keeps
        its id, artifact id, strategy, priority, request, source and submission time."""
        request = decode(pb.CompilationRequest, record.request)
        decision = StrategyDecision(Strategy.parse(request.strategy), record.strategy_reason or "journaled")
        if not request.blueprint_id:
            raise RequestInvalid("a journaled request lacks its resolved blueprint_id", field="blueprint_id")
        job = self._job(request, request.blueprint_id, decision, record.source or "recovered", None, record.job_id)
        job.artifact_id = record.artifact_id or job.artifact_id
        job.sequence = int(record.sequence)
        if record.at_ns:
            job.submitted_at = record.at_ns / 1e9
        return job

    def _job(
        self,
        request: pb.CompilationRequest,
        digest: str,
        decision: StrategyDecision,
        source: str,
        summary: BlueprintSummary | None,
        job_id: str | None = None,
    ) -> Job:
        job = Job(
            job_id=job_id or new_job_id(),
            request=request,
            artifact_id="",
            digest=digest,
            name=request.blueprint.metadata.name or digest[:16],
            strategy_reason=decision.reason,
            source=source,
            summary=summary,
        )
        job.artifact_id = artifact_id(digest, tier_for(decision.strategy), job.target_spec)
        return job
