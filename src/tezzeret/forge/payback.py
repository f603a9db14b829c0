"""Payback: what compiling a blueprint at a tier is predicted to cost and save, and the tiers it skips.

Owns: the prediction of compile seconds, served training speed-up and eager step time for a
blueprint at a tier, from the attempts the store recorded for other blueprints at that tier on
this machine (`Store.attempt_history`); the payback arithmetic; the tier plan (which tiers a job
skips because their predicted payback is negative); and the attempt record built from a worker's
result. Must never compile or run torch, never skip EMERGENCY, and never skip a tier on a prior
(too little history): with fewer than `payback.min_history` attempts the ladder is left as it is.
Reads the store: call it from a thread.

How it predicts (explainable on purpose): the `payback.neighbours` recorded blueprints most like
this one, by a distance over log-scaled size features (nodes, parameters, FLOPs, activation bytes,
input elements) standardised over the history, plus how different their op sets are (Jaccard);
each quantity is their inverse-distance weighted geometric mean. A blueprint with the same
features recorded before (the same blueprint, usually) answers alone. Compile time (the ETA) comes
from the nearest however far; speed-up and step time only from neighbours within
`payback.max_distance`: with none that close the payback is unknown and the tier is built, so a new
kind of blueprint is measured instead of judged by unlike ones. The forge also builds every
`payback.explore_every`-th would-be skip (`Explorer`), so a skipped tier keeps being measured.

Payback of a tier, in seconds of machine time:

    payback_s = expected_steps * eager_step_s * (1 - 1 / served_speedup) - compile_s

`expected_steps` is `payback.expected_steps` (the training steps, all runs together, an artifact
is expected to serve); `served_speedup` is what the loaded artifact serves (never below 1: eager
is served where compiled code is slower), so a tier predicted to serve eager pays back nothing and
costs its compile time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from tezzeret import metrics
from tezzeret.artifact.target import cpu_model
from tezzeret.blueprint.features import BlueprintFeatures
from tezzeret.compile.task import EAGER_TRAIN_MS_DETAIL
from tezzeret.config import PaybackSettings
from tezzeret.leyline import Strategy, pb

# Compile seconds per tier when nothing was recorded yet (the README's measurements on the
# 2-core machine; only shown as an ETA, never used to skip a tier).
PRIOR_COMPILE_S: dict[Strategy, float] = {
    Strategy.EMERGENCY: 3.0,
    Strategy.FAST: 40.0,
    Strategy.STANDARD: 200.0,
    Strategy.AGGRESSIVE: 800.0,
}
# Op-set difference counts this much against the size features' (standardised) distance.
_OPS_WEIGHT = 1.0
# Keeps an exact match (distance 0) from taking an infinite weight.
_EPS = 0.05


@cache
def machine_id(target: str = "") -> str:
    """The compiling host as history is keyed by: architecture, CPU model and core count, and the
    target when it is not the host's CPU (a GPU's compiles and speed-ups are another history)."""
    host = f"{platform.machine()} {cpu_model()} x{os.cpu_count()}"
    return f"{host} {target}" if target else host


@dataclass(frozen=True)
class Neighbour:
    digest: str
    distance: float
    compile_s: float
    served_speedup: float | None
    name: str = ""


@dataclass(frozen=True)
class Prediction:
    strategy: Strategy
    compile_s: float
    served_speedup: float
    eager_step_ms: float | None
    basis: Literal["history", "prior"]
    history: int  # attempts at this tier on this machine that were considered
    expected_steps: int
    neighbours: tuple[Neighbour, ...] = ()
    # Neighbours within `payback.max_distance` (the ones the speed-up and step time come from).
    alike: int = 0

    @property
    def saved_s(self) -> float | None:
        """Training seconds the served artifact saves over `expected_steps` (None: step unknown)."""
        if self.eager_step_ms is None:
            return None
        return self.expected_steps * self.eager_step_ms / 1000.0 * (1.0 - 1.0 / max(1.0, self.served_speedup))

    @property
    def payback_s(self) -> float | None:
        saved = self.saved_s
        return None if saved is None else saved - self.compile_s

    @property
    def negative(self) -> bool:
        """Predicted from history to cost more than it saves (never on a prior or unknown step)."""
        payback = self.payback_s
        return self.basis == "history" and payback is not None and payback < 0.0

    def describe(self) -> str:
        like = ", ".join(n.name or n.digest[:12] for n in self.neighbours)
        saved = self.saved_s
        if self.basis == "history" and not self.alike and self.neighbours:
            return (f"predicted compile {self.compile_s:.0f} s; payback unknown: no recorded blueprint is alike "
                    f"(nearest {like} at distance {self.neighbours[0].distance:.2f})")
        return (
            f"predicted payback {self.payback_s:+.0f} s: saves {saved:.0f} s over {self.expected_steps:,} steps "
            f"at {self.served_speedup:.2f}x served, compiles in {self.compile_s:.0f} s "
            f"(from {self.history} recorded attempts; most like {like})"
            if saved is not None
            else f"predicted compile {self.compile_s:.0f} s ({self.basis})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "compile_s": round(self.compile_s, 2),
            "served_speedup": round(self.served_speedup, 3),
            "eager_step_ms": None if self.eager_step_ms is None else round(self.eager_step_ms, 4),
            "saved_s": None if self.saved_s is None else round(self.saved_s, 1),
            "payback_s": None if self.payback_s is None else round(self.payback_s, 1),
            "expected_steps": self.expected_steps,
            "basis": self.basis,
            "history": self.history,
            "alike": self.alike,
            "neighbours": [
                {"digest": n.digest, "name": n.name, "distance": round(n.distance, 3), "compile_s": round(n.compile_s, 2),
                 "served_speedup": n.served_speedup}
                for n in self.neighbours
            ],
        }


def _size_vector(f: BlueprintFeatures) -> list[float]:
    return [math.log1p(x) for x in (f.nodes, f.parameters, f.flops, f.activation_bytes, f.input_elements)]


def _jaccard(a: dict[str, int], b: dict[str, int]) -> float:
    union = set(a) | set(b)
    return 1.0 - len(set(a) & set(b)) / len(union) if union else 0.0


@dataclass(frozen=True)
class Example:
    """One recorded attempt, as the predictor uses it."""

    digest: str
    features: BlueprintFeatures
    compile_s: float
    served_speedup: float | None
    eager_step_ms: float | None


def _weighted_geomean(values: Sequence[tuple[float, float]]) -> float | None:
    """Geometric mean of (value, weight) pairs with value > 0; None when there are none."""
    usable = [(v, w) for v, w in values if v is not None and v > 0]
    if not usable:
        return None
    total = sum(w for _, w in usable)
    return math.exp(sum(w * math.log(v) for v, w in usable) / total)


def predict_from(
    examples: Sequence[Example], features: BlueprintFeatures, strategy: Strategy, settings: PaybackSettings
) -> Prediction:
    """The prediction for `features` at `strategy` from `examples` (attempts of other blueprints,
    or this one before, at that tier); a prior when there are fewer than `min_history`."""
    if len(examples) < settings.min_history:
        return Prediction(
            strategy, PRIOR_COMPILE_S[strategy], 1.0, None, "prior", len(examples), settings.expected_steps
        )
    vectors = [_size_vector(e.features) for e in examples]
    spread = [statistics.pstdev(column) or 1.0 for column in zip(*vectors, strict=True)]
    mine = _size_vector(features)
    scored: list[tuple[float, Example]] = []
    for example, vector in zip(examples, vectors, strict=True):
        size = math.sqrt(sum(((a - b) / s) ** 2 for a, b, s in zip(mine, vector, spread, strict=True)) / len(mine))
        scored.append((size + _OPS_WEIGHT * _jaccard(features.ops, example.features.ops), example))
    scored.sort(key=lambda pair: (pair[0], pair[1].digest))
    # The same blueprint compiled here before (identical features) answers for itself.
    nearest = [pair for pair in scored if pair[0] == 0.0] or scored[: settings.neighbours]
    weights = [(1.0 / (d + _EPS), e) for d, e in nearest]
    compile_s = _weighted_geomean([(e.compile_s, w) for w, e in weights]) or PRIOR_COMPILE_S[strategy]
    # What a tier buys differs by kind of blueprint far more than what it costs: only alike ones say.
    alike = [(w, e) for (w, e), (d, _) in zip(weights, nearest, strict=True) if d <= settings.max_distance]
    speedups = [(max(1.0, e.served_speedup), w) for w, e in alike if e.served_speedup is not None]
    speedup = _weighted_geomean(speedups) if speedups else None
    if strategy is Strategy.EMERGENCY:
        speedup = 1.0  # eager, by definition
    step = _weighted_geomean([(e.eager_step_ms, w) for w, e in alike if e.eager_step_ms is not None])
    return Prediction(
        strategy,
        compile_s,
        speedup if speedup is not None else 1.0,
        step,
        "history",
        len(examples),
        settings.expected_steps,
        tuple(Neighbour(e.digest, d, e.compile_s, e.served_speedup) for d, e in nearest),
        len(alike),
    )


def examples_from(history: Sequence[Any], *, exclude: str | None = None) -> list[Example]:
    """Successful attempts (`store.AttemptOutcome`s) as examples, the latest per blueprint; a
    failed or cut-off attempt's compile time says nothing about a full compile."""
    out: dict[str, Example] = {}
    for attempt in history:  # newest first
        if attempt.outcome != "SUCCESS" or attempt.digest == exclude or attempt.digest in out:
            continue
        try:
            feats = BlueprintFeatures.from_json(attempt.features)
        except (ValueError, TypeError):
            continue  # a record from a version whose features this one cannot read
        out[attempt.digest] = Example(
            attempt.digest, feats, float(attempt.compile_s), attempt.served_speedup, attempt.eager_step_ms
        )
    return list(out.values())


