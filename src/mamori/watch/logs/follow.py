"""Reading logs: files followed live (rotation-safe) or read once, and journald via journalctl.

All I/O of the log source lives here; parsing is the pure modules' job. A follower runs as one
asyncio task and hands every event to ``emit`` on the loop thread.

Files are polled (no inotify): when there is nothing new, the follower checks every
``poll_interval`` whether the file was truncated in place (copytruncate: the size fell below
the read position → read again from the start) or replaced (rename + create: the name now
points at another inode → the old file is read to its end, and still read for
``rotate_grace`` seconds in case the writer has not reopened yet, while the new one is read
from its start). Lines are split with a hard length bound: an overlong line is cut at
``max_line`` bytes, the rest of it skipped, and the cut counted and reported (a
``sensor.limit`` event, at most once per ``note_interval``). Bytes that are not UTF-8 are
replaced, never fatal.

journald: ``journalctl -o json`` (with ``-f`` when following) filtered to sshd or kernel
records, restarted with a growing delay (after the last cursor seen) if it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from mamori.model.watch import Event, EventType, excerpt
from mamori.watch.logs import journald
from mamori.watch.logs.parse import line_parser
from mamori.watch.logs.spec import AUTH_KINDS, JOURNALD_KINDS, LogSpec

__all__ = ["FollowLimits", "FollowStats", "LineSplitter", "LogFollower"]

log = logging.getLogger(__name__)

JOURNAL_MATCHES: dict[str, tuple[str, ...]] = {
    "journald-sshd": (
        "SYSLOG_IDENTIFIER=sshd", "SYSLOG_IDENTIFIER=sshd-session", "SYSLOG_IDENTIFIER=sshd-auth"
    ),
    "journald-kernel": ("_TRANSPORT=kernel",),
}
JOURNAL_FIELDS = "MESSAGE,SYSLOG_IDENTIFIER,SYSLOG_PID,_PID,_COMM,_TRANSPORT"


@dataclass(frozen=True, slots=True)
class FollowLimits:
    max_line: int = 16 * 1024  # bytes of one log line kept (the rest is cut and counted)
    max_record: int = 64 * 1024  # bytes of one journalctl JSON line
    chunk: int = 64 * 1024  # bytes per read
    round_bytes: int = 1 << 20  # bytes read from one file before other work gets a turn
    poll_interval: float = 0.25  # seconds between checks of an idle file
    rotate_grace: float = 5.0  # seconds a rotated-away file is still read
    note_interval: float = 60.0  # seconds between two "lines were cut" events
    restart_delay: float = 1.0  # first delay before journalctl is started again
    restart_max: float = 60.0
    merge_memory: int = 4096  # connections remembered to merge duplicate auth lines

    def __post_init__(self) -> None:
        for name in ("max_line", "max_record", "chunk", "round_bytes", "merge_memory"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.poll_interval > 0:
            raise ValueError("poll_interval must be more than 0")


@dataclass(slots=True)
class FollowStats:
    lines: int = 0
    bytes: int = 0
    events: int = 0
    ignored: int = 0  # lines that are not about anything the watcher records
    truncated: int = 0  # overlong lines cut at max_line
    merged: int = 0  # auth lines that repeat a failure already reported
    rotations: int = 0  # the file was replaced (rename + create)
    truncations: int = 0  # the file was truncated in place (copytruncate)
    restarts: int = 0  # journalctl started again after it exited
    errors: int = 0
    last_error: str = ""


class LineSplitter:
    """Bytes in, complete lines out, never holding more than ``max_line`` bytes.

    An overlong line yields its first ``max_line`` bytes once (flagged as truncated); the
    rest of it, up to the next newline, is dropped.
    """

    __slots__ = ("_buf", "_skipping", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = b""
        self._skipping = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        if self._buf:
            data = self._buf + data
            self._buf = b""
        limit = self.max_line
        start = 0
        find = data.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            elif nl - start > limit:
                out.append((data[start : start + limit], True))
            else:
                out.append((data[start:nl], False))
            start = nl + 1
        if not self._skipping:
            rest = data[start:]
            if len(rest) > limit:
                out.append((rest[:limit], True))
                self._skipping = True
            else:
                self._buf = rest
        return out

    def flush(self) -> tuple[bytes, bool] | None:
        """The last line when it has no newline (end of a file read once, or rotated)."""
        rest, self._buf = self._buf, b""
        self._skipping = False
        return (rest, False) if rest else None

    def reset(self) -> None:
        self._buf = b""
        self._skipping = False


class _AuthMerge:
    """sshd reports one failed attempt in several lines: a PAM failure, then "Failed
    password"; and after the attempts, "Connection closed by authenticating user" or
    "maximum authentication attempts exceeded". Only the "Failed ..." lines count attempts;
    the others are kept only when nothing else reported that connection (a bot trying keys
    leaves only "Connection closed by authenticating user"), and PAM lines only until the log
    shows that sshd reports its own failures. Memory: ``memory`` connections."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.seen: OrderedDict[tuple[str | None, str], None] = OrderedDict()
        self.sshd_reports_failures = False

    def keep(self, event: Event) -> bool:
        if event.type is not EventType.AUTH_FAILURE:
            return True
        stage = event.fields.get("stage")
        conn = event.fields.get("pid") or (
            str(event.src_port) if event.src_port is not None else ""
        )
        key = (event.src, conn)
        seen = key in self.seen
        self._remember(key)
        if stage == "failed":
            self.sshd_reports_failures = True
            return True
        if stage == "pam":
            return not self.sshd_reports_failures
        # closed / max-attempts: a summary of the connection
        return not seen

    def _remember(self, key: tuple[str | None, str]) -> None:
        self.seen[key] = None
        self.seen.move_to_end(key)
        while len(self.seen) > self.memory:
            self.seen.popitem(last=False)


