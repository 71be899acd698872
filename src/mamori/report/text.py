"""A check's report text in the chosen language, from the catalogs.

A stored ``CheckResult`` carries its English title, summary and fixes as they were when the
check ran. In English the reports show those; in Japanese they show the catalog's Japanese
title, why and fixes, and a Japanese summary when it can be rebuilt exactly: the English
summary template (the check's own, or one of its grades') filled with the stored facts must
give back the stored summary, and the Japanese template must need only facts that were stored.
Otherwise the stored English summary is shown: a report never states what was not observed.

Check ids missing from both catalogs (a catalog changed since the scan) keep the stored text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from mamori.model import CheckResult, CheckStatus

PLATFORMS = ("linux", "macos", "router")
PLATFORM_LABEL = {"linux": "Linux", "macos": "macOS", "router": "Router"}
_PLACEHOLDER = re.compile(r"\$\{([a-z0-9_]+)\}")  # as checks.engine


@dataclass(frozen=True, slots=True)
class CatalogText:
    """One check's text in both languages (``summaries``: (en, ja) templates, the check's
    own first, then its grades')."""

    title: Mapping[str, str]
    why: Mapping[str, str]
    fixes: Mapping[str, Mapping[str, str]]  # platform -> lang -> text
    summaries: tuple[tuple[str, str], ...] = ()


def _text(value: Any) -> dict[str, str]:
    return {"en": str(value.en), "ja": str(value.ja)}


def _entry(spec: Any) -> CatalogText:
    summaries: list[tuple[str, str]] = []
    summary = getattr(spec, "summary", None)
    if summary is not None:
        summaries.append((summary.en, summary.ja))
    for grade in getattr(spec, "grades", {}).values():
        if grade.summary is not None:
            summaries.append((grade.summary.en, grade.summary.ja))
    return CatalogText(
        title=_text(spec.title),
        why=_text(spec.why),
        fixes={p: _text(getattr(spec.remediation, p)) for p in PLATFORMS},
        summaries=tuple(summaries),
    )


@cache
def catalog_texts() -> Mapping[str, CatalogText]:
    """Every check of both catalogs by id. A catalog that cannot be loaded contributes
    nothing (its checks then keep their stored English text); it never fails a report."""
    out: dict[str, CatalogText] = {}
    try:
        from mamori.checks.catalog import default_catalog

        out.update({cid: _entry(s) for cid, s in default_catalog().items()})
    except (ImportError, ValueError):  # CatalogError is a ValueError
        pass
    try:
        from mamori.audit.notes import default_notes

        out.update({cid: _entry(s) for cid, s in default_notes().items()})
    except (ImportError, ValueError):  # NoteCatalogError is a ValueError
        pass
    return out


def _fill(template: str, fields: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), "?")[:200], template)


def title(c: CheckResult, lang: str) -> str:
    entry = catalog_texts().get(c.check_id)
    if lang == "en" or entry is None:
        return c.title
    return entry.title[lang]


def why(check_id: str, lang: str) -> str | None:
    entry = catalog_texts().get(check_id)
    return entry.why[lang] if entry is not None else None


def fixes(c: CheckResult, lang: str, *, prefer_catalog: bool = False) -> dict[str, str]:
    """Fixes per platform ("linux", "macos", "router"; "-" or empty means none). English:
    the stored ones unless ``prefer_catalog``; another language: the catalog's."""
    entry = catalog_texts().get(c.check_id)
    if entry is None or (lang == "en" and not prefer_catalog):
        return {p: c.remediation.get(p, "") for p in PLATFORMS}
    return {p: entry.fixes[p][lang] for p in PLATFORMS}


def summary(c: CheckResult, lang: str) -> str:
    """The one-line summary in ``lang`` when it can be rebuilt exactly (see the module
    docstring), else the stored one."""
    if lang == "en" or c.status is not CheckStatus.FINDING:
        return c.summary
    entry = catalog_texts().get(c.check_id)
    if entry is None:
        return c.summary
    facts = dict(c.evidence.facts) if c.evidence is not None else {}
    for en, other in entry.summaries:
        if _fill(en, facts) != c.summary:
            continue
        if all(name in facts for name in _PLACEHOLDER.findall(other)):
            return _fill(other, facts)
    return c.summary
