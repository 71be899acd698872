"""Facts about one X.509 certificate, and the trust store. Pure but for reading the store.

Who signed it (also when the hash is one ``cryptography`` no longer verifies), whether it is a
CA, its names and how a name matches them (RFC 6125), how strong its key and signature are.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import warnings
from functools import cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from mamori.model import ErrorKind
from mamori.net.stream import ProbeFailure

MAX_NAMES = 50  # subjectAltName entries kept
_MIN_BITS = {"RSA": 2048, "DSA": 2048, "EC": 256}  # below these a key is weak (NIST SP 800-57)

# Signature algorithms whose hash allows forged certificates (collisions), by OID.
WEAK_SIGNATURES: dict[str, tuple[str, str]] = {
    "1.2.840.113549.1.1.2": ("md2WithRSAEncryption", "MD2"),
    "1.2.840.113549.1.1.3": ("md4WithRSAEncryption", "MD4"),
    "1.2.840.113549.1.1.4": ("md5WithRSAEncryption", "MD5"),
    "1.2.840.113549.1.1.5": ("sha1WithRSAEncryption", "SHA-1"),
    "1.3.14.3.2.29": ("sha1WithRSASignature", "SHA-1"),
    "1.2.840.10045.4.1": ("ecdsa-with-SHA1", "SHA-1"),
    "1.2.840.10040.4.3": ("dsa-with-sha1", "SHA-1"),
}


def subject_words(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:128] or "(empty subject)"


# What cryptography raises for a certificate that loads but whose parts do not decode.
UNDECODABLE = (ValueError, KeyError, TypeError, UnicodeError, UnsupportedAlgorithm,
               x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def unreadable(cert: x509.Certificate) -> str | None:
    """Why a certificate that loaded cannot be judged (a name, date or extension that does
    not decode), or None. ``cryptography`` parses lazily: every part the judgement reads is
    read here once, so that a hostile certificate is an error, not an exception later."""
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number,
             cert.signature_algorithm_oid, cert.tbs_certificate_bytes, cert.signature)
        for ext in cert.extensions:
            _ = ext.value
    except UNDECODABLE as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Does ``issuer``'s name and key sign ``cert``?"""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        # cryptography no longer verifies MD5/SHA-1 certificate signatures; the chain must
        # still be followed to say that this is what is wrong with it.
        return _legacy_signature_valid(cert, issuer)
    except (TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _legacy_signature_valid(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Check a signature made with a hash of WEAK_SIGNATURES by hand (PKCS#1 v1.5, ECDSA,
    DSA): it proves who signed; how weak that proof is, is weak_signature()'s finding."""
    if cert.signature_algorithm_oid.dotted_string not in WEAK_SIGNATURES:
        return False
    try:
        digest = cert.signature_hash_algorithm
        key = issuer.public_key()
        if digest is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, digest)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and issued_by(cert, cert)


def basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        value = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return value if isinstance(value, x509.BasicConstraints) else None


def is_ca(cert: x509.Certificate) -> bool:
    bc = basic_constraints(cert)
    return bc is not None and bc.ca


# --- key and signature strength ---------------------------------------------------------------


def describe_key(cert: x509.Certificate) -> tuple[str, bool]:
    """The certificate's public key in words ("RSA 2048 bits") and whether it is weak."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported key", False
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits", key.key_size < _MIN_BITS["RSA"]
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits", key.key_size < _MIN_BITS["DSA"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return (f"EC {key.curve.name} ({key.curve.key_size} bits)",
                key.curve.key_size < _MIN_BITS["EC"])
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", False
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", False
    return type(key).__name__, False


def weak_signature(cert: x509.Certificate) -> str | None:
    """"sha1WithRSAEncryption (SHA-1)" when the certificate's signature uses a broken hash."""
    oid = cert.signature_algorithm_oid.dotted_string
    if oid in WEAK_SIGNATURES:
        name, digest = WEAK_SIGNATURES[oid]
        return f"{name} ({digest})"
    try:
        digest_alg = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if isinstance(digest_alg, hashes.SHA1 | hashes.MD5):
        label = "SHA-1" if isinstance(digest_alg, hashes.SHA1) else "MD5"
        return f"{cert.signature_algorithm_oid._name} ({label})"
    return None


# --- names ------------------------------------------------------------------------------------


def san_names(cert: x509.Certificate) -> list[x509.DNSName | x509.IPAddress]:
    """The subjectAltName DNS names, then its IP addresses (at most MAX_NAMES)."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    if not isinstance(san, x509.SubjectAlternativeName):
        return []
    dns: list[x509.DNSName | x509.IPAddress] = [n for n in san if isinstance(n, x509.DNSName)]
    ips = [n for n in san if isinstance(n, x509.IPAddress)]
    return [*dns, *ips][:MAX_NAMES]


def name_matches(target: str, cert: x509.Certificate, names: list[str]) -> bool:
    """RFC 6125 matching on subjectAltName; the subject CN only when there is no SAN at all
    (as OpenSSL does; browsers no longer do). Wildcards only as the whole leftmost label."""
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None:
        return any(_same_ip(ip, n) for n in names)
    candidates = [n for n in names if not looks_ip(n)]
    if not names:
        candidates = [str(a.value) for a in cert.subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)]
    host = target.rstrip(".").lower()
    return any(_dns_match(host, c.rstrip(".").lower()) for c in candidates)


def looks_ip(name: str) -> bool:
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


# --- the trust store --------------------------------------------------------------------------


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


def trust_anchors(ca_file: str | None) -> list[x509.Certificate]:
    """The system roots plus the user's CA file (``--ca-file``), in that order.
    Raises ProbeFailure when the CA file cannot be read or holds no PEM certificate."""
    anchors = list(_system_anchors())
    if ca_file:
        try:
            with open(ca_file, "rb") as fh:
                anchors.extend(x509.load_pem_x509_certificates(fh.read()))
        except (OSError, ValueError) as exc:
            raise ProbeFailure(ErrorKind.OS, f"cannot read CA file {ca_file}: {exc}") from None
    return anchors
