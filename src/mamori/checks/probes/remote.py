"""Remote access and file transfer left open: MQTT, rsync, VNC, Telnet and anonymous FTP.

Each primitive performs one behaviour test and reports what it saw as fields; a "grade" field
says how far the proof went (e.g. "listed" when files were actually listed, "logged-in"
when only the login was accepted), so the check files can tell confirmed from likely.
Every primitive raises ``ProbeFailure`` when the peer does not speak the protocol at all:
the engine then reports "not tested", never "passed".
"""

from __future__ import annotations

import contextlib
import re
import secrets
import ssl
from dataclasses import replace

from mamori.checks.observation import EXCERPT, Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, insecure_tls_context
from mamori.protocols import ftp, mqtt, rsync, telnet, vnc

_TRANSCRIPT_LINES = 40  # lines of a dialogue kept as evidence
_LOGIN_PATIENCE = 10.0  # seconds a server may take to refuse a login (deliberate delays)


def _tls(ctx: ProbeContext) -> ssl.SSLContext | None:
    """TLS when identification saw it on this endpoint (MQTT on 8883, ...)."""
    return insecure_tls_context() if ctx.service is not None and ctx.service.tls else None


def _token() -> str:
    return secrets.token_hex(6)


def _binary_excerpt(data: bytes, limit: int = EXCERPT) -> str:
    """Evidence for binary protocols: ASCII kept, every other byte as \\xNN (``excerpt``
    decodes UTF-8, which turns Telnet's 0xFF and RFB's binary fields into U+FFFD)."""
    cut = data[:limit]
    text = "".join(chr(b) if 32 <= b < 127 or b in (9, 10, 13) else f"\\x{b:02x}" for b in cut)
    return text + (f"... [{len(data) - limit} more bytes]" if len(data) > limit else "")


# --- MQTT --------------------------------------------------------------------------------------

_CONNACK_MEANING = {
    0: "accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
}
_CANNOT_TEST = {1, 2, 3}  # protocol version, client id, server unavailable
_SUBSCRIBE_ID = 0x4D4D


def _first_packet_done(buf: bytes) -> bool:
    # Not MQTT at all (no packet type in the first nibble we expect): stop reading at once.
    return bool(buf) and (buf[0] >> 4 not in (mqtt.CONNACK, mqtt.SUBACK, mqtt.PUBLISH)
                          or mqtt.parse_packets(buf) is not None)


def _suback(buf: bytes) -> mqtt.Packet | None:
    for packet in mqtt.parse_packets(buf) or []:
        if packet.kind == mqtt.SUBACK and packet.body[:2] == _SUBSCRIBE_ID.to_bytes(2, "big"):
            return packet
    return None


async def _retained_message(stream: BoundedStream) -> bytes:
    """What the broker sends within a moment of a granted SUBSCRIBE: the topic's retained
    message (Mosquitto's version), if it has one. Only a fact for the evidence, so a broker
    without one costs half a second, not an idle timeout."""
    stream.rearm(replace(stream.limits, idle_timeout=0.5, deadline=1.0))
    try:
        return await stream.read_until(
            lambda b: any(p.kind == mqtt.PUBLISH for p in mqtt.parse_packets(b) or []))
    except ProbeFailure as exc:
        return exc.partial


