"""SQLAlchemy models: the tables the store keeps.

The Alembic migrations in ``migrations/versions`` must describe exactly these tables; a test
compares them (``alembic.autogenerate.compare_metadata``), so change both together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Named constraints, so that later migrations (and SQLite batch mode) can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type and SQLAlchemy's SQLite DATETIME drops the offset, so values
    are normalised to UTC before they are written and come back with ``tzinfo=UTC``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ScanRow(Base):
    __tablename__ = "scans"
    __table_args__ = (
        Index("ix_scans_status", "status"),
        Index("ix_scans_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    targets: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    mamori_version: Mapped[str] = mapped_column(String(64))
    # Who wrote the scan: lets the next start tell a crashed scan from one still running.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)


class HostRow(Base):
    __tablename__ = "hosts"
    __table_args__ = (UniqueConstraint("scan_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    not_shown: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON)


class EndpointRow(Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("scan_id", "address", "proto", "port"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    proto: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    rtt_ms: Mapped[float | None] = mapped_column(Float, nullable=True)


class ServiceRow(Base):
    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("endpoints.id", ondelete="CASCADE"), unique=True
    )
    name: Mapped[str] = mapped_column(String(64))
    product: Mapped[str | None] = mapped_column(String(255), nullable=True)
    version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tls: Mapped[bool] = mapped_column(Boolean)
    confidence: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(64))
    banner: Mapped[str | None] = mapped_column(Text, nullable=True)
    extra: Mapped[dict[str, str]] = mapped_column(JSON)


class ErrorRow(Base):
    __tablename__ = "errors"
    __table_args__ = (Index("ix_errors_scan_id", "scan_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    proto: Mapped[str | None] = mapped_column(String(8), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    probe: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CheckResultRow(Base):
    """One exposure check run against one endpoint: a finding, a pass, or "not tested".

    The columns a report filters or sorts on are columns; the rest (evidence, remediation,
    references) is JSON, read back whole. The unique key starts with ``scan_id``, so it also
    serves the per-scan lookups of ``get_scan``.
    """

    __tablename__ = "check_results"
    __table_args__ = (UniqueConstraint("scan_id", "address", "proto", "port", "check_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    proto: Mapped[str] = mapped_column(String(8))
    check_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    layer: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[str | None] = mapped_column(String(16), nullable=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    # {"test", "request", "reply", "facts"}; SQL NULL when the check produced no evidence.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    remediation: Mapped[dict[str, str]] = mapped_column(JSON)
    # Not "references": a reserved word in SQL, awkward in every hand-written query.
    refs: Mapped[list[str]] = mapped_column(JSON)
    # {lang: {"title", "summary", "why", "fixes": {platform: text}}}; NULL in rows stored
    # before migration 0006 (reports fall back to title, summary and remediation).
    texts: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # {"address", "port", "scope", "firewall", "check_severity"}: `mamori check` findings
    # graded by their listener's exposure; NULL otherwise.
    exposure: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True)


class ListenerRow(Base):
    """One socket listening on the audited machine (scans of kind "check"), with the firewall's
    verdict for it and the service a probe named there. One row per (scan, proto, address,
    port); the unique key starts with ``scan_id``, so it also serves per-scan lookups."""

    __tablename__ = "listeners"
    __table_args__ = (UniqueConstraint("scan_id", "proto", "address", "port"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    proto: Mapped[str] = mapped_column(String(8))
    # Room for a scoped IPv6 address ("fe80::1%enp0s31f6").
    address: Mapped[str] = mapped_column(String(128))
    port: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(16))
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    process: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Not "user": a reserved word in PostgreSQL.
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    exe: Mapped[str | None] = mapped_column(Text, nullable=True)
    # NULL: the firewall was not asked (loopback-only listener).
    firewall: Mapped[str | None] = mapped_column(String(16), nullable=True)
    firewall_backend: Mapped[str] = mapped_column(String(32))
    firewall_reason: Mapped[str] = mapped_column(Text)
    firewall_rule: Mapped[str | None] = mapped_column(Text, nullable=True)
    service: Mapped[str | None] = mapped_column(String(64), nullable=True)
    product: Mapped[str | None] = mapped_column(Text, nullable=True)
    probe_address: Mapped[str | None] = mapped_column(String(128), nullable=True)
    not_probed: Mapped[str | None] = mapped_column(Text, nullable=True)


class PathReportRow(Base):
    """The joined path verdicts of one `mamori check` run (``model.path.PathReport`` as JSON:
    verdicts per listener and family, the router's view, the outside results)."""

    __tablename__ = "path_reports"
    __table_args__ = (UniqueConstraint("scan_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class IncidentRow(Base):
    """One incident of ``mamori watch``: events from one source address grouped in a time
    window (see ``mamori.watch.incidents``). ``types``, ``signatures`` and ``examples`` are
    small JSON lists, read back whole."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_src_last_seen", "src", "last_seen"),
        Index("ix_incidents_last_seen", "last_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    src: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    danger: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer)
    types: Mapped[list[str]] = mapped_column(JSON)
    signatures: Mapped[list[str]] = mapped_column(JSON)
    examples: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # "open" or "closed"


class EventRow(Base):
    """One event seen by ``mamori watch`` (``mamori.model.watch.Event``). Written in batches
    (one INSERT with many rows), so ``signatures`` and ``fields`` are JSON text, encoded once
    by the writer instead of per row by the JSON type."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_src_time", "src", "time"),
        Index("ix_events_time", "time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    src: Mapped[str | None] = mapped_column(String(128), nullable=True)
    src_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dst: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dst_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    proto: Mapped[str | None] = mapped_column(String(8), nullable=True)
    danger: Mapped[str] = mapped_column(String(16))
    signatures: Mapped[str] = mapped_column(Text)  # JSON list of signature ids
    fields: Mapped[str] = mapped_column(Text)  # JSON object of strings
    excerpt: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
    )


class WebCheckRow(Base):
    """One check a visitor asked for on ``mamori serve`` (see ``mamori.store.serve``).

    ``token`` is the unguessable id in the result URL; ``owner_hash`` proves who may delete
    it. ``active_key`` holds the peer address while the check is queued or running and NULL
    afterwards: its unique constraint is the "one running check per address" rule, kept by
    the database across web processes. ``heartbeat_at`` lets a stale "running" check (its
    worker died) be failed instead of running forever.
    """

    __tablename__ = "web_checks"
    __table_args__ = (
        Index("ix_web_checks_status", "status"),
        Index("ix_web_checks_peer", "peer"),
        Index("ix_web_checks_created_at", "created_at"),
        Index("ix_web_checks_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, done, failed
    peer: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(64))  # the /64 of an IPv6 peer, else the peer
    active_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    profile: Mapped[str] = mapped_column(String(16))
    tcp_ports: Mapped[list[int]] = mapped_column(JSON)
    udp_ports: Mapped[list[int]] = mapped_column(JSON)
    checks: Mapped[list[str]] = mapped_column(JSON)
    owner_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    done: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(64))
    scan_id: Mapped[int | None] = mapped_column(
        ForeignKey("scans.id", ondelete="SET NULL"), nullable=True
    )
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ServeBlockRow(Base):
    """A network the ``mamori serve`` admin blocked: its visitors may not start checks."""

    __tablename__ = "serve_blocks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))


class AcceptedRiskRow(Base):
    """An accepted risk (`mamori accept`): a check on an address (one port, or every port when
    ``port`` is NULL), why, until when, and the fingerprint of the finding's evidence when it
    was accepted (a changed finding is no longer covered)."""

    __tablename__ = "accepted_risks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[str | None] = mapped_column(String(10), nullable=True)  # ISO date, inclusive
    fingerprint: Mapped[str] = mapped_column(String(64))
    scan_id: Mapped[int] = mapped_column(Integer)  # the run accepted from (kept if it goes)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WatchBlockRow(Base):
    """An address ``mamori watch --block`` put into the nftables set: why, the incident, and
    until when (the set element's timeout); read at start-up to rebuild the set."""

    __tablename__ = "watch_blocks"
    __table_args__ = (UniqueConstraint("address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime] = mapped_column(UTCDateTime())
