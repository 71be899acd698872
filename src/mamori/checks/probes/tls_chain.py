"""A server's certificate chain judged as a TLS client judges it. Pure: no sockets.

The verdict is ``cryptography``'s X.509 verifier (``cryptography.x509.verification``: RFC 5280
path building and the CA/Browser Forum rules browsers enforce: EKU, name constraints, path
length, key and signature strength). Relaxed only where browsers are: an authorityKeyIdentifier
and a CA's keyUsage may be absent (many private CAs and appliances omit them).

Why the verifier said no is mamori's own reading of the chain, done afterwards, so that the
reason shown is specific ("the leaf is for clientAuth only", not "validation failed"). Dates and
names have their own checks: ``trusted`` judges the chain with the leaf's dates and name set
aside (a moment inside the leaf's validity, a name the leaf holds), ``trust_reason`` names the
first problem of the full verdict (now, the scanned name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509 import verification as xv
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
)

from mamori.checks.probes.tls_certs import (
    MAX_NAMES,
    basic_constraints,
    describe_key,
    is_ca,
    issued_by,
    name_matches,
    san_names,
    self_signed,
    subject_words,
    weak_signature,
)

_MAX_CHAIN = 10  # certificates judged from one server; more is a misbehaving peer

# Reasons, most fundamental first: the first that applies is the one shown.
STRUCTURAL = ("self-signed", "unknown-issuer", "incomplete-chain", "not-a-ca", "leaf-is-ca",
              "no-subject-alt-name", "eku", "path-length", "name-constraints")
WEAK = ("weak-signature", "weak-key")
DATES_AND_NAME = ("expired", "not-yet-valid", "name-mismatch")


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str  # one of STRUCTURAL, WEAK, DATES_AND_NAME
    detail: str
    leaf_only: bool = False  # about the leaf alone: a date or name the own checks report


# --- the verdict ------------------------------------------------------------------------------


def _ca_key_usage(_policy: xv.Policy, cert: x509.Certificate,
                  usage: x509.KeyUsage | None) -> None:
    """A CA's keyUsage, when present, must allow signing certificates (RFC 5280 4.2.1.3)."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(f"{subject_words(cert)}: keyUsage lacks keyCertSign")


def _policies(pinned: bool) -> tuple[xv.ExtensionPolicy, xv.ExtensionPolicy]:
    """The WebPKI profile with what browsers do not demand made optional: an
    authorityKeyIdentifier, and a CA's keyUsage (`openssl req -x509` with OpenSSL's default
    config makes roots without one). A leaf the user trusts itself (``pinned``, in the store)
    may also say CA:TRUE, as that same command's self-signed certificates do."""
    aki = x509.AuthorityKeyIdentifier
    ee = xv.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        aki, xv.Criticality.NON_CRITICAL, None)
    if pinned:
        ee = ee.may_be_present(x509.BasicConstraints, xv.Criticality.AGNOSTIC, None)
    return (xv.ExtensionPolicy.webpki_defaults_ca()
            .may_be_present(aki, xv.Criticality.NON_CRITICAL, None)
            .may_be_present(x509.KeyUsage, xv.Criticality.AGNOSTIC, _ca_key_usage), ee)


def _subject(name: str) -> xv.Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.rstrip(".").lower())


def _verify(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
            name: str, when: datetime) -> tuple[list[x509.Certificate], str]:
    """Run the verifier: (the verified path ending at its anchor, "") or ([], why not)."""
    if not anchors:
        return [], "no trusted roots available"
    pinned = chain[0].tbs_certificate_bytes in {a.tbs_certificate_bytes for a in anchors}
    ca_policy, ee_policy = _policies(pinned)
    try:
        verifier = (xv.PolicyBuilder().store(xv.Store(list(anchors))).time(when)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                    .build_server_verifier(_subject(name)))
        return verifier.verify(chain[0], list(chain[1:])), ""
    except (xv.VerificationError, ValueError) as exc:  # ValueError: a name it cannot take
        return [], str(exc).split(" (encountered processing")[0][:200]


def _neutral_time(leaf: x509.Certificate, now: datetime) -> datetime:
    """``now`` moved inside the leaf's validity: the leaf's dates are judged by their own
    checks, not by the trust verdict (an intermediate's dates are the verdict's)."""
    start = leaf.not_valid_before_utc + timedelta(seconds=1)
    end = leaf.not_valid_after_utc - timedelta(seconds=1)
    return max(min(now, end), start)


