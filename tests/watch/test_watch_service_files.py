"""The shipped service files for mamori watch: the systemd unit passes `systemd-analyze
verify` and keeps its hardening; the launchd plist parses and has what launchd needs."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest

from unit_files import unit_entries

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib/systemd/mamori-watch.service"
PLIST = ROOT / "contrib/launchd/org.mamori.watch.plist"


def test_systemd_unit_runs_watch_hardened() -> None:
    u = unit_entries(UNIT.read_text(encoding="utf-8"))
    assert u["Service.Type"] == ["simple"]
    (start,) = u["Service.ExecStart"]
    assert start.split()[1:] == ["watch", "--settings", "/etc/mamori/settings.toml"]
    assert u["Service.NoNewPrivileges"] == ["yes"] and u["Service.ProtectSystem"] == ["strict"]
    assert u["Service.KillSignal"] == ["SIGTERM"] and u["Service.Restart"] == ["on-failure"]
    caps = set(u["Service.CapabilityBoundingSet"][0].split())
    assert {"CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"} <= caps
    assert not caps & {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE"}
    writable = u["Service.ReadWritePaths"][0].split()
    db = next(e for e in u["Service.Environment"] if e.startswith("MAMORI_DB="))
    db_path = db.split("sqlite:///", 1)[1]
    assert any(db_path.startswith(w + "/") for w in writable), (db_path, writable)
    assert u["Install.WantedBy"] == ["multi-user.target"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    mamori = shutil.which("mamori")
    if analyze is None or mamori is None:
        pytest.skip("systemd-analyze or an installed mamori is missing")
    # verify insists that ExecStart's binary exists: point it at this machine's mamori
    text = UNIT.read_text(encoding="utf-8").replace("/usr/local/bin/mamori", mamori)
    good = tmp_path / "mamori-watch.service"
    good.write_text(text, encoding="utf-8")
    proc = subprocess.run([analyze, "verify", "--man=no", str(good)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # and the check can fail: a misspelt key is reported
    bad = tmp_path / "bad" / "mamori-watch.service"
    bad.parent.mkdir()
    bad.write_text(text.replace("KillSignal=SIGTERM", "KillSignal=SIGTERM\nKilSignal=TERM"))
    proc = subprocess.run([analyze, "verify", "--man=no", str(bad)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert "KilSignal" in proc.stderr


def test_launchd_plist_has_what_launchd_needs() -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "org.mamori.watch" == PLIST.stem
    args = plist["ProgramArguments"]
    assert Path(args[0]).name == "mamori" and Path(args[0]).is_absolute()
    assert args[1:] == ["watch", "--settings", "/usr/local/etc/mamori/settings.toml"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["EnvironmentVariables"]["MAMORI_DB"].startswith("sqlite:////usr/local/var/")
    assert isinstance(plist["ExitTimeOut"], int) and plist["ExitTimeOut"] >= 10
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert Path(plist[key]).is_absolute()
    assert plist["Umask"] == 0o027
