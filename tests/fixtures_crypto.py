"""Daemons and certificates for the TLS and SSH checks (addresses 127.0.66.0/24).

Certificates are made here with ``cryptography``: a test CA with an intermediate, and leaves
that are good, expired, not yet valid, self-signed, from an unknown CA, or for another name.
Servers: ``openssl s_server`` (misconfigured: old versions, weak suites, bad certificates),
nginx (hardened: TLS 1.2+ only, a good chain), sshd (weak, hardened and post-quantum-only
configs), tinysshd (open to Terrapin, run by inetd), and a small faithful SSLv3 responder
(Debian's OpenSSL 3 has SSLv3 compiled out).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import daemons as dm
from threaded_server import ThreadedServer

# --- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: Path  # the leaf alone
    key: Path
    chain: Path | None  # the certificates sent after the leaf (None: leaf only)
    fullchain: Path  # leaf then chain, as nginx wants it


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # the test root, for --ca-file
    good: Pem  # leaf + intermediate, names mamori.test and the server address
    expired: Pem
    future: Pem
    self_signed: Pem
    unknown_ca: Pem  # signed by a CA nobody trusts
    wrong_name: Pem  # names other.test only


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
    )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _leaf(cn: str, names: list[str], issuer: tuple[x509.Certificate,
          ec.EllipticCurvePrivateKey] | None, start: datetime, end: datetime,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def _write(workdir: Path, name: str, chain: list[x509.Certificate],
           key: ec.EllipticCurvePrivateKey) -> Pem:
    cert_path, key_path = workdir / f"{name}.crt", workdir / f"{name}.key"
    pems = [c.public_bytes(serialization.Encoding.PEM) for c in chain]
    cert_path.write_bytes(pems[0])
    chain_path = workdir / f"{name}-chain.crt" if len(pems) > 1 else None
    if chain_path is not None:
        chain_path.write_bytes(b"".join(pems[1:]))
    full = workdir / f"{name}-full.crt"
    full.write_bytes(b"".join(pems))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Pem(cert_path, key_path, chain_path, full)


def make_pki(workdir: Path, addresses: list[str]) -> Pki:
    """Write the test CA and every leaf under ``workdir``; ``addresses`` go in the SANs of
    every leaf but the wrong-name one."""
    workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    root = _ca("mamori test root")
    inter = _ca("mamori test intermediate", root)
    stranger = _ca("nobody trusts this CA")
    ca_file = workdir / "ca.pem"
    ca_file.write_bytes(root[0].public_bytes(serialization.Encoding.PEM))
    ok = (now - timedelta(days=1), now + timedelta(days=90))
    names = ["mamori.test", *addresses]

    good = _leaf("mamori.test", names, inter, *ok)
    expired = _leaf("mamori.test", names, inter, now - timedelta(days=400),
                    now - timedelta(days=35))
    future = _leaf("mamori.test", names, inter, now + timedelta(days=30),
                   now + timedelta(days=400))
    self_signed = _leaf("mamori.test", names, None, *ok)
    unknown = _leaf("mamori.test", names, stranger, *ok)
    wrong = _leaf("other.test", ["other.test"], inter, *ok)
    return Pki(
        ca_file=ca_file,
        good=_write(workdir, "good", [good[0], inter[0]], good[1]),
        expired=_write(workdir, "expired", [expired[0], inter[0]], expired[1]),
        future=_write(workdir, "future", [future[0], inter[0]], future[1]),
        self_signed=_write(workdir, "self-signed", [self_signed[0]], self_signed[1]),
        unknown_ca=_write(workdir, "unknown-ca", [unknown[0], stranger[0]], unknown[1]),
        wrong_name=_write(workdir, "wrong-name", [wrong[0], inter[0]], wrong[1]),
    )


# --- TLS servers ------------------------------------------------------------------------------


def start_s_server(workdir: Path, host: str, port: int, pem: Pem, *args: str) -> dm.Daemon:
    """``openssl s_server`` on host:port with ``pem`` (leaf, then its chain) and extra
    arguments such as ``-tls1`` or ``-cipher ...``. It keeps no pid file: the Daemon stops it
    by its process id."""
    openssl = dm._need("openssl")
    log_name = f"s_server-{port}.log"
    chain = ["-cert_chain", str(pem.chain)] if pem.chain is not None else []
    argv = [openssl, "s_server", "-accept", f"{host}:{port}", "-cert", str(pem.cert),
            "-key", str(pem.key), *chain, "-www", "-quiet", *args]
    proc, log = dm._spawn(argv, workdir, log_name)
    d = dm.Daemon("openssl-s_server", host, port, proc, workdir, None, log)
    return dm._started(d, lambda: dm.wait_tcp(host, port, proc=proc))


def start_nginx_tls(workdir: Path, host: str, port: int, pem: Pem) -> dm.Daemon:
    """nginx hardened the usual way: TLS 1.2 and 1.3 only, its default cipher list, a good
    chain from the test CA."""
    nginx = dm._need("/usr/sbin/nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    pid = workdir / "nginx.pid"
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    cfg = workdir / "nginx.conf"
    cfg.write_text(
        f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {pid};\n"
        f"error_log {workdir}/nginx-error.log;\nuser nobody nogroup;\n"
        "events { worker_connections 64; }\nhttp {\n  access_log off;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
        f"  server {{\n    listen {host}:{port} ssl;\n    server_name mamori.test;\n"
        f"    ssl_certificate {pem.fullchain};\n    ssl_certificate_key {pem.key};\n"
        "    ssl_protocols TLSv1.2 TLSv1.3;\n"
        '    location / { return 200 "hello tls\\n"; }\n  }\n}\n'
    )
    proc, log = dm._spawn(
        [nginx, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(cfg)],
        workdir, "nginx.out")
    d = dm.Daemon("nginx", host, port, proc, workdir, pid, log)
    return dm._started(d, lambda: dm.wait_tcp(host, port, proc=proc))


class Sslv3Responder(ThreadedServer):
    """A faithful SSL 3.0 server's first flight, for the handshake step the check judges.

    To a ClientHello whose client_version is 0x0300 it answers as an SSLv3-only server does:
    a ServerHello (version 3.0, a suite from the client's list it knows) and ServerHelloDone;
    to anything higher, a fatal protocol_version alert (as an SSLv3-only stack must, RFC 6101
    has no newer version to pick).
    """

    SUITES = (0x002F, 0x0035, 0x000A)  # RSA AES128/AES256/3DES, all defined for SSLv3

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, self._answer, timeout=3)

    @staticmethod
    def reply_to(hello: bytes) -> bytes:
        if len(hello) < 11 or hello[0] != 0x16 or hello[5] != 0x01:
            return b"\x15\x03\x00\x00\x02\x02\x0a"  # fatal unexpected_message
        client_version = int.from_bytes(hello[9:11], "big")
        if client_version != 0x0300:
            return b"\x15\x03\x00\x00\x02\x02\x46"  # fatal protocol_version
        body = hello[9:]
        pos = 2 + 32
        pos += 1 + body[pos]  # session id
        n = int.from_bytes(body[pos:pos + 2], "big")
        offered = [int.from_bytes(body[pos + 2 + i:pos + 4 + i], "big") for i in range(0, n, 2)]
        suite = next((s for s in offered if s in Sslv3Responder.SUITES), None)
        if suite is None:
            return b"\x15\x03\x00\x00\x02\x02\x28"  # fatal handshake_failure
        sh = b"\x03\x00" + b"\x5a" * 32 + b"\x00" + struct.pack(">H", suite) + b"\x00"
        msgs = (b"\x02" + len(sh).to_bytes(3, "big") + sh) + b"\x0e\x00\x00\x00"
        return b"\x16\x03\x00" + struct.pack(">H", len(msgs)) + msgs

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
            chunk = conn.recv(4096)
            if not chunk or len(data) > 16384:
                return
            data += chunk
        conn.sendall(self.reply_to(data))


# --- sshd -------------------------------------------------------------------------------------

SSHD_WEAK = (
    "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin yes\n"
    "KexAlgorithms +diffie-hellman-group1-sha1\nCiphers +3des-cbc\nMACs +hmac-md5\n"
)
SSHD_HARDENED = (
    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
)


def start_sshd(workdir: Path, host: str, port: int, settings: str) -> dm.Daemon:
    """sshd with its own host key, config, pid file and ``settings`` appended."""
    sshd = dm._need("/usr/sbin/sshd")
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    pid = workdir / "sshd.pid"
    cfg = workdir / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress {host}:{port}\nHostKey {key}\nPidFile {pid}\n"
        "UsePAM no\nStrictModes no\nAuthorizedKeysFile none\n" + settings
    )
    check = subprocess.run([sshd, "-t", "-f", str(cfg)], capture_output=True, text=True)
    if check.returncode != 0:
        raise dm.DaemonUnavailable(f"sshd rejects the test config: {check.stderr.strip()}")
    proc, log = dm._spawn([sshd, "-D", "-e", "-f", str(cfg)], workdir, "sshd.log")
    d = dm.Daemon("sshd", host, port, proc, workdir, pid, log)
    return dm._started(d, lambda: dm.wait_tcp(host, port, proc=proc))


def start_tinysshd(workdir: Path, host: str, port: int) -> dm.Daemon:
    """Debian's tinysshd 20230101 (ChaCha20-Poly1305 only, no strict key exchange: open to
    Terrapin; curve25519 and sntrup761x25519 key exchange) with its own host keys, run
    inetd-style by openbsd-inetd in the foreground on host:port only."""
    tinysshd = dm._need("/usr/sbin/tinysshd")
    makekey = dm._need("/usr/sbin/tinysshd-makekey")
    inetd = dm._need("/usr/sbin/inetd")
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / "tinyssh-keys"
    if not keys.exists():
        subprocess.run([makekey, str(keys)], check=True, capture_output=True)
    cfg = workdir / "inetd.conf"
    # -q: tinysshd's log lines would go to the client (inetd hands it the socket as stderr)
    cfg.write_text(f"{host}:{port} stream tcp nowait root {tinysshd} tinysshd -q {keys}\n")
    proc, log = dm._spawn([inetd, "-d", str(cfg)], workdir, "inetd.log")
    d = dm.Daemon("tinysshd", host, port, proc, workdir, None, log)
    return dm._started(d, lambda: dm.wait_tcp(host, port, proc=proc))
