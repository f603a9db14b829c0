"""Damage is surfaced truthfully: the recovery outcome names what happened, the transactions it
cost are listed, the loss is kept in the WAL directory across restarts until someone
acknowledges it, and `tezzeret wal verify` exits non-zero until then. Real segment files, real
byte flips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from wal_helpers import ctx, records_bytes, write_txns

from tezzeret.leyline import pb
from tezzeret.wal import JobJournal, Wal, WalCorruption, WalOptions, WalStateError
from tezzeret.wal import log as log_module
from tezzeret.wal.commands import wal_app
from tezzeret.wal.format import HEADER_SIZE, EntryType, pack_record
from tezzeret.wal.losses import LEDGER_NAME, LossLedger
from tezzeret.wal.reader import list_segments, scan_segment

runner = CliRunner()


def _verify(directory: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = runner.invoke(wal_app, ["verify", str(directory), "--json"])
    return result.exit_code, json.loads(result.output)


def _records_of(segment: Path, txn_id: str) -> list:  # type: ignore[type-arg]
    return [r for r in scan_segment(1, segment).records if r.txn_id.hex() == txn_id]


def _flip(segment: Path, offset: int, mask: int = 0x01) -> None:
    data = bytearray(segment.read_bytes())
    data[offset] ^= mask
    segment.write_bytes(bytes(data))


def test_a_clean_log_reports_clean_and_verifies_0(tmp_path: Path) -> None:
    write_txns(tmp_path, 3)
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "clean" and not report.damaged
        assert (report.lost_transactions, report.in_doubt_transactions, report.rolled_back,
                report.quarantined, report.loss_id) == ([], [], [], [], None)
        assert wal.unacknowledged_losses() == []
        doc = report.to_dict()
        assert json.loads(json.dumps(doc))["outcome"] == "clean" and doc["lost_count"] == 0
    assert not (tmp_path / LEDGER_NAME).exists()
    assert _verify(tmp_path)[0] == 0


def test_a_torn_tail_is_truncated_without_losing_committed_work(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 3)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    seg.write_bytes(records_bytes(seg)[:-10])  # the last COMMIT cut short: never acknowledged
    assert _verify(tmp_path)[0] == 2
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "truncated_tail" and not report.damaged
        assert report.truncated_bytes > 0
        assert report.lost_transactions == [] and report.in_doubt_transactions == []
        assert report.rolled_back == [order[-1]]  # its BEGIN and DATA were there: ABORT written
        assert report.quarantined == [] and report.loss_id is None
        assert wal.recovery.committed == 2
        assert wal.unacknowledged_losses() == []
    assert _verify(tmp_path)[0] == 0


def test_a_byte_flip_mid_segment_is_named_recorded_and_kept_until_acknowledged(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 11)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    victim = _records_of(seg, order[5])[1]  # the sixth transaction's first DATA
    _flip(seg, victim.offset + HEADER_SIZE + 2)  # in its payload: SHA-256 mismatch
    damaged = seg.read_bytes()

    code, doc = _verify(tmp_path)
    assert code == 1 and set(doc["lost_transactions"]) == set(order[5:])
    assert doc["outcome_on_recovery"] == "damage_quarantined"

    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined" and report.damaged
        assert report.base_checkpoint is None  # nothing was restored from a checkpoint
        assert report.lost_transactions == order[5:] and report.lost_count == 6
        assert report.in_doubt_transactions == [] and report.rolled_back == []
        assert report.committed == 5
        [part] = report.quarantined
        assert (part.segment, part.start, part.end) == (seg.name, victim.offset, len(damaged))
        assert (tmp_path / part.file).read_bytes() == damaged[victim.offset :]
        assert report.quarantined_bytes == part.size
        [loss] = wal.unacknowledged_losses()
        assert loss.loss_id == report.loss_id
        assert loss.lost_transactions == order[5:] and loss.quarantined == [part]
        assert loss.outcome == "damage_quarantined"
        assert any("payload SHA-256 mismatch" in p for p in loss.problems)
        doc = json.loads(json.dumps(report.to_dict()))
        assert doc["lost_count"] == 6 and doc["quarantined"][0]["file"] == part.file
        # The log goes on after the damage.
        txn = wal.begin(ctx(99))
        txn.data(b"after the damage")
        txn.commit()

    # A second restart: the log is clean now, the loss is not forgotten.
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.outcome == "clean"
        assert [t.txn_id for t in wal.recovered_transactions()] == order[:5] + [txn.txn_id]
        assert [x.loss_id for x in wal.unacknowledged_losses()] == [loss.loss_id]
    code, doc = _verify(tmp_path)
    assert code == 1 and doc["problems"] == [] and doc["lost_transactions"] == []
    assert [x["loss_id"] for x in doc["unacknowledged_losses"]] == [loss.loss_id]
    text = runner.invoke(wal_app, ["verify", str(tmp_path)])
    assert text.exit_code == 1 and loss.loss_id in text.output and order[5] in text.output
    inspect = json.loads(runner.invoke(wal_app, ["inspect", str(tmp_path), "--json"]).output)
    assert [x["loss_id"] for x in inspect["losses"]["unacknowledged"]] == [loss.loss_id]

    with Wal.open(tmp_path) as wal:
        # While the service holds the log, the CLI is refused and points at the service.
        refused = runner.invoke(wal_app, ["acknowledge", str(tmp_path), "--by", "ops"])
        assert refused.exit_code == 1
        with pytest.raises(WalStateError, match="name"):
            wal.acknowledge_losses(" ")
        [done] = wal.acknowledge_losses("alice")
        assert done.loss_id == loss.loss_id and done.acknowledged_by == "alice"
        assert wal.unacknowledged_losses() == []
        assert wal.acknowledge_losses("alice") == []
    with Wal.open(tmp_path) as wal:
        assert wal.unacknowledged_losses() == []  # durably
    ledger = LossLedger(tmp_path)
    [kept] = ledger.acknowledged()
    assert (kept.loss_id, kept.acknowledged_by) == (loss.loss_id, "alice") and kept.acknowledged_at
    [line] = ledger.audit()
    assert line["by"] == "alice" and line["loss_ids"] == [loss.loss_id]
    assert line["lost_transactions"] == 6
    assert (tmp_path / part.file).exists()  # acknowledging never deletes quarantined bytes
    assert _verify(tmp_path)[0] == 0


def test_a_damaged_commit_header_leaves_its_transaction_in_doubt(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 6)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    commit = _records_of(seg, order[2])[-1]
    assert commit.entry_type == EntryType.COMMIT
    _flip(seg, commit.offset + 40)  # its sequence field: header CRC mismatch
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined"
        assert "header CRC-32C mismatch" in report.problems[0].reason
        # Its COMMIT is unreadable: it may have been acknowledged, so it is not called rolled back.
        assert report.in_doubt_transactions == [order[2]] and report.rolled_back == []
        assert report.lost_transactions == order[3:]
        assert [t.txn_id for t in wal.recovered_transactions()] == order[:2]
        [loss] = wal.unacknowledged_losses()
        assert loss.in_doubt_transactions == [order[2]] and loss.lost_transactions == order[3:]


def test_a_damaged_commit_at_the_tail_is_quarantined_not_cut_off(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 3)
    last = list(written)[-1]
    [(_, seg)] = list_segments(tmp_path)
    end = len(records_bytes(seg))
    _flip(seg, end - 1)  # the last COMMIT is whole, its payload damaged: it may have been acknowledged
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined"
        assert report.lost_transactions == [last] and report.truncated_bytes == 0
        [part] = report.quarantined
        commit = scan_segment(1, tmp_path / part.file).records  # nothing valid: it is damaged
        assert commit == [] and part.start == end - (256 + 64)
        assert wal.unacknowledged_losses()[0].lost_transactions == [last]


def test_a_commit_with_a_damaged_header_at_the_tail_is_in_doubt(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 3)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    commit = scan_segment(1, seg).records[-1]
    _flip(seg, commit.offset + 40)  # whole, with zeros after, but its header CRC fails
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined"
        assert report.in_doubt_transactions == [order[-1]] and report.lost_transactions == []
        assert report.quarantined[0].start == commit.offset and report.truncated_bytes == 0
        assert report.committed == 2 and wal.unacknowledged_losses()


def test_a_damaged_data_record_at_the_tail_never_committed(tmp_path: Path) -> None:
    write_txns(tmp_path, 2)
    with Wal.open(tmp_path) as wal:
        txn = wal.begin(ctx(7))
        txn.data(b"flushed, never committed")
        txn.flush()
    [(_, seg)] = list_segments(tmp_path)
    data_record = scan_segment(1, seg).records[-1]
    _flip(seg, data_record.offset + HEADER_SIZE)  # its payload: nothing follows it
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "truncated_tail" and not report.damaged
        assert report.rolled_back == [txn.txn_id] and report.in_doubt_transactions == []
        assert report.lost_transactions == [] and wal.unacknowledged_losses() == []


def test_a_missing_segment_names_losses_and_transactions_in_doubt(tmp_path: Path) -> None:
    write_txns(tmp_path, 60, max_wal_size_mb=0.01)
    segments = list_segments(tmp_path)
    gone = segments[2][1]
    gone.unlink()
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "damage_quarantined"
        assert report.problems[0].kind == "missing_segment"
        assert report.lost_transactions
        assert {q.segment for q in report.quarantined} == {p.name for _, p in segments[3:]}
        assert all((tmp_path / q.file).exists() for q in report.quarantined)
        [loss] = wal.unacknowledged_losses()
        assert loss.lost_transactions == report.lost_transactions


def test_damage_after_a_checkpoint_is_restored_from_that_checkpoint(tmp_path: Path) -> None:
    wal = Wal.open(tmp_path, WalOptions(checkpoint_interval_compilations=2))
    journal = JobJournal(wal)
    for i in range(2):
        journal.enqueue(f"j{i}", f"a{i}", 1, b"r")
        journal.started(f"j{i}")
        journal.finished(f"j{i}", pb.CompilationResult(artifact_id=f"a{i}", success=True))
    checkpoint = wal.last_checkpoint
    assert checkpoint is not None
    later = []
    for i in range(4):
        txn = wal.begin(ctx(i))
        txn.data(f"later-{i}".encode())
        txn.commit()
        later.append(txn.txn_id)
    wal.close()
    seg = tmp_path / checkpoint
    victim = [r for r in scan_segment(2, seg).records if r.txn_id.hex() == later[1]][1]
    _flip(seg, victim.offset + HEADER_SIZE)
    with Wal.open(tmp_path) as wal:
        report = wal.recovery
        assert report.outcome == "restored_from_checkpoint"
        assert report.base_checkpoint == checkpoint
        assert report.lost_transactions == later[1:]
        state = JobJournal(wal).state()
        assert set(state.completed) == {"a0", "a1"}  # the checkpoint's state is intact


def test_a_loss_is_recorded_before_any_byte_moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = write_txns(tmp_path, 5)
    order = list(written)
    [(_, seg)] = list_segments(tmp_path)
    _flip(seg, _records_of(seg, order[1])[1].offset + HEADER_SIZE)
    before = seg.read_bytes()

    def crash(*args: object) -> None:
        raise OSError(5, "the process dies before quarantining")

    with monkeypatch.context() as patch:
        patch.setattr(log_module, "repair", crash)
        with pytest.raises(OSError):
            Wal.open(tmp_path)
    assert seg.read_bytes() == before  # nothing moved...
    [pending] = LossLedger(tmp_path).unacknowledged()  # ...and yet the loss is on record
    assert pending.lost_transactions == order[1:]
    with Wal.open(tmp_path) as wal:  # the next start does the same recovery again
        assert wal.recovery.lost_transactions == order[1:]
        assert len(wal.unacknowledged_losses()) == 2
        assert all((tmp_path / q.file).exists() for q in wal.recovery.quarantined)


def test_damage_left_in_the_log_is_recorded_once(tmp_path: Path) -> None:
    # One transaction whose COMMIT carries a wrong Merkle root: every byte validates.
    tid, parts, offset = bytes(range(16)), [], 0
    for seq, (etype, payload) in enumerate(
        [(EntryType.BEGIN, b"ctx"), (EntryType.DATA, b"d"), (EntryType.COMMIT, b"0" * 64)], 1
    ):
        parts.append(pack_record(txn_id=tid, sequence=seq, epoch=0, timestamp_ns=0,
                                 entry_type=etype, payload=payload,
                                 payload_sha256=hashlib.sha256(payload).digest(), offset=offset))
        offset += HEADER_SIZE + len(payload)
    (tmp_path / "wal-00000001.seg").write_bytes(b"".join(parts))
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.outcome == "damage_quarantined" and wal.recovery.lost_count == 1
        assert wal.recovery.quarantined == []  # its bytes validate: nothing to move
        [loss] = wal.unacknowledged_losses()
        wal.acknowledge_losses("bob")
    with Wal.open(tmp_path) as wal:
        assert wal.recovery.lost_count == 1 and wal.recovery.loss_id is None
        assert wal.unacknowledged_losses() == []  # the same damage, already acknowledged
    assert [x.loss_id for x in LossLedger(tmp_path).acknowledged()] == [loss.loss_id]


def test_quarantined_files_no_loss_names_are_reported_and_acknowledged(tmp_path: Path) -> None:
    write_txns(tmp_path, 2)
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "wal-00000007.seg").write_bytes(b"left here")
    code, doc = _verify(tmp_path)
    assert code == 1 and doc["unaccounted_quarantine"] == ["quarantine/wal-00000007.seg"]
    done = runner.invoke(wal_app, ["acknowledge", str(tmp_path), "--by", "carol", "--json"])
    assert done.exit_code == 0, done.output
    [loss] = json.loads(done.output)
    assert loss["outcome"] == "unaccounted_quarantine" and loss["acknowledged_by"] == "carol"
    assert _verify(tmp_path)[0] == 0
    # At start-up the service records such files itself.
    (tmp_path / "quarantine" / "wal-00000008.seg").write_bytes(b"another")
    with Wal.open(tmp_path) as wal:
        [found] = wal.unacknowledged_losses()
        assert [q.file for q in found.quarantined] == ["quarantine/wal-00000008.seg"]


def test_acknowledging_by_id_leaves_the_others(tmp_path: Path) -> None:
    write_txns(tmp_path, 1)
    (tmp_path / "quarantine").mkdir()
    ledger = LossLedger(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "quarantine" / name).write_bytes(b"x")
        ledger.record_unaccounted()
    first, second = ledger.unacknowledged()
    with pytest.raises(WalStateError, match="no unacknowledged loss"):
        ledger.acknowledge("dan", ["loss-nope"])
    result = runner.invoke(wal_app, ["acknowledge", str(tmp_path), "--by", "dan", "--id", first.loss_id])
    assert result.exit_code == 0, result.output
    assert [x.loss_id for x in ledger.unacknowledged()] == [second.loss_id]


def test_an_unreadable_ledger_stops_the_open(tmp_path: Path) -> None:
    write_txns(tmp_path, 1)
    (tmp_path / LEDGER_NAME).write_text("{not json")
    with pytest.raises(WalCorruption, match="loss ledger"):
        Wal.open(tmp_path)
    code, doc = _verify(tmp_path)
    assert code == 1 and "loss ledger" in doc["loss_ledger_error"]
