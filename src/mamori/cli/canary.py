"""`mamori canary smtp`: the sink that proves an open relay delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, fail, stderr


def register(app: typer.Typer) -> None:
    app.add_typer(canary_app, name="canary")


canary_app = typer.Typer(help="Canary sinks that prove stepping-stone findings.",
                         no_args_is_help=True)


@canary_app.command("smtp")
def canary_smtp(
    listen: Annotated[str, typer.Option(
        "--listen", help="ADDRESS:PORT to accept mail on (the canary domain's MX points here).",
    )],
    inbox: Annotated[Path, typer.Option("--inbox", help="Directory to write each message to.")],
) -> None:
    """Run the SMTP sink: every message relayed to the canary domain lands in --inbox, where
    `mamori scan --smtp-canary-inbox` looks for its token. Stops on Ctrl-C or SIGTERM."""
    from mamori.targets import normalise_address

    host, _, port_text = listen.rpartition(":")
    try:
        address = normalise_address(host)
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        fail(EXIT_USAGE, f"--listen {listen!r} is not ADDRESS:PORT")
    asyncio.run(_run_sink(inbox, address, port))


async def _run_sink(inbox: Path, host: str, port: int) -> None:
    import signal

    from mamori.checks.canary import SmtpSink

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SmtpSink(inbox, host, port) as sink:
            stderr.print(f"SMTP sink on {host}:{sink.port}, writing to {inbox}", markup=False)
            await stop.wait()
    except OSError as exc:
        fail(EXIT_FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
