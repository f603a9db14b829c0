"""Blueprints in Urza: intake (idempotent by digest), the lifecycle, the atomic claim, compile
attempts, the polling views and idle-recompilation candidates.

Owns: every read and write of the `blueprints`, `blueprint_transitions` and `compile_attempts`
tables. Must never decide *whether* to compile (the forge does) or compute a digest (the blueprint
stage does: the store trusts the digest it is given and only checks its form). Every method blocks
on SQLite; from async code call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping

from tezzeret.leyline import ContractError, codec, pb
from tezzeret.store.db import Database
from tezzeret.store.errors import BlueprintNotFound, InvalidInput, InvalidTransition
from tezzeret.store.lifecycle import (
    CLAIMABLE,
    INITIAL_BLUEPRINT_STATES,
    RECOMPILABLE,
    blueprint_move_allowed,
    blueprint_state_name,
)
from tezzeret.store.records import AttemptOutcome, BlueprintRecord, RecompilationCandidate, outcome_name, strategy_name

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_FAILURE_WINDOW_NS = 24 * 3600 * 1_000_000_000


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidInput(
            f"{digest!r} is not a blueprint digest: expected 64 lowercase hex characters "
            "(the SHA-256 of the canonical IR from tezzeret.blueprint)"
        )
    return digest


class BlueprintTable:
    """The blueprint half of the store. Mixed into `Store`, which provides `_db` and `_clock`."""

    _db: Database
    _clock: Callable[[], int]

    # ---- reads -------------------------------------------------------------------------------

    def _strategies(self, conn: sqlite3.Connection, digest: str) -> tuple[str, ...]:
        rows = conn.execute(
            "SELECT strategy FROM compile_attempts WHERE digest = ? GROUP BY strategy "
            "ORDER BY MIN(id)",
            (digest,),
        ).fetchall()
        return tuple(row[0] for row in rows)

    def _blueprint(self, conn: sqlite3.Connection, digest: str) -> BlueprintRecord | None:
        row = conn.execute("SELECT * FROM blueprints WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            return None
        return BlueprintRecord.from_row(row, self._strategies(conn, digest))

    def _require_blueprint(self, conn: sqlite3.Connection, digest: str) -> BlueprintRecord:
        record = self._blueprint(conn, digest)
        if record is None:
            raise BlueprintNotFound(digest)
        return record

    def get_blueprint(self, digest: str) -> BlueprintRecord:
        """The blueprint with this digest; `BlueprintNotFound` when there is none."""
        with self._db.read() as conn:
            return self._require_blueprint(conn, check_digest(digest))

    def find_blueprint(self, digest: str) -> BlueprintRecord | None:
        with self._db.read() as conn:
            return self._blueprint(conn, check_digest(digest))

    def _select(self, where: str, params: tuple[object, ...], order: str, limit: int | None) -> list[BlueprintRecord]:
        sql = f"SELECT * FROM blueprints {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
            return [BlueprintRecord.from_row(r, self._strategies(conn, r["digest"])) for r in rows]

    def list_blueprints(self, state: int | str | None = None, *, limit: int | None = None) -> list[BlueprintRecord]:
        """All blueprints (or those in `state`), oldest first."""
        if state is None:
            return self._select("", (), "created_at_ns, digest", limit)
        return self._select("WHERE state = ?", (blueprint_state_name(state),), "created_at_ns, digest", limit)

    def unclaimed(self, *, limit: int | None = None) -> list[BlueprintRecord]:
        """GENERATED or SUBMITTED blueprints nobody has claimed and nobody quarantined, oldest first
        (Urza polling)."""
        return self._select(
            "WHERE state IN ('GENERATED', 'SUBMITTED') AND quarantine_reason = ''", (), "created_at_ns, digest", limit
        )

    def pending_compilation(self, *, limit: int | None = None) -> list[BlueprintRecord]:
        """Everything not yet compiled: unclaimed blueprints and those being compiled (COMPILING),
        oldest first. After a crash, the COMPILING ones are the work to recover."""
        return self._select(
            "WHERE state IN ('GENERATED', 'SUBMITTED', 'COMPILING')", (), "created_at_ns, digest", limit
        )

    def blueprint_counts(self) -> dict[str, int]:
        """Blueprints per lifecycle state (for health and status displays)."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM blueprints GROUP BY state").fetchall()
        return {row[0]: int(row[1]) for row in rows}

    # ---- writes ------------------------------------------------------------------------------

    def put_blueprint(
        self,
        ir_bytes: bytes,
        digest: str,
        *,
        name: str | None = None,
        source: str,
        state: int | str = "SUBMITTED",
    ) -> BlueprintRecord:
        """Store a blueprint, idempotent by digest: a second put of a known digest returns the
        stored record unchanged (the first IR, name and state win; two IRs that differ only in node
        names legitimately share a digest). `ir_bytes` must be a canonical `pb.BlueprintIR`."""
        check_digest(digest)
        initial = blueprint_state_name(state)
        if initial not in INITIAL_BLUEPRINT_STATES:
            raise InvalidInput(
                f"blueprint {digest}: a new blueprint starts GENERATED or SUBMITTED, not {initial}"
            )
        try:
            ir = codec.decode(pb.BlueprintIR, bytes(ir_bytes))
        except ContractError as exc:
            raise InvalidInput(f"blueprint {digest}: ir_bytes are not a canonical BlueprintIR ({exc.reason})") from None
        meta = ir.metadata
        # Karn's adversarial tier is quarantine-only: Urza must never hold it for compilation.
        if meta.tier == pb.TIER_ADVERSARIAL or meta.quarantine_only:
            raise InvalidInput(
                f"blueprint {digest}: tier ADVERSARIAL / quarantine_only blueprints are never "
                "stored for compilation (upstream §7.1)"
            )
        display = name or meta.name or meta.blueprint_id or digest[:16]
        now = self._clock()
        with self._db.write() as conn:
            existing = self._blueprint(conn, digest)
            if existing is not None:
                return existing
            conn.execute(
                "INSERT INTO blueprints (digest, name, source, state, ir, tamiyo_interest, value, "
                "created_at_ns, updated_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (digest, display, source, initial, bytes(ir_bytes), float(meta.tamiyo_interest),
                 float(meta.value), now, now),
            )
            self._log_transition(conn, digest, None, initial, source, now)
            return self._require_blueprint(conn, digest)

    def _log_transition(
        self, conn: sqlite3.Connection, digest: str, from_state: str | None, to_state: str,
        actor: str | None, now: int,
    ) -> None:
        conn.execute(
            "INSERT INTO blueprint_transitions (digest, from_state, to_state, actor, at_ns) "
            "VALUES (?, ?, ?, ?, ?)",
            (digest, from_state, to_state, actor, now),
        )

    def transition(
        self,
        digest: str,
        to_state: int | str,
        *,
        expect_from: int | str | None = None,
        actor: str | None = None,
    ) -> BlueprintRecord:
        """Move a blueprint along its lifecycle in one transaction.

        Raises `InvalidTransition` (naming from and to) for a move the lifecycle forbids, or when
        `expect_from` is given and the blueprint is in another state (someone else moved it).
        Moving to the state it is already in is a no-op, so at-least-once consumers may repeat it.
        Moving to COMPILING claims the blueprint for `actor` (required; `claim` is the usual way);
        leaving COMPILING clears the claim.
        """
        check_digest(digest)
        target = blueprint_state_name(to_state)
        if target == "COMPILING" and not actor:
            raise InvalidInput(
                f"blueprint {digest}: moving to COMPILING claims it, so it needs the claimant: "
                "use claim(digest, worker_id), or pass actor= to transition()"
            )
        expected = None if expect_from is None else blueprint_state_name(expect_from)
        now = self._clock()
        with self._db.write() as conn:
            record = self._require_blueprint(conn, digest)
            current = record.state
            if expected is not None and current != expected:
                raise InvalidTransition(
                    "blueprint", digest, current, target,
                    f"expected it in {expected}, but it is in {current} (moved by someone else)",
                )
            if current == target:
                return record
            if not blueprint_move_allowed(current, target):
                raise InvalidTransition("blueprint", digest, current, target)
            if target == "COMPILING":
                conn.execute(
                    "UPDATE blueprints SET state = ?, claimed_by = ?, claimed_at_ns = ?, "
                    "updated_at_ns = ? WHERE digest = ?",
                    (target, actor, now, now, digest),
                )
            else:
                conn.execute(
                    "UPDATE blueprints SET state = ?, claimed_by = NULL, claimed_at_ns = NULL, "
                    "updated_at_ns = ? WHERE digest = ?",
                    (target, now, digest),
                )
            self._log_transition(conn, digest, current, target, actor, now)
            return self._require_blueprint(conn, digest)

    def claim(self, digest: str, worker_id: str) -> bool:
        """Atomically move a GENERATED or SUBMITTED blueprint to COMPILING for `worker_id`.

        True for exactly one claimant; False when it is already claimed or past compilation. The
        conditional UPDATE runs under SQLite's write lock, so threads and processes racing for the
        same blueprint cannot both win.
        """
        check_digest(digest)
        if not worker_id:
            raise InvalidInput("claim needs a non-empty worker_id (who is compiling it)")
        now = self._clock()
        with self._db.write() as conn:
            row = conn.execute("SELECT state FROM blueprints WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                raise BlueprintNotFound(digest)
            if row["state"] not in CLAIMABLE:
                return False
            conn.execute(
                "UPDATE blueprints SET state = 'COMPILING', claimed_by = ?, claimed_at_ns = ?, "
                "updated_at_ns = ? WHERE digest = ?",
                (worker_id, now, now, digest),
            )
            self._log_transition(conn, digest, row["state"], "COMPILING", worker_id, now)
            return True

    def release_claims(self, *, worker_id: str | None = None) -> list[str]:
        """Hand COMPILING blueprints back to SUBMITTED (all of them, or one worker's): recovery
        after a crash, or a worker that died. Returns the digests released, oldest first."""
        now = self._clock()
        with self._db.write() as conn:
            if worker_id is None:
                rows = conn.execute(
                    "SELECT digest FROM blueprints WHERE state = 'COMPILING' ORDER BY created_at_ns, digest"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT digest FROM blueprints WHERE state = 'COMPILING' AND claimed_by = ? "
                    "ORDER BY created_at_ns, digest",
                    (worker_id,),
                ).fetchall()
            digests = [row[0] for row in rows]
            for digest in digests:
                conn.execute(
                    "UPDATE blueprints SET state = 'SUBMITTED', claimed_by = NULL, "
                    "claimed_at_ns = NULL, updated_at_ns = ? WHERE digest = ?",
                    (now, digest),
                )
                self._log_transition(conn, digest, "COMPILING", "SUBMITTED", "release_claims", now)
            return digests

    def record_attempt(
        self,
        digest: str,
        strategy: int | str,
        outcome: int | str,
        *,
        toolchain: str | None = None,
        error_code: str = "",
        final: bool = True,
        features: str = "",
        machine: str = "",
        compile_s: float | None = None,
        served_speedup: float | None = None,
        eager_step_ms: float | None = None,
    ) -> BlueprintRecord:
        """Count one compile attempt (and a success when `outcome` is SUCCESS) and remember the
        strategy tried and why it failed. Pass `toolchain` so idle recompilation does not retry a
        strategy that already failed under the current toolchain; `final=False` for a tier the
        fallback ladder stepped down from (the job went on). `features` (the blueprint's, as
        JSON), `machine`, `compile_s`, `served_speedup` and `eager_step_ms` are the payback
        predictor's history (`attempt_history`)."""
        check_digest(digest)
        strat = strategy_name(strategy)
        result = outcome_name(outcome)
        for name, number in (("compile_s", compile_s), ("served_speedup", served_speedup), ("eager_step_ms", eager_step_ms)):
            if number is not None and not (float(number) >= 0.0 and float(number) != float("inf")):
                raise InvalidInput(f"{name} must be a finite number >= 0, got {number!r}")
        now = self._clock()
        with self._db.write() as conn:
            self._require_blueprint(conn, digest)
            conn.execute(
                "INSERT INTO compile_attempts (digest, strategy, outcome, toolchain, error_code, final, at_ns, "
                "features, machine, compile_s, served_speedup, eager_step_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (digest, strat, result, toolchain, error_code, int(final), now, features, machine,
                 compile_s, served_speedup, eager_step_ms),
            )
            conn.execute(
                "UPDATE blueprints SET compilation_attempts = compilation_attempts + 1, "
                "successful_compilations = successful_compilations + ?, updated_at_ns = ? "
                "WHERE digest = ?",
                (1 if result == "SUCCESS" else 0, now, digest),
            )
            return self._require_blueprint(conn, digest)

    def attempt_history(
        self, strategy: int | str, *, machine: str | None = None, limit: int = 1000
    ) -> list[AttemptOutcome]:
        """The most recent attempts at `strategy` (on `machine` when given) that recorded
        features and a compile time, newest first: the payback predictor's history."""
        strat = strategy_name(strategy)
        sql = "SELECT * FROM compile_attempts WHERE strategy = ? AND features != '' AND compile_s IS NOT NULL"
        params: tuple[object, ...] = (strat,)
        if machine is not None:
            sql += " AND machine = ?"
            params += (machine,)
        with self._db.read() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit))).fetchall()
        return [AttemptOutcome.from_row(r) for r in rows]

    def failed_tiers(self, digest: str, toolchains: Mapping[str, str], error_codes: frozenset[str]) -> dict[str, str]:
        """Tiers whose last attempt on `digest` under that tier's current toolchain (`toolchains`,
        by strategy name) failed with one of `error_codes`: strategy name → error code. A success
        later under the same toolchain clears the tier."""
        check_digest(digest)
        out: dict[str, str] = {}
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT strategy, outcome, toolchain, error_code FROM compile_attempts WHERE digest = ? ORDER BY id",
                (digest,),
            ).fetchall()
        for strategy, outcome, toolchain, error_code in rows:
            if toolchains.get(strategy) != toolchain:
                continue
            if outcome == "SUCCESS":
                out.pop(strategy, None)
            elif error_code in error_codes:
                out[strategy] = error_code
        return out

    def failures_since_success(self, digest: str, outcomes: frozenset[str]) -> int:
        """Jobs on `digest` that ended with one of `outcomes` since its last success (fallback
        steps inside a job do not count: the job is one failure, or a success)."""
        check_digest(digest)
        with self._db.read() as conn:
            last_ok = conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM compile_attempts WHERE digest = ? AND outcome = 'SUCCESS'", (digest,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT outcome FROM compile_attempts WHERE digest = ? AND id > ? AND final = 1", (digest, int(last_ok))
            ).fetchall()
        return sum(1 for (outcome,) in rows if outcome in outcomes)

    def quarantine_blueprint(self, digest: str, reason: str) -> BlueprintRecord:
        """Keep every automatic path (polling, idle recompilation, fallbacks) away from `digest`."""
        check_digest(digest)
        if not reason:
            raise InvalidInput(f"blueprint {digest[:16]}: a quarantine needs a reason")
        with self._db.write() as conn:
            self._require_blueprint(conn, digest)
            conn.execute(
                "UPDATE blueprints SET quarantine_reason = ?, quarantined_at_ns = ?, updated_at_ns = ? WHERE digest = ?",
                (reason, self._clock(), self._clock(), digest),
            )
            return self._require_blueprint(conn, digest)

    def release_blueprint(self, digest: str) -> BlueprintRecord:
        """Lift a quarantine (an operator fixed or accepted the cause)."""
        check_digest(digest)
        with self._db.write() as conn:
            self._require_blueprint(conn, digest)
            conn.execute(
                "UPDATE blueprints SET quarantine_reason = '', quarantined_at_ns = NULL, updated_at_ns = ? WHERE digest = ?",
                (self._clock(), digest),
            )
            return self._require_blueprint(conn, digest)

    def quarantined_blueprints(self) -> list[BlueprintRecord]:
        return self._select("WHERE quarantine_reason != ''", (), "quarantined_at_ns, digest", None)

    def set_tamiyo_interest(self, digest: str, interest: float) -> BlueprintRecord:
        """Update how much Tamiyo wants this blueprint (drives AGGRESSIVE idle recompilation)."""
        check_digest(digest)
        if not 0.0 <= float(interest) <= 1.0:
            raise InvalidInput(f"tamiyo_interest must lie in [0, 1], got {interest}")
        with self._db.write() as conn:
            self._require_blueprint(conn, digest)
            conn.execute(
                "UPDATE blueprints SET tamiyo_interest = ?, updated_at_ns = ? WHERE digest = ?",
                (float(interest), self._clock(), digest),
            )
            return self._require_blueprint(conn, digest)

    # ---- idle work ---------------------------------------------------------------------------

    def recompilation_candidates(
        self,
        current_toolchain: str | Mapping[str, str],
        *,
        interest_threshold: float = 0.7,
        failure_window_ns: int = DEFAULT_FAILURE_WINDOW_NS,
        limit: int | None = None,
    ) -> list[RecompilationCandidate]:
        """Idle work in the order of upstream §3.5, each blueprint at most once:
        1. tamiyo_interest above `interest_threshold` → AGGRESSIVE (highest interest first);
        2. an artifact REJECTED within `failure_window_ns` → STANDARD (most recent first);
        3. artifacts only from outdated toolchains → FAST (oldest blueprint first).
        `current_toolchain` is each tier's current toolchain hash by strategy name (one hash for
        all tiers when a string): an artifact is outdated when its hash differs from its own
        tier's. A (blueprint, strategy) is skipped when an artifact for it already exists under
        that tier's current toolchain (its id would be the same, so there is nothing to gain) or
        when an attempt with it under that toolchain already failed (no retry loops)."""
        if not current_toolchain:
            raise InvalidInput("recompilation_candidates needs the current toolchain hash")
        if isinstance(current_toolchain, str):
            single = current_toolchain
            current: Mapping[str, str] = {name: single for name in ("EMERGENCY", "FAST", "STANDARD", "AGGRESSIVE")}
        else:
            current = current_toolchain
        since = self._clock() - int(failure_window_ns)
        with self._db.read() as conn:
            blueprints = conn.execute(
                "SELECT digest, tamiyo_interest, created_at_ns FROM blueprints WHERE quarantine_reason = '' AND state IN "
                f"({', '.join('?' * len(RECOMPILABLE))}) ORDER BY created_at_ns, digest",
                tuple(sorted(RECOMPILABLE)),
            ).fetchall()
            built: dict[str, set[tuple[str, str]]] = {}
            for row in conn.execute("SELECT blueprint_digest, strategy, toolchain_hash FROM artifacts"):
                built.setdefault(row[0], set()).add((row[1], row[2]))
            tried: dict[str, set[str]] = {}
            for row in conn.execute("SELECT digest, strategy, toolchain FROM compile_attempts WHERE outcome != 'SUCCESS'"):
                if row[2] == current.get(row[1]):
                    tried.setdefault(row[0], set()).add(row[1])
            rejected: dict[str, int] = {
                row[0]: int(row[1])
                for row in conn.execute(
                    "SELECT a.blueprint_digest, MAX(h.at_ns) FROM artifact_status_history h "
                    "JOIN artifacts a ON a.artifact_id = h.artifact_id "
                    "WHERE h.to_status = 'REJECTED' AND h.at_ns >= ? GROUP BY a.blueprint_digest",
                    (since,),
                )
            }

        def open_for(digest: str, strategy: str) -> bool:
            return (strategy, current.get(strategy)) not in built.get(digest, set()) and strategy not in tried.get(digest, set())

        eligible = {r["digest"] for r in blueprints}
        taken: set[str] = set()
        out: list[RecompilationCandidate] = []
        interested = sorted(
            (r for r in blueprints if r["tamiyo_interest"] > interest_threshold),
            key=lambda r: (-r["tamiyo_interest"], r["created_at_ns"], r["digest"]),
        )
        for r in interested:
            if open_for(r["digest"], "AGGRESSIVE"):
                out.append(RecompilationCandidate(r["digest"], "AGGRESSIVE", "high tamiyo_interest"))
                taken.add(r["digest"])
        for digest in sorted(rejected, key=lambda d: (-rejected[d], d)):
            if digest not in taken and digest in eligible and open_for(digest, "STANDARD"):
                out.append(RecompilationCandidate(digest, "STANDARD", "recent validation failure"))
                taken.add(digest)
        for r in blueprints:
            digest = r["digest"]
            mine = built.get(digest, set())
            if digest in taken or not mine or any(tc == current.get(strategy) for strategy, tc in mine):
                continue
            if open_for(digest, "FAST"):
                out.append(RecompilationCandidate(digest, "FAST", "outdated toolchain"))
                taken.add(digest)
        return out if limit is None else out[: int(limit)]
