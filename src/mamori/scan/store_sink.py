"""The one adapter from a scan's records to the store: every record written as it arrives.

``mamori scan``/``mamori check`` (``scan/job.py``), the web page's worker (``serve/worker.py``)
and ``mamori import`` all write through ``StoreSink``. The job starts its sweep before the
store is open (opening costs as long as a loopback sweep), so a sink made without a store
keeps the records in order until ``attach`` hands it one, then writes them and every later
record at once. The store is imported for typing only: importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from mamori.model import (
    CheckResult,
    Endpoint,
    HostResult,
    ListenerRecord,
    ProbeError,
    Proto,
    Service,
    Target,
)
from mamori.model.path import PathReport

if TYPE_CHECKING:
    from mamori.store import Store

_Write = Callable[["Store", int], None]


class RunWatcher(Protocol):
    """Sees the run's records as they arrive (the CLI's stats line and ``-v``); stores nothing."""

    def on_host(self, target: Target) -> None: ...
    def on_endpoints(self, endpoints: list[Endpoint]) -> None: ...
    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None: ...
    def on_check(self, result: CheckResult) -> None: ...


class StoreSink:
    """Pipeline and ``mamori check`` records into scan ``scan_id`` of ``store``.

    Called on one thread, one record at a time. Store failures (``StoreError``) propagate to
    the caller, unless the sink keeps a journal (``journal=True``, ``mamori scan``/``check``):
    then every record is also kept in memory, the first failure is kept in ``failure``,
    ``on_failure`` is called once and nothing more is written to the store, so the run can
    still be reported from ``journal`` (``replay``). Without a store (``StoreSink()``) records
    wait until ``attach``; after ``detach`` they are dropped.
    """

    def __init__(self, store: Store | None = None, scan_id: int = 0, *,
                 journal: bool = False) -> None:
        self.store = store
        self.scan_id = scan_id
        self.pending: list[_Write] = []
        self.closed = False
        self.journal: list[_Write] | None = [] if journal else None
        self.failure: Exception | None = None  # the StoreError that stopped the writes
        self.on_failure: Callable[[], object] | None = None
        self.watcher: RunWatcher | None = None  # told of each record too (not of replays)

    def attach(self, store: Store, scan_id: int) -> None:
        """Write to ``store``/``scan_id`` from now on, starting with what waited."""
        self.store, self.scan_id = store, scan_id
        pending, self.pending = self.pending, []
        for write in pending:
            self._write(store, scan_id, write)

    def replay(self, store: Store, scan_id: int) -> None:
        """Write every journaled record to ``store``/``scan_id`` (an in-memory store, when the
        real one failed); a record the store refuses is skipped, as it was the first time."""
        from mamori.store import StoreError

        for write in self.journal or ():
            try:
                write(store, scan_id)
            except StoreError:
                continue

    def _write(self, store: Store, scan_id: int, write: _Write) -> None:
        if self.journal is None:
            write(store, scan_id)
            return
        if self.failure is not None:
            return  # the store failed once: the journal keeps the rest
        try:
            write(store, scan_id)
        except Exception as exc:
            from mamori.store import StoreError  # imported late: this module stays cheap

            if not isinstance(exc, StoreError):
                raise
            self.failure = exc
            if self.on_failure is not None:
                self.on_failure()

    def detach(self) -> None:
        """Drop whatever a stopping sweep thread still reports once the scan is closed."""
        self.closed = True

    def _do(self, write: _Write) -> None:
        if self.closed:
            return
        if self.journal is not None:
            self.journal.append(write)
        if self.store is None:
            self.pending.append(write)
        else:
            self._write(self.store, self.scan_id, write)

    def on_host(self, target: Target) -> None:
        self._do(lambda s, i: s.add_host(i, target.address, target.hostname))
        if self.watcher is not None and not self.closed:
            self.watcher.on_host(target)

    def on_hosts(self, hosts: list[HostResult]) -> None:
        """Whole hosts (with endpoints and services), in one commit (``mamori import``)."""
        self._do(lambda s, i: s.add_host_results(i, hosts))

    def on_endpoints(self, endpoints: list[Endpoint]) -> None:
        self._do(lambda s, i: s.add_endpoints(i, endpoints))
        if self.watcher is not None and not self.closed:
            self.watcher.on_endpoints(endpoints)

    def on_service(self, address: str, proto: Proto, port: int, service: Service) -> None:
        self._do(lambda s, i: s.set_service(i, address, proto, port, service))
        if self.watcher is not None and not self.closed:
            self.watcher.on_service(address, proto, port, service)

    def on_error(self, error: ProbeError) -> None:
        self._do(lambda s, i: s.add_error(i, error))

    def on_not_shown(self, address: str, counts: Mapping[str, Mapping[str, int]]) -> None:
        self._do(lambda s, i: s.set_not_shown(i, address, counts))

    def on_check(self, result: CheckResult) -> None:
        self._do(lambda s, i: s.add_check_result(i, result))
        if self.watcher is not None and not self.closed:
            self.watcher.on_check(result)

    def on_listener(self, record: ListenerRecord) -> None:
        self._do(lambda s, i: s.add_listener(i, record))

    def on_paths(self, report: PathReport) -> None:
        """The joined path verdicts of a `mamori check` run (one per run)."""
        self._do(lambda s, i: s.set_path_report(i, report))
