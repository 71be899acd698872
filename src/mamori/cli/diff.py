"""`mamori diff [OLD NEW]`: what changed between two stored runs.

Exit codes: 0 nothing got worse, 1 something got worse (new finding, opened port, raised
severity), 2 bad usage or ids, 3 store failure.

``--notify SETTINGS`` (the daily timer) also tells the settings file's alert sinks when the
diff shows a change (cli/diff_notify.py); a first run with nothing to compare is exit 0, a
notice that could not be delivered exit 3.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mamori.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    emit,
    fail,
    load_acceptances,
    open_store,
    stderr,
)
from mamori.cli.common import EXIT_FINDINGS as EXIT_WORSE
from mamori.cli.options import MAX_SCAN_ID, DbOption, ReportFormat

if TYPE_CHECKING:
    from mamori.report.diff import ScanDiff
    from mamori.store import Store
    from mamori.watch.settings import WatchSettings

DIFF_KINDS = ("scan", "check", "import")


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)


def _pick_ids(store: Store, old_id: int | None, new_id: int | None) -> tuple[int, int]:
    """Fill in missing ids: the newest run, and the run before it of the same target(s)."""
    from mamori.store.queries import latest_scan_id, previous_scan_ids

    if new_id is None and old_id is None:
        new_id = latest_scan_id(store, DIFF_KINDS)
        if new_id is None:
            fail(EXIT_USAGE, "no stored runs to compare")
    if new_id is None:
        assert old_id is not None
        old = store.get_scan(old_id)
        if old is None:
            fail(EXIT_USAGE, f"no scan with id {old_id}")
        newer = previous_scan_ids(store, old.targets, old.kind, limit=1)
        if not newer or newer[0] == old_id:
            fail(EXIT_USAGE, f"no later run of {', '.join(old.targets)} than scan {old_id}")
        return old_id, newer[0]
    if old_id is None:
        new = store.get_scan(new_id)
        if new is None:
            fail(EXIT_USAGE, f"no scan with id {new_id}")
        before = previous_scan_ids(store, new.targets, new.kind, limit=1, before=new_id)
        if not before:
            fail(EXIT_USAGE, f"no earlier {new.kind} of {', '.join(new.targets) or '-'} "
                  f"than scan {new_id} to compare with")
        return before[0], new_id
    return old_id, new_id


def diff(
    old_id: Annotated[int | None, typer.Argument(
        help="The older run's id (default: the run before NEW_ID of the same targets).",
        show_default=False)] = None,
    new_id: Annotated[int | None, typer.Argument(
        help="The newer run's id (default: the newest run).", show_default=False)] = None,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", "-f", help="Output format (sarif: only what got worse).")] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the diff to this file.")] = None,
    lang: Annotated[str | None, typer.Option(
        "--lang", help="Report language: en or ja (default: from LC_ALL / LC_MESSAGES / LANG).",
        show_default=False)] = None,
    notify: Annotated[Path | None, typer.Option(
        "--notify", help="Send a change (new, fixed, changed, opened, closed) to the alert "
        "sinks of this settings file ([[watch.alerts]]); nothing to compare yet is exit 0.",
        show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """What changed between two runs: findings new, fixed and changed; ports opened and
    closed; services changed. Exits 1 when something got worse (for cron and timers)."""
    from mamori.report import diff_records, render_diff
    from mamori.report.accepted import apply_acceptances
    from mamori.report.i18n import resolve_lang
    from mamori.store import StoreError

    try:
        chosen_lang = resolve_lang(lang)
    except ValueError as exc:
        fail(EXIT_USAGE, f"--lang: {exc}")
    for value in (old_id, new_id):
        if value is not None and not 1 <= value <= MAX_SCAN_ID:
            fail(EXIT_USAGE, f"bad scan id {value} (ids run from 1 to {MAX_SCAN_ID})")
    if old_id is not None and old_id == new_id:
        fail(EXIT_USAGE, "give two different scan ids")
    alert_settings = _alert_settings(notify) if notify is not None else None
    store = open_store(db)
    try:
        if alert_settings is not None and old_id is None and new_id is None:
            _exit_if_first_run(store)
        first, second = _pick_ids(store, old_id, new_id)
        old, new = store.get_scan(first), store.get_scan(second)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    if old is None:
        fail(EXIT_USAGE, f"no scan with id {first}")
    if new is None:
        fail(EXIT_USAGE, f"no scan with id {second}")
    # The newer run's findings an accepted risk covers are "accepted", never "new" or worse.
    new = apply_acceptances(new, load_acceptances(db), date.today())
    result = diff_records(old, new)
    emit(render_diff(result, fmt, lang=chosen_lang), output)
    if alert_settings is not None:
        _notify(alert_settings, result)
    raise typer.Exit(EXIT_WORSE if result.worse else EXIT_OK)


def _alert_settings(path: Path) -> WatchSettings:
    from mamori.cli.diff_notify import load_alert_settings
    from mamori.watch.settings import SettingsError

    try:
        return load_alert_settings(path)
    except SettingsError as exc:
        fail(EXIT_USAGE, f"--notify: {exc}")


def _exit_if_first_run(store: Store) -> None:
    """Nothing to compare yet (the timer's first run) is no failure: one line, exit 0."""
    from mamori.store.queries import latest_scan_id, previous_scan_ids

    newest = latest_scan_id(store, DIFF_KINDS)
    record = store.get_scan(newest) if newest is not None else None
    if record is None or not previous_scan_ids(store, record.targets, record.kind, limit=1,
                                               before=newest):
        stderr.print("mamori: nothing to compare yet (one run stored); nothing notified",
                     markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_OK)


def _notify(settings: WatchSettings, result: ScanDiff) -> None:
    from mamori.cli.diff_notify import is_change, notify_change

    if not is_change(result):
        stderr.print("mamori: no change; nothing notified", markup=False, highlight=False)
        return
    undelivered = notify_change(settings, result)
    if undelivered:
        fail(EXIT_FAILED, f"--notify: the change notice was not delivered: "
             f"{'; '.join(undelivered)}")
    stderr.print("mamori: change notified", markup=False, highlight=False)
