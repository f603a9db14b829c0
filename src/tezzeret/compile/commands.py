"""CLI commands of the compile stage: `tezzeret compile` and `tezzeret inspect`.

Owns argument handling and presentation only (a Rich progress display and tables for people,
`--json` for machines). Must never hold compile or verification logic: everything goes through
`tezzeret.compile`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tezzeret.errors import TezzeretError
from tezzeret.leyline import Strategy, codec, pb
from tezzeret.progress import progress_display

JSON_OPT = typer.Option(False, "--json", help="Print JSON for machines instead of tables.")


def _shape(entry: pb.ArtifactEntry, t: pb.ConcreteTensor) -> list[int | str]:
    """The input's shape, with a dynamic entry's batch dims as `min..max`."""
    span = f"{entry.batch_min}..{entry.batch_max}"
    return [span if entry.dynamic_batch and d in t.batch_dims else int(x) for d, x in enumerate(t.shape)]


def _entry_json(entry: pb.ArtifactEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "inputs": [
            {"shape": _shape(entry, t), "dtype": pb.DType.Name(t.dtype).removeprefix("DTYPE_").lower()}
            for t in entry.inputs
        ],
        "grad_mode": "train" if entry.grad_enabled else "no_grad",
        "verified": entry.verified,
        "serve_compiled": entry.serve_compiled,
        "speedup_fwd": round(entry.speedup_fwd, 3),
        "speedup_train": round(entry.speedup_train, 3),
        "max_abs_error": entry.max_abs_error,
        **({"drop_reason": entry.drop_reason} if entry.drop_reason else {}),
        **({"batch_range": [entry.batch_min, entry.batch_max], "verified_batches": list(entry.verified_batches)}
           if entry.dynamic_batch else {}),
        **({"notes": entry.notes} if entry.notes else {}),
    }


def manifest_json(manifest: pb.CompiledKernelArtifact, path: Path, signed: bool) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(codec.to_json(manifest))
    doc.update(
        {
            "path": str(path),
            "artifact_id": manifest.artifact_id,
            "strategy": pb.CompilationStrategy.Name(manifest.strategy).removeprefix("STRATEGY_").lower(),
            "compile_ms": round(manifest.stats.compile_ms, 1),
            "entries": [_entry_json(e) for e in manifest.entries],
            "dropped_entries": [_entry_json(e) for e in manifest.stats.dropped_entries],
            "signed": signed,
        }
    )
    return doc


def _entries_table(manifest: pb.CompiledKernelArtifact, title: str) -> Table:
    table = Table(title=title)
    for col in ("entry", "inputs", "mode", "verified", "serves", "fwd ×", "train ×", "max |err|", "note"):
        table.add_column(col, overflow="fold")
    rows = [(e, "") for e in manifest.entries] + [(e, "dropped") for e in manifest.stats.dropped_entries]
    for entry, note in rows:
        inputs = ", ".join(
            f"[{', '.join(map(str, _shape(entry, t)))}] {pb.DType.Name(t.dtype).removeprefix('DTYPE_').lower()}"
            for t in entry.inputs
        )
        serves = ("compiled" if entry.serve_compiled else "eager") if entry.verified else "-"
        table.add_row(
            entry.key, escape(inputs), "train" if entry.grad_enabled else "no_grad",
            "[green]yes[/]" if entry.verified else "[red]no[/]", serves,
            f"{entry.speedup_fwd:.2f}", f"{entry.speedup_train:.2f}", f"{entry.max_abs_error:.2g}",
            escape(note + (f": {entry.drop_reason}" if entry.drop_reason else "") + (entry.notes or "")),
        )
    return table


def _summary(manifest: pb.CompiledKernelArtifact, path: Path, signed: bool) -> Table:
    table = Table(show_header=False, title=manifest.artifact_id)
    rows = [
        ("path", str(path)),
        ("blueprint", f"{manifest.blueprint.metadata.name} {manifest.blueprint_digest[:16]}"),
        ("strategy", pb.CompilationStrategy.Name(manifest.strategy)),
        ("target", manifest.target),
        ("torch / python", f"{manifest.torch_version} / {manifest.python_version}"),
        ("toolchain", manifest.toolchain_hash[:16]),
        ("payload", f"{manifest.payload_size:,} bytes, sha256 {manifest.payload_sha256[:16]}"),
        ("compile", f"{manifest.stats.compile_ms:,.0f} ms, peak RSS {manifest.stats.peak_rss_bytes / 2**20:,.0f} MiB"),
        ("signed", "yes" if signed else "no"),
    ]
    for k, v in rows:
        table.add_row(k, escape(v))
    return table


def compile_cmd(
    file: Path = typer.Argument(..., help="Blueprint file (JSON or protobuf bytes)."),
    strategy: Strategy = typer.Option(Strategy.FAST, "--strategy", "-s", case_sensitive=False, help="Compilation tier."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory the artifact is written to."),
    batch: list[int] = typer.Option([], "--batch", "-b", help="Batch sizes to build entries for (repeatable)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Inductor cache dir for this compile."),
    target: str = typer.Option("cpu", "--target", help="cpu, or cuda (this process's current GPU)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Compile one blueprint into a verified artifact (in this process)."""
    from tezzeret.compile.compile import compile_blueprint

    err = Console(stderr=True)
    try:
        with progress_display(err, transient=as_json, disable=as_json and not err.is_terminal) as progress:
            task = progress.add_task(f"{strategy.value}: preparing", total=None)

            def report(what: str, done: int, total: int) -> None:
                progress.update(task, description=f"{strategy.value}: {what}", completed=done, total=total)

            outcome = compile_blueprint(
                file, strategy.value, out_dir, batch_sizes=batch or None, cache_dir=cache_dir, progress=report,
                target=target,
            )
    except TezzeretError as exc:
        if as_json:
            typer.echo(json.dumps({"file": str(file), "error": exc.to_dict()}))
        else:
            err.print(f"[red]{escape(exc.code)}[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(manifest_json(outcome.manifest, outcome.path, False), indent=2))
        return
    console = Console()
    console.print(_summary(outcome.manifest, outcome.path, False))
    console.print(_entries_table(outcome.manifest, "entries"))


def inspect_cmd(
    artifact_path: Path = typer.Argument(..., help="An artifact file (.tzart)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Show an artifact's manifest, entries and verification record (reads no payload)."""
    from tezzeret.artifact.file import read_manifest

    try:
        manifest, signature, _ = read_manifest(artifact_path)
    except TezzeretError as exc:
        if as_json:
            typer.echo(json.dumps({"file": str(artifact_path), "error": exc.to_dict()}))
        else:
            Console(stderr=True).print(f"[red]{escape(exc.code)}[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    signed = bool(signature.signature)
    if as_json:
        typer.echo(json.dumps(manifest_json(manifest, artifact_path, signed), indent=2))
        return
    console = Console()
    console.print(_summary(manifest, artifact_path, signed))
    console.print(_entries_table(manifest, "entries"))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command("compile")(compile_cmd)
    app.command("inspect")(inspect_cmd)
