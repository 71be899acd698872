"""Benchmark (not a test): ``mamori serve`` under 100 concurrent visitors, with the embedded
job pool and with Celery (1 and 2 ``mamori worker`` processes).

Every visitor is an asyncio httpx client bound to its own source address 127.0.156.N, so the
server sees 100 different peers and its per-address limits apply as they would on the
Internet; the settings allow loopback. A visitor loops: landing page, Proceed (a custom
profile of three ports), follow the status JSON once a second until the check ends, read
the result page, think, again. Each check probes that visitor's own address: a real nginx
listens on port 8080 of all 100 addresses (ports 22 and 80 are closed), so every check
identifies a web server and runs the web checks against it.

Printed per mode: p50/p95 latency of the pages (landing, Proceed, result) and of the status
polls, errors by status (429 refusals counted apart: they are the service protecting
itself: the global cap on active checks and the per-address check rate), and checks
completed per minute (finished "done" in the store during the run).

Servers: web 127.0.155.3, Redis broker 127.0.155.1, PostgreSQL 127.0.155.2 (Celery modes; the
embedded mode uses its default SQLite store), nginx on 127.0.156.1-100. Port 2024 is never
probed (excluded_ports) and no name is ever looked up.

    python bench/serve.py                      # embedded, celery x1, celery x2; 60 s each
    python bench/serve.py --duration 30 --modes celery2 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import httpx  # noqa: E402

BROKER_HOST = "127.0.155.1"
PG_HOST = "127.0.155.2"
PG_PORT = 55443
WEB_HOST = "127.0.155.3"
VISITOR_NET = "127.0.156."
TARGET_PORT = 8080
PORTS = f"22,80,{TARGET_PORT}"
SECRET = "bench-secret-key-0123456789abcdef-0123456789"
MODES = ("embedded", "celery1", "celery2")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


# -- what is measured -------------------------------------------------------------------------

@dataclass
class Tally:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    started: int = 0
    seen_done: int = 0
    seen_failed: int = 0
    keepalive_retries: int = 0

    def record(self, kind: str, seconds: float, status: int) -> None:
        self.latency[kind].append(seconds)
        if status == 429:
            self.refusals[kind] += 1
        elif status >= 400:
            self.errors[f"{kind} {status}"] += 1
        self.statuses[str(status)] += 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- one visitor ------------------------------------------------------------------------------

async def visitor(n: int, url: str, tally: Tally, end: float, poll: float) -> None:
    source = f"{VISITOR_NET}{n}"
    transport = httpx.AsyncHTTPTransport(local_address=source, retries=0)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30,
                                 follow_redirects=False) as client:
        await asyncio.sleep(random.uniform(0, 5))  # arrivals spread over five seconds
        while time.monotonic() < end:
            try:
                await _one_visit(client, tally, end, poll)
            except httpx.HTTPError as exc:
                tally.errors[type(exc).__name__] += 1
                await asyncio.sleep(1)
            await asyncio.sleep(random.uniform(0.5, 2.0))  # reading, thinking


async def _timed(client: httpx.AsyncClient, tally: Tally, kind: str, method: str, path: str,
                 **kwargs: Any) -> httpx.Response:
    t0 = time.perf_counter()
    try:
        response = await client.request(method, path, **kwargs)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        # The server closed an idle keep-alive connection just as it was reused (uvicorn's
        # keep-alive is 5 s): a browser sends the request again on a new one; so do we.
        tally.keepalive_retries += 1
        response = await client.request(method, path, **kwargs)
    tally.record(kind, time.perf_counter() - t0, response.status_code)
    return response


async def _one_visit(client: httpx.AsyncClient, tally: Tally, end: float, poll: float) -> None:
    page = await _timed(client, tally, "landing", "GET", "/")
    found = _CSRF.search(page.text)
    if page.status_code != 200 or found is None:
        await asyncio.sleep(_retry_after(page))
        return
    posted = await _timed(client, tally, "proceed", "POST", "/checks", data={
        "csrf": found.group(1), "profile": "custom", "ports": PORTS, "consent": "yes"})
    if posted.status_code == 429:
        await asyncio.sleep(min(_retry_after(posted), 5.0) * random.uniform(0.5, 1.0))
        return
    if posted.status_code != 303:
        return
    tally.started += 1
    location = posted.headers["location"]
    while time.monotonic() < end:
        await asyncio.sleep(poll)
        status = await _timed(client, tally, "status", "GET", f"{location}/status")
        if status.status_code != 200:
            continue
        state = status.json().get("status")
        if state in ("done", "failed"):
            if state == "done":
                tally.seen_done += 1
            else:
                tally.seen_failed += 1
            await _timed(client, tally, "result", "GET", location)
            return


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.5, float(response.headers.get("retry-after", "2")))
    except ValueError:
        return 2.0


# -- the servers --------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


def _spawn(name: str, args: list[str], work: Path, env: dict[str, str]) -> Proc:
    log = work / f"{name}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "mamori", *args], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                 start_new_session=True)
    return Proc(name, popen, log)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def nginx_on_visitors(work: Path, visitors: int) -> Iterator[None]:
    """One real nginx answering on port 8080 of every visitor address."""
    from daemons import wait_tcp

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    temp = work / "nginx-temp"
    temp.mkdir()
    listens = "".join(f"    listen {VISITOR_NET}{n}:{TARGET_PORT};\n"
                      for n in range(1, visitors + 1))
    cfg = work / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {work}/nginx.pid;\n"
        f"error_log {work}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 1024; }\nhttp {\n  access_log off;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n  server {{\n{listens}"
        '    location / { return 200 "hello\\n"; }\n  }\n}\n')
    proc = subprocess.Popen([nginx, "-e", str(work / "nginx-error.log"), "-p", str(work),
                             "-c", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_tcp(f"{VISITOR_NET}{visitors}", TARGET_PORT, proc=proc)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _settings_file(work: Path, name: str, port: int, db_url: str, backend: str,
                   args: argparse.Namespace) -> Path:
    path = work / f"{name}.toml"
    path.write_text(f"""exclude_ports = "2024"
