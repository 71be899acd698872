"""What the result page shows: the HTML report of the stored scan (``mamori.report.html``, the
same report as ``mamori show --format html``), and what it means for a visitor behind NAT,
CGNAT or on IPv6."""

from __future__ import annotations

import ipaddress
from typing import Any

from markupsafe import Markup

from mamori.model import ScanRecord
from mamori.store.serve import WebCheck


def report_lang(accept_language: str | None) -> str:
    """"ja" when the browser prefers Japanese, else "en" (the report's two languages)."""
    first = (accept_language or "").split(",", 1)[0].strip().lower()
    return "ja" if first.startswith("ja") else "en"


def report_fragment(record: ScanRecord, lang: str) -> Markup:
    from mamori.report.html import render_html_fragment

    return render_html_fragment(record, lang=lang)


def report_context(record: ScanRecord | None, check: WebCheck, lang: str = "en") -> dict[str, Any]:
    """Template variables for result.html."""
    return {
        "record": record,
        "report_html": report_fragment(record, lang) if record is not None else None,
        "family": _family(check.peer),
    }


def _family(address: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 4
