"""TLS: which old versions and weak ciphers a server accepts, and what its certificate proves.

Versions and ciphers are probed with raw ClientHellos (Python's ``ssl`` refuses to offer SSLv3
and, at its defaults, TLS 1.0/1.1): the server's ServerHello decides. The certificate is
fetched with a non-verifying handshake and then judged here with the ``cryptography``
package against the system trust store (plus ``CheckOptions.ca_file``) and the target name.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtensionOID, NameOID

from mamori.checks.observation import Observation, ProbeContext, excerpt
from mamori.checks.params import Params
from mamori.checks.primitive import Primitive
from mamori.model import ErrorKind
from mamori.net.stream import BoundedStream, ProbeFailure, exchange, insecure_tls_context
from mamori.protocols import tls as proto

_MAX_CHAIN = 10  # certificates judged from one server; more is a misbehaving peer
_MAX_NAMES = 50  # subjectAltName entries kept


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
    judge them: validity period, self-signed, chain to a trusted root, name.

    Fields: subject, issuer, not_before, not_after, expired, not_yet_valid, self_signed,
    trusted, trust_detail, target_name, name_match, names, grade ("hostname" when a name
    was given, "address" when only the address was), chain_length, tls_version.
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
    try:
        chain = [x509.load_der_x509_certificate(d) for d in ders[:_MAX_CHAIN]]
    except ValueError as exc:
        raise ProbeFailure(ErrorKind.PROTOCOL, f"unparsable certificate: {exc}") from None
    anchors = _anchors(ctx.options.ca_file)
    target = ctx.hostname or ctx.address
    fields = judge_certificate(chain, anchors, target, datetime.now(UTC))
    # A name the user gave is the name clients use; an address alone may not be.
    by_name = bool(ctx.hostname) and not _looks_ip(target)
    fields.update(tls_version=version, grade="hostname" if by_name else "address")
    leaf = chain[0]
    store = "system store" + (f" + {ctx.options.ca_file}" if ctx.options.ca_file else "")
    return Observation(
        test=(f"completed a TLS handshake without verification, then checked the "
              f"{len(chain)} certificate(s) sent for validity dates, issuer trust "
              f"({store}) and the name {target}"),
        fields=fields,
        request=f"TLS ClientHello (SNI: {ctx.hostname or 'none'})",
        reply=excerpt(f"subject={fields['subject']} issuer={fields['issuer']} "
                      f"notBefore={fields['not_before']} notAfter={fields['not_after']} "
                      f"names={fields['names']} serial={leaf.serial_number:x}", 512),
    )


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


def judge_certificate(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    target: str,
    now: datetime,
) -> dict[str, str]:
    """Pure verdicts on a server's certificate chain (leaf first). Returns string fields."""
    leaf = chain[0]
    names = _san_names(leaf)
    self_signed = leaf.issuer == leaf.subject and _issued_by(leaf, leaf)
    trusted, detail = _trust(leaf, chain[1:], anchors)
    match = _name_matches(target, leaf, names)
    return {
        "subject": leaf.subject.rfc4514_string()[:256],
        "issuer": leaf.issuer.rfc4514_string()[:256],
        "not_before": leaf.not_valid_before_utc.isoformat(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "expired": "yes" if now > leaf.not_valid_after_utc else "no",
        "days_expired": str(max(0, (now - leaf.not_valid_after_utc).days)),
        "not_yet_valid": "yes" if now < leaf.not_valid_before_utc else "no",
        "self_signed": "yes" if self_signed else "no",
        "trusted": "yes" if trusted else "no",
        "trust_detail": detail,
        "target_name": target[:256],
        "name_match": "yes" if match else "no",
        "names": ",".join(names)[:512] or "(no subjectAltName)",
        "chain_length": str(len(chain)),
    }


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def _trust(leaf: x509.Certificate, presented: Sequence[x509.Certificate],
           anchors: Sequence[x509.Certificate]) -> tuple[bool, str]:
    """Walk issuer signatures from the leaf through the presented intermediates to a trust
    anchor. Dates are judged by their own checks, not here. Returns (trusted, why)."""
    anchor_ders = {a.tbs_certificate_bytes for a in anchors}
    current = leaf
    for _ in range(_MAX_CHAIN):
        if current.tbs_certificate_bytes in anchor_ders:
            return True, f"{current.subject.rfc4514_string()[:128]} is a trusted certificate"
        for anchor in anchors:
            if _issued_by(current, anchor):
                return True, f"chains to trusted root {anchor.subject.rfc4514_string()[:128]}"
        nxt = next((c for c in presented
                    if c is not current and _is_ca(c) and _issued_by(current, c)), None)
        if nxt is None:
            return False, (f"no trusted issuer for {current.subject.rfc4514_string()[:128]} "
                           f"(issuer {current.issuer.rfc4514_string()[:128]})")
        current = nxt
    return False, "chain too long"


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    if not isinstance(san, x509.SubjectAlternativeName):
        return []
    dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    return (dns + ips)[:_MAX_NAMES]


def _name_matches(target: str, cert: x509.Certificate, names: list[str]) -> bool:
    """RFC 6125 matching on subjectAltName; the subject CN only when there is no SAN at all
    (as OpenSSL does; browsers no longer do). Wildcards only as the whole leftmost label."""
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None:
        return any(_same_ip(ip, n) for n in names)
    candidates = [n for n in names if not _looks_ip(n)]
    if not names:
        candidates = [str(a.value) for a in cert.subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)]
    host = target.rstrip(".").lower()
    return any(_dns_match(host, c.rstrip(".").lower()) for c in candidates)


def _looks_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _same_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, name: str) -> bool:
    try:
        return ipaddress.ip_address(name) == ip
    except ValueError:
        return False


def _dns_match(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:] and "." in rest
    return host == pattern


@cache
def _system_anchors() -> tuple[x509.Certificate, ...]:
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                 "/etc/ssl/cert.pem"):
        if path and os.path.isfile(path):
            try:
                with open(path, "rb") as fh, warnings.catch_warnings():
                    # Some system roots carry non-positive serials; cryptography warns, and
                    # that is not the owner's concern here.
                    warnings.simplefilter("ignore")
                    return tuple(x509.load_pem_x509_certificates(fh.read()))
            except (OSError, ValueError):
                continue
    return ()


def _anchors(ca_file: str | None) -> list[x509.Certificate]:
    """System roots plus the user's CA file. Raises ProbeFailure when the CA file is bad."""
    anchors = list(_system_anchors())
    if ca_file:
        try:
            with open(ca_file, "rb") as fh:
                anchors.extend(x509.load_pem_x509_certificates(fh.read()))
        except (OSError, ValueError) as exc:
            raise ProbeFailure(ErrorKind.OS, f"cannot read CA file {ca_file}: {exc}") from None
    return anchors


PRIMITIVES: dict[str, Primitive] = {"tls_hello": tls_hello, "tls_certificate": tls_certificate}
