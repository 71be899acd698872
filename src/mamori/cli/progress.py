"""A progress bar on stderr when stderr is a terminal; silence otherwise.

stdout stays for the report alone (``--format json`` pipes stay clean).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mamori.scan.pipeline import ProgressFn


@contextmanager
def progress_reporter(console: Console) -> Iterator[ProgressFn]:
    """Yield a progress callback; it draws a rich bar only when ``console`` is a terminal."""
    if not console.is_terminal:

        def quiet(*, advance: int = 0, total: int | None = None, stage: str | None = None) -> None:
            return None

        yield quiet
        return
    bar = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("starting", total=0)
    totals = {"total": 0}

    def update(*, advance: int = 0, total: int | None = None, stage: str | None = None) -> None:
        if total:
            totals["total"] += total
            bar.update(task, total=totals["total"])
        if stage:
            bar.update(task, description=stage)
        if advance:
            bar.advance(task, advance)

    with bar:
        yield update