async def mqtt_anonymous(ctx: ProbeContext, params: Params) -> Observation:
    """CONNECT without user name or password; on CONNACK 0, SUBSCRIBE to a $SYS topic.

    Fields: return_code, meaning, subscribe ("granted"/"refused"), broker_version, grade
    ("subscribed" when the broker also granted the subscription, "connected" otherwise).
    Raises ProbeFailure when the peer does not answer with a CONNACK.
    """
    topic = params.text("topic", mqtt.VERSION_TOPIC)
    # MQTT 3.1.1 servers must accept client ids of 1-23 bytes; longer ones they may refuse.
    connect = mqtt.build_connect(client_id=f"mamori-{_token()}")
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits, _tls(ctx))
    sent, got = bytearray(connect), bytearray()
    fields: dict[str, str] = {}
    try:
        await stream.send(connect)
        got += await stream.read_until(_first_packet_done)
        packets = mqtt.parse_packets(bytes(got)) or []
        if not packets or packets[0].kind != mqtt.CONNACK or len(packets[0].body) != 2:
            raise ProbeFailure(ErrorKind.GARBAGE, f"no MQTT CONNACK: {excerpt(bytes(got), 80)}")
        code = packets[0].body[1]
        if code in _CANNOT_TEST:
            # Refused for reasons unrelated to credentials: we learnt nothing about them.
            raise ProbeFailure(ErrorKind.PROTOCOL,
                               f"CONNACK {code}: {_CONNACK_MEANING[code]}", stage="read")
        fields.update(return_code=str(code), meaning=_CONNACK_MEANING.get(code, "unknown"))
        if code == 0:
            fields["grade"] = "connected"
            subscribe = mqtt.build_subscribe(topic, _SUBSCRIBE_ID)
            sent += subscribe
            stream.rearm()
            await stream.send(subscribe)
            start = len(got)
            try:
                got += await stream.read_until(lambda b: _suback(b) is not None)
            except ProbeFailure as exc:  # a broker may drop us here; CONNACK 0 stands
                got += exc.partial
            tail = bytes(got[start:])
            suback = _suback(tail)
            if suback is not None:
                granted = len(suback.body) >= 3 and suback.body[2] in (0, 1, 2)
                fields["subscribe"] = "granted" if granted else "refused"
                if granted:
                    fields["grade"] = "subscribed"
                    got += await _retained_message(stream)
            version = mqtt.parse_broker_reply(bytes(got))
            if version is not None and version.version:
                fields["broker_version"] = version.version
            with contextlib.suppress(ProbeFailure):  # the proof is in hand already
                await stream.send(b"\xe0\x00")  # DISCONNECT: leave the broker cleanly
    finally:
        await stream.close()
    return Observation(
        test=f"sent an MQTT CONNECT without credentials and, if accepted, subscribed to {topic}",
        fields=fields, request=_binary_excerpt(bytes(sent)), reply=_binary_excerpt(bytes(got)),
    )


# --- Telnet ------------------------------------------------------------------------------------

_PROMPT = re.compile(rb"(?i)(?:login|user ?name|user|password)\s*:\s*$")
_TEXT_CAP = 4096


async def telnet_login(ctx: ProbeContext, params: Params) -> Observation:
    """Read the server's opening; when it negotiates Telnet options, decline them (accepting
    only echo and suppress-go-ahead) until it shows a login prompt or goes quiet.

    Fields: options (what the server asked for), login_prompt, banner, grade ("login-prompt"
    or "negotiation"). A peer that opens without any Telnet command gives no "options" field.
    Raises ProbeFailure when the peer sends nothing at all.
    """
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    raw, sent, text_buf, rest = bytearray(), bytearray(), bytearray(), b""
    options: list[str] = []
    answered: set[tuple[str, int]] = set()
    try:
        while not _PROMPT.search(bytes(text_buf[-200:])):
            try:
                chunk = await stream.read_some(4096)
            except ProbeFailure:
                if not raw:
                    raise
                break  # it went quiet after talking: judge what we have
            if not chunk:
                break
            raw += chunk
            parsed = telnet.split_stream(rest + chunk)
            rest = parsed.rest[:512]
            if len(text_buf) < _TEXT_CAP:
                text_buf += parsed.text[: _TEXT_CAP - len(text_buf)]
            if not options and not parsed.commands:
                break  # the opening has no Telnet command: this is not a Telnet server
            fresh = tuple(c for c in parsed.commands if c not in answered)
            answered.update(fresh)
            options += [f"{v} {telnet.option_name(o)}" for v, o in fresh][: 64 - len(options)]
            answer = telnet.refuse(fresh)
            if answer:
                sent += answer
                await stream.send(answer)
    finally:
        await stream.close()
    fields: dict[str, str] = {}
    text = bytes(text_buf).decode("utf-8", "replace")
    if options:
        fields["options"] = ", ".join(options)[:400]
        fields["grade"] = "negotiation"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            fields["banner"] = " / ".join(lines)[:300]
        if _PROMPT.search(bytes(text_buf[-200:])) and lines:
            fields["login_prompt"] = lines[-1][:120]
            fields["grade"] = "login-prompt"
    return Observation(
        test="connected, declined the server's Telnet options and waited for a login prompt",
        fields=fields, request=_binary_excerpt(bytes(sent)), reply=_binary_excerpt(bytes(raw)),
    )


# --- FTP ---------------------------------------------------------------------------------------


