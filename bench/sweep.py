"""Benchmark: mamori's TCP sweep against ``nmap -sT`` on loopback, same run, same ports.

Installs nothing; needs nmap on PATH. Traffic goes to 127.0.0.1 and 127.0.3.0/26 only, and
port 2024 (the machine's own service) is excluded from every sweep.

Case "full":  every port of 127.0.0.1 but 2024
              (nmap -sT -p- -T4 -n -Pn --exclude-ports 2024 127.0.0.1).
Case "multi": top 1000 ports of the 64 addresses 127.0.3.0/26
              (nmap -sT --top-ports 1000 -T4 -n -Pn --exclude-ports 2024 127.0.3.0/26).

Listeners (plain Python listening sockets, accepted and closed by a helper subprocess) sit on a
few ports of those addresses. mamori and nmap run ALTERNATELY, each in its own process (so
interpreter start-up counts like nmap's), ``--runs`` times per case; the script prints median
wall times, the ratio mamori/nmap and whether both found the same open ports.

Two mamori variants run by default. "engine": the sweep engine alone in a fresh interpreter
(bench/_driver.py: tcp_sweep, no CLI, store or report); the issue's goals apply to it. "cli": the
command as a user runs it, ``python -m mamori scan --no-identify --format json --db <temporary
SQLite file>`` (nmap -sT identifies nothing either), so interpreter start-up, Typer, SQLAlchemy,
the store and the report all count; printed for information. Bytecode caching is left on
for it, as for any installed package (this machine's environment sets PYTHONDONTWRITEBYTECODE;
an installed wheel has its .pyc files). ``--engine`` or ``--cli`` runs one variant only.
``--mamori-cmd`` runs any other command line; the port options (``-p -`` or ``--top-ports
1000``, ``--exclude-ports 2024``) and the target are appended, and the JSON report's
hosts[].endpoints[] are read.

Peer "nmap -sS" (root only; ``--no-syn`` skips it): in the "full" case of the "cli" variant,
``nmap -sS -n -Pn -p- --exclude-ports 2024 127.0.0.1`` runs third in each round, and the whole
mamori command's median is compared with its median: the start-up budget, goal ratio <= 1.0.

Start-up (with the "cli" variant): ``mamori --version`` (the console script next to this
interpreter, else ``python -m mamori``) and a bare ``python -c pass``, alternately, ``--runs``
times each after the rounds; goal: ``mamori --version`` <= 0.15 s (median).

Targets of the issue: ratio <= 0.5 for "full", < 1.0 for "multi". ``--check`` exits 1 when a
target is missed or the open-port sets differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXCLUDED = "2024"  # the machine's own service: never touched

FULL_TARGET = "127.0.0.1"
FULL_LISTENERS = [("127.0.0.1", p) for p in (21, 80, 443, 3389, 8080, 40123, 50001, 61234)]
MULTI_TARGET = "127.0.3.0/26"
MULTI_LISTENERS = [
    ("127.0.3.1", 22),
    ("127.0.3.9", 80),
    ("127.0.3.9", 443),
    ("127.0.3.33", 3306),
    ("127.0.3.62", 8080),
]

# Helper process: listens, accepts and closes whatever connects (so accept queues never fill
# and no probe is dropped), until its stdin closes.
_LISTENER_CODE = r"""
import selectors, socket, sys, threading
sel = selectors.DefaultSelector()
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(512)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
def serve():
    while True:
        for key, _ in sel.select():
            try:
                conn, _ = key.fileobj.accept()
                conn.close()
            except OSError:
                pass
