"""Check primitives for file sharing: SMB share listing and SMB1, NFS exports, AFP status.

Each asks the question a stranger on the network could ask without a password, and reports
what the server answered, parsed: share names from a real NetrShareEnum reply, export paths
from a real MOUNT EXPORT reply, AFP versions from a real DSIGetStatus block.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, exchange
from mamori.protocols import afp, dcerpc, ntlmssp, smb, smb1, smb2, sunrpc

_MAX_INTERIM = 4  # STATUS_PENDING interim replies tolerated before the final one
_MAX_FRAGMENTS = 16  # DCE/RPC response fragments accepted for one share list
_MAX_TRIED_SHARES = 8  # disk shares tried for guest access after a listing


class _Refused(Exception):
    """The server answered, and said no (logon failure, access denied): a result, not a
    failure to test."""


class _Smb2Client:
    """One SMB2 connection: sends requests, reads whole NetBIOS frames within the limits."""

    def __init__(self, stream: BoundedStream) -> None:
        self.stream = stream
        self.buf = b""
        self.message_id = 0
        self.session_id = 0
        self.tree_id = 0

    async def _frame(self) -> bytes:
        self.stream.rearm()
        while True:
            n = smb2.frame_length(self.buf)
            if n is not None and len(self.buf) >= n:
                out, self.buf = self.buf[:n], self.buf[n:]
                return out
            chunk = await self.stream.read_some()
            if not chunk:
                raise ProbeFailure(ErrorKind.CLOSED, "server closed the SMB connection mid-way",
                                   partial=self.buf[:1024])
            self.buf += chunk

    async def call(self, build: Callable[[int], bytes]) -> smb2.Reply:
        """Send the request ``build(message_id)``; return its final reply.

        Raises ProbeFailure (PROTOCOL) when what comes back is not an SMB2 reply to it.
        """
        mid = self.message_id
        self.message_id += 1
        await self.stream.send(build(mid))
        for _ in range(_MAX_INTERIM + 1):
            raw = await self._frame()
            reply = smb2.parse_reply(raw)
            if reply is None:
                raise ProbeFailure(ErrorKind.PROTOCOL, "reply is not SMB2", partial=raw[:1024])
            if reply.message_id != mid:
                raise ProbeFailure(ErrorKind.PROTOCOL, "SMB2 reply to another request")
            if not (reply.status == smb2.STATUS_PENDING and reply.flags & 2):
                return reply
        raise ProbeFailure(ErrorKind.PROTOCOL, "server only ever answered STATUS_PENDING")

    async def negotiate(self) -> str:
        reply = await self.call(lambda m: smb2.build_negotiate(m, os.urandom(16)))
        dialect = smb2.negotiate_dialect(reply)
        if dialect is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "no SMB2 dialect in the NEGOTIATE reply")
        return dialect

    async def logon(self, guest_user: str | None) -> tuple[int, dict[str, str]]:
        """NTLMSSP logon, anonymous (``guest_user`` None) or as a user that should not exist.

        Returns (SessionFlags, the server's names from its challenge). Raises _Refused when
        the server turns the logon down, ProbeFailure when the exchange breaks.
        """
        token = ntlmssp.spnego_init(ntlmssp.build_negotiate())
        first = await self.call(lambda m: smb2.build_session_setup(m, 0, token))
        setup = smb2.session_setup_result(first)
        if first.status != smb2.STATUS_MORE_PROCESSING_REQUIRED or setup is None:
            raise _Refused(f"NTLMSSP negotiate: {smb2.status_name(first.status)}")
        challenge = ntlmssp.parse_challenge(ntlmssp.find_ntlmssp(setup[1]))
        if challenge is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "no NTLMSSP challenge in SESSION_SETUP")
        self.session_id = first.session_id
        auth = (ntlmssp.build_anonymous_authenticate(challenge) if guest_user is None
                else ntlmssp.build_guest_authenticate(challenge, guest_user))
        second = await self.call(lambda m: smb2.build_session_setup(
            m, self.session_id, ntlmssp.spnego_response(auth)))
        result = smb2.session_setup_result(second)
        if second.status != 0 or result is None:
            raise _Refused(smb2.status_name(second.status))
        return result[0], challenge.names

    async def tree_connect(self, unc: str) -> int:
        """TREE_CONNECT; returns the share type. Raises _Refused when not allowed."""
        reply = await self.call(lambda m: smb2.build_tree_connect(m, self.session_id, unc))
        share_type = smb2.tree_connect_share_type(reply)
        if share_type is None:
            raise _Refused(smb2.status_name(reply.status))
        self.tree_id = reply.tree_id
        return share_type

    async def pipe_call(self, file_id: bytes, pdu: bytes) -> list[dcerpc.Pdu]:
        """Write one DCE/RPC PDU to the pipe and read back the PDUs of its answer."""
        wrote = await self.call(lambda m: smb2.build_write(
            m, self.session_id, self.tree_id, file_id, pdu))
        if wrote.status != 0:
            raise _Refused(f"pipe write: {smb2.status_name(wrote.status)}")
        out: list[dcerpc.Pdu] = []
        data = b""
        for _ in range(_MAX_FRAGMENTS):
            reply = await self.call(lambda m: smb2.build_read(
                m, self.session_id, self.tree_id, file_id, dcerpc.MAX_FRAG))
            chunk = smb2.read_data(reply)
            if chunk is None:
                raise _Refused(f"pipe read: {smb2.status_name(reply.status)}")
            data += chunk
            length = dcerpc.pdu_length(data)
            if length is None or len(data) < length:
                continue
            parsed = dcerpc.parse_pdu(data[:length])
            if parsed is None:
                raise ProbeFailure(ErrorKind.PROTOCOL, "pipe answer is not DCE/RPC")
            out.append(parsed)
            data = data[length:]
            if dcerpc.is_last_fragment(parsed) and not data:
                return out
        raise ProbeFailure(ErrorKind.PROTOCOL, "DCE/RPC answer has too many fragments")


async def _list_shares(client: _Smb2Client, address: str) -> list[dcerpc.Share]:
    """Open srvsvc on IPC$ (already connected) and return NetrShareEnum's level-1 list."""
    reply = await client.call(lambda m: smb2.build_create_pipe(
        m, client.session_id, client.tree_id, "srvsvc"))
    file_id = smb2.create_file_id(reply)
    if file_id is None:
        raise _Refused(f"open srvsvc: {smb2.status_name(reply.status)}")
    bound = await client.pipe_call(file_id, dcerpc.build_bind())
    if not bound or not dcerpc.bind_accepted(bound[0]):
        raise _Refused("srvsvc bind not accepted")
    answer = await client.pipe_call(file_id, dcerpc.build_share_enum(f"\\\\{address}"))
    stub = b""
    for pdu in answer:
        part = dcerpc.response_stub(pdu)
        if part is None:
            raise _Refused("NetrShareEnum answered with a fault")
        stub += part
    parsed = dcerpc.parse_share_enum(stub)
    if parsed is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "NetrShareEnum reply is not a level-1 list")
    shares, werror = parsed
    if werror != 0:
        raise _Refused(f"NetrShareEnum: WERROR 0x{werror:08x}")
    return shares


