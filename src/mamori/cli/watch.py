"""`mamori watch` (the sensor), `mamori events`, `mamori incidents`, `mamori watch report`.

``register(app)`` adds them to the main Typer app. Exit codes: 0 done (watch: stopped cleanly
by SIGTERM/SIGINT, or every log read with --read-once), 2 bad usage (one line on stderr,
nothing stored), 3 nothing could run / the store failed.

Sources come from the command line when any source flag is given (--decoy, --access-log,
--auth-log, --firewall-log, --journald, --icmp), else from the ``[watch]`` section of the
settings file; alerts, detector thresholds, blocking and the store always come from the
settings file (defaults without one: incidents printed on stdout, nothing blocked). Knocks on
closed ports are a switch, on by default: --knocks/--no-knocks, else ``knocks`` in the file.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mamori.cli.common import UsageProblem, emit, fail, open_store, stderr
from mamori.cli.options import TableOrJson

if TYPE_CHECKING:
    from mamori.store import Store
    from mamori.store.watch import EventQuery
    from mamori.watch.settings import WatchSettings

from mamori.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

watch_app = typer.Typer(
    help="Watch who knocks: closed ports, decoys, ICMP and logs become events and incidents.",
    invoke_without_command=True,
    no_args_is_help=False,
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MAMORI_DB", help="Database URL or SQLite file "
                 "(default: the settings file's watch.store, else mamori.db in the user data "
                 "directory)."),
]
SinceOption = Annotated[str | None, typer.Option(
    "--since", help="Only since then: a duration back from now (90s, 30m, 1h, 2d) or an ISO "
    "time (2025-05-01T10:00, local time unless it names a zone).")]
TypeOption = Annotated[list[str] | None, typer.Option(
    "--type", "-t", help="Only these types (events) or kinds (incidents); repeat or separate "
    "with commas; a trailing * matches a family (decoy.*, worm.*).")]
SrcOption = Annotated[str | None, typer.Option("--src", help="Only from this address.")]
DangerOption = Annotated[str | None, typer.Option(
    "--min-danger", help="Only at or above: info, low, medium, high, critical.")]
LimitOption = Annotated[int, typer.Option(
    "--limit", "-n", help="At most this many, the most recent (0: all).")]
ListFormat = Annotated[TableOrJson, typer.Option("--format", "-f", help="Output format.")]


# -- filters -----------------------------------------------------------------------------------


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``"1h"`` → an hour before ``now``; an ISO time → that time (naive: local). UTC out."""
    from mamori.watch.settings import parse_duration

    now = now or datetime.now(UTC)
    value = text.strip()
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageProblem(
            f"--since {text!r} is neither a duration (30m, 1h, 2d) nor an ISO time") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.astimezone(UTC)


def _query(since: str | None, types: list[str] | None, src: str | None,
           min_danger: str | None, limit: int) -> EventQuery:
    from mamori.model.watch import Danger
    from mamori.store.watch import EventQuery

    words = tuple(w.strip() for t in types or () for w in t.split(",") if w.strip())
    for word in words:
        if not all(c.isalnum() or c in "._-*" for c in word) or "*" in word[:-1]:
            raise UsageProblem(f"--type {word!r} is not a type code like decoy.login or decoy.*")
    if src is not None:
        try:
            src = str(ipaddress.ip_address(src.strip()))
        except ValueError:
            raise UsageProblem(f"--src {src!r} is not an IP address") from None
    danger = None
    if min_danger is not None:
        try:
            danger = Danger(min_danger.strip().lower())
        except ValueError:
            raise UsageProblem(f"--min-danger {min_danger!r} is not one of "
                               f"{', '.join(d.value for d in Danger)}") from None
    if limit < 0:
        raise UsageProblem("--limit must be 0 (all) or more")
    return EventQuery(
        since=parse_since(since) if since is not None else None,
        types=words, src=src, min_danger=danger, limit=limit or None,
    )