def _neutral_name(target: str, matched: bool, names: list[str]) -> str:
    """The scanned name if the leaf holds it, else a name it does hold (names are judged by
    the name check, not by the trust verdict)."""
    if matched or not names:
        return target
    first = names[0]
    return "name." + first[2:] if first.startswith("*.") else first


# --- the reasons ------------------------------------------------------------------------------


def walk(leaf: x509.Certificate, presented: Sequence[x509.Certificate],
         anchors: Sequence[x509.Certificate]) -> tuple[list[x509.Certificate], bool]:
    """Follow issuer names and signatures from the leaf through the presented certificates to
    a trust anchor. Returns (the path, leaf first; whether its last certificate is anchored).
    CAs are preferred as issuers; a non-CA issuer is followed so the reason can name it."""
    anchor_ders = {a.tbs_certificate_bytes for a in anchors}
    path = [leaf]
    for _ in range(_MAX_CHAIN):
        current = path[-1]
        if current.tbs_certificate_bytes in anchor_ders:
            return path, True
        anchor = next((a for a in anchors if issued_by(current, a)), None)
        if anchor is not None:
            return [*path, anchor], True
        issuers = [c for c in presented if c not in path and issued_by(current, c)]
        issuers.sort(key=lambda c: not is_ca(c))
        if not issuers:
            return path, False
        path.append(issuers[0])
    return path, False


def _unanchored(path: list[x509.Certificate]) -> Problem:
    last = path[-1]
    if len(path) == 1 and self_signed(last):
        return Problem("self-signed", f"{subject_words(last)} is signed by its own key and "
                                      "no trusted store holds it")
    if self_signed(last):
        return Problem("unknown-issuer", f"the chain ends at {subject_words(last)}, a root "
                                         "no trusted store holds")
    if is_ca(last):
        # The intermediates are sent; their root is what nobody here knows.
        return Problem("unknown-issuer", (
            f"no trusted issuer for {subject_words(last)} "
            f"(issuer {last.issuer.rfc4514_string()[:128]}): the CA is unknown here"))
    # The server certificate's issuer is neither sent nor in the store (servers need not
    # send the root, but must send intermediates): clients that have not cached that issuer
    # (most non-browser ones) fail.
    return Problem("incomplete-chain", (
        f"the chain is incomplete: the server does not send the issuer of "
        f"{subject_words(last)} ({last.issuer.rfc4514_string()[:128]}) and no trusted store "
        "holds it; send the intermediate certificate(s) with the leaf (or, if that issuer "
        "is a private root, trust it with --ca-file)"))


