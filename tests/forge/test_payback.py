"""The payback predictor on its own: neighbours, priors, the payback arithmetic and the tier plan,
over a real store's recorded history (no compiles)."""

from __future__ import annotations

from pathlib import Path

import pytest
from forge_helpers import blueprint

from tezzeret.blueprint import digest
from tezzeret.blueprint.features import BlueprintFeatures, features
from tezzeret.config import PaybackSettings
from tezzeret.forge import payback
from tezzeret.leyline import Strategy, encode
from tezzeret.store import Store

NAMES = ("mlp_512", "swiglu_mlp_512", "residual_mlp_256", "mhsa_4h_256", "conv_bn_relu_32x64", "moe_top2_256")


def _example(name: str, compile_s: float, speedup: float | None = 1.2, step_ms: float | None = 2.0) -> payback.Example:
    ir = blueprint(name)
    return payback.Example(digest(ir), features(ir), compile_s, speedup, step_ms)


def test_features_round_trip_through_json() -> None:
    f = features(blueprint("moe_top2_256"))
    assert BlueprintFeatures.from_json(f.to_json()) == f
    assert f.ops == {"add": 1, "layer_norm": 1, "moe": 1} and f.nodes == 3 and f.batch_max == 64
    assert f.parameters > 0 and f.flops > 0 and f.input_elements == 8 * 32 * 256


def test_too_little_history_gives_the_prior_which_never_counts_as_negative() -> None:
    settings = PaybackSettings(min_history=3)
    examples = [_example(n, 100.0, speedup=1.0) for n in NAMES[:2]]
    p = payback.predict_from(examples, features(blueprint("lora_adapter_1024")), Strategy.STANDARD, settings)
    assert (p.basis, p.history, p.compile_s, p.served_speedup) == ("prior", 2, payback.PRIOR_COMPILE_S[Strategy.STANDARD], 1.0)
    assert p.payback_s is None and not p.negative


def test_the_nearest_blueprints_decide_and_an_identical_one_answers_alone() -> None:
    settings = PaybackSettings(min_history=3, neighbours=2)
    # The MLPs compile in about 10 s, the others in about 100 s.
    examples = [_example(n, 10.0 if "mlp" in n else 100.0) for n in NAMES]
    p = payback.predict_from(examples, features(blueprint("rmsnorm_gated_mlp_768")), Strategy.FAST, settings)
    assert p.basis == "history" and len(p.neighbours) == 2
    assert p.compile_s < 40.0, p.neighbours
    same = payback.predict_from(examples, features(blueprint("mhsa_4h_256")), Strategy.FAST, settings)
    assert [n.digest for n in same.neighbours] == [digest(blueprint("mhsa_4h_256"))]
    assert same.compile_s == pytest.approx(100.0)


def test_payback_is_the_training_time_saved_over_the_expected_steps_minus_the_compile_time() -> None:
    p = payback.Prediction(Strategy.FAST, 30.0, 1.25, 4.0, "history", 9, 100_000)
    assert p.saved_s == pytest.approx(100_000 * 0.004 * (1 - 1 / 1.25))  # 80 s
    assert p.payback_s == pytest.approx(50.0) and not p.negative
    eager = payback.Prediction(Strategy.FAST, 30.0, 1.0, 4.0, "history", 9, 100_000)
    assert eager.saved_s == 0.0 and eager.payback_s == -30.0 and eager.negative
    # A predicted slow-down is served eager: it saves nothing, it does not lose training time.
    slower = payback.Prediction(Strategy.FAST, 30.0, 0.8, 4.0, "history", 9, 100_000)
    assert slower.saved_s == 0.0
    unknown = payback.Prediction(Strategy.FAST, 30.0, 1.5, None, "history", 9, 100_000)
    assert unknown.payback_s is None and not unknown.negative


def _store(tmp_path: Path, strategy: str, *, compile_s: float, speedup: float) -> Store:
    store = Store.open(tmp_path / "store")
    for name in NAMES:
        ir = blueprint(name)
        store.put_blueprint(encode(ir), digest(ir), name=name, source="t")
        store.record_attempt(digest(ir), strategy, "SUCCESS", features=features(ir).to_json(),
                             machine=payback.machine_id(), compile_s=compile_s, served_speedup=speedup, eager_step_ms=1.0)
    return store


