"""What every ``mamori`` sub-command module shares: exit codes, the one-line error, writing a
report to stdout or --output, opening the store with its errors mapped to exit codes, and
ending a scan or check run with the right exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from mamori.model import Acceptance, ScanRecord, Severity
    from mamori.scan.job import JobResult
    from mamori.store import Store

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
stderr = Console(stderr=True, highlight=False)


class UsageProblem(Exception):
    """Bad user input: reported as one line, exit 2, nothing stored."""


def fail(code: int, message: str) -> NoReturn:
    """``mamori: error: <message>`` on stderr, then exit with ``code``."""
    stderr.print(f"mamori: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so what is still buffered for a reader that has gone (or a
    full disk) cannot fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout and flush. A reader that has gone (``| head -1``): the rest is
    dropped quietly and the command ends as it would have; any other failure (``> /dev/full``)
    is exit 3 with one line."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    except OSError as exc:
        quiet_stdout()
        fail(EXIT_FAILED, f"cannot write to stdout: {exc.strerror or exc}")


def want_color(output: Path | None) -> bool:
    """ANSI colours in a table report: only on stdout that is a terminal, never with NO_COLOR
    set and non-empty (https://no-color.org), never into an --output file."""
    if output is not None or os.environ.get("NO_COLOR"):
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # stdout replaced or closed
        return False


def for_report(record: ScanRecord, fmt: str, all_platforms: bool) -> ScanRecord:
    """``record`` as a human-readable report shows it: the fixes of this system and the
    router only, unless ``all_platforms`` (JSON and SARIF keep every platform)."""
    from mamori.report.platforms import FILTERED_FORMATS, only_platforms, shown_platforms

    if fmt not in FILTERED_FORMATS:
        return record
    return only_platforms(record, shown_platforms(sys.platform, all_platforms))


def emit(text: str, output: Path | None = None) -> None:
    """Write a rendered report to --output, or stdout. Only the report goes to stdout."""
    text = text if text.endswith("\n") else text + "\n"
    if output is None:
        write_stdout(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(EXIT_FAILED, f"cannot write {output}: {exc.strerror or exc}")
    stderr.print(f"report written to {output}", markup=False)


def open_store(db: str | None) -> Store:
    """Open (and migrate) the store; a bad URL is exit 2, a broken database exit 3."""
    from mamori.store import Store, StoreError, StoreUsageError

    try:
        return Store.open(db)
    except StoreUsageError as exc:
        fail(EXIT_USAGE, str(exc))
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))


def require_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """Exit 3 with one line naming the pip extra when an optional dependency is missing
    (``mamori serve`` on a plain ``pip install .``), instead of a traceback later."""
    import importlib.util

    for name in modules:
        if importlib.util.find_spec(name) is None:
            fail(EXIT_FAILED, f"{command} needs the optional {extra!r} dependencies "
                 f"({name} is missing): python3 -m pip install '.[{extra}]'")


def finish(
    result: JobResult, fmt: str, output: Path | None, threshold: Severity | None,
    *, lang: str = "en", only_problems: bool = False, accepted: Sequence[Acceptance] = (),
    all_platforms: bool = False,
) -> None:
    """Print the stored record, its findings that ``accepted`` covers marked so; exit 130
    interrupted, 3 failed, 1 findings >= threshold that are not accepted."""
    from mamori.model import ScanStatus
    from mamori.report.accepted import apply_acceptances, failing

    record = result.record
    if record is not None:
        record = apply_acceptances(record, accepted, date.today())

    if result.failure:
        stderr.print(f"mamori: error: {result.failure}", markup=False, soft_wrap=True)
    if result.status is ScanStatus.INTERRUPTED:
        stderr.print("interrupted: results so far are kept", markup=False)
    if record is not None:
        from mamori.report import render

        emit(render(for_report(record, fmt, all_platforms), fmt, lang=lang,
                    only_problems=only_problems, color=want_color(output)), output)
    if result.status is ScanStatus.INTERRUPTED:
        raise typer.Exit(130)
    if result.status is not ScanStatus.DONE or result.failure is not None:
        raise typer.Exit(EXIT_FAILED)  # failed, or not stored as it should have been
    if threshold is not None and record is not None and failing(record, threshold):
        raise typer.Exit(EXIT_FINDINGS)


def load_acceptances(db: str | None) -> list[Acceptance]:
    """The stored accepted risks; none (with one line on stderr) when the store cannot give
    them: a finding then counts as not accepted, the strict side."""
    from mamori.store import Store, StoreError
    from mamori.store.accepted import list_acceptances
    from mamori.store.engine import missing_sqlite_file

    try:
        if missing_sqlite_file(db) is not None:
            return []  # no database, nothing accepted; opening it would create an empty one
        with Store.open(db) as store:
            return list_acceptances(store)
    except StoreError as exc:
        stderr.print(f"mamori: warning: accepted risks not read: {exc}", markup=False)
        return []
