"""The ``mamori`` command line: parse, hand over, print. No probing logic lives here.

Exit codes: 0 done, 1 findings at or above --fail-on (later), 2 bad usage (one line on stderr,
nothing stored), 3 the scan could not run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

# Typer validates parameters through pydantic, whose plugin discovery scans every installed
# package's entry points on each start (~0.2 s); mamori uses no pydantic plugin.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from mamori import __version__
from mamori.cli_common import (
    EXIT_FAILED,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    UsageProblem,
    stderr,
)
from mamori.cli_common import emit as _emit
from mamori.cli_common import fail as _fail
from mamori.cli_common import open_store as _open_store
from mamori.model import Proto, ScanStatus, Severity

if TYPE_CHECKING:
    from mamori.checks.observation import CheckOptions
    from mamori.checks.spec import CheckSpec
    from mamori.inside import CheckJob
    from mamori.jobs import JobResult

FORMATS = ("table", "json", "markdown", "html", "sarif")
# UDP ports with a service-specific payload: what `--udp` sweeps when -p names no U: ports.
DEFAULT_UDP_PORTS = (53, 123, 137, 161, 1900, 5353, 11211)

app = typer.Typer(
    name="mamori",
    help="mamori (守り): what does this host expose to the network, and how do I close it?\n\n"
    "Only scan hosts you own or are allowed to test.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UsageProblem(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    return fmt


def _lang(value: str | None) -> str:
    """--lang checked, or the locale's language (LC_ALL, LC_MESSAGES, LANG); UsageProblem."""
    from mamori.report.i18n import resolve_lang

    try:
        return resolve_lang(value)
    except ValueError as exc:
        raise UsageProblem(f"--lang: {exc}") from None


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        sys.stdout.write(f"mamori {__version__}\n")
        raise typer.Exit(EXIT_OK)


DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MAMORI_DB", help="Database URL or SQLite file "
                 "(default: mamori.db in the user data directory)."),
]
FormatOption = Annotated[
    str, typer.Option("--format", "-f", help="table, json, markdown, html or sarif.")
]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
]
LangOption = Annotated[
    str | None, typer.Option("--lang", help="Report language: en or ja (default: from "
                             "LC_ALL / LC_MESSAGES / LANG).", show_default=False)
]
OnlyProblemsOption = Annotated[
    bool, typer.Option("--only-problems", help="Hide passed checks, info findings and "
                       "closed/filtered ports (table, markdown, html).")
]


