"""Blueprint intake, attempts and the store's database settings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_helpers import digest_of, make_ir

from tezzeret.leyline import pb
from tezzeret.store import BlueprintNotFound, InvalidInput, SchemaTooNew, Store
from tezzeret.store.db import SCHEMA_VERSION


def test_put_is_idempotent_by_digest(store: Store) -> None:
    d = digest_of("x")
    first = store.put_blueprint(make_ir("x", interest=0.9), d, name="first", source="http")
    assert first.state == "SUBMITTED" and first.state_value == pb.BLUEPRINT_SUBMITTED
    assert first.name == "first" and first.source == "http" and first.tamiyo_interest == pytest.approx(0.9)
    assert first.blueprint.metadata.name == "x"
    # Same digest again (e.g. the same IR with other node names): the first record stands.
    again = store.put_blueprint(make_ir("x-renamed"), d, name="second", source="cli", state="GENERATED")
    assert again == first
    assert len(store.list_blueprints()) == 1


def test_put_validates_its_input(store: Store) -> None:
    with pytest.raises(InvalidInput, match="64 lowercase hex"):
        store.put_blueprint(make_ir("x"), "ABC", source="t")
    with pytest.raises(InvalidInput, match="canonical BlueprintIR"):
        store.put_blueprint(b"\xff\xff\xff", digest_of("junk"), source="t")
    with pytest.raises(InvalidInput, match="GENERATED or SUBMITTED"):
        store.put_blueprint(make_ir("x"), digest_of("x"), source="t", state="ACTIVE")
    with pytest.raises(InvalidInput, match="ADVERSARIAL"):
        store.put_blueprint(make_ir("bad", tier=pb.TIER_ADVERSARIAL), digest_of("bad"), source="t")
    assert store.list_blueprints() == []
    with pytest.raises(BlueprintNotFound) as info:
        store.get_blueprint(digest_of("absent"))
    assert info.value.code == "STORE_BLUEPRINT_NOT_FOUND"
    assert store.find_blueprint(digest_of("absent")) is None


def test_name_defaults_to_the_ir_metadata(store: Store) -> None:
    d = digest_of("named")
    assert store.put_blueprint(make_ir("from-metadata"), d, source="t").name == "from-metadata"


def test_attempts_and_strategies_tried(store: Store, blueprint: str) -> None:
    store.record_attempt(blueprint, pb.STRATEGY_STANDARD, pb.OUTCOME_TIMEOUT, toolchain="tc")
    store.record_attempt(blueprint, "FAST", "SUCCESS", toolchain="tc")
    record = store.record_attempt(blueprint, "STRATEGY_STANDARD", pb.OUTCOME_SUCCESS)
    assert record.compilation_attempts == 3
    assert record.successful_compilations == 2
    assert record.strategies_tried == ("STANDARD", "FAST")
    with pytest.raises(ValueError):
        store.record_attempt(blueprint, "TURBO", "SUCCESS")
    with pytest.raises(ValueError):
        store.record_attempt(blueprint, "FAST", pb.OUTCOME_UNSPECIFIED)
    with pytest.raises(BlueprintNotFound):
        store.record_attempt(digest_of("absent"), "FAST", "SUCCESS")
    assert store.get_blueprint(blueprint).compilation_attempts == 3


def test_list_by_state(store: Store) -> None:
    a, b = digest_of("a"), digest_of("b")
    store.put_blueprint(make_ir("a"), a, source="t", state="GENERATED")
    store.put_blueprint(make_ir("b"), b, source="t")
    assert [r.digest for r in store.list_blueprints(pb.BLUEPRINT_GENERATED)] == [a]
    assert [r.digest for r in store.list_blueprints("SUBMITTED")] == [b]
    assert [r.digest for r in store.list_blueprints(limit=1)] == [a]


def test_database_settings(store: Store) -> None:
    conn = sqlite3.connect(store.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    ours = store._db.connection()
    assert ours.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert ours.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version() == SCHEMA_VERSION
    assert store.db_path.name == "urza.sqlite3"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / "urza.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade Tezzeret"):
        Store.open(tmp_path / "s")


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s")
    s.close()
    with pytest.raises(Exception, match="closed"):
        s.list_blueprints()


_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from store_helpers import digest_of, make_ir
    from tezzeret.store import Store
    store = Store.open(Path(sys.argv[1]))
    store.put_blueprint(make_ir("durable"), digest_of("durable"), source="t")
    assert store.claim(digest_of("durable"), "w")
    print("committed", flush=True)
    os._exit(0)  # no close, no cleanup: as if killed right after the call returned
    """
)


def test_a_returned_write_survives_the_process_dying(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _WRITER, str(tmp_path / "s"), str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.stdout.strip() == "committed", out.stderr
    with Store.open(tmp_path / "s") as store:
        record = store.get_blueprint(digest_of("durable"))
        assert record.state == "COMPILING" and record.claimed_by == "w"
