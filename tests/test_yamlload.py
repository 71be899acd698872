"""mamori's YAML files are read with libyaml's C safe loader when PyYAML has it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mamori import yamlload
from mamori.audit.notes import load_notes
from mamori.checks.catalog import load_catalog
from mamori.identify.table import load_table
from mamori.watch.signatures import DEFAULT_DIR, load_dir


def test_the_c_safe_loader_is_used_when_pyyaml_has_libyaml() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("not tested: PyYAML here is built without libyaml")
    assert yamlload.SAFE_LOADER.__name__ == "CSafeLoader"


def test_the_loader_stays_safe() -> None:
    assert yamlload.safe_load("a: [1, 2]") == {"a": [1, 2]}
    with pytest.raises(yaml.YAMLError):
        yamlload.safe_load("!!python/object/apply:os.system ['true']")


@pytest.mark.parametrize("load", [load_table, load_catalog, load_notes,
                                  lambda: load_dir(DEFAULT_DIR)],
                         ids=["probes", "checks", "notes", "signatures"])
def test_every_catalog_is_read_through_the_shared_loader(
    load: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []

    class Recording(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            used.append("yes")
            super().__init__(stream)

    monkeypatch.setattr(yamlload, "SAFE_LOADER", Recording)
    load()
    assert used
