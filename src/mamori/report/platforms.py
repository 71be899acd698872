"""Which platforms' fixes a human-readable report shows: by default the running system's
(Linux on Linux, macOS on macOS) and the router's (it is in the path whatever the host runs);
every platform with ``--all-platforms`` or on another system. JSON and SARIF keep everything:
the CLI filters the record only for table, checklist, Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from mamori.model import CheckResult, ScanRecord
from mamori.model.scan import PLATFORMS

FILTERED_FORMATS = ("table", "markdown", "html")

_SYSTEMS = {"linux": "linux", "darwin": "macos"}  # sys.platform -> a fix platform


def shown_platforms(system: str, all_platforms: bool) -> tuple[str, ...]:
    """The platforms to show for ``system`` (``sys.platform``): its own and the router's,
    or all of them when asked or when mamori has no fix for that system."""
    own = _SYSTEMS.get(system)
    if all_platforms or own is None:
        return PLATFORMS
    return (own, "router")


def only_platforms(record: ScanRecord, platforms: Sequence[str]) -> ScanRecord:
    """``record`` with every check's fixes (each language's) limited to ``platforms``."""
    if set(PLATFORMS) <= set(platforms):
        return record
    return replace(record, checks=tuple(_only(c, platforms) for c in record.checks))


def _only(c: CheckResult, platforms: Sequence[str]) -> CheckResult:
    def keep(fixes: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in fixes.items() if k in platforms}

    texts = {lang: replace(text, fixes=keep(text.fixes)) for lang, text in c.texts.items()}
    return replace(c, remediation=keep(c.remediation), texts=texts)
