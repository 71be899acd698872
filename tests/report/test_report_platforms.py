"""Reports show the running system's fixes and the router's; --all-platforms shows all."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from mamori.model import CheckStatus, ScanRecord, ScanStatus
from mamori.model.scan import CheckText
from mamori.report import render
from mamori.report.platforms import only_platforms, shown_platforms
from store_fixtures import SAMPLE_CHECKS

FIXES = {"linux": "sudo ufw deny 6379", "macos": "sudo pfctl -e", "router": "close the port"}


def _record() -> ScanRecord:
    base = next(c for c in SAMPLE_CHECKS if c.status is CheckStatus.FINDING)
    ja = CheckText(title="t", summary="s", fixes={k: f"ja {v}" for k, v in FIXES.items()})
    check = replace(base, remediation=FIXES, texts={**base.texts, "ja": ja})
    return ScanRecord(id=1, kind="scan", targets=("127.0.0.1",), options={},
                      started_at=datetime(2026, 1, 1, tzinfo=UTC), finished_at=None,
                      status=ScanStatus.DONE, hosts=(), errors=(), checks=(check,))


def test_the_running_system_and_the_router_by_default() -> None:
    assert shown_platforms("linux", False) == ("linux", "router")
    assert shown_platforms("darwin", False) == ("macos", "router")
    assert shown_platforms("linux", True) == ("linux", "macos", "router")
    assert shown_platforms("freebsd14", False) == ("linux", "macos", "router")


def test_only_platforms_drops_the_other_systems_fixes_in_every_language() -> None:
    shown = only_platforms(_record(), ("macos", "router")).checks[0]
    assert dict(shown.remediation) == {"macos": "sudo pfctl -e", "router": "close the port"}
    assert set(shown.texts["ja"].fixes) == {"macos", "router"}


def test_table_markdown_html_show_only_the_chosen_platforms() -> None:
    on_linux = only_platforms(_record(), shown_platforms("linux", False))
    for fmt in ("table", "markdown", "html"):
        out = render(on_linux, fmt)
        assert "sudo ufw deny 6379" in out and "close the port" in out, fmt
        assert "sudo pfctl -e" not in out, fmt
    on_mac = only_platforms(_record(), shown_platforms("darwin", False))
    table = render(on_mac, "table")
    assert "sudo pfctl -e" in table and "close the port" in table
    assert "sudo ufw deny 6379" not in table
    everything = render(_record(), "table")
    assert all(fix in everything for fix in FIXES.values())
