"""Tiers, entry plans and artifact identity: no torch compile involved."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from tz_compile_support import TINY_MLP, ir_of

from tezzeret.compile import TIERS, tier_for
from tezzeret.leyline import UnknownStrategy
from tezzeret.compile.identity import artifact_id_for
from tezzeret.compile.tiers import batch_sizes_for
from tezzeret.leyline import pb


def test_every_strategy_has_a_tier_with_the_seed_budget() -> None:
    budgets = {t.name: t.budget_s for t in TIERS}
    assert budgets == {"emergency": 10.0, "fast": 65.0, "standard": 250.0, "aggressive": 960.0}
    assert tier_for(pb.STRATEGY_FAST).name == "fast"
    assert tier_for("STRATEGY_AGGRESSIVE").name == "aggressive"
    assert tier_for("Standard").name == "standard"
    assert not tier_for("emergency").use_inductor
    assert all(t.use_inductor for t in TIERS if t.name != "emergency")


@pytest.mark.parametrize("bad", ["turbo", "", pb.STRATEGY_UNSPECIFIED, 99])
def test_unknown_strategy_is_a_typed_error(bad: object) -> None:
    with pytest.raises(UnknownStrategy) as err:
        tier_for(bad)  # type: ignore[arg-type]
    assert "emergency, fast, standard, aggressive" in str(err.value).lower()
    assert err.value.code == "COMPILE_UNKNOWN_STRATEGY"


def test_batch_plans_stay_inside_the_declared_range() -> None:
    fast, standard, aggressive = tier_for("fast"), tier_for("standard"), tier_for("aggressive")
    assert batch_sizes_for(fast, 8, 1, 64) == [8]
    assert batch_sizes_for(standard, 8, 1, 64) == [1, 8, 32]
    assert batch_sizes_for(standard, 12, 4, 16) == [8, 12]
    assert batch_sizes_for(aggressive, 8, 3, 20) == [3, 4, 8, 16, 20]
    assert batch_sizes_for(fast, 8, 8, 8) == [8]


def test_aggressive_tunes_and_fast_does_not() -> None:
    assert tier_for("aggressive").inductor_options["max_autotune"] is True
    assert tier_for("aggressive").inductor_options["coordinate_descent_tuning"] is True
    assert tier_for("fast").inductor_options["max_autotune"] is False
    for tier in TIERS[1:]:
        assert tier.inductor_options["use_aoti"] is True
        assert tier.inductor_options["fallback_random"] is True


def test_inductor_tiers_turn_layout_optimisation_off_and_old_ids_are_not_reused() -> None:
    from dataclasses import replace
    from types import MappingProxyType

    from tezzeret.compile.identity import artifact_id

    for tier in TIERS:
        if tier.use_inductor:
            assert tier.inductor_options["layout_optimization"] is False, tier.name
            assert tier.version == "2", tier.name
    # The settings that produced wrong conv gradients hash to another toolchain, so another id.
    fast = tier_for("fast")
    old = replace(fast, version="1", inductor_options=MappingProxyType(
        {k: v for k, v in fast.inductor_options.items() if k != "layout_optimization"}))
    assert artifact_id("ab" * 32, old) != artifact_id("ab" * 32, fast)
    assert tier_for(old) is old


def test_artifact_id_shape_and_what_changes_it() -> None:
    ir = ir_of(TINY_MLP)
    ids = {s: artifact_id_for(ir, s) for s in ("emergency", "fast", "standard", "aggressive")}
    for strategy, aid in ids.items():
        assert re.fullmatch(rf"[0-9a-f]{{16}}-cpu-[a-z0-9_]+-avx2-{strategy}-[0-9a-f]{{8}}", aid), aid
    assert len(set(ids.values())) == 4
    assert artifact_id_for(ir, "fast") == artifact_id_for(ir_of(TINY_MLP), pb.STRATEGY_FAST)
    other = json.loads(json.dumps(TINY_MLP))
    other["nodes"][1]["attrs"][0]["i"] = "48"
    assert artifact_id_for(ir_of(other), "fast")[:16] != ids["fast"][:16]
    # Node names do not change identity (the digest renames nodes canonically).
    renamed = json.loads(json.dumps(TINY_MLP).replace('"fc1"', '"first"'))
    assert artifact_id_for(ir_of(renamed), "fast") == ids["fast"]


def test_artifact_id_needs_no_torch() -> None:
    code = (
        "import json, sys\n"
        "from tezzeret.blueprint import load_blueprint\n"
        "from tezzeret.compile import artifact_id_for\n"
        "from tezzeret.compile.compile import toolchain_for_tier  # the forge's import\n"
        f"ir = load_blueprint({json.dumps(json.dumps(TINY_MLP))})\n"
        "print(artifact_id_for(ir, 'fast'))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    aid, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    assert aid == artifact_id_for(ir_of(TINY_MLP), "fast")


def test_inductor_tiers_plan_one_dynamic_entry_per_grad_mode_first() -> None:
    from tezzeret.compile.compile import plan_entries

    ir = ir_of(TINY_MLP)  # batch in [1, 64], example 8
    fast = plan_entries(ir, tier_for("fast"))
    assert [(s.key, s.dynamic, s.role) for s in fast] == [
        ("b1-64-train", True, "entry"),  # serves every batch in the range
        ("b8-train", False, "fallback"),  # built only if the dynamic entry fails
    ]
    standard = plan_entries(ir, tier_for("standard"))
    assert [s.key for s in standard[:2]] == ["b1-64-train", "b1-64-nograd"]
    assert {(s.key, s.role) for s in standard[2:]} == {
        (f"b{b}-{m}", "rival") for b in (1, 8, 32) for m in ("train", "nograd")
    }
    # Explicit sizes ask for static entries; EMERGENCY never compiles; a static IR has one size.
    assert [(s.key, s.dynamic) for s in plan_entries(ir, tier_for("fast"), [4, 8])] == [
        ("b4-train", False), ("b8-train", False)
    ]
    assert [s.key for s in plan_entries(ir, tier_for("emergency"))] == ["b8-train"]
    static = json.loads(json.dumps(TINY_MLP))
    static["inputs"][0]["dims"][0] = {"size": "8"}
    assert [s.key for s in plan_entries(ir_of(static), tier_for("fast"))] == ["b8-train"]


def test_dynamic_entries_are_verified_where_no_static_tier_builds() -> None:
    from tezzeret.compile.compile import unplanned_batch, verification_batches

    # Static tiers build 1, 2, 4, 8, 16, 32, 64 here; 33 is the free size nearest the middle.
    assert verification_batches(ir_of(TINY_MLP)) == [1, 8, 33, 64]
    assert unplanned_batch(8, 2, 9) == 6
    assert unplanned_batch(1, 1, 2) is None  # every size is some tier's static entry
    assert {t.name: t.settings()["batch_mode"] for t in TIERS} == {
        "emergency": "static", "fast": "dynamic", "standard": "compare", "aggressive": "compare"
    }


def test_a_static_entry_beside_a_dynamic_one_must_be_measurably_faster() -> None:
    # The keep-or-drop rule on real runners, no compile: eager stands in for a verified entry,
    # and a runner doing five more forwards for a much slower one.
    from tezzeret.blueprint import build_module
    from tezzeret.compile import verify
    from tezzeret.compile.compile import EntrySpec, _Built, _inputs_for, _judge_static

    ir = ir_of(TINY_MLP)
    args = _inputs_for(ir, 8)

    def slow(module, inputs):  # type: ignore[no-untyped-def]
        for _ in range(5):
            module(*inputs)
        return module(*inputs)

    def built(key: str, runner: verify.Runner, verified: bool = True) -> _Built:
        return _Built(pb.ArtifactEntry(key=key, verified=verified, drop_reason="" if verified else "parity"), b"", "", runner)

    spec = EntrySpec(8, True, role="rival")
    same = built("b8-train", verify.eager_runner)
    _judge_static(same, spec, built("b1-64-train", verify.eager_runner), lambda: build_module(ir), args)
    assert not same.record.verified
    assert "not measurably faster than the dynamic entry" in same.record.drop_reason and "b1-64-train" in same.record.drop_reason
    assert "paired rounds" in same.record.drop_reason
    faster = built("b8-train", verify.eager_runner)
    _judge_static(faster, spec, built("b1-64-train", slow), lambda: build_module(ir), args)
    assert faster.record.verified and faster.record.notes.startswith("kept: faster than the dynamic entry")
    fallback = built("b8-train", verify.eager_runner)
    _judge_static(fallback, EntrySpec(8, True, role="fallback"), built("b1-64-train", None, verified=False),
                  lambda: build_module(ir), args)
    assert fallback.record.verified and "b1-64-train was dropped (parity)" in fallback.record.notes
