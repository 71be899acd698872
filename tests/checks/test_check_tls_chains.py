"""Certificate trust as a real client judges it: nginx serving chains a verifier rejects
(clientAuth-only leaf, a broken name constraint, a broken pathLen), weak chains (RSA-1024
leaf, SHA-1 signature), and their hardened twin, which must stay clean."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import server as httpd
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_chains as fch
import fixtures_crypto as fc
from checks_helpers import assert_finding, assert_passed, run_check
from conftest import run_mamori
from mamori.checks.catalog import default_catalog
from mamori.checks.engine import run_checks
from mamori.checks.observation import CheckOptions
from mamori.checks.probes.tls import _load_chain
from mamori.checks.probes.tls_certs import trust_anchors
from mamori.checks.probes.tls_chain import DATES_AND_NAME, STRUCTURAL, WEAK, judge_certificate
from mamori.model import (
    CheckResult,
    CheckStatus,
    Endpoint,
    ErrorKind,
    PortState,
    Proto,
    Reason,
    Service,
)
from mamori.net.stream import ProbeFailure

TLS_CHECKS = sorted(c for c in default_catalog() if c.startswith("tls-"))

SERVERS = {
    "good": ("127.0.67.1", 16701),
    "client-auth": ("127.0.67.2", 16702),
    "name-constraints": ("127.0.67.3", 16703),
    "path-length": ("127.0.67.4", 16704),
    "rsa-1024": ("127.0.67.5", 16705),
    "sha1": ("127.0.67.6", 16706),
    "incomplete": ("127.0.86.30", 18630),  # the leaf alone: its intermediate is not sent
    "incomplete-aia": ("127.0.86.32", 18632),  # the same, naming fch.AIA_URL as its issuer's
}


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fch.Chains]:
    work = tmp_path_factory.mktemp("chains")
    made = fch.make_chains(work / "pki", {n: h for n, (h, _) in SERVERS.items()})
    with dm.running(fch.start_nginx_chains, work / "nginx", SERVERS, made) as nginx:
        assert not dm.listeners_on_wildcard([nginx.proc.pid])
        yield made


def _run_all(name: str, options: CheckOptions, hostname: str | None) -> dict[str, CheckResult]:
    host, port = SERVERS[name]
    specs = [default_catalog()[c] for c in TLS_CHECKS]
    ep = Endpoint(host, port, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks(specs, ep, Service("https", tls=True), hostname=hostname,
                                     options=options))
    return {r.check_id: r for r in results}


# Each chain breaks one rule: exactly one finding, with the reason a person can act on, and
# every other TLS check passes (so none of them fires on a neighbour's fault).
@pytest.mark.daemon
@pytest.mark.parametrize("hostname", ["mamori.test", None])
@pytest.mark.parametrize("name,check_id,reason,words", [
    ("good", None, "none", ""),
    ("client-auth", "tls-certificate-untrusted", "eku", "clientAuth"),
    ("name-constraints", "tls-certificate-untrusted", "name-constraints", "example.org"),
    ("path-length", "tls-certificate-untrusted", "path-length", "pathLenConstraint 0"),
    ("rsa-1024", "tls-certificate-weak-key", "none", "RSA 1024"),
    ("sha1", "tls-certificate-weak-signature", "weak-signature", "SHA-1"),
    ("incomplete", "tls-certificate-incomplete-chain", "incomplete-chain",
     "mamori chain-test intermediate"),
])
def test_each_chain_is_judged_as_a_verifier_does(
    chains: fch.Chains, name: str, check_id: str | None, reason: str, words: str,
    hostname: str | None,
) -> None:
    results = _run_all(name, CheckOptions(ca_file=str(chains.ca_file)), hostname)
    assert set(results) == set(TLS_CHECKS)
    findings = {c for c, r in results.items() if r.status is CheckStatus.FINDING}
    expected = {check_id} if check_id else set()
    assert findings == expected, {c: results[c].summary for c in findings ^ expected}
    for other in set(TLS_CHECKS) - expected:
        assert_passed(results[other])
    trust = results["tls-certificate-untrusted"].evidence
    assert trust is not None and trust.facts["trust_reason"] == reason, trust.facts
    if check_id is None:
        return
    result = results[check_id]
    assert_finding(result)
    assert result.evidence is not None
    facts = result.evidence.facts
    assert words in result.summary, result.summary
    if check_id == "tls-certificate-untrusted":
        assert facts["trust_reason"] == reason
        assert words in facts["trust_detail"]


@contextlib.contextmanager
def _aia_server(body: bytes) -> Iterator[list[str]]:
    """An HTTP server at fch.AIA_URL's address answering every GET with ``body``; yields the
    paths asked for."""
    hits: list[str] = []

    class Handler(httpd.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-cert")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = httpd.ThreadingHTTPServer((fch.AIA_HOST, fch.AIA_PORT), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield hits
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.daemon
def test_aia_url_is_fetched_only_when_allowed(chains: fch.Chains) -> None:
    check, where = "tls-certificate-incomplete-chain", SERVERS["incomplete-aia"]
    with _aia_server(chains.intermediate_der.read_bytes()) as hits:
        off = run_check(check, *where, "https", tls=True,
                        options=CheckOptions(ca_file=str(chains.ca_file)))
        assert_finding(off)
        assert hits == []  # outside fetches are off by default
        facts = off.evidence.facts  # type: ignore[union-attr]
        assert facts["aia_ca_issuers"] == fch.AIA_URL
        assert "was not fetched" in facts["trust_detail"] and "--fetch-aia" in facts["trust_detail"]
        on = run_check(check, *where, "https", tls=True,
                       options=CheckOptions(ca_file=str(chains.ca_file), fetch_aia=True))
        assert hits == ["/intermediate.der"]
    # Still a finding (the server does not send it), now with what the download showed.
    assert_finding(on)
    detail = on.evidence.facts["trust_detail"]  # type: ignore[union-attr]
    assert "fetched" in detail and "mamori chain-test root" in detail, detail
    assert "the chain completes" in detail


@pytest.mark.daemon
@pytest.mark.parametrize("body,words", [
    (b"not a certificate", "not a certificate"),
    (b"\x30\x82" + b"\x00" * 70000, "more than"),
], ids=["garbage", "huge"])
def test_a_bad_aia_answer_is_a_recorded_error(chains: fch.Chains, body: bytes,
                                              words: str) -> None:
    with _aia_server(body) as hits:
        result = run_check("tls-certificate-incomplete-chain", *SERVERS["incomplete-aia"],
                           "https", tls=True,
                           options=CheckOptions(ca_file=str(chains.ca_file), fetch_aia=True))
    assert hits == ["/intermediate.der"]
    assert_finding(result)
    detail = result.evidence.facts["trust_detail"]  # type: ignore[union-attr]
    assert "could not be used" in detail and words in detail, detail


@pytest.mark.daemon
def test_findings_state_evidence_and_test(chains: fch.Chains) -> None:
    options = CheckOptions(ca_file=str(chains.ca_file))
    eku = run_check("tls-certificate-untrusted", *SERVERS["client-auth"], "https", tls=True,
                    options=options, hostname="mamori.test")
    assert eku.evidence is not None
    assert "verifier" in eku.evidence.test and "system store" in eku.evidence.test
    key = run_check("tls-certificate-weak-key", *SERVERS["rsa-1024"], "https", tls=True,
                    options=options)
    assert key.evidence is not None and key.evidence.facts["key"] == "RSA 1024 bits"
    sig = run_check("tls-certificate-weak-signature", *SERVERS["sha1"], "https", tls=True,
                    options=options)
    assert sig.evidence is not None
    assert "sha1WithRSAEncryption" in sig.evidence.facts["weak_signatures"]
    assert "mamori.test" in sig.evidence.facts["weak_signatures"]


@pytest.mark.daemon
def test_store_is_system_roots_plus_ca_file(chains: fch.Chains) -> None:
    # Without --ca-file the hardened twin's root is unknown: untrusted, and the reason says so.
    without = run_check("tls-certificate-untrusted", *SERVERS["good"], "https", tls=True,
                        hostname="mamori.test")
    assert_finding(without)
    assert without.evidence is not None
    assert without.evidence.facts["trust_reason"] == "unknown-issuer"
    assert "mamori chain-test root" in without.evidence.facts["trust_detail"]
    # --ca-file adds to the system roots, it does not replace them.
    system = trust_anchors(None)
    with_file = trust_anchors(str(chains.ca_file))
    assert len(system) > 20 and with_file[: len(system)] == system
    assert [c.subject.rfc4514_string() for c in with_file[len(system):]] == [
        "CN=mamori chain-test root"]


# --- pure parts: the reasons, the weak-key and weak-signature tables -------------------------

NOW = datetime.now(UTC)


def _judge(chain: list[x509.Certificate], anchors: list[x509.Certificate],
           target: str = "mamori.test") -> dict[str, str]:
    return judge_certificate(chain, anchors, target, NOW)


def test_good_chain_is_trusted_with_no_reason() -> None:
    root = fch.make_ca("r")
    inter = fch.make_ca("i", root)
    leaf, _ = fch.make_leaf(["mamori.test"], inter)
    fields = _judge([leaf, inter[0]], [root[0]])
    assert fields["trusted"] == "yes" and fields["trust_reason"] == "none"
    assert fields["weak_key"] == "no" and fields["weak_signature"] == "no"
    assert fields["key"] == "EC secp256r1 (256 bits)"


@pytest.mark.parametrize("eku,trusted", [
    ((ExtendedKeyUsageOID.CLIENT_AUTH,), "no"),
    ((ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH), "yes"),
    ((ExtendedKeyUsageOID.CODE_SIGNING,), "no"),
])
def test_eku_verdict(eku: tuple[x509.ObjectIdentifier, ...], trusted: str) -> None:
    root = fch.make_ca("r")
    leaf, _ = fch.make_leaf(["mamori.test"], root, eku=eku)
    fields = _judge([leaf], [root[0]])
    assert fields["trusted"] == trusted
    assert fields["trust_reason"] == ("eku" if trusted == "no" else "none")


def test_unknown_issuer_and_self_signed_reasons() -> None:
    root = fch.make_ca("r")
    stranger = fch.make_ca("stranger")
    leaf, _ = fch.make_leaf(["mamori.test"], stranger)
    fields = _judge([leaf, stranger[0]], [root[0]])
    assert fields["trust_reason"] == "unknown-issuer", fields["trust_detail"]
    assert "stranger" in fields["trust_detail"]
    missing_inter = fch.make_ca("i", root)
    leaf, _ = fch.make_leaf(["mamori.test"], missing_inter)
    fields = _judge([leaf], [root[0]])  # the server forgot its intermediate
    assert fields["trust_reason"] == "incomplete-chain", fields["trust_detail"]
    assert "CN=i" in fields["trust_detail"] and "does not send" in fields["trust_detail"]
    assert fields["aia_ca_issuers"] == "none"


def test_incomplete_chain_names_the_aia_url_without_fetching_it() -> None:
    root = fch.make_ca("r")
    inter = fch.make_ca("i", root)
    leaf, _ = fch.make_leaf(["mamori.test"], inter, aia="http://127.0.86.99:9/i.der")
    fields = _judge([leaf], [root[0]])
    assert fields["trust_reason"] == "incomplete-chain"
    assert fields["aia_ca_issuers"] == "http://127.0.86.99:9/i.der"
    # With the intermediate sent, the same leaf is trusted: the reason was the chain alone.
    assert _judge([leaf, inter[0]], [root[0]])["trust_reason"] == "none"


def test_expired_and_name_mismatch_reasons_do_not_make_the_chain_untrusted() -> None:
    # Dates and names have their own checks: the chain is trusted, the reason is specific.
    root = fch.make_ca("r")
    leaf, _ = fch.make_leaf(["other.test"], root)
    fields = _judge([leaf], [root[0]])
    assert fields["trusted"] == "yes" and fields["trust_reason"] == "name-mismatch"
    fields = judge_certificate([leaf], [root[0]], "other.test", NOW + timedelta(days=200))
    assert fields["trusted"] == "yes" and fields["trust_reason"] == "expired"
    fields = judge_certificate([leaf], [root[0]], "other.test", NOW - timedelta(days=20))
    assert fields["trust_reason"] == "not-yet-valid"


@pytest.mark.parametrize("make_key,label,weak", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA 1024 bits",
     "yes"),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA 2048 bits",
     "no"),
    (lambda: ec.generate_private_key(ec.SECP224R1()), "EC secp224r1 (224 bits)", "yes"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "EC secp384r1 (384 bits)", "no"),
])
def test_weak_leaf_keys(make_key, label: str, weak: str) -> None:  # type: ignore[no-untyped-def]
    root = fch.make_ca("r")
    leaf, _ = fch.make_leaf(["mamori.test"], root, key=make_key())
    fields = _judge([leaf], [root[0]])
    assert fields["key"] == label and fields["weak_key"] == weak


@pytest.mark.parametrize("algorithm,label", [("sha1", "SHA-1"), ("md5", "MD5")])
def test_weak_signatures_on_the_chain(algorithm: str, label: str) -> None:
    root = fch.make_ca("r", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    leaf, _ = fch.make_leaf(["mamori.test"], root)
    assert isinstance(root[1], rsa.RSAPrivateKey)
    weak_leaf = fch.resign_rsa(leaf, root[1], algorithm)
    fields = _judge([weak_leaf], [root[0]])
    assert fields["weak_signature"] == "yes" and label in fields["weak_signatures"]
    assert fields["trusted"] == "no" and fields["trust_reason"] == "weak-signature"


def test_self_signed_roots_own_sha1_signature_is_not_counted() -> None:
    # Nobody verifies a root's signature on itself: a server that sends its SHA-1 root
    # along with a SHA-256 chain has no weak signature that matters.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = fch.make_ca("old root", key=key)
    old_root = fch.resign_rsa(root[0], key, "sha1")
    leaf, _ = fch.make_leaf(["mamori.test"], root)
    fields = _judge([leaf, old_root], [old_root])
    assert fields["weak_signature"] == "no", fields["weak_signatures"]
    assert fields["trusted"] == "yes"


def test_self_signed_leafs_own_sha1_signature_is_a_fact_not_a_weakness() -> None:
    # `openssl req -x509 -sha1`: nobody verifies the signature of a certificate on itself,
    # so it is no weak signature; the self-signed finding still names the hash.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mamori.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mamori.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    leaf = fch.resign_rsa(cert, key, "sha1")
    fields = _judge([leaf], [])
    assert fields["self_signed"] == "yes" and fields["trust_reason"] == "self-signed"
    assert fields["weak_signature"] == "no"
    assert fields["self_signature"] == "sha1WithRSAEncryption (SHA-1)"
    spec = default_catalog()["tls-certificate-self-signed"]
    assert "self_signature" in spec.evidence


def test_leaf_without_subject_alt_name_is_untrusted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mamori.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    fields = _judge([cert], [cert])
    assert fields["trusted"] == "no" and fields["trust_reason"] == "no-subject-alt-name"


def test_a_leaf_that_signs_another_is_not_a_ca() -> None:
    root = fch.make_ca("r")
    signer = fch.make_leaf(["signer.test"], root)
    leaf, _ = fch.make_leaf(["mamori.test"], signer)  # type: ignore[arg-type]
    fields = _judge([leaf, signer[0]], [root[0]])
    assert fields["trusted"] == "no" and fields["trust_reason"] == "not-a-ca"
    assert "CN=signer.test" in fields["trust_detail"]


def test_excluded_and_ip_name_constraints() -> None:
    root = fch.make_ca("r")
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
        excluded_subtrees=[x509.DNSName("mamori.test")])
    fenced, key = _bare_ca("fenced", root, None)
    fenced = x509.CertificateBuilder(
        fenced.issuer, fenced.subject, fenced.public_key(), fenced.serial_number,
        fenced.not_valid_before_utc, fenced.not_valid_after_utc,
        [*fenced.extensions, x509.Extension(constraints.oid, True, constraints)],
    ).sign(root[1], hashes.SHA256())
    excluded, _ = fch.make_leaf(["www.mamori.test"], (fenced, key))
    fields = _judge([excluded, fenced], [root[0]], "www.mamori.test")
    assert fields["trust_reason"] == "name-constraints"
    assert "excluded" in fields["trust_detail"]
    outside, _ = fch.make_leaf(["other.test", "192.0.2.7"], (fenced, key))
    fields = _judge([outside, fenced], [root[0]], "other.test")
    assert fields["trust_reason"] == "name-constraints"
    assert "192.0.2.7 is outside" in fields["trust_detail"]
    inside, _ = fch.make_leaf(["other.test", "10.1.2.3"], (fenced, key))
    verdict = _judge([inside, fenced], [root[0]], "other.test")
    assert verdict["trusted"] == "yes", verdict["trust_detail"]


_ROOT = fch.make_ca("pool root")
_INTER = fch.make_ca("pool intermediate", _ROOT)
_POOL = [
    fch.make_leaf(["mamori.test"], _INTER)[0],
    fch.make_leaf(["mamori.test"], _INTER, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))[0],
    fch.make_leaf(["mamori.test"], _ROOT)[0],
    _INTER[0],
    _ROOT[0],
    fch.make_ca("pool stranger")[0],
]
REASONS = {"none", "rejected", *STRUCTURAL, *WEAK, *DATES_AND_NAME}


@given(st.lists(st.sampled_from(_POOL), min_size=1, max_size=6),
       st.sampled_from(["mamori.test", "other.test", "127.0.0.1", "bad name!"]),
       st.lists(st.sampled_from(_POOL), max_size=3),
       st.integers(min_value=-400, max_value=400))
@settings(max_examples=150, deadline=None)
def test_any_chain_gets_one_known_reason(chain: list[x509.Certificate], target: str,
                                         anchors: list[x509.Certificate], days: int) -> None:
    # Whatever a server sends (duplicates, wrong order, loops, strangers), the verdict is one
    # of the named reasons and never an exception; an accepted chain has no reason.
    fields = judge_certificate(chain, anchors, target, NOW + timedelta(days=days))
    assert fields["trust_reason"] in REASONS, fields["trust_detail"]
    assert (fields["verified"] == "yes") == (fields["trust_reason"] == "none")
    if fields["verified"] == "yes":
        assert fields["trusted"] == "yes"


def _bare_ca(cn: str, root: fch.Issuer, usage: x509.KeyUsage | None) -> fch.Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(fch._name(cn))
               .issuer_name(root[0].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(root[1], hashes.SHA256()), key


def test_ca_key_usage_is_optional_but_must_allow_cert_signing() -> None:
    # `openssl req -x509` with OpenSSL's default config makes CAs without keyUsage: browsers
    # and OpenSSL accept them, so mamori does too; a keyUsage without keyCertSign is refused.
    root = fch.make_ca("r")
    plain = _bare_ca("no key usage", root, None)
    leaf, _ = fch.make_leaf(["mamori.test"], plain)
    assert _judge([leaf, plain[0]], [root[0]])["trusted"] == "yes"
    signing_only = _bare_ca("signing only", root, x509.KeyUsage(
        True, False, False, False, False, False, False, False, False))
    leaf, _ = fch.make_leaf(["mamori.test"], signing_only)
    fields = _judge([leaf, signing_only[0]], [root[0]])
    assert fields["trusted"] == "no" and fields["trust_reason"] == "not-a-ca"
    assert "key usage" in fields["trust_detail"]


_DER = [c.public_bytes(serialization.Encoding.DER) for c in _POOL[:4]]


@given(st.integers(min_value=0, max_value=3), st.lists(
    st.tuples(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=255)),
    min_size=1, max_size=4))
@settings(max_examples=400, deadline=None)
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_a_hostile_certificate_never_raises(which: int, edits: list[tuple[int, int]]) -> None:
    # A server can send any bytes that still parse as a certificate (bad extensions, names,
    # keys, signatures): the judgement is made, never an exception that would end the scan.
    der = bytearray(_DER[which])
    for pos, value in edits:
        der[pos % len(der)] = value
    try:
        chain = _load_chain([bytes(der), _DER[3]])  # what the probe does with the bytes
    except ProbeFailure as failure:  # reported as "not tested: protocol: ...", with why
        assert failure.kind is ErrorKind.PROTOCOL
        return
    fields = judge_certificate(chain, [_ROOT[0]], "mamori.test", NOW)
    assert fields["trust_reason"] in REASONS


@pytest.mark.parametrize("mangle,words", [
    (lambda der: der.replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020121"), 1),
     "InvalidVersion"),
    (lambda der: der[:-40], "ShortData"),
    (lambda der: der.replace(b"mamori.test", b"mamori\xfftest"), "does not decode"),
])
def test_an_undecodable_certificate_is_a_protocol_error(mangle, words: str) -> None:  # type: ignore[no-untyped-def]
    # What the probe does with the bytes a server sent: a certificate it cannot read ends the
    # probe with a named protocol error ("not tested: ..."), never an exception.
    good = _DER[0]
    with pytest.raises(ProbeFailure) as failure:
        _load_chain([mangle(good), _DER[3]])
    assert failure.value.kind is ErrorKind.PROTOCOL and words in str(failure.value)
    assert _load_chain([good, _DER[3]])[0].subject == _POOL[0].subject


def test_dates_that_do_not_overlap(tmp_path: Path) -> None:
    # fixtures_crypto's expired leaf ended before its intermediate began: no single moment
    # sets the dates aside, yet the chain itself is sound; only the leaf's date is wrong.
    pki = fc.make_pki(tmp_path, [])
    root = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    expired = x509.load_pem_x509_certificates(pki.expired.fullchain.read_bytes())
    fields = _judge(expired, [root])
    assert fields["trusted"] == "yes" and fields["trust_reason"] == "expired"
    # An intermediate that has expired while the leaf is still valid breaks the chain: that
    # is the untrusted check's to report (the expiry check judges the leaf only).
    root2 = fch.make_ca("r")
    short = _bare_ca("short-lived intermediate", root2, None)  # valid for 9 days
    leaf, _ = fch.make_leaf(["mamori.test"], short)  # valid for 90 days
    fields = judge_certificate([leaf, short[0]], [root2[0]], "mamori.test",
                               NOW + timedelta(days=20))
    assert fields["expired"] == "no"
    assert fields["trusted"] == "no" and fields["trust_reason"] == "expired"
    assert "short-lived intermediate" in fields["trust_detail"]


@pytest.mark.parametrize("usages,reason", [
    ([ExtendedKeyUsageOID.CLIENT_AUTH], "eku"),
    ([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], "none"),
    ([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], "none"),
])
def test_an_intermediates_eku_limits_its_leaves(usages: list[x509.ObjectIdentifier],
                                               reason: str) -> None:
    root = fch.make_ca("r")
    inter, key = fch.make_ca("limited", root)
    eku = x509.ExtendedKeyUsage(usages)
    limited = x509.CertificateBuilder(
        inter.issuer, inter.subject, inter.public_key(), inter.serial_number,
        inter.not_valid_before_utc, inter.not_valid_after_utc,
        [*inter.extensions, x509.Extension(eku.oid, False, eku)],
    ).sign(root[1], hashes.SHA256())
    leaf, _ = fch.make_leaf(["mamori.test"], (limited, key))
    fields = _judge([leaf, limited], [root[0]])
    assert fields["trust_reason"] == reason, fields["trust_detail"]
    if reason == "eku":
        assert "CN=limited" in fields["trust_detail"]


def test_openssl_req_x509_self_signed_certificate(tmp_path: Path) -> None:
    # What `openssl req -x509` makes with OpenSSL's default config (CA:TRUE, no keyUsage):
    # trusted when pinned with --ca-file, as OpenSSL-based clients trust it; self-signed
    # otherwise.
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
                    "/CN=mamori.test", "-addext", "subjectAltName=DNS:mamori.test",
                    "-keyout", str(key_path), "-out", str(cert_path)],
                   check=True, capture_output=True)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    pinned = judge_certificate([cert], [cert], "mamori.test", datetime.now(UTC))
    assert pinned["trusted"] == "yes" and pinned["trust_reason"] == "none"
    assert _judge([cert], [])["trust_reason"] == "self-signed"


def test_a_ca_certificate_as_the_leaf_is_named() -> None:
    root = fch.make_ca("r")
    ca_leaf = _bare_ca("mamori.test", root, None)[0]
    san = x509.SubjectAlternativeName([x509.DNSName("mamori.test")])
    ca_leaf = x509.CertificateBuilder(
        ca_leaf.issuer, ca_leaf.subject, ca_leaf.public_key(), ca_leaf.serial_number,
        ca_leaf.not_valid_before_utc, ca_leaf.not_valid_after_utc,
        [*ca_leaf.extensions, x509.Extension(san.oid, False, san)],
    ).sign(root[1], hashes.SHA256())
    fields = _judge([ca_leaf], [root[0]])
    assert fields["trusted"] == "no" and fields["trust_reason"] == "leaf-is-ca"


@pytest.mark.daemon
def test_scan_fetch_aia_option(chains: fch.Chains, tmp_path: Path) -> None:
    """`mamori scan --fetch-aia` hands the permission to the TLS checks; without it the URL
    is only named."""
    host, port = SERVERS["incomplete-aia"]
    base = ("scan", host, "-p", str(port), "--checks", "tls-certificate-incomplete-chain",
            "--ca-file", str(chains.ca_file), "--format", "json")
    with _aia_server(chains.intermediate_der.read_bytes()) as hits:
        off = run_mamori(*base, "--db", str(tmp_path / "off.db"))
        assert hits == []
        on = run_mamori(*base, "--fetch-aia", "--db", str(tmp_path / "on.db"))
        assert hits == ["/intermediate.der"], on.stderr[-2000:]
    for proc, words in ((off, "was not fetched"), (on, "the chain completes")):
        assert proc.returncode == 0, proc.stderr
        (check,) = [c for c in json.loads(proc.stdout)["checks"]
                    if c["check_id"] == "tls-certificate-incomplete-chain"]
        assert check["status"] == "finding", check
        assert words in check["evidence"]["facts"]["trust_detail"]
