"""Run one scan job: open the store, run the pipeline, close the scan with its status.

The store is opened in a worker thread *while* the sweep already runs: importing SQLAlchemy
and checking the schema costs about half a second, as long as the whole sweep of one loopback
host. Results that arrive before the store is ready wait in a small buffer (bounded by the
number of endpoints worth listing) and are written the moment it is; from then on each result
is committed as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mamori.model import ScanRecord, ScanStatus
from mamori.scan.pipeline import ProgressFn, ScanPlan, run_scan
from mamori.scan.store_sink import StoreSink

if TYPE_CHECKING:
    from mamori.store import Store


@dataclass(frozen=True)
class JobResult:
    status: ScanStatus
    record: ScanRecord | None
    failure: str | None = None  # why the scan could not run, one line


def _open_and_begin(
    db: str | None, kind: str, targets: Sequence[str], options: Mapping[str, Any]
) -> tuple[Store, int]:
    from mamori.store import Store

    store = Store.open(db)
    try:
        return store, store.begin_scan(kind, targets, options)
    except BaseException:
        store.close()
        raise


Work = Callable[[StoreSink, ProgressFn], Coroutine[Any, Any, None]]


async def run_job(
    plan: ScanPlan | Work,
    *,
    db: str | None,
    kind: str,
    targets: Sequence[str],
    options: Mapping[str, Any],
    progress: ProgressFn,
) -> JobResult:
    """Run ``plan`` (or any ``work`` writing to the sink it is given) into the store at
    ``db``; return the final status and the stored record.

    Ctrl-C and SIGTERM stop the scan with status INTERRUPTED and what was found so far kept.
    Raises StoreError when the store cannot be opened; the sweep is then stopped at once.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    sink = StoreSink()  # buffers until the store is open (attach below)
    opening = asyncio.create_task(asyncio.to_thread(_open_and_begin, db, kind, targets, options))
    work: Work = plan if callable(plan) else (lambda snk, prog: run_scan(plan, snk, prog))
    scanning: asyncio.Task[None] = asyncio.create_task(work(sink, progress))
    store_failed = False

    def attach(task: asyncio.Task[tuple[Store, int]]) -> None:
        nonlocal store_failed
        if task.cancelled() or task.exception() is not None:
            store_failed = True
            scanning.cancel()  # no store: no point in probing further
        else:
            sink.attach(*task.result())

    opening.add_done_callback(attach)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
    status, failure = ScanStatus.DONE, None
    try:
        await scanning
    except asyncio.CancelledError:
        if not store_failed:
            status = ScanStatus.INTERRUPTED
        await asyncio.wait([scanning])  # let the pipeline stop its sweep and workers
    except OSError as exc:
        status, failure = ScanStatus.FAILED, f"the scan could not run: {exc}"
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    store, scan_id = await opening  # raises StoreError when the store could not open
    try:
        store.finish_scan(scan_id, status)
        return JobResult(status, store.get_scan(scan_id), failure)
    finally:
        sink.detach()
        store.close()
