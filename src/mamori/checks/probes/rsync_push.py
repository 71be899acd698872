"""The rsync upload proof: as a plain "rsync FILE rsync://host/module/" would, without a
password, send one uniquely named tiny file, list the module to see it arrive, delete exactly
that name ("--delete-missing-args": the daemon deletes the names we list as missing and
nothing else) and list again to see it gone. Protocol 29 throughout (rsync 3.x accepts it).

Every session is bounded by the probe limits; a daemon that lies, stalls or floods ends the
session with a recorded reason.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field

from mamori.checks.observation import ProbeContext, excerpt
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import rsync

_MAX_REQUESTS = 8  # index-0 requests: the first and one redo after a checksum mismatch
_FINAL_DONE = 4  # three phase ends echoed, then the daemon's final goodbye


@dataclass(slots=True)
class Session:
    """One receiver session: how it ended and what the daemon said."""

    status: str  # "done", "refused", "auth-required", "error"
    detail: str = ""
    messages: list[str] = field(default_factory=list)
    sent: bool = False  # the file data went out
    kind: ErrorKind = ErrorKind.PROTOCOL  # what went wrong, when status is "error"


@dataclass(frozen=True, slots=True)
class Probe:
    """Everything one module's proof did, for the observation."""

    name: str
    size: int
    upload: Session
    seen: str  # "seen, N bytes", "not listed", "listing failed: ..."
    cleanup: str  # "" when nothing was sent


def test_file() -> tuple[str, bytes]:
    """A fresh unique name and the few bytes that say what the file is."""
    name = f".mamori-write-test-{secrets.token_hex(6)}"
    body = (f"{name}: written by mamori to prove this rsync module accepts uploads without a "
            "password; mamori deletes it right away. Safe to delete.\n").encode()
    return name, body


async def _open_module(ctx: ProbeContext, module: str) -> tuple[BoundedStream, bytes, str]:
    """Connect, exchange greetings, ask for ``module``; returns the stream, the bytes after
    the daemon's answer and that answer's status ("ok", "auth-required", "error: ...")."""
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        greeting = await stream.read_line()
        hello = rsync.parse_greeting(greeting)
        if hello is None:
            raise ProbeFailure(ErrorKind.GARBAGE, f"no rsync greeting: {excerpt(greeting, 80)}")
        if hello.major < rsync.CLIENT_PROTOCOL:
            raise ProbeFailure(ErrorKind.PROTOCOL, f"the daemon speaks rsync protocol "
                               f"{hello.major}, older than {rsync.CLIENT_PROTOCOL}: not tried")
        await stream.send(rsync.build_hello() + rsync.build_module_request(module))
        buf = await stream.read_until(rsync.module_reply_complete)
        answer = rsync.parse_module_reply(buf)
    except BaseException:
        await stream.close()
        raise
    if answer is None:
        return stream, b"", "error: no answer to the module request"
    status = answer.status if answer.status != "error" else f"error: {answer.detail}"
    return stream, buf[answer.size:], status


async def _serve(stream: BoundedStream, raw: bytes, payload: bytes | None,
                 session: Session) -> Session:
    """Play the sender after the file list went out: answer the generator's request for
    index 0 with ``payload`` (literal data and the MD4 file checksum) and echo each phase end
    until the daemon's final goodbye."""
    pos, dones, requests = 0, 0, 0
    seed: int | None = None
    while True:
        seed = seed if seed is not None else rsync.parse_seed(raw)
        data, messages, _whole = rsync.demultiplex(raw[4:]) if seed is not None else (b"", [], True)
        session.messages = messages
        try:
            req = rsync.parse_request(data[pos:]) if seed is not None else None
        except ValueError as exc:
            session.detail = f"daemon sent what no rsync sends: {exc}"
            return session
        if req is None:
            chunk = await stream.read_some()
            if not chunk:
                session.detail = "daemon closed the connection" + (
                    f" after {dones} phase end(s)" if dones else "")
                session.kind = ErrorKind.CLOSED
                return session
            raw += chunk
            continue
        pos += req.size
        if req.ndx == rsync.NDX_DONE:
            dones += 1
            if dones >= _FINAL_DONE:
                session.status = "done"
                return session
            await stream.send(rsync.build_done())
            continue
        requests += 1
        if req.ndx != 0 or requests > _MAX_REQUESTS or seed is None:
            session.detail = f"daemon asked for file index {req.ndx} (we sent one file)"
            return session
        if req.iflags & rsync.ITEM_TRANSFER and payload is not None:
            await stream.send(rsync.build_file_data(req, payload, seed))
            session.sent = True


