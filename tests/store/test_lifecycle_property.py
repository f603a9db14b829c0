"""Property: any sequence of requested moves leaves the stored state where the lifecycle says."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import digest_of, make_ir

from tezzeret.store import InvalidTransition, Store
from tezzeret.store import lifecycle as lc

_counter = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.sampled_from(lc.BLUEPRINT_STATES), min_size=1, max_size=8),
       claim_at=st.integers(min_value=-1, max_value=8))
def test_random_move_sequences_follow_the_lifecycle(tmp_path: Path, moves: list[str], claim_at: int) -> None:
    with Store.open(tmp_path / "store") as store:
        digest = digest_of(f"prop-{next(_counter)}")
        store.put_blueprint(make_ir("p"), digest, source="t", state="GENERATED")
        model = "GENERATED"
        transitions = 1
        for i, target in enumerate(moves):
            if i == claim_at:
                won = store.claim(digest, "w")
                assert won == (model in lc.CLAIMABLE)
                if won:
                    model = "COMPILING"
                    transitions += 1
            try:
                store.transition(digest, target, actor="mover")
            except InvalidTransition as exc:
                assert target != model and not lc.blueprint_move_allowed(model, target)
                assert (exc.from_state, exc.to_state) == (model, target)
            else:
                assert target == model or lc.blueprint_move_allowed(model, target)
                transitions += target != model
                model = target
            record = store.get_blueprint(digest)
            assert record.state == model
            assert (record.claimed_by is not None) == (model == "COMPILING")
        history = store._db.connection().execute(
            "SELECT COUNT(*) FROM blueprint_transitions WHERE digest = ?", (digest,)
        ).fetchone()[0]
        assert history == transitions  # every move and only real moves are logged
