"""The `ftops` command line: one module per group of commands, all on the app in `common`."""

from __future__ import annotations

import sys

from ftops import __version__
from ftops.cli import bootstrap, canary, costs, data, emulator, environments, evaluate, gitops, stack
from ftops.cli.common import app, err, out

__all__ = ["app", "main"]
# imported for their commands
_COMMANDS = (bootstrap, canary, costs, data, emulator, environments, evaluate, gitops, stack)


@app.command()
def version() -> None:
    """Print the ftops version."""
    out.print(f"ftops {__version__}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