class _FtpSession:
    """One FTP control connection with a transcript; every reply capped and time-bounded."""

    def __init__(self, ctx: ProbeContext, stream: BoundedStream) -> None:
        self.ctx = ctx
        self.stream = stream
        self.base_limits = stream.limits
        self.buf = b""
        self.transcript: list[str] = []

    def _note(self, line: str) -> None:
        if len(self.transcript) < _TRANSCRIPT_LINES:
            self.transcript.append(line[:200])

    async def reply(self, patient: bool = False) -> ftp.Reply:
        """The next complete reply. Raises ProbeFailure when the peer closes or stalls.

        ``patient``: servers delay a failed login on purpose (vsftpd 1 s plus PAM's ~2 s),
        so the answer to PASS gets a longer idle timeout than the other commands.
        """
        limits = self.base_limits
        if patient:
            limits = replace(limits, idle_timeout=max(limits.idle_timeout, _LOGIN_PATIENCE),
                             deadline=max(limits.deadline, _LOGIN_PATIENCE))
        self.stream.rearm(limits)
        while (parsed := ftp.parse_reply(self.buf)) is None:
            chunk = await self.stream.read_some()
            if not chunk:
                raise ProbeFailure(ErrorKind.CLOSED, "FTP server closed the control connection")
            self.buf += chunk
        self.buf = self.buf[parsed.size:]
        self._note("<< " + parsed.text.replace("\n", " | "))
        return parsed

    async def command(self, verb: str, arg: str | None = None, *,
                      patient: bool = False) -> ftp.Reply:
        line = ftp.command(verb, arg)
        self._note(">> " + line.decode().strip())
        await self.stream.send(line)
        return await self.reply(patient)

    async def open_data(self) -> BoundedStream | None:
        """A passive data connection (EPSV, else PASV) to the server we probe, never to the
        address a PASV reply names (which may point anywhere). None when refused."""
        reply = await self.command("EPSV")
        port = ftp.parse_epsv(reply)
        if port is None:
            reply = await self.command("PASV")
            port = ftp.parse_pasv(reply)
        if port is None:
            return None
        return await BoundedStream.open(self.ctx.address, port, self.ctx.options.limits)

    async def transfer_in(self, verb: str, arg: str | None = None) -> tuple[ftp.Reply, bytes]:
        """Run a command that sends data to us (LIST); the final reply and the data (capped;
        a cut listing is still a listing). Raises ProbeFailure on a data-connection failure."""
        data_stream = await self.open_data()
        if data_stream is None:
            return ftp.Reply(0, ("no passive data connection offered",), 0), b""
        data = b""
        try:
            first = await self.command(verb, arg)
            if first.code not in (125, 150):
                return first, b""
            try:
                data = await data_stream.read_until(lambda _b: False)
            except ProbeFailure as exc:
                if exc.kind is not ErrorKind.TOO_LARGE:
                    raise
                data = exc.partial
        finally:
            await data_stream.close()
        return await self.reply(), data

    async def transfer_out(self, verb: str, arg: str, payload: bytes) -> ftp.Reply:
        """Run a command that takes data from us (STOR); the final reply."""
        data_stream = await self.open_data()
        if data_stream is None:
            return ftp.Reply(0, ("no passive data connection offered",), 0)
        try:
            first = await self.command(verb, arg)
            if first.code not in (125, 150):
                return first
            await data_stream.send(payload)
        finally:
            await data_stream.close()
        return await self.reply()


async def _ftp_anonymous(ctx: ProbeContext, params: Params) -> tuple[_FtpSession, dict[str, str]]:
    """Connect and log in as "anonymous". Returns the session and fields (login, pwd...).

    Raises ProbeFailure when the greeting is not an FTP 220 (not an FTP server, or one that
    turns us away before any test, e.g. 421 too many connections).
    """
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    session = _FtpSession(ctx, stream)
    try:
        greeting = await session.reply()
        if greeting.code != 220:
            raise ProbeFailure(ErrorKind.PROTOCOL, f"no FTP greeting: {greeting.text[:120]}")
        fields = {"greeting": greeting.lines[0][:120]}
        user = await session.command("USER", params.text("user", "anonymous"))
        login = user
        if user.code == 331:
            login = await session.command(
                "PASS", params.text("password", "mamori@example.invalid"), patient=True)
        fields["login_reply"] = login.lines[0][:120]
        if user.code not in (230, 331) or login.code != 230:
            fields["login"] = "refused"
            return session, fields
        fields["login"] = "accepted"
        cwd = ftp.parse_pwd(await session.command("PWD"))
        if cwd is not None:
            fields["pwd"] = cwd[:200]
    except BaseException:
        await stream.close()
        raise
    return session, fields


