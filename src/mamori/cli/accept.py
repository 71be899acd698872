"""`mamori accept CHECK --target ADDR[:PORT] --reason TEXT [--until DATE]`: accept a known
risk so that it stops nagging; `mamori accept --list`, `mamori accept --remove ID`.

The finding accepted is the one of the latest run that checked that target; its evidence is
fingerprinted, so the acceptance lapses when the finding changes or --until passes.

Exit codes: 0 done, 2 bad input or nothing to accept (one line, nothing stored), 3 store
failure.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, UsageProblem, emit, fail, open_store
from mamori.cli.options import DbOption

if TYPE_CHECKING:
    from mamori.model import Acceptance, CheckResult
    from mamori.store import Store

MAX_REASON = 500


def register(app: typer.Typer) -> None:
    app.command("accept")(accept)


def parse_target(value: str) -> tuple[str, int | None]:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or a bare IPv6 address -> (address, port);
    raises UsageProblem."""
    host, port = value, None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageProblem(f"--target {value!r}: write an IPv6 address and port as [ADDR]:PORT")
        port = rest[1:] or None
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise UsageProblem(f"--target {value!r} is not an IP address (ADDR or ADDR:PORT)") from None
    if port is None:
        return address, None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise UsageProblem(f"--target {value!r}: the port must be a number from 1 to 65535")
    return address, int(port)


def parse_until(value: str | None, today: date) -> date | None:
    """--until as a date that is today or later; raises UsageProblem."""
    if value is None:
        return None
    try:
        until = date.fromisoformat(value)
    except ValueError:
        raise UsageProblem(f"--until {value!r} is not a date (YYYY-MM-DD)") from None
    if until < today:
        raise UsageProblem(f"--until {value} has already passed")
    return until


def _check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise UsageProblem("--reason is required: say why this risk is accepted")
    if not text.isprintable():
        raise UsageProblem("--reason holds control characters")
    if len(text) > MAX_REASON:
        raise UsageProblem(f"--reason is longer than {MAX_REASON} characters")
    return text


def _where(a: Acceptance) -> str:
    host = f"[{a.address}]" if ":" in a.address else a.address
    return host if a.port is None else f"{host}:{a.port}"


def render_acceptances(rows: list[Acceptance], today: date) -> str:
    """The --list table: one line each, oldest first."""
    if not rows:
        return "no accepted risks\n"
    lines = [f"{'id':>4}  {'check':<32} {'target':<28} {'until':<10} {'state':<7} reason"]
    for a in rows:
        state = "expired" if a.expired(today) else "active"
        until = a.until.isoformat() if a.until else "-"
        lines.append(f"{a.id:>4}  {a.check_id:<32} {_where(a):<28} {until:<10} {state:<7} "
                     f"{a.reason}")
    return "\n".join(lines) + "\n"


def _finding_to_accept(
    store: Store, check_id: str, address: str, port: int | None
) -> tuple[int, CheckResult]:
    """The latest run that checked the target and its finding of ``check_id`` there; raises
    UsageProblem when there is none."""
    from mamori.store.accepted import latest_run_with

    where = f"{address}:{port}" if port is not None else address
    run_id = latest_run_with(store, address, port)
    record = store.get_scan(run_id) if run_id is not None else None
    if record is None:
        raise UsageProblem(f"no stored run has checked {where}: scan it first")
    found = [f for f in record.findings if f.check_id == check_id and f.address == address
             and (port is None or f.port == port)]
    if not found:
        raise UsageProblem(f"run {record.id}, the latest that checked {where}, has no "
                           f"{check_id} finding there: nothing to accept")
    if len(found) > 1:
        ports = ", ".join(str(f.port) for f in found)
        raise UsageProblem(f"{check_id} was found on several ports of {address} ({ports}): "
                           "name one with --target ADDR:PORT")
    return record.id, found[0]


def accept(
    check_id: Annotated[str | None, typer.Argument(
        help="The check id of the finding to accept (as reports show it).",
        show_default=False)] = None,
    target: Annotated[str | None, typer.Option(
        "--target", help="ADDR or ADDR:PORT ([V6]:PORT) the finding is on.")] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why the risk is accepted (shown in every report).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="Last day the acceptance holds (YYYY-MM-DD; default: until removed).",
    )] = None,
    list_: Annotated[bool, typer.Option("--list", help="List accepted risks.")] = False,
    remove: Annotated[int | None, typer.Option(
        "--remove", help="Remove the accepted risk with this id.")] = None,
    db: DbOption = None,
) -> None:
    """Accept a known finding: reports show it as accepted (with the reason), --fail-on and
    diff's "new" leave it out, until it expires or its evidence changes."""
    from mamori.report.accepted import evidence_fingerprint
    from mamori.store import StoreError
    from mamori.store.accepted import add_acceptance, list_acceptances, remove_acceptance

    today = date.today()
    try:
        modes = sum((list_, remove is not None, check_id is not None))
        if modes != 1:
            raise UsageProblem("give CHECK --target ADDR[:PORT] --reason TEXT, or --list, "
                               "or --remove ID")
        if remove is not None and not 1 <= remove <= 2**63 - 1:
            raise UsageProblem(f"bad id {remove}")
        if check_id is not None:
            if target is None:
                raise UsageProblem("--target ADDR[:PORT] is required")
            address, port = parse_target(target)
            text = _check_reason(reason)
            last_day = parse_until(until, today)
        elif target is not None or reason is not None or until is not None:
            raise UsageProblem("--target, --reason and --until go with CHECK")
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))

    store = open_store(db)
    try:
        if list_:
            emit(render_acceptances(list_acceptances(store), today))
            return
        if remove is not None:
            if not remove_acceptance(store, remove):
                fail(EXIT_USAGE, f"no accepted risk with id {remove}")
            emit(f"removed accepted risk {remove}")
            return
        assert check_id is not None
        try:
            run_id, finding = _finding_to_accept(store, check_id, address, port)
        except UsageProblem as exc:
            fail(EXIT_USAGE, str(exc))
        done = add_acceptance(
            store, check_id=check_id, address=address, port=port, reason=text,
            until=last_day, fingerprint=evidence_fingerprint(finding),
            scan_id=run_id, now=datetime.now(UTC),
        )
        emit(f"accepted risk {done.id}: {check_id} on {_where(done)} "
             f"(as found in run {done.scan_id})"
             + (f", until {done.until.isoformat()}" if done.until else ""))
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()