async def _try_listing(
    ctx: ProbeContext, guest_user: str | None, log: list[str], fields: dict[str, str]
) -> bool:
    """One connection: log on, reach IPC$, list shares, try the disk shares. True if listed."""
    who = "anonymous" if guest_user is None else "guest"
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    client = _Smb2Client(stream)
    try:
        fields["dialect"] = await client.negotiate()
        try:
            flags, names = await client.logon(guest_user)
        except _Refused as exc:
            fields[f"session_{who}"] = str(exc)
            log.append(f"{who} logon: refused ({exc})")
            return False
        granted = ("guest" if flags & smb2.SESSION_FLAG_IS_GUEST
                   else "null" if flags & smb2.SESSION_FLAG_IS_NULL else who)
        fields[f"session_{who}"] = f"granted ({granted})"
        fields.update({k: v for k, v in names.items() if k == "netbios_computer"})
        log.append(f"{who} logon: granted as {granted} session")
        try:
            await client.tree_connect(f"\\\\{ctx.address}\\IPC$")
            shares = await _list_shares(client, ctx.address)
        except _Refused as exc:
            fields[f"ipc_{who}"] = str(exc)
            log.append(f"{who}: IPC$ / srvsvc refused ({exc})")
            return False
        visible = [s for s in shares if s.kind != "ipc"]
        log.append(f"{who}: NetrShareEnum listed "
                   + ", ".join(f"{s.name} ({s.kind})" for s in shares))
        if not visible:
            return False
        fields["listed_by"] = who
        fields["shares"] = ", ".join(f"{s.name} ({s.kind})" for s in visible)[:512]
        fields["share_count"] = str(len(visible))
        opened = []
        for share in [s for s in visible if s.kind == "disk" and not s.special][
                :_MAX_TRIED_SHARES]:
            try:
                await client.tree_connect(f"\\\\{ctx.address}\\{share.name}")
            except _Refused as exc:
                log.append(f"{who}: tree connect {share.name}: refused ({exc})")
                continue
            log.append(f"{who}: tree connect {share.name}: accepted")
            opened.append(share.name)
        if opened:
            fields["open_shares"] = ", ".join(opened)[:512]
        fields["grade"] = "open-share" if opened else "listing"
        return True
    finally:
        await stream.close()