def _ftp_observation(test: str, session: _FtpSession, fields: dict[str, str]) -> Observation:
    request = "\n".join(t for t in session.transcript if t.startswith(">>"))
    return Observation(test=test, fields=fields, request=excerpt(request),
                       reply=excerpt("\n".join(session.transcript)))


async def ftp_anonymous_login(ctx: ProbeContext, params: Params) -> Observation:
    """Log in as anonymous; if accepted, ask PWD and LIST the directory over a passive data
    connection to the same address.

    Fields: login ("accepted"/"refused"), login_reply, pwd, listing ("ok"/reason), entries,
    names, grade ("listed" when a real listing came back, "logged-in" otherwise).
    Raises ProbeFailure when the peer is not an FTP server.
    """
    session, fields = await _ftp_anonymous(ctx, params)
    try:
        if fields["login"] == "accepted":
            fields["grade"] = "logged-in"
            final, data = await session.transfer_in("LIST")
            names = ftp.parse_listing(data)
            if final.code == 226 and names is not None and "pwd" in fields:
                fields.update(listing="ok", entries=str(len(names)),
                              names=", ".join(names[:10])[:300], grade="listed")
            else:
                fields["listing"] = f"failed: {final.lines[0][:120]}"
            await session.command("QUIT")
    finally:
        await session.stream.close()
    return _ftp_observation(
        'logged in as "anonymous" with an e-mail address as password, then PWD and LIST',
        session, fields)


async def _try_upload(session: _FtpSession, name: str, payload: bytes,
                      fields: dict[str, str]) -> bool:
    """STOR ``name`` in the current directory; verify with SIZE (or LIST); DELE it again."""
    await session.command("TYPE", "I")
    final = await session.transfer_out("STOR", name, payload)
    if final.code != 226:
        fields["write_reply"] = final.lines[0][:120]
        return False
    fields.pop("write_reply", None)  # a refusal in an earlier directory no longer matters
    fields["write"] = "stored"
    fields["grade"] = "stored"
    size = ftp.parse_size(await session.command("SIZE", name))
    if size == len(payload):
        fields.update(verified=f"SIZE {size}", grade="verified")
    else:
        listed, data = await session.transfer_in("LIST")
        if listed.code == 226 and name in (ftp.parse_listing(data) or []):
            fields.update(verified="listed", grade="verified")
    deleted = await session.command("DELE", name)
    fields["cleanup"] = ("deleted" if deleted.code == 250
                         else f"could not delete it: {deleted.lines[0][:100]}")
    return True


async def ftp_anonymous_write(ctx: ProbeContext, params: Params) -> Observation:
    """Log in as anonymous and try to STOR a small, uniquely named text file in the login
    directory and in the usual upload directories (param "dirs"); confirm it with SIZE or
    LIST, then DELE it.

    Fields: login, write ("stored"/"refused"), directory, file, verified, cleanup, grade
    ("verified" or "stored"). Raises ProbeFailure when the peer is not an FTP server.
    """
    dirs = params.texts("dirs", ["", "incoming", "upload", "uploads", "pub/incoming"])[:8]
    token = _token()
    name = f"mamori-write-test-{token}.txt"
    payload = (f"mamori write test {token}: this server let an anonymous user upload this "
               "file. Safe to delete.\n").encode()
    session, fields = await _ftp_anonymous(ctx, params)
    try:
        if fields["login"] == "accepted":
            fields["write"] = "refused"
            home = fields.get("pwd", "/")
            for directory in dirs:
                if directory and (await session.command("CWD", directory)).code != 250:
                    continue
                if await _try_upload(session, name, payload, fields):
                    fields.update(directory=directory or home, file=name)
                    break
                if directory:
                    await session.command("CWD", home)
            await session.command("QUIT")
    finally:
        await session.stream.close()
    return _ftp_observation(
        f'logged in as "anonymous" and tried to STOR {name} ({len(payload)} bytes), '
        "then SIZE/LIST to confirm and DELE to remove it", session, fields)


