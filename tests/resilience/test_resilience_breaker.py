"""Circuit breakers: the state machine over simulated time, protected calls, check_condition,
listeners, metrics and the registry built from configuration."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from resilience_helpers import metric
from settings import settings_for

from tezzeret.resilience import (
    BREAKER_NAMES,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    ManualClock,
    ResilienceConfigError,
    StateChange,
    UnknownBreakerError,
    Violation,
)


def make(clock: ManualClock, name: str = "t_breaker", **kw: object) -> CircuitBreaker:
    args: dict[str, object] = {"failure_threshold": 3, "timeout_ms": 30_000, "success_threshold": 2}
    args.update(kw)
    return CircuitBreaker(name, clock=clock, **args)  # type: ignore[arg-type]


def test_opens_after_threshold_consecutive_failures(clock: ManualClock) -> None:
    b = make(clock)
    b.record_failure("a")
    b.record_failure("b")
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure("c")
    assert b.state is BreakerState.OPEN
    assert not b.allow()


def test_success_resets_the_consecutive_count(clock: ManualClock) -> None:
    b = make(clock)
    for _ in range(5):
        b.record_failure("x")
        b.record_failure("x")
        b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.consecutive_failures == 0


def test_half_open_after_timeout_then_closes_after_success_threshold(clock: ManualClock) -> None:
    b = make(clock)
    for _ in range(3):
        b.record_failure("boom")
    clock.advance(29.999)
    assert b.state is BreakerState.OPEN
    assert b.retry_after_ms() == 1
    clock.advance(0.001)
    assert b.allow()
    assert b.state is BreakerState.HALF_OPEN
    b.record_success()
    assert b.state is BreakerState.HALF_OPEN
    b.record_success()
    assert b.state is BreakerState.CLOSED


def test_probe_failure_reopens_and_restarts_the_timeout(clock: ManualClock) -> None:
    b = make(clock)
    for _ in range(3):
        b.record_failure("boom")
    clock.advance(30)
    assert b.state is BreakerState.HALF_OPEN
    b.record_success()
    b.record_failure("still broken")
    assert b.state is BreakerState.OPEN
    assert b.retry_after_ms() == 30_000
    clock.advance(15)
    assert not b.allow()


def test_failures_while_open_extend_the_open_period(clock: ManualClock) -> None:
    b = make(clock)
    for _ in range(3):
        b.record_failure("boom")
    clock.advance(20)
    b.record_failure("late failure")
    clock.advance(20)
    assert b.state is BreakerState.OPEN
    clock.advance(10)
    assert b.state is BreakerState.HALF_OPEN


def test_call_protects_and_refuses_when_open(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=2)
    assert b.call(lambda x: x * 2, 21) == 42

    def broken() -> None:
        raise OSError("disk gone")

    for _ in range(2):
        with pytest.raises(OSError):
            b.call(broken)
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: ran.append(1))
    assert ran == []
    err = info.value
    assert err.code == "CIRCUIT_OPEN"
    assert err.name == "t_breaker"
    assert err.retry_after_ms == 30_000
    assert "OSError: disk gone" in str(err)
    assert "circuit_breakers.t_breaker" in str(err)


def test_excluded_exceptions_do_not_count(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1, excluded=(ValueError,))

    def bad_input() -> None:
        raise ValueError("the caller's fault")

    with pytest.raises(ValueError):
        b.call(bad_input)
    assert b.state is BreakerState.CLOSED
    assert b.consecutive_failures == 0


async def test_call_async_counts_failures_and_refuses(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1, success_threshold=1)

    async def ok(v: int) -> int:
        await asyncio.sleep(0)
        return v

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("redis down")

    assert await b.call_async(ok, 7) == 7
    with pytest.raises(ConnectionError):
        await b.call_async(fails)
    with pytest.raises(CircuitOpenError):
        await b.call_async(ok, 1)
    clock.advance(30)
    assert await b.call_async(ok, 2) == 2
    assert b.state is BreakerState.CLOSED


async def test_cancellation_is_not_a_failure(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1)
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(b.call_async(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is BreakerState.CLOSED


def test_check_condition_replaces_assert(clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    b = make(clock, name="t_check", failure_threshold=2)
    seen: list[Violation] = []
    b.add_violation_listener(seen.append)
    before = metric("tezzeret_circuit_breaker_violations_total", circuit_name="t_check")
    assert b.check_condition(True, "fine") is True
    with caplog.at_level(logging.WARNING, logger="tezzeret.resilience.breaker"):
        assert b.check_condition(False, "available GPU memory below estimate", 1.5) is False
    assert "available GPU memory below estimate" in caplog.text
    assert metric("tezzeret_circuit_breaker_violations_total", circuit_name="t_check") == before + 1
    assert b.consecutive_failures == 1
    assert b.check_condition(False, "again", 1.0) is False
    assert b.state is BreakerState.OPEN
    assert [v.while_open for v in seen] == [False, False]
    # Already OPEN: no failure is added, listeners hear it as a violation while open.
    assert b.check_condition(False, "while open", 0.5) is False
    assert seen[-1].while_open and seen[-1].value == 0.5


def test_check_condition_never_raises_even_with_a_broken_listener(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1)

    def broken(_: object) -> None:
        raise RuntimeError("listener bug")

    b.add_violation_listener(broken)
    b.add_listener(broken)
    assert b.check_condition(False, "x") is False
    assert b.state is BreakerState.OPEN
    assert b.check_condition(False, "y") is False


def test_listeners_hear_every_transition(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1, success_threshold=1)
    changes: list[StateChange] = []
    b.add_listener(changes.append)
    b.record_failure("f")
    clock.advance(30)
    b.allow()
    b.record_success()
    assert [(c.old, c.new) for c in changes] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert "f" in changes[0].reason


def test_state_and_failure_metrics(clock: ManualClock) -> None:
    b = make(clock, name="t_metrics", failure_threshold=2)
    failures0 = metric("tezzeret_circuit_breaker_failures_total", circuit_name="t_metrics")

    def states() -> dict[str, float]:
        return {
            s.value: metric("tezzeret_circuit_breaker_state", circuit_name="t_metrics", state=s.value)
            for s in BreakerState
        }

    assert states() == {"CLOSED": 1.0, "OPEN": 0.0, "HALF_OPEN": 0.0}
    b.record_failure("a")
    b.record_failure("b")
    assert states() == {"CLOSED": 0.0, "OPEN": 1.0, "HALF_OPEN": 0.0}
    assert metric("tezzeret_circuit_breaker_failures_total", circuit_name="t_metrics") == failures0 + 2
    clock.advance(30)
    assert b.state is BreakerState.HALF_OPEN
    assert states() == {"CLOSED": 0.0, "OPEN": 0.0, "HALF_OPEN": 1.0}


def test_disabled_breaker_counts_but_never_opens(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1, enabled=False)
    for _ in range(10):
        b.record_failure("x")
    assert b.allow()
    assert b.state is BreakerState.CLOSED


def test_bad_thresholds_are_refused(clock: ManualClock) -> None:
    with pytest.raises(ResilienceConfigError) as info:
        make(clock, failure_threshold=0)
    assert info.value.code == "RESILIENCE_CONFIG_INVALID"


def test_registry_from_settings_uses_per_breaker_keys_over_globals(tmp_path, clock: ManualClock) -> None:
    s = settings_for(
        tmp_path,
        circuit_breakers={
            "failure_threshold": 4,
            "compilation_timeout": {"failure_threshold": 2, "timeout_ms": 300_000},
            "bus": {"enabled": False},
        },
    )
    reg = BreakerRegistry.from_settings(s, clock)
    assert reg.names == BREAKER_NAMES
    assert reg["compilation_timeout"].failure_threshold == 2
    assert reg["compilation_timeout"].timeout_ms == 300_000
    assert reg["store"].failure_threshold == 4
    assert reg["store"].timeout_ms == 30_000
    assert reg["store"].success_threshold == 3
    assert reg["bus"].enabled is False
    with pytest.raises(UnknownBreakerError) as info:
        reg["urza"]
    assert info.value.code == "BREAKER_UNKNOWN" and "gpu_memory" in str(info.value)


def test_registry_all_closed_and_snapshot(breakers: BreakerRegistry, clock: ManualClock) -> None:
    assert breakers.all_closed()
    for _ in range(3):
        breakers["store"].record_failure("sqlite locked")
    assert not breakers.all_closed()
    assert breakers.open_breakers() == ["store"]
    snap = breakers.snapshot()
    assert set(snap) == set(BREAKER_NAMES)
    assert snap["store"]["state"] == "OPEN"
    assert snap["store"]["last_failure"] == "sqlite locked"
    assert snap["store"]["retry_after_ms"] == 30_000
    clock.advance(30)
    assert breakers.not_closed() == ["store"]  # HALF_OPEN is not closed yet
    for _ in range(3):
        breakers["store"].record_success()
    assert breakers.all_closed()


# A reference model of the state machine, checked against the breaker on random histories.
@hsettings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["ok", "fail", "wait_short", "wait_long"]), max_size=60),
    threshold=st.integers(1, 4),
    successes=st.integers(1, 3),
)
def test_breaker_matches_a_reference_model(ops: list[str], threshold: int, successes: int) -> None:
    clock = ManualClock()
    b = CircuitBreaker("t_model", failure_threshold=threshold, timeout_ms=10_000, success_threshold=successes, clock=clock)
    state, fails, probes, last_fail = "CLOSED", 0, 0, 0.0
    for op in ops:
        if op.startswith("wait"):
            clock.advance(3.0 if op == "wait_short" else 11.0)
            continue
        now = clock.monotonic()
        if state == "OPEN" and now - last_fail >= 10.0:
            state, probes = "HALF_OPEN", 0
        if op == "ok":
            b.record_success()
            if state == "CLOSED":
                fails = 0
            elif state == "HALF_OPEN":
                fails, probes = 0, probes + 1
                if probes >= successes:
                    state = "CLOSED"
        else:
            b.record_failure("model")
            fails, last_fail = fails + 1, now
            if state == "HALF_OPEN" or (state == "CLOSED" and fails >= threshold):
                state, probes = "OPEN", 0
        assert b._state.value == state  # noqa: SLF001 - compare before the lazy timeout read
    now = clock.monotonic()
    expected = "HALF_OPEN" if state == "OPEN" and now - last_fail >= 10.0 else state
    assert b.state.value == expected
    assert b.allow() == (expected != "OPEN")


def test_reset_closes_an_open_breaker(clock: ManualClock) -> None:
    b = make(clock, failure_threshold=1)
    changes: list[StateChange] = []
    b.add_listener(changes.append)
    b.record_failure("x")
    b.reset()
    assert b.state is BreakerState.CLOSED and b.allow() and b.consecutive_failures == 0
    assert changes[-1].reason == "reset"
