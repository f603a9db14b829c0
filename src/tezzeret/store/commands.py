"""CLI commands of the store: `tezzeret store scrub` and `tezzeret keys export`.

Owns: the command-line face of Urza's integrity and of the signing key's public half. `store scrub`
re-hashes every stored blob (what the service does at idle), marks what fails corrupt and moves it
to quarantine, and exits 1 when it found any (a running service rebuilds them; a stopped one
rebuilds them at its next start). `keys export` prints the forge's public key as a keyring line for
consumers (`~/.config/tezzeret/trusted-keys`). Must never print or read the private key's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tezzeret.config import Settings

store_app = typer.Typer(name="store", help="Urza, the artifact store: integrity checks.", no_args_is_help=True)
keys_app = typer.Typer(name="keys", help="The forge's artifact-signing key.", no_args_is_help=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML settings file (the seed's `tezzeret:` block).")
StateOpt = typer.Option(None, "--state-dir", help="State directory (default: the settings' state_dir).")


def _settings(config: Optional[Path], state_dir: Optional[Path]) -> Settings:
    from tezzeret.config import load_settings

    return load_settings(config, **({"state_dir": state_dir} if state_dir else {}))


@store_app.command()
def scrub(config: Optional[Path] = ConfigOpt, state_dir: Optional[Path] = StateOpt,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Re-hash every stored artifact; quarantine and mark corrupt what fails. Exit 1 if any did."""
    from tezzeret.store import BlobIntegrityError, Store

    settings = _settings(config, state_dir)
    store = Store.open(settings.store_dir)
    checked, corrupt = 0, []
    try:
        for record in store.list_artifacts():
            if record.corrupt:
                corrupt.append({"artifact_id": record.artifact_id, "reason": record.status_reason, "new": False})
                continue
            checked += 1
            try:
                store.verify_artifact(record.artifact_id)
            except BlobIntegrityError as exc:
                store.mark_corrupt(record.artifact_id, str(exc))
                corrupt.append({"artifact_id": record.artifact_id, "reason": str(exc), "new": True})
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"checked": checked, "corrupt": corrupt}, indent=2))
    else:
        console = Console()
        console.print(f"{checked} artifact(s) checked, {len(corrupt)} corrupt")
        for c in corrupt:
            console.print(f"[red]{c['artifact_id']}[/red]: {c['reason']}")
        if corrupt:
            console.print("a running forge rebuilds corrupt artifacts; a stopped one does at its next start")
    raise typer.Exit(1 if corrupt else 0)


@keys_app.command("export")
def export(config: Optional[Path] = ConfigOpt, state_dir: Optional[Path] = StateOpt,
           name: str = typer.Option("tezzeret-forge", help="The name written after the key.")) -> None:
    """Print the public key as a keyring line (append it to ~/.config/tezzeret/trusted-keys)."""
    from tezzeret.artifact.trust import keyring_line
    from tezzeret.store.signing import load_public_key

    settings = _settings(config, state_dir)
    typer.echo(keyring_line(load_public_key(settings.key_dir), name))


def register(app: typer.Typer) -> None:
    app.add_typer(store_app)
    app.add_typer(keys_app)
