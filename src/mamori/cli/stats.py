"""What `mamori scan`/`mamori check` say on stderr while they run: the terminal's progress bar,
nmap-like ``--stats-every`` lines (for logs and pipes), ``-v`` (each open port and service as
found) and ``-q`` (nothing but errors). stdout stays for the report alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from mamori.cli.common import UsageProblem
from mamori.cli.progress import progress_reporter
from mamori.model import CheckResult, CheckStatus, Endpoint, PortState, Proto, Service, Target
from mamori.scan.pipeline import ProgressFn
from mamori.scan.store_sink import RunWatcher

StatsEveryOption = Annotated[str | None, typer.Option(
    "--stats-every", help="Print a progress line on stderr this often (0.5, 10s, 1m), "
    "as nmap's --stats-every; off unless given.", show_default=False)]
VerboseOption = Annotated[bool, typer.Option(
    "-v", "--verbose", help="Say more on stderr: each open port and service as it is found.")]
QuietOption = Annotated[bool, typer.Option(
    "-q", "--quiet", help="Nothing on stderr but errors (no progress bar, no stats).")]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def stats_interval(text: str | None) -> float | None:
    """``--stats-every``: seconds, or a number with ms/s/m/h; None when not given.

    Raises UsageProblem for anything else (zero, negative, nan, inf, below 0.1 s)."""
    if text is None:
        return None
    raw = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if raw.endswith(u)), "")
    try:
        value = float(raw[: len(raw) - len(unit)]) * _UNITS.get(unit, 1.0)
    except ValueError:
        value = float("nan")
    if not 0.1 <= value < float("inf"):  # nan fails both comparisons
        raise UsageProblem(
            f"--stats-every must be a duration of at least 0.1 s such as 0.5, 10s or 1m, "
            f"not {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Chatter:
    """How much a run says on stderr: ``level`` -1 quiet, 0 normal, 1 verbose; ``interval``
    the --stats-every seconds (None: no stats lines)."""

    level: int = 0
    interval: float | None = None

    def say(self, console: Console, text: str) -> None:
        """``text`` on ``console`` unless quiet (errors never go through here)."""
        if self.level >= 0:
            console.print(text, markup=False, highlight=False, soft_wrap=True)


def chatter(verbose: bool, quiet: bool, stats_every: str | None) -> Chatter:
    """The -v/-q/--stats-every choice; raises UsageProblem for -v with -q or a bad interval."""
    if verbose and quiet:
        raise UsageProblem("give either -v or -q, not both")
    return Chatter(1 if verbose else -1 if quiet else 0, stats_interval(stats_every))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stats_line(elapsed: float, hosts: int, done: int, total: int, services: int,
               findings: int, stage: str | None) -> str:
    """One nmap-like stats line, e.g. ``Stats: 0:00:12 elapsed; 1 host; 23456/65535 probes
    done (35.8%); 3 services identified; 2 findings; stage: TCP sweep``."""
    whole = int(elapsed)
    clock = f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    share = f" ({100.0 * min(done, total) / total:.1f}%)" if total else ""
    parts = [f"Stats: {clock} elapsed", _plural(hosts, "host"),
             f"{done}/{total} probes done{share}",
             f"{_plural(services, 'service')} identified", _plural(findings, "finding")]
    if stage:
        parts.append(f"stage: {stage}")
    return "; ".join(parts)


class RunStats(RunWatcher):
    """Counts what the run reports (progress callback and records); with ``verbose`` it prints
    each open port and identified service as nmap -v does."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.started = time.monotonic()
        self.hosts = self.done = self.total = self.services = self.findings = 0
        self.stage: str | None = None

    def progress(self, *, advance: int = 0, total: int | None = None,
                 stage: str | None = None) -> None:
        self.done += advance
        self.total += total or 0
        if stage:
            self.stage = stage

    def line(self) -> str:
        return stats_line(time.monotonic() - self.started, self.hosts, self.done, self.total,
                          self.services, self.findings, self.stage)

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def on_host(self, target: Target) -> None:
        self.hosts += 1

    def on_endpoints(self, endpoints: list[Endpoint]) -> None:
        if self.verbose:
            for e in endpoints:
                if e.state is PortState.OPEN:
                    self._say(f"Discovered open port {e.port}/{e.proto.value} on {e.address}")

    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None:
        self.services += 1
        if self.verbose:
            what = " ".join(x for x in (service.name, service.product, service.version) if x)
            self._say(f"Service on {port}/{proto.value} {address}: {what} "
                      f"({service.confidence})")

    def on_check(self, result: CheckResult) -> None:
        if result.status is CheckStatus.FINDING:
            self.findings += 1

    @contextmanager
    def every(self, seconds: float | None) -> Iterator[None]:
        """Print a stats line every ``seconds`` (from a thread) while the block runs."""
        if seconds is None:
            yield
            return
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(seconds):
                self._say(self.line())

        ticker = threading.Thread(target=tick, name="mamori-stats", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


def _silent(*, advance: int = 0, total: int | None = None, stage: str | None = None) -> None:
    return None


@contextmanager
def run_monitor(console: Console,
                talk: Chatter) -> Iterator[tuple[ProgressFn, RunWatcher | None]]:
    """The progress callback and record watcher for one run: nothing at all when quiet;
    otherwise the bar (terminal only), stats lines (``talk.interval``) and ``-v`` output."""
    if talk.level < 0:
        yield _silent, None
        return
    stats = RunStats(console, verbose=talk.level > 0)
    with progress_reporter(console) as bar, stats.every(talk.interval):

        def update(*, advance: int = 0, total: int | None = None,
                   stage: str | None = None) -> None:
            stats.progress(advance=advance, total=total, stage=stage)
            bar(advance=advance, total=total, stage=stage)

        yield update, stats