def _list(fetch: Callable[[Store, Any], Sequence[Any]], render: Callable[[Any, str], str],
          since: str | None, types: list[str] | None, src: str | None, min_danger: str | None,
          limit: int, fmt: str, db: str | None) -> None:
    """Check the filters (exit 2 before touching the store), read, render to stdout."""
    from mamori.store import StoreError

    try:
        q = _query(since, types, src, min_danger, limit)
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    store = open_store(db)
    try:
        found = fetch(store, q)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    emit(render(found, fmt))


def events(
    since: SinceOption = None, types: TypeOption = None, src: SrcOption = None,
    min_danger: DangerOption = None, limit: LimitOption = 200, fmt: ListFormat = "table",
    db: DbOption = None,
) -> None:
    """List what mamori watch recorded, oldest first (the most recent --limit)."""
    from mamori.store.watch import list_events
    from mamori.watch.listing import render_events

    _list(list_events, render_events, since, types, src, min_danger, limit, fmt, db)


def incidents(
    since: SinceOption = None, types: TypeOption = None, src: SrcOption = None,
    min_danger: DangerOption = None, limit: LimitOption = 200, fmt: ListFormat = "table",
    db: DbOption = None,
) -> None:
    """List incidents (events grouped by source and time), least recently active first."""
    from mamori.store.watch import list_incidents
    from mamori.watch.listing import render_incidents

    _list(list_incidents, render_incidents, since, types, src, min_danger, limit, fmt, db)


# -- mamori watch report ----------------------------------------------------------------------


@watch_app.command("report")
def report(
    fmt: Annotated[Literal["table", "json", "html"], typer.Option(
        "--format", "-f", help="Output format.")] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the report to this file.")] = None,
    since: SinceOption = None,
    db: DbOption = None,
) -> None:
    """A summary of what was seen: counts, incidents and a timeline (an SVG chart in HTML)."""
    from mamori.store import StoreError
    from mamori.store.watch import EventQuery, iter_events, list_incidents
    from mamori.watch.summary import render_summary

    try:
        when = parse_since(since) if since is not None else None
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    store = open_store(db)
    try:
        q = EventQuery(since=when)
        found = [i.incident for i in list_incidents(store, q)]
        text = render_summary((e.event for e in iter_events(store, q)), found, fmt, since=when)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    emit(text, output)


# -- mamori watch blocked / unblock ----------------------------------------------------------


SettingsOption = Annotated[Path | None, typer.Option(
    "--settings", help="The settings file (default: $MAMORI_SETTINGS or the user's "
    "config dir).")]


@watch_app.command("blocked")
def blocked(fmt: ListFormat = "table", db: DbOption = None,
            settings_file: SettingsOption = None) -> None:
    """List the addresses `mamori watch --block` blocked and that are still blocked: source,
    why, incident and until when."""
    from mamori.store import StoreError
    from mamori.store.blocks import active_blocks
    from mamori.watch.block import render_blocks

    settings = _settings_only(settings_file)
    store = open_store(db or settings.store)
    try:
        found = active_blocks(store)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    emit(render_blocks(found, fmt))


@watch_app.command("unblock")
def unblock(
    address: Annotated[str, typer.Argument(help="The blocked address to let in again.")],
    db: DbOption = None, settings_file: SettingsOption = None,
) -> None:
    """Lift a block: take ADDRESS out of the nftables set and out of the store."""
    import ipaddress

    from mamori.watch.block import Blocker

    try:
        ipaddress.ip_address(address.strip())
    except ValueError:
        fail(EXIT_USAGE, f"{address!r} is not an IP address")
    settings = _settings_only(settings_file)
    store = open_store(db or settings.store)
    try:
        result = Blocker(settings.block, store=store).unblock(address)
    finally:
        store.close()
    if result.error:
        fail(EXIT_FAILED, result.text())
    if not result.found:
        fail(EXIT_USAGE, result.text())
    emit(result.text())


def _settings_only(path: Path | None) -> WatchSettings:
    from mamori.watch.settings import SettingsError, load_watch_settings

    try:
        return load_watch_settings(path)
    except SettingsError as exc:
        fail(EXIT_USAGE, str(exc))


