"""An incomplete chain, looked at once more: the missing issuer from the leaf's caIssuers
(authorityInformationAccess) URL, when the user allows requests outside the scan.

The finding stands either way (the server does not send its intermediate, and clients that do
not download it fail); the download only tells what the chain would be with it. The URL is a
host the user did not ask to scan, so it is fetched only with ``CheckOptions.fetch_aia``
(``--fetch-aia``), over plain HTTP (as RFC 5280 4.2.2.1 expects), one bounded GET.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.utils import CryptographyDeprecationWarning

from mamori.checks.observation import ProbeContext
from mamori.checks.probes.tls_certs import UNDECODABLE, unreadable
from mamori.checks.probes.tls_chain import judge_certificate
from mamori.net.stream import Limits, ProbeFailure, exchange
from mamori.protocols import http

MAX_ISSUER = 32768  # bytes of an issuer certificate download (head included)


def _certificate(body: bytes) -> x509.Certificate | str:
    """The certificate in a caIssuers answer (DER, PEM or a DER PKCS#7 bundle), or why not."""
    loaders = (
        lambda b: [x509.load_der_x509_certificate(b)],
        x509.load_pem_x509_certificates,
        pkcs7.load_der_pkcs7_certificates,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for load in loaders:
            try:
                certs = load(body)
            except UNDECODABLE:
                continue
            if certs:
                why = unreadable(certs[0])
                return certs[0] if why is None else f"the certificate does not decode: {why}"
    return f"the answer is not a certificate ({len(body)} bytes of DER, PEM or PKCS#7 expected)"


async def fetch_issuer(url: str, ctx: ProbeContext) -> x509.Certificate | str:
    """GET ``url`` (http:// only) within the caps; the certificate, or why it cannot be used."""
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return "not a usable URL"
    if parts.scheme.lower() != "http" or not parts.hostname:
        return "only http:// caIssuers URLs are fetched"
    limits = Limits(read_cap=MAX_ISSUER, idle_timeout=ctx.options.limits.idle_timeout,
                    deadline=ctx.options.limits.deadline,
                    connect_timeout=ctx.options.limits.connect_timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = http.build_request("GET", path, http.host_header(parts.hostname, port),
                                 ctx.options.user_agent)
    try:
        raw = await exchange(parts.hostname, port, request, limits, done=http.reply_complete)
    except ProbeFailure as exc:
        return f"{exc.kind.value}: {exc.detail}"
    resp = http.parse_response(raw)
    if resp is None:
        return "the answer is not HTTP"
    if resp.status != 200:
        return f"HTTP {resp.status}"
    size = resp.header("Content-Length") or ""
    if size.isdigit() and int(size) > len(resp.body):
        # The reader stops at its cap: a certificate is a few kilobytes, this is something else.
        return (f"the answer is {size} bytes, more than a certificate "
                f"(at most {len(resp.body)} read)")
    return _certificate(resp.body)


async def with_aia(fields: dict[str, str], chain: Sequence[x509.Certificate],
                   anchors: Sequence[x509.Certificate], target: str, now: datetime,
                   ctx: ProbeContext) -> dict[str, str]:
    """``fields`` of an incomplete chain with what its caIssuers URL says: not fetched (the
    default), or the chain judged again with the downloaded issuer (field aia_fetch)."""
    url = fields.get("aia_ca_issuers", "none")
    if fields.get("trust_reason") != "incomplete-chain" or url == "none":
        return fields
    out = dict(fields)
    if not ctx.options.fetch_aia:
        out["aia_fetch"] = "off"
        out["trust_detail"] = (f"{fields['trust_detail']}; its caIssuers URL {url} was not "
                               "fetched (outside fetches are off; --fetch-aia allows it)")[:768]
        return out
    issuer = await fetch_issuer(url, ctx)
    if isinstance(issuer, str):
        out["aia_fetch"] = f"failed: {issuer}"[:256]
        out["trust_detail"] = (f"{fields['trust_detail']}; its caIssuers URL {url} could not "
                               f"be used: {issuer}")[:768]
        return out
    again = judge_certificate([*chain, issuer], anchors, target, now)
    outcome = ("the chain completes: " + again["trust_detail"] if again["trusted"] == "yes"
               else f"still rejected ({again['trust_reason']}): {again['trust_detail']}")
    out["aia_fetch"] = "fetched"
    name = issuer.subject.rfc4514_string()[:128]
    out["trust_detail"] = (f"{fields['trust_detail']}; fetched {name} from its caIssuers URL "
                           f"{url}: with it {outcome}")[:768]
    return out
