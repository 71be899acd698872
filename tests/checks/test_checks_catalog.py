"""The catalog's own rules, and the honeypot that says yes to everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks_helpers import run_check, yes_server
from mamori.checks.catalog import (
    CATALOG_DIR,
    CatalogError,
    default_catalog,
    load_catalog,
    load_check,
)
from mamori.checks.registry import PRIMITIVES
from mamori.model import CheckStatus, Confidence, Proto


def test_every_check_file_loads() -> None:
    catalog = load_catalog()  # raises on any schema error
    assert len(catalog) == len(list(CATALOG_DIR.glob("*.yaml")))
    for check_id, spec in catalog.items():
        assert (CATALOG_DIR / f"{check_id}.yaml").exists()
        assert spec.probe.primitive in PRIMITIVES


def test_every_check_has_both_languages() -> None:
    for spec in load_catalog().values():
        for text in (spec.title, spec.summary, spec.why, spec.remediation.linux,
                     spec.remediation.macos, spec.remediation.router):
            assert text.en.strip() and text.ja.strip(), spec.id


def test_every_primitive_is_used() -> None:
    used = {s.probe.primitive for s in load_catalog().values()}
    assert used == set(PRIMITIVES), set(PRIMITIVES) - used


@pytest.mark.parametrize("mutation,fragment", [
    (lambda t: t.replace("severity: high", "severity: severe"), "severity"),
    (lambda t: t.replace("primitive: redis_info", "primitive: no_such_thing"), "unknown primitive"),
    (lambda t: t.replace("id: redis-unauthenticated", "id: something-else"), "differs"),
    (lambda t: t + "\nunexpected_field: 1\n", "unexpected_field"),
    (lambda t: t.replace("  - CWE-306\n", "  - see the docs\n"), "reference"),
    (lambda t: t.replace("  ja: Redis がパスワードなしで応答する\n", ""), "ja"),
])
def test_bad_check_files_are_rejected(tmp_path: Path, mutation, fragment: str) -> None:
    text = (CATALOG_DIR / "redis-unauthenticated.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "redis-unauthenticated.yaml"
    bad.write_text(mutation(text), encoding="utf-8")
    with pytest.raises(CatalogError, match=fragment):
        load_check(bad)


HONEYPOT = "127.0.50.1"


@pytest.mark.parametrize("check_id", sorted(default_catalog()))
def test_honeypot_gives_no_confirmed_finding(check_id: str) -> None:
    spec = default_catalog()[check_id]
    port = 5000 + sorted(default_catalog()).index(check_id)
    with yes_server(HONEYPOT, port):
        for service in spec.services:
            result = run_check(check_id, HONEYPOT, port, service,
                               proto=Proto(spec.transport), tls=service == "tls")
            assert not (result.status is CheckStatus.FINDING
                        and result.confidence is Confidence.CONFIRMED), result.summary


def test_a_stalling_server_cannot_hold_the_checks_beyond_the_endpoint_budget() -> None:
    """A server that accepts and never answers: every applicable check ends "not tested"
    within the endpoint budget, none is dropped and none reads as passed."""
    import asyncio
    import socket
    import time

    from mamori.checks.engine import run_checks
    from mamori.model import Endpoint, PortState, Reason, Service

    host, port = "127.0.50.2", 5999
    with socket.create_server((host, port)) as srv:
        srv.listen(64)
        specs = [s for s in default_catalog().values() if "http" in s.services]
        ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
        started = time.monotonic()
        results = asyncio.run(run_checks(specs, ep, Service(name="http"), budget=12))
        elapsed = time.monotonic() - started
    assert len(results) == len(specs) >= 5
    assert all(r.status is CheckStatus.NOT_TESTED for r in results), [r.summary for r in results]
    assert elapsed < 12 + 9  # the budget, plus at most one probe deadline in flight


def test_folded_japanese_text_has_no_stray_spaces() -> None:
    """YAML folding joins lines with a space; in Japanese that is a visible gap."""
    from mamori.audit.notes import default_notes
    from mamori.checks.spec import unfold_japanese

    assert unfold_japanese("修正され、 攻撃者も") == "修正され、攻撃者も"
    assert unfold_japanese("の後、 `sudo apt`") == "の後、`sudo apt`"
    kept = "サービス (SSH、Web サーバー) の欠陥"  # spaces around Latin words are meant
    assert unfold_japanese(kept) == kept
    texts = [s.why.ja for s in default_catalog().values()]
    texts += [s.why.ja for s in default_notes().values()]
    assert not [t for t in texts if "、 " in t or "。 " in t]
