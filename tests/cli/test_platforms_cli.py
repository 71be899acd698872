"""mamori show/scan/check/import print the running system's fixes and the router's;
--all-platforms prints every platform's; JSON and SARIF always hold them all."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tests.conftest import run_mamori

from mamori.model import CheckStatus, ScanStatus
from mamori.store import Store
from store_fixtures import SAMPLE_CHECKS

FIXES = {"linux": "sudo ufw deny 6379", "macos": "sudo pfctl -e", "router": "close the port"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("platforms") / "m.db")
    finding = next(c for c in SAMPLE_CHECKS if c.status is CheckStatus.FINDING)
    with Store.open(path) as store:
        sid = store.begin_scan("scan", ["127.0.0.1"], {})
        store.add_check_result(sid, replace(finding, remediation=FIXES, texts={}))
        store.finish_scan(sid, ScanStatus.DONE)
    return path


@pytest.mark.skipif(sys.platform != "linux", reason="not tested: the default is Linux's here")
@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_linux_and_router_fixes_by_default(db: str, fmt: str) -> None:
    r = run_mamori("show", "1", "-f", fmt, env={"MAMORI_DB": db})
    assert r.returncode == 0, r.stderr
    assert FIXES["linux"] in r.stdout and FIXES["router"] in r.stdout
    assert FIXES["macos"] not in r.stdout


@pytest.mark.parametrize("argv", [["-f", "table", "--all-platforms"],
                                  ["-f", "markdown", "--all-platforms"], ["-f", "json"],
                                  ["-f", "sarif"]])
def test_all_platforms_and_json_sarif_hold_every_fix(db: str, argv: list[str]) -> None:
    r = run_mamori("show", "1", *argv, env={"MAMORI_DB": db})
    assert r.returncode == 0, r.stderr
    assert all(fix in r.stdout for fix in FIXES.values()), argv


def test_every_report_command_has_the_option(tmp_path: Path) -> None:
    for argv in (["scan"], ["check"], ["show"], ["import"]):
        r = run_mamori(*argv, "--help", env={"COLUMNS": "200"})
        assert "--all-platforms" in r.stdout, argv
