"""The licence files: LICENSE is the licence pyproject names, NOTICE names every bundled datum."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_notice_names_every_data_file() -> None:
    notice = (ROOT / "NOTICE").read_text(encoding="utf-8")
    data = [*(ROOT / "src" / "mamori" / "data").iterdir(), *(ROOT / "tests" / "data").iterdir()]
    missing = [str(p.relative_to(ROOT)) for p in data
               if p.is_file() and str(p.relative_to(ROOT)) not in notice]
    assert data and missing == []
    assert "CC0 1.0" in notice and "Nmap Public Source License" in notice


def test_no_nmap_derived_file_is_shipped() -> None:
    package = ROOT / "src" / "mamori"
    for path in package.rglob("*"):
        if path.is_file() and path.suffix in {".txt", ".yaml", ".json", ""}:
            head = path.read_bytes()[:4000]
            assert b"nmap-services" not in head or path.name.startswith("ports-"), path
            assert b"Nmap Public Source" not in head, path