[serve]
bind = "{WEB_HOST}"
port = {port}
public_url = "http://{WEB_HOST}:{port}"
secret_key = "{SECRET}"
db = "{db_url}"
backend = "{backend}"
broker_url = "redis://{BROKER_HOST}:6379/{MODES.index(name)}"
allow_loopback = true
excluded_ports = "2024"
workers = {args.concurrency}
max_active_checks = {args.max_active}
checks_per_hour = {args.checks_per_hour}
probe_timeout = 1.0
""")
    return path


def _wait_ready(url: str, workers: list[Proc], web: Proc, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in (web, *workers):
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited: {p.log.read_text()[-2000:]}")
        try:
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.156.250")) as c:
                healthy = c.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy and all(" ready." in w.log.read_text(errors="replace") for w in workers):
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.156.250")) as c:
                c.get(f"{url}/", timeout=30)  # first page: tables and templates load once
            return
        time.sleep(0.2)
    raise RuntimeError("servers did not come up")


def _completed(db_url: str, since: datetime, until: datetime) -> tuple[int, int, float | None]:
    """(done, failed, median seconds) of checks that finished in [since, until]."""
    from sqlalchemy import select

    from mamori.store import Store
    from mamori.store.models import WebCheckRow

    with Store.open(db_url) as store, store.engine.connect() as conn:
        rows = conn.execute(select(WebCheckRow.status, WebCheckRow.started_at,
                                   WebCheckRow.finished_at)
                            .where(WebCheckRow.finished_at >= since,
                                   WebCheckRow.finished_at <= until)).all()
    done = [r for r in rows if r.status == "done"]
    spans = [(r.finished_at - r.started_at).total_seconds() for r in done if r.started_at]
    return len(done), len(rows) - len(done), statistics.median(spans) if spans else None


def run_mode(name: str, work: Path, args: argparse.Namespace,
             pg_base: str | None) -> dict[str, Any]:
    from store_fixtures import create_pg_database

    mode_dir = work / name
    mode_dir.mkdir()
    if name == "embedded":
        db_url, backend, n_workers = str(mode_dir / "serve.db"), "embedded", 0
    else:
        assert pg_base is not None
        db_url = create_pg_database(pg_base, f"bench_{name}", PG_HOST, PG_PORT)
        backend, n_workers = "celery", int(name[-1])
    port = _free_port(WEB_HOST)
    settings = _settings_file(mode_dir, name, port, db_url, backend, args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env["MAMORI_SETTINGS"] = str(settings)
    url = f"http://{WEB_HOST}:{port}"
    web = _spawn("web", ["serve"], mode_dir, env)
    workers = [_spawn(f"worker{i}", ["worker", "--name", f"bench{i}@{name}"], mode_dir, env)
               for i in range(1, n_workers + 1)]
    try:
        _wait_ready(url, workers, web)
        tally = Tally()
        since = datetime.now(UTC)
        end = time.monotonic() + args.duration

        async def crowd() -> None:
            await asyncio.gather(*(visitor(n, url, tally, end, args.poll)
                                   for n in range(1, args.visitors + 1)))

        asyncio.run(crowd())
        until = datetime.now(UTC)
        done, failed, median = _completed(db_url, since, until)
    finally:
        for p in (web, *workers):
            p.popen.send_signal(signal.SIGTERM if p is web else signal.SIGQUIT)
        for p in (web, *workers):
            p.stop()
    minutes = (until - since).total_seconds() / 60
    return {"mode": name, "tally": tally, "done": done, "failed": failed,
            "per_minute": done / minutes, "median_check": median}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    t: Tally = result["tally"]
    pages = [v for k in ("landing", "proceed", "result") for v in t.latency[k]]
    per = "process" if result["mode"] == "embedded" else "worker"
    print(f"\n== {result['mode']} ({args.visitors} visitors, {args.duration:.0f} s, "
          f"{args.concurrency} checks at a time per {per})")
    print(f"  {'request':<10} {'count':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for kind in ("landing", "proceed", "status", "result"):
        values = t.latency[kind]
        print(f"  {kind:<10} {len(values):>7} {1000 * _pct(values, 0.5):>8.0f} "
              f"{1000 * _pct(values, 0.95):>8.0f}")
    print(f"  {'pages':<10} {len(pages):>7} {1000 * _pct(pages, 0.5):>8.0f} "
          f"{1000 * _pct(pages, 0.95):>8.0f}")
    print(f"  checks started {t.started}, seen done {t.seen_done}, seen failed {t.seen_failed}")
    median = result["median_check"]
    print(f"  checks completed: {result['done']} done, {result['failed']} failed in the store; "
          f"{result['per_minute']:.1f} per minute"
          + (f"; median check {median:.2f} s" if median is not None else ""))
    print(f"  429 refusals (expected): {dict(t.refusals) or 0}")
    print(f"  errors: {dict(t.errors) or 0}; requests sent again after a keep-alive close: "
          f"{t.keepalive_retries}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per mode")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--concurrency", type=int, default=2,
                        help="checks at a time: the embedded pool, and each worker")
    parser.add_argument("--max-active", type=int, default=16,
                        help="the global cap on queued + running checks")
    parser.add_argument("--checks-per-hour", type=int, default=60, help="per address")
    parser.add_argument("--poll", type=float, default=1.0, help="status poll interval")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in MODES for m in modes) or not 1 <= args.visitors <= 200:
        parser.error(f"modes are {', '.join(MODES)}; 1 to 200 visitors")
    from daemons import pg_bindir, start_redis
    from store_fixtures import running_postgres

    work = Path(tempfile.mkdtemp(prefix="mamori-bench-serve-"))
    results = []
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(nginx_on_visitors(work, args.visitors))
            pg_base = None
            if any(m.startswith("celery") for m in modes):
                (work / "redis").mkdir()
                stack.enter_context(start_redis(work / "redis", BROKER_HOST, 6379))
                bindir = pg_bindir()
                if bindir is None:
                    parser.error("PostgreSQL is not installed (scripts/install-test-deps)")
                pg_base = stack.enter_context(running_postgres(PG_HOST, PG_PORT,
                                                               max_connections=100))
            for mode in modes:
                print(f"running {mode} ...", file=sys.stderr, flush=True)
                result = run_mode(mode, work, args, pg_base)
                report(result, args)
                results.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps([{
            "mode": r["mode"], "done": r["done"], "failed": r["failed"],
            "per_minute": round(r["per_minute"], 1),
            "pages_p50_ms": round(1000 * _pct([v for k in ("landing", "proceed", "result")
                                               for v in r["tally"].latency[k]], 0.5), 1),
            "pages_p95_ms": round(1000 * _pct([v for k in ("landing", "proceed", "result")
                                               for v in r["tally"].latency[k]], 0.95), 1),
            "refusals": dict(r["tally"].refusals), "errors": dict(r["tally"].errors),
            "keepalive_retries": r["tally"].keepalive_retries,
        } for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
