"""The `tezzeret` command: one Typer app; each stage registers its own commands.

Every command takes `--json` for machines and prints Rich tables for people. This module only
assembles the app; what a command does lives in its stage's `commands.py`.
"""

from __future__ import annotations

import typer

from tezzeret import doctor
from tezzeret.api import commands as api_commands
from tezzeret.blueprint import commands as blueprint_commands
from tezzeret.compile import commands as compile_commands
from tezzeret.forge import commands as forge_commands
from tezzeret.store import commands as store_commands
from tezzeret.wal import commands as wal_commands

app = typer.Typer(
    name="tezzeret",
    help="Tezzeret: compile blueprints ahead of need into verified, signed artifacts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print Tezzeret's version."""
    from tezzeret import __version__

    typer.echo(__version__)


for stage in (blueprint_commands, compile_commands, wal_commands, store_commands, forge_commands, api_commands, doctor):
    stage.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
