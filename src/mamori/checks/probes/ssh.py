"""SSH: which algorithms the server offers, and which login methods it offers.

Algorithms come from the server's KEXINIT, sent in the clear right after the banners. The
login methods need the "none" userauth request (RFC 4252 5.2), which only travels inside an
encrypted transport: this module runs a real key exchange (``protocols.ssh_transport``) over
a bounded stream, so the answer is proven to come from a peer that derived the same keys.
"""

from __future__ import annotations

import os

from mamori.checks.data import ssh_algorithms as table
from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure
from mamori.protocols import ssh_kex as wire
from mamori.protocols import ssh_transport as crypto

CLIENT_IDENT = b"SSH-2.0-mamori_0.1"
_MAX_SKIPPED = 16  # IGNORE/DEBUG/BANNER/EXT_INFO packets tolerated while waiting for a reply
_LIST_CAP = 600  # characters of one algorithm list kept as a field


class _Session:
    """One SSH connection: identification, then packets, plain or protected."""

    def __init__(self, stream: BoundedStream) -> None:
        self.stream = stream
        self.buf = b""
        self.server_ident = b""
        self.recv_seq = 0
        self.send_seq = 0
        self.opener: crypto.PacketOpener | None = None
        self.sealer: crypto.PacketSealer | None = None
        self.transcript = bytearray()  # what came back, capped, for evidence

    async def _more(self) -> None:
        chunk = await self.stream.read_some()
        if not chunk:
            raise ProbeFailure(ErrorKind.CLOSED, "server closed the connection",
                               partial=bytes(self.transcript))
        self.buf += chunk
        if len(self.transcript) < 2048:
            self.transcript += chunk[: 2048 - len(self.transcript)]

    async def identify(self) -> bytes:
        """Send our identification and read the server's. Returns its line."""
        await self.stream.send(CLIENT_IDENT + b"\r\n")
        while (found := wire.find_ident(self.buf)) is None:
            if len(self.buf) > 8192:
                raise ProbeFailure(ErrorKind.GARBAGE, "no SSH identification line",
                                   partial=self.buf[:256])
            await self._more()
        self.server_ident, end = found
        if not self.server_ident.startswith((b"SSH-2.0-", b"SSH-1.99-")):
            raise ProbeFailure(ErrorKind.PROTOCOL, "server does not speak SSH-2",
                               partial=self.server_ident)
        self.buf = self.buf[end:]
        return self.server_ident

    async def receive(self) -> bytes:
        """The next packet's payload. Raises ProbeFailure on broken framing or MAC."""
        while True:
            try:
                got = (self.opener.open(self.buf) if self.opener is not None
                       else wire.split_plain_packet(self.buf))
            except wire.SshError as exc:
                raise ProbeFailure(ErrorKind.PROTOCOL, str(exc), partial=self.buf[:256]) from None
            if got is not None:
                payload, used = got
                self.buf = self.buf[used:]
                if self.opener is None:
                    self.recv_seq += 1
                disconnect = wire.parse_disconnect(payload)
                if disconnect is not None:
                    raise ProbeFailure(ErrorKind.PROTOCOL,
                                       f"server disconnected: {disconnect[1]} ({disconnect[0]})")
                return payload
            await self._more()

    async def receive_skipping(self, wanted: set[int]) -> bytes:
        """The next payload whose message number is in ``wanted``, skipping IGNORE, DEBUG,
        BANNER and EXT_INFO. Raises ProbeFailure for anything else."""
        for _ in range(_MAX_SKIPPED):
            payload = await self.receive()
            number = wire.message_number(payload)
            if number in wanted:
                return payload
            if number not in (wire.MSG_IGNORE, wire.MSG_DEBUG, wire.MSG_USERAUTH_BANNER,
                              wire.MSG_EXT_INFO):
                raise ProbeFailure(ErrorKind.PROTOCOL,
                                   f"unexpected SSH message {number} (wanted {sorted(wanted)})")
        raise ProbeFailure(ErrorKind.PROTOCOL, "too many packets without the expected reply")

    async def send(self, payload: bytes) -> None:
        if self.sealer is not None:
            await self.stream.send(self.sealer.seal(payload))
        else:
            await self.stream.send(wire.frame(payload, padding=os.urandom(24)))
            self.send_seq += 1


async def _open(ctx: ProbeContext) -> _Session:
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits)
    return _Session(stream)


async def _server_kexinit(session: _Session) -> tuple[bytes, wire.KexInit]:
    payload = await session.receive_skipping({wire.MSG_KEXINIT})
    kexinit = wire.parse_kexinit(payload)
    if kexinit is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "malformed KEXINIT", partial=payload[:256])
    return payload, kexinit


# --- weak algorithms --------------------------------------------------------------------------


