"""The settings file's exclude_ports reaches scan and check like --exclude-ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from conftest import run_mamori


def test_settings_exclusions_apply_to_scan(tmp_path: Path) -> None:
    with socket.create_server(("127.0.46.1", 0)) as a, socket.create_server(("127.0.46.1", 0)) as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        settings = tmp_path / "settings.toml"
        settings.write_text(f'exclude_ports = "{pb}"\n')
        proc = run_mamori("scan", "127.0.46.1", "-p", f"{pa},{pb}", "--no-identify", "-f", "json",
                          "--db", str(tmp_path / "m.db"), env={"MAMORI_SETTINGS": str(settings)})
    assert proc.returncode == 0, proc.stderr
    (host,) = json.loads(proc.stdout)["hosts"]
    assert [e["port"] for e in host["endpoints"]] == [pa]
    assert host["not_shown"] in ({}, {"tcp": {}})


def test_bad_settings_file_is_a_usage_error(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("exclude_ports = [\n")
    proc = run_mamori("scan", "127.0.46.1", "-p", "1", "--db", str(tmp_path / "m.db"),
                      env={"MAMORI_SETTINGS": str(settings)})
    assert proc.returncode == 2 and "settings" in proc.stderr
    settings.write_text('colour = "blue"\n')
    proc = run_mamori("scan", "127.0.46.1", "-p", "1", "--db", str(tmp_path / "m.db"),
                      env={"MAMORI_SETTINGS": str(settings)})
    assert proc.returncode == 2 and "unknown setting" in proc.stderr
    assert not (tmp_path / "m.db").exists()
