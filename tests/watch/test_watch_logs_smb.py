"""Failed SMB logons of a real smbd become brute-force evidence like sshd's: smbd from its own
config on 127.0.146.5 with its auth audit log on (``log level = 1 auth_audit:3``), an account
the test adds to the smbd's own password database (the unix user ``nobody``), and smbclient
logging on with deliberately wrong passwords; smbd's own log output is read by a real
``mamori watch --read-once --auth-log``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemons import start_or_skip, start_smbd
from mamori.model.watch import EventType
from mamori.watch.logs.parse import parse_line

pytestmark = pytest.mark.daemon

HOST, PORT = "127.0.146.5", 10445
ROOT = Path(__file__).resolve().parents[2]
TRIES = 6


def test_samba_wrong_passwords_are_brute_force(tmp_path: Path) -> None:
    if shutil.which("smbclient") is None or shutil.which("smbpasswd") is None:
        pytest.skip("smbclient and smbpasswd (scripts/install-test-deps)")
    smbd = start_or_skip(start_smbd, tmp_path, HOST, PORT, "  log level = 1 auth_audit:3\n")
    with smbd:
        added = subprocess.run(
            ["smbpasswd", "-c", str(tmp_path / "smb.conf"), "-a", "-s", "nobody"],
            input="right-Pass-1\nright-Pass-1\n", text=True, capture_output=True, timeout=30,
            check=False)
        assert added.returncode == 0, added.stderr
        for i in range(TRIES):
            tried = subprocess.run(
                ["smbclient", "-p", str(PORT), f"//{HOST}/share", "-U", f"nobody%wrong-{i}",
                 "-c", "ls"], capture_output=True, text=True, timeout=30, check=False)
            assert "NT_STATUS_LOGON_FAILURE" in tried.stdout + tried.stderr
        out = tmp_path / "smbd.out"
        end = time.monotonic() + 10
        while out.read_text(errors="replace").count("NT_STATUS_WRONG_PASSWORD") < TRIES:
            assert time.monotonic() < end, out.read_text(errors="replace")[-2000:]
            time.sleep(0.1)
    log = tmp_path / "smbd-auth.log"
    log.write_text(out.read_text(errors="replace"))

    events = [e for line in log.read_text().splitlines()
              if (e := parse_line("auth", line)) is not None]
    assert len(events) == TRIES, events
    assert {(e.type, e.src, e.fields["service"], e.fields["username"], e.fields["status"])
            for e in events} == {(EventType.AUTH_FAILURE, HOST, "smb", "WORKGROUP\\nobody",
                                  "NT_STATUS_WRONG_PASSWORD")}
    assert all(e.src_port and abs(e.time.timestamp() - time.time()) < 300 for e in events)

    db = tmp_path / "w.db"
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "MAMORI_SETTINGS": str(tmp_path / "empty.toml")}
    run = subprocess.run([sys.executable, "-m", "mamori", "watch", "--read-once", "--db",
                          str(db), "--auth-log", str(log)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stderr
    shown = subprocess.run([sys.executable, "-m", "mamori", "events", "--db", str(db), "-f",
                            "json", "--type", "bruteforce"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT, env=env, check=True)
    [brute] = json.loads(shown.stdout)["events"]
    assert (brute["src"], brute["fields"]["service"]) == (HOST, "smb")