# -- mamori watch ------------------------------------------------------------------------------


@watch_app.callback()
def watch(
    ctx: typer.Context,
    decoys: Annotated[list[str] | None, typer.Option(
        "--decoy", help="A decoy listener ADDR:PORT\\[/udp]\\[=persona] (repeat), e.g. "
        "127.0.0.1:2323, 0.0.0.0:1900/udp, [::]:8081=http.")] = None,
    access_logs: Annotated[list[Path] | None, typer.Option(
        "--access-log", help="An access log to follow: nginx/Apache (combined format), Caddy "
        "or Traefik (JSON).")] = None,
    auth_logs: Annotated[list[Path] | None, typer.Option(
        "--auth-log", help="An auth log file to follow: sshd, postfix (SASL), dovecot, "
        "samba (auth audit).")] = None,
    firewall_logs: Annotated[list[Path] | None, typer.Option(
        "--firewall-log", help="A kernel log file with nftables/iptables log lines.")] = None,
    journald: Annotated[bool, typer.Option(
        "--journald", help="Follow sshd and kernel firewall lines in the systemd journal.")
    ] = False,
    icmp: Annotated[bool, typer.Option(
        "--icmp", help="Record ICMP (pings) with a raw socket (root or CAP_NET_RAW).")] = False,
    knocks: Annotated[bool | None, typer.Option(
        "--knocks/--no-knocks", show_default=False, help="Record knocks on closed ports (TCP "
        "SYN/NULL/FIN/XMAS, UDP; IPv4 and IPv6) with raw sockets; a scan becomes one "
        "scan.ports incident, no decoy needed. On by default (else `knocks` in the settings "
        "file); without root or CAP_NET_RAW said once to be not watched.")] = None,
    no_tcp_knock: Annotated[bool, typer.Option(
        "--no-tcp-knock", help="Do not watch for half-open (SYN/NULL/FIN/XMAS) scans of the "
        "TCP decoys with a raw socket (on by default when allowed).")] = False,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="The settings file (default: $MAMORI_SETTINGS or the user's "
        "config dir).")] = None,
    db: DbOption = None,
    block: Annotated[bool, typer.Option(
        "--block", help="Block sources of dangerous incidents in an nftables set "
        "(with a timeout; see \\[watch.block] in the settings).")] = False,
    read_once: Annotated[bool, typer.Option(
        "--read-once", help="Read the given log files from the start, record, and exit "
        "(replay old logs).")] = False,
) -> None:
    """Watch who knocks: knocks on closed ports (on by default; root or CAP_NET_RAW), decoy
    listeners, ICMP and logs become events; scans, brute force and worm or exploit requests
    become incidents; alerts go where the settings say (default: incidents on stdout). Runs
    until SIGTERM or Ctrl-C, then flushes everything."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        settings = _settings(settings_file, decoys or [], access_logs or [], auth_logs or [],
                             firewall_logs or [], journald, icmp, block, read_once,
                             knocks=knocks)
    except UsageProblem as exc:
        fail(EXIT_USAGE, str(exc))
    if no_tcp_knock:
        settings = settings.model_copy(update={"tcp_knock": False})
    from mamori.watch.settings import SettingsError
    from mamori.watch.sinks import AlertRouter

    try:
        router = AlertRouter.from_settings(settings)
    except SettingsError as exc:
        fail(EXIT_USAGE, str(exc))
    store = open_store(db or settings.store)
    _restore_blocks(router, store)
    try:
        ran, line = asyncio.run(_run(settings, store, router, read_once))
    finally:
        store.close()
    stderr.print(line, markup=False, highlight=False, soft_wrap=True)
    if not ran:
        fail(EXIT_FAILED, "nothing to watch could start")
    raise typer.Exit(EXIT_OK)


def _restore_blocks(router: Any, store: Store) -> None:
    """With blocking on: record new blocks in the store and put the unexpired recorded ones
    back into the nftables sets (one line each on stderr)."""
    from mamori.store import StoreError
    from mamori.store.blocks import active_blocks

    if router.blocker is None:
        return
    router.blocker.store = store
    try:
        blocks = active_blocks(store)
    except StoreError as exc:
        stderr.print(f"blocks not restored: {exc}", markup=False, highlight=False)
        return
    for result in router.blocker.restore(blocks):
        stderr.print(f"restored: {result.text()}", markup=False, highlight=False,
                     soft_wrap=True)


def _settings(path: Path | None, decoys: list[str], access: list[Path], auth: list[Path],
              firewall: list[Path], journald: bool, icmp: bool, block: bool,
              read_once: bool, *, knocks: bool | None = None) -> WatchSettings:
    """The settings file's [watch] section with the command line's sources and switches
    (``knocks`` None: the file's ``knocks``, on unless it says false)."""
    from mamori.watch.decoys import DecoySpec
    from mamori.watch.settings import LogSettings, SettingsError, load_watch_settings

    try:
        settings = load_watch_settings(path)
    except SettingsError as exc:
        raise UsageProblem(str(exc)) from None
    seen: dict[tuple[str, int, str], str] = {}
    for text in decoys:
        try:
            spec = DecoySpec.parse(text)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None
        where = (spec.host, spec.port, spec.proto)
        if where in seen and spec.port != 0:
            raise UsageProblem(f"decoys {seen[where]!r} and {text!r} listen on the same "
                               "address and port")
        seen[where] = text
    logs = [LogSettings(kind="access", path=p, follow=not read_once) for p in access]
    logs += [LogSettings(kind="auth", path=p, follow=not read_once) for p in auth]
    logs += [LogSettings(kind="firewall", path=p, follow=not read_once) for p in firewall]
    update: dict[str, Any] = {}
    if decoys or logs or journald or icmp:
        # The command line names the sources: the settings file's are not added to them.
        from mamori.watch.settings import JournaldSettings

        update.update(decoys=tuple(decoys), logs=tuple(logs), icmp=icmp,
                      journald=JournaldSettings(sshd=journald, kernel=journald))
    if knocks is not None:  # a switch beside the sources: the file's unless the flag is given
        update["knocks"] = knocks
    if block:
        update["block"] = settings.block.model_copy(update={"enabled": True})
    settings = settings.model_copy(update=update)
    if read_once:
        if knocks:
            raise UsageProblem("--read-once replays log files; it cannot watch knocks")
        # Replaying old logs is no live watch: knocks (on by default) are not watched.
        settings = settings.model_copy(update={"knocks": False})
        if (settings.decoys or settings.icmp or settings.journald.sshd
                or settings.journald.kernel):
            raise UsageProblem("--read-once replays log files; it cannot run decoys, ICMP "
                               "or the journal")
        if not settings.logs:
            raise UsageProblem("--read-once needs log files (--access-log, --auth-log, "
                               "--firewall-log)")
        settings = settings.model_copy(update={"logs": tuple(
            s.model_copy(update={"follow": False}) for s in settings.logs)})
    if not (settings.decoys or settings.logs or settings.icmp or settings.knocks
            or settings.journald.sshd or settings.journald.kernel):
        raise UsageProblem("nothing to watch with knocks off: give --decoy, --access-log, "
                           "--auth-log, --firewall-log, --journald, --icmp or --knocks, or a "
                           "[watch] section in the settings file")
    return settings


async def _run(settings: WatchSettings, store: Store, router: Any,
               read_once: bool) -> tuple[int, str]:
    import signal

    from mamori.watch.sensor import Sensor, SensorOptions
    from mamori.watch.signatures import load

    sensor = Sensor(settings, store, router, SensorOptions(read_once=read_once),
                    signatures=load())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sensor.stop)
    try:
        ran = await sensor.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return ran, sensor.summary_line()


def register(app: typer.Typer) -> None:
    """Add ``watch`` (with ``watch report``), ``events`` and ``incidents`` to ``app``."""
    app.add_typer(watch_app, name="watch")
    app.command("events")(events)
    app.command("incidents")(incidents)