def _select_ports(
    ports: str | None, top_ports: int | None, udp: bool, exclude_ports: str | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The TCP and UDP ports to probe; raises UsageProblem or PortSpecError."""
    from mamori.ports import parse_port_spec, top_ports_tcp

    if ports is not None and top_ports is not None:
        raise UsageProblem("give either -p or --top-ports, not both")
    if ports is not None:
        tcp, udp_spec = parse_port_spec(ports)
    else:
        tcp, udp_spec = top_ports_tcp(top_ports or 1000), ()
    # U: ports named in -p are probed as asked; --udp alone means the UDP service ports.
    udp_ports: tuple[int, ...] = tuple(udp_spec) or (DEFAULT_UDP_PORTS if udp else ())
    if exclude_ports:
        ex_tcp, ex_udp = parse_port_spec(exclude_ports, default_both=True)
        tcp = tuple(p for p in tcp if p not in set(ex_tcp))
        udp_ports = tuple(p for p in udp_ports if p not in set(ex_udp))
    if not tcp and not udp_ports:
        raise UsageProblem("no ports left to scan")
    return tuple(tcp), tuple(udp_ports)


@app.command()
def scan(
    targets: Annotated[list[str], typer.Argument(
        help="Host names, IPv4/IPv6 addresses, CIDR blocks or ranges (127.0.1.1-20).",
        show_default=False)],
    ports: Annotated[str | None, typer.Option(
        "-p", "--ports",
        help="Ports: 22,80,1000-2000, - for all 65,535, T:/U: prefixes.")] = None,
    top_ports: Annotated[int | None, typer.Option(
        "--top-ports",
        help="The N most common TCP ports (default 1000 when -p is not given).")] = None,
    udp: Annotated[bool, typer.Option("--udp", help="Also probe UDP services.")] = False,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="Addresses or ranges to leave out (comma-separated).")] = None,
    exclude_ports: Annotated[str | None, typer.Option(
        "--exclude-ports", help="Ports never to touch, same syntax as -p.")] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="At most this many probes per second.")] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Longest wait for one probe, in seconds.")] = 1.5,
    identify: Annotated[bool, typer.Option(
        "--identify/--no-identify", help="Identify the services that answer.")] = True,
    no_checks: Annotated[bool, typer.Option(
        "--no-checks", help="Do not run exposure checks.")] = False,
    checks: Annotated[str | None, typer.Option(
        "--checks", help="Run only these checks (comma-separated ids; see `mamori checks list`).",
    )] = None,
    fail_on: Annotated[str | None, typer.Option(
        "--fail-on", help="Exit 1 when a finding at or above this severity is found "
        "(info, low, medium, high, critical).")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="Trust this CA (PEM) in TLS checks.")] = None,
    proxy_url: Annotated[str | None, typer.Option(
        "--proxy-url", help="Canary URL open-proxy checks fetch through the target "
        "(default: a listener mamori starts).")] = None,
    proxy_pattern: Annotated[str | None, typer.Option(
        "--proxy-pattern", help="Text the --proxy-url page must contain.")] = None,
    smtp_canary_domain: Annotated[str | None, typer.Option(
        "--smtp-canary-domain", help="A domain whose mail reaches `mamori canary smtp`: open-"
        "relay checks then prove delivery.")] = None,
    smtp_canary_inbox: Annotated[Path | None, typer.Option(
        "--smtp-canary-inbox", help="The directory that sink writes received mail to.")] = None,
    fmt: FormatOption = "table",
    output: OutputOption = None,
    lang: LangOption = None,
    only_problems: OnlyProblemsOption = False,
    db: DbOption = None,
) -> None:
    """Sweep TARGETS' ports, identify what answers, run the exposure checks, keep the result."""
    from mamori.net.sweep import SweepOptions
    from mamori.pipeline import ScanPlan
    from mamori.ports import PortSpecError
    from mamori.targets import TargetSpecError, expand_targets

    try:
        _check_format(fmt)
        lang = _lang(lang)
        if rate is not None and rate <= 0:
            raise UsageProblem("--rate must be a positive number of probes per second")
        if not 0 < timeout <= 60:
            raise UsageProblem("--timeout must be between 0 and 60 seconds")
        if top_ports is not None and not 0 < top_ports <= 65535:
            raise UsageProblem("--top-ports must be between 1 and 65535")
        exclude_ports = _exclusions(exclude_ports)
        tcp, udp_ports = _select_ports(ports, top_ports, udp, exclude_ports)
        chosen = expand_targets(targets, exclude or ())
        threshold = _severity(fail_on)
        specs = _chosen_checks(checks, no_checks, identify)
        _check_canary_inputs(ca_file, proxy_url, proxy_pattern, smtp_canary_domain,
                             smtp_canary_inbox)
    except (UsageProblem, PortSpecError, TargetSpecError) as exc:
        _fail(EXIT_USAGE, str(exc))

    plan = ScanPlan(
        targets=tuple(chosen),
        tcp_ports=tuple(tcp),
        udp_ports=tuple(udp_ports),
        sweep=SweepOptions(max_timeout=timeout, rate=rate, parent_lane=False),
        identify=identify,
        checks=tuple(specs),
        check_options=_check_options(
            ca_file, proxy_url, proxy_pattern, smtp_canary_domain, smtp_canary_inbox
        ) if specs else None,
    )
    options = {
        "ports": ports, "top_ports": top_ports, "udp": udp, "exclude": exclude or [],
        "exclude_ports": exclude_ports, "rate": rate, "timeout": timeout, "identify": identify,
        "tcp_port_count": len(plan.tcp_ports), "udp_port_count": len(plan.udp_ports),
        "checks": [c.id for c in specs], "fail_on": fail_on,
    }
    from mamori.jobs import run_job
    from mamori.progress import progress_reporter
    from mamori.store import StoreError, StoreUsageError

    try:
        with progress_reporter(stderr) as progress:
            result = asyncio.run(run_job(plan, db=db, kind="scan", targets=list(targets),
                                         options=options, progress=progress))
    except StoreUsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    _finish(result, fmt, output, threshold, lang=lang, only_problems=only_problems)


def _finish(
    result: JobResult, fmt: str, output: Path | None, threshold: Severity | None,
    *, lang: str = "en", only_problems: bool = False,
) -> None:
    """Print the stored record; exit 130 interrupted, 3 failed, 1 findings >= threshold."""
    if result.failure:
        stderr.print(f"mamori: error: {result.failure}", markup=False)
    if result.status is ScanStatus.INTERRUPTED:
        stderr.print("interrupted: results so far are kept", markup=False)
    if result.record is not None:
        from mamori.report import render

        _emit(render(result.record, fmt, lang=lang, only_problems=only_problems), output)
    if result.status is ScanStatus.INTERRUPTED:
        raise typer.Exit(130)
    if result.status is not ScanStatus.DONE:
        raise typer.Exit(EXIT_FAILED)
    if threshold is not None and result.record is not None and any(
        f.severity.rank >= threshold.rank for f in result.record.findings
    ):
        raise typer.Exit(EXIT_FINDINGS)


def _exclusions(cli_value: str | None) -> str | None:
    """--exclude-ports plus the settings file's exclude_ports; raises UsageProblem."""
    from mamori.settings import SettingsError, load_settings, merged_exclusions

    try:
        return merged_exclusions(cli_value, load_settings())
    except SettingsError as exc:
        raise UsageProblem(str(exc)) from None


def _check_canary_inputs(
    ca_file: Path | None, proxy_url: str | None, proxy_pattern: str | None,
    smtp_domain: str | None, smtp_inbox: Path | None,
) -> None:
    """Raise UsageProblem for check options that cannot work."""
    if ca_file is not None and not ca_file.is_file():
        raise UsageProblem(f"--ca-file {ca_file} is not a readable file")
    if (proxy_url is None) != (proxy_pattern is None):
        raise UsageProblem("--proxy-url and --proxy-pattern go together")
    if (smtp_domain is None) != (smtp_inbox is None):
        raise UsageProblem("--smtp-canary-domain and --smtp-canary-inbox go together")
    if smtp_inbox is not None and not smtp_inbox.is_dir():
        raise UsageProblem(f"--smtp-canary-inbox {smtp_inbox} is not a directory")


def _severity(name: str | None) -> Severity | None:
    if name is None:
        return None
    try:
        return Severity(name.lower())
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise UsageProblem(
            f"unknown severity {name!r} for --fail-on (choose from {choices})"
        ) from None


def _chosen_checks(ids: str | None, no_checks: bool, identify: bool) -> list[CheckSpec]:
    """The checks to run; raises UsageProblem for an unknown id or contradictory flags."""
    if no_checks:
        if ids:
            raise UsageProblem("give either --checks or --no-checks, not both")
        return []
    if not identify:
        if ids:
            raise UsageProblem("checks need identification: drop --no-identify")
        return []
    from mamori.checks.catalog import CatalogError, select

    wanted = [i.strip() for i in ids.split(",") if i.strip()] if ids else None
    try:
        return select(wanted)
    except CatalogError as exc:
        raise UsageProblem(str(exc)) from None


def _check_options(
    ca_file: Path | None, proxy_url: str | None, proxy_pattern: str | None,
    smtp_domain: str | None, smtp_inbox: Path | None,
) -> CheckOptions:
    from mamori.checks.observation import CheckOptions

    return CheckOptions(
        ca_file=str(ca_file) if ca_file else None,
        proxy_canary_url=proxy_url,
        proxy_canary_pattern=proxy_pattern,
        smtp_canary_domain=smtp_domain,
        smtp_canary_inbox=str(smtp_inbox) if smtp_inbox else None,
    )


@app.command()
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
    db: DbOption = None,
) -> None:
    """What does this machine expose, and how do I close it? Lists every listener with its
    process and firewall verdict, proves problems by probing each over loopback, and prints one
    checklist ordered by risk (OS, network, application)."""
    from mamori.ports import PortSpecError, parse_port_spec

    try:
        _check_format(fmt)
        lang = _lang(lang)
        threshold = _severity(fail_on)
        specs = _chosen_checks(checks, no_checks, True)
        _check_canary_inputs(ca_file, None, None, None, None)
        exclude_ports = _exclusions(exclude_ports)
        excluded: frozenset[tuple[Proto, int]] = frozenset()
        if exclude_ports:
            ex_tcp, ex_udp = parse_port_spec(exclude_ports, default_both=True)
            excluded = frozenset(
                [(Proto.TCP, p) for p in ex_tcp] + [(Proto.UDP, p) for p in ex_udp]
            )
    except (UsageProblem, PortSpecError) as exc:
        _fail(EXIT_USAGE, str(exc))

    from mamori.inside import run_check_job
    from mamori.jobs import run_job
    from mamori.progress import progress_reporter
    from mamori.store import StoreError, StoreUsageError

    job = _check_job(specs, ca_file, probe_bound, excluded)
    options = {"probe_bound": probe_bound, "exclude_ports": exclude_ports,
               "checks": [c.id for c in specs], "fail_on": fail_on}
    try:
        with progress_reporter(stderr) as progress:
            result = asyncio.run(run_job(
                lambda sink, prog: run_check_job(job, sink, prog),
                db=db, kind="check", targets=["localhost"], options=options, progress=progress,
            ))
    except StoreUsageError as exc:
        _fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    _finish(result, fmt, output, threshold, lang=lang, only_problems=only_problems)