def judge_algorithms(kexinit: wire.KexInit) -> dict[str, str]:
    """Fields naming every weak and legacy algorithm the server offers, with reasons."""
    offered = (
        [(table.Kind.KEX, n) for n in kexinit.kex]
        + [(table.Kind.HOST_KEY, n) for n in kexinit.host_key]
        + [(table.Kind.CIPHER, n) for n in dict.fromkeys(kexinit.ciphers_c2s
                                                           + kexinit.ciphers_s2c)]
        + [(table.Kind.MAC, n) for n in dict.fromkeys(kexinit.macs_c2s + kexinit.macs_s2c)]
    )
    weak: list[str] = []
    legacy: list[str] = []
    for kind, name in offered:
        entry = table.lookup(kind, name)
        if entry is None:
            continue
        text = f"{kind.value} {name} ({', '.join(w.value for w in entry.why)})"
        (weak if entry.level is table.Level.WEAK else legacy).append(text)
    return {
        "kex": ",".join(kexinit.kex)[:_LIST_CAP],
        "host_key": ",".join(kexinit.host_key)[:_LIST_CAP],
        "ciphers": ",".join(dict.fromkeys(kexinit.ciphers_c2s + kexinit.ciphers_s2c))[:_LIST_CAP],
        "macs": ",".join(dict.fromkeys(kexinit.macs_c2s + kexinit.macs_s2c))[:_LIST_CAP],
        "weak_count": str(len(weak)),
        "weak": "; ".join(weak)[:1500] or "none",
        "legacy": "; ".join(legacy)[:1000] or "none",
    }


STRICT_KEX_SERVER = "kex-strict-s-v00@openssh.com"


def judge_terrapin(kexinit: wire.KexInit) -> dict[str, str]:
    """Fields for the Terrapin prefix truncation (CVE-2023-48795), decided as ssh-audit and
    the Terrapin paper's scanner do, from the KEXINIT alone: the server offers
    ChaCha20-Poly1305, or a CBC cipher together with an encrypt-then-MAC MAC, and does not
    offer the strict key exchange marker. ``terrapin`` is "yes" or "no"; ``terrapin_modes``
    names the offered modes the attack works on; ``strict_kex`` says whether the marker is
    offered."""
    ciphers = dict.fromkeys(kexinit.ciphers_c2s + kexinit.ciphers_s2c)
    macs = dict.fromkeys(kexinit.macs_c2s + kexinit.macs_s2c)
    chacha = [c for c in ciphers if c.startswith("chacha20-poly1305")]
    cbc = [c for c in ciphers if c.endswith("-cbc") or "-cbc@" in c]
    etm = [m for m in macs if m.endswith("-etm@openssh.com")]
    modes = chacha + ([f"{'/'.join(cbc)} with {'/'.join(etm)}"] if cbc and etm else [])
    strict = STRICT_KEX_SERVER in kexinit.kex
    return {
        "terrapin": "yes" if modes and not strict else "no",
        "terrapin_modes": "; ".join(modes)[:_LIST_CAP] or "none",
        "strict_kex": "yes" if strict else "no",
    }


async def ssh_kexinit(ctx: ProbeContext, params: Params) -> Observation:
    """Exchange identification lines and read the server's KEXINIT (no crypto needed).

    Fields: software (the server's identification), kex, host_key, ciphers, macs,
    weak_count, weak ("kind name (reasons); ..."), legacy, and the Terrapin fields of
    ``judge_terrapin``. Raises ProbeFailure when the
    peer is not an SSH-2 server or sends a malformed KEXINIT.
    """
    del params
    session = await _open(ctx)
    try:
        ident = await session.identify()
        payload, kexinit = await _server_kexinit(session)
    finally:
        await session.stream.close()
    fields = judge_algorithms(kexinit) | judge_terrapin(kexinit)
    fields["software"] = ident.decode("ascii", "replace")[:128]
    return Observation(
        test="exchanged SSH identification lines and read the algorithms the server offers "
             "in its KEXINIT (RFC 4253 7.1)",
        fields=fields,
        request=excerpt(CLIENT_IDENT + b"\r\n"),
        reply=excerpt(ident + b"\r\n" + payload, 768),
    )


# --- login methods ----------------------------------------------------------------------------


