"""Reports: turn stored records into text for people (table, markdown, html) or programs
(json, sarif).

``report`` never probes and never touches the store; it renders records it is given.
"""

from __future__ import annotations

import json as jsonlib  # the package's own report.json module takes the name json
from collections.abc import Sequence

from mamori.model import ScanRecord, ScanSummary
from mamori.report.checklist import render_checklist
from mamori.report.diff import (
    DIFF_FORMATS,
    ScanDiff,
    diff_records,
    diff_sarif_document,
    diff_to_dict,
    render_diff_markdown,
    render_diff_table,
)
from mamori.report.json import render_history_json, render_json, scan_to_dict
from mamori.report.table import render_history_table, render_table

FORMATS = ("table", "json", "markdown", "html", "sarif")
HISTORY_FORMATS = ("table", "json")

__all__ = [
    "DIFF_FORMATS",
    "FORMATS",
    "diff_records",
    "render",
    "render_checklist",
    "render_diff",
    "render_history",
    "render_history_json",
    "render_history_table",
    "render_json",
    "render_table",
    "scan_to_dict",
]


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def render(
    record: ScanRecord,
    fmt: str,
    *,
    width: int | None = None,
    color: bool = False,
    lang: str = "en",
    only_problems: bool = False,
) -> str:
    """Return ``record`` rendered as ``fmt`` ("table", "json", "markdown", "html", "sarif").

    A table of a scan of kind "check" is the checklist and the listeners
    (``render_checklist``); of any other kind, the scan view (``render_table``). ``width``
    and ``color`` apply to tables only. ``lang`` ("en" or "ja") picks the language of the
    report text (JSON carries every language: the English fields and ``texts``).
    ``only_problems`` hides passed checks, info findings and closed/filtered ports in table,
    markdown and html (``report.problems``);
    JSON and SARIF always hold everything. Raises ``ValueError`` for another format.
    """
    _check(fmt)
    if fmt == "json":
        return render_json(record)
    if fmt == "markdown":
        from mamori.report.markdown import render_markdown

        return render_markdown(record, lang=lang, only_problems=only_problems)
    if fmt == "html":
        from mamori.report.html import render_html

        return render_html(record, lang=lang, only_problems=only_problems)
    if fmt == "sarif":
        from mamori.report.sarif import render_sarif

        return render_sarif(record, lang=lang)
    if record.kind == "check":
        return render_checklist(record, width=width, color=color, lang=lang,
                                only_problems=only_problems)
    return render_table(record, width=width, color=color, lang=lang, only_problems=only_problems)


def render_history(
    summaries: Sequence[ScanSummary], fmt: str, *, width: int | None = None, color: bool = False
) -> str:
    """Return the scan history rendered as ``fmt`` ("table" or "json" list).

    Raises ``ValueError`` for another format.
    """
    if fmt not in HISTORY_FORMATS:
        raise ValueError(f"unknown history format {fmt!r}; choose table or json")
    if fmt == "json":
        return render_history_json(summaries)
    return render_history_table(summaries, width=width, color=color)


def render_diff(diff: ScanDiff, fmt: str, *, lang: str = "en") -> str:
    """``diff`` as "table" (plain text for people), "json" (the shape above), "markdown",
    "html" or "sarif" (what got worse); people's formats in ``lang`` ("en" or "ja").

    Raises ``ValueError`` for another format.
    """
    if fmt == "json":
        return jsonlib.dumps(diff_to_dict(diff), indent=2, ensure_ascii=False) + "\n"
    if fmt == "table":
        return render_diff_table(diff, lang)
    if fmt == "markdown":
        return render_diff_markdown(diff, lang)
    if fmt == "html":
        from mamori.report.html import render_diff_html

        return render_diff_html(diff, lang=lang)
    if fmt == "sarif":
        return jsonlib.dumps(diff_sarif_document(diff, lang), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown diff format {fmt!r}; choose one of: {', '.join(DIFF_FORMATS)}")
