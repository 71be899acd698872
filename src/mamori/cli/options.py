"""The options several commands share, and their validation: bad input raises UsageProblem,
which the command turns into one line on stderr and exit 2 before anything is stored."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mamori.cli.common import UsageProblem
from mamori.model import Severity

if TYPE_CHECKING:
    from mamori.checks.observation import CheckOptions
    from mamori.checks.spec import CheckSpec

# Each --format is a Literal: Typer makes it a choice, `--help` lists it (<table|json|...>) and a
# bad value is a usage error (one line, exit 2) before the command runs.
ReportFormat = Literal["table", "json", "markdown", "html", "sarif"]
TableOrJson = Literal["table", "json"]
MAX_SCAN_ID = 2**63 - 1  # the largest id SQLite (and PostgreSQL's bigint) can hold

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MAMORI_DB", help="Database URL or SQLite file "
                 "(default: mamori.db in the user data directory)."),
]
FormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")]
OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
]
LangOption = Annotated[
    str | None, typer.Option("--lang", help="Report language: en or ja (default: from "
                             "LC_ALL / LC_MESSAGES / LANG).", show_default=False)
]
AllPlatformsOption = Annotated[
    bool, typer.Option("--all-platforms", help="Show the fixes for every platform (Linux, "
                       "macOS, router), not only this system's and the router's (table, "
                       "markdown, html; json and sarif always hold all).")
]
OnlyProblemsOption = Annotated[
    bool, typer.Option("--only-problems", help="Hide passed checks, info findings and "
                       "closed/filtered ports (table, markdown, html).")
]


def check_scan_id(value: int) -> int:
    """``value`` when it can be a stored run's id (1 to 2**63-1); raises UsageProblem."""
    if not 1 <= value <= MAX_SCAN_ID:
        raise UsageProblem(f"bad scan id {value} (ids run from 1 to {MAX_SCAN_ID})")
    return value


def report_lang(value: str | None) -> str:
    """--lang checked, or the locale's language (LC_ALL, LC_MESSAGES, LANG); UsageProblem."""
    from mamori.report.i18n import resolve_lang

    try:
        return resolve_lang(value)
    except ValueError as exc:
        raise UsageProblem(f"--lang: {exc}") from None


def exclusions(cli_value: str | None) -> str | None:
    """--exclude-ports plus the settings file's exclude_ports; raises UsageProblem."""
    from mamori.settings import SettingsError, load_settings, merged_exclusions

    try:
        return merged_exclusions(cli_value, load_settings())
    except SettingsError as exc:
        raise UsageProblem(str(exc)) from None


def check_canary_inputs(
    ca_file: Path | None, proxy_url: str | None, proxy_pattern: str | None,
    smtp_domain: str | None, smtp_inbox: Path | None,
) -> None:
    """Raise UsageProblem for check options that cannot work."""
    if ca_file is not None:
        check_ca_file(ca_file)
    if (proxy_url is None) != (proxy_pattern is None):
        raise UsageProblem("--proxy-url and --proxy-pattern go together")
    if proxy_url is not None:
        check_proxy_url(proxy_url)
    if (smtp_domain is None) != (smtp_inbox is None):
        raise UsageProblem("--smtp-canary-domain and --smtp-canary-inbox go together")
    if smtp_inbox is not None and not smtp_inbox.is_dir():
        raise UsageProblem(f"--smtp-canary-inbox {smtp_inbox} is not a directory")


def check_ca_file(ca_file: Path) -> None:
    """Raise UsageProblem unless ``ca_file`` holds at least one PEM certificate (what the TLS
    checks load; anything else would only fail later, on every TLS endpoint)."""
    from cryptography import x509

    if not ca_file.is_file():
        raise UsageProblem(f"--ca-file {ca_file} is not a readable file")
    try:
        x509.load_pem_x509_certificates(ca_file.read_bytes())
    except OSError as exc:
        raise UsageProblem(f"--ca-file {ca_file}: cannot read it ({exc.strerror})") from None
    except ValueError:
        raise UsageProblem(f"--ca-file {ca_file} holds no PEM certificate "
                           "(-----BEGIN CERTIFICATE-----)") from None


def check_proxy_url(url: str) -> None:
    """Raise UsageProblem unless ``url`` is an http:// or https:// URL with a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # ValueError for a port that is not a number in 0..65535
    except ValueError:
        ok = False
    if not ok:
        raise UsageProblem(f"--proxy-url {url!r} is not an http:// or https:// URL with a host")


def fail_on_severity(name: str | None) -> Severity | None:
    if name is None:
        return None
    try:
        return Severity(name.lower())
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise UsageProblem(
            f"unknown severity {name!r} for --fail-on (choose from {choices})"
        ) from None


def chosen_checks(ids: str | None, no_checks: bool, identify: bool) -> list[CheckSpec]:
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


def skip_checks(specs: list[CheckSpec], ids: str | None) -> list[CheckSpec]:
    """``specs`` without the --skip-checks ids; raises UsageProblem for an unknown id."""
    if not ids:
        return specs
    from mamori.checks.catalog import default_catalog

    skipped = {i.strip() for i in ids.split(",") if i.strip()}
    unknown = sorted(skipped - set(default_catalog()))
    if unknown:
        raise UsageProblem(f"--skip-checks: unknown check {', '.join(map(repr, unknown))} "
                           "(see mamori checks list)")
    return [s for s in specs if s.id not in skipped]


SkipChecksOption = Annotated[
    str | None, typer.Option("--skip-checks", help="Do not run these checks (comma-separated "
                             "ids; see `mamori checks list`).", show_default=False)
]


def check_options(
    ca_file: Path | None, proxy_url: str | None, proxy_pattern: str | None,
    smtp_domain: str | None, smtp_inbox: Path | None, *, fetch_aia: bool = False,
    dns_zones: tuple[str, ...] = (),
) -> CheckOptions:
    from mamori.checks.observation import CheckOptions

    return CheckOptions(
        ca_file=str(ca_file) if ca_file else None,
        fetch_aia=fetch_aia,
        proxy_canary_url=proxy_url,
        proxy_canary_pattern=proxy_pattern,
        smtp_canary_domain=smtp_domain,
        smtp_canary_inbox=str(smtp_inbox) if smtp_inbox else None,
        dns_zones=dns_zones,
    )


_ZONE_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def dns_zone_names(values: list[str] | None) -> tuple[str, ...]:
    """The --dns-zone values as lower-case names without the final dot; raise UsageProblem
    for anything that is not a DNS name (empty labels, labels over 63 bytes, odd bytes)."""
    out: list[str] = []
    for value in values or ():
        name = value.strip().rstrip(".").lower()
        labels = name.split(".")
        if not name or len(name) > 253 or not all(_ZONE_LABEL.match(x) for x in labels):
            raise UsageProblem(f"--dns-zone {value!r} is not a DNS zone name (example.org)")
        if name not in out:
            out.append(name)
    if len(out) > 8:
        raise UsageProblem("--dns-zone: at most 8 zones")
    return tuple(out)
