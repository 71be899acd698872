"""The store: scans and their results in SQLite (default) or any SQLAlchemy database.

Every write commits before it returns, so a scan killed at any moment leaves a consistent
database with everything reported so far; the next ``Store.open`` marks such a scan
"interrupted". SQLite runs in WAL mode so readers (``mamori history``) never block the writer.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from mamori import __version__
from mamori.model import (
    CheckResult,
    CheckStatus,
    CheckText,
    Confidence,
    Endpoint,
    ErrorKind,
    Evidence,
    Exposure,
    HostResult,
    Layer,
    ListenerRecord,
    PortState,
    ProbeError,
    Proto,
    Reason,
    ScanRecord,
    ScanStatus,
    ScanSummary,
    Service,
    Severity,
)
from mamori.model.audit import Scope, Verdict
from mamori.model.path import PathReport
from mamori.procs import pid_alive
from mamori.store.engine import (
    default_db_url,
    enable_wal,
    make_engine,
    normalize_url,
    one_line,
)
from mamori.store.errors import StoreError
from mamori.store.migrate import migrate
from mamori.store.models import (
    CheckResultRow,
    EndpointRow,
    ErrorRow,
    HostRow,
    ListenerRow,
    ScanRow,
    ServiceRow,
)
from mamori.store.paths import read_path_report, write_path_report

__all__ = ["Store", "StoreError", "default_db_url", "sort_listeners"]


def _now() -> datetime:
    return datetime.now(UTC)


def _json_safe(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(dict(value))))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} are not JSON-serialisable: {exc}") from exc


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; remote-controlled text might. Escaped the way evidence
    # excerpts escape other unprintable characters, so the result is stored, not lost.
    return value.replace("\x00", "\\x00")


def _opt_no_nul(value: str | None) -> str | None:
    return None if value is None else _no_nul(value)


def _check_values(result: CheckResult) -> dict[str, Any]:
    """The non-key columns of one check result, ready to write."""
    ev = result.evidence
    evidence = None
    if ev is not None:
        evidence = {
            "test": _no_nul(ev.test),
            "request": _opt_no_nul(ev.request),
            "reply": _opt_no_nul(ev.reply),
            "facts": {_no_nul(str(k)): _no_nul(str(v)) for k, v in ev.facts.items()},
        }
    return {
        "status": result.status.value,
        "severity": result.severity.value,
        "layer": result.layer.value,
        "confidence": result.confidence.value if result.confidence is not None else None,
        "title": _no_nul(result.title),
        "summary": _no_nul(result.summary),
        "evidence": evidence,
        "remediation": {_no_nul(str(k)): _no_nul(str(v)) for k, v in result.remediation.items()},
        "refs": [_no_nul(str(r)) for r in result.references],
        "texts": {
            _no_nul(str(lang)): {
                "title": _no_nul(text.title),
                "summary": _no_nul(text.summary),
                "why": _no_nul(text.why),
                "fixes": {_no_nul(str(k)): _no_nul(str(v)) for k, v in text.fixes.items()},
            }
            for lang, text in result.texts.items()
        } or None,
        "exposure": _exposure_value(result.exposure),
    }


def _exposure_value(e: Exposure | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"address": _no_nul(e.address), "port": e.port, "scope": e.scope.value,
            "firewall": e.firewall.value if e.firewall is not None else None,
            "check_severity": e.check_severity.value, "reach": e.reach}


def _texts_from_row(value: Any) -> dict[str, CheckText]:
    if not isinstance(value, dict):
        return {}
    return {
        str(lang): CheckText(
            title=str(t.get("title", "")),
            summary=str(t.get("summary", "")),
            why=str(t.get("why", "")),
            fixes={str(k): str(v) for k, v in (t.get("fixes") or {}).items()},
        )
        for lang, t in value.items()
        if isinstance(t, dict)
    }


def _exposure_from_row(value: Any) -> Exposure | None:
    if not isinstance(value, dict):
        return None
    firewall = value.get("firewall")
    return Exposure(address=str(value["address"]), port=int(value["port"]),
                    scope=Scope(value["scope"]),
                    firewall=Verdict(firewall) if firewall is not None else None,
                    check_severity=Severity(value["check_severity"]),
                    reach=str(value["reach"]) if value.get("reach") else None)


def _check_from_row(m: Any) -> CheckResult:
    ev = m.evidence
    evidence = None
    if ev is not None:
        evidence = Evidence(
            test=ev["test"],
            request=ev.get("request"),
            reply=ev.get("reply"),
            facts=dict(ev.get("facts") or {}),
        )
    return CheckResult(
        check_id=m.check_id,
        address=m.address,
        port=m.port,
        proto=Proto(m.proto),
        status=CheckStatus(m.status),
        severity=Severity(m.severity),
        layer=Layer(m.layer),
        confidence=Confidence(m.confidence) if m.confidence is not None else None,
        title=m.title,
        summary=m.summary,
        evidence=evidence,
        remediation=dict(m.remediation or {}),
        references=tuple(m.refs or ()),
        texts=_texts_from_row(m.texts),
        exposure=_exposure_from_row(m.exposure),
    )


def _listener_values(rec: ListenerRecord) -> dict[str, Any]:
    """The non-key columns of one listener, ready to write."""
    return {
        "scope": Scope(rec.scope).value,
        "pid": rec.pid,
        "process": _opt_no_nul(rec.process),
        "username": _opt_no_nul(rec.user),
        "exe": _opt_no_nul(rec.exe),
        "firewall": Verdict(rec.firewall).value if rec.firewall is not None else None,
        "firewall_backend": _no_nul(rec.firewall_backend),
        "firewall_reason": _no_nul(rec.firewall_reason),
        "firewall_rule": _opt_no_nul(rec.firewall_rule),
        "service": _opt_no_nul(rec.service),
        "product": _opt_no_nul(rec.product),
        "probe_address": _opt_no_nul(rec.probe_address),
        "not_probed": _opt_no_nul(rec.not_probed),
    }


def _listener_from_row(m: Any) -> ListenerRecord:
    return ListenerRecord(
        proto=Proto(m.proto),
        address=m.address,
        port=m.port,
        scope=Scope(m.scope),
        pid=m.pid,
        process=m.process,
        user=m.username,
        exe=m.exe,
        firewall=Verdict(m.firewall) if m.firewall is not None else None,
        firewall_backend=m.firewall_backend,
        firewall_reason=m.firewall_reason,
        firewall_rule=m.firewall_rule,
        service=m.service,
        product=m.product,
        probe_address=m.probe_address,
        not_probed=m.not_probed,
    )


def sort_listeners(listeners: Sequence[ListenerRecord]) -> tuple[ListenerRecord, ...]:
    """Return ``listeners`` most exposed first (``ListenerRecord.exposure``: all interfaces and
    allowed first, loopback last), ties by proto, port, then address."""
    return tuple(sorted(listeners, key=lambda r: (r.exposure, r.proto.value, r.port, r.address)))


# Findings first (worst first), then what could not be tested, then what passed.
_STATUS_ORDER = {CheckStatus.FINDING: 0, CheckStatus.NOT_TESTED: 1, CheckStatus.PASSED: 2}


def _sort_checks(checks: list[CheckResult], host_order: Sequence[str]) -> tuple[CheckResult, ...]:
    rank = {address: i for i, address in enumerate(host_order)}
    return tuple(
        sorted(
            checks,
            key=lambda c: (
                _STATUS_ORDER[c.status],
                -c.severity.rank if c.status is CheckStatus.FINDING else 0,
                rank.get(c.address, len(rank)),
                c.address,
                c.proto.value,
                c.port,
                c.check_id,
            ),
        )
    )


class Store:
    """A handle on one database. Not thread-safe; open one per thread or process."""

    def __init__(self, engine: Engine, hostname: str) -> None:
        self._engine = engine
        self._hostname = hostname

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Open (creating and migrating as needed) the database at ``url``.

        ``url`` is a SQLAlchemy URL or a plain file path; None means ``default_db_url()``.
        Scans left "running" by a process that no longer exists on this host are marked
        "interrupted". Returns the open ``Store``. Raises ``StoreError`` when the URL is bad,
        the path is a directory or a foreign file, the database is unreachable, or its schema
        is newer than this version of mamori; nothing stored is changed in those cases.
        """
        parsed = normalize_url(url if url is not None else default_db_url())
        engine = make_engine(parsed)
        try:
            migrate(engine)
            enable_wal(engine)
            store = cls(engine, socket.gethostname())
            store._mark_interrupted()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open database: {one_line(exc)}") from exc
        except StoreError:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        """Release connections. The Store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and maintenance commands)."""
        return self._engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction, committed on success; database failures become ``StoreError``."""
        try:
            with self._engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {one_line(exc)}") from exc

    def _mark_interrupted(self) -> None:
        with self._tx() as conn:
            rows = conn.execute(
                select(ScanRow.id, ScanRow.pid, ScanRow.hostname).where(
                    ScanRow.status == ScanStatus.RUNNING.value
                )
            ).all()
            # Another host's pid means nothing here, so only scans from this host are judged.
            dead = [
                r.id
                for r in rows
                if r.hostname == self._hostname and (r.pid is None or not pid_alive(r.pid))
            ]
            if dead:
                conn.execute(
                    update(ScanRow)
                    .where(ScanRow.id.in_(dead), ScanRow.status == ScanStatus.RUNNING.value)
                    .values(status=ScanStatus.INTERRUPTED.value)
                )

    # -- writing -----------------------------------------------------------------------------

    def begin_scan(
        self, kind: str, targets: Sequence[str], options: Mapping[str, Any],
        started_at: datetime | None = None, pid: int | None = None,
    ) -> int:
        """Record a new running scan by this process (or by process ``pid``: the scan command
        writing through a store process), started at ``started_at`` (when the command began
        its work; default now). Returns its id.

        Raises ``StoreError`` when ``options`` are not JSON-serialisable or the write fails.
        """
        opts = _json_safe(options, "scan options")
        with self._tx() as conn:
            result = conn.execute(
                insert(ScanRow).values(
                    kind=kind,
                    status=ScanStatus.RUNNING.value,
                    started_at=started_at or _now(),
                    finished_at=None,
                    targets=list(targets),
                    options=opts,
                    mamori_version=__version__,
                    pid=pid if pid is not None else os.getpid(),
                    hostname=self._hostname,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None  # an INSERT into a table with a primary key always has one
            return int(pk[0])

    def add_host(self, scan_id: int, address: str, hostname: str | None) -> None:
        """Record a host of the scan (idempotent; a non-None hostname replaces the old one).

        Raises ``StoreError`` when the write fails (e.g. unknown scan id).
        """
        with self._tx() as conn:
            self._upsert_host(conn, scan_id, address, {"hostname": hostname} if hostname else {})

    def set_not_shown(
        self, scan_id: int, address: str, counts: Mapping[str, Mapping[str, int]]
    ) -> None:
        """Record per-protocol counts of ports probed but not listed, e.g. {"tcp": {"closed": 9}}.

        Replaces earlier counts for that host. Raises ``StoreError`` when the write fails.
        """
        value = {str(p): {str(k): int(n) for k, n in c.items()} for p, c in counts.items()}
        with self._tx() as conn:
            self._upsert_host(conn, scan_id, address, {"not_shown": value})

    def add_endpoint(self, scan_id: int, ep: Endpoint) -> None:
        """Insert or update one endpoint (and its service, if any) and commit.

        Raises ``StoreError`` when the write fails.
        """
        self.add_endpoints(scan_id, (ep,))

    def add_endpoints(self, scan_id: int, eps: Sequence[Endpoint]) -> None:
        """Insert or update several endpoints (and their services) in one commit.

        Raises ``StoreError`` when the write fails; then none of them is stored.
        """
        if not eps:
            return
        with self._tx() as conn:
            for ep in eps:
                endpoint_id = self._upsert_endpoint(conn, scan_id, ep)
                if ep.service is not None:
                    self._upsert_service(conn, endpoint_id, ep.service)

    def add_host_results(self, scan_id: int, hosts: Sequence[HostResult]) -> None:
        """Insert or update whole hosts (hostname, not-shown counts, endpoints and their
        services) in one commit: ``mamori import`` writes thousands of hosts, and a commit
        per record made a 20,000-host file take minutes.

        Raises ``StoreError`` when the write fails; then none of them is stored.
        """
        if not hosts:
            return
        with self._tx() as conn:
            for host in hosts:
                values: dict[str, Any] = {"hostname": host.hostname} if host.hostname else {}
                if host.not_shown:
                    values["not_shown"] = {str(p): {str(k): int(n) for k, n in c.items()}
                                           for p, c in host.not_shown.items()}
                self._upsert_host(conn, scan_id, host.address, values)
                for ep in host.endpoints:
                    endpoint_id = self._upsert_endpoint(conn, scan_id, ep)
                    if ep.service is not None:
                        self._upsert_service(conn, endpoint_id, ep.service)

    def set_service(
        self, scan_id: int, address: str, proto: Proto, port: int, svc: Service
    ) -> None:
        """Attach (or replace) the service identified on an already stored endpoint.

        Raises ``StoreError`` when that endpoint was never stored or the write fails.
        """
        with self._tx() as conn:
            endpoint_id = conn.execute(
                select(EndpointRow.id).where(
                    EndpointRow.scan_id == scan_id,
                    EndpointRow.address == address,
                    EndpointRow.proto == proto.value,
                    EndpointRow.port == port,
                )
            ).scalar_one_or_none()
            if endpoint_id is None:
                raise StoreError(
                    f"scan {scan_id} has no endpoint {address} {port}/{proto.value}"
                    " to attach a service to"
                )
            self._upsert_service(conn, endpoint_id, svc)

    def add_error(self, scan_id: int, err: ProbeError) -> None:
        """Record a probe that could not finish. Raises ``StoreError`` when the write fails."""
        with self._tx() as conn:
            conn.execute(
                insert(ErrorRow).values(
                    scan_id=scan_id,
                    address=err.address,
                    port=err.port,
                    proto=err.proto.value if err.proto is not None else None,
                    kind=err.kind.value,
                    detail=err.detail,
                    probe=err.probe,
                )
            )

    def add_check_result(self, scan_id: int, result: CheckResult) -> None:
        """Record (or replace) one check's result on one endpoint, and commit.

        A second result for the same (address, proto, port, check_id) in the same scan
        replaces the first. NUL characters in text are stored escaped as ``\\x00``.
        Raises ``StoreError`` when the write fails (e.g. unknown scan id).
        """
        key = {
            "scan_id": scan_id,
            "address": result.address,
            "proto": result.proto.value,
            "port": result.port,
            "check_id": result.check_id,
        }
        values = _check_values(result)
        with self._tx() as conn:
            stmt = _upsert(conn, CheckResultRow.__table__, {**key, **values}, list(key), values)
            if stmt is not None:
                conn.execute(stmt)
                return
            where = and_(*(getattr(CheckResultRow, k) == v for k, v in key.items()))
            if conn.execute(select(CheckResultRow.id).where(where)).first() is None:
                conn.execute(insert(CheckResultRow).values(**key, **values))
            else:
                conn.execute(update(CheckResultRow).where(where).values(**values))

    def add_listener(self, scan_id: int, rec: ListenerRecord) -> None:
        """Record (or replace) one listening socket of the audited machine, and commit.

        A second record for the same (proto, address, port) in the same scan replaces the
        first (e.g. once the firewall verdict or the probed service is known). NUL characters
        in text are stored escaped as ``\\x00``. Raises ``StoreError`` for a port outside
        0..65535, a scope or verdict the model does not know, or a failed write (e.g. unknown
        scan id).
        """
        if not 0 <= rec.port <= 65535:
            raise StoreError(f"listener port {rec.port} is outside 0..65535")
        try:
            values = _listener_values(rec)
            key = {
                "scan_id": scan_id,
                "proto": Proto(rec.proto).value,
                "address": _no_nul(rec.address),
                "port": rec.port,
            }
        except ValueError as exc:
            raise StoreError(f"listener {rec.address!r} port {rec.port}: {exc}") from None
        with self._tx() as conn:
            stmt = _upsert(conn, ListenerRow.__table__, {**key, **values}, list(key), values)
            if stmt is not None:
                conn.execute(stmt)
                return
            where = and_(*(getattr(ListenerRow, k) == v for k, v in key.items()))
            if conn.execute(select(ListenerRow.id).where(where)).first() is None:
                conn.execute(insert(ListenerRow).values(**key, **values))
            else:
                conn.execute(update(ListenerRow).where(where).values(**values))

    def set_path_report(self, scan_id: int, report: PathReport) -> None:
        """Record (or replace) the joined path verdicts of a check run, and commit."""
        with self._tx() as conn:
            write_path_report(conn, scan_id, report)

    def finish_scan(self, scan_id: int, status: ScanStatus) -> None:
        """Set the scan's final status and finish time.

        Raises ``StoreError`` for an unknown scan id, for ``status`` RUNNING, or when the
        write fails.
        """
        if status is ScanStatus.RUNNING:
            raise StoreError("finish_scan needs a final status, not 'running'")
        with self._tx() as conn:
            result = conn.execute(
                update(ScanRow)
                .where(ScanRow.id == scan_id)
                .values(status=status.value, finished_at=_now())
            )
            if result.rowcount != 1:
                raise StoreError(f"no scan with id {scan_id}")

    # -- upserts -----------------------------------------------------------------------------

    def _upsert_host(
        self, conn: Connection, scan_id: int, address: str, values: dict[str, Any]
    ) -> None:
        row = {"scan_id": scan_id, "address": address, "hostname": None, "not_shown": {}}
        row.update(values)
        stmt = _upsert(conn, HostRow.__table__, row, ["scan_id", "address"], values)
        if stmt is not None:
            conn.execute(stmt)
            return
        where = and_(HostRow.scan_id == scan_id, HostRow.address == address)
        if conn.execute(select(HostRow.id).where(where)).first() is None:
            conn.execute(insert(HostRow).values(**row))
        elif values:
            conn.execute(update(HostRow).where(where).values(**values))

    def _upsert_endpoint(self, conn: Connection, scan_id: int, ep: Endpoint) -> int:
        key = {"scan_id": scan_id, "address": ep.address, "proto": ep.proto.value, "port": ep.port}
        values = {"state": ep.state.value, "reason": ep.reason.value, "rtt_ms": ep.rtt_ms}
        stmt = _upsert(conn, EndpointRow.__table__, {**key, **values}, list(key), values)
        if stmt is not None:
            return int(conn.execute(stmt.returning(EndpointRow.id)).scalar_one())
        where = and_(*(getattr(EndpointRow, k) == v for k, v in key.items()))
        found = conn.execute(select(EndpointRow.id).where(where)).scalar_one_or_none()
        if found is None:
            pk = conn.execute(insert(EndpointRow).values(**key, **values)).inserted_primary_key
            assert pk is not None
            return int(pk[0])
        conn.execute(update(EndpointRow).where(EndpointRow.id == found).values(**values))
        return int(found)

    def _upsert_service(self, conn: Connection, endpoint_id: int, svc: Service) -> None:
        values = {
            "name": svc.name,
            "product": svc.product,
            "version": svc.version,
            "tls": svc.tls,
            "confidence": svc.confidence,
            "method": svc.method,
            "banner": svc.banner,
            "extra": {str(k): str(v) for k, v in svc.extra.items()},
        }
        row = {"endpoint_id": endpoint_id, **values}
        stmt = _upsert(conn, ServiceRow.__table__, row, ["endpoint_id"], values)
        if stmt is not None:
            conn.execute(stmt)
            return
        where = ServiceRow.endpoint_id == endpoint_id
        if conn.execute(select(ServiceRow.id).where(where)).first() is None:
            conn.execute(insert(ServiceRow).values(**row))
        else:
            conn.execute(update(ServiceRow).where(where).values(**values))

    # -- reading -----------------------------------------------------------------------------

    def get_scan(self, scan_id: int) -> ScanRecord | None:
        """Return the stored scan with its hosts, endpoints, services, errors and checks, or None.

        Hosts come in the order they were first recorded (hosts known only from endpoints or
        errors follow); endpoints are sorted by (proto, port). Check results come findings
        first (critical first), then not tested, then passed; ties in host order, then by
        (proto, port, check id). Listeners (scans of kind "check") come most exposed first
        (see ``sort_listeners``). Raises ``StoreError`` on database failure.
        """
        with self._tx() as conn:
            scan = conn.execute(select(ScanRow.__table__).where(ScanRow.id == scan_id)).first()
            if scan is None:
                return None
            host_rows = conn.execute(
                select(HostRow.address, HostRow.hostname, HostRow.not_shown)
                .where(HostRow.scan_id == scan_id)
                .order_by(HostRow.id)
            ).all()
            ep_rows = conn.execute(
                select(EndpointRow.__table__, ServiceRow.__table__)
                .outerjoin(ServiceRow, ServiceRow.endpoint_id == EndpointRow.id)
                .where(EndpointRow.scan_id == scan_id)
                .order_by(EndpointRow.proto, EndpointRow.port, EndpointRow.id)
            ).all()
            err_rows = conn.execute(
                select(ErrorRow.__table__).where(ErrorRow.scan_id == scan_id).order_by(ErrorRow.id)
            ).all()
            check_rows = conn.execute(
                select(CheckResultRow.__table__).where(CheckResultRow.scan_id == scan_id)
            ).all()
            listener_rows = conn.execute(
                select(ListenerRow.__table__).where(ListenerRow.scan_id == scan_id)
            ).all()
            paths = read_path_report(conn, scan_id)

        endpoints: dict[str, list[Endpoint]] = {}
        for r in ep_rows:
            m = r._mapping
            svc = None
            if m[ServiceRow.__table__.c.id] is not None:
                svc = Service(
                    name=m[ServiceRow.__table__.c.name],
                    product=m[ServiceRow.__table__.c.product],
                    version=m[ServiceRow.__table__.c.version],
                    tls=bool(m[ServiceRow.__table__.c.tls]),
                    confidence=m[ServiceRow.__table__.c.confidence],
                    method=m[ServiceRow.__table__.c.method],
                    banner=m[ServiceRow.__table__.c.banner],
                    extra=dict(m[ServiceRow.__table__.c.extra] or {}),
                )
            ep_t = EndpointRow.__table__.c
            endpoints.setdefault(m[ep_t.address], []).append(
                Endpoint(
                    address=m[ep_t.address],
                    port=m[ep_t.port],
                    proto=Proto(m[ep_t.proto]),
                    state=PortState(m[ep_t.state]),
                    reason=Reason(m[ep_t.reason]),
                    rtt_ms=m[ep_t.rtt_ms],
                    service=svc,
                )
            )
        errors = tuple(
            ProbeError(
                address=e.address,
                port=e.port,
                proto=Proto(e.proto) if e.proto is not None else None,
                kind=ErrorKind(e.kind),
                detail=e.detail,
                probe=e.probe,
            )
            for e in err_rows
        )

        hosts: list[HostResult] = []
        seen: set[str] = set()
        for h in host_rows:
            seen.add(h.address)
            hosts.append(
                HostResult(
                    address=h.address,
                    hostname=h.hostname,
                    endpoints=tuple(endpoints.get(h.address, ())),
                    not_shown={p: dict(c) for p, c in (h.not_shown or {}).items()},
                )
            )
        # Results for an address never added as a host still belong in the record.
        for address, eps in endpoints.items():
            if address not in seen:
                seen.add(address)
                hosts.append(HostResult(address=address, hostname=None, endpoints=tuple(eps)))

        return ScanRecord(
            id=scan.id,
            kind=scan.kind,
            status=ScanStatus(scan.status),
            started_at=scan.started_at,
            finished_at=scan.finished_at,
            targets=tuple(scan.targets or ()),
            options=dict(scan.options or {}),
            hosts=tuple(hosts),
            errors=errors,
            mamori_version=scan.mamori_version,
            checks=_sort_checks(
                [_check_from_row(r) for r in check_rows], [h.address for h in hosts]
            ),
            listeners=sort_listeners([_listener_from_row(r) for r in listener_rows]),
            paths=paths,
        )

    def list_scans(self, limit: int = 50) -> list[ScanSummary]:
        """Return up to ``limit`` scans, newest first, with open-port and error counts.

        Raises ``StoreError`` on database failure.
        """
        open_q = (
            select(EndpointRow.scan_id, func.count().label("n"))
            .where(EndpointRow.state == PortState.OPEN.value)
            .group_by(EndpointRow.scan_id)
            .subquery()
        )
        err_q = (
            select(ErrorRow.scan_id, func.count().label("n")).group_by(ErrorRow.scan_id).subquery()
        )
        query = (
            select(
                ScanRow.id,
                ScanRow.kind,
                ScanRow.status,
                ScanRow.started_at,
                ScanRow.finished_at,
                ScanRow.targets,
                func.coalesce(open_q.c.n, 0).label("open_ports"),
                func.coalesce(err_q.c.n, 0).label("errors"),
            )
            .outerjoin(open_q, open_q.c.scan_id == ScanRow.id)
            .outerjoin(err_q, err_q.c.scan_id == ScanRow.id)
            .order_by(ScanRow.started_at.desc(), ScanRow.id.desc())
            .limit(max(0, limit))
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [
            ScanSummary(
                id=r.id,
                kind=r.kind,
                status=ScanStatus(r.status),
                started_at=r.started_at,
                finished_at=r.finished_at,
                targets=tuple(r.targets or ()),
                open_ports=int(r.open_ports),
                error_count=int(r.errors),
            )
            for r in rows
        ]


def _upsert(
    conn: Connection,
    table: Any,
    row: dict[str, Any],
    key: list[str],
    set_: dict[str, Any],
) -> Any:
    """INSERT .. ON CONFLICT (key) DO UPDATE SET set_ (DO NOTHING when set_ is empty).

    Returns the statement for SQLite and PostgreSQL, None for other databases (callers then
    fall back to select-then-write inside the same transaction).
    """
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        dialect_insert: Any = sqlite_insert
    elif name == "postgresql":
        # Imported here: the PostgreSQL dialect costs ~60 ms, paid only by PostgreSQL users.
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        dialect_insert = pg_insert
    else:
        return None
    stmt = dialect_insert(table).values(**row)
    if set_:
        return stmt.on_conflict_do_update(index_elements=key, set_=set_)
    return stmt.on_conflict_do_nothing(index_elements=key)
