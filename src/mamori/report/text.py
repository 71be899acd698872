"""A check's report text in the chosen language, from the stored record only.

Each ``CheckResult`` carries its title, summary, why-it-matters and fixes in every language
(``texts``, resolved from the catalog when the check ran, the summary filled with what was
observed). English is the record's own fields (title, summary, remediation) plus the English
why; another language is ``texts[lang]``, else English (records stored before texts were).
Nothing here reads a catalog: a report shows what was recorded, even when the catalog has
changed since.
"""

from __future__ import annotations

from mamori.model import CheckResult, CheckText, Exposure
from mamori.model.scan import PLATFORMS
from mamori.report.i18n import t

__all__ = [
    "PLATFORMS", "PLATFORM_LABEL", "exposure", "fixes", "one_line", "summary", "texts", "title",
    "why",
]

PLATFORM_LABEL = {"linux": "Linux", "macos": "macOS", "router": "Router"}


def texts(c: CheckResult, lang: str) -> CheckText:
    """The result's text in ``lang``: stored in that language, else English. English is the
    record's own fields, so a record has one English text, never two that could disagree."""
    found = c.texts.get(lang) if lang != "en" else None
    if found is not None:
        return found
    english = c.texts.get("en")
    return CheckText(title=c.title, summary=c.summary, why=english.why if english else "",
                     fixes=c.remediation)


def title(c: CheckResult, lang: str) -> str:
    return texts(c, lang).title or c.title


def summary(c: CheckResult, lang: str) -> str:
    return texts(c, lang).summary or c.summary


def why(c: CheckResult, lang: str) -> str | None:
    """Why it matters, or None when the record holds none (older records)."""
    return texts(c, lang).why or None


def fixes(c: CheckResult, lang: str) -> dict[str, str]:
    """Fixes per platform ("linux", "macos", "router"; "-" or empty means none)."""
    stored = texts(c, lang).fixes
    return {p: stored.get(p, "") for p in PLATFORMS}


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def exposure(c: CheckResult, lang: str) -> str | None:
    """How exposed the listener behind a finding is, in words, e.g. "listening on
    0.0.0.0:6379 (all interfaces), firewall: allowed"; None when the record holds no
    exposure. The address is plain text: callers escape it for their format."""
    e: Exposure | None = c.exposure
    if e is None:
        return None
    where = _host_port(e.address[:64], e.port)
    scope = t(f"exposure.scope.{e.scope.value}", lang)
    if e.firewall is None:
        text = t("exposure.listening", lang, where=where, scope=scope)
    else:
        text = t("exposure.listening_fw", lang, where=where, scope=scope,
                 firewall=t(f"exposure.fw.{e.firewall.value}", lang))
    if e.reach:
        text += t("exposure.reach", lang, reach=t(f"path.reach.{e.reach}", lang))
    return text


def one_line(c: CheckResult, lang: str) -> str:
    """The summary followed by the exposure in parentheses when the record holds one: for
    reports that give a finding a single line (diff)."""
    where = exposure(c, lang)
    return f"{summary(c, lang)} ({where})" if where else summary(c, lang)
