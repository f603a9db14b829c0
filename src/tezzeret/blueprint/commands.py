"""CLI commands of the blueprint stage: `tezzeret validate`, `blueprints`, `digest` and `ops`.

Owns only argument handling and presentation (Rich tables for people, `--json` for machines).
It must never hold validation logic of its own: everything goes through `tezzeret.blueprint`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from tezzeret.blueprint.analysis import analyze
from tezzeret.blueprint.attrs import AttrSpec, Required
from tezzeret.blueprint.digest import digest_from_analysis
from tezzeret.blueprint.errors import BlueprintRejected
from tezzeret.blueprint.ir import parse_blueprint
from tezzeret.blueprint.library import library_paths
from tezzeret.blueprint.ops import ALIASES, OPS
from tezzeret.blueprint.validate import BlueprintSummary, summarize

FILES = typer.Argument(..., help="Blueprint files: JSON (leyline.BlueprintIR form) or protobuf bytes.")
JSON_OPT = typer.Option(False, "--json", help="Print JSON for machines instead of a table.")


def _check(path: Path) -> BlueprintSummary:
    try:
        return summarize(analyze(parse_blueprint(path)))
    except BlueprintRejected as exc:
        raise exc.with_source(str(path)) from None


def _shape(shape: tuple[int | str, ...]) -> str:
    return escape("[" + ", ".join(str(s) for s in shape) + "]")


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def validate_cmd(files: list[Path] = FILES, as_json: bool = JSON_OPT) -> None:
    """Validate blueprint files; exit 0 only if every one is valid."""
    results: list[dict[str, object]] = []
    for path in files:
        try:
            summary = _check(path)
            results.append({"file": str(path), "valid": True, "summary": summary.to_dict()})
        except BlueprintRejected as exc:
            results.append({"file": str(path), "valid": False, "error": exc.to_dict()})
    ok = all(r["valid"] for r in results)
    if as_json:
        typer.echo(json.dumps({"valid": ok, "results": results}, indent=2))
    else:
        console = Console()
        table = Table(title="Blueprint validation")
        for col in ("file", "result", "code", "node", "field", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            if r["valid"]:
                s = r["summary"]
                assert isinstance(s, dict)
                table.add_row(str(r["file"]), "[green]valid[/]", "", "", "",
                              f"{s['parameters']:,} params, {_human(float(s['flops']))} FLOPs, digest {str(s['digest'])[:16]}")
            else:
                e = r["error"]
                assert isinstance(e, dict)
                table.add_row(str(r["file"]), "[red]rejected[/]", str(e["code"]), str(e["node"] or ""), str(e["field"] or ""),
                              escape(str(e["message"])))
        console.print(table)
    raise typer.Exit(0 if ok else 1)


def blueprints_cmd(
    as_json: bool = JSON_OPT,
    check: bool = typer.Option(False, "--check", help="Also build each blueprint and run forward+backward at every declared batch."),
) -> None:
    """List the built-in library: name, category, parameters, FLOPs, digest."""
    rows: list[dict[str, object]] = []
    # The table's cells, made from the typed results alongside the JSON rows.
    cells: list[list[str]] = []
    failed = False
    for path in library_paths():
        try:
            s = _check(path)
            row: dict[str, object] = {"file": path.name, **s.to_dict()}
            lo, hi = s.batch_range
            outs = ", ".join(_shape(o.shape) for o in s.outputs)
            line = [s.name, s.category, f"{s.parameters:,}", _human(float(s.flops)), f"{lo}..{hi}", outs, s.digest[:16]]
            if check:
                from tezzeret.blueprint.selfcheck import exercise

                result = exercise(parse_blueprint(path))
                row["check"] = result.to_dict()
                failed = failed or not result.ok
                line.append("[green]ok[/] " + "/".join(f"{ms:.0f}" for ms in result.forward_backward_ms) + " ms"
                            if result.ok else f"[red]FAILED[/] {escape(str(result.error))[:60]}")
            rows.append(row)
            cells.append(line)
        except BlueprintRejected as exc:
            failed = True
            rows.append({"file": path.name, "name": path.stem, "error": exc.to_dict()})
            cells.append([path.stem, "[red]INVALID[/]", "", "", "", exc.code, exc.detail[:60]])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"Built-in blueprints ({len(rows)})")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("name", "left"), ("category", "left"), ("params", "right"), ("FLOPs @ example", "right"),
            ("batch", "right"), ("outputs", "left"), ("digest", "left"),
        )
        for col, justify in columns:
            table.add_column(col, justify=justify)
        if check:
            table.add_column("fwd+bwd")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
    raise typer.Exit(1 if failed else 0)


def digest_cmd(file: Path = typer.Argument(..., help="A blueprint file."), as_json: bool = JSON_OPT) -> None:
    """Print a blueprint's canonical digest (SHA-256 over its semantics only)."""
    try:
        value = digest_from_analysis(analyze(parse_blueprint(file)))
    except BlueprintRejected as exc:
        exc = exc.with_source(str(file))
        if as_json:
            typer.echo(json.dumps({"file": str(file), "error": exc.to_dict()}))
        else:
            Console(stderr=True).print(f"[red]rejected[/] {exc}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"file": str(file), "digest": value}) if as_json else value)


def _attr_doc(spec: AttrSpec) -> dict[str, object]:
    default = None if isinstance(spec.default, Required) else spec.default
    return {
        "kind": spec.kind,
        "required": isinstance(spec.default, Required),
        "default": list(default) if isinstance(default, tuple) else default,
        # Bounds say whether they are allowed themselves: {"min": 0, "min_exclusive": true} is > 0.
        "min": spec.lo,
        "min_exclusive": spec.lo is not None and spec.lo_open,
        "max": spec.hi,
        "max_exclusive": spec.hi is not None and spec.hi_open,
        "choices": list(spec.choices) if spec.choices else None,
        "restates_input": spec.redundant,
        "doc": spec.doc,
    }


def _attr_text(key: str, spec: AttrSpec) -> str:
    """One attribute of `tezzeret ops` as a person reads it: `p: float = 0.1 in [0, 1)`."""
    text = f"{key}: {spec.kind}"
    if not isinstance(spec.default, Required):
        default = spec.default
        text += f" = {list(default) if isinstance(default, tuple) else default}"
    if spec.kind in ("float", "floats") and (spec.lo is not None or spec.hi is not None):
        lo = "-inf" if spec.lo is None else f"{spec.lo:g}"
        hi = "inf" if spec.hi is None else f"{spec.hi:g}"
        lb = "(" if spec.lo is not None and spec.lo_open else "["
        hb = ")" if spec.hi is not None and spec.hi_open else "]"
        text += f" in {lb}{lo}, {hi}{hb}"
    if spec.redundant:
        text += " (optional check)"
    return text


def ops_cmd(as_json: bool = JSON_OPT) -> None:
    """List the op allowlist: inputs, attributes (type, default, bounds) and aliases."""
    aliases: dict[str, list[str]] = {}
    for alias, target in ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    rows = [
        {
            "op": op.name,
            "doc": op.doc,
            "inputs": [op.min_inputs, op.max_inputs],
            "attrs": {key: _attr_doc(spec) for key, spec in op.attrs.items()},
            "aliases": sorted(aliases.get(op.name, [])),
        }
        for op in sorted(OPS.values(), key=lambda o: o.name)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"Blueprint ops ({len(rows)})")
    for col in ("op", "inputs", "attributes", "description"):
        table.add_column(col, overflow="fold")
    for op in sorted(OPS.values(), key=lambda o: o.name):
        parts = [_attr_text(key, spec) for key, spec in op.attrs.items()]
        lo, hi = op.min_inputs, op.max_inputs
        names = op.name + (f" ({', '.join(sorted(aliases[op.name]))})" if aliases.get(op.name) else "")
        table.add_row(names, str(lo) if lo == hi else f"{lo}..{hi}", escape("; ".join(parts)), escape(op.doc))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""
    app.command("validate")(validate_cmd)
    app.command("blueprints")(blueprints_cmd)
    app.command("digest")(digest_cmd)
    app.command("ops")(ops_cmd)