@dataclass(slots=True)
class _OpenFile:
    fd: int
    ident: tuple[int, int]
    splitter: LineSplitter
    pos: int = 0


@dataclass(slots=True)
class _Retired:
    handle: _OpenFile
    until: float


class LogFollower:
    """One log source: ``await start()``, then events flow to ``emit``; ``await wait()``
    returns when a read-once source is finished; ``await close()`` stops it."""

    def __init__(
        self,
        spec: LogSpec,
        emit: Callable[[Event], None],
        *,
        limits: FollowLimits | None = None,
        year: int | None = None,
        journalctl: str | Sequence[str] = "journalctl",
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.limits = limits or FollowLimits()
        self.year = year
        self.journalctl = [journalctl] if isinstance(journalctl, str) else list(journalctl)
        self.stats = FollowStats()
        self.source = spec.source
        self._parse = line_parser(spec.kind, source=self.source, year=year)
        self._merge = _AuthMerge(self.limits.merge_memory) if spec.kind in AUTH_KINDS else None
        self._task: asyncio.Task[None] | None = None
        self._last_note = -1e18
        self._noted_truncated = 0
        self._cursor: str | None = None
        self._reported: dict[str, float] = {}

    # --- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._guarded(), name=f"log:{self.source}"
            )
            await asyncio.sleep(0)  # let the first open happen before start() returns

    async def wait(self) -> None:
        """Until the source ends (read-once sources end at end of input)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _guarded(self) -> None:
        try:
            if self.spec.kind in JOURNALD_KINDS:
                await self._run_journal()
            else:
                await self._run_file()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # errors are data: the sensor keeps running
            log.exception("log follower %s failed", self.source)
            self._error(f"log reader stopped: {type(exc).__name__}: {exc}")

    # --- events -------------------------------------------------------------------------

    def _send(self, event: Event) -> None:
        try:
            self.emit(event)
        except Exception:
            self.stats.errors += 1
            log.exception("emit failed for %s", self.source)

    def _error(self, reason: str) -> None:
        """Count a problem and report it; the same reason at most once per note_interval
        (a log that keeps failing must not flood the owner)."""
        self.stats.errors += 1
        self.stats.last_error = reason
        now = time.monotonic()
        last = self._reported.get(reason)
        if last is not None and now - last < self.limits.note_interval:
            return
        if len(self._reported) > 64:
            self._reported.clear()
        self._reported[reason] = now
        self._send(
            Event(
                time=datetime.now(UTC),
                type=EventType.SENSOR_ERROR,
                source=self.source,
                fields=MappingProxyType({"reason": reason}),
                excerpt=excerpt(reason),
            )
        )

    def _note_truncated(self) -> None:
        now = time.monotonic()
        if now - self._last_note < self.limits.note_interval:
            return
        self._last_note = now
        cut = self.stats.truncated - self._noted_truncated
        self._noted_truncated = self.stats.truncated
        limit = self.limits.max_record if self.spec.kind in JOURNALD_KINDS else (
            self.limits.max_line
        )
        reason = f"{cut} overlong line(s) cut at {limit} bytes"
        self._send(
            Event(
                time=datetime.now(UTC),
                type=EventType.SENSOR_LIMIT,
                source=self.source,
                fields=MappingProxyType(
                    {"reason": reason, "limit": "line_length", "count": str(cut),
                     "total": str(self.stats.truncated)}
                ),
                excerpt=reason,
            )
        )

    def _handle(self, raw: bytes, truncated: bool) -> None:
        stats = self.stats
        stats.lines += 1
        if truncated:
            stats.truncated += 1
            self._note_truncated()
        text = raw.decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        if not text:
            stats.ignored += 1
            return
        if self.spec.kind in JOURNALD_KINDS:
            record = journald.decode_record(text)
            event = None
            if record is not None:
                cursor = record.get("__CURSOR")
                if isinstance(cursor, str):
                    self._cursor = cursor
                event = journald.parse_record(record, self.spec.kind, source=self.source)
        else:
            event = self._parse(text)
        if event is None:
            stats.ignored += 1
            return
        if self._merge is not None and not self._merge.keep(event):
            stats.merged += 1
            return
        stats.events += 1
        self._send(event)

    # --- files --------------------------------------------------------------------------

    def _open(self, path: str) -> tuple[_OpenFile | None, str]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, f"{path} does not exist"
        except OSError as exc:
            return None, f"cannot open {path}: {exc.strerror or exc}"
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return None, f"{path} is not a regular file"
        return _OpenFile(fd, (st.st_dev, st.st_ino), LineSplitter(self.limits.max_line)), ""

    async def _drain(self, handle: _OpenFile) -> int:
        total = 0
        limits = self.limits
        while total < limits.round_bytes:
            try:
                data = os.read(handle.fd, limits.chunk)
            except BlockingIOError:
                break
            except OSError as exc:
                self._error(f"reading {self.spec.path}: {exc.strerror or exc}")
                await asyncio.sleep(self.limits.poll_interval)
                break
            if not data:
                break
            handle.pos += len(data)
            total += len(data)
            self.stats.bytes += len(data)
            for line, cut in handle.splitter.feed(data):
                self._handle(line, cut)
            await asyncio.sleep(0)
        return total

    def _finish(self, handle: _OpenFile, *, flush: bool = True) -> None:
        """Close a file; ``flush`` hands on its last line even without a newline (end of a
        read-once file or of a rotated one; not when stopping mid-write)."""
        last = handle.splitter.flush()
        if flush and last is not None:
            self._handle(*last)
        with contextlib.suppress(OSError):
            os.close(handle.fd)

    async def _run_file(self) -> None:
        path = self.spec.path
        assert path is not None
        limits = self.limits
        follow = self.spec.follow
        current: _OpenFile | None = None
        retired: list[_Retired] = []
        first_open = True
        waiting_noted = False
        try:
            while True:
                if current is None:
                    current, problem = self._open(path)
                    if current is None:
                        if not follow:
                            self._error(problem)
                            return
                        if not waiting_noted:
                            self._error(f"{problem}; waiting for it")
                            waiting_noted = True
                        first_open = False  # a file that appears later is read from its start
                        await self._idle_retired(retired)
                        await asyncio.sleep(limits.poll_interval)
                        continue
                    waiting_noted = False
                    if first_open and follow and not self.spec.from_start:
                        current.pos = os.lseek(current.fd, 0, os.SEEK_END)
                    first_open = False
                got = await self._drain(current)
                got += await self._idle_retired(retired)
                if got:
                    continue
                if not follow:
                    return
                change = self._changed(current, path)
                if change == "truncated":  # copytruncate: start again from the top
                    self.stats.truncations += 1
                    current.pos = os.lseek(current.fd, 0, os.SEEK_SET)
                    current.splitter.reset()
                    continue
                if change == "replaced":
                    # rename + create: the old file is drained (just now, and for a grace
                    # period while the writer still holds it), the new one read from 0
                    self.stats.rotations += 1
                    retired.append(_Retired(current, time.monotonic() + limits.rotate_grace))
                    current = None
                    continue
                await asyncio.sleep(limits.poll_interval)
        finally:
            for old in retired:
                self._finish(old.handle, flush=False)
            if current is not None:
                self._finish(current, flush=not follow)

    @staticmethod
    def _changed(current: _OpenFile, path: str) -> str:
        """``truncated`` (shorter than what was read), ``replaced`` (the name points at
        another file now) or ``same``. A name that vanished is ``same``: keep reading."""
        if os.fstat(current.fd).st_size < current.pos:
            return "truncated"
        try:
            named = os.stat(path)
        except OSError:
            return "same"
        return "replaced" if (named.st_dev, named.st_ino) != current.ident else "same"

    async def _idle_retired(self, retired: list[_Retired]) -> int:
        got = 0
        now = time.monotonic()
        for old in list(retired):
            got += await self._drain(old.handle)
            if now >= old.until:
                retired.remove(old)
                self._finish(old.handle)
        return got

    # --- journald -----------------------------------------------------------------------

    def journal_argv(self) -> list[str]:
        argv = [*self.journalctl, "-o", "json", "--no-pager", f"--output-fields={JOURNAL_FIELDS}"]
        path = self.spec.path
        if path is not None:
            argv += ["--directory" if os.path.isdir(path) else "--file", path]
        if self.spec.follow:
            argv.append("-f")
            if self._cursor is not None:
                argv += ["--after-cursor", self._cursor]
            elif self.spec.from_start:
                argv.append("--no-tail")
            else:
                argv += ["-n", "0"]
        elif self._cursor is not None:
            argv += ["--after-cursor", self._cursor]
        argv += JOURNAL_MATCHES[self.spec.kind]
        return argv

    async def _run_journal(self) -> None:
        limits = self.limits
        delay = limits.restart_delay
        while True:
            argv = self.journal_argv()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as exc:
                self._error(f"cannot run {argv[0]}: {exc.strerror or exc}")
                return
            got_any = False
            assert proc.stdout is not None and proc.stderr is not None
            errors = asyncio.get_running_loop().create_task(_tail(proc.stderr, 2048))
            try:
                splitter = LineSplitter(limits.max_record)
                while data := await proc.stdout.read(limits.chunk):
                    got_any = True
                    self.stats.bytes += len(data)
                    for line, cut in splitter.feed(data):
                        self._handle(line, cut)
                last = splitter.flush()
                if last is not None:
                    self._handle(*last)
                rc = await proc.wait()
                stderr = (await errors).decode("utf-8", "replace").strip()
            finally:
                await _stop(proc)
                errors.cancel()
            why = f"journalctl exited with {rc}"
            if stderr:
                why += f": {stderr.splitlines()[-1]}"
            if not self.spec.follow:
                if rc != 0:
                    self._error(why)
                return
            self.stats.restarts += 1
            delay = limits.restart_delay if got_any else min(delay * 2, limits.restart_max)
            self._error(f"{why}; starting it again in {delay:g}s")
            await asyncio.sleep(delay)


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Read a stream to its end keeping only the last ``keep`` bytes."""
    tail = b""
    while data := await stream.read(4096):
        tail = (tail + data)[-keep:]
    return tail


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 2.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
