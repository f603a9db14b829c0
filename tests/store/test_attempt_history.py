"""The payback history on compile attempts: migration 3, what `record_attempt` keeps and
`attempt_history` returns."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_helpers import digest_of, make_ir

from tezzeret.store import InvalidInput, Store
from tezzeret.store.db import MIGRATIONS, SCHEMA_VERSION, _statements


def test_a_version_2_store_keeps_its_attempts_through_migration_3(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    directory.mkdir()
    conn = sqlite3.connect(directory / "urza.sqlite3", isolation_level=None)
    for number in range(2):
        for statement in _statements(MIGRATIONS[number]):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    d = digest_of("old")
    conn.execute(
        "INSERT INTO blueprints (digest, name, source, state, ir, created_at_ns, updated_at_ns) VALUES (?, 'old', 't', 'SUBMITTED', ?, 1, 1)",
        (d, make_ir("old")),
    )
    conn.execute("INSERT INTO compile_attempts (digest, strategy, outcome, toolchain, at_ns) VALUES (?, 'FAST', 'SUCCESS', 'tc', 5)", (d,))
    conn.close()
    with Store.open(directory) as store:
        assert store.schema_version() == SCHEMA_VERSION >= 3
        assert store.get_blueprint(d).strategies_tried == ("FAST",)
        # Recorded before features existed: not history the predictor can use.
        assert store.attempt_history("FAST") == []


def test_attempts_keep_features_and_outcome_and_history_is_newest_first_per_tier_and_machine(store: Store) -> None:
    a, b = digest_of("a"), digest_of("b")
    for name, d in (("a", a), ("b", b)):
        store.put_blueprint(make_ir(name), d, source="t")
    store.record_attempt(a, "FAST", "SUCCESS", toolchain="tc", features='{"nodes":1}', machine="m1",
                         compile_s=12.5, served_speedup=1.1, eager_step_ms=3.0)
    store.record_attempt(b, "FAST", "TIMEOUT", toolchain="tc", features='{"nodes":2}', machine="m1", compile_s=65.0)
    store.record_attempt(b, "FAST", "SUCCESS", features='{"nodes":2}', machine="m2", compile_s=9.0)
    store.record_attempt(b, "STANDARD", "SUCCESS", features='{"nodes":2}', machine="m1", compile_s=90.0)
    store.record_attempt(a, "FAST", "SUCCESS")  # no features: not history
    history = store.attempt_history("fast", machine="m1")
    assert [(h.digest, h.outcome, h.compile_s) for h in history] == [(b, "TIMEOUT", 65.0), (a, "SUCCESS", 12.5)]
    first = history[1]
    assert (first.features, first.machine, first.served_speedup, first.eager_step_ms, first.toolchain) == (
        '{"nodes":1}', "m1", 1.1, 3.0, "tc")
    assert history[0].served_speedup is None and history[0].eager_step_ms is None
    assert [h.machine for h in store.attempt_history("FAST")] == ["m2", "m1", "m1"]
    assert len(store.attempt_history("FAST", limit=1)) == 1
    # Counting attempts is unchanged by the new columns.
    assert store.get_blueprint(b).compilation_attempts == 3


@pytest.mark.parametrize("field", ["compile_s", "served_speedup", "eager_step_ms"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_a_measurement_must_be_a_finite_number_at_least_zero(store: Store, field: str, value: float) -> None:
    d = digest_of("a")
    store.put_blueprint(make_ir("a"), d, source="t")
    with pytest.raises(InvalidInput, match=field):
        store.record_attempt(d, "FAST", "SUCCESS", features="{}", **{field: value})
    assert store.get_blueprint(d).compilation_attempts == 0
