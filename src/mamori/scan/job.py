"""Run one scan job: open the store, run the pipeline, close the scan with its status.

The store lives in a child process (``store/remote.py``), opened *while* the sweep already
runs: importing SQLAlchemy and checking the schema costs about 0.2 s of CPU, most of the
sweep of one loopback host, and in a thread it would compete with the sweep for the GIL; this
process never imports SQLAlchemy. Results that arrive before the store is ready wait in a small
buffer (bounded by the number of endpoints worth listing) and are written the moment it is;
from then on each result is committed as it arrives. The accepted risks for the report are
read through the same store before it closes.

The run's start is the moment the command began (``started_at``), not when the store was
ready. A store that fails mid-run (disk full) stops the run: the sink keeps every record in
memory, so the report still shows what was found, from an in-memory copy, and the run ends
"failed" (its stored copy is incomplete). A SQLite file deleted or replaced during the run
is noticed at the end (its inode changed) and said, the report again printed from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mamori.model import Acceptance, ScanRecord, ScanStatus
from mamori.scan.pipeline import ProgressFn, ScanPlan, run_scan
from mamori.scan.store_sink import RunWatcher, StoreSink
from mamori.store.remote import RemoteStore

if TYPE_CHECKING:
    from mamori.store import Store


@dataclass(frozen=True)
class JobResult:
    status: ScanStatus
    record: ScanRecord | None
    failure: str | None = None  # why the scan could not run, one line
    # The stored accepted risks, read before the store closed; None: not read (ask the store)
    accepted: list[Acceptance] | None = None


@dataclass(frozen=True)
class _Run:
    """What the job writes its scan row with (again, into memory, when the store fails)."""

    kind: str
    targets: Sequence[str]
    options: Mapping[str, Any]
    started_at: datetime


FileId = tuple[int, int] | None  # (st_dev, st_ino) of the SQLite file; None: none or gone


def _file_id(path: Path | None) -> FileId:
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st is not None else None


def _open_and_begin(
    store: RemoteStore, db: str | None, run: _Run
) -> tuple[RemoteStore, int, FileId]:
    try:
        store.open(db)
        scan_id = int(store.call("begin_scan", run.kind, list(run.targets), dict(run.options),
                                 run.started_at, pid=os.getpid()))
        path = Path(store.sqlite_path) if store.sqlite_path is not None else None
        return store, scan_id, _file_id(path)
    except BaseException:
        store.close()
        raise


def _from_memory(
    sink: StoreSink, run: _Run, scan_id: int, status: ScanStatus
) -> ScanRecord | None:
    """The run rebuilt from the sink's journal in an in-memory store, under ``scan_id``."""
    from mamori.store import Store, StoreError

    try:
        with Store.open("sqlite://") as memory:
            mem_id = memory.begin_scan(run.kind, run.targets, run.options, run.started_at)
            sink.replay(memory, mem_id)
            memory.finish_scan(mem_id, status)
            record = memory.get_scan(mem_id)
    except StoreError:
        return None
    return dataclasses.replace(record, id=scan_id) if record is not None else None


def _close(
    store: RemoteStore, scan_id: int, opened_as: FileId, sink: StoreSink, run: _Run,
    status: ScanStatus, failure: str | None,
) -> JobResult:
    """Finish the stored scan and read it back (and the accepted risks); when the store failed
    or its file is gone, say so and build the record from memory instead."""
    from mamori.store import StoreError

    path = Path(store.sqlite_path) if store.sqlite_path is not None else None
    if path is not None and opened_as is not None and _file_id(path) != opened_as:
        # Writing now would only create a new, empty file there.
        return JobResult(status, _from_memory(sink, run, scan_id, status),
                         f"the database file {path} was deleted or replaced during the run: "
                         "this run is not stored (the report below is from memory)")
    if sink.failure is None:
        try:
            store.finish_scan(scan_id, status)
            record = store.get_scan(scan_id)
        except StoreError as exc:
            sink.failure = exc
        else:
            try:
                accepted = store.call("acceptances")
            except StoreError:
                accepted = None  # the caller asks again and says why not
            return JobResult(status, record, failure, accepted)
    with contextlib.suppress(StoreError):
        store.finish_scan(scan_id, ScanStatus.FAILED)  # best effort: the disk may be full
    return JobResult(ScanStatus.FAILED, _from_memory(sink, run, scan_id, ScanStatus.FAILED),
                     f"the database could not be written ({sink.failure}): the run stopped "
                     "there; the report below is from memory and the stored run is incomplete")


Work = Callable[[StoreSink, ProgressFn], Coroutine[Any, Any, None]]


async def run_job(
    plan: ScanPlan | Work,
    *,
    db: str | None,
    kind: str,
    targets: Sequence[str],
    options: Mapping[str, Any],
    progress: ProgressFn,
    started_at: datetime | None = None,
    watcher: RunWatcher | None = None,
) -> JobResult:
    """Run ``plan`` (or any ``work`` writing to the sink it is given) into the store at
    ``db``; return the final status and the stored record. ``started_at``: when the command
    began (default: now). ``watcher`` sees each record as it arrives (stats, ``-v``).

    Ctrl-C and SIGTERM stop the scan with status INTERRUPTED and what was found so far kept.
    A store that fails during the run stops it: status FAILED, ``failure`` says why, and the
    record comes from memory; so does it when the SQLite file was deleted during the run.
    Raises StoreError when the store cannot be opened; the sweep is then stopped at once.
    """
    run = _Run(kind, targets, options, started_at or datetime.now(UTC))
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    sink = StoreSink(journal=True)  # buffers until the store is open (attach below)
    sink.watcher = watcher
    # Started here, not in the thread: a thread may wait for the GIL until the sweep is over.
    remote = RemoteStore.take()
    opening = asyncio.create_task(asyncio.to_thread(_open_and_begin, remote, db, run))
    work: Work = plan if callable(plan) else (lambda snk, prog: run_scan(plan, snk, prog))
    scanning: asyncio.Task[None] = asyncio.create_task(work(sink, progress))
    sink.on_failure = scanning.cancel  # a store that fails mid-run: stop probing
    store_failed = False

    def attach(task: asyncio.Task[tuple[RemoteStore, int, FileId]]) -> None:
        nonlocal store_failed
        if task.cancelled() or task.exception() is not None:
            store_failed = True
            scanning.cancel()  # no store: no point in probing further
        else:
            store, scan_id, _ = task.result()
            sink.attach(cast("Store", store), scan_id)  # the same methods, in the child

    opening.add_done_callback(attach)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
    status, failure = ScanStatus.DONE, None
    try:
        await scanning
    except asyncio.CancelledError:
        if not store_failed and sink.failure is None:
            status = ScanStatus.INTERRUPTED
        await asyncio.wait([scanning])  # let the pipeline stop its sweep and workers
    except OSError as exc:
        status, failure = ScanStatus.FAILED, f"the scan could not run: {exc}"
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
    store, scan_id, opened_as = await opening  # raises StoreError: the store did not open
    try:
        return _close(store, scan_id, opened_as, sink, run, status, failure)
    finally:
        sink.detach()
        store.close(wait=False)  # all is committed: its exit (~0.1 s) is not worth waiting for
