"""The watch summary report: counts by type and danger, top sources, incidents, timeline.

``render_summary(events, incidents, fmt, since=...)`` with ``fmt`` ``table`` (terminal),
``json`` (schema ``mamori.watch-summary/1``) or ``html`` (ONE self-contained file: inline CSS
and an inline SVG timeline — events per time bucket stacked by danger, incidents as marks —
no script, no external resource, and a Content-Security-Policy that forbids loading any).

Events are folded in one pass (memory bounded by distinct minutes and sources, not by the
number of events). Text that came from visitors (excerpts, examples, kinds) is escaped in
every format.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mamori.model.watch import Danger, Event, Incident, excerpt
from mamori.watch.sinks.alert import incident_to_dict

__all__ = ["SUMMARY_SCHEMA", "Summary", "render_summary", "summarize"]

SUMMARY_SCHEMA = "mamori.watch-summary/1"
FORMATS = ("table", "json", "html")
MAX_SOURCES = 100_000  # distinct sources counted one by one (the rest: "other")
TOP = 10
SHOWN_INCIDENTS = 50  # in table and html (json has them all)
BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
           30 * 86400)
MAX_BARS = 60
DANGERS = tuple(Danger)  # info … critical (stacking order, bottom to top)
COLOURS = {Danger.INFO: "#9aa5b1", Danger.LOW: "#4f9bd9", Danger.MEDIUM: "#e3b341",
           Danger.HIGH: "#e8743b", Danger.CRITICAL: "#c62828"}


@dataclass
class Summary:
    since: datetime | None
    events: int = 0
    first: datetime | None = None
    last: datetime | None = None
    by_type: Counter[str] = field(default_factory=Counter)
    by_danger: Counter[Danger] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    source_danger: dict[str, Danger] = field(default_factory=dict)
    other_sources: int = 0  # events from sources past MAX_SOURCES
    minutes: Counter[tuple[int, Danger]] = field(default_factory=Counter)
    incidents: list[Incident] = field(default_factory=list)

    def top_sources(self, n: int = TOP) -> list[tuple[str, int, Danger]]:
        return [(s, c, self.source_danger[s]) for s, c in self.sources.most_common(n)]

    def ranked_incidents(self) -> list[Incident]:
        return sorted(self.incidents, key=lambda i: (-i.danger.rank, -i.count,
                                                     i.first_seen.timestamp()))

    def span(self) -> tuple[datetime, datetime] | None:
        times = [t for t in (self.first, self.last) if t is not None]
        times += [i.first_seen for i in self.incidents] + [i.last_seen for i in self.incidents]
        return (min(times), max(times)) if times else None


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def summarize(events: Iterable[Event], incidents: Iterable[Incident], *,
              since: datetime | None = None) -> Summary:
    """Fold events and incidents (those at or after ``since``) into counts."""
    s = Summary(since=since)
    cut = _utc(since) if since else None
    for ev in events:
        t = _utc(ev.time)
        if cut is not None and t < cut:
            continue
        s.events += 1
        s.first = t if s.first is None or t < s.first else s.first
        s.last = t if s.last is None or t > s.last else s.last
        s.by_type[str(ev.type)] += 1
        s.by_danger[ev.danger] += 1
        s.minutes[(int(t.timestamp()) // 60, ev.danger)] += 1
        if ev.src is not None:
            if ev.src in s.sources or len(s.sources) < MAX_SOURCES:
                s.sources[ev.src] += 1
                known = s.source_danger.get(ev.src, Danger.INFO)
                s.source_danger[ev.src] = ev.danger if ev.danger.rank > known.rank else known
            else:
                s.other_sources += 1
    s.incidents = [i for i in incidents if cut is None or _utc(i.last_seen) >= cut]
    return s


@dataclass(frozen=True)
class Timeline:
    bucket: int  # seconds
    start: datetime
    counts: list[dict[Danger, int]]

    def bucket_start(self, index: int) -> datetime:
        return self.start + timedelta(seconds=index * self.bucket)


def timeline(s: Summary) -> Timeline | None:
    span = s.span()
    if span is None:
        return None
    first, last = span
    seconds = max(1.0, (last - first).total_seconds())
    bucket = next((b for b in BUCKETS if seconds / b <= MAX_BARS), BUCKETS[-1])
    start_ts = int(first.timestamp()) // bucket * bucket
    n = int(last.timestamp()) // bucket * bucket
    size = (n - start_ts) // bucket + 1
    counts: list[dict[Danger, int]] = [{} for _ in range(size)]
    for (minute, danger), count in s.minutes.items():
        index = min(size - 1, max(0, (minute * 60 - start_ts) // bucket))
        row = counts[index]
        row[danger] = row.get(danger, 0) + count
    return Timeline(bucket, datetime.fromtimestamp(start_ts, UTC), counts)


def render_summary(events: Iterable[Event], incidents: Iterable[Incident], fmt: str, *,
                   since: datetime | None = None, now: datetime | None = None) -> str:
    """The summary as text (``table``), JSON or one HTML page. Raises ValueError for an
    unknown ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown summary format {fmt!r} (table, json or html)")
    s = summarize(events, incidents, since=since)
    generated = now or datetime.now(UTC)
    if fmt == "json":
        return json.dumps(summary_to_dict(s, generated), indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return _html(s, generated)
    return _table(s)


# --- json ---------------------------------------------------------------------------------


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def summary_to_dict(s: Summary, generated: datetime) -> dict[str, Any]:
    line = timeline(s)
    return {
        "schema": SUMMARY_SCHEMA,
        "generated": generated.isoformat(),
        "since": _iso(s.since),
        "first": _iso(s.first),
        "last": _iso(s.last),
        "events": s.events,
        "by_type": dict(s.by_type.most_common()),
        "by_danger": {str(d): s.by_danger.get(d, 0) for d in DANGERS},
        "top_sources": [{"src": src, "events": n, "danger": str(d)}
                        for src, n, d in s.top_sources()],
        "incident_count": len(s.incidents),
        "incidents": [incident_to_dict(i) for i in s.ranked_incidents()],
        "timeline": None if line is None else {
            "bucket_seconds": line.bucket,
            "buckets": [{"start": line.bucket_start(i).isoformat(),
                         **{str(d): row.get(d, 0) for d in DANGERS}}
                        for i, row in enumerate(line.counts)],
        },
    }


# --- table --------------------------------------------------------------------------------


def _t(value: object) -> Text:
    return Text(excerpt(str(value), 200))


def _when(t: datetime) -> str:
    return _utc(t).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(s: Summary) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=100, color_system=None, force_terminal=False,
                      no_color=True, highlight=False, emoji=False, markup=False)
    head = f"mamori watch summary: {s.events} event(s), {len(s.incidents)} incident(s)"
    if s.first and s.last:
        head += f", {_when(s.first)} to {_when(s.last)}"
    if s.since:
        head += f" (since {_when(s.since)})"
    console.print(Text(head))
    if s.events:
        dangers = Table(title="events by danger", title_justify="left")
        for d in DANGERS:
            dangers.add_column(str(d), justify="right")
        dangers.add_row(*(str(s.by_danger.get(d, 0)) for d in DANGERS))
        console.print(dangers)
        types = Table("type", "events", title="events by type", title_justify="left")
        for kind, n in s.by_type.most_common():
            types.add_row(_t(kind), str(n))
        console.print(types)
        sources = Table("source", "events", "worst danger", title="top sources",
                        title_justify="left")
        for src, n, d in s.top_sources():
            sources.add_row(_t(src), str(n), str(d))
        console.print(sources)
    if s.incidents:
        table = Table("danger", "kind", "source", "events", "first seen", "last seen",
                      title="incidents", title_justify="left")
        ranked = s.ranked_incidents()
        for i in ranked[:SHOWN_INCIDENTS]:
            table.add_row(str(i.danger), _t(i.kind), _t(i.src), str(i.count),
                          _when(i.first_seen), _when(i.last_seen))
        console.print(table)
        if len(ranked) > SHOWN_INCIDENTS:
            console.print(Text(f"… and {len(ranked) - SHOWN_INCIDENTS} more incident(s)"))
    if not s.events and not s.incidents:
        console.print(Text("nothing recorded in this period"))
    return buf.getvalue()