def predict(
    store: Any, features: BlueprintFeatures, strategy: Strategy, settings: PaybackSettings, target: str = ""
) -> Prediction:
    """The prediction for a blueprint at `strategy` for `target` ("": the host's CPU) from this
    machine's recorded history."""
    examples = examples_from(store.attempt_history(strategy.value, machine=machine_id(target)))
    prediction = predict_from(examples, features, strategy, settings)
    if not prediction.neighbours:
        return prediction
    named = []
    for n in prediction.neighbours:
        record = store.find_blueprint(n.digest)
        named.append(Neighbour(n.digest, n.distance, n.compile_s, n.served_speedup, record.name if record else ""))
    return dataclasses.replace(prediction, neighbours=tuple(named))


@dataclass
class Plan:
    """The tier a job is built at after payback, why tiers above it were skipped, and the
    prediction for the tier chosen."""

    strategy: Strategy
    prediction: Prediction
    skipped: list[Prediction] = field(default_factory=list)
    # Built although predicted not to pay back, to keep measuring it (`Explorer`).
    explored: bool = False

    @property
    def notes(self) -> list[str]:
        return [f"{p.strategy.value} skipped: {p.describe()}" for p in self.skipped]


def plan(
    store: Any, features: BlueprintFeatures, strategy: Strategy, settings: PaybackSettings,
    explore: Callable[[Strategy], bool] = lambda _: False, target: str = "",
) -> Plan:
    """Walk down from `strategy`, skipping each tier whose payback is predicted negative from
    history unless `explore(tier)` says to build it anyway; EMERGENCY is never skipped, and nothing
    is skipped when `payback.enabled` is off."""
    skipped: list[Prediction] = []
    while True:
        prediction = predict(store, features, strategy, settings, target)
        if strategy is Strategy.EMERGENCY or not settings.enabled or not prediction.negative:
            return Plan(strategy, prediction, skipped)
        if explore(strategy):
            return Plan(strategy, prediction, skipped, explored=True)
        skipped.append(prediction)
        strategy = strategy.down()


