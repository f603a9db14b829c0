"""CLI commands of the WAL: `tezzeret wal inspect|verify|recover|acknowledge DIR`.

Owns: the command-line face of `tezzeret.wal`. `inspect` lists records and recorded losses (Rich
table or `--json`); `verify` validates without changing anything and exits 0 only for a clean log
(1: damage, a possibly acknowledged commit lost or in doubt, unacknowledged losses or quarantined
files no loss names; 2: only a torn tail, which `recover` truncates); `recover` runs the same
recovery the service runs at start-up; `acknowledge` records that a person has seen the losses.
Must never change a WAL except through `recover` and `acknowledge` (the loss ledger only).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tezzeret.wal.errors import WalError
from tezzeret.wal.format import EntryType, Record
from tezzeret.wal.losses import Loss, LossLedger
from tezzeret.wal.reader import list_segments, scan_segment
from tezzeret.wal.recovery import analyze

wal_app = typer.Typer(name="wal", help="Inspect, verify and recover a write-ahead log.",
                      no_args_is_help=True)

DirArg = typer.Argument(..., help="The WAL directory (wal.path, default <state_dir>/wal).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of tables.")


def _require_dir(directory: Path) -> None:
    if not directory.is_dir():
        typer.echo(f"WAL_NOT_FOUND: {directory} is not a directory", err=True)
        raise typer.Exit(2)


def _losses(directory: Path) -> dict[str, Any]:
    """The loss ledger as one document: unacknowledged and acknowledged losses, the audit lines,
    quarantined files no loss names, or the error that keeps the ledger from being read."""
    ledger = LossLedger(directory)
    try:
        return {
            "unacknowledged": [loss.to_dict() for loss in ledger.unacknowledged()],
            "acknowledged": [loss.to_dict() for loss in ledger.acknowledged()],
            "audit": ledger.audit(),
            "unaccounted_quarantine": ledger.unaccounted_files(),
            "error": None,
        }
    except WalError as exc:
        return {"unacknowledged": [], "acknowledged": [], "audit": [],
                "unaccounted_quarantine": [], "error": str(exc)}


def _loss_lines(losses: dict[str, Any], directory: Path) -> list[str]:
    lines = []
    if losses["error"]:
        lines.append(f"loss ledger unreadable: {losses['error']}")
    for raw in losses["unacknowledged"]:
        loss = Loss.from_dict(raw)
        lines.append(f"unacknowledged loss {loss.describe()}")
        lines += [f"  lost transaction {t}" for t in loss.lost_transactions]
        lines += [f"  in doubt transaction {t}" for t in loss.in_doubt_transactions]
    for name in losses["unaccounted_quarantine"]:
        lines.append(f"quarantined file no loss names: {directory / name}")
    if losses["unacknowledged"] or losses["unaccounted_quarantine"]:
        lines.append(f"review them, then: tezzeret wal acknowledge {directory} --by NAME")
    return lines


@wal_app.command()
def inspect(directory: Path = DirArg, as_json: bool = JsonOpt) -> None:
    """List every record of every segment, and where validation stops."""
    _require_dir(directory)
    rows = []
    stops = []
    segments = []
    # (segment name, record) for the table; `rows` is their JSON form.
    found: list[tuple[str, Record]] = []
    for index, path in list_segments(directory):
        scan = scan_segment(index, path)
        # A clean segment's records may be followed by zeros the writer preallocated.
        segments.append({"segment": path.name, "file_size": scan.size, "records_end": scan.stop,
                         "preallocated": scan.size - scan.stop if scan.clean else 0})
        for record in scan.records:
            h = record
            found.append((path.name, record))
            rows.append({
                "segment": path.name, "offset": record.offset, "sequence": h.sequence,
                "txn_id": h.txn_id.hex(), "type": EntryType(h.entry_type).name, "epoch": h.epoch,
                "timestamp_ns": h.timestamp_ns, "payload_size": h.payload_size,
                "payload_sha256": h.payload_sha256.hex(),
            })
        if scan.error is not None:
            stops.append({"segment": path.name, "offset": scan.stop,
                          "reason": scan.error.reason, "bytes_after": scan.size - scan.stop})
    losses = _losses(directory)
    if as_json:
        typer.echo(json.dumps({"records": rows, "invalid": stops, "segments": segments,
                               "losses": losses}, indent=2))
        return
    table = Table(title=f"WAL {directory}")
    for col in ("segment", "offset", "seq", "txn", "type", "epoch", "payload"):
        table.add_column(col)
    for name, h in found:
        table.add_row(name, str(h.offset), str(h.sequence), h.txn_id.hex()[:12],
                      EntryType(h.entry_type).name, str(h.epoch), str(h.payload_size))
    console = Console()
    console.print(table)
    for seg in segments:
        console.print(f"{seg['segment']}: records end at {seg['records_end']}, "
                      f"{seg['preallocated']} zero bytes preallocated after them")
    for s in stops:
        console.print(f"[yellow]invalid from {s['segment']} offset {s['offset']}[/yellow]: "
                      f"{s['reason']} ({s['bytes_after']} bytes after)")
    for raw in losses["acknowledged"]:
        console.print(f"acknowledged loss {raw['loss_id']} by {raw['acknowledged_by']} at "
                      f"{raw['acknowledged_at']}: {raw['lost_count']} committed transaction(s) lost",
                      soft_wrap=True)
    for line in _loss_lines(losses, directory):
        console.print(line, style="yellow", soft_wrap=True, markup=False)


@wal_app.command()
def verify(directory: Path = DirArg, as_json: bool = JsonOpt) -> None:
    """Validate every record and read the loss ledger; change nothing. Exit 0 only if clean."""
    _require_dir(directory)
    analysis = analyze(directory)
    losses = _losses(directory)
    problems = [p.describe() for p in analysis.problems]
    unresolved = bool(losses["unacknowledged"] or losses["unaccounted_quarantine"]
                      or losses["error"])
    status = 1 if (analysis.damaged or unresolved) else (2 if analysis.torn_tail else 0)
    if as_json:
        typer.echo(json.dumps({
            "ok": status == 0, "exit_code": status, "problems": problems,
            "outcome_on_recovery": analysis.outcome,
            "committed": len(analysis.committed), "open": [t.txn_id for t in analysis.open],
            "lost_transactions": analysis.lost, "in_doubt_transactions": analysis.in_doubt,
            "base_checkpoint": analysis.base_checkpoint,
            "unacknowledged_losses": losses["unacknowledged"],
            "unaccounted_quarantine": losses["unaccounted_quarantine"],
            "loss_ledger_error": losses["error"],
        }, indent=2))
    else:
        # Plain lines (no wrapping): harnesses grep them for offsets and transaction ids.
        for line in problems:
            typer.echo(line)
        if analysis.torn_tail and not analysis.damaged:
            typer.echo("torn tail (expected after a crash): `tezzeret wal recover` truncates it")
        for txn in analysis.lost:
            typer.echo(f"lost transaction {txn}")
        for txn in analysis.in_doubt:
            typer.echo(f"in doubt transaction {txn} (open at the damage; it may have committed)")
        if analysis.damaged:
            typer.echo(f"damage: `tezzeret wal recover {directory}` moves it to quarantine and "
                       "records the loss")
        for line in _loss_lines(losses, directory):
            typer.echo(line)
        typer.echo(f"{len(analysis.committed)} committed, {len(analysis.open)} open"
                   + ("" if status else ", no damage, no unacknowledged losses"))
    raise typer.Exit(status)


@wal_app.command()
def recover(
    directory: Path = DirArg,
    as_json: bool = JsonOpt,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML settings file."),
) -> None:
    """Run start-up recovery: truncate a torn tail, quarantine damage, abort open transactions."""
    from tezzeret.config import load_settings
    from tezzeret.errors import TezzeretError
    from tezzeret.wal.log import Wal

    _require_dir(directory)
    try:
        wal = Wal.open(directory, load_settings(config).wal)
    except TezzeretError as exc:
        typer.echo(f"{exc.code}: {exc}", err=True)
        raise typer.Exit(1) from None
    report = wal.recovery
    wal.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(f"outcome: {report.outcome}; committed {report.committed}, aborted "
                   f"{report.aborted}, truncated {report.truncated_bytes} bytes, quarantined "
                   f"{report.quarantined_bytes} bytes in {report.duration_ms:.1f} ms")
        for problem in report.problems:
            typer.echo(problem.describe())
        for txn in report.lost_transactions:
            typer.echo(f"lost transaction {txn}")
        for txn in report.in_doubt_transactions:
            typer.echo(f"in doubt transaction {txn} (rolled back; it may have committed)")
        for part in report.quarantined:
            typer.echo(f"quarantined {part.segment} bytes {part.start}-{part.end} to "
                       f"{directory / part.file}")
        if report.loss_id:
            typer.echo(f"recorded as {report.loss_id}: review, then "
                       f"`tezzeret wal acknowledge {directory} --by NAME`")
    raise typer.Exit(0)


@wal_app.command()
def acknowledge(
    directory: Path = DirArg,
    by: str = typer.Option(..., "--by", help="Who has reviewed the losses (kept in the audit)."),
    loss_ids: Optional[list[str]] = typer.Option(
        None, "--id", help="Acknowledge only this loss (repeatable); default: all of them."),
    as_json: bool = JsonOpt,
) -> None:
    """Record who reviewed the unacknowledged losses (refused while the forge has the WAL open)."""
    from tezzeret.wal.log import LOCK_NAME

    _require_dir(directory)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            typer.echo(f"WAL_LOCKED: a running process has the WAL in {directory} open; "
                       "acknowledge through it (the forge's admin route), or stop it first", err=True)
            raise typer.Exit(1) from None
        ledger = LossLedger(directory)
        try:
            if not loss_ids:
                # Files verify listed as quarantined without a loss are part of what was reviewed.
                ledger.record_unaccounted()
            done = ledger.acknowledge(by, loss_ids or None)
        except WalError as exc:
            typer.echo(f"{exc.code}: {exc}", err=True)
            raise typer.Exit(1) from None
    finally:
        os.close(fd)
    if as_json:
        typer.echo(json.dumps([loss.to_dict() for loss in done], indent=2))
    elif not done:
        typer.echo("no unacknowledged losses")
    else:
        for loss in done:
            typer.echo(f"acknowledged {loss.describe()}")
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    """Add `tezzeret wal …` to `app`."""
    app.add_typer(wal_app, name="wal")