# --- html ---------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1f2328;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border-bottom:1px solid #d0d7de;padding:.25em .7em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.d{display:inline-block;padding:0 .4em;border-radius:3px;color:#fff;font-size:.85em}
.muted{color:#656d76}code{font-size:.9em;word-break:break-all}
.legend span{margin-right:1em}.legend i{display:inline-block;width:.8em;height:.8em;
margin-right:.3em}
"""


def _e(value: object) -> str:
    return html.escape(excerpt(str(value), 300), quote=True)


def _badge(d: Danger) -> str:
    return f'<span class="d" style="background:{COLOURS[d]}">{d}</span>'


def _svg(s: Summary) -> str:
    line = timeline(s)
    if line is None:
        return '<p class="muted">nothing recorded in this period</p>'
    width, height, left, top, bottom = 900, 260, 48, 28, 36
    plot_w, plot_h = width - left - 10, height - top - bottom
    n = len(line.counts)
    slot = plot_w / n
    peak = max([sum(row.values()) for row in line.counts] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="events per {line.bucket} s, stacked by danger">']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
                 f'y2="{top + plot_h}" stroke="#8c959f"/>')
    for frac in (0.5, 1.0):
        y = top + plot_h - plot_h * frac
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="#656d76">{peak * frac:g}</text>')
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                     'stroke="#eaeef2"/>')
    for i, row in enumerate(line.counts):
        x = left + i * slot + slot * 0.1
        y = top + plot_h
        label = _when(line.bucket_start(i))
        for d in DANGERS:
            count = row.get(d, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(f'<rect class="bar danger-{d}" x="{x:.1f}" y="{y:.1f}" '
                         f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{COLOURS[d]}">'
                         f'<title>{label}: {count} {d}</title></rect>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        x = left + i * slot
        if x > left + plot_w - 70 and i:
            break  # the label would run off the right edge
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" font-size="11" '
                     f'fill="#656d76">{_utc(line.bucket_start(i)):%m-%d %H:%M}</text>')
    span = n * line.bucket
    for inc in s.ranked_incidents()[:200]:
        offset = (_utc(inc.first_seen) - line.start).total_seconds()
        x = left + plot_w * min(1.0, max(0.0, offset / span))
        parts.append(f'<path class="incident-mark" d="M{x:.1f} {top - 4} l-5 -9 h10 z" '
                     f'fill="{COLOURS[inc.danger]}" stroke="#1f2328" stroke-width=".5">'
                     f'<title>{_e(inc.kind)} from {_e(inc.src)} ({inc.danger}, '
                     f'{inc.count} events) at {_when(inc.first_seen)}</title></path>')
    parts.append("</svg>")
    return "".join(parts)


def _html(s: Summary, generated: datetime) -> str:
    period = (f"{_when(s.first)} – {_when(s.last)}" if s.first and s.last else "no events")
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>mamori watch summary</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>mamori watch summary</h1>",
        f'<p id="overview">{s.events} event(s), {len(s.incidents)} incident(s); {period}'
        + (f"; since {_when(s.since)}" if s.since else "")
        + f' <span class="muted">(generated {_when(generated)})</span></p>',
        "<h2>Timeline</h2>",
        '<p class="legend">' + "".join(
            f'<span><i style="background:{COLOURS[d]}"></i>{d}</span>' for d in DANGERS)
        + '<span>▼ incident (first seen)</span></p>',
        _svg(s),
        "<h2>Events by danger</h2><table id=\"by-danger\"><tr>"
        + "".join(f"<th>{_badge(d)}</th>" for d in DANGERS) + "</tr><tr>"
        + "".join(f'<td class="n">{s.by_danger.get(d, 0)}</td>' for d in DANGERS)
        + "</tr></table>",
        "<h2>Events by type</h2><table id=\"by-type\"><tr><th>type</th><th>events</th></tr>"
        + "".join(f'<tr><td><code>{_e(k)}</code></td><td class="n">{n}</td></tr>'
                  for k, n in s.by_type.most_common()) + "</table>",
        "<h2>Top sources</h2><table id=\"top-sources\"><tr><th>source</th><th>events</th>"
        "<th>worst danger</th></tr>"
        + "".join(f'<tr><td><code>{_e(src)}</code></td><td class="n">{n}</td>'
                  f"<td>{_badge(d)}</td></tr>" for src, n, d in s.top_sources())
        + "</table>",
        "<h2>Incidents</h2>",
    ]
    ranked = s.ranked_incidents()
    if ranked:
        out.append('<table id="incidents"><tr><th>danger</th><th>kind</th><th>source</th>'
                   "<th>events</th><th>first seen</th><th>last seen</th><th>example</th></tr>")
        for i in ranked[:SHOWN_INCIDENTS]:
            example = _e(i.examples[0]) if i.examples else ""
            out.append(f"<tr><td>{_badge(i.danger)}</td><td><code>{_e(i.kind)}</code></td>"
                       f"<td><code>{_e(i.src)}</code></td><td class=\"n\">{i.count}</td>"
                       f"<td>{_when(i.first_seen)}</td><td>{_when(i.last_seen)}</td>"
                       f"<td><code>{example}</code></td></tr>")
        out.append("</table>")
        if len(ranked) > SHOWN_INCIDENTS:
            out.append(f'<p class="muted">… and {len(ranked) - SHOWN_INCIDENTS} more</p>')
    else:
        out.append('<p class="muted">no incidents</p>')
    out.append("</body></html>\n")
    return "\n".join(out)
