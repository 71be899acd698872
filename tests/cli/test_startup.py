"""Start-up: `mamori --version` answers without loading Typer, rich, pydantic or SQLAlchemy
(structural, not timed: the modules Python reports importing under -X importtime)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

HEAVY = ("typer", "click", "rich", "pydantic", "sqlalchemy", "alembic", "mamori.cli.app")


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mamori", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    names = {line.split("|")[-1].strip() for line in out.stderr.splitlines()
             if line.startswith("import time:")}
    return out, names


def test_version_imports_nothing_heavy() -> None:
    out, names = _imported("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("mamori ")
    assert "mamori" in names  # the importtime trace was read at all
    loaded = sorted(n for n in names if n.split(".")[0] in HEAVY or n in HEAVY)
    assert loaded == []


def test_help_still_goes_through_the_app() -> None:
    out, names = _imported("--help")
    assert out.returncode == 0
    assert "mamori.cli.app" in names and "typer" in names
    assert out.stdout.index("scan") < out.stdout.index("check ")
