"""`mamori checks list` and `mamori checks show ID`: the exposure-check catalog as text."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mamori.cli.common import EXIT_USAGE, UsageProblem, emit, fail
from mamori.cli.options import FormatOption, LangOption, report_lang
from mamori.report.i18n import t

if TYPE_CHECKING:
    from mamori.checks.spec import CheckSpec


def register(app: typer.Typer) -> None:
    app.add_typer(checks_app, name="checks")


checks_app = typer.Typer(help="The exposure-check catalog.", no_args_is_help=True)


@checks_app.command("list")
def checks_list(fmt: FormatOption = "table", lang: LangOption = None) -> None:
    """List every check: id, severity, layer, services, title."""
    try:
        lang = report_lang(lang)
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    from mamori.checks.catalog import default_catalog

    emit(render_catalog(list(default_catalog().values()), fmt, lang=lang), None)


@checks_app.command("show")
def checks_show(
    check_id: Annotated[str, typer.Argument(help="A check id from `mamori checks list`.")],
    fmt: FormatOption = "table",
    lang: LangOption = None,
) -> None:
    """Print one check in full: what it tests, why it matters, how to fix, references."""
    try:
        lang = report_lang(lang)
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    from mamori.checks.catalog import default_catalog

    spec = default_catalog().get(check_id)
    if spec is None:
        fail(EXIT_USAGE, f"unknown check {check_id!r} (see mamori checks list)")
    emit(render_check(spec, fmt, lang=lang), None)


def render_catalog(specs: Sequence[CheckSpec], fmt: str, *, lang: str = "en") -> str:
    """All checks, one row each (table, titles in ``lang``) or a JSON list of their
    definitions (both languages)."""
    ordered = sorted(specs, key=lambda s: (-s.severity.rank, s.id))
    if fmt == "json":
        return json.dumps([s.model_dump(mode="json") for s in ordered], indent=2,
                          ensure_ascii=False) + "\n"
    table = Table("ID", "SEVERITY", "LAYER", "SERVICES", "TITLE" if lang == "en" else "タイトル",
                  box=None, pad_edge=False)
    for s in ordered:
        table.add_row(s.id, s.severity.value, s.layer.value,
                      ",".join(s.services) + ("/udp" if s.transport == "udp" else ""),
                      escape(s.title.ja if lang == "ja" else s.title.en))
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(table)
    return out.getvalue()


def render_check(spec: CheckSpec, fmt: str, *, lang: str = "en") -> str:
    """One check in full: the title in both languages, the rest in ``lang``."""
    if fmt == "json":
        return json.dumps(spec.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    ja = lang == "ja"
    first, second = (spec.title.ja, spec.title.en) if ja else (spec.title.en, spec.title.ja)
    fix = spec.remediation
    lines = [
        f"{spec.id}: {first}",
        f"  {second}",
        f"severity {spec.severity.value}, layer {spec.layer.value}, confidence "
        f"{spec.confidence.value}, applies to {', '.join(spec.services)} ({spec.transport})",
        f"probe: {spec.probe.primitive} {spec.probe.params or ''}".rstrip(),
        "",
        f"{t('why', lang)}:",
        f"  {spec.why.ja if ja else spec.why.en}",
        "",
        f"{t('fix', lang)}:",
        f"  Linux:  {fix.linux.ja if ja else fix.linux.en}",
        f"  macOS:  {fix.macos.ja if ja else fix.macos.en}",
        f"  Router: {fix.router.ja if ja else fix.router.en}",
        "",
        "References:",
        *[f"  {r}" for r in spec.references],
    ]
    return "\n".join(lines) + "\n"
