"""`mamori history` and `mamori show ID`: the stored runs, listed and printed again."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from mamori.cli.common import (
    EXIT_USAGE,
    UsageProblem,
    emit,
    fail,
    for_report,
    load_acceptances,
    open_store,
    want_color,
)
from mamori.cli.options import (
    AllPlatformsOption,
    DbOption,
    FormatOption,
    LangOption,
    OnlyProblemsOption,
    OutputOption,
    TableOrJson,
    check_scan_id,
    report_lang,
)


def register(app: typer.Typer) -> None:
    app.command("history")(history)
    app.command("show")(show)


def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many scans to list.")] = 50,
    fmt: Annotated[TableOrJson, typer.Option("--format", "-f", help="Output format.")] = "table",
    db: DbOption = None,
) -> None:
    """List past scans, newest first."""
    try:
        if limit < 1:
            raise UsageProblem("--limit must be at least 1")
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    from mamori.report import render_history

    store = open_store(db)
    summaries = store.list_scans(limit)
    store.close()
    emit(render_history(summaries, fmt), None)


def show(
    scan_id: Annotated[int, typer.Argument(help="The scan's id, as `mamori history` lists it.")],
    fmt: FormatOption = "table",
    output: OutputOption = None,
    lang: LangOption = None,
    only_problems: OnlyProblemsOption = False,
    all_platforms: AllPlatformsOption = False,
    db: DbOption = None,
) -> None:
    """Print one stored scan again."""
    try:
        check_scan_id(scan_id)
        lang = report_lang(lang)
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    from mamori.report import render
    from mamori.report.accepted import apply_acceptances

    store = open_store(db)
    record = store.get_scan(scan_id)
    store.close()
    if record is None:
        fail(EXIT_USAGE, f"no scan with id {scan_id}")
    record = apply_acceptances(record, load_acceptances(db), date.today())
    emit(render(for_report(record, fmt, all_platforms), fmt, lang=lang,
                only_problems=only_problems, color=want_color(output)), output)
