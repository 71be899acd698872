"""Certificate chains a verifier must reject, and one nginx serving each (127.0.67.0/24; the
"incomplete" chain on 127.0.86.30).

Every chain is made here with ``cryptography`` under one test root (``Chains.ca_file``), and
each breaks exactly one rule a real TLS client enforces, next to a hardened twin that breaks
none: a leaf for client authentication only, an intermediate whose name constraints exclude
the leaf's name, an intermediate with pathLenConstraint 0 that signs another CA, an RSA-1024
leaf, a leaf signed with SHA-1. All carry the key identifiers public CAs put in, so the only
fault of each is the one it is named for.

``cryptography`` refuses to *sign* with SHA-1, so the SHA-1 leaf is signed as SHA-256 and
then re-signed: the two signature-algorithm OIDs (same length) are swapped for
sha1WithRSAEncryption and the TBS bytes signed again with PKCS#1 v1.5 over SHA-1.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

import daemons as dm

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Issuer = tuple[x509.Certificate, PrivateKey]

# OIDs as DER bytes: the same length, so the swap keeps every length field right.
_SHA256_RSA = bytes.fromhex("2a864886f70d01010b")  # 1.2.840.113549.1.1.11
_SHA1_RSA = bytes.fromhex("2a864886f70d010105")  # 1.2.840.113549.1.1.5
_MD5_RSA = bytes.fromhex("2a864886f70d010104")  # 1.2.840.113549.1.1.4

# nginx must be able to serve the weak chains: at OpenSSL's default security level it refuses
# to load an RSA-1024 or SHA-1 certificate. The suites themselves stay strong.
WEAK_CHAIN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:@SECLEVEL=0"

# Where the "incomplete-aia" leaf says its issuer can be downloaded (a test serves it there).
AIA_HOST, AIA_PORT = "127.0.86.31", 18631
AIA_URL = f"http://{AIA_HOST}:{AIA_PORT}/intermediate.der"


@dataclass(frozen=True)
class ChainFiles:
    fullchain: Path  # leaf first, then the intermediates, as nginx wants it
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _base(subject: str, issuer: Issuer | None, key: PrivateKey, start: datetime,
          end: datetime) -> x509.CertificateBuilder:
    signer_key = issuer[1] if issuer else key
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            signer_key.public_key()), critical=False)
    )


def make_ca(cn: str, issuer: Issuer | None = None, *, path_length: int | None = None,
            permitted_dns: list[str] | None = None, key: PrivateKey | None = None) -> Issuer:
    """A CA certificate (self-signed root when ``issuer`` is None) and its key."""
    key = key or _ec_key()
    now = datetime.now(UTC)
    builder = (
        _base(cn, issuer, key, now - timedelta(days=30), now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
    )
    if permitted_dns is not None:
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(n) for n in permitted_dns],
            excluded_subtrees=None), critical=True)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def make_leaf(names: list[str], issuer: Issuer, *, key: PrivateKey | None = None,
              eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,),
              aia: str | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """A server certificate for ``names`` (DNS names and IP addresses) signed by ``issuer``
    (with an authorityInfoAccess caIssuers URL when ``aia`` is given)."""
    key = key or _ec_key()
    now = datetime.now(UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (
        _base(names[0], issuer, key, now - timedelta(days=1), now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    )
    if aia is not None:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(aia))]), critical=False)
    return builder.sign(issuer[1], hashes.SHA256()), key


def resign_rsa(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey,
               algorithm: str) -> x509.Certificate:
    """``cert`` (signed sha256WithRSAEncryption) signed again with SHA-1 or MD5 ("sha1",
    "md5"), which ``cryptography``'s builder no longer does."""
    oid, digest = {"sha1": (_SHA1_RSA, hashes.SHA1()), "md5": (_MD5_RSA, hashes.MD5())}[algorithm]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(_SHA256_RSA) == 2, "the OID must appear in the TBS and the outer header"
    swapped = der.replace(_SHA256_RSA, oid)
    tbs = x509.load_der_x509_certificate(swapped).tbs_certificate_bytes
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), digest)
    assert len(signature) == len(cert.signature)
    return x509.load_der_x509_certificate(swapped[: -len(signature)] + signature)


@dataclass(frozen=True)
class Chains:
    ca_file: Path  # the test root, for --ca-file
    servers: dict[str, ChainFiles]  # by name: good, client-auth, name-constraints, ...
    intermediate_der: Path  # the intermediate most chains hang from, DER (what AIA_URL serves)