def ca_issuers_url(cert: x509.Certificate) -> str | None:
    """The first caIssuers URL of the authorityInformationAccess extension, or None."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        if (desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS
                and isinstance(desc.access_location, x509.UniformResourceIdentifier)):
            return str(desc.access_location.value)
    return None


def _eku_problem(path: list[x509.Certificate]) -> Problem | None:
    """An extendedKeyUsage on the leaf, or on a CA above it, that leaves out serverAuth.
    (A CA's anyExtendedKeyUsage covers it; a leaf's does not, as in browsers.)"""
    for depth, cert in enumerate(path):
        try:
            eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if not isinstance(eku, x509.ExtendedKeyUsage) or ExtendedKeyUsageOID.SERVER_AUTH in eku:
            continue
        if depth and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku:
            continue
        allowed = ", ".join(oid._name for oid in eku) or "nothing"
        whose = "the certificate's" if depth == 0 else f"the CA {subject_words(cert)}'s"
        return Problem("eku", f"{whose} extended key usage allows {allowed} only, not "
                              "serverAuth (TLS server authentication)")
    return None


def _ca_problems(path: list[x509.Certificate]) -> list[Problem]:
    """basicConstraints, keyUsage and pathLenConstraint of every issuer on the path."""
    out: list[Problem] = []
    for depth, ca in enumerate(path[1:], start=1):
        child = path[depth - 1]
        bc = basic_constraints(ca)
        if bc is None or not bc.ca:
            out.append(Problem("not-a-ca", f"{subject_words(ca)} signed {subject_words(child)} "
                                           "but is not a CA (no basicConstraints CA:TRUE)"))
            continue
        try:
            usage = ca.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
        except (x509.ExtensionNotFound, ValueError):
            usage = None
        if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
            out.append(Problem("not-a-ca", f"{subject_words(ca)} signed {subject_words(child)} "
                                           "but its key usage does not allow signing "
                                           "certificates"))
        below = sum(1 for c in path[1:depth] if c.issuer != c.subject)
        if bc.path_length is not None and below > bc.path_length:
            out.append(Problem("path-length", (
                f"{subject_words(ca)} has pathLenConstraint {bc.path_length}: it may have "
                f"{bc.path_length} CA(s) below it, the chain puts {below} there")))
    return out


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _within(general: x509.GeneralName, subtree: x509.GeneralName) -> bool | None:
    """Is the name inside the subtree (None: the subtree constrains another kind of name)?"""
    if isinstance(general, x509.DNSName) and isinstance(subtree, x509.DNSName):
        return _dns_within(general.value, subtree.value)
    if isinstance(general, x509.IPAddress) and isinstance(subtree, x509.IPAddress):
        net = subtree.value
        return isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network) and (
            general.value.version == net.version and general.value in net)
    return None


def _constraint_problems(path: list[x509.Certificate]) -> list[Problem]:
    leaf_names = san_names(path[0])
    out: list[Problem] = []
    for ca in path[1:]:
        try:
            nc = ca.extensions.get_extension_for_oid(ExtensionOID.NAME_CONSTRAINTS).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if not isinstance(nc, x509.NameConstraints):
            continue
        for name in leaf_names:
            excluded = [s for s in nc.excluded_subtrees or [] if _within(name, s)]
            if excluded:
                out.append(Problem("name-constraints", (
                    f"{name.value} is excluded by the name constraints of {subject_words(ca)} "
                    f"({excluded[0].value})")))
                continue
            permitted = nc.permitted_subtrees or []
            verdicts = [_within(name, s) for s in permitted]
            if any(v is not None for v in verdicts) and not any(verdicts):
                allowed = ", ".join(str(s.value) for s in permitted)[:200]
                out.append(Problem("name-constraints", (
                    f"{name.value} is outside the names {subject_words(ca)} may issue for "
                    f"(permitted: {allowed})")))
    return out


def _date_problems(path: list[x509.Certificate], now: datetime) -> list[Problem]:
    out: list[Problem] = []
    for depth, cert in enumerate(path):
        if now > cert.not_valid_after_utc:
            out.append(Problem("expired", f"{subject_words(cert)} expired on "
                                          f"{cert.not_valid_after_utc.date().isoformat()}",
                               leaf_only=depth == 0))
        elif now < cert.not_valid_before_utc:
            out.append(Problem("not-yet-valid", f"{subject_words(cert)} is not valid before "
                                                f"{cert.not_valid_before_utc.date().isoformat()}",
                               leaf_only=depth == 0))
    return out


# --- key and signature strength ---------------------------------------------------------------


def _strength(path: list[x509.Certificate], anchored: bool) -> tuple[list[str], list[str]]:
    """Weak signatures and weak keys on the path. Every key counts (a weak root key lets
    anyone who breaks it sign); a signature counts unless nobody verifies it: a trust
    anchor's and a self-signed certificate's own."""
    signed = path[:-1] if anchored and len(path) > 1 else path
    sigs = [f"{subject_words(c)}: {w}" for c in signed
            if not self_signed(c) and (w := weak_signature(c)) is not None]
    keys: list[str] = []
    for cert in path:
        words, weak = describe_key(cert)
        if weak:
            keys.append(f"{subject_words(cert)}: {words}")
    return sigs, keys


# --- the whole judgement ----------------------------------------------------------------------


def _problems(path: list[x509.Certificate], anchored: bool, now: datetime,
              name_problem: Problem | None, sigs: list[str], keys: list[str]) -> list[Problem]:
    """Every problem found on the chain, most fundamental first."""
    leaf = path[0]
    found: list[Problem] = [] if anchored else [_unanchored(path)]
    leaf_bc = basic_constraints(leaf)
    if anchored and len(path) > 1 and leaf_bc is not None and leaf_bc.ca:
        found.append(Problem("leaf-is-ca", (
            "the certificate says it is a CA (basicConstraints CA:TRUE): clients refuse a CA "
            "certificate as a server's")))
    if not san_names(leaf):
        found.append(Problem("no-subject-alt-name", (
            "the certificate has no subjectAltName; clients no longer read the subject CN")))
    eku = _eku_problem(path)
    found += [eku] if eku else []
    found += _ca_problems(path) + _constraint_problems(path)
    if sigs:
        found.append(Problem("weak-signature", "signed with a broken hash: " + "; ".join(sigs)))
    if keys:
        found.append(Problem("weak-key", "key too short: " + "; ".join(keys)))
    found += _date_problems(path, now)
    found += [name_problem] if name_problem else []
    order = (*STRUCTURAL, *WEAK, *DATES_AND_NAME)
    return sorted(found, key=lambda p: order.index(p.reason))


def judge_certificate(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    target: str,
    now: datetime,
) -> dict[str, str]:
    """Pure verdicts on a server's certificate chain (leaf first) for the name or address
    ``target`` at ``now``, with ``anchors`` as the trust store. Returns string fields.
    Every certificate must have passed ``tls_certs.unreadable`` (the probe sees to it)."""
    chain = list(chain[:_MAX_CHAIN])
    leaf = chain[0]
    names = [str(n.value) for n in san_names(leaf)][:MAX_NAMES]
    match = name_matches(target, leaf, names)
    verified, why_not = _verify(chain, anchors, target, now)
    trusted_path = verified
    if not verified:
        trusted_path, _ = _verify(chain, anchors, _neutral_name(target, match, names),
                                  _neutral_time(leaf, now))
    walked, anchored = walk(leaf, chain[1:], anchors)
    path = trusted_path or walked
    sigs, keys = _strength(path, bool(trusted_path) or anchored)
    key_words, _ = describe_key(leaf)
    fields = {
        "subject": leaf.subject.rfc4514_string()[:256],
        "issuer": leaf.issuer.rfc4514_string()[:256],
        "not_before": leaf.not_valid_before_utc.isoformat(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "expired": "yes" if now > leaf.not_valid_after_utc else "no",
        "days_expired": str(max(0, (now - leaf.not_valid_after_utc).days)),
        "not_yet_valid": "yes" if now < leaf.not_valid_before_utc else "no",
        "self_signed": "yes" if self_signed(leaf) else "no",
        "verified": "yes" if verified else "no",
        "trusted": "yes" if trusted_path else "no",
        "target_name": target[:256],
        "name_match": "yes" if match else "no",
        "names": ",".join(names)[:512] or "(no subjectAltName)",
        "chain_length": str(len(chain)),
        "key": key_words,
        "weak_key": "yes" if keys else "no",
        "weak_keys": "; ".join(keys)[:512] or "none",
        "weak_signature": "yes" if sigs else "no",
        "weak_signatures": "; ".join(sigs)[:512] or "none",
        "aia_ca_issuers": (ca_issuers_url(path[-1]) or "none")[:256],
        # A self-signed leaf's hash on itself: no weakness (nobody verifies it), but a fact.
        "self_signature": ((weak_signature(leaf) or "not a broken hash") if self_signed(leaf)
                           else "none"),
    }
    if verified:
        fields.update(trust_reason="none",
                      trust_detail=f"a verifier accepts the chain up to the trusted root "
                                   f"{subject_words(verified[-1])}")
        return fields
    name_problem = None if match else Problem(
        "name-mismatch", f"the certificate names {fields['names'][:200]}, not {target[:128]}",
        leaf_only=True)
    problems = _problems(path, bool(trusted_path) or anchored, now, name_problem, sigs, keys)
    if not trusted_path and anchored and problems and all(p.leaf_only for p in problems):
        # The leaf's dates and an intermediate's do not overlap, so no single moment sets
        # the dates aside for the verifier: the reading finds nothing but what the date and
        # name checks report, so the chain itself stands.
        fields["trusted"] = "yes"
    if fields["trusted"] == "yes":
        problems = [p for p in problems if p.reason in DATES_AND_NAME]
    first = problems[0] if problems else Problem("rejected",
                                                 f"a verifier rejects the chain: {why_not}")
    fields.update(trust_reason=first.reason, trust_detail=first.detail[:512])
    return fields
