"""The ``mamori`` command line: one Typer app, every command registered the same way.

Each command lives in its own module of this package and adds itself through
``register(app)``; the modules listed in ``COMMANDS`` are registered in that order (the order
``mamori --help`` shows). No probing logic lives in the CLI: it parses, validates (bad input:
one line on stderr, exit 2, nothing stored), hands over and prints.

Exit codes: 0 done, 1 findings at or above --fail-on (diff: something got worse), 2 bad usage,
3 the run could not happen, 130 interrupted.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated

# Typer validates parameters through pydantic, whose plugin discovery scans every installed
# package's entry points on each start (~0.2 s); mamori uses no pydantic plugin.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from mamori import __version__
from mamori.cli import (
    accept,
    canary,
    check,
    checks,
    diff,
    firewall,
    import_nmap,
    router,
    scan,
    serve,
    shell,
    show,
    watch,
    worker,
)
from mamori.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, quiet_stdout, write_stdout

COMMANDS = (scan, check, show, checks, firewall, router, diff, accept, import_nmap, watch, serve,
            worker, canary, shell)

app = typer.Typer(
    name="mamori",
    help="mamori (守り): what does this host expose to the network, and how do I close it?\n\n"
    "Only scan hosts you own or are allowed to test.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        write_stdout(f"mamori {__version__}\n")
        raise typer.Exit(EXIT_OK)


for _command in COMMANDS:
    _command.register(app)


# Failures of writing output that are the place's, not mamori's: one line, never a traceback.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def main() -> None:
    """Console-script entry point: usage errors become one line on stderr and exit code 2."""
    try:  # typer >= 0.29 vendors click; older releases use click itself
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exc  # type: ignore[no-redef]

    try:
        rc = app(standalone_mode=False)
        code = rc if isinstance(rc, int) else EXIT_OK
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else "") + "\n")
        code = EXIT_OK
    except click_exc.UsageError as exc:
        # Typer validates choices through pydantic, which prefixes "Value error, ": drop it
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        sys.stderr.write(f"mamori: error: {message} (see mamori --help)\n")
        code = EXIT_USAGE
    except typer.Exit as exc:
        code = exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("mamori: aborted\n")
        code = 130
    except BrokenPipeError:  # `mamori ... | head`: not an error worth a traceback
        quiet_stdout()
        code = EXIT_OK
    except OSError as exc:  # help or a table printed straight to a full disk (> /dev/full)
        if exc.errno not in _WRITE_ERRNOS:
            raise
        quiet_stdout()
        sys.stderr.write(f"mamori: error: cannot write: {exc.strerror or exc}\n")
        code = EXIT_FAILED
    sys.exit(_flushed(code))


def _flushed(code: int) -> int:
    """Flush what is still buffered for stdout (``--version``, help) before exit: a reader
    that has gone ends quietly, any other failure is one line and exit 3."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    except OSError as exc:
        quiet_stdout()
        sys.stderr.write(f"mamori: error: cannot write to stdout: {exc.strerror or exc}\n")
        return EXIT_FAILED
    return code
