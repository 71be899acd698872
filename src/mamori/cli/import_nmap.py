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

from mamori.cli.common import EXIT_FAILED, EXIT_USAGE, emit, fail, open_store, stderr
from mamori.cli.options import DbOption

if TYPE_CHECKING:
    from mamori.checks.spec import CheckSpec
    from mamori.importers import NmapRun
    from mamori.model import CheckResult


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


async def _run_all(run: NmapRun, specs: list[CheckSpec]) -> list[CheckResult]:
    from mamori.checks.engine import run_checks

    results: list[CheckResult] = []
    for host in run.hosts:
        for ep in host.endpoints:
            results.extend(await run_checks(specs, ep, ep.service, hostname=host.hostname))
    return results


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
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="table, json, markdown, html or sarif.")] = "table",
    db: DbOption = None,
) -> None:
    """Read an nmap XML file into the store as a run of kind "import" (then diff it, or run
    mamori's checks on what nmap found with --checks)."""
    from mamori.importers import NmapImportError, read_nmap_xml
    from mamori.model import ScanStatus, Target
    from mamori.report import FORMATS, render
    from mamori.scan.store_sink import StoreSink
    from mamori.store import StoreError

    if fmt not in FORMATS:
        fail(EXIT_USAGE, f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    specs = _chosen(checks)
    try:
        run = read_nmap_xml(path)
    except NmapImportError as exc:
        fail(EXIT_USAGE, f"{path}: {exc}")
    results = asyncio.run(_run_all(run, specs)) if specs else []
    store = open_store(db)
    try:
        scan_id = store.begin_scan(
            "import",
            list(run.targets),
            {"source": "nmap-xml", "file": str(path), "nmap_args": run.args,
             "nmap_version": run.version, "nmap_start": run.start,
             "checks": [s.id for s in specs], "probed": _probed(run.info)},
        )
        sink = StoreSink(store, scan_id)
        for host in run.hosts:
            sink.on_host(Target(host.address, host.hostname))
            if host.not_shown:
                sink.on_not_shown(host.address, host.not_shown)
            sink.on_endpoints(list(host.endpoints))
            for ep in host.endpoints:
                if ep.service is not None:
                    sink.on_service(ep.address, ep.proto, ep.port, ep.service)
        for result in results:
            sink.on_check(result)
        store.finish_scan(scan_id, ScanStatus.DONE)
        record = store.get_scan(scan_id)
    except StoreError as exc:
        fail(EXIT_FAILED, str(exc))
    finally:
        store.close()
    assert record is not None
    stderr.print(f"imported {path} as scan {scan_id}", markup=False)
    emit(render(record, fmt), None)
