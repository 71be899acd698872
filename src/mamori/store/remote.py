"""A ``Store`` in a child interpreter, for ``mamori scan``/``check``: SQLAlchemy off the sweep.

Importing SQLAlchemy and opening the store costs about 0.2 s of CPU. In a thread of the scan
process it competes with the sweep for the GIL, so the command took that much longer than the
sweep; in a child process it runs on another core while the sweep goes on, and the scan
process never imports SQLAlchemy at all.

``prestart()`` (the console script, before Typer is even imported, for ``scan`` and ``check``)
starts the child at once: it imports SQLAlchemy while the parent parses the command line, and
touches no database until the first call, so a command line refused as bad usage stores
nothing (the child sees its input close and exits). ``RemoteStore.take()`` hands the job that
child, or starts one. ``RemoteStore.start()`` runs ``main`` in a fresh interpreter with the
parent's ``sys.path`` (so the same mamori). Each call is one length-prefixed pickle frame on
the child's stdin, ``(name, args, kwargs)``, answered by one frame on its stdout:
``("ok", result)``, or ``("usage" | "error", message)`` raised again in the parent as
``StoreUsageError`` / ``StoreError``. The first call is ``open``; ``acceptances`` lists the
accepted risks; any other name is that ``Store`` method. The pipe is private between two
processes of the same user, so unpickling its frames trusts nothing new. The child ignores
Ctrl-C (the parent finishes the run through it, "interrupted") and exits when its stdin
closes; a child that dies is a ``StoreError`` in the parent, never a hang.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import IO, Any

from mamori.store.errors import StoreError, StoreUsageError

_HEADER = struct.Struct(">I")
# The child: the parent's import path first, then this module's main().
_BOOT = "import sys; sys.path[:] = sys.argv[1:]; from mamori.store.remote import main; main()"


def _proxy(items: Mapping[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(dict(items))


def _reduce_proxy(obj: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _proxy, (dict(obj),)


# The model's frozen mappings are MappingProxyType, which pickle does not know by itself.
_DISPATCH = {**copyreg.dispatch_table, MappingProxyType: _reduce_proxy}


def _dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buf.getvalue()


def _write(out: IO[bytes], obj: object) -> None:
    data = _dumps(obj)
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def _read(inp: IO[bytes]) -> Any:
    """One frame; None at end of input (or a frame cut short)."""
    head = inp.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # noqa: S301 (our own child or parent, over a private pipe)


_prestarted: list[RemoteStore] = []  # at most one, from prestart(), until take()


def prestart() -> None:
    """Start the store process now, for the job to ``take`` later; quietly nothing on failure
    (the job then starts one, and says why when that fails too)."""
    with contextlib.suppress(StoreError):
        _prestarted.append(RemoteStore.start())


class RemoteStore:
    """The parent's handle: ``call`` (or any ``Store`` method name) runs in the child."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self.sqlite_path: str | None = None  # the SQLite file, once open (None: other DBs)

    @classmethod
    def start(cls) -> RemoteStore:
        """Start the child. Raises ``StoreError`` when it cannot be started."""
        try:
            proc = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
                [sys.executable, "-c", _BOOT, *sys.path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise StoreError(f"cannot start the store process: {exc.strerror or exc}") from exc
        return cls(proc)

    @classmethod
    def take(cls) -> RemoteStore:
        """The store process ``prestart`` started, if it still runs; else a new one."""
        while _prestarted:
            store = _prestarted.pop()
            if store._proc.poll() is None:
                return store
            store.close()
        return cls.start()

    def open(self, url: str | None) -> None:
        """Open the database at ``url`` in the child (``Store.open``)."""
        self.sqlite_path = self.call("open", url)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``name`` in the child; its result, or its ``StoreError`` raised here."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None  # both are pipes (start)
        try:
            _write(stdin, (name, args, kwargs))
            reply = _read(stdout)
        except (OSError, ValueError) as exc:  # broken pipe, or closed already
            raise StoreError(f"the store process is gone ({exc})") from exc
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise StoreError(f"cannot hand {name} to the store process: {exc}") from exc
        if reply is None:
            raise StoreError(f"the store process ended (exit status {self._proc.poll()})")
        kind, value = reply
        if kind == "ok":
            return value
        raise (StoreUsageError if kind == "usage" else StoreError)(value)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(self.call, name)

    def close(self, *, wait: bool = True) -> None:
        """Close the child's input (it closes the store and exits); wait for it to exit unless
        ``wait`` is false (every answered write is committed already)."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        if not wait:
            return
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _answer(store: Any, name: str, args: Any, kwargs: Any) -> Any:
    if name == "open":
        from mamori.store import Store
        from mamori.store.engine import sqlite_file

        opened = Store.open(*args, **kwargs)
        path = sqlite_file(opened.engine)
        return opened, str(path) if path is not None else None
    if store is None:
        raise StoreError("the store is not open")
    if name == "acceptances":
        from mamori.store.accepted import list_acceptances

        return store, list_acceptances(store)
    return store, getattr(store, name)(*args, **kwargs)


def main() -> None:
    """The child: answer frames on stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import mamori.store.store  # noqa: F401 (SQLAlchemy now, while the parent gets ready)
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the frames
    store: Any = None
    try:
        while (msg := _read(inp)) is not None:
            name, args, kwargs = msg
            try:
                store, result = _answer(store, name, args, kwargs)
                reply: tuple[str, Any] = ("ok", result)
            except StoreUsageError as exc:
                reply = ("usage", str(exc))
            except StoreError as exc:
                reply = ("error", str(exc))
            except Exception as exc:  # a bug here: one line in the parent, not a hang
                reply = ("error", f"store process: {type(exc).__name__}: {exc}")
            try:
                _write(out, reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                _write(out, ("error", f"store process: unpicklable result of {name}: {exc}"))
    except BrokenPipeError:  # the parent is gone: nothing to answer
        pass
    finally:
        _let_go_of_the_terminal(out)
        if store is not None:
            store.close()


def _let_go_of_the_terminal(out: IO[bytes]) -> None:
    """Close every descriptor shared with the parent's caller before the slow part (closing the
    store, the interpreter's exit): `mamori scan | less` or a caller reading the command's
    stderr to its end must not wait for this process."""
    with contextlib.suppress(OSError):
        out.close()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