def _check_job(
    specs: list[CheckSpec], ca_file: Path | None, probe_bound: bool,
    excluded: frozenset[tuple[Proto, int]],
) -> CheckJob:
    from mamori.inside import CheckJob
    from mamori.net.sweep import SweepOptions
    from mamori.pipeline import ScanPlan
    from mamori.platform import machine_readers

    read_listeners, decide, read_notes = machine_readers()
    template = ScanPlan(
        targets=(), tcp_ports=(), sweep=SweepOptions(max_timeout=1.5), identify=True,
        checks=tuple(specs),
        check_options=_check_options(ca_file, None, None, None, None) if specs else None,
    )
    return CheckJob(template, probe_bound, excluded, read_listeners, decide, read_notes)


@app.command()
def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many scans to list.")] = 50,
    fmt: FormatOption = "table",
    db: DbOption = None,
) -> None:
    """List past scans, newest first."""
    try:
        if fmt not in ("table", "json"):
            raise UsageProblem(f"history prints table or json, not {fmt!r}")
        if limit < 1:
            raise UsageProblem("--limit must be at least 1")
    except UsageProblem as exc:
        _fail(EXIT_USAGE, str(exc))
    from mamori.report import render_history

    store = _open_store(db)
    summaries = store.list_scans(limit)
    store.close()
    _emit(render_history(summaries, fmt), None)


