"""`mamori check --outside URL`: ask a ``mamori serve`` instance what the internet reaches.

The ports sent are this host's listeners that are not loopback-only (TCP and UDP); the
service probes the address the request comes from, over IPv4 and over IPv6 (one request
each; ``audit/outside.py``). The check job calls ``outside_prober``'s function with the
listeners' ports, and the results are joined into the per-listener verdict
(``audit/path.py``), stored with the run and shown by every report format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from mamori.cli.common import UsageProblem, stderr
from mamori.model import Proto
from mamori.model.path import OutsideResult

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


def outside_prober(url: str | None, quiet: bool,
                   ) -> Callable[[list[tuple[Proto, int]]], Sequence[OutsideResult]] | None:
    """What `mamori check` calls with its listeners' ports once it has read them (the probe
    runs inside the check job, so its results are joined and stored with the run); None
    without --outside."""
    if url is None:
        return None

    def probe(ports: list[tuple[Proto, int]]) -> Sequence[OutsideResult]:
        from mamori.audit.outside import probe_from_outside

        if not quiet:
            stderr.print(f"outside: asking {url} to probe this host's address "
                         f"({len(ports)} ports, IPv4 and IPv6)", markup=False, soft_wrap=True)
        return probe_from_outside(url, ports, FAMILIES)
    return probe