async def _receiver_session(ctx: ProbeContext, module: str, flist: bytes,
                            payload: bytes | None) -> Session:
    """One session with the daemon as receiver: upload (``payload``) or delete (None)."""
    stream, rest, status = await _open_module(ctx, module)
    try:
        if status != "ok":
            return Session("auth-required" if status == "auth-required" else "error", status)
        await stream.send(rsync.build_receiver_args(module, delete_missing=payload is None))
        session = Session("error")
        try:
            rest += await stream.read_until(lambda b: len(rest) + len(b) >= 4)
            if rsync.parse_seed(rest) is None:
                session.detail, session.kind = "closed before the checksum seed", ErrorKind.CLOSED
                return session
            # A refusing daemon may be gone already: its words are read below.
            with contextlib.suppress(ProbeFailure):
                await stream.send(flist)
            await _serve(stream, rest, payload, session)
        except ProbeFailure as exc:
            session.detail, session.kind = f"{exc.kind.value}: {exc.detail}", exc.kind
        if session.status != "done" and any("read only" in m for m in session.messages):
            session.status = "refused"
        return session
    finally:
        await stream.close()


Listing = tuple[dict[str, int], bool] | str


async def list_names(ctx: ProbeContext, module: str) -> Listing:
    """The module's top-level regular files (name: size) and whether the list arrived whole,
    or why it could not be read."""
    try:
        return await _list_names(ctx, module)
    except ProbeFailure as exc:
        return f"{exc.kind.value}: {exc.detail}"


async def _list_names(ctx: ProbeContext, module: str) -> Listing:
    stream, rest, status = await _open_module(ctx, module)
    try:
        if status != "ok":
            return status
        await stream.send(rsync.build_list_request(module))
        try:
            rest += await stream.read_until(lambda b: _listed(rest + b))
        except ProbeFailure as exc:
            if not exc.partial:
                return f"{exc.kind.value}: {exc.detail}"
            rest += exc.partial
    finally:
        await stream.close()
    parsed = rsync.parse_file_list(rsync.demultiplex(rest[4:])[0], limit=2000)
    if parsed is None:
        return "no file list came back"
    files = {e.name: e.size for e in parsed.entries if e.mode & 0o170000 == 0o100000}
    return files, parsed.complete


def _listed(buf: bytes) -> bool:
    if len(buf) < 8:
        return False
    parsed = rsync.parse_file_list(rsync.demultiplex(buf[4:])[0], limit=2000)
    return parsed is not None and parsed.complete


def _seen(listing: Listing, name: str) -> tuple[bool, str]:
    if isinstance(listing, str):
        return False, f"listing failed: {listing}"
    files, complete = listing
    if name not in files:
        return False, "not listed" if complete else "not in the part of the list that arrived"
    return True, f"seen, {files[name]} bytes"


async def prove_upload(ctx: ProbeContext, module: str) -> Probe:
    """Upload, list, delete, list again. Never leaves the file without saying so."""
    name, body = test_file()
    mtime = int(time.time())
    upload = await _receiver_session(
        ctx, module, rsync.build_file_list(name, len(body), mtime, rsync.REGULAR_FILE), body)
    if not upload.sent:
        return Probe(name, len(body), upload, "", "")
    present, seen = _seen(await list_names(ctx, module), name)
    if present and seen != f"seen, {len(body)} bytes":
        seen += f" (we sent {len(body)})"
    try:
        deletion = await _receiver_session(
            ctx, module, rsync.build_file_list(name, 0, 0, 0), None)
    except ProbeFailure as exc:
        deletion = Session("error", f"{exc.kind.value}: {exc.detail}")
    after = await list_names(ctx, module)
    if not isinstance(after, str) and after[1] and name not in after[0]:
        cleanup = "deleted it (--delete-missing-args), listed again: gone"
    elif isinstance(after, str) and not present and deletion.status == "done":
        cleanup = (f"the daemon completed the delete session (--delete-missing-args), but the "
                   f"module cannot be listed ({after}): check that {module}/{name} is gone")
    else:
        why = "; ".join(filter(None, [deletion.detail, *deletion.messages[:2]]))
        still_there, still = _seen(after, name)
        verdict = ("DELETE FAILED" if deletion.status != "done" or still_there
                   else "DELETE NOT CONFIRMED")
        cleanup = (f"{verdict} (delete session: {why or deletion.status}; listed again: "
                   f"{still}): remove {module}/{name} from the module yourself")
    return Probe(name, len(body), upload, seen, cleanup)
