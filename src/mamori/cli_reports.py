"""`mamori diff` and `mamori import`: compare two stored runs; read nmap XML into the store.

The lead registers these functions as Typer commands (``app.command("diff")(diff)``,
``app.command("import")(import_nmap)``). Exit codes: diff 0 nothing got worse, 1 something
got worse (new finding, opened port, raised severity), 2 bad usage or ids, 3 store failure;
import 0 stored, 2 refused file or bad --checks (one line, nothing stored), 3 store failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mamori.cli_common import emit as _emit
from mamori.cli_common import fail as _fail
from mamori.cli_common import open_store as _open_store
from mamori.cli_common import stderr

if TYPE_CHECKING:
    from mamori.checks.spec import CheckSpec
    from mamori.importers import NmapRun
    from mamori.model import CheckResult
    from mamori.store import Store

from mamori.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mamori.cli_common import EXIT_FINDINGS as EXIT_WORSE

DIFF_KINDS = ("scan", "check", "import")

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="MAMORI_DB", help="Database URL or SQLite file "
                 "(default: mamori.db in the user data directory)."),
]


def _pick_ids(store: Store, old_id: int | None, new_id: int | None) -> tuple[int, int]:
    """Fill in missing ids: the newest run, and the run before it of the same target(s)."""
    from mamori.store.queries import latest_scan_id, previous_scan_ids

    if new_id is None and old_id is None:
        new_id = latest_scan_id(store, DIFF_KINDS)
        if new_id is None:
            _fail(EXIT_USAGE, "no stored runs to compare")
    if new_id is None:
        assert old_id is not None
        old = store.get_scan(old_id)
        if old is None:
            _fail(EXIT_USAGE, f"no scan with id {old_id}")
        newer = previous_scan_ids(store, old.targets, old.kind, limit=1)
        if not newer or newer[0] == old_id:
            _fail(EXIT_USAGE, f"no later run of {', '.join(old.targets)} than scan {old_id}")
        return old_id, newer[0]
    if old_id is None:
        new = store.get_scan(new_id)
        if new is None:
            _fail(EXIT_USAGE, f"no scan with id {new_id}")
        before = previous_scan_ids(store, new.targets, new.kind, limit=1, before=new_id)
        if not before:
            _fail(EXIT_USAGE, f"no earlier {new.kind} of {', '.join(new.targets) or '-'} "
                  f"than scan {new_id} to compare with")
        return before[0], new_id
    return old_id, new_id


def diff(
    old_id: Annotated[int | None, typer.Argument(
        help="The older run's id (default: the run before NEW_ID of the same targets).",
        show_default=False)] = None,
    new_id: Annotated[int | None, typer.Argument(
        help="The newer run's id (default: the newest run).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="table, json, markdown, html or sarif (sarif: only what got "
        "worse).")] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the diff to this file.")] = None,
    lang: Annotated[str | None, typer.Option(
        "--lang", help="Report language: en or ja (default: from LC_ALL / LC_MESSAGES / LANG).",
        show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """What changed between two runs: findings new, fixed and changed; ports opened and
    closed; services changed. Exits 1 when something got worse (for cron and timers)."""
    from mamori.report.diff import DIFF_FORMATS, diff_records, render_diff
    from mamori.report.i18n import resolve_lang
    from mamori.store import StoreError

    if fmt not in DIFF_FORMATS:
        _fail(EXIT_USAGE, f"unknown --format {fmt!r} (choose from {', '.join(DIFF_FORMATS)})")
    try:
        chosen_lang = resolve_lang(lang)
    except ValueError as exc:
        _fail(EXIT_USAGE, f"--lang: {exc}")
    for value in (old_id, new_id):
        if value is not None and value < 1:
            _fail(EXIT_USAGE, f"bad scan id {value}")
    if old_id is not None and old_id == new_id:
        _fail(EXIT_USAGE, "give two different scan ids")
    store = _open_store(db)
    try:
        first, second = _pick_ids(store, old_id, new_id)
        old, new = store.get_scan(first), store.get_scan(second)
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    if old is None:
        _fail(EXIT_USAGE, f"no scan with id {first}")
    if new is None:
        _fail(EXIT_USAGE, f"no scan with id {second}")
    result = diff_records(old, new)
    _emit(render_diff(result, fmt, lang=chosen_lang), output)
    raise typer.Exit(EXIT_WORSE if result.worse else EXIT_OK)


def _chosen(ids: str | None) -> list[CheckSpec]:
    if ids is None:
        return []
    from mamori.checks.catalog import CatalogError, select

    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    if not wanted:
        _fail(EXIT_USAGE, "--checks needs check ids or 'all'")
    try:
        return select(None if wanted == ["all"] else wanted)
    except CatalogError as exc:
        _fail(EXIT_USAGE, str(exc))


async def _run_all(run: NmapRun, specs: list[CheckSpec]) -> list[CheckResult]:
    from mamori.checks.engine import run_checks

    results: list[CheckResult] = []
    for host in run.hosts:
        for ep in host.endpoints:
            results.extend(await run_checks(specs, ep, ep.service, hostname=host.hostname))
    return results


def import_nmap(
    path: Annotated[Path, typer.Argument(help="An nmap XML file (nmap -oX FILE).")],
    checks: Annotated[str | None, typer.Option(
        "--checks", help="Run these exposure checks (comma-separated ids, or 'all') on the "
        "services nmap found.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="table, json, markdown, html or sarif.")] = "table",
    db: DbOption = None,
) -> None:
    """Read an nmap XML file into the store as a run of kind "import" (then diff it, or run
    mamori's checks on what nmap found with --checks)."""
    from mamori.importers import NmapImportError, read_nmap_xml
    from mamori.model import ScanStatus
    from mamori.report import FORMATS, render
    from mamori.store import StoreError

    if fmt not in FORMATS:
        _fail(EXIT_USAGE, f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    specs = _chosen(checks)
    try:
        run = read_nmap_xml(path)
    except NmapImportError as exc:
        _fail(EXIT_USAGE, f"{path}: {exc}")
    results = asyncio.run(_run_all(run, specs)) if specs else []
    store = _open_store(db)
    try:
        scan_id = store.begin_scan(
            "import",
            list(run.targets),
            {"source": "nmap-xml", "file": str(path), "nmap_args": run.args,
             "nmap_version": run.version, "nmap_start": run.start,
             "checks": [s.id for s in specs]},
        )
        for host in run.hosts:
            store.add_host(scan_id, host.address, host.hostname)
            if host.not_shown:
                store.set_not_shown(scan_id, host.address, host.not_shown)
            store.add_endpoints(scan_id, [ep for ep in host.endpoints])
            for ep in host.endpoints:
                if ep.service is not None:
                    store.set_service(scan_id, ep.address, ep.proto, ep.port, ep.service)
        for result in results:
            store.add_check_result(scan_id, result)
        store.finish_scan(scan_id, ScanStatus.DONE)
        record = store.get_scan(scan_id)
    except StoreError as exc:
        _fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    assert record is not None
    stderr.print(f"imported {path} as scan {scan_id}", markup=False)
    _emit(render(record, fmt), None)