threading.Thread(target=serve, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass
class Case:
    name: str
    target: str
    port_args: list[str]
    nmap_args: list[str]
    listeners: list[tuple[str, int]]
    goal: float  # ratio mamori/nmap to stay below (or at)
    inclusive: bool
    goal_applies: bool = True  # False: figure printed for information
    mamori_s: list[float] = field(default_factory=list)
    nmap_s: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    syn_s: list[float] = field(default_factory=list)  # the nmap -sS peer ("full" case, root)
    syn_goal: float | None = None  # ratio mamori/(nmap -sS) to stay at or below
    open_sets: list[tuple[frozenset[tuple[str, int]], frozenset[tuple[str, int]]]] = field(
        default_factory=list
    )


def start_listeners(listeners: list[tuple[str, int]]) -> subprocess.Popen[str]:
    specs = [f"{h}:{p}" for h, p in listeners]
    proc = subprocess.Popen(
        [sys.executable, "-c", _LISTENER_CODE, *specs],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"listener helper failed to start on {specs}")
    return proc


def stop_listeners(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


BENCH_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=600, env=BENCH_ENV
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed, out.stdout


def nmap_open(xml_text: str) -> frozenset[tuple[str, int]]:
    root = ET.fromstring(xml_text)
    found: set[tuple[str, int]] = set()
    for host in root.iter("host"):
        addr_el = host.find("address")
        if addr_el is None:
            continue
        addr = addr_el.get("addr", "")
        for port in host.iter("port"):
            state = port.find("state")
            if port.get("protocol") == "tcp" and state is not None and state.get("state") == "open":
                found.add((addr, int(port.get("portid", "0"))))
    return frozenset(found)


def mamori_open(json_text: str) -> frozenset[tuple[str, int]]:
    data = json.loads(json_text)
    found: set[tuple[str, int]] = set()
    for host in data.get("hosts", []):
        for ep in host.get("endpoints", []):
            if ep.get("proto") == "tcp" and ep.get("state") == "open":
                found.add((host["address"], int(ep["port"])))
    return frozenset(found)


def mamori_cmd(base: list[str] | None, case: Case) -> list[str]:
    if base is None:
        base = [sys.executable, str(HERE / "_driver.py")]
    return [*base, *case.port_args, "--exclude-ports", EXCLUDED, case.target]


def nmap_cmd(case: Case) -> list[str]:
    return [
        "nmap",
        "-sT",
        *case.nmap_args,
        "-T4",
        "-n",
        "-Pn",
        "--exclude-ports",
        EXCLUDED,
        "-oX",
        "-",
        case.target,
    ]


def syn_cmd(case: Case) -> list[str]:
    """nmap's raw SYN scan (root): the fastest peer, the start-up budget's yardstick."""
    return ["nmap", "-sS", *case.nmap_args, "-n", "-Pn", "--exclude-ports", EXCLUDED,
            "-oX", "-", case.target]


def run_case(case: Case, runs: int, warmup: int, base: list[str] | None) -> None:
    helper = start_listeners(case.listeners)
    try:
        for i in range(warmup + runs):
            m_s, m_out = timed(mamori_cmd(base, case))
            n_s, n_out = timed(nmap_cmd(case))
            s_s, s_out = timed(syn_cmd(case)) if case.syn_goal is not None else (0.0, "")
            m_set, n_set = mamori_open(m_out), nmap_open(n_out)
            if s_out and nmap_open(s_out) != n_set:
                case.mismatches.append(f"run {i - warmup + 1}: nmap -sS and -sT differ")
            if i < warmup:
                continue
            if case.syn_goal is not None:
                case.syn_s.append(s_s)
            case.mamori_s.append(m_s)
            case.nmap_s.append(n_s)
            case.open_sets.append((m_set, n_set))
            if m_set != n_set:
                case.mismatches.append(
                    f"run {i - warmup + 1}: only mamori {sorted(m_set - n_set)}, "
                    f"only nmap {sorted(n_set - m_set)}"
                )
            missing = {(h, p) for h, p in case.listeners} - m_set
            if missing:
                case.mismatches.append(f"run {i - warmup + 1}: listeners not found {missing}")
            syn = f"  nmap -sS {s_s:.3f}s" if case.syn_goal is not None else ""
            print(
                f"  {case.name} run {i - warmup + 1}: mamori {m_s:.3f}s  nmap {n_s:.3f}s{syn}  "
                f"open {len(m_set)}/{len(n_set)}",
                flush=True,
            )
    finally:
        stop_listeners(helper)


def report(case: Case) -> dict[str, object]:
    m = statistics.median(case.mamori_s)
    n = statistics.median(case.nmap_s)
    ratio = m / n
    met = ratio <= case.goal if case.inclusive else ratio < case.goal
    same = not case.mismatches
    op = "<=" if case.inclusive else "<"
    verdict = (
        ("met" if met else "MISSED")
        if case.goal_applies
        else ("information" + (", would be met" if met else ", not met"))
    )
    print(
        f"{case.name:5s}: mamori median {m:.3f}s (min {min(case.mamori_s):.3f})  "
        f"nmap median {n:.3f}s (min {min(case.nmap_s):.3f})  ratio {ratio:.3f} "
        f"(goal {op} {case.goal}: {verdict})  "
        f"open ports {'identical' if same else 'DIFFER'} "
        f"({len(case.open_sets[-1][0])} open)"
    )
    figures: dict[str, object] = {}
    if case.syn_goal is not None and case.syn_s:
        syn = statistics.median(case.syn_s)
        syn_met = m / syn <= case.syn_goal
        print(f"       vs nmap -sS median {syn:.3f}s (min {min(case.syn_s):.3f})  ratio "
              f"{m / syn:.3f} (goal <= {case.syn_goal}: {'met' if syn_met else 'MISSED'})")
        figures = {"nmap_syn_median_s": round(syn, 4), "syn_ratio": round(m / syn, 4),
                   "syn_goal_met": syn_met, "nmap_syn_runs_s": [round(x, 4) for x in case.syn_s]}
        met = met and syn_met
    for line in case.mismatches:
        print(f"       {line}")
    return {
        **figures,
        "case": case.name,
        "mamori_median_s": round(m, 4),
        "nmap_median_s": round(n, 4),
        "ratio": round(ratio, 4),
        "goal_met": met,
        "goal_applies": case.goal_applies,
        "same_open_ports": same,
        "mamori_runs_s": [round(x, 4) for x in case.mamori_s],
        "nmap_runs_s": [round(x, 4) for x in case.nmap_s],
    }


STARTUP_GOAL = 0.15  # seconds, `mamori --version`


def startup(runs: int) -> dict[str, object]:
    """Median wall times of `mamori --version` and of a bare interpreter, alternately."""
    script = Path(sys.executable).with_name("mamori")
    version = [str(script), "--version"] if script.exists() else [
        sys.executable, "-m", "mamori", "--version"]
    bare = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {"version": [], "bare": []}
    for _ in range(max(runs, 5)):
        for key, cmd in (("version", version), ("bare", bare)):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    met = med["version"] <= STARTUP_GOAL
    print(f"start-up: {shlex.join(version)} median {med['version']:.3f}s "
          f"(min {min(times['version']):.3f})  bare python median {med['bare']:.3f}s  "
          f"(goal <= {STARTUP_GOAL}s: {'met' if met else 'MISSED'})")
    return {"case": "startup", "mamori_version_median_s": round(med["version"], 4),
            "bare_python_median_s": round(med["bare"], 4), "goal_s": STARTUP_GOAL,
            "goal_met": met, "goal_applies": True, "same_open_ports": True}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each tool per case")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each first")
    ap.add_argument("--case", choices=["full", "multi", "all"], default="all")
    ap.add_argument(
        "--mamori-cmd",
        help="command line to run mamori instead of bench/_driver.py; port options and the "
        "target are appended",
    )
    ap.add_argument(
        "--engine",
        action="store_true",
        help="time the sweep engine alone (bench/_driver.py) instead of the mamori CLI",
    )
    ap.add_argument(
        "--cli", action="store_true", help="time only the mamori CLI (start-up and store included)"
    )
    ap.add_argument("--no-syn", action="store_true",
                    help="skip the nmap -sS peer of the full/cli case (it needs root)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args()
    if shutil.which("nmap") is None:
        raise SystemExit("nmap is not on PATH")
    db = Path(tempfile.mkdtemp(prefix="mamori-bench-")) / "bench.db"
    cli = [
        sys.executable,
        "-m",
        "mamori",
        "scan",
        "--no-identify",
        "--format",
        "json",
        "--db",
        str(db),
    ]
    syn_ok = os.geteuid() == 0 and not args.no_syn
    if not syn_ok:
        print("nmap -sS peer: not run: " + ("--no-syn" if args.no_syn else "needs root"))
    # (label, command base, whether the goal applies to it)
    variants: list[tuple[str, list[str] | None, bool]]
    if args.mamori_cmd:
        variants = [("custom", shlex.split(args.mamori_cmd), True)]
    elif args.engine:
        variants = [("engine", None, True)]
    elif args.cli:
        variants = [("cli", cli, True)]
    else:
        # The goal is the sweep engine's (the "sweep engine" section); the whole
        # command, start-up, SQLAlchemy and report included, is printed beside it.
        variants = [("engine", None, True), ("cli", cli, False)]
    cases = []
    for label, base, goal_applies in variants:
        if args.case in ("full", "all"):
            cases.append(
                (
                    base,
                    Case(
                        f"full/{label}",
                        FULL_TARGET,
                        ["-p", "-"],
                        ["-p-"],
                        FULL_LISTENERS,
                        0.5,
                        inclusive=True,
                        goal_applies=goal_applies,
                        # The whole command against nmap's raw SYN scan: the start-up budget.
                        syn_goal=1.0 if label == "cli" and syn_ok else None,
                    ),
                )
            )
        if args.case in ("multi", "all"):
            cases.append(
                (
                    base,
                    Case(
                        f"multi/{label}",
                        MULTI_TARGET,
                        ["--top-ports", "1000"],
                        ["--top-ports", "1000"],
                        MULTI_LISTENERS,
                        1.0,
                        inclusive=False,
                        goal_applies=goal_applies,
                    ),
                )
            )
    figures = []
    for base, case in cases:
        print(
            f"{case.name}: {shlex.join(mamori_cmd(base, case))}  vs  {shlex.join(nmap_cmd(case))}"
        )
        run_case(case, args.runs, args.warmup, base)
    print()
    for _, case in cases:
        figures.append(report(case))
    if any(label == "cli" for label, _, _ in variants):
        figures.append(startup(args.runs))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    ok = all((f["goal_met"] or not f["goal_applies"]) and f["same_open_ports"] for f in figures)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
