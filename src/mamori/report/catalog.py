"""The check catalog as text (``mamori checks list`` / ``show``)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mamori.checks.spec import CheckSpec


def render_catalog(specs: Sequence[CheckSpec], fmt: str) -> str:
    """All checks, one row each (table) or a JSON list of their definitions."""
    ordered = sorted(specs, key=lambda s: (-s.severity.rank, s.id))
    if fmt == "json":
        return json.dumps([s.model_dump(mode="json") for s in ordered], indent=2,
                          ensure_ascii=False) + "\n"
    table = Table("ID", "SEVERITY", "LAYER", "SERVICES", "TITLE", box=None, pad_edge=False)
    for s in ordered:
        table.add_row(s.id, s.severity.value, s.layer.value,
                      ",".join(s.services) + ("/udp" if s.transport == "udp" else ""),
                      escape(s.title.en))
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(table)
    return out.getvalue()


def render_check(spec: CheckSpec, fmt: str) -> str:
    """One check in full."""
    if fmt == "json":
        return json.dumps(spec.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    lines = [
        f"{spec.id}: {spec.title.en}",
        f"  {spec.title.ja}",
        f"severity {spec.severity.value}, layer {spec.layer.value}, confidence "
        f"{spec.confidence.value}, applies to {', '.join(spec.services)} ({spec.transport})",
        f"probe: {spec.probe.primitive} {spec.probe.params or ''}".rstrip(),
        "",
        "Why it matters:",
        f"  {spec.why.en}",
        "",
        "Fix:",
        f"  Linux:  {spec.remediation.linux.en}",
        f"  macOS:  {spec.remediation.macos.en}",
        f"  Router: {spec.remediation.router.en}",
        "",
        "References:",
        *[f"  {r}" for r in spec.references],
    ]
    return "\n".join(lines) + "\n"