async def smb_share_listing(ctx: ProbeContext, params: Params) -> Observation:
    """Log on anonymously (then as a made-up user, which only guest mapping lets in), connect
    to IPC$, list the shares over srvsvc and try to connect to each disk share.

    Fields: dialect, session_anonymous/session_guest (granted or why refused), listed_by,
    shares, share_count, open_shares, grade ("listing" or "open-share"), netbios_computer.
    Raises ProbeFailure when the server does not speak SMB2 or the exchange breaks.
    """
    guest_user = params.text("guest_user", "mamori-no-such-user") + "-" + os.urandom(3).hex()
    fields: dict[str, str] = {}
    log: list[str] = []
    listed = await _try_listing(ctx, None, log, fields)
    if not listed and params.flag("try_guest", True):
        listed = await _try_listing(ctx, guest_user, log, fields)
    request = (f"SMB2 NEGOTIATE; SESSION_SETUP NTLMSSP anonymous, then as unknown user "
               f"{guest_user!r}; TREE_CONNECT \\\\{ctx.address}\\IPC$; CREATE srvsvc; "
               "DCE/RPC BIND srvsvc 3.0; NetrShareEnum level 1; TREE_CONNECT each disk share")
    return Observation(
        test="asked for the share list over SMB2 without a password (anonymous and as an "
             "unknown user, which only guest mapping lets in)",
        fields=fields,
        request=excerpt(request),
        reply=excerpt("\n".join(log)),
    )


async def smb1_negotiate(ctx: ProbeContext, params: Params) -> Observation:
    """Offer only the SMB1 dialect "NT LM 0.12"; report whether the server chose it.

    Fields: smb1_dialect (when chosen), security ("user"/"share"), signing, domain; or
    smb1 = "refused" when the server closed, reset or answered without SMB1.
    Raises ProbeFailure when the connection cannot be made or the server stays silent.
    """
    request = smb1.build_negotiate()
    fields: dict[str, str] = {}
    try:
        reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                               done=smb.reply_complete)
    except ProbeFailure as exc:
        # Servers with SMB1 off drop the connection on an SMB1-only NEGOTIATE.
        if exc.stage == "connect" or exc.kind not in (ErrorKind.RESET, ErrorKind.CLOSED):
            raise
        reply = exc.partial
    parsed = smb1.parse_negotiate_reply(reply)
    if parsed is not None and parsed.status == 0 and parsed.dialect_index == 0:
        fields["smb1_dialect"] = smb1.DIALECT
        fields["security"] = "user" if parsed.security_mode & 1 else "share"
        fields["signing"] = ("required" if parsed.security_mode & 8
                             else "enabled" if parsed.security_mode & 4 else "off")
        if parsed.domain:
            fields["domain"] = parsed.domain
    else:
        fields["smb1"] = "refused" if not reply or parsed is not None or (
            smb2.parse_reply(reply) is not None) else "not understood"
    return Observation(
        test='sent an SMB1 NEGOTIATE offering only the dialect "NT LM 0.12"',
        fields=fields,
        request=excerpt(request),
        reply=excerpt(reply) if reply else "(connection closed without a reply)",
    )


async def _rpc(ctx: ProbeContext, port: int, request: bytes, xid: int, what: str) -> bytes:
    reply = await exchange(ctx.address, port, request, ctx.options.limits,
                           done=sunrpc.record_complete)
    result = sunrpc.parse_reply(reply, xid)
    if result is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, f"{what}: not an accepted ONC RPC reply",
                           partial=reply[:1024])
    return result


