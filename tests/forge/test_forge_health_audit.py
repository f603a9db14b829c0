"""The health verdict's rule and the audit log's format."""

from __future__ import annotations

import threading

from tezzeret.forge.audit import AuditLog, read_audit
from tezzeret.forge.health import HealthFacts, assess


def test_health_levels() -> None:
    ok = HealthFacts(breakers={"store": "CLOSED"}, isolation_level="bwrap")
    assert assess(ok).status == "HEALTHY"
    assert assess(ok.model_copy(update={"conservative_mode": {"active": True}})).status == "DEGRADED"
    assert assess(ok.model_copy(update={"breakers": {"bus": "OPEN"}})).status == "DEGRADED"
    assert assess(ok.model_copy(update={"breakers": {"store": "OPEN"}})).status == "UNHEALTHY"
    assert assess(ok.model_copy(update={"isolation_level": "subprocess"})).status == "DEGRADED"
    crit = assess(ok.model_copy(update={"wal_writable": False, "breakers": {"store": "OPEN"}}))
    assert crit.status == "CRITICAL" and len(crit.reasons) == 2


def test_audit_lines_are_whole_under_concurrency(tmp_path) -> None:
    log = AuditLog(tmp_path / "a" / "audit.jsonl")

    def writer(n: int) -> None:
        for i in range(200):
            log.record(requestor=f"t{n}", action="submit", outcome="accepted", blueprint=f"bp{i}", job_id="x" * 300)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records = read_audit(tmp_path / "a" / "audit.jsonl")
    assert len(records) == 800
    assert {r["requestor"] for r in records} == {"t0", "t1", "t2", "t3"}
    assert set(records[0]) >= {"time", "requestor", "action", "blueprint", "outcome"}
    assert (tmp_path / "a" / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_held_dispatch_degrades() -> None:
    facts = HealthFacts(isolation_level="bwrap", dispatch_held="store breaker OPEN")
    report = assess(facts)
    assert report.status == "DEGRADED" and report.reasons == ["dispatch held: store breaker OPEN"]
