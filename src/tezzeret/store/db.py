"""The SQLite side of the store: the connection policy, the schema and its migrations.

Owns: opening `urza.sqlite3` in WAL journal mode with `synchronous=FULL` and foreign keys on, one
connection per thread, write transactions that take the write lock up front (`BEGIN IMMEDIATE`, so
two writers never deadlock upgrading a read lock), and the numbered migrations applied on open
(recorded in `PRAGMA user_version`). Must never hold business rules: `blueprints.py` and
`artifacts.py` own what the rows mean. Every call blocks on SQLite.

Why SQLite and not a server: decision 9 (embedded defaults on one machine); WAL mode lets readers
run beside the one writer, and `synchronous=FULL` makes each commit durable before it returns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tezzeret.store.errors import SchemaTooNew, StoreError

DB_FILENAME = "urza.sqlite3"
# Long enough for another process's write transaction (milliseconds each) to finish under load.
BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: tuple[str, ...] = (
    # 1: blueprints, their transitions and attempts; artifacts and their status history.
    """
    CREATE TABLE blueprints (
        digest                  TEXT PRIMARY KEY CHECK (length(digest) = 64),
        name                    TEXT NOT NULL,
        source                  TEXT NOT NULL,
        state                   TEXT NOT NULL,
        ir                      BLOB NOT NULL,
        tamiyo_interest         REAL NOT NULL DEFAULT 0,
        value                   REAL NOT NULL DEFAULT 0,
        claimed_by              TEXT,
        claimed_at_ns           INTEGER,
        compilation_attempts    INTEGER NOT NULL DEFAULT 0,
        successful_compilations INTEGER NOT NULL DEFAULT 0,
        created_at_ns           INTEGER NOT NULL,
        updated_at_ns           INTEGER NOT NULL
    );
    CREATE INDEX blueprints_state ON blueprints(state, created_at_ns);

    CREATE TABLE blueprint_transitions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        digest      TEXT NOT NULL REFERENCES blueprints(digest),
        from_state  TEXT,
        to_state    TEXT NOT NULL,
        actor       TEXT,
        at_ns       INTEGER NOT NULL
    );
    CREATE INDEX blueprint_transitions_digest ON blueprint_transitions(digest, id);

    CREATE TABLE compile_attempts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        digest      TEXT NOT NULL REFERENCES blueprints(digest),
        strategy    TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        toolchain   TEXT,
        at_ns       INTEGER NOT NULL
    );
    CREATE INDEX compile_attempts_digest ON compile_attempts(digest, strategy);

    CREATE TABLE artifacts (
        artifact_id      TEXT PRIMARY KEY,
        blueprint_digest TEXT NOT NULL REFERENCES blueprints(digest),
        strategy         TEXT NOT NULL,
        target           TEXT NOT NULL,
        toolchain_hash   TEXT NOT NULL,
        manifest         BLOB NOT NULL,
        manifest_sha256  TEXT NOT NULL,
        signature        BLOB NOT NULL,
        key_id           TEXT NOT NULL,
        file_sha256      TEXT NOT NULL,
        file_size        INTEGER NOT NULL,
        status           TEXT NOT NULL,
        status_reason    TEXT NOT NULL DEFAULT '',
        created_at_ns    INTEGER NOT NULL,
        updated_at_ns    INTEGER NOT NULL
    );
    CREATE INDEX artifacts_blueprint ON artifacts(blueprint_digest, created_at_ns);

    CREATE TABLE artifact_status_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        artifact_id TEXT NOT NULL REFERENCES artifacts(artifact_id),
        from_status TEXT,
        to_status   TEXT NOT NULL,
        reason      TEXT NOT NULL,
        at_ns       INTEGER NOT NULL
    );
    CREATE INDEX artifact_status_history_id ON artifact_status_history(artifact_id, id);
    """,
    # 2: why an attempt failed (a tier that cannot verify or compile a blueprint is skipped under
    # that toolchain) and whether it ended its job (a fallback step did not), a blueprint quarantined
    # from automatic work, and an artifact's blob found corrupt (the rebuild replaces it).
    """
    ALTER TABLE compile_attempts ADD COLUMN error_code TEXT NOT NULL DEFAULT '';
    ALTER TABLE compile_attempts ADD COLUMN final INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE blueprints ADD COLUMN quarantine_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE blueprints ADD COLUMN quarantined_at_ns INTEGER;
    ALTER TABLE artifacts ADD COLUMN corrupt_at_ns INTEGER;
    """,
    # 3: what each attempt cost and bought, for the forge's payback predictor: the blueprint's
    # features (JSON from `blueprint.features`), the machine that compiled it, its compile
    # seconds, the served training speed-up and eager step time it measured (NULL when unknown).
    """
    ALTER TABLE compile_attempts ADD COLUMN features TEXT NOT NULL DEFAULT '';
    ALTER TABLE compile_attempts ADD COLUMN machine TEXT NOT NULL DEFAULT '';
    ALTER TABLE compile_attempts ADD COLUMN compile_s REAL;
    ALTER TABLE compile_attempts ADD COLUMN served_speedup REAL;
    ALTER TABLE compile_attempts ADD COLUMN eager_step_ms REAL;
    CREATE INDEX compile_attempts_history ON compile_attempts(strategy, machine, id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """One SQLite file, one connection per calling thread (sqlite3 connections are not safe to
    share between threads without a lock, and a lock would serialise readers WAL mode lets run).

    `close` waits for every transaction in flight on any thread: closing a connection another
    thread is stepping crashes the interpreter (seen as a segfault when the service stopped while
    its health refresh read the store in a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._idle = threading.Condition(self._all_lock)
        self._active = 0
        self._closed = False
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so no implicit transactions hide.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreError(
                f"{self.path}: SQLite refused WAL journal mode (got {mode!r}); the store needs a "
                "local filesystem that supports shared memory (not NFS)",
                code="STORE_NO_WAL",
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed; open it again with Store.open()",
                             code="STORE_CLOSED")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _in_use(self) -> Iterator[sqlite3.Connection]:
        with self._all_lock:
            self._active += 1
        try:
            yield self.connection()
        finally:
            with self._all_lock:
                self._active -= 1
                self._idle.notify_all()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its first statement."""
        with self._in_use() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several SELECTs."""
        with self._in_use() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.write() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(self.path, current, SCHEMA_VERSION)
            for number in range(current, SCHEMA_VERSION):
                # executescript would COMMIT our transaction; run the statements one by one.
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    def schema_version(self) -> int:
        with self.read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self, wait_s: float = 30.0) -> None:
        with self._all_lock:
            self._closed = True
            self._idle.wait_for(lambda: self._active == 0, timeout=wait_s)
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _statements(script: str) -> list[str]:
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