class Explorer:
    """Which would-be skips are built anyway: every `every`-th per tier (0: none). Without it a
    tier predicted not to pay back is never measured again, and the prediction can never change."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._seen: dict[Strategy, int] = {}
        self._lock = threading.Lock()  # plans run in worker threads, several at once

    def __call__(self, strategy: Strategy) -> bool:
        if self.every <= 0:
            return False
        with self._lock:
            self._seen[strategy] = self._seen.get(strategy, 0) + 1
            return self._seen[strategy] % self.every == 0


def served_speedup(manifest: pb.CompiledKernelArtifact) -> float | None:
    """The training speed-up an artifact serves: per training entry its measured speed-up where
    it serves compiled code, 1.0 where it serves eager; the median over them (None without any)."""
    values = [e.speedup_train if e.serve_compiled else 1.0 for e in manifest.entries if e.grad_enabled]
    return statistics.median(values) if values else None


def attempt_record(features: BlueprintFeatures, wres: pb.WorkerResult, target: str = "") -> dict[str, Any]:
    """The payback columns of one attempt for `target` (`Store.record_attempt` keyword arguments)."""
    record: dict[str, Any] = {"features": features.to_json(), "machine": machine_id(target)}
    if wres.compile_ms > 0:
        record["compile_s"] = wres.compile_ms / 1000.0
    if wres.outcome == pb.OUTCOME_SUCCESS and wres.HasField("manifest"):
        record["served_speedup"] = served_speedup(wres.manifest)
    for kv in wres.details:
        if kv.key == EAGER_TRAIN_MS_DETAIL:
            try:
                record["eager_step_ms"] = float(kv.value)
            except ValueError:
                pass
    return record


def observe(prediction: Prediction | None, strategy: Strategy, wres: pb.WorkerResult | None) -> None:
    """Measured against predicted compile time, for a job compiled at the tier it was predicted
    for from history (`tezzeret_compile_time_prediction_ratio`)."""
    if (
        prediction is None or wres is None or prediction.basis != "history" or prediction.strategy is not strategy
        or wres.outcome != pb.OUTCOME_SUCCESS or wres.compile_ms <= 0
    ):
        return
    metrics.COMPILE_PREDICTION_RATIO.labels(strategy=strategy.value).observe(wres.compile_ms / 1000.0 / prediction.compile_s)
