"""Load and validate the check catalog: one YAML file per check, its id = its file name."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from mamori.checks.registry import PRIMITIVES
from mamori.checks.spec import CheckSpec
from mamori.yamlload import safe_load

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"


class CatalogError(ValueError):
    """A check file is not valid; the message names the file and the problem."""


def load_check(path: Path) -> CheckSpec:
    """Parse and validate one check file. Raises CatalogError."""
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path.name}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{path.name}: not a mapping")
    try:
        spec = CheckSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CatalogError(f"{path.name}: {where}: {first['msg']}") from None
    if spec.id != path.stem:
        raise CatalogError(f"{path.name}: id {spec.id!r} differs from the file name")
    if spec.probe.primitive not in PRIMITIVES:
        raise CatalogError(f"{path.name}: unknown primitive {spec.probe.primitive!r}")
    return spec


def load_catalog(directory: Path = CATALOG_DIR) -> dict[str, CheckSpec]:
    """All checks in ``directory`` by id, sorted. Raises CatalogError on the first bad file."""
    specs = [load_check(p) for p in sorted(directory.glob("*.yaml"))]
    return {s.id: s for s in specs}


@cache
def default_catalog() -> dict[str, CheckSpec]:
    return load_catalog()


def select(ids: Iterable[str] | None) -> list[CheckSpec]:
    """The chosen checks (all when ``ids`` is None). Raises CatalogError for an unknown id."""
    catalog = default_catalog()
    if ids is None:
        return list(catalog.values())
    chosen = []
    for check_id in ids:
        if check_id not in catalog:
            raise CatalogError(f"unknown check {check_id!r} (see mamori checks list)")
        chosen.append(catalog[check_id])
    return chosen
