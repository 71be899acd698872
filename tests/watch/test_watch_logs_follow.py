"""The log follower with real file operations: start position, read-once, rotation by rename
and by copytruncate, overlong lines, binary garbage, missing files, idle CPU; and the
journalctl plumbing against a fake ``journalctl`` script (the real one is exercised in
test_watch_logs_daemons.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from mamori.model.watch import Event, EventType
from mamori.watch.logs import FollowLimits, LineSplitter, LogFollower, LogSpec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "watch"
FAST = FollowLimits(poll_interval=0.02, rotate_grace=0.5, restart_delay=0.05)


def sync(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


async def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


def line(n: int, path: str = "/p") -> bytes:
    return (f'127.0.130.{n % 200 + 1} - - [03/Mar/2024:10:00:00 +0000] "GET {path}/{n} HTTP/1.1" '
            f'200 1 "-" "t"\n').encode()


class Writer:
    """A daemon-like writer: O_APPEND, reopened by name only when told (like nginx USR1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def reopen(self) -> None:
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        os.close(self.fd)


def paths(events: list[Event]) -> list[str]:
    return [e.fields["path"] for e in events if e.type is EventType.HTTP_REQUEST]


@sync
async def test_follow_starts_at_end_unless_told(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(line(1, "/old") + line(2, "/old"))
    tail: list[Event] = []
    full: list[Event] = []
    a = LogFollower(LogSpec("access", str(log)), tail.append, limits=FAST)
    b = LogFollower(LogSpec("access", str(log), from_start=True), full.append, limits=FAST)
    await a.start()
    await b.start()
    w = Writer(log)
    try:
        w.write(line(3, "/new"))
        w.write(line(4, "/new")[:20])  # half a line: not emitted until it is complete
        await wait_for(lambda: len(tail) == 1 and len(full) == 3)
        await asyncio.sleep(0.1)
        assert len(tail) == 1
        w.write(line(4, "/new")[20:])
        await wait_for(lambda: len(tail) == 2)
    finally:
        w.close()
        await a.close()
        await b.close()
    assert paths(tail) == ["/new/3", "/new/4"]
    assert paths(full) == ["/old/1", "/old/2", "/new/3", "/new/4"]


@sync
async def test_read_once_reads_to_the_end_including_a_last_line_without_newline(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(i) for i in range(2000)) + line(2000).rstrip(b"\n"))
    events: list[Event] = []
    f = LogFollower(LogSpec("access", str(log), follow=False), events.append)
    await f.start()
    await asyncio.wait_for(f.wait(), 20)
    assert f.done and len(events) == 2001 and paths(events)[-1] == "/p/2000"
    assert f.stats.lines == 2001 and f.stats.bytes == log.stat().st_size


@sync
async def test_rename_and_create_rotation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    w = Writer(log)
    events: list[Event] = []
    f = LogFollower(LogSpec("access", str(log)), events.append, limits=FAST)
    await f.start()
    try:
        for i in range(5):
            w.write(line(i))
        await wait_for(lambda: len(events) == 5)
        log.rename(tmp_path / "access.log.1")
        for i in range(5, 8):  # the writer has not reopened yet: still the old file
            w.write(line(i))
        await asyncio.sleep(0.1)
        w.reopen()  # creates the new access.log
        for i in range(8, 12):
            w.write(line(i))
        await asyncio.sleep(0.05)
        for i in range(12, 14):
            w.write(line(i))
        await wait_for(lambda: len(events) == 14)
        await asyncio.sleep(0.7)  # past the grace period: nothing more, nothing twice
    finally:
        w.close()
        await f.close()
    assert sorted(paths(events)) == sorted(f"/p/{i}" for i in range(14))
    assert f.stats.rotations == 1


@sync
async def test_copytruncate_rotation(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    w = Writer(log)
    events: list[Event] = []
    f = LogFollower(LogSpec("access", str(log)), events.append, limits=FAST)
    await f.start()
    try:
        for i in range(6):
            w.write(line(i))
        await wait_for(lambda: len(events) == 6)
        shutil.copyfile(log, tmp_path / "access.log.1")  # what logrotate's copytruncate does
        os.truncate(log, 0)
        await asyncio.sleep(0.1)
        for i in range(6, 9):  # O_APPEND: written at the new, short end
            w.write(line(i))
        await wait_for(lambda: len(events) == 9)
        await asyncio.sleep(0.2)
    finally:
        w.close()
        await f.close()
    assert paths(events) == [f"/p/{i}" for i in range(9)]
    assert f.stats.truncations == 1 and f.stats.rotations == 0


@sync
async def test_overlong_lines_are_cut_counted_and_reported_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    events: list[Event] = []
    limits = FollowLimits(poll_interval=0.02, max_line=4096)
    f = LogFollower(LogSpec("access", str(log)), events.append, limits=limits)
    await f.start()
    w = Writer(log)
    try:
        huge = line(1, "/" + "A" * 3_000_000)
        for start in range(0, len(huge), 100_000):  # a trickle of one 3 MB line
            w.write(huge[start:start + 100_000])
            await asyncio.sleep(0)
        w.write(line(2, "/x" * 3000))  # 6 KB: cut as well
        w.write(line(3))
        await wait_for(lambda: len(paths(events)) >= 1 and "/p/3" in paths(events))
    finally:
        w.close()
        await f.close()
    limits_seen = [e for e in events if e.type is EventType.SENSOR_LIMIT]
    assert len(limits_seen) == 1 and limits_seen[0].fields["limit"] == "line_length"
    assert f.stats.truncated == 2
    # the cut lines do not parse (their end is missing); the next line is intact
    assert paths(events) == ["/p/3"]


def test_line_splitter_memory_is_bounded() -> None:
    sp = LineSplitter(1000)
    out = []
    for _ in range(200):  # 10 MB without a newline
        out += sp.feed(b"x" * 50_000)
        assert len(sp._buf) <= 1000
    out += sp.feed(b"tail\nnext")
    assert out == [(b"x" * 1000, True)]
    assert sp.flush() == (b"next", False)
    assert sp.feed(b"a\r\nb\n\n") == [(b"a\r", False), (b"b", False), (b"", False)]


@sync
async def test_binary_garbage_is_tolerated(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    garbage = bytes(range(256)) * 50 + b"\n\xff\xfe\x00sshd[1]: \x80\x81\n"
    log.write_bytes(garbage + b"Failed password for r\xc3\xb6ot from 127.0.130.7 port 5 ssh2\n"
                    + os.urandom(20_000) + b"\n")
    events: list[Event] = []
    f = LogFollower(LogSpec("auth", str(log), follow=False), events.append)
    await f.start()
    await asyncio.wait_for(f.wait(), 10)
    failures = [e for e in events if e.type is EventType.AUTH_FAILURE]
    assert [(e.src, e.fields["username"]) for e in failures] == [("127.0.130.7", "röot")]
    assert f.stats.ignored >= 2 and f.stats.errors == 0


@sync
async def test_missing_file_is_waited_for_when_following(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    events: list[Event] = []
    f = LogFollower(LogSpec("access", str(log)), events.append, limits=FAST)
    await f.start()
    try:
        await wait_for(lambda: len(events) == 1)
        assert events[0].type is EventType.SENSOR_ERROR
        assert "does not exist" in events[0].fields["reason"]
        log.write_bytes(line(1))  # created later: read from its start
        await wait_for(lambda: len(events) == 2)
    finally:
        await f.close()
    assert paths(events) == ["/p/1"]
    once: list[Event] = []
    g = LogFollower(LogSpec("access", str(tmp_path / "nope.log"), follow=False), once.append)
    await g.start()
    await asyncio.wait_for(g.wait(), 5)
    assert [e.type for e in once] == [EventType.SENSOR_ERROR]


@sync
async def test_auth_lines_for_one_attempt_count_once(tmp_path: Path) -> None:
    events: list[Event] = []
    f = LogFollower(LogSpec("auth", str(FIXTURES / "auth_debian.log"), follow=False),
                    events.append, year=2024)
    await f.start()
    await asyncio.wait_for(f.wait(), 5)
    failures = [(e.src, e.fields["stage"]) for e in events if e.type is EventType.AUTH_FAILURE]
    assert failures == [
        ("203.0.113.45", "pam"),  # before sshd's own "Failed" lines are seen: kept
        ("203.0.113.45", "failed"), ("203.0.113.45", "failed"), ("203.0.113.45", "failed"),
        ("203.0.113.45", "failed"),
        ("198.51.100.77", "closed"),  # a key-trying bot: the only trace of the attempt
        ("198.51.100.79", "closed"),
        ("203.0.113.46", "failed"), ("203.0.113.47", "failed"), ("2001:db8::7", "failed"),
    ]
    assert f.stats.merged == 4  # max-attempts, PAM x2 after "Failed", closed after "Failed"


@sync
async def test_idle_follower_uses_little_cpu(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.touch()
    f = LogFollower(LogSpec("access", str(log)), lambda e: None)  # default 0.25 s polling
    await f.start()
    start = time.process_time()
    await asyncio.sleep(1.0)
    used = time.process_time() - start
    await f.close()
    assert used < 0.05, used


# --- journalctl plumbing against a fake journalctl ------------------------------------------

FAKE = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_JOURNAL_ARGS"], "a") as out:
    out.write(json.dumps(args) + "\n")
records = [json.loads(l) for l in open(os.environ["FAKE_JOURNAL_DATA"])]
if "--after-cursor" in args:
    cursor = args[args.index("--after-cursor") + 1]
    seen = [r["__CURSOR"] for r in records]
    records = records[seen.index(cursor) + 1:] if cursor in seen else []
for r in records:
    sys.stdout.write(json.dumps(r) + "\n")
sys.stdout.write("{{" + "x" * 200000 + "\n")  # one overlong record
sys.stdout.flush()
sys.stderr.write("fake journalctl: end of data\n")
sys.exit(int(os.environ.get("FAKE_JOURNAL_RC", "0")))
'''


def _fake_journalctl(tmp_path: Path) -> tuple[Path, Path, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "journalctl"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    data = tmp_path / "records.json"
    args = tmp_path / "args.jsonl"
    return script, data, args


@sync
async def test_journalctl_restarts_after_the_last_cursor(tmp_path: Path, monkeypatch: Any) -> None:
    script, data, args = _fake_journalctl(tmp_path)
    records = [json.loads(x) for x in (FIXTURES / "journal_sshd.json").read_text().splitlines()]
    data.write_text("\n".join(json.dumps(r) for r in records[:3]) + "\n")
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOURNAL_DATA", str(data))
    monkeypatch.setenv("FAKE_JOURNAL_ARGS", str(args))
    events: list[Event] = []
    f = LogFollower(LogSpec("journald-sshd"), events.append, limits=FAST)
    await f.start()
    try:
        await wait_for(lambda: len([e for e in events if e.type is EventType.SENSOR_ERROR]) >= 1)
        # new records appear; the restarted journalctl must continue after the last cursor
        data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
        await wait_for(lambda: sum(e.type is EventType.AUTH_SUCCESS for e in events) >= 1)
    finally:
        await f.close()
    calls = [json.loads(x) for x in args.read_text().splitlines()]
    assert calls[0][:4] == ["-o", "json", "--no-pager", calls[0][3]]
    assert "-f" in calls[0] and calls[0][calls[0].index("-n") + 1] == "0"
    assert "SYSLOG_IDENTIFIER=sshd" in calls[0]
    assert calls[1][calls[1].index("--after-cursor") + 1] == records[2]["__CURSOR"]
    auth = [e for e in events if e.type is not EventType.SENSOR_ERROR
            and e.type is not EventType.SENSOR_LIMIT]
    usernames = [e.fields.get("username") for e in auth]
    assert usernames[:3] == ["admin", "", "admin"]  # first run: records 0-2
    # second run: records 3.. without repeats (3, "Connection closed" for the connection that
    # already failed, is merged into that failure)
    assert usernames[3:] == ["root", "alice", "\ufffd\ufffdadm"]
    assert f.stats.merged == 1
    errors = [e for e in events if e.type is EventType.SENSOR_ERROR]
    assert "journalctl exited with 0: fake journalctl: end of data" in errors[0].fields["reason"]
    assert f.stats.restarts >= 1 and f.stats.truncated >= 1  # the overlong record was cut


@sync
async def test_journalctl_read_once_failure_and_missing_binary(tmp_path: Path,
                                                                monkeypatch: Any) -> None:
    script, data, args = _fake_journalctl(tmp_path)
    data.write_text("")
    monkeypatch.setenv("FAKE_JOURNAL_DATA", str(data))
    monkeypatch.setenv("FAKE_JOURNAL_ARGS", str(args))
    monkeypatch.setenv("FAKE_JOURNAL_RC", "1")
    events: list[Event] = []
    f = LogFollower(LogSpec("journald-kernel", str(tmp_path), follow=False), events.append,
                    journalctl=str(script))
    await f.start()
    await asyncio.wait_for(f.wait(), 10)
    call = json.loads(args.read_text().splitlines()[0])
    assert "-f" not in call and call[call.index("--directory") + 1] == str(tmp_path)
    assert "_TRANSPORT=kernel" in call
    assert [e.type for e in events if e.type is EventType.SENSOR_ERROR] == [
        EventType.SENSOR_ERROR]
    missing: list[Event] = []
    g = LogFollower(LogSpec("journald-sshd"), missing.append,
                    journalctl=str(tmp_path / "no-such-journalctl"))
    await g.start()
    await asyncio.wait_for(g.wait(), 5)
    assert len(missing) == 1 and "cannot run" in missing[0].fields["reason"]


@sync
async def test_a_path_that_is_not_a_file_is_reported_once(tmp_path: Path) -> None:
    events: list[Event] = []
    f = LogFollower(LogSpec("auth", str(tmp_path)), events.append, limits=FAST)
    await f.start()
    await asyncio.sleep(0.3)  # ~15 polls
    await f.close()
    assert [e.fields["reason"] for e in events] == [f"{tmp_path} is not a regular file; "
                                                   "waiting for it"]
    once: list[Event] = []
    g = LogFollower(LogSpec("auth", str(tmp_path), follow=False), once.append)
    await g.start()
    await asyncio.wait_for(g.wait(), 5)
    assert [e.fields["reason"] for e in once] == [f"{tmp_path} is not a regular file"]