# --- rsync -------------------------------------------------------------------------------------


async def rsync_open(ctx: ProbeContext, request: bytes) -> tuple[BoundedStream, bytes]:
    """Connect, check the daemon's greeting, send our version and ``request``.

    Returns the stream and the greeting line. Raises ProbeFailure when the peer is not an
    rsync daemon.
    """
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    try:
        first = await stream.read_line()
        if rsync.parse_greeting(first) is None:
            raise ProbeFailure(ErrorKind.GARBAGE, f"no rsync greeting: {excerpt(first, 80)}")
        await stream.send(rsync.build_hello() + request)
    except BaseException:
        await stream.close()
        raise
    return stream, first


async def _rsync_list_module(
    ctx: ProbeContext, module: str, transcript: list[str]
) -> tuple[str, rsync.FileList | None]:
    """Ask for ``module`` without credentials; if let in, read its top-level file list.

    Returns the status ("ok", "auth-required", "error") and the file list (None unless
    read). Raises ProbeFailure on connection failures.
    """
    stream, _ = await rsync_open(ctx, rsync.build_module_request(module))
    try:
        buf = await stream.read_until(rsync.module_reply_complete)
        answer = rsync.parse_module_reply(buf)
        if answer is None:
            return "error", None
        transcript.append(f"{module}: {answer.status} {answer.detail}".strip())
        if answer.status != "ok":
            return answer.status, None
        await stream.send(rsync.build_list_request(module))
        rest = buf[answer.size:]
        try:
            rest += await stream.read_until(lambda b: _flist_done(rest + b))
        except ProbeFailure as exc:
            rest += exc.partial  # a long list cut at the byte cap still proves access
        data, messages, _whole = rsync.demultiplex(rest[4:])
        transcript.extend(f"{module}: {m}" for m in messages[:4])
        return "ok", rsync.parse_file_list(data)
    finally:
        await stream.close()


def _flist_done(buf: bytes) -> bool:
    # After the list the daemon waits for us, so its end marker is the only end we get
    # (an error makes it close the connection, which ends the read too).
    if len(buf) < 8:
        return False
    data, _messages, _ = rsync.demultiplex(buf[4:])
    parsed = rsync.parse_file_list(data)
    return parsed is not None and parsed.complete


async def rsync_modules(ctx: ProbeContext, params: Params) -> Observation:
    """List the daemon's modules ("#list"), then ask each (up to param "max_modules") for its
    top directory without credentials, as "rsync rsync://host/module/" would.

    Fields: modules, auth_required, open_module, files (names, capped), file_count, grade
    ("listed" when a file list came back, "accepted" when only "@RSYNCD: OK" did).
    Raises ProbeFailure when the peer is not an rsync daemon.
    """
    limit = int(params.number("max_modules", 4))
    stream, greeting = await rsync_open(ctx, rsync.build_module_request("#list"))
    try:
        listing = await stream.read_until(rsync.module_list_complete)
    finally:
        await stream.close()
    modules = rsync.parse_module_list(listing) or []
    fields: dict[str, str] = {"modules": ", ".join(m.name for m in modules)[:300] or "(none)"}
    transcript: list[str] = []
    auth: list[str] = []
    for module in modules[:limit]:
        status, files = await _rsync_list_module(ctx, module.name, transcript)
        if status == "auth-required":
            auth.append(module.name)
        if status != "ok" or fields.get("grade") == "listed":
            continue  # refused, or we already hold the strongest proof
        fields.update(open_module=module.name, grade="accepted")
        if files is None:
            continue
        # "." is the module's own top directory, not one of its files; an empty module
        # still sends it, and a whole list (end marker seen) is proof of access too.
        names = [e.name + ("/" if e.is_dir else "") for e in files.entries if e.name != "."]
        if names or files.complete:
            fields.update(files=", ".join(names[:15])[:300] or "(empty)",
                          file_count=str(len(names)) + ("" if files.complete else "+"),
                          grade="listed")
    if auth:
        fields["auth_required"] = ", ".join(auth)[:300]
    return Observation(
        test='asked the rsync daemon for "#list", then for each module\'s top directory '
             "without credentials (protocol 29)",
        fields=fields,
        request=excerpt(rsync.build_hello() + b"#list\n" + b"".join(
            # each module request and its arguments (the binary filter terminator left out)
            rsync.build_module_request(m.name) + rsync.build_list_request(m.name)[:-5]
            for m in modules[:limit])),
        reply=_binary_excerpt(greeting + listing + "\n".join(transcript).encode()),
    )


