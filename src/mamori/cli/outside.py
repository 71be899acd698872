"""`mamori check --outside URL`: ask a ``mamori serve`` instance what the internet reaches.

The ports sent are this host's listeners that are not loopback-only (TCP and UDP); the
service probes the address the request comes from, over IPv4 and over IPv6 (one request
each; ``audit/outside.py``). Until the joined per-listener verdict takes the result into the
report, it is shown as its own section: after a table report on stdout, else on stderr (so
that JSON, SARIF, Markdown and HTML outputs stay what they are).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from mamori.cli.common import UsageProblem, stderr
from mamori.model import Proto, ScanRecord
from mamori.model.audit import Scope
from mamori.model.path import OutsideResult, OutsideState

OutsideOption = Annotated[str | None, typer.Option(
    "--outside", metavar="URL",
    help="Ask this mamori serve instance (its /api/v1) to probe this host's own address "
         "from outside, over IPv4 and IPv6, for the listeners that are not loopback-only.",
)]
FAMILIES = (4, 6)


def outside_url(url: str | None) -> str | None:
    """The --outside URL, checked before anything runs; UsageProblem when unusable."""
    if url is None:
        return None
    from mamori.net.family_http import parse_service_url

    try:
        parse_service_url(url)
    except ValueError as exc:
        raise UsageProblem(f"--outside: {exc}") from None
    return url.strip()


def listener_ports(record: ScanRecord) -> list[tuple[Proto, int]]:
    """(proto, port) of every listener not bound to loopback only, once each, sorted."""
    return sorted({(lst.proto, lst.port) for lst in record.listeners
                   if lst.scope is not Scope.LOOPBACK},
                  key=lambda p: (p[0].value, p[1]))


def run_outside(url: str | None, record: ScanRecord | None,
                quiet: bool) -> Callable[[str, Path | None], None]:
    """Probe from outside now; return what prints the section (given --format, --output)."""
    if url is None or record is None:
        return lambda fmt, output: None
    from mamori.audit.outside import probe_from_outside

    ports = listener_ports(record)
    if not quiet:
        stderr.print(f"outside: asking {url} to probe this host's address "
                     f"({len(ports)} ports, IPv4 and IPv6)", markup=False, soft_wrap=True)
    results = probe_from_outside(url, ports, FAMILIES)

    def show(fmt: str, output: Path | None) -> None:
        text = render_outside(results)
        if fmt == "table" and output is None:
            typer.echo(text)
        else:
            stderr.print(text, markup=False, soft_wrap=True, highlight=False)
    return show


_WORD = {OutsideState.OPEN: "open (reachable from outside)",
         OutsideState.CLOSED: "closed (refused)",
         OutsideState.FILTERED: "filtered (no answer)",
         OutsideState.NOT_TESTED: "not tested"}


def render_outside(results: Sequence[OutsideResult]) -> str:
    """The outside view as plain lines, one block per address family."""
    lines = ["", "What the internet sees (mamori serve's outside probe)"]
    for r in results:
        seen = f", seen as {r.seen_address}" if r.seen_address else ""
        head = f"  IPv{r.family} via {r.service}{seen}"
        if r.check_id:
            head += f" (check {r.check_id[:12]}…)"
        lines.append(head)
        if r.error is not None:
            lines.append(f"    {'not tested' if not r.ports else 'incomplete'}: {r.error}")
        for p in r.ports:
            why = f": {p.reason}" if p.reason else ""
            lines.append(f"    {p.proto.value}/{p.port:<5} {_WORD[p.state]}{why}")
    return "\n".join(lines)
