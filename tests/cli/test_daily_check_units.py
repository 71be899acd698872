"""The daily check units: contrib/systemd/mamori-check.{service,timer} pass `systemd-analyze
verify` and keep their hardening; the launchd plist parses and runs the same commands; and the
service's own ExecStart lines, run for real against a temp store and a settings file whose
webhook is a recorder on loopback, notify nothing on the first run and on an identical second
run, and exactly once (naming the new port) after a real redis starts listening.

Addresses: 127.0.77.0/24 (no other test uses it): redis 127.0.77.1, the recorder 127.0.77.2.
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import run_mamori
from daemons import running, start_redis
from unit_files import unit_entries

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "contrib/systemd/mamori-check.service"
TIMER = ROOT / "contrib/systemd/mamori-check.timer"
PLIST = ROOT / "contrib/launchd/org.mamori.check.plist"
REDIS_HOST, REDIS_PORT = "127.0.77.1", 16377
HOOK_HOST = "127.0.77.2"
UNIT_SETTINGS = "/etc/mamori/settings.toml"


def test_service_is_a_hardened_oneshot_of_check_then_diff_notify() -> None:
    u = unit_entries(SERVICE.read_text(encoding="utf-8"))
    assert u["Service.Type"] == ["oneshot"]
    starts = [shlex.split(s) for s in u["Service.ExecStart"]]
    assert [s[1:] for s in starts] == [["check"], ["diff", "--notify", UNIT_SETTINGS]]
    assert all(Path(s[0]).name == "mamori" and Path(s[0]).is_absolute() for s in starts)
    # "something got worse" (exit 1) is news, not a unit failure; 2 and 3 stay failures
    assert u["Service.SuccessExitStatus"] == ["1"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "ProtectKernelModules": "yes",
                       "RestrictSUIDSGID": "yes"}.items():
        assert u[f"Service.{key}"] == [value], key
    caps = set(u["Service.CapabilityBoundingSet"][0].split())
    assert not caps & {"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_NET_BIND_SERVICE", "CAP_SETUID"}
    families = set(u["Service.RestrictAddressFamilies"][0].split())
    assert {"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"} == families
    db = next(e for e in u["Service.Environment"] if e.startswith("MAMORI_DB="))
    writable = u["Service.ReadWritePaths"][0].split()
    assert any(db.split("sqlite:///", 1)[1].startswith(w + "/") for w in writable)
    assert "Install.WantedBy" not in u  # started by the timer, not at boot


def test_timer_is_daily_randomised_and_persistent() -> None:
    u = unit_entries(TIMER.read_text(encoding="utf-8"))
    (calendar,) = u["Timer.OnCalendar"]
    assert calendar in ("daily", "*-*-* 04:00:00")
    assert u["Timer.RandomizedDelaySec"] and u["Timer.Persistent"] == ["true"]
    assert u["Timer.Unit"] == ["mamori-check.service"]
    assert u["Install.WantedBy"] == ["timers.target"]


def test_systemd_analyze_verify_accepts_both_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    mamori = shutil.which("mamori")
    if analyze is None or mamori is None:
        pytest.skip("systemd-analyze or an installed mamori is missing")
    text = SERVICE.read_text(encoding="utf-8").replace("/usr/local/bin/mamori", mamori)
    (tmp_path / SERVICE.name).write_text(text, encoding="utf-8")
    shutil.copy(TIMER, tmp_path / TIMER.name)
    units = [str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)]
    proc = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # and the check can fail: a misspelt timer key is reported
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / SERVICE.name).write_text(text, encoding="utf-8")
    (bad / TIMER.name).write_text(TIMER.read_text().replace("Persistent=", "Persistant="))
    proc = subprocess.run([analyze, "verify", "--man=no", str(bad / TIMER.name)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Persistant" in proc.stderr


def test_launchd_plist_runs_check_then_diff_notify_daily() -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "org.mamori.check" == PLIST.stem
    shell, flag, script = plist["ProgramArguments"]
    assert (shell, flag) == ("/bin/sh", "-c")
    check, diff = script.split(" && exec ")
    assert check == "/usr/local/bin/mamori check"
    assert diff == "/usr/local/bin/mamori diff --notify /usr/local/etc/mamori/settings.toml"
    assert set(plist["StartCalendarInterval"]) == {"Hour", "Minute"}  # once a day
    assert plist["RunAtLoad"] is False and "KeepAlive" not in plist
    assert plist["EnvironmentVariables"]["MAMORI_DB"].startswith("sqlite:////usr/local/var/")
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert Path(plist[key]).is_absolute()
    assert plist["Umask"] == 0o027


# -- the service's commands, run for real -------------------------------------------------


class Recorder:
    """A webhook endpoint on loopback: keeps every JSON body POSTed to /hook."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 1 << 16)
                body = self.rfile.read(length)
                if self.path == "/hook":
                    recorder.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer((HOOK_HOST, 0), Handler)
        self.url = f"http://{HOOK_HOST}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def service_commands(settings: Path) -> list[list[str]]:
    """The unit's ExecStart lines, with this machine's mamori and the test's settings file."""
    mamori = shutil.which("mamori")
    if mamori is None:
        pytest.skip("no installed mamori")
    u = unit_entries(SERVICE.read_text(encoding="utf-8"))
    out = []
    for line in u["Service.ExecStart"]:
        argv = shlex.split(line)
        assert argv[0] == "/usr/local/bin/mamori"
        out.append([mamori, *(str(settings) if a == UNIT_SETTINGS else a for a in argv[1:])])
    return out


