"""Knocks on closed ports are watched by default (issue #15, the new user's scenario).

* As root: a plain `mamori watch` with three decoys and no knock flag, then `nmap -sT -p 1-3000`
  from one address in another namespace: exactly one incident, a `scan.ports`, and the decoys'
  contacts are grouped into it (one incident per source), not a separate `decoy.contact`.
* Without CAP_NET_RAW (dropped from the bounding set with capsh, so even root cannot open a
  raw socket): the decoys run on, one line on stderr and one `sensor.error` event say that
  knocks on closed ports are not watched and why; with nothing else to watch, exit 3.
* `--no-knocks` / `knocks = false` turn it off; `--read-once` replays logs without it.

Namespaces mk15d-scan (10.217.0.1, .11) and mk15d-host (10.217.0.2); loopback 127.0.217.0/24.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_mamori
from netns import veth_pair

NEAR, FAR = "mk15d-scan", "mk15d-host"
DEVS = ("k15ds0", "k15dh0")
HOST, SCANNER = "10.217.0.2", "10.217.0.11"
DECOYS = ("0.0.0.0:21", "0.0.0.0:445", "0.0.0.0:2323")  # a new user's three decoys
LOOP = "127.0.217.1"  # the unprivileged runs' decoy address


def nsrun(ns: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    drop = {"MAMORI_DB", "MAMORI_SETTINGS", "MAMORI_KNOCK_BPF"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise AssertionError(path.read_text(errors="replace"))
        time.sleep(0.05)


def as_json(*args: str) -> Any:
    result = run_mamori(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def hosts() -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("nmap") is None:
        pytest.skip("needs root and nmap")
    near = ["10.217.0.1/24", f"{SCANNER}/24"]
    with veth_pair(NEAR, FAR, DEVS, (near, [f"{HOST}/24"]), []):
        yield


@pytest.mark.root
def test_a_new_users_watch_sees_a_connect_scan_of_closed_ports_as_one_scan(
    hosts: None, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    err_path = tmp_path / "watch.err"
    with err_path.open("wb") as err:
        watch = subprocess.Popen(
            ["ip", "netns", "exec", FAR, sys.executable, "-m", "mamori", "watch",
             *[a for d in DECOYS for a in ("--decoy", d)], "--settings", str(settings),
             "--db", db], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=clean_env())
    try:
        wait_for(err_path, "mamori watch: watching", watch)
        done = nsrun(NEAR, "nmap", "-sT", "-n", "-Pn", "-T5", "-S", SCANNER, "-e", DEVS[0],
                     "-p", "1-3000", HOST)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Not shown: 2997 closed" in done.stdout, done.stdout  # the decoys' 3 are open
        time.sleep(0.5)
    finally:
        watch.send_signal(signal.SIGTERM)
        rc = watch.wait(timeout=60)
    text = err_path.read_text()
    assert rc == 0, text
    incidents = as_json("incidents", "--format", "json", "--db", db)["incidents"]
    (incident,) = incidents  # one visitor, one incident: the scan
    assert incident["src"] == SCANNER and incident["kind"] == "scan.ports", incidents
    events = as_json("events", "--format", "json", "--limit", "0", "--db", db)["events"]
    # (the sensor's own sensor.limit record of the rate-limited excess names the source too;
    # it is the sensor's bookkeeping, not part of any incident)
    mine = [e for e in events if e["src"] == SCANNER and not e["type"].startswith("sensor.")]
    (scan,) = [e for e in mine if e["type"] == "scan.ports"]
    assert scan["fields"]["technique"] == "connect"
    # the decoys' contacts are in the scan's incident, next to the knocks on closed ports
    contacts = [e for e in mine if e["type"] == "decoy.connect"]
    assert sorted(e["dst_port"] for e in contacts) == [21, 445, 2323]
    assert {"decoy.connect", "port.knock", "scan.ports"} <= set(incident["types"])
    assert all(e["incident_id"] == incident["id"] for e in mine), mine
    assert not [e for e in events if e["type"] == "sensor.error"], events
    assert "knocks on closed ports" in text.split("mamori watch: watching", 1)[1].splitlines()[0]


# -- without CAP_NET_RAW -----------------------------------------------------------------------


def run_without_net_raw(args: list[str], err_path: Path) -> subprocess.Popen[bytes]:
    """`mamori watch ARGS` with CAP_NET_RAW gone from the bounding set (root cannot get it)."""
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("capsh (libcap2-bin) is missing")
    command = " ".join(["exec", sys.executable, "-m", "mamori", "watch", *args])
    with err_path.open("wb") as err:
        return subprocess.Popen([capsh, "--drop=cap_net_raw", "--", "-c", command],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                                env=clean_env())


@pytest.mark.root
def test_without_net_raw_knocks_are_said_not_watched_and_the_decoys_run_on(
    tmp_path: Path
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    err_path = tmp_path / "watch.err"
    watch = run_without_net_raw(["--decoy", f"{LOOP}:2323", "--settings", str(settings),
                                 "--db", db], err_path)
    try:
        wait_for(err_path, "mamori watch: watching", watch)
        with socket.create_connection((LOOP, 2323), timeout=5) as visit:
            visit.sendall(b"root\r\n")
            time.sleep(0.3)
    finally:
        watch.send_signal(signal.SIGTERM)
        rc = watch.wait(timeout=60)
    text = err_path.read_text()
    assert rc == 0, text
    said = [line for line in text.splitlines() if "knocks on closed ports" in line]
    assert len(said) == 1, text  # once, not once per socket
    assert "not watched" in said[0] and "CAP_NET_RAW" in said[0], said
    watching = [line for line in text.splitlines() if "mamori watch: watching" in line]
    assert watching == [f"mamori watch: watching decoy:tcp/{LOOP}:2323=telnet"], text
    events = as_json("events", "--format", "json", "--limit", "0", "--db", db)["events"]
    errors = [e for e in events if e["type"] == "sensor.error" and e["source"] == "knock"]
    assert len(errors) == 1, events
    assert "not watched" in errors[0]["fields"]["reason"]
    assert "CAP_NET_RAW" in errors[0]["fields"]["reason"]
    assert [e["dst_port"] for e in events if e["type"] == "decoy.connect"] == [2323]


@pytest.mark.root
def test_without_net_raw_and_nothing_else_to_watch_exit_3_with_the_reason(
    tmp_path: Path
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("")
    err_path = tmp_path / "watch.err"
    watch = run_without_net_raw(["--settings", str(settings),
                                 "--db", f"sqlite:///{tmp_path / 'w.db'}"], err_path)
    rc = watch.wait(timeout=60)
    text = err_path.read_text()
    assert rc == 3, text
    assert "not watched" in text and "CAP_NET_RAW" in text
    assert "nothing to watch could start" in text


# -- the switch ----------------------------------------------------------------------------------


def test_knocks_are_on_unless_switched_off(tmp_path: Path) -> None:
    from mamori.cli.common import UsageProblem
    from mamori.cli.watch import _settings

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    off = tmp_path / "off.toml"
    off.write_text("[watch]\nknocks = false\n")
    decoy = [f"{LOOP}:2323"]
    log = tmp_path / "a.log"

    def knocks(path: Path, decoys: list[str], flag: bool | None) -> bool:
        return _settings(path, decoys, [], [], [], False, False, False, False,
                         knocks=flag).knocks

    assert knocks(empty, [], None) is True  # nothing named: the knocks alone are enough
    assert knocks(empty, decoy, None) is True  # decoys named: knocks still on
    assert knocks(empty, decoy, False) is False  # --no-knocks
    assert knocks(off, decoy, None) is False  # knocks = false in the settings file
    assert knocks(off, decoy, True) is True  # --knocks wins over the file
    once = _settings(empty, [], [log], [], [], False, False, False, True)
    assert once.knocks is False  # replaying a log: no live sensor
    with pytest.raises(UsageProblem, match="nothing to watch"):
        _settings(off, [], [], [], [], False, False, False, False)
    with pytest.raises(UsageProblem, match="read-once"):
        _settings(empty, [], [log], [], [], False, False, False, True, knocks=True)


@pytest.mark.root
def test_no_knocks_runs_without_the_knock_sensor(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[watch]\nalerts = []\n")
    err_path = tmp_path / "watch.err"
    with err_path.open("wb") as err:
        watch = subprocess.Popen(
            [sys.executable, "-m", "mamori", "watch", "--no-knocks", "--decoy", f"{LOOP}:2324",
             "--settings", str(settings), "--db", f"sqlite:///{tmp_path / 'w.db'}"],
            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=clean_env())
    try:
        wait_for(err_path, "mamori watch: watching", watch)
    finally:
        watch.send_signal(signal.SIGTERM)
        rc = watch.wait(timeout=60)
    text = err_path.read_text()
    assert rc == 0, text
    assert "knocks" not in text, text
