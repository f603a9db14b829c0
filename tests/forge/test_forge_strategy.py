"""Strategy selection per upstream §3.4, the aggressive switch and the conservative cap."""

from __future__ import annotations

import pytest
from settings import settings_for

from tezzeret.forge.strategy import select_strategy
from tezzeret.leyline import Strategy, pb


def meta(interest: float = 0.0, value: float = 0.0) -> pb.BlueprintMetadata:
    return pb.BlueprintMetadata(tamiyo_interest=interest, value=value)


@pytest.mark.parametrize(
    ("interest", "load", "expected"),
    [
        (0.9, 0.1, "AGGRESSIVE"),
        (0.9, 0.3, "STANDARD"),
        (0.2, 0.49, "STANDARD"),
        (0.2, 0.5, "FAST"),
        (0.7, 0.0, "STANDARD"),  # the threshold itself is not "above"
    ],
)
def test_policy_table(tmp_path, interest: float, load: float, expected: str) -> None:
    s = settings_for(tmp_path)
    d = select_strategy(s, metadata=meta(interest), system_load=load)
    assert d.name == expected, d.reason


def test_value_counts_as_interest_and_aggressive_switch(tmp_path) -> None:
    s = settings_for(tmp_path)
    assert select_strategy(s, metadata=meta(value=0.95)).name == "AGGRESSIVE"
    off = settings_for(tmp_path, compilation={"enable_aggressive_pipeline": False})
    d = select_strategy(off, metadata=meta(0.95))
    assert d.name == "STANDARD" and d.capped


def test_explicit_request_wins_but_conservative_caps(tmp_path) -> None:
    s = settings_for(tmp_path)
    assert select_strategy(s, requested=pb.STRATEGY_FAST, metadata=meta(0.99)).name == "FAST"
    assert select_strategy(s, requested=pb.STRATEGY_EMERGENCY).name == "EMERGENCY"
    d = select_strategy(
        s, requested=pb.STRATEGY_AGGRESSIVE, conservative_downgrade=Strategy.down
    )
    assert d.name == "STANDARD" and d.capped and "conservative" in d.reason


def test_conversions() -> None:
    assert Strategy.parse("fast").pb == pb.STRATEGY_FAST
    assert Strategy.parse("STRATEGY_STANDARD").pb == pb.STRATEGY_STANDARD
    assert Strategy.parse(pb.STRATEGY_AGGRESSIVE).value == "AGGRESSIVE"
    assert Strategy.parse(pb.STRATEGY_EMERGENCY).down().pb == pb.STRATEGY_EMERGENCY
    with pytest.raises(ValueError):
        Strategy.parse("TURBO")
    with pytest.raises(ValueError):  # UNSPECIFIED is not a tier: nothing maps silently to one
        Strategy.parse(pb.STRATEGY_UNSPECIFIED)
