"""The console script's entry point: ``mamori --version`` answers before Typer is imported.

Importing the Typer app (``mamori.cli.app``) loads Typer, rich, pydantic and every command
module, about 0.2 s; ``--version`` needs none of it. Everything else goes to ``app.main``;
``scan`` and ``check`` first start their store process (``store/remote.prestart``), so that
SQLAlchemy loads in it meanwhile.
"""

from __future__ import annotations

import sys


def main() -> None:
    """``mamori --version`` at once; any other command line through the Typer app."""
    if sys.argv[1:] == ["--version"]:
        from mamori import __version__

        try:
            sys.stdout.write(f"mamori {__version__}\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `mamori --version | true`: the reader went away
            _silence_stdout()
        except OSError as exc:  # > /dev/full: one line, exit 3 (as app.main would)
            sys.stderr.write(f"mamori: error: cannot write to stdout: {exc.strerror or exc}\n")
            _silence_stdout()
            sys.exit(3)
        sys.exit(0)
    if sys.argv[1:2] in (["scan"], ["check"]):
        # The store process imports SQLAlchemy while Typer loads and parses (store/remote.py).
        from mamori.store.remote import prestart

        prestart()
    from mamori.cli.app import main as app_main

    app_main()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's own flush at exit has nothing to fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