@app.command()
def show(
    scan_id: Annotated[int, typer.Argument(help="The scan's id, as `mamori history` lists it.")],
    fmt: FormatOption = "table",
    output: OutputOption = None,
    lang: LangOption = None,
    only_problems: OnlyProblemsOption = False,
    db: DbOption = None,
) -> None:
    """Print one stored scan again."""
    try:
        _check_format(fmt)
        lang = _lang(lang)
    except UsageProblem as exc:
        _fail(EXIT_USAGE, str(exc))
    from mamori.report import render

    store = _open_store(db)
    record = store.get_scan(scan_id)
    store.close()
    if record is None:
        _fail(EXIT_USAGE, f"no scan with id {scan_id}")
    _emit(render(record, fmt, lang=lang, only_problems=only_problems), output)


checks_app = typer.Typer(help="The exposure-check catalog.", no_args_is_help=True)
app.add_typer(checks_app, name="checks")


@checks_app.command("list")
def checks_list(fmt: FormatOption = "table", lang: LangOption = None) -> None:
    """List every check: id, severity, layer, services, title."""
    try:
        _check_format(fmt)
        lang = _lang(lang)
    except UsageProblem as exc:
        _fail(EXIT_USAGE, str(exc))
    from mamori.checks.catalog import default_catalog
    from mamori.report.catalog import render_catalog

    _emit(render_catalog(list(default_catalog().values()), fmt, lang=lang), None)


@checks_app.command("show")
def checks_show(
    check_id: Annotated[str, typer.Argument(help="A check id from `mamori checks list`.")],
    fmt: FormatOption = "table",
    lang: LangOption = None,
) -> None:
    """Print one check in full: what it tests, why it matters, how to fix, references."""
    try:
        _check_format(fmt)
        lang = _lang(lang)
    except UsageProblem as exc:
        _fail(EXIT_USAGE, str(exc))
    from mamori.checks.catalog import default_catalog
    from mamori.report.catalog import render_check

    spec = default_catalog().get(check_id)
    if spec is None:
        _fail(EXIT_USAGE, f"unknown check {check_id!r} (see mamori checks list)")
    _emit(render_check(spec, fmt, lang=lang), None)


def _register_firewall() -> None:
    from mamori.cli_firewall import firewall_app
    from mamori.cli_reports import diff, import_nmap

    app.add_typer(firewall_app, name="firewall")
    app.command("diff")(diff)
    app.command("import")(import_nmap)


_register_firewall()
from mamori.cli_watch import register as _register_watch  # noqa: E402

_register_watch(app)


def _register_serve() -> None:
    from mamori.cli_serve import serve

    app.command("serve")(serve)


_register_serve()
from mamori.cli_worker import register as _register_worker  # noqa: E402

_register_worker(app)

canary_app = typer.Typer(help="Canary sinks that prove stepping-stone findings.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")


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
        _fail(EXIT_USAGE, f"--listen {listen!r} is not ADDRESS:PORT")
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
        _fail(EXIT_FAILED, f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def main() -> None:
    """Console-script entry point: usage errors become one line on stderr and exit code 2."""
    try:  # typer >= 0.29 vendors click; older releases use click itself
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exc  # type: ignore[no-redef]

    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else EXIT_OK)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else "") + "\n")
        sys.exit(EXIT_OK)
    except click_exc.UsageError as exc:
        message = " ".join(exc.format_message().split())
        sys.stderr.write(f"mamori: error: {message} (see mamori --help)\n")
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("mamori: aborted\n")
        sys.exit(130)
    except BrokenPipeError:  # `mamori ... | head`: not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_OK)
