"""Conservative mode: the seed's failure-mode table, row by row, over simulated time, plus its
effects, its exit rule with hysteresis, and its configuration."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from resilience_helpers import metric
from settings import settings_for

from tezzeret.config import Settings, Strategy
from tezzeret.resilience import (
    BreakerRegistry,
    BreakerState,
    ConservativeModeController,
    LoadSample,
    ManualClock,
    ModeEvent,
    ResilienceConfigError,
    TriggerReason,
    UnknownTriggerError,
)

CALM = LoadSample(cpu_percent=30.0, memory_percent=40.0, rss_gb=0.5, gpu_utilization_percent=5.0, gpu_memory_percent=30.0)


def load(**kw: float | None) -> LoadSample:
    values = {**CALM.__dict__, **kw}
    return LoadSample(**values)  # type: ignore[arg-type]


def run_for(ctl: ConservativeModeController, clock: ManualClock, seconds: float, sample: LoadSample, every: float = 10.0) -> None:
    """Feed `sample` every `every` simulated seconds for `seconds`, as the monitor would."""
    steps = int(seconds / every)
    for _ in range(steps):
        clock.advance(every)
        ctl.observe(sample)


def triggers(reason: str) -> float:
    return metric("tezzeret_conservative_mode_triggers_total", trigger_reason=reason)


# -- the seed's failure-mode table ---------------------------------------------------------
def test_row_compilation_timeout_enters_conservative_mode(controller: ConservativeModeController, caplog: pytest.LogCaptureFixture) -> None:
    before = triggers("compilation_timeout")
    with caplog.at_level(logging.WARNING, logger="tezzeret.resilience.conservative"):
        assert controller.trigger("compilation_timeout", "bp 3f2a STANDARD took 260000 ms > 250000 ms")
    assert controller.active
    assert metric("tezzeret_conservative_mode_active") == 1.0
    assert triggers("compilation_timeout") == before + 1
    assert "conservative mode ON: compilation_timeout" in caplog.text
    assert "260000 ms" in caplog.text
    limits = controller.effective()
    assert limits.conservative and limits.reasons == ("compilation_timeout",)
    assert limits.max_concurrent_jobs == 1
    assert limits.timeout_ms(Strategy.STANDARD) == 375_000


def test_row_gpu_memory_above_80_percent_drops_concurrency_to_1(tmp_path: Path, clock: ManualClock) -> None:
    # Even with conservative concurrency configured at 2, GPU memory pressure forces 1.
    s = settings_for(
        tmp_path,
        compilation={"max_concurrent_jobs": 4},
        conservative_mode={"settings": {"max_concurrent_jobs": 2}},
        sandbox={"training_reserved_cores": 0},  # the configured 4 stands on any host
    )
    ctl = ConservativeModeController(s, BreakerRegistry.from_settings(s, clock), clock)
    assert ctl.effective().max_concurrent_jobs == 4
    ctl.observe(load(gpu_memory_percent=79.9))
    assert not ctl.active
    ctl.observe(load(gpu_memory_percent=85.0))
    assert ctl.active
    assert ctl.reasons == ("gpu_memory_pressure",)
    assert ctl.effective().max_concurrent_jobs == 1


def test_row_breaker_open_enters_conservative_mode(controller: ConservativeModeController, breakers: BreakerRegistry) -> None:
    before = triggers("circuit_breaker_open")
    for _ in range(3):
        breakers["kernel_validation"].record_failure("parity mismatch 3e-2 > 1e-4")
    assert breakers["kernel_validation"].state is BreakerState.OPEN
    assert controller.active
    assert controller.reasons == ("circuit_breaker_open",)
    assert triggers("circuit_breaker_open") == before + 1
    snap = controller.snapshot()
    assert "kernel_validation" in snap["reasons"][0]["detail"]


def test_row_violation_while_open_keeps_conservative_mode_and_restarts_quiet(
    controller: ConservativeModeController, breakers: BreakerRegistry, clock: ManualClock
) -> None:
    gm = breakers["gpu_memory"]
    for _ in range(3):
        gm.check_condition(False, "available GPU memory below estimate", 0.5)
    assert controller.active
    before = triggers("circuit_breaker_open")
    assert gm.check_condition(False, "still short", 0.25) is False
    assert triggers("circuit_breaker_open") == before + 1


def test_row_torch_crash_requests_cpu_only(controller: ConservativeModeController) -> None:
    assert not controller.effective().cpu_only_requested
    controller.trigger(TriggerReason.TORCH_CRASH, "worker 4242 died with SIGSEGV")
    limits = controller.effective()
    assert limits.conservative
    assert limits.cpu_only_requested


def test_row_recovery_back_to_normal_after_the_quiet_period(
    controller: ConservativeModeController, breakers: BreakerRegistry, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[ModeEvent] = []
    controller.add_listener(events.append)
    controller.trigger("torch_crash", "SIGSEGV")
    for _ in range(3):
        breakers["store"].record_failure("database is locked")
    assert controller.active
    # Breaker still OPEN: however calm the load, the quiet period cannot start.
    run_for(controller, clock, 25, CALM)
    assert controller.active and controller.snapshot()["quiet_for_s"] is None
    clock.advance(10)  # 35 s since the last failure: HALF_OPEN
    for _ in range(3):
        breakers["store"].record_success()
    assert breakers.all_closed()
    run_for(controller, clock, 290, CALM)
    assert controller.active, "5 minutes have not yet passed since the breakers closed"
    with caplog.at_level(logging.WARNING, logger="tezzeret.resilience.conservative"):
        run_for(controller, clock, 20, CALM)
    assert not controller.active
    assert metric("tezzeret_conservative_mode_active") == 0.0
    assert "conservative mode OFF" in caplog.text and "torch_crash" in caplog.text
    limits = controller.effective()
    assert not limits.conservative and limits.reasons == ()
    assert limits.max_concurrent_jobs == 2 and limits.aggressive_allowed and not limits.cpu_only_requested
    assert limits.downgrade(Strategy.AGGRESSIVE) is Strategy.AGGRESSIVE
    assert [e.kind for e in events] == ["enter", "trigger", "exit"]
    assert events[-1].reasons == ("torch_crash", "circuit_breaker_open")
    assert events[-1].duration_s is not None and events[-1].duration_s >= 300


# -- effects -------------------------------------------------------------------------------
def test_effects_of_conservative_mode(controller: ConservativeModeController) -> None:
    normal = controller.effective()
    assert (normal.max_concurrent_jobs, normal.timeout_multiplier, normal.cache_budget_factor) == (2, 1.0, 1.0)
    assert normal.gpu_utilization_limit == 0.25
    assert normal.idle_recompilation_allowed
    assert [normal.downgrade(s) for s in Strategy] == list(Strategy)
    controller.trigger("memory_pressure", "host RAM 91%")
    c = controller.effective()
    assert c.max_concurrent_jobs == 1
    assert c.gpu_utilization_limit == 0.15
    assert c.timeout_multiplier == 1.5
    assert c.cache_budget_factor == 0.5
    assert not c.aggressive_allowed and not c.idle_recompilation_allowed
    assert [c.downgrade(s) for s in (Strategy.AGGRESSIVE, Strategy.STANDARD, Strategy.FAST, Strategy.EMERGENCY)] == [
        Strategy.STANDARD, Strategy.FAST, Strategy.EMERGENCY, Strategy.EMERGENCY,
    ]
    assert c.downgrade("STANDARD") is Strategy.FAST
    assert c.timeout_ms("EMERGENCY") == 15_000


def test_aggressive_disabled_in_config_is_never_returned(tmp_path: Path, clock: ManualClock) -> None:
    s = settings_for(tmp_path, compilation={"enable_aggressive_pipeline": False})
    ctl = ConservativeModeController(s, BreakerRegistry.from_settings(s, clock), clock)
    assert ctl.effective().downgrade(Strategy.AGGRESSIVE) is Strategy.STANDARD


# -- load triggers and hysteresis ----------------------------------------------------------
def test_gpu_utilisation_must_be_sustained_for_the_configured_duration(controller: ConservativeModeController, clock: ManualClock) -> None:
    run_for(controller, clock, 290, load(gpu_utilization_percent=35.0))
    assert not controller.active
    controller.observe(load(gpu_utilization_percent=19.0))  # one dip restarts the 5 minutes
    run_for(controller, clock, 290, load(gpu_utilization_percent=35.0))
    assert not controller.active
    run_for(controller, clock, 20, load(gpu_utilization_percent=35.0))
    assert controller.active
    assert controller.reasons == ("gpu_utilization_sustained",)


def test_unavailable_gpu_never_triggers(controller: ConservativeModeController, clock: ManualClock) -> None:
    run_for(controller, clock, 900, load(gpu_utilization_percent=None, gpu_memory_percent=None))
    assert not controller.active


def test_no_flapping_at_the_memory_threshold(controller: ConservativeModeController, clock: ManualClock) -> None:
    before = triggers("memory_pressure")
    # Memory oscillating around the 80% entry threshold for an hour.
    for i in range(360):
        clock.advance(10)
        controller.observe(load(memory_percent=81.0 if i % 2 else 78.0))
        assert controller.active or i == 0
    assert triggers("memory_pressure") == before + 1, "one episode, one trigger"
    assert [e.kind for e in controller.history] == ["enter"]
    # Under the entry threshold but inside the hysteresis band (>= 75%): still not calm.
    run_for(controller, clock, 600, load(memory_percent=77.0))
    assert controller.active
    # Calm (< 75%) for the quiet period: exits once and stays out.
    run_for(controller, clock, 310, load(memory_percent=60.0))
    assert not controller.active
    run_for(controller, clock, 600, load(memory_percent=60.0))
    assert [e.kind for e in controller.history] == ["enter", "exit"]


def test_a_new_trigger_restarts_the_quiet_period(controller: ConservativeModeController, clock: ManualClock) -> None:
    controller.trigger("compilation_timeout")
    run_for(controller, clock, 250, CALM)
    controller.trigger("compilation_timeout", "another one")
    run_for(controller, clock, 250, CALM)
    assert controller.active
    run_for(controller, clock, 60, CALM)
    assert not controller.active


def test_tick_without_samples_exits_on_breakers_alone(controller: ConservativeModeController, clock: ManualClock) -> None:
    controller.trigger("compilation_timeout")
    assert controller.tick()
    clock.advance(301)
    assert not controller.tick()


def test_half_open_breaker_blocks_exit(controller: ConservativeModeController, breakers: BreakerRegistry, clock: ManualClock) -> None:
    for _ in range(3):
        breakers["bus"].record_failure("redis timeout")
    run_for(controller, clock, 900, CALM)
    assert breakers["bus"].state is BreakerState.HALF_OPEN
    assert controller.active


# -- configuration -------------------------------------------------------------------------
def test_auto_enable_false_ignores_triggers(tmp_path: Path, clock: ManualClock) -> None:
    s = settings_for(tmp_path, conservative_mode={"auto_enable": False})
    reg = BreakerRegistry.from_settings(s, clock)
    ctl = ConservativeModeController(s, reg, clock)
    assert ctl.trigger("torch_crash") is False
    for _ in range(3):
        reg["store"].record_failure("x")
    assert not ctl.active and not ctl.effective().cpu_only_requested


def test_triggers_list_selects_reasons(tmp_path: Path, clock: ManualClock) -> None:
    s = settings_for(tmp_path, conservative_mode={"triggers": ["torch_crash", "circuit_breaker_open"]})
    ctl = ConservativeModeController(s, BreakerRegistry.from_settings(s, clock), clock)
    assert ctl.trigger("compilation_timeout") is False
    ctl.observe(load(memory_percent=95.0))
    assert not ctl.active
    assert ctl.trigger("torch_crash") is True


def test_unknown_names_are_refused(tmp_path: Path, clock: ManualClock, controller: ConservativeModeController) -> None:
    with pytest.raises(UnknownTriggerError) as info:
        controller.trigger("cosmic_rays")
    assert info.value.code == "CONSERVATIVE_TRIGGER_UNKNOWN" and "torch_crash" in str(info.value)
    s = settings_for(tmp_path, conservative_mode={"triggers": ["cosmic_rays"]})
    with pytest.raises(ResilienceConfigError) as cfg:
        ConservativeModeController(s, BreakerRegistry.from_settings(s, clock), clock)
    assert "conservative_mode.triggers" in str(cfg.value)


def test_quiet_period_comes_from_timeouts(tmp_path: Path, clock: ManualClock) -> None:
    s: Settings = settings_for(tmp_path, timeouts_ms={"conservative_mode_timeout": 60_000})
    ctl = ConservativeModeController(s, BreakerRegistry.from_settings(s, clock), clock)
    ctl.trigger("compilation_timeout")
    run_for(ctl, clock, 50, CALM)
    assert ctl.active
    run_for(ctl, clock, 20, CALM)
    assert not ctl.active


def test_a_broken_mode_listener_does_not_stop_the_mode(controller: ConservativeModeController) -> None:
    def broken(_: ModeEvent) -> None:
        raise RuntimeError("listener bug")

    controller.add_listener(broken)
    assert controller.trigger("compilation_timeout")
    assert controller.active
