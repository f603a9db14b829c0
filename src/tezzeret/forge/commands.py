"""CLI commands of the forge: `serve`, `submit`, `status`, `job`, `artifacts`, `forge`.

Owns: the command-line face of the service. `serve` runs the service; `submit`, `status`, `job`
and `artifacts` talk to a running one over HTTP (`--url`); `forge` compiles the whole built-in library
in this process through the same `Forge` (sandbox, WAL, store, signing) with no HTTP. Every command
prints Rich output for people and one JSON document with `--json`. Must never compile outside the
`Forge` (so the CLI path is the service's path).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tezzeret.errors import TezzeretError
from tezzeret.progress import progress_display

DEFAULT_URL = "http://127.0.0.1:8787"

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML settings file (the seed's `tezzeret:` block).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of tables.")
UrlOpt = typer.Option(DEFAULT_URL, "--url", help="Base URL of a running `tezzeret serve`.", envvar="TEZZERET_URL")
TokenOpt = typer.Option(None, "--token", help="Bearer token (or $TEZZERET_TOKEN).", envvar="TEZZERET_TOKEN")


def _settings(config: Optional[Path], **overrides: Any) -> Any:
    from tezzeret.config import load_settings

    try:
        return load_settings(config, **overrides)
    except TezzeretError as exc:
        Console(stderr=True).print(f"[red]{exc.code}[/red]: {exc}")
        raise typer.Exit(2) from None


def _client(url: str, token: Optional[str]) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0)


def _fail_http(console: Console, resp: Any) -> None:
    try:
        body = resp.json()
        console.print(f"[red]{resp.status_code} {body.get('code')}[/red]: {body.get('message')}")
    except ValueError:
        console.print(f"[red]{resp.status_code}[/red]: {resp.text[:500]}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to `app`."""

    @app.command()
    def serve(
        config: Optional[Path] = ConfigOpt,
        host: Optional[str] = typer.Option(None, help="Bind address (default api.host, 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, help="Port (default api.port, 8787)."),
        state_dir: Optional[Path] = typer.Option(None, help="State directory (WAL, store, keys, caches)."),
    ) -> None:
        """Run the forge service: HTTP API, queue, sandbox, WAL. SIGTERM/SIGINT drain and exit."""
        import logging

        from tezzeret.forge.lifecycle import serve as run_serve

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        overrides: dict[str, Any] = {}
        api: dict[str, Any] = {}
        if host:
            api["host"] = host
        if port is not None:
            api["port"] = port
        if api:
            overrides["api"] = api
        if state_dir:
            overrides["state_dir"] = state_dir
        settings = _settings(config, **overrides)
        try:
            code = run_serve(settings)
        except TezzeretError as exc:
            Console(stderr=True).print(f"[red]{exc.code}[/red]: {exc}")
            raise typer.Exit(1) from None
        raise typer.Exit(code)

    @app.command()
    def submit(
        files: list[Path] = typer.Argument(..., help="BlueprintIR or CompilationRequest files (.json or .pb)."),
        strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="EMERGENCY, FAST, STANDARD or AGGRESSIVE."),
        priority: Optional[str] = typer.Option(None, "--priority", help="STRATEGIC, NORMAL, EXPERIMENTAL or BACKGROUND."),
        target: Optional[str] = typer.Option(
            None, "--target", help="Device to build for: cuda, cuda-sm90, cuda-sm90-cu130 (default: the forge's CPU)."
        ),
        wait: bool = typer.Option(False, "--wait", help="Show progress until every artifact is ready."),
        timeout: float = typer.Option(1800.0, help="Seconds --wait waits at most."),
        url: str = UrlOpt,
        token: Optional[str] = TokenOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Submit blueprints to a running forge; with --wait, follow them until done."""
        console = Console(stderr=as_json)
        out: list[dict[str, Any]] = []
        failed = False
        with _client(url, token) as client:
            for f in files:
                try:
                    body = f.read_bytes()
                except OSError as exc:
                    console.print(f"[red]{f}[/red]: {exc}")
                    failed = True
                    continue
                ctype = "application/x-protobuf" if f.suffix in (".pb", ".bin") else "application/json"
                params = {k: v for k, v in {"strategy": strategy, "priority": priority, "target": target}.items() if v}
                resp = client.post("/v1/blueprints", content=body, headers={"Content-Type": ctype}, params=params)
                if resp.status_code not in (200, 202):
                    console.print(f"[red]{f}[/red]:", end=" ")
                    _fail_http(console, resp)
                    failed = True
                    continue
                sub = resp.json()
                sub["file"] = str(f)
                out.append(sub)
                if not as_json:
                    console.print(
                        f"{f.name}: job [bold]{sub['job_id']}[/bold] {sub['status']} "
                        f"{sub['strategy']} → {sub['artifact_id']}" + (" (from cache)" if sub["from_cache"] else "")
                    )
            if wait and out:
                failed |= _follow(client, out, timeout, console, quiet=as_json)
        if as_json:
            print(json.dumps({"submissions": out}, indent=2))
        raise typer.Exit(1 if failed else 0)

    @app.command()
    def status(url: str = UrlOpt, token: Optional[str] = TokenOpt, as_json: bool = JsonOpt) -> None:
        """Health of a running forge: status, breakers, conservative mode, queue, workers, WAL."""
        console = Console()
        with _client(url, token) as client:
            try:
                resp = client.get("/health/tezzeret")
                jobs = client.get("/v1/jobs", params={"limit": 10}).json().get("jobs", [])
            except Exception as exc:  # noqa: BLE001 - connection errors are the answer here
                console.print(f"[red]cannot reach {url}[/red]: {exc}")
                raise typer.Exit(2) from None
        report = resp.json()
        if as_json:
            print(json.dumps({"health": report, "recent_jobs": jobs}, indent=2))
            raise typer.Exit(0 if resp.status_code == 200 else 1)
        colour = {"HEALTHY": "green", "DEGRADED": "yellow"}.get(report.get("status"), "red")
        console.print(f"[bold {colour}]{report.get('status')}[/]  " + "; ".join(report.get("reasons", [])))
        t = Table(title="forge")
        t.add_column("what")
        t.add_column("value")
        t.add_row("queue depth", str(report.get("queue_depth")))
        t.add_row("running / max", f"{report.get('running_jobs')} / {report.get('max_concurrent_jobs')}")
        t.add_row("isolation", str(report.get("isolation_level")))
        t.add_row("conservative mode", str(report.get("conservative_mode", {}).get("active")))
        t.add_row("breakers", ", ".join(f"{k}={v}" for k, v in report.get("breakers", {}).items()))
        t.add_row("draining", str(report.get("draining")))
        t.add_row("last recovery", json.dumps(report.get("last_recovery"))[:200])
        console.print(t)
        if jobs:
            jt = Table(title="recent jobs")
            for col in ("job", "blueprint", "strategy", "status", "ETA", "artifact"):
                jt.add_column(col)
            for j in jobs:
                jt.add_row(j["job_id"], j["blueprint_name"], j["strategy"], j["status"], _eta(j), j["artifact_id"])
            console.print(jt)
        raise typer.Exit(0 if resp.status_code == 200 else 1)

    @app.command()
    def job(
        job_id: str = typer.Argument(..., help="The job id `submit` printed."),
        url: str = UrlOpt,
        token: Optional[str] = TokenOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """One job: status, the tier asked and served, its predicted compile time, payback and ETA."""
        console = Console()
        with _client(url, token) as client:
            resp = client.get(f"/v1/jobs/{job_id}")
        if resp.status_code != 200:
            _fail_http(console, resp)
            raise typer.Exit(1)
        view = resp.json()
        if as_json:
            print(json.dumps(view, indent=2))
            raise typer.Exit(0)
        t = Table(title=f"job {job_id}")
        t.add_column("what")
        t.add_column("value")
        t.add_row("blueprint", f"{view['blueprint_name']} ({view['blueprint_digest'][:16]})")
        t.add_row("status", view["status"])
        t.add_row("strategy", view.get("strategy_served") or view["strategy"])
        t.add_row("why", view.get("fallback_reason") or view["strategy_reason"])
        prediction = view.get("prediction")
        if prediction:
            t.add_row("predicted compile", f"{prediction['compile_s']:.1f} s ({prediction['basis']}, {prediction['history']} attempts)")
            if prediction.get("payback_s") is not None:
                t.add_row("predicted payback", f"{prediction['payback_s']:+.0f} s at {prediction['served_speedup']:.2f}x "
                          f"over {prediction['expected_steps']:,} steps")
            t.add_row("ETA", _eta(view))
        if view.get("error"):
            t.add_row("error", f"{view.get('error_code')}: {view['error']}")
        console.print(t)
        raise typer.Exit(1 if view["status"] == "FAILED" else 0)

    @app.command()
    def artifacts(
        blueprint_id: Optional[str] = typer.Option(None, "--blueprint", "-b", help="Only this blueprint digest."),
        url: str = UrlOpt,
        token: Optional[str] = TokenOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """List the artifacts a running forge holds."""
        console = Console()
        with _client(url, token) as client:
            params = {"blueprint_id": blueprint_id} if blueprint_id else {}
            resp = client.get("/v1/artifacts", params=params)
        if resp.status_code != 200:
            _fail_http(console, resp)
            raise typer.Exit(1)
        items = resp.json()["artifacts"]
        if as_json:
            print(json.dumps({"artifacts": items}, indent=2))
            return
        console = _wide_console()
        t = Table(title=f"{len(items)} artifact(s)")
        for col in ("artifact id", "blueprint", "tier", "status", "size", "compile s"):
            t.add_column(col)
        for a in items:
            t.add_row(
                a["artifact_id"], a.get("blueprint_name") or a["blueprint_digest"][:16], a["strategy"],
                a["status"], _size(a["size"]), f"{a['compile_ms'] / 1000:.1f}",
            )
        console.print(t)

    @app.command("forge")
    def forge_library(
        config: Optional[Path] = ConfigOpt,
        strategy: str = typer.Option(
            "FAST", "--strategy", "-s",
            help="Tier for every blueprint. Defaults to FAST so the library finishes in minutes on a "
            "small CPU machine; STANDARD/AGGRESSIVE take much longer. A tier that fails or misses its "
            "budget (timeouts_ms) is served by the next tier down, and the table says which and why.",
        ),
        state_dir: Optional[Path] = typer.Option(None, help="State directory (default: the settings' state_dir)."),
        only: Optional[list[str]] = typer.Option(None, "--only", help="Compile only these library blueprints (by name)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Compile the built-in blueprint library through the full forge pipeline, in process.

        The same Forge as `tezzeret serve` (sandbox, WAL, store, signing), no HTTP. Prints a closing
        table: blueprint, tier, compile s, speed-up vs eager, size, artifact id. A tier that misses
        its budget is retried one tier down (down to EMERGENCY); one whose compiled entries all fail
        verification against eager falls back to EMERGENCY. Exit 1 if any blueprint got no artifact.
        """
        from tezzeret.leyline import Strategy

        try:
            Strategy.parse(strategy)
        except ValueError:
            Console(stderr=True).print(f"[red]unknown strategy '{strategy}'[/red]: use EMERGENCY, FAST, STANDARD or AGGRESSIVE")
            raise typer.Exit(2) from None
        overrides: dict[str, Any] = {
            # The library run is the only work: no Urza polling or idle recompilation behind it.
            "polling": {"initial_full_scan": False, "refresh_interval_minutes": 0},
            "compilation": {"idle_recompilation": False},
        }
        if state_dir:
            overrides["state_dir"] = state_dir
        settings = _settings(config, **overrides)
        try:
            rows, failed = asyncio.run(_forge_library(settings, strategy, only, quiet=as_json))
        except TezzeretError as exc:
            Console(stderr=True).print(f"[red]{exc.code}[/red]: {exc}")
            raise typer.Exit(1) from None
        if as_json:
            print(json.dumps({"artifacts": rows, "failed": failed}, indent=2))
        else:
            _library_table(rows)
        raise typer.Exit(1 if failed else 0)


def _eta(view: dict[str, Any]) -> str:
    """A job view's ETA as local time, with its predicted compile seconds; '-' without one."""
    if not view.get("eta_at"):
        return "-"
    at = time.strftime("%H:%M:%S", time.localtime(float(view["eta_at"])))
    return f"{at} (~{view['prediction']['compile_s']:.0f} s)"


def _size(n: int | float | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _follow(client: Any, subs: list[dict[str, Any]], timeout: float, console: Console, *, quiet: bool) -> bool:
    """Poll jobs until all finished; returns True when any failed."""
    pending = {s["job_id"]: s for s in subs if s.get("job_id") and s["status"] not in ("SUCCEEDED", "FROM_CACHE", "FAILED")}
    failed = any(s["status"] == "FAILED" for s in subs)
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    with progress_display(console, disable=quiet) as progress:
        task = progress.add_task("compiling", total=len(subs), completed=len(subs) - len(pending))
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                resp = client.get(f"/v1/jobs/{job_id}")
                if resp.status_code != 200:
                    continue
                job = resp.json()
                if seen.setdefault(job_id, pending[job_id]["status"]) != job["status"] and job["status"] == "RUNNING":
                    eta = f" (ETA {_eta(job)})" if job.get("eta_at") else ""
                    progress.print(f"{job['blueprint_name']}: running at {job['strategy']}{eta}")
                seen[job_id] = job["status"]
                if job["status"] in ("SUCCEEDED", "FROM_CACHE", "FAILED"):
                    pending.pop(job_id)["final"] = job
                    if job["status"] == "FAILED":
                        failed = True
                        progress.print(f"[red]{job['blueprint_name']}[/red]: {job.get('error_code')}: {job.get('error')}")
                    else:
                        progress.print(f"[green]{job['blueprint_name']}[/green] → {job['artifact_id']}")
                    progress.advance(task)
            time.sleep(0.5)
    if pending:
        console.print(f"[yellow]{len(pending)} job(s) still running after {timeout:.0f} s[/yellow]")
        failed = True
    return failed


async def _forge_library(settings: Any, strategy: str, only: Optional[list[str]], *, quiet: bool) -> tuple[list[dict[str, Any]], int]:
    from tezzeret.blueprint import library
    from tezzeret.forge.service import Forge
    from tezzeret.leyline import SCHEMA_VERSION, Strategy, pb

    entries = [lb for lb in library() if not only or lb.name in only]
    tier = Strategy.parse(strategy)
    console = Console(stderr=True)
    progress = progress_display(console, disable=quiet)
    progress.print(f"starting the forge in {settings.state_dir} (sandbox workers import torch first)")
    forge = Forge(settings)
    await forge.start()
    # Feed the forge as fast as it compiles rather than all at once, so the table's tiers are what
    # each blueprint could serve, not what a full queue's load made the policy choose.
    slots = asyncio.Semaphore(settings.compile_slots())
    failed = 0
    try:
        with progress:
            task = progress.add_task(f"forging {len(entries)} blueprints at {strategy.upper()}", total=len(entries))

            async def one(lb: Any) -> dict[str, Any]:
                # The service walks the ladder itself: a tier that fails or misses its budget is
                # served one tier down, and the result says which tier served and why.
                req = pb.CompilationRequest(
                    schema_version=SCHEMA_VERSION, blueprint=lb.ir, strategy=tier.pb,
                    priority=pb.PRIORITY_NORMAL, requested_by="cli:forge",
                )
                async with slots:
                    sub = await forge.submit(req, "cli")
                    progress.print(f"{lb.name}: compiling at {sub.strategy}" + (" (from cache)" if sub.from_cache else ""))
                    job = await forge.wait(sub.job_id)
                row = _row(forge, lb, sub, job)
                progress.print(f"{lb.name}: {row['status']} at {row['tier']}" + _took(row) + (f" ({row['note']})" if row["note"] else ""))
                progress.advance(task)
                return row

            rows = list(await asyncio.gather(*(one(lb) for lb in entries)))
            failed = sum(r["status"] == "FAILED" for r in rows)
    finally:
        await forge.close()
    return rows, failed


def _took(row: dict[str, Any]) -> str:
    return f", compiled in {row['compile_s']:.1f} s" if row.get("compile_s") is not None else ""


def _row(forge: Any, lb: Any, sub: Any, job: Any) -> dict[str, Any]:
    from tezzeret.leyline import Strategy

    result = job.result
    served = Strategy.parse(result.strategy_used) if result is not None and result.strategy_used else job.strategy
    note = None
    if result is not None and result.HasField("strategy_requested"):
        note = f"asked {Strategy.parse(result.strategy_requested).value}: {result.fallback_reason}"
    elif job.strategy.value != sub.strategy:
        note = f"conservative mode: {sub.strategy} → {job.strategy.value}"
    artifact_id = result.artifact_id if result is not None and result.artifact_id else sub.artifact_id
    row: dict[str, Any] = {
        "blueprint": lb.name, "category": lb.category, "tier": served.value, "artifact_id": artifact_id,
        "status": job.status.value, "from_cache": sub.from_cache,
        "compile_s": None, "speedup": None, "size": None, "error": None, "note": note,
    }
    if job.status.value == "FAILED":
        row["error"] = f"{job.error_code}: {job.error}"
        return row
    try:
        rec = forge.store.get_artifact(artifact_id)
    except Exception:  # noqa: BLE001 - shown as missing in the table
        return row
    m = rec.manifest
    row["compile_s"] = round(m.stats.compile_ms / 1000, 2)
    row["speedup"] = round(m.stats.speedup_train or m.stats.speedup_fwd, 3) or None
    row["size"] = rec.file_size
    return row


def _wide_console() -> Console:
    # Piped output (make run | tee, CI logs) would otherwise be cut to 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=180)


def _library_table(rows: list[dict[str, Any]]) -> None:
    console = _wide_console()
    t = Table(title="tezzeret forge: the built-in library")
    for col in ("blueprint", "tier", "compile s", "speed-up vs eager", "size", "artifact id"):
        t.add_column(col)
    for r in rows:
        if r["status"] == "FAILED":
            t.add_row(r["blueprint"], r["tier"], "[red]failed[/red]", "-", "-", (r["error"] or "")[:60])
            continue
        tier = r["tier"] + (f" [yellow]({r['note']})[/yellow]" if r.get("note") else "")
        t.add_row(
            r["blueprint"], tier,
            "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}" + (" (cached)" if r["from_cache"] else ""),
            "-" if r["speedup"] is None else f"{r['speedup']:.2f}×",
            _size(r["size"]), r["artifact_id"],
        )
    console.print(t)
    ok = sum(r["status"] != "FAILED" for r in rows)
    console.print(f"{ok}/{len(rows)} blueprints compiled" + ("" if ok == len(rows) else " — see the failures above"))
    sys.stdout.flush()
