"""`tezzeret wal inspect|verify|recover` on real WAL directories."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner
from wal_helpers import records_bytes, write_txns

from tezzeret.wal.commands import wal_app
from tezzeret.wal.reader import list_segments

runner = CliRunner()


def test_inspect_lists_every_record(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 3)
    result = runner.invoke(wal_app, ["inspect", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [r["type"] for r in doc["records"]] == ["BEGIN", "DATA", "DATA", "COMMIT"] * 3
    assert {r["txn_id"] for r in doc["records"]} == set(written)
    assert doc["invalid"] == []
    [seg] = doc["segments"]
    last = doc["records"][-1]
    assert seg["records_end"] == last["offset"] + 256 + last["payload_size"]
    assert seg["preallocated"] == seg["file_size"] - seg["records_end"] > 0
    table = runner.invoke(wal_app, ["inspect", str(tmp_path)])
    assert table.exit_code == 0 and "COMMIT" in table.output and "zero bytes preallocated" in table.output


def test_verify_names_offset_and_transaction_then_recover_fixes(tmp_path: Path) -> None:
    written = write_txns(tmp_path, 3)
    assert runner.invoke(wal_app, ["verify", str(tmp_path)]).exit_code == 0
    [(_, seg)] = list_segments(tmp_path)
    data = bytearray(seg.read_bytes())
    second = list(written)[1]
    offset = data.find(bytes.fromhex(second)) - 16  # the txn id field starts 16 bytes in
    data[offset + 256 + 3] ^= 0x40  # inside its BEGIN payload
    seg.write_bytes(bytes(data))
    result = runner.invoke(wal_app, ["verify", str(tmp_path)])
    assert result.exit_code == 1
    assert f"offset {offset}" in result.output and second in result.output.replace("\n", "")
    recovered = runner.invoke(wal_app, ["recover", str(tmp_path), "--json"])
    assert recovered.exit_code == 0, recovered.output
    report = json.loads(recovered.output)
    assert report["outcome"] == "damage_quarantined"
    assert set(report["lost_transactions"]) == set(list(written)[1:])
    # The log itself is clean now, but its losses stand until someone acknowledges them.
    assert runner.invoke(wal_app, ["verify", str(tmp_path)]).exit_code == 1
    assert runner.invoke(wal_app, ["acknowledge", str(tmp_path), "--by", "ops"]).exit_code == 0
    assert runner.invoke(wal_app, ["verify", str(tmp_path)]).exit_code == 0


def test_torn_tail_exits_2_until_recovered(tmp_path: Path) -> None:
    write_txns(tmp_path, 2)
    [(_, seg)] = list_segments(tmp_path)
    seg.write_bytes(records_bytes(seg)[:-10])
    result = runner.invoke(wal_app, ["verify", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["problems"][0].startswith("torn_tail")
    assert runner.invoke(wal_app, ["recover", str(tmp_path)]).exit_code == 0
    assert runner.invoke(wal_app, ["verify", str(tmp_path)]).exit_code == 0


def test_registered_on_the_tezzeret_command(tmp_path: Path) -> None:
    write_txns(tmp_path, 1)
    tezzeret = Path(sys.executable).with_name("tezzeret")
    proc = subprocess.run([str(tezzeret), "wal", "verify", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    missing = subprocess.run([str(tezzeret), "wal", "verify", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "not a directory" in missing.stderr


def test_wal_imports_no_torch_and_no_later_stage() -> None:
    code = ("import sys, tezzeret.wal, tezzeret.wal.commands; "
            "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[:2] in "
            "[['tezzeret', s] for s in ('forge', 'api', 'compile', 'sandbox', 'loader', 'store', "
            "'bus', 'resilience', 'blueprint')]]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
