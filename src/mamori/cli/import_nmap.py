"""`mamori import FILE`: read an nmap XML file into the store (optionally running mamori's
checks on what nmap found).

Exit codes: 0 stored, 2 refused file or bad --checks (one line, nothing stored), 3 store
failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mamori.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    emit,
    fail,
    for_report,
    open_store,
    stderr,
    want_color,
)
from mamori.cli.options import AllPlatformsOption, DbOption, FormatOption

if TYPE_CHECKING:
    from mamori.checks.spec import CheckSpec


MAX_PRINTED_HOSTS = 1000


def register(app: typer.Typer) -> None:
    app.command("import")(import_nmap)


def _chosen(ids: str | None) -> list[CheckSpec]:
    if ids is None:
        return []
    from mamori.checks.catalog import CatalogError, select

    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    if not wanted:
        fail(EXIT_USAGE, "--checks needs check ids or 'all'")
    try:
        return select(None if wanted == ["all"] else wanted)
    except CatalogError as exc:
        fail(EXIT_USAGE, str(exc))


def _probed(info: Mapping[str, Any]) -> dict[str, str]:
    """The ports nmap says it scanned, per protocol (its <scaninfo services="...">), as
    ``options["probed"]`` (``report.coverage``): what `mamori diff` may call closed."""
    probed: dict[str, str] = {}
    scaninfo = info.get("scaninfo")
    for item in scaninfo if isinstance(scaninfo, list) else []:
        proto, services = item.get("protocol"), item.get("services")
        if proto in ("tcp", "udp") and isinstance(services, str):
            probed[proto] = ",".join(p for p in (probed.get(proto), services) if p)
    return probed


def import_nmap(
    path: Annotated[Path, typer.Argument(help="An nmap XML file (nmap -oX FILE).")],
    checks: Annotated[str | None, typer.Option(
        "--checks", help="Run these exposure checks (comma-separated ids, or 'all') on the "
        "services nmap found.")] = None,
    fmt: FormatOption = "table",
    all_platforms: AllPlatformsOption = False,
    db: DbOption = None,
) -> None:
    """Read an nmap XML file into the store as a run of kind "import" (then diff it, or run
    mamori's checks on what nmap found with --checks)."""
    from mamori.cli.import_stream import store_hosts, survey
    from mamori.importers import NmapImportError
    from mamori.model import ScanStatus
    from mamori.report import render
    from mamori.scan.store_sink import StoreSink
    from mamori.store import StoreError

    specs = _chosen(checks)
    try:
        run = survey(path)  # a refused file is refused before anything is stored
    except NmapImportError as exc:
        fail(EXIT_USAGE, f"{path}: {exc}")
    store = open_store(db)
    try:
        scan_id = store.begin_scan(
            "import",
            list(run.targets),
            {"source": "nmap-xml", "file": str(path), "nmap_args": run.args,
             "nmap_version": run.version, "nmap_start": run.start,
             "checks": [s.id for s in specs], "probed": _probed(run.info)},
        )
        try:
            asyncio.run(store_hosts(path, StoreSink(store, scan_id), specs))
        except NmapImportError as exc:  # the file changed since the first pass
            store.finish_scan(scan_id, ScanStatus.FAILED)
            fail(EXIT_FAILED, f"{path}: {exc} (scan {scan_id} kept as failed)")
        store.finish_scan(scan_id, ScanStatus.DONE)
        # A report of thousands of hosts is megabytes nobody reads on a terminal, and building
        # it would hold the whole run in memory: `mamori show` prints it when asked.
        big = len(run.targets) > MAX_PRINTED_HOSTS
        record = None if big else store.get_scan(scan_id)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    if run.problem_count:
        stderr.print(f"mamori: {path}: {run.problem_count} entries not imported (stored as "
                     f"errors of scan {scan_id}): {'; '.join(run.first_problems)}"
                     f"{'; ...' if run.problem_count > len(run.first_problems) else ''}",
                     markup=False, soft_wrap=True)
    stderr.print(f"imported {path} as scan {scan_id}", markup=False)
    if record is None:
        stderr.print(f"{len(run.targets)} hosts: too many to print here (more than "
                     f"{MAX_PRINTED_HOSTS}); `mamori show {scan_id} -f {fmt}` prints them",
                     markup=False, soft_wrap=True)
        return
    emit(render(for_report(record, fmt, all_platforms), fmt, color=want_color(None)), None)