# --- VNC ---------------------------------------------------------------------------------------


async def vnc_security(ctx: ProbeContext, params: Params) -> Observation:
    """Do the RFB handshake; when the server offers security type None, choose it and read
    the ServerInit (desktop size and name), as a viewer connecting in shared mode would.

    Fields: version, security_types, none_offered ("yes"/"no"), desktop_name, geometry,
    grade ("desktop" when the ServerInit arrived, "offered" otherwise).
    Raises ProbeFailure when the peer is not an RFB server.
    """
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    sent, got = bytearray(), bytearray()
    fields: dict[str, str] = {}
    try:
        got += await stream.read_until(lambda b: b"\n" in b or len(b) >= 12)
        server = vnc.parse_version(bytes(got))
        if server is None:
            raise ProbeFailure(ErrorKind.GARBAGE, f"no RFB version: {excerpt(bytes(got), 40)}")
        version = vnc.client_version(server)
        fields["version"] = f"{server[0]}.{server[1]}"
        await _send(stream, sent, vnc.build_version(version))
        # Bytes that came in the version line's segment (a refusal sent at once) are the
        # start of the security message: parse them, do not drop them.
        start = vnc.VERSION_SIZE
        early = bytes(got[start:])
        if vnc.parse_security(early, version) is None:
            try:
                got += await stream.read_until(
                    lambda b: vnc.parse_security(early + b, version) is not None)
            except ProbeFailure as exc:
                if not early:
                    raise
                got += exc.partial  # the peer closed after its early message: judge that
        offer = vnc.parse_security(bytes(got[start:]), version)
        if offer is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "incomplete RFB security message")
        if not offer.types:
            # A refusal tells nothing about the security types: the check could not run.
            raise ProbeFailure(ErrorKind.REFUSED,
                               f"the VNC server refused the handshake: {offer.reason}")
        names = [vnc.SECURITY_NAMES.get(t, str(t)) for t in offer.types]
        fields["security_types"] = ", ".join(names)
        fields["none_offered"] = "yes" if vnc.NONE in offer.types else "no"
        if vnc.NONE in offer.types:
            fields["grade"] = "offered"
            await _vnc_enter(stream, sent, got, version, offer, fields)
    finally:
        await stream.close()
    return Observation(
        test="did the RFB handshake and, when security type None was offered, chose it and "
             "asked for the desktop in shared mode",
        fields=fields, request=_binary_excerpt(bytes(sent)), reply=_binary_excerpt(bytes(got)),
    )


async def _send(stream: BoundedStream, log: bytearray, data: bytes) -> None:
    log += data
    await stream.send(data)


async def _vnc_enter(stream: BoundedStream, sent: bytearray, got: bytearray,
                     version: tuple[int, int], offer: vnc.SecurityOffer,
                     fields: dict[str, str]) -> None:
    """Choose security None and read the ServerInit into ``fields``."""
    if version >= (3, 7):
        await _send(stream, sent, bytes([vnc.NONE]))
    if version >= (3, 8):
        start = len(got)
        got += await stream.read_until(lambda b: len(b) >= 4)
        result = vnc.parse_security_result(bytes(got[start:]))
        if result != 0:
            fields["security_result"] = f"failed ({result})"
            return
    # Shared flag set: we must not disconnect a viewer who is already there.
    await _send(stream, sent, vnc.build_client_init(shared=True))
    start = len(got)
    try:
        got += await stream.read_until(lambda b: vnc.parse_server_init(b) is not None)
    except ProbeFailure as exc:
        got += exc.partial
    init = vnc.parse_server_init(bytes(got[start:]))
    if init is not None:
        fields.update(desktop_name=init.name[:120] or "(empty)",
                      geometry=f"{init.width}x{init.height}", grade="desktop")


PRIMITIVES: dict[str, Primitive] = {
    "mqtt_anonymous": mqtt_anonymous,
    "telnet_login": telnet_login,
    "ftp_anonymous_login": ftp_anonymous_login,
    "ftp_anonymous_write": ftp_anonymous_write,
    "rsync_modules": rsync_modules,
    "vnc_security": vnc_security,
}
