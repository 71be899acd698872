"""`mamori scan TARGET…`: sweep, identify, check, keep the result, print the report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

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
    dns_zone_names,
    exclusions,
    fail_on_severity,
    report_lang,
    skip_checks,
)
from mamori.cli.stats import (
    QuietOption,
    StatsEveryOption,
    VerboseOption,
    chatter,
    run_monitor,
)

# UDP ports with a service-specific payload: what `--udp` sweeps when -p names no U: ports.
DEFAULT_UDP_PORTS = (53, 69, 111, 123, 137, 161, 1900, 5353, 11211)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def select_ports(
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


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_host_timeout(text: str | None) -> float | None:
    """nmap's --host-timeout: seconds, or a number with ms/s/m/h; 0 (or none) means no limit.

    Returns seconds or None. Raises UsageProblem for anything else (negative, nan, inf).
    """
    if text is None:
        return None
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if raw.endswith(u)), "")
    try:
        value = float(raw[: len(raw) - len(unit)]) * _DURATION_UNITS.get(unit, 1.0)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):  # nan fails both comparisons
        raise UsageProblem(
            f"--host-timeout must be a duration such as 90, 30s, 5m or 1h, not {text!r}")
    return value or None


def scan(
    targets: Annotated[list[str] | None, typer.Argument(
        help="Host names, IPv4/IPv6 addresses, CIDR blocks or ranges (127.0.1.1-20).",
        show_default=False)] = None,
    target_list: Annotated[Path | None, typer.Option(
        "-iL", "--input-list", help="Read targets from this file (- for stdin; # comments).",
    )] = None,
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
    host_timeout: Annotated[str | None, typer.Option(
        "--host-timeout", help="Give up on a host after this long (30s, 5m, 1h; 0: no limit); "
        "what was cut is reported as not tested.")] = None,
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
    fetch_aia: Annotated[bool, typer.Option(
        "--fetch-aia", help="When a TLS server does not send its intermediate certificate, "
        "download it from the caIssuers URL the certificate names (a host outside the scan; "
        "off by default).")] = False,
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
    dns_zone: Annotated[list[str] | None, typer.Option(
        "--dns-zone", help="A zone the zone-transfer check asks DNS servers for first "
        "(repeatable; it also tries names it learns from the server).")] = None,
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
    out_normal: Annotated[Path | None, typer.Option(
        "-oN", "--output-normal", help="Also write the table report to this file.")] = None,
    out_xml: Annotated[Path | None, typer.Option(
        "-oX", "--output-xml", help="Also write nmap's XML format (ndiff, nmap importers).",
    )] = None,
    out_grepable: Annotated[Path | None, typer.Option(
        "-oG", "--output-grepable", help="Also write nmap's grepable format.")] = None,
    out_all: Annotated[Path | None, typer.Option(
        "-oA", "--output-all", help="All three: BASE.nmap, BASE.xml, BASE.gnmap.")] = None,
) -> None:
    """Sweep TARGETS' ports, identify what answers, run the exposure checks, keep the result."""
    started_at = datetime.now(UTC)  # the run starts now, not when the store is ready
    from mamori.cli import scan_io
    from mamori.net.sweep import SweepOptions
    from mamori.ports import PortSpecError, port_table
    from mamori.report.coverage import probed_option
    from mamori.scan.pipeline import ScanPlan
    from mamori.targets import TargetSpecError, expand_targets

    try:
        outputs = scan_io.nmap_outputs(out_normal, out_xml, out_grepable, out_all, output)
        targets = [*(targets or ()),
                   *(scan_io.read_target_list(target_list) if target_list else ())]
        if not targets:
            raise UsageProblem("no targets: give at least one target, or -iL FILE")
        scan_io.refuse_file_like(targets)
        lang = report_lang(lang)
        talk = chatter(verbose, quiet, stats_every)
        if rate is not None and not 0 < rate < float("inf"):  # nan fails both comparisons
            raise UsageProblem("--rate must be a positive number of probes per second")
        if not 0 < timeout <= 60:
            raise UsageProblem("--timeout must be between 0 and 60 seconds")
        host_limit = parse_host_timeout(host_timeout)
        if top_ports is not None and not 0 < top_ports <= 65535:
            raise UsageProblem("--top-ports must be between 1 and 65535")
        exclude_ports = exclusions(exclude_ports)
        tcp, udp_ports = select_ports(ports, top_ports, udp, exclude_ports)
        chosen = expand_targets(targets, exclude or ())
        threshold = fail_on_severity(fail_on)
        specs = skip_checks(chosen_checks(checks, no_checks, identify), skip)
        check_canary_inputs(ca_file, proxy_url, proxy_pattern, smtp_canary_domain,
                             smtp_canary_inbox)
        zones = dns_zone_names(dns_zone)
    except (UsageProblem, PortSpecError, TargetSpecError) as exc:
        fail(EXIT_USAGE, str(exc))

    plan = ScanPlan(
        targets=tuple(chosen),
        tcp_ports=tuple(tcp),
        udp_ports=tuple(udp_ports),
        sweep=SweepOptions(max_timeout=timeout, rate=rate, parent_lane=False),
        identify=identify,
        host_timeout=host_limit,
        checks=tuple(specs),
        check_options=check_options(
            ca_file, proxy_url, proxy_pattern, smtp_canary_domain, smtp_canary_inbox,
            fetch_aia=fetch_aia, dns_zones=zones,
        ) if specs else None,
    )
    options = {
        "ports": ports, "top_ports": top_ports, "udp": udp, "exclude": exclude or [],
        "exclude_ports": exclude_ports, "rate": rate, "timeout": timeout, "identify": identify,
        "tcp_port_count": len(plan.tcp_ports), "udp_port_count": len(plan.udp_ports),
        "checks": [c.id for c in specs], "fail_on": fail_on,
        "host_timeout": host_limit,
        "probed": probed_option(plan.tcp_ports, plan.udp_ports),  # what diff may compare
        # Which frequency table --top-ports (or the default top 1000) took its ports from.
        "port_table": None if ports is not None else port_table("tcp").source,
    }
    from mamori.scan.job import run_job
    from mamori.store import StoreError, StoreUsageError

    try:
        with run_monitor(stderr, talk) as (progress, watcher):
            result = asyncio.run(run_job(plan, db=db, kind="scan", targets=list(targets),
                                         options=options, progress=progress,
                                         started_at=started_at,
                                         watcher=watcher))
    except StoreUsageError as exc:
        fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    if result.record is not None and outputs.files():
        try:
            for path in scan_io.write_outputs(result.record, outputs):
                talk.say(stderr, f"written to {path}")
        except OSError as exc:
            fail(EXIT_FAILED, f"cannot write output: {exc.strerror or exc}")
    finish(result, fmt, output, threshold, lang=lang, only_problems=only_problems,
           all_platforms=all_platforms,
           accepted=result.accepted if result.accepted is not None
           else load_acceptances(db))
