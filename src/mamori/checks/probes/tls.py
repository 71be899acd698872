"""TLS: which old versions and weak ciphers a server accepts, and what its certificate proves.

Versions and ciphers are probed with raw ClientHellos (Python's ``ssl`` refuses to offer SSLv3
and, at its defaults, TLS 1.0/1.1): the server's ServerHello decides. The certificate is
fetched with a non-verifying handshake (one that completes even with SHA-1 or RSA-1024
certificates, which must be seen to be reported) and judged by ``tls_chain`` against the
system trust store (plus ``CheckOptions.ca_file``) and the target name.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.checks.probes.tls_aia import with_aia
from mamori.checks.probes.tls_certs import UNDECODABLE, looks_ip, trust_anchors, unreadable
from mamori.checks.probes.tls_chain import judge_certificate
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, exchange, insecure_tls_context
from mamori.protocols import tls as proto

_MAX_CHAIN = 10  # certificates taken from one server; more is a misbehaving peer


def _hello_reply_done(buf: bytes) -> bool:
    return proto.reply_complete(buf)


async def tls_hello(ctx: ProbeContext, params: Params) -> Observation:
    """Send one raw ClientHello offering ``version`` as the highest version and the cipher set
    ``suites`` ("broad" or "weak"); report whether the server accepted and what it chose.

    Fields: offered, accepted ("yes"/"no"), version, cipher, cipher_code; for the weak set
    also weak_cipher and weakness when the server chose a weak suite; refusal (alert name or
    "closed"). Raises ProbeFailure on connection failures and on a reply that is not TLS.
    """
    version_name = params.text("version", "TLSv1.2")
    if version_name not in proto.VERSION_CODES:
        raise ProbeFailure(ErrorKind.INTERNAL, f"check asks for unknown version {version_name}")
    version = proto.VERSION_CODES[version_name]
    suite_set = params.text("suites", "broad")
    suites = tuple(proto.WEAK_SUITES) if suite_set == "weak" else proto.BROAD_SUITES
    hello = proto.build_version_hello(version, suites, ctx.hostname, os.urandom(32))
    try:
        reply = await exchange(ctx.address, ctx.port, hello, ctx.options.limits,
                               done=_hello_reply_done)
    except ProbeFailure as exc:
        # A reset right after our hello is how some stacks refuse a version they dropped.
        if exc.stage == "read" and exc.kind is ErrorKind.RESET and not exc.partial:
            reply = b""
        else:
            raise
    test = (f"sent a ClientHello offering {version_name} at most, with "
            f"{'only weak' if suite_set == 'weak' else 'common'} cipher suites "
            f"({len(suites)} suites)")
    fields = {"offered": version_name}
    if not reply:
        fields.update(accepted="no", refusal="closed")
    else:
        outcome = proto.parse_hello_outcome(reply)
        if outcome is None:
            raise ProbeFailure(ErrorKind.PROTOCOL, "reply is not a TLS ServerHello or alert",
                               partial=reply[:256])
        fields.update(_outcome_fields(outcome, version, suites, suite_set == "weak"))
    return Observation(test=test, fields=fields, request=excerpt(hello, 256),
                       reply=excerpt(reply, 256))


def _outcome_fields(outcome: proto.HelloOutcome, offered: int, suites: Sequence[int],
                    weak: bool) -> dict[str, str]:
    if not outcome.accepted:
        return {"accepted": "no", "refusal": outcome.alert or "alert"}
    fields = {"version": outcome.version_name,
              "cipher_code": f"0x{outcome.cipher or 0:04x}"}
    # A server that answers above what we offered, or with a suite we never offered,
    # breaks the protocol: that is not proof of acceptance.
    if outcome.version is None or outcome.version > offered or outcome.cipher not in suites:
        fields.update(accepted="no", refusal="protocol violation in ServerHello")
        return fields
    fields["accepted"] = "yes" if outcome.version == offered or weak else "no"
    if outcome.version != offered and not weak:
        fields["refusal"] = f"answered with {outcome.version_name} instead"
    if weak and outcome.cipher is not None:
        name, why = proto.WEAK_SUITES[outcome.cipher]
        fields.update(cipher=name, weak_cipher=name, weakness=why)
    return fields


# --- certificates -----------------------------------------------------------------------------


async def tls_certificate(ctx: ProbeContext, params: Params) -> Observation:
    """Complete a TLS handshake without verifying, take the certificates the server sent and
    judge them as a verifying client would (``tls_chain.judge_certificate``).

    Fields: those of ``judge_certificate`` (subject, issuer, dates, self_signed, verified,
    trusted, trust_reason, trust_detail, name_match, names, key, weak_key(s),
    weak_signature(s), ...), grade ("hostname" when a name was given, "address" when only
    the address was), tls_version.
    Raises ProbeFailure when the handshake fails or no certificate comes back.
    """
    del params
    stream = await BoundedStream.open(ctx.address, ctx.port, ctx.options.limits,
                                      insecure_tls_context(), ctx.hostname)
    try:
        ders = _peer_chain(stream)
        version = stream.tls_version or "?"
    finally:
        await stream.close()
    if not ders:
        raise ProbeFailure(ErrorKind.TLS, "server sent no certificate")
    chain = _load_chain(ders)
    anchors = trust_anchors(ctx.options.ca_file)
    target = ctx.hostname or ctx.address
    now = datetime.now(UTC)
    fields = await with_aia(judge_certificate(chain, anchors, target, now), chain, anchors,
                            target, now, ctx)
    # A name the user gave is the name clients use; an address alone may not be.
    by_name = bool(ctx.hostname) and not looks_ip(target)
    fields.update(tls_version=version, grade="hostname" if by_name else "address")
    leaf = chain[0]
    store = "system store" + (f" + {ctx.options.ca_file}" if ctx.options.ca_file else "")
    return Observation(
        test=(f"TLS handshake without verification; cryptography's X.509 verifier checked "
              f"the {len(chain)} certificate(s) sent for {target} against the {store}; key "
              f"sizes and signature hashes checked too"),
        fields=fields,
        request=f"TLS ClientHello (SNI: {ctx.hostname or 'none'})",
        reply=excerpt(f"subject={fields['subject']} issuer={fields['issuer']} "
                      f"notBefore={fields['not_before']} notAfter={fields['not_after']} "
                      f"names={fields['names']} serial={leaf.serial_number:x}", 512),
    )


def _load_chain(ders: list[bytes]) -> list[x509.Certificate]:
    """The certificates, every part the judgement reads decoded once. Raises ProbeFailure
    (protocol) for one that does not decode: a server may send any bytes."""
    chain: list[x509.Certificate] = []
    with warnings.catch_warnings():
        # A non-positive serial only draws a deprecation warning: nothing for the user.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for number, der in enumerate(ders[:_MAX_CHAIN], start=1):
            try:
                cert = x509.load_der_x509_certificate(der)
                why = unreadable(cert)
            except UNDECODABLE as exc:
                why = f"{type(exc).__name__}: {exc}"[:200]
            if why is not None:
                raise ProbeFailure(ErrorKind.PROTOCOL, f"certificate {number} of "
                                   f"{len(ders[:_MAX_CHAIN])} does not decode: {why}")
            chain.append(cert)
    return chain


def _peer_chain(stream: BoundedStream) -> list[bytes]:
    """DER certificates the peer sent, leaf first. Python 3.11 exposes the unverified chain
    only on the private _sslobj (public from 3.13); fall back to the leaf alone."""
    obj = stream.ssl_object
    if obj is None:
        return []
    inner = getattr(obj, "_sslobj", None)
    getter = getattr(inner, "get_unverified_chain", None) or getattr(
        obj, "get_unverified_chain", None)
    if getter is not None:
        certs = getter() or []
        out = [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs[:_MAX_CHAIN]]  # type: ignore[attr-defined]
        if out:
            return out
    leaf = obj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


PRIMITIVES: dict[str, Primitive] = {"tls_hello": tls_hello, "tls_certificate": tls_certificate}