def _write(workdir: Path, name: str, chain: list[x509.Certificate], key: PrivateKey,
           ) -> ChainFiles:
    full = workdir / f"{name}-full.crt"
    full.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_path = workdir / f"{name}.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ChainFiles(full, key_path)


def make_chains(workdir: Path, addresses: dict[str, str]) -> Chains:
    """Write the root and one chain per server name in ``addresses`` (name -> the address
    it is served on, which goes in its SANs next to mamori.test)."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = make_ca("mamori chain-test root")
    inter = make_ca("mamori chain-test intermediate", root)
    ca_file = workdir / "root.pem"
    ca_file.write_bytes(root[0].public_bytes(serialization.Encoding.PEM))

    def names(server: str) -> list[str]:
        return ["mamori.test", *([addresses[server]] if server in addresses else [])]

    built: dict[str, tuple[list[x509.Certificate], PrivateKey]] = {}
    leaf, key = make_leaf(names("good"), inter)
    built["good"] = ([leaf, inter[0]], key)
    leaf, key = make_leaf(names("client-auth"), inter, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    built["client-auth"] = ([leaf, inter[0]], key)
    # Allowed to issue for example.org only; the leaf is for mamori.test.
    fenced = make_ca("mamori example.org-only intermediate", root,
                     permitted_dns=["example.org"])
    leaf, key = make_leaf(names("name-constraints"), fenced)
    built["name-constraints"] = ([leaf, fenced[0]], key)
    # pathLenConstraint 0: it may sign leaves, not another CA; here it signed one.
    no_sub = make_ca("mamori pathlen-0 intermediate", root, path_length=0)
    sub = make_ca("mamori sub-CA under pathlen 0", no_sub)
    leaf, key = make_leaf(names("path-length"), sub)
    built["path-length"] = ([leaf, sub[0], no_sub[0]], key)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf, key = make_leaf(names("rsa-1024"), inter, key=weak)
    built["rsa-1024"] = ([leaf, inter[0]], key)
    rsa_inter = make_ca("mamori RSA intermediate", root,
                        key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    leaf, key = make_leaf(names("sha1"), rsa_inter)
    assert isinstance(rsa_inter[1], rsa.RSAPrivateKey)
    built["sha1"] = ([resign_rsa(leaf, rsa_inter[1], "sha1"), rsa_inter[0]], key)
    # The leaf alone: the server does not send the intermediate that signed it.
    leaf, key = make_leaf(names("incomplete"), inter)
    built["incomplete"] = ([leaf], key)
    leaf, key = make_leaf(names("incomplete-aia"), inter, aia=AIA_URL)
    built["incomplete-aia"] = ([leaf], key)
    inter_der = workdir / "intermediate.der"
    inter_der.write_bytes(inter[0].public_bytes(serialization.Encoding.DER))
    return Chains(ca_file, {name: _write(workdir, name, chain, key)
                            for name, (chain, key) in built.items() if name in addresses},
                  inter_der)


def start_nginx_chains(workdir: Path, servers: dict[str, tuple[str, int]],
                       chains: Chains) -> dm.Daemon:
    """One nginx, one TLS server block per chain on its own address and port (TLS 1.2 and
    1.3, strong suites, security level 0 so that the weak chains load)."""
    nginx = dm._need("/usr/sbin/nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    pid = workdir / "nginx.pid"
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    blocks = "".join(
        f"  server {{\n    listen {host}:{port} ssl;\n    server_name mamori.test;\n"
        f"    ssl_certificate {chains.servers[name].fullchain};\n"
        f"    ssl_certificate_key {chains.servers[name].key};\n"
        f"    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_ciphers \"{WEAK_CHAIN_CIPHERS}\";\n"
        '    location / { return 200 "hello tls\\n"; }\n  }\n'
        for name, (host, port) in servers.items()
    )
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n"
        f"error_log {workdir}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n" + blocks + "}\n"
    )
    proc, log = dm._spawn(
        [nginx, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(cfg)],
        workdir, "nginx.out")
    first_host, first_port = next(iter(servers.values()))
    d = dm.Daemon("nginx", first_host, first_port, proc, workdir, pid, log)

    def wait_all() -> None:
        for host, port in servers.values():
            dm.wait_tcp(host, port, proc=proc)

    return dm._started(d, wait_all)
