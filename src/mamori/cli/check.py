"""`mamori check`: this machine's listeners, probed over loopback, graded by exposure."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mamori.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    UsageProblem,
    fail,
    finish,
    load_acceptances,
    stderr,
)
from mamori.cli.options import (
    AllPlatformsOption,
    DbOption,
    FormatOption,
    LangOption,
    OnlyProblemsOption,
    OutputOption,
    SkipChecksOption,
    check_canary_inputs,
    check_options,
    chosen_checks,
    exclusions,
    fail_on_severity,
    report_lang,
    skip_checks,
)
from mamori.cli.outside import OutsideOption, outside_prober, outside_url
from mamori.cli.stats import (
    QuietOption,
    StatsEveryOption,
    VerboseOption,
    chatter,
    run_monitor,
)
from mamori.model import Proto

if TYPE_CHECKING:
    from mamori.audit.inside import CheckJob
    from mamori.checks.spec import CheckSpec


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    probe_bound: Annotated[bool, typer.Option(
        "--probe-bound", help="Also probe listeners bound only to a non-loopback address.",
    )] = False,
    exclude_ports: Annotated[str | None, typer.Option(
        "--exclude-ports", help="Listeners never to touch (ports, same syntax as scan -p).",
    )] = None,
    no_checks: Annotated[bool, typer.Option(
        "--no-checks", help="Identify listeners but run no exposure checks.")] = False,
    checks: Annotated[str | None, typer.Option(
        "--checks", help="Run only these exposure checks (comma-separated ids).")] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Exit 1 when a finding at or above this severity is found.")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="Trust this CA (PEM) in TLS checks.")] = None,
    fmt: FormatOption = "table",
    output: OutputOption = None,
    lang: LangOption = None,
    only_problems: OnlyProblemsOption = False,
    all_platforms: AllPlatformsOption = False,
    skip: SkipChecksOption = None,
    db: DbOption = None,
    stats_every: StatsEveryOption = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    outside: OutsideOption = None,
) -> None:
    """What does this machine expose, and how do I close it? Lists every listener with its
    process and firewall verdict, proves problems by probing each over loopback, and prints one
    checklist ordered by risk (OS, network, application)."""
    started_at = datetime.now(UTC)  # the run starts now, not when the store is ready
    from mamori.ports import PortSpecError, parse_port_spec

    try:
        lang = report_lang(lang)
        talk = chatter(verbose, quiet, stats_every)
        threshold = fail_on_severity(fail_on)
        specs = skip_checks(chosen_checks(checks, no_checks, True), skip)
        check_canary_inputs(ca_file, None, None, None, None)
        exclude_ports = exclusions(exclude_ports)
        outside = outside_url(outside)
        excluded: frozenset[tuple[Proto, int]] = frozenset()
        if exclude_ports:
            ex_tcp, ex_udp = parse_port_spec(exclude_ports, default_both=True)
            excluded = frozenset(
                [(Proto.TCP, p) for p in ex_tcp] + [(Proto.UDP, p) for p in ex_udp]
            )
    except (UsageProblem, PortSpecError) as exc:
        fail(EXIT_USAGE, str(exc))

    from mamori.audit.inside import run_check_job
    from mamori.audit.ipv6 import host_addresses
    from mamori.audit.router import read_router
    from mamori.report.coverage import probed_option
    from mamori.scan.job import run_job
    from mamori.store import StoreError, StoreUsageError

    job = _check_job(specs, ca_file, probe_bound, excluded)
    job = dataclasses.replace(job, probe_outside=outside_prober(outside, quiet),
                              read_addresses=host_addresses, read_router=read_router)
    options = {"probe_bound": probe_bound, "exclude_ports": exclude_ports,
               "checks": [c.id for c in specs], "fail_on": fail_on,
               # Every listener of the machine is read: all ports but the excluded ones.
               "probed": probed_option(
                   (p for p in range(1, 65536) if (Proto.TCP, p) not in excluded),
                   (p for p in range(1, 65536) if (Proto.UDP, p) not in excluded))}
    try:
        with run_monitor(stderr, talk) as (progress, watcher):
            result = asyncio.run(run_job(
                lambda sink, prog: run_check_job(job, sink, prog),
                db=db, kind="check", targets=["localhost"], options=options, progress=progress,
                started_at=started_at, watcher=watcher,
            ))
    except StoreUsageError as exc:
        fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finish(result, fmt, output, threshold, lang=lang, only_problems=only_problems,
           all_platforms=all_platforms,
           accepted=result.accepted if result.accepted is not None
           else load_acceptances(db))


def _check_job(
    specs: list[CheckSpec], ca_file: Path | None, probe_bound: bool,
    excluded: frozenset[tuple[Proto, int]],
) -> CheckJob:
    from mamori.audit.inside import CheckJob
    from mamori.audit.platform import machine_readers
    from mamori.net.sweep import SweepOptions
    from mamori.scan.pipeline import ScanPlan

    read_listeners, decide, read_notes = machine_readers()
    template = ScanPlan(
        targets=(), tcp_ports=(), sweep=SweepOptions(max_timeout=1.5), identify=True,
        checks=tuple(specs),
        check_options=check_options(ca_file, None, None, None, None) if specs else None,
    )
    return CheckJob(template, probe_bound, excluded, read_listeners, decide, read_notes)