def test_the_plan_walks_down_past_negative_tiers_and_never_skips_emergency(tmp_path: Path) -> None:
    store = _store(tmp_path, "STANDARD", compile_s=300.0, speedup=1.0)
    for name in NAMES:  # FAST pays back: 1e6 steps * 1 ms * (1 - 1/1.5) = 333 s against 20 s
        ir = blueprint(name)
        store.record_attempt(digest(ir), "FAST", "SUCCESS", features=features(ir).to_json(),
                             machine=payback.machine_id(), compile_s=20.0, served_speedup=1.5, eager_step_ms=1.0)
        store.record_attempt(digest(ir), "EMERGENCY", "SUCCESS", features=features(ir).to_json(),
                             machine=payback.machine_id(), compile_s=50.0, served_speedup=1.0, eager_step_ms=1.0)
    settings = PaybackSettings(min_history=3)
    f = features(blueprint("mhsa_8h_512"))  # alike mhsa_4h_256
    plan = payback.plan(store, f, Strategy.STANDARD, settings)
    assert plan.strategy is Strategy.FAST and [p.strategy for p in plan.skipped] == [Strategy.STANDARD]
    assert plan.notes[0].startswith("STANDARD skipped: predicted payback -300 s")
    assert all(n.name in NAMES for n in plan.skipped[0].neighbours)
    assert plan.prediction.strategy is Strategy.FAST and plan.prediction.payback_s > 0
    emergency = payback.plan(store, f, Strategy.EMERGENCY, settings)
    assert emergency.prediction.negative and emergency.strategy is Strategy.EMERGENCY and not emergency.skipped
    off = payback.plan(store, f, Strategy.STANDARD, PaybackSettings(min_history=3, enabled=False))
    assert off.strategy is Strategy.STANDARD and off.prediction.negative and not off.skipped
    # Another machine's history does not count here.
    other = Store.open(tmp_path / "other")
    for name in NAMES:
        ir = blueprint(name)
        other.put_blueprint(encode(ir), digest(ir), name=name, source="t")
        other.record_attempt(digest(ir), "STANDARD", "SUCCESS", features=features(ir).to_json(), machine="elsewhere",
                             compile_s=300.0, served_speedup=1.0, eager_step_ms=1.0)
    assert payback.plan(other, f, Strategy.STANDARD, settings).strategy is Strategy.STANDARD
    # Every second would-be skip is built anyway, per tier.
    explore = payback.Explorer(2)
    first, second = (payback.plan(store, f, Strategy.STANDARD, settings, explore) for _ in range(2))
    assert (first.strategy, first.explored, second.strategy, second.explored) == (
        Strategy.FAST, False, Strategy.STANDARD, True)
    assert not second.skipped and second.prediction.negative
    store.close()
    other.close()


def test_only_alike_blueprints_say_what_a_tier_buys() -> None:
    settings = PaybackSettings(min_history=3)
    # Every recorded blueprint served eager: a tier that compiles for 100 s never pays back there.
    examples = [_example(n, 100.0, speedup=1.0, step_ms=5.0) for n in NAMES]
    alike = payback.predict_from(examples, features(blueprint("mhsa_8h_512")), Strategy.FAST, settings)
    assert alike.alike >= 1 and alike.neighbours[0].distance <= settings.max_distance and alike.negative
    # Nothing recorded is like a LoRA adapter: its compile time is still predicted (the ETA), but
    # what FAST would buy it is unknown, so FAST is built and measured rather than skipped.
    unlike = payback.predict_from(examples, features(blueprint("lora_adapter_1024")), Strategy.FAST, settings)
    assert unlike.basis == "history" and unlike.alike == 0
    assert unlike.neighbours[0].distance > settings.max_distance
    assert unlike.compile_s == pytest.approx(100.0)
    assert unlike.payback_s is None and not unlike.negative
    assert "no recorded blueprint is alike" in unlike.describe()
    assert unlike.to_dict()["alike"] == 0
    # A wider cap trusts them again.
    wide = PaybackSettings(min_history=3, max_distance=10.0)
    assert payback.predict_from(examples, features(blueprint("lora_adapter_1024")), Strategy.FAST, wide).negative


def test_the_explorer_builds_every_nth_would_be_skip_per_tier_and_none_when_off() -> None:
    explore = payback.Explorer(3)
    assert [explore(Strategy.FAST) for _ in range(6)] == [False, False, True, False, False, True]
    assert [explore(Strategy.STANDARD) for _ in range(3)] == [False, False, True]
    off = payback.Explorer(0)
    assert not any(off(Strategy.FAST) for _ in range(20))