async def nfs_exports(ctx: ProbeContext, params: Params) -> Observation:
    """Ask the portmapper on this port where mountd listens (TCP, MOUNT v3 then v1), then
    ask mountd for its export list.

    Fields: mountd_port, exports ("path (who)" list), export_count, everyone ("yes" when an
    export names no client restriction or "*"), grade ("everyone" or "restricted"); or
    mountd = "not registered". Raises ProbeFailure when either server does not answer RPC.
    """
    xid = int.from_bytes(os.urandom(4), "big")
    fields: dict[str, str] = {}
    log: list[str] = []
    port = 0
    version = 3
    for version in (3, 1):
        result = await _rpc(ctx, ctx.port, sunrpc.build_getport(xid, sunrpc.MOUNT, version),
                            xid, "portmapper GETPORT")
        got = sunrpc.parse_getport(result)
        if got is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "malformed GETPORT result")
        log.append(f"GETPORT mountd v{version}/tcp -> {got}")
        xid = (xid + 1) & 0xFFFFFFFF
        if got:
            port = got
            break
    if not port:
        fields["mountd"] = "not registered"
    else:
        fields["mountd_port"] = str(port)
        result = await _rpc(ctx, port, sunrpc.build_export(xid, version), xid, "mountd EXPORT")
        exports = sunrpc.parse_exports(result)
        if exports is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "malformed MOUNT EXPORT result")
        listed = [f"{e.path} ({' '.join(e.groups) if e.groups else 'everyone'})"
                  for e in exports]
        log.append(f"EXPORT v{version} -> " + ("; ".join(listed) or "(empty list)"))
        if exports:
            fields["exports"] = "; ".join(listed)[:512]
            fields["export_count"] = str(len(exports))
            everyone = any(e.to_everyone for e in exports)
            fields["everyone"] = "yes" if everyone else "no"
            fields["grade"] = "everyone" if everyone else "restricted"
    return Observation(
        test="asked the portmapper for mountd (GETPORT 100005) and mountd for its export list "
             "(MOUNTPROC_EXPORT), without credentials",
        fields=fields,
        request=excerpt(f"ONC RPC to {ctx.address}:{ctx.port} PMAPPROC_GETPORT(100005, v3/v1, "
                        "tcp); then MOUNTPROC_EXPORT to mountd, AUTH_NULL"),
        reply=excerpt("\n".join(log)),
    )


async def afp_status(ctx: ProbeContext, params: Params) -> Observation:
    """Send DSIGetStatus (no login needed); report the server's name, AFP versions and UAMs.

    Fields: server_name, machine_type, afp_versions, uams, guest ("yes" when the "No User
    Authent" UAM is offered), cleartext ("yes" for "Cleartxt Passwrd"), grade ("guest" or
    "exposed"). No fields when the reply is not a DSI status block.
    Raises ProbeFailure when the connection or the read fails.
    """
    request = afp.build_get_status()
    reply = await exchange(ctx.address, ctx.port, request, ctx.options.limits,
                           done=afp.reply_complete)
    info = afp.parse_status(reply)
    fields: dict[str, str] = {}
    if info is not None:
        fields["server_name"] = info.server_name[:128]
        fields["machine_type"] = info.machine_type[:128]
        fields["afp_versions"] = ", ".join(info.afp_versions)[:256]
        fields["uams"] = ", ".join(info.uams)[:256]
        guest = any(u.lower() == "no user authent" for u in info.uams)
        fields["guest"] = "yes" if guest else "no"
        fields["cleartext"] = "yes" if any(u.lower() == "cleartxt passwrd"
                                           for u in info.uams) else "no"
        fields["grade"] = "guest" if guest else "exposed"
    return Observation(
        test="sent the AFP-over-DSI request DSIGetStatus (FPGetSrvrInfo), which needs no login",
        fields=fields,
        request=excerpt(request),
        reply=excerpt(reply),
    )


PRIMITIVES: dict[str, Primitive] = {
    "smb_share_listing": smb_share_listing,
    "smb1_negotiate": smb1_negotiate,
    "nfs_exports": nfs_exports,
    "afp_status": afp_status,
}