def run_service(commands: list[list[str]], env: dict[str, str], ok: set[int]) -> list[str]:
    """Run the commands as a oneshot unit does: in order, stopping at a failure. Returns
    each command's stderr; fails the test when a command's exit is not a success."""
    errs = []
    for argv in commands:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300,
                              check=False, cwd=ROOT)
        assert proc.returncode in ok, (argv, proc.returncode, proc.stderr[-2000:])
        errs.append(proc.stderr)
    return errs


def test_service_commands_notify_only_on_change(tmp_path: Path, recorder: Recorder) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(
        "[watch]\n[[watch.alerts]]\n"
        f'type = "webhook"\nurl = "{recorder.url}"\nretries = 0\ntimeout = "5s"\n',
        encoding="utf-8")
    commands = service_commands(settings)
    u = unit_entries(SERVICE.read_text(encoding="utf-8"))
    ok = {0, *(int(x) for x in u["Service.SuccessExitStatus"][0].split())}
    env = {**os.environ, "MAMORI_DB": f"sqlite:///{tmp_path / 'mamori.db'}",
           "HOME": str(tmp_path), "MAMORI_SETTINGS": str(settings)}

    first = run_service(commands, env, ok)
    assert "nothing to compare yet" in first[1]
    assert recorder.bodies == []
    second = run_service(commands, env, ok)
    assert "no change; nothing notified" in second[1], second[1]
    assert recorder.bodies == []

    with running(start_redis, tmp_path, REDIS_HOST, REDIS_PORT):
        third = run_service(commands, env, ok)
    assert "change notified" in third[1], third[1]
    assert len(recorder.bodies) == 1, recorder.bodies
    (body,) = recorder.bodies
    assert body["schema"] == "mamori.notice/1" and body["kind"] == "diff"
    assert f"tcp {REDIS_HOST}:{REDIS_PORT}" in body["text"], body["text"]
    assert "WORSE" in body["text"] and body["danger"] == "high"


def test_diff_notify_with_a_bad_settings_file_is_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text('[watch]\n[[watch.alerts]]\ntype = "webhook"\nurl = "ftp://x"\n')
    db = f"sqlite:///{tmp_path / 'm.db'}"
    proc = run_mamori("diff", "--notify", str(bad), env={"MAMORI_DB": db})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mamori: error: --notify:"), proc.stderr
    assert not (tmp_path / "m.db").exists()
