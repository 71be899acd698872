"""The joined path verdicts as report rows and lines, shared by every format.

Pure: ``path_rows`` gives one row per listener and address family (listener, family, reach,
chain, why) in ``lang``; ``path_lines`` the router, IPv6 and mapping lines around them;
``outside_lines`` what the outside probe saw. Remote-controlled text (router descriptions,
server names, service errors) is cleaned and capped here; formats escape it for themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mamori.model.path import OutsideResult, PathReport, PathVerdict, PortMapping, Reach
from mamori.model.path_json import (
    CGNAT_NOTE,
    CONTRADICTION,
    NAT_HIDES,
    NO_PUBLIC_NOTE,
    STATIC_FORWARD,
    mapping_words,
)
from mamori.report.i18n import t
from mamori.report.table import clean

_LIMIT = 300
# internet first, then undetermined, LAN, host: the widest reach leads
_ORDER = {Reach.INTERNET: 0, Reach.UNDETERMINED: 1, Reach.LAN: 2, Reach.HOST: 3}


@dataclass(frozen=True, slots=True)
class PathRow:
    listener: str  # "tcp/22 on 0.0.0.0"
    family: str  # "IPv4"
    reach: str  # translated
    reach_value: str  # "internet", "lan", "host", "undetermined"
    chain: str  # "bind all → host firewall open → router mapped → …"
    why: str  # proof, mapping, missing piece and notes, in one line


def mapping_text(m: PortMapping) -> str:
    return clean(mapping_words(m), _LIMIT)


def chain(v: PathVerdict, lang: str) -> str:
    return " → ".join(f"{t(f'path.step.{s.name}', lang)} {s.verdict}"
                      if f"path.step.{s.name}" in _STEP_KEYS else f"{s.name} {s.verdict}"
                      for s in v.steps)


_STEP_KEYS = {f"path.step.{n}" for n in ("bind", "host-firewall", "router", "nat", "ipv6",
                                          "outside")}


def _why(v: PathVerdict, lang: str) -> str:
    parts: list[str] = []
    if v.proven:
        parts.append(t("path.proven", lang))
    if v.mapping is not None:
        parts.append(t("path.mapping", lang, what=mapping_text(v.mapping)))
    if v.missing:
        parts.append(t("path.missing", lang, what=clean(v.missing, _LIMIT)))
    parts += [_note(n, lang) for n in v.notes]
    if not parts:
        telling = [s for s in v.steps if s.verdict in _TELLING] or [
            s for s in v.steps if s.verdict not in ("open", "all", "not-tested")]
        if telling:
            parts.append(clean(telling[0].detail, _LIMIT))
    return "; ".join(parts)


# the step that closes a path, said first when nothing else explains the reach
_TELLING = ("loopback", "blocked", "closed", "filtered", "cgnat", "no-public-ipv4",
            "double-nat", "no-mapping", "no-global-address")


def _note(note: str, lang: str) -> str:
    if note.startswith(NAT_HIDES):
        return t("path.nat_hides", lang)
    if note == CGNAT_NOTE:
        return t("path.cgnat", lang)
    if note == NO_PUBLIC_NOTE:
        return t("path.no_public", lang)
    if note.startswith(STATIC_FORWARD):
        return t("path.static_forward", lang)
    if note.startswith(CONTRADICTION):
        return t("path.contradiction", lang, what=clean(note.split(": ", 1)[-1], _LIMIT))
    return t("path.note", lang, what=clean(note, _LIMIT))


def path_rows(report: PathReport, lang: str) -> list[PathRow]:
    """One row per verdict, the widest reach first, then by port."""
    ordered = sorted(report.verdicts,
                     key=lambda v: (_ORDER[v.reach], v.proto.value, v.port, v.family))
    return [PathRow(f"{v.proto.value}/{v.port} on {clean(v.address, 64)}", f"IPv{v.family}",
                    t(f"path.reach.{v.reach.value}", lang), v.reach.value, chain(v, lang),
                    _why(v, lang))
            for v in ordered]


def path_lines(report: PathReport, lang: str) -> list[str]:
    """The router, this host's IPv6 addresses, and the mappings that reach no listener."""
    r = report.router
    if r is None:
        lines = [t("path.router_none", lang)]
    elif not r.found:
        lines = [t("path.router", lang, what=t("path.router_error", lang,
                                               error=clean(r.error or "?", _LIMIT)))]
    else:
        external = r.external_address or t("path.not_told", lang)
        lines = [t("path.router", lang, what=t(
            "path.router_found", lang, protocol=clean(r.protocol or "?", 32),
            gateway=clean(r.gateway or "?", 64), external=clean(external, 64),
            nat=r.nat.value, n=len(r.mappings)))]
    if report.ipv6:
        lines.append(t("path.ipv6", lang, list=", ".join(f"{a} ({k})" for a, k in report.ipv6)))
    else:
        lines.append(t("path.ipv6_none", lang))
    lines += [t("path.unmatched", lang, what=mapping_text(m)) for m in report.unmatched]
    lines += [t("path.other_host", lang, what=mapping_text(m)) for m in report.other_hosts]
    return lines


def outside_lines(results: tuple[OutsideResult, ...], lang: str) -> list[str]:
    """What the outside probe saw, one block per family ("" when there was none)."""
    if not results:
        return []
    lines = [t("outside.title", lang)]
    for r in results:
        head = "  " + t("outside.via", lang, family=r.family, service=clean(r.service, 120))
        if r.seen_address:
            head += t("outside.seen", lang, address=clean(r.seen_address, 64))
        if r.check_id:
            head += f" (check {clean(r.check_id[:12], 12)}…)"
        lines.append(head)
        if r.error is not None:
            key = "outside.incomplete" if r.ports else "outside.error"
            lines.append("    " + t(key, lang, error=clean(r.error, _LIMIT)))
        for p in r.ports:
            why = f": {clean(p.reason, 120)}" if p.reason else ""
            lines.append(f"    {p.proto.value}/{p.port:<5} {t(f'outside.{p.state.value}', lang)}"
                         f"{why}")
    return lines


_REACH_STYLE = {"internet": "bold red", "undetermined": "yellow", "lan": "", "host": "green"}


def path_renderables(report: PathReport | None, lang: str) -> list[RenderableType]:
    """The terminal section: the verdicts table, then the router / IPv6 / mapping lines and
    what the outside probe saw. [] when the run joined nothing."""
    if report is None:
        return []
    out: list[RenderableType] = [Text(""), Text(t("path.title", lang), style="bold")]
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for key in ("listener", "family", "reach", "chain", "why"):
        table.add_column(t(f"path.col.{key}", lang), overflow="fold",
                         no_wrap=key in ("family", "reach"))
    for row in path_rows(report, lang):
        table.add_row(row.listener, row.family, Text(row.reach, style=_REACH_STYLE[
            row.reach_value]), row.chain, row.why)
    out.append(table)
    out += [Padding(Text(line), (0, 0, 0, 2)) for line in path_lines(report, lang)]
    lines = outside_lines(report.outside, lang)
    if lines:
        out.append(Text(""))
        out += [Text(line) for line in lines]
    return out