async def key_exchange(session: _Session, server_kexinit: bytes, kexinit: wire.KexInit,
                       kex_algorithms: tuple[str, ...] | None = None) -> tuple[str, str]:
    """Run the key exchange (curve25519/nistp256 ECDH, or a post-quantum hybrid when the
    server offers nothing else) to NEWKEYS and switch both directions to the new keys.
    ``kex_algorithms`` narrows what we offer (default: every one this installation has).
    Returns the key exchange method and the server's host key type.

    Raises ProbeFailure when no algorithm is shared or the server's reply is malformed.
    """
    kex_algorithms = kex_algorithms or crypto.usable_kex_algorithms()
    kex_name = wire.choose(kex_algorithms, kexinit.kex)
    host_key = wire.choose(crypto.HOST_KEY_ALGORITHMS, kexinit.host_key)
    c2s = wire.choose(crypto.CIPHERS, kexinit.ciphers_c2s)
    s2c = wire.choose(crypto.CIPHERS, kexinit.ciphers_s2c)
    if kex_name is None or host_key is None or c2s is None or s2c is None:
        raise ProbeFailure(ErrorKind.PROTOCOL,
                           "no key exchange, host key or cipher in common with this server "
                           f"(kex {','.join(kexinit.kex)[:200]})")
    mac_c2s = None if crypto.is_aead(c2s) else wire.choose(crypto.MACS, kexinit.macs_c2s)
    mac_s2c = None if crypto.is_aead(s2c) else wire.choose(crypto.MACS, kexinit.macs_s2c)
    if (mac_c2s is None and not crypto.is_aead(c2s)) or (
            mac_s2c is None and not crypto.is_aead(s2c)):
        raise ProbeFailure(ErrorKind.PROTOCOL, "no MAC in common with this server")
    ours = wire.build_kexinit(os.urandom(16), kex_algorithms, crypto.HOST_KEY_ALGORITHMS,
                              crypto.CIPHERS, crypto.MACS)
    await session.send(ours)
    try:
        agreement = crypto.KexAgreement(kex_name)
    except wire.SshError as exc:
        raise ProbeFailure(ErrorKind.PROTOCOL, str(exc)) from None
    await session.send(wire.build_ecdh_init(agreement.public))
    reply_payload = await session.receive_skipping({wire.MSG_KEX_ECDH_REPLY})
    reply = wire.parse_ecdh_reply(reply_payload)
    if reply is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "malformed KEX_ECDH_REPLY")
    try:
        k = agreement.shared_secret(reply.server_public)
    except wire.SshError as exc:
        raise ProbeFailure(ErrorKind.PROTOCOL, str(exc)) from None
    h = crypto.exchange_hash(agreement, CLIENT_IDENT, session.server_ident, ours,
                             server_kexinit, reply.host_key, reply.server_public, k)
    await session.receive_skipping({wire.MSG_NEWKEYS})
    await session.send(bytes([wire.MSG_NEWKEYS]))
    session.sealer = crypto.PacketSealer(
        crypto.direction_keys(agreement, k, h, c2s, mac_c2s, client_to_server=True),
        session.send_seq)
    session.opener = crypto.PacketOpener(
        crypto.direction_keys(agreement, k, h, s2c, mac_s2c, client_to_server=False),
        session.recv_seq)
    return kex_name, reply.host_key_type[:64]


async def ssh_auth_methods(ctx: ProbeContext, params: Params) -> Observation:
    """Complete a key exchange, then ask with the "none" method which login methods the
    server lets ``user`` try (RFC 4252 5.2). Nothing is ever guessed.

    Fields: user, methods (comma list), password ("yes"/"no": password or
    keyboard-interactive offered), none_accepted ("yes" when "none" itself logged in),
    software, kex (the key exchange completed), host_key_type. Raises ProbeFailure when the
    key exchange or userauth cannot be completed.
    """
    user = params.text("user", "mamori-probe")
    session = await _open(ctx)
    try:
        ident = await session.identify()
        server_kexinit, kexinit = await _server_kexinit(session)
        kex_name, host_key_type = await key_exchange(session, server_kexinit, kexinit)
        await session.send(wire.build_service_request("ssh-userauth"))
        await session.receive_skipping({wire.MSG_SERVICE_ACCEPT})
        await session.send(wire.build_userauth_none(user))
        payload = await session.receive_skipping({wire.MSG_USERAUTH_FAILURE,
                                                  wire.MSG_USERAUTH_SUCCESS})
    finally:
        await session.stream.close()
    answer = wire.parse_userauth_reply(payload)
    if answer is None:
        raise ProbeFailure(ErrorKind.PROTOCOL, "malformed userauth reply")
    methods = ",".join(answer.methods)[:256]
    password = {"password", "keyboard-interactive"} & set(answer.methods)
    fields = {
        "user": user,
        "methods": "none (logged in without authentication)" if answer.success else methods,
        "password": "yes" if password or answer.success else "no",
        "password_methods": ",".join(sorted(password)) or "none",
        "none_accepted": "yes" if answer.success else "no",
        "software": ident.decode("ascii", "replace")[:128],
        "kex": kex_name,
        "host_key_type": host_key_type,
    }
    return Observation(
        test=(f"completed an SSH key exchange ({kex_name}, host key {host_key_type}), then "
              f"sent a userauth request with method \"none\" for user {user!r} to learn "
              "which login methods the server offers"),
        fields=fields,
        request=f"SSH_MSG_USERAUTH_REQUEST user={user} service=ssh-connection method=none",
        reply=(f"{ident.decode('ascii', 'replace')[:128]} ... SSH_MSG_USERAUTH_"
               + ("SUCCESS" if answer.success else f"FAILURE methods={methods}")),
    )


PRIMITIVES: dict[str, Primitive] = {
    "ssh_kexinit": ssh_kexinit,
    "ssh_auth_methods": ssh_auth_methods,
}
