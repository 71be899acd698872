"""Benchmark: a full ``mamori scan`` against ``nmap -sV --script <the matching NSE scripts>``
on a host running the check tests' MISCONFIGURED daemons, same ports, same run.

Installs nothing; needs root (daemons on privileged ports, lo aliases, nmap -sU, a private
mount namespace) and nmap on PATH. Traffic goes to 127.0.70.1-3 only; port 2024 (the
machine's own service) is never touched.

The lab (bench/_daemons.py) starts, with the fixture functions the check tests use, on
127.0.70.1: postfix as an open relay, tinyproxy and dante open, unbound as an open resolver
(its "." is the lab's own DNS on 127.0.70.2), redis (protected mode switched off: samba's lo
alias makes local clients come from 127.0.70.1, which a protected Redis refuses) and
memcached without auth, PostgreSQL
with trust, MariaDB with an empty root password, mosquitto anonymous, rsyncd with an open
module, vsftpd anonymous and writable, telnetd, samba with a guest share and SMB1, nginx with
autoindex, an exposed .git/.env and DAV PUT, openssl s_server speaking TLS 1.0 (NULL-encryption
suites offered too) with an expired self-signed certificate, sshd with password
auth and weak algorithms, snmpd with
community "public", apache2 on 8080 (server-status and server-info for anyone, Digest on plain
HTTP, a login form posted over HTTP), nginx on 8081 (stub_status and a real php-fpm's status
page for anyone, Basic on plain HTTP, the same login form), nginx TLS servers sending a leaf
without its intermediate (8443), an RSA-1024 leaf (8444) and a SHA-1-signed leaf (8445). A
daemon that does not start is skipped and named.

Name lookups: the bench re-executes itself in a private mount namespace (``unshare
--mount``) where /etc/resolv.conf names only the lab DNS, so a lookup any daemon or tool
makes through the system resolver (a reverse lookup of a client, dante resolving the host
name in nmap's Socks5 version probe, socks-open-proxy's dns.query) is answered on
127.0.70.2 and never sent to the machine's real resolver. Those lookups are counted and
printed. nmap also runs with ``-n --dns-servers 127.0.70.2``, and the open-proxy scripts get
``proxy.url``/``proxy.pattern`` pointing at the lab's canary page on 127.0.70.3, the relay
test addresses are under .invalid. nmap also gets an OpenSSL config that allows TLS 1.0
(Debian's default would keep ssl-cert and -sV from reading a TLS 1.0-only server at all).

Then, alternately, ``--runs`` times (after ``--warmup`` untimed mamori scans):

  python -m mamori scan 127.0.70.1 -p T:<tcp>,U:<udp> --format json --db <tmp db>
  nmap -n -Pn -sV -sT -sU -p T:<tcp>,U:<udp> --script <NSE scripts> --script-args <...>
       -oX - 127.0.70.1

(bytecode caching left on for mamori, as bench/sweep.py does). It prints the median wall
times, the ratio mamori/nmap, mamori's findings by check id, the problems nmap's scripts
report, and a table: problem class -> found by mamori? found by nmap? The issue's goal: the
ratio below 1. ``--check`` exits 1 when it is not.

Known nmap 7.93 misses here, not lab faults (check with ``-d``): rsync-list-modules rejects
rsync 3.2's greeting ("@RSYNCD: 32.0 sha512 ..." fails its "^@RSYNCD: [.%d]+$" match);
smb-enum-shares aborts on samba's reply to its write test on a read-only share; http-methods
and http-webdav-scan go by OPTIONS/PROPFIND, which nginx's dav_methods does not answer with PUT.
nmap has no script for PostgreSQL trust auth (only pgsql-brute), DNS amplification or
PermitRootLogin; telnet and the HTTP server version are read from -sV.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import _daemons as labs

HERE = Path(__file__).resolve().parent
# Set, to the mount namespace the bench was started in, when it re-executes itself in a new one.
NS_MARK = "MAMORI_BENCH_CHECKS_NS"

NSE_SCRIPTS = (
    "smtp-open-relay", "http-open-proxy", "socks-open-proxy", "dns-recursion", "redis-info",
    "memcached-info", "mysql-empty-password", "mqtt-subscribe", "rsync-list-modules",
    "ftp-anon", "telnet-ntlm-info", "smb-enum-shares", "smb-protocols", "http-enum",
    "http-git", "http-methods", "http-webdav-scan", "ssl-enum-ciphers", "ssl-cert",
    "ssh2-enum-algos", "ssh-auth-methods", "snmp-info", "snmp-sysdescr",
    "http-apache-server-status", "http-auth", "http-auth-finder",
    "imap-capabilities", "pop3-capabilities", "smtp-commands", "smtp-enum-users",
    "smb2-security-mode",
    "x11-access", "ldap-rootdse", "ldap-search", "tftp-enum", "dns-zone-transfer",
    "vnc-info", "rpcinfo", "cups-info", "cups-queue-info",
    # PostgreSQL: nmap's only pgsql script is pgsql-brute (password guessing): not run.
    # SNMP: only snmp-brute (a word list) would find "private": not run.
)

BENCH_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


# --- nmap's XML ------------------------------------------------------------------------------


@dataclass
class Script:
    id: str
    output: str
    elems: list[tuple[tuple[str, ...], str]]  # (table keys..., elem key) -> text

    def values(self, *path: str) -> list[str]:
        """Texts of the elems whose key path ends with ``path``."""
        return [v for p, v in self.elems if p[-len(path):] == path]


@dataclass
class NmapPort:
    proto: str
    port: int
    state: str
    service: str
    product: str
    version: str
    scripts: dict[str, Script] = field(default_factory=dict)


@dataclass
class NmapResult:
    ports: list[NmapPort] = field(default_factory=list)
    hostscripts: dict[str, Script] = field(default_factory=dict)

    def scripts(self, script_id: str) -> Iterator[tuple[str, Script]]:
        """(where, script) for every run of ``script_id``: "tcp/80", or "host"."""
        for p in self.ports:
            if script_id in p.scripts:
                yield f"{p.port}/{p.proto}", p.scripts[script_id]
        if script_id in self.hostscripts:
            yield "host", self.hostscripts[script_id]

    def errors(self) -> list[str]:
        """Scripts that printed an error (without -d nmap leaves most errors out of -oX)."""
        out = [f"{s.id}@{p.port}/{p.proto}: {s.output.strip()[:120]}"
               for p in self.ports for s in p.scripts.values() if "ERROR" in s.output]
        out += [f"{s.id}@host: {s.output.strip()[:120]}"
                for s in self.hostscripts.values() if "ERROR" in s.output]
        return out


def _flatten(node: ET.Element, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    for child in node:
        key = child.get("key", "")
        if child.tag == "elem":
            out.append(((*path, key), (child.text or "").strip()))
        elif child.tag == "table":
            out += _flatten(child, (*path, key))
    return out


def _script(el: ET.Element) -> Script:
    return Script(el.get("id", ""), el.get("output", ""), _flatten(el, ()))


def parse_nmap(xml_text: str) -> NmapResult:
    root = ET.fromstring(xml_text)
    res = NmapResult()
    for host in root.iter("host"):
        for port in host.iter("port"):
            state = port.find("state")
            service = port.find("service")
            res.ports.append(NmapPort(
                port.get("protocol", ""), int(port.get("portid", "0")),
                state.get("state", "") if state is not None else "",
                service.get("name", "") if service is not None else "",
                service.get("product", "") if service is not None else "",
                service.get("version", "") if service is not None else "",
                {s.get("id", ""): _script(s) for s in port.iter("script")},
            ))
        for hs in host.iter("hostscript"):
            res.hostscripts.update({s.get("id", ""): _script(s) for s in hs.iter("script")})
    return res


# --- what counts as a problem reported by nmap -------------------------------------------------

Verdict = tuple[bool, str]  # (found, evidence)
NO: Verdict = (False, "")


def _says(script_id: str, *needles: str) -> Callable[[NmapResult], Verdict]:
    def judge(res: NmapResult) -> Verdict:
        for where, sc in res.scripts(script_id):
            for needle in needles:
                if needle.lower() in sc.output.lower():
                    return True, f'{script_id} ({where}): "{needle}"'
        return NO

    return judge


def _answered(script_id: str) -> Callable[[NmapResult], Verdict]:
    """The script printed a result that is not an error (it got in and listed something)."""

    def judge(res: NmapResult) -> Verdict:
        for where, sc in res.scripts(script_id):
            text = sc.output.strip()
            if text and "ERROR" not in text and "refused" not in text.lower():
                first = text.splitlines()[0].strip()[:60]
                return True, f"{script_id} ({where}): {first!r}"
        return NO

    return judge


def _http_mentions(*needles: str) -> Callable[[NmapResult], Verdict]:
    def judge(res: NmapResult) -> Verdict:
        for port in res.ports:
            for sc in port.scripts.values():
                if not sc.id.startswith("http-") or sc.id in ("http-open-proxy",):
                    continue
                for needle in needles:
                    if needle in sc.output:
                        return True, f'{sc.id} ({port.port}/{port.proto}): "{needle}"'
        return NO

    return judge


def _socks_open(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("socks-open-proxy"):
        if "open" in sc.values("status"):
            versions = ", ".join(v for p, v in sc.elems if "versions" in p)
            return True, f"socks-open-proxy ({where}): status open, {versions}"
    return NO


def _service(name: str) -> Callable[[NmapResult], Verdict]:
    def judge(res: NmapResult) -> Verdict:
        for p in res.ports:
            if p.state == "open" and p.service == name:
                return True, f"-sV ({p.port}/{p.proto}): service {name} {p.product}".strip()
        return NO

    return judge


def _http_version(res: NmapResult) -> Verdict:
    for p in res.ports:
        if p.state == "open" and p.service == "http" and p.version:
            return True, f"-sV ({p.port}/{p.proto}): {p.product} {p.version} (shown, not flagged)"
    return NO


def _smb_guest_share(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("smb-enum-shares"):
        shares: dict[str, dict[str, str]] = {}
        for path, value in sc.elems:
            if len(path) >= 2 and "\\" in path[-2]:
                shares.setdefault(path[-2], {})[path[-1]] = value
        for share, fields in shares.items():
            if share.upper().endswith("IPC$"):
                continue
            for key in ("Anonymous access", "Current user access"):
                if fields.get(key, "").startswith("READ"):
                    return True, f"smb-enum-shares ({where}): {share} {key}: {fields[key]}"
    return NO


def _tls10(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssl-enum-ciphers"):
        if any(p and p[0] == "TLSv1.0" for p, _ in sc.elems):
            return True, f"ssl-enum-ciphers ({where}): TLSv1.0 listed"
    return NO


def _weak_ciphers(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssl-enum-ciphers"):
        grades = sc.values("least strength")
        warnings = [v for p, v in sc.elems if "warnings" in p]
        if warnings and all("certificate" in w.lower() for w in warnings):
            continue  # capped for the certificate (SHA-1, short key): not the ciphers
        if grades and any(g != "A" for g in grades):
            return True, f"ssl-enum-ciphers ({where}): least strength {min(grades, key=str)}"
    return NO


def _cert_expired(res: NmapResult) -> Verdict:
    now = datetime.now(UTC)
    for where, sc in res.scripts("ssl-cert"):
        for text in sc.values("validity", "notAfter"):
            try:
                end = datetime.fromisoformat(text)
            except ValueError:
                continue
            if end.tzinfo is None:
                end = end.replace(tzinfo=UTC)
            if end < now:
                return True, f"ssl-cert ({where}): not valid after {text}"
    return NO


def _cert_self_signed(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssl-cert"):
        subject = sorted((p[-1], v) for p, v in sc.elems if p[:1] == ("subject",))
        issuer = sorted((p[-1], v) for p, v in sc.elems if p[:1] == ("issuer",))
        if subject and subject == issuer:
            return True, f"ssl-cert ({where}): issuer = subject"
    return NO


# nmap only lists the algorithms; these names are weak by any table (ssh-audit's, mamori's).
WEAK_SSH = ("diffie-hellman-group1-sha1", "3des-cbc", "arcfour", "blowfish-cbc",
            "cast128-cbc", "hmac-md5", "ssh-dss")


def _ssh_weak(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssh2-enum-algos"):
        weak = sorted({v for _, v in sc.elems if v.startswith(WEAK_SSH)})
        if weak:
            return True, f"ssh2-enum-algos ({where}): lists {', '.join(weak)}"
    return NO


def _on_port(port: int, script_id: str, *needles: str) -> Callable[[NmapResult], Verdict]:
    """``script_id`` on ``port`` printed one of ``needles``."""

    def judge(res: NmapResult) -> Verdict:
        for p in res.ports:
            sc = p.scripts.get(script_id)
            if p.port != port or sc is None:
                continue
            for needle in needles:
                if needle.lower() in sc.output.lower():
                    return True, f'{script_id} ({p.port}/{p.proto}): "{needle}"'
        return NO

    return judge


def _first(*judges: Callable[[NmapResult], Verdict]) -> Callable[[NmapResult], Verdict]:
    def judge(res: NmapResult) -> Verdict:
        return next((v for v in (j(res) for j in judges) if v[0]), NO)

    return judge


def _cert_weak_key(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssl-cert"):
        kinds = sc.values("pubkey", "type")
        for bits in sc.values("pubkey", "bits"):
            if bits.isdigit() and int(bits) < 2048 and "ec" not in kinds:
                return True, f"ssl-cert ({where}): public key {bits} bits"
    return NO


def _cert_sha1(res: NmapResult) -> Verdict:
    for where, sc in res.scripts("ssl-cert"):
        for algo in sc.values("sig_algo"):
            if "sha1" in algo.lower() or "md5" in algo.lower():
                return True, f"ssl-cert ({where}): signature {algo}"
    return NO


@dataclass(frozen=True)
class ProblemClass:
    label: str
    daemon: str  # the lab daemon (bench/_daemons.py name prefix) the class needs
    mamori: tuple[str, ...]  # check ids
    nmap: Callable[[NmapResult], Verdict] | None
    nmap_note: str = ""  # why nmap has no verdict, or how it is read
    port: int | None = None  # count mamori's findings on this port only (shared check ids)


CLASSES = (
    ProblemClass("SMTP open relay", "postfix", ("smtp-open-relay",),
                 _says("smtp-open-relay", "Server is an open relay")),
    ProblemClass("open HTTP proxy", "tinyproxy", ("http-open-proxy",),
                 _says("http-open-proxy", "Potentially OPEN proxy")),
    ProblemClass("open SOCKS proxy", "dante", ("socks-open-proxy",), _socks_open),
    ProblemClass("open DNS resolver", "unbound", ("dns-open-resolver",),
                 _says("dns-recursion", "Recursion appears to be enabled")),
    ProblemClass("DNS amplification (factor measured)", "unbound", ("dns-amplification",), None,
                 "no NSE script measures it"),
    ProblemClass("SNMP answers community public", "snmpd", ("snmp-amplification",),
                 _answered("snmp-sysdescr"), "snmp-sysdescr got sysDescr with 'public'"),
    ProblemClass("Redis without auth", "redis", ("redis-unauthenticated",),
                 _says("redis-info", "Version")),
    ProblemClass("Memcached without auth", "memcached", ("memcached-unauthenticated",),
                 _says("memcached-info", "Process ID", "Uptime")),
    ProblemClass("PostgreSQL trust auth", "postgresql", ("postgresql-trust-auth",), None,
                 "only pgsql-brute exists (brute force): not run"),
    ProblemClass("MySQL/MariaDB empty root password", "mariadb",
                 ("mysql-empty-root-password",),
                 _says("mysql-empty-password", "root account has empty password")),
    ProblemClass("MQTT anonymous", "mosquitto", ("mqtt-anonymous",), _answered("mqtt-subscribe")),
    ProblemClass("rsync module readable", "rsyncd", ("rsync-modules-readable",),
                 _answered("rsync-list-modules"), "rsync-list-modules lists, does not read"),
    ProblemClass("FTP anonymous login", "vsftpd", ("ftp-anonymous-login",),
                 _on_port(21, "ftp-anon", "Anonymous FTP login allowed"), port=21),
    ProblemClass("FTP anonymous write", "vsftpd", ("ftp-anonymous-write",),
                 _on_port(21, "ftp-anon", "[NSE: writeable]"),
                 "ftp-anon guesses from listing modes", port=21),
    ProblemClass("Telnet exposed", "telnetd", ("telnet-exposed",), _service("telnet"),
                 "from -sV: no NSE script flags telnet"),
    ProblemClass("SMB guest share", "samba", ("smb-guest-shares",), _smb_guest_share),
    ProblemClass("SMBv1 accepted", "samba", ("smb1-enabled",),
                 _says("smb-protocols", "NT LM 0.12")),
    ProblemClass("HTTP directory listing", "nginx", ("http-directory-listing",),
                 _http_mentions("directory listing", "Index of /")),
    ProblemClass("exposed .git", "nginx", ("http-exposed-git",),
                 _says("http-git", "Git repository found")),
    ProblemClass("exposed .env", "nginx", ("http-exposed-env",), _http_mentions("/.env")),
    ProblemClass("exposed .DS_Store", "nginx", ("http-exposed-ds-store",),
                 _http_mentions(".DS_Store")),
    ProblemClass("exposed backups/dumps", "nginx", ("http-exposed-backup",),
                 _http_mentions("backup.zip", "dump.sql", ".bak")),
    ProblemClass("risky HTTP methods (PUT/DELETE/TRACE)", "nginx", ("http-dangerous-methods",),
                 _says("http-methods", "Potentially risky methods")),
    ProblemClass("WebDAV PUT allowed", "nginx", ("webdav-put-allowed",),
                 _answered("http-webdav-scan")),
    ProblemClass("HTTP server version disclosed", "nginx", ("http-version-disclosure",),
                 _http_version, "-sV prints it; nmap does not call it a problem"),
    ProblemClass("TLS 1.0 accepted", "openssl", ("tls-1-0-accepted",), _tls10),
    ProblemClass("weak TLS ciphers", "openssl", ("tls-weak-ciphers",), _weak_ciphers,
                 "ssl-enum-ciphers least strength below A"),
    ProblemClass("TLS certificate expired", "openssl", ("tls-certificate-expired",),
                 _cert_expired),
    ProblemClass("TLS certificate self-signed", "openssl", ("tls-certificate-self-signed",),
                 _cert_self_signed),
    ProblemClass("SSH password authentication", "sshd", ("ssh-password-authentication",),
                 _says("ssh-auth-methods", "password")),
    ProblemClass("SSH root login allowed", "sshd", ("ssh-root-login",), None,
                 "no NSE script tests PermitRootLogin"),
    ProblemClass("SSH weak algorithms", "sshd", ("ssh-weak-algorithms",), _ssh_weak,
                 "ssh2-enum-algos lists; judged here by name"),
    ProblemClass("Apache server-status open", "apache2", ("http-server-status-exposed",),
                 _first(_answered("http-apache-server-status"),
                        _on_port(8080, "http-enum", "/server-status")), port=8080),
    ProblemClass("Apache server-info open", "apache2", ("http-server-info-exposed",),
                 _on_port(8080, "http-enum", "/server-info"), "http-enum's path list",
                 port=8080),
    ProblemClass("nginx stub_status / PHP-FPM status open", "nginx pages",
                 ("http-server-status-exposed",),
                 _on_port(8081, "http-enum", "nginx_status", "fpm-status"),
                 "no NSE script reads them; http-enum's path list", port=8081),
    ProblemClass("HTTP Basic auth over plain HTTP", "nginx pages", ("http-auth-cleartext",),
                 _first(_on_port(8081, "http-auth", "Basic"),
                        _on_port(8081, "http-auth-finder", "HTTP: Basic")),
                 "http-auth asks / only; http-auth-finder spiders", port=8081),
    ProblemClass("HTTP Digest auth over plain HTTP", "apache2", ("http-auth-cleartext",),
                 _first(_on_port(8080, "http-auth", "Digest"),
                        _on_port(8080, "http-auth-finder", "HTTP: Digest")),
                 "http-auth asks / only; http-auth-finder spiders", port=8080),
    ProblemClass("login form posted over plain HTTP", "nginx pages",
                 ("http-login-form-cleartext",),
                 _on_port(8081, "http-auth-finder", "FORM"), port=8081),
    ProblemClass("TLS incomplete chain (intermediate not sent)", "incomplete chain",
                 ("tls-certificate-incomplete-chain",), None,
                 "ssl-cert prints the leaf; no NSE script builds the chain"),
    ProblemClass("TLS weak leaf key (RSA-1024)", "RSA-1024", ("tls-certificate-weak-key",),
                 _cert_weak_key, "ssl-cert prints the key size; judged here (< 2048)"),
    ProblemClass("X11 without access control", "Xvfb", ("x11-no-access-control",),
                 _says("x11-access", "X server access is granted")),
    ProblemClass("git daemon exports a repository", "git daemon", ("git-daemon-exports",),
                 _service("git"), "from -sV: no NSE script reads git://"),
    ProblemClass("LDAP anonymous read", "slapd", ("ldap-anonymous-read",),
                 _says("ldap-search", "dn:"), "ldap-search binds anonymously"),
    ProblemClass("TFTP serves files", "tftpd", ("tftp-files-readable",),
                 _says("tftp-enum", "pxelinux")),
    ProblemClass("DNS zone transfer (AXFR)", "named", ("dns-zone-transfer",),
                 _answered("dns-zone-transfer"),
                 "nmap needs the zone name (given); mamori finds it from the PTR"),
    ProblemClass("rsync module writable", "rsyncd (module writable)",
                 ("rsync-module-writable",), None, "no NSE script tries an upload"),
    ProblemClass("FTP anonymous login (ProFTPD, product-free greeting)", "proftpd",
                 ("ftp-anonymous-login",),
                 _on_port(2121, "ftp-anon", "Anonymous FTP login allowed"), port=2121),
    ProblemClass("FTP anonymous write (ProFTPD, product-free greeting)", "proftpd",
                 ("ftp-anonymous-write",), _on_port(2121, "ftp-anon", "[NSE: writeable]"),
                 "ftp-anon guesses from listing modes", port=2121),
    ProblemClass("VNC without authentication", "Xvnc", ("vnc-no-authentication",),
                 _says("vnc-info", "None (1)", "does not require authentication")),
    ProblemClass("rpcbind lists its services", "rpcbind", ("rpcbind-dump-exposed",),
                 _on_port(111, "rpcinfo", "mountd"), "rpcinfo lists the programs"),
    ProblemClass("CUPS printer shared", "cupsd", ("ipp-printer-shared",),
                 _on_port(631, "cups-info", "labprinter"), "cups-info lists the printers"),
    ProblemClass("CUPS remote administration", "cupsd", ("cups-admin-remote",), None,
                 "no NSE script looks at /admin"),
    ProblemClass("IMAP accepts passwords in cleartext", "dovecot IMAP",
                 ("mail-cleartext-login",), _on_port(143, "imap-capabilities", "AUTH=PLAIN"),
                 "imap-capabilities lists them; judged here (AUTH=PLAIN)", port=143),
    ProblemClass("POP3 accepts passwords in cleartext", "dovecot POP3",
                 ("mail-cleartext-login",), _on_port(110, "pop3-capabilities", "USER"),
                 "pop3-capabilities lists them; judged here (USER)", port=110),
    ProblemClass("SMTP user enumeration (VRFY)", "postfix submission",
                 ("smtp-user-enumeration",), _on_port(587, "smtp-enum-users", "root"),
                 port=587),
    ProblemClass("SMTP submission without STARTTLS", "postfix submission",
                 ("smtp-no-starttls",), None,
                 "smtp-commands lists EHLO; no NSE script flags STARTTLS missing", port=587),
    ProblemClass("SMB signing not required", "samba (guest", ("smb-signing-not-required",),
                 _says("smb2-security-mode", "not required"),
                 "a host script: any SMB port", port=445),
    ProblemClass("SMB3 encryption unavailable", "samba (no SMB3",
                 ("smb-encryption-unavailable",), None,
                 "smb2-security-mode and smb-protocols do not report encryption", port=1445),
    ProblemClass("SNMP default community readable", "snmpd", ("snmp-default-community",),
                 _answered("snmp-sysdescr")),
    ProblemClass("SNMP default community writable", "snmpd", ("snmp-writable-community",),
                 None, "only snmp-brute (a word list) would find 'private'; not run"),
    ProblemClass("TLS SHA-1 certificate signature", "SHA-1 signature",
                 ("tls-certificate-weak-signature",), _cert_sha1,
                 "ssl-cert prints sig_algo; judged here"),
)


# --- mamori's JSON ---------------------------------------------------------------------------


def mamori_findings(json_text: str) -> tuple[Counter[str], Counter[str]]:
    """(findings by check id, not-tested by check id) from a ``--format json`` report."""
    data = json.loads(json_text)
    found: Counter[str] = Counter()
    untested: Counter[str] = Counter()
    for c in data.get("checks", []):
        if c.get("status") == "finding":
            found[c["check_id"]] += 1
            found[f"{c['check_id']}@{c.get('port')}"] += 1  # for classes sharing a check
        elif c.get("status") == "not-tested":
            untested[f"{c['check_id']}@{c.get('port')}: {c.get('summary', '')[:80]}"] += 1
    return found, untested


def _total(found: Counter[str]) -> int:
    """Findings in ``found`` (without the per-port copies, "check@port")."""
    return sum(n for k, n in found.items() if "@" not in k)


# --- running -----------------------------------------------------------------------------------


# Debian's OpenSSL refuses TLS < 1.2 by default (MinProtocol, SECLEVEL=2), so nmap's ssl-cert
# and -sV could not even read the certificate of a TLS 1.0-only server; mamori's TLS checks
# set up their own contexts. nmap gets this config so that it is not handicapped.
OPENSSL_LEGACY = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
"""


def timed(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout,
                         env=env)
    elapsed = time.perf_counter() - t0
    if out.returncode not in (0, 1):  # mamori: 1 = a finding at --fail-on (not used here)
        raise SystemExit(f"{shlex.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed, out.stdout


def port_spec(tcp: list[int], udp: list[int]) -> str:
    parts = []
    if tcp:
        parts.append("T:" + ",".join(map(str, tcp)))
    if udp:
        parts.append("U:" + ",".join(map(str, udp)))
    return ",".join(parts)


def reexec_in_private_namespace() -> None:
    """Run this script again inside ``unshare --mount`` (replacing this process)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("unshare (util-linux) is needed to keep name lookups on this machine")
    os.environ[NS_MARK] = labs.mount_namespace()
    os.execv(unshare, [unshare, "--mount", "--propagation", "private", "--",
                       sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each tool (default 3)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed mamori scans first (bytecode, page cache; default 1)")
    ap.add_argument("--nmap-system-openssl", action="store_true",
                    help="run nmap with the system OpenSSL config (Debian: no TLS < 1.2, so "
                    "ssl-cert and -sV cannot read the TLS 1.0 server; nmap runs faster)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when mamori is not faster than nmap")
    ap.add_argument("--timeout", type=float, default=300, help="longest run of one tool, s")
    ap.add_argument("--save", type=Path,
                    help="keep every run's raw outputs here (mamori-N.json, nmap-N.xml)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: daemons on privileged ports, lo aliases, nmap -sU")
    if shutil.which("nmap") is None:
        raise SystemExit("nmap is not on PATH")
    if not os.environ.get(NS_MARK):
        reexec_in_private_namespace()

    if labs.mount_namespace() == os.environ[NS_MARK]:
        raise SystemExit("not in a private mount namespace: refusing to touch /etc/resolv.conf")
    signal.signal(signal.SIGTERM, _sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="mamori-bench-checks-run-"))
    try:
        labs.jail_resolver(tmp / "resolv.conf")
        print(f"lab on {labs.HOST} (lab DNS {labs.DNS_HOST}, canary {labs.CANARY_HOST}:80); "
              f"/etc/resolv.conf -> {labs.DNS_HOST} in this mount namespace")
        with labs.running_lab() as lab:
            return bench(lab, args, tmp)
    except KeyboardInterrupt:
        print("interrupted: every daemon stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(lab: labs.Lab, args: argparse.Namespace, tmp: Path) -> int:
    spec = port_spec(lab.tcp_ports(), lab.udp_ports())
    mamori = [sys.executable, "-m", "mamori", "scan", labs.HOST, "-p", spec, "--format", "json",
              "--db", str(tmp / "bench.db")]
    script_args = ",".join([
        f"proxy.url={lab.canary_url}", f"proxy.pattern={lab.canary_pattern}",
        "smtp-open-relay.domain=nmap-relay.invalid", "smtp-open-relay.from=antispam",
        "smtp-open-relay.to=relaytest",
        # named listens on 5300 (unbound has 53/udp): the script's prerule is told where.
        f"dns-zone-transfer.server={labs.HOST}", "dns-zone-transfer.port=5300",
        f"dns-zone-transfer.domain={labs.fx.XFR_ZONE}",
    ])
    nmap = ["nmap", "-n", "-Pn", "-sV", "-sT", *(["-sU"] if lab.udp_ports() else []),
            "-p", spec, "--dns-servers", labs.DNS_HOST, "--script", ",".join(NSE_SCRIPTS),
            "--script-args", script_args, "-oX", "-", labs.HOST]
    openssl_conf = tmp / "openssl-legacy.cnf"
    openssl_conf.write_text(OPENSSL_LEGACY)
    nmap_env = dict(BENCH_ENV)
    if not args.nmap_system_openssl:
        nmap_env["OPENSSL_CONF"] = str(openssl_conf)
    prefix = "" if args.nmap_system_openssl else f"OPENSSL_CONF={openssl_conf} "
    print(f"\nmamori: {shlex.join(mamori)}\nnmap:   {prefix}{shlex.join(nmap)}\n", flush=True)
    for i in range(args.warmup):
        m_s, _ = timed(mamori, args.timeout, BENCH_ENV)
        print(f"  warm-up {i + 1}: mamori {m_s:.2f}s (untimed; nmap needs no warm-up)", flush=True)

    m_times: list[float] = []
    n_times: list[float] = []
    m_counts: list[Counter[str]] = []
    n_verdicts: list[dict[str, Verdict]] = []
    last_untested: Counter[str] = Counter()
    last_errors: list[str] = []
    for i in range(args.runs):
        label = f"run {i + 1}"
        m_s, m_out = timed(mamori, args.timeout, BENCH_ENV)
        n_s, n_out = timed(nmap, args.timeout, nmap_env)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"mamori-{label.replace(' ', '')}.json").write_text(m_out)
            (args.save / f"nmap-{label.replace(' ', '')}.xml").write_text(n_out)
        found, last_untested = mamori_findings(m_out)
        res = parse_nmap(n_out)
        last_errors = res.errors()
        verdicts = {c.label: c.nmap(res) for c in CLASSES if c.nmap is not None}
        print(f"  {label}: mamori {m_s:.2f}s ({_total(found)} findings)  "
              f"nmap {n_s:.2f}s ({sum(v[0] for v in verdicts.values())} problems)", flush=True)
        m_times.append(m_s)
        n_times.append(n_s)
        m_counts.append(found)
        n_verdicts.append(verdicts)
    return report(lab, args, m_times, n_times, m_counts, n_verdicts, last_untested, last_errors)


def _stable(counts: list[Counter[str]]) -> bool:
    return all(c == counts[0] for c in counts)


def report(lab: labs.Lab, args: argparse.Namespace, m_times: list[float], n_times: list[float],
           m_counts: list[Counter[str]], n_verdicts: list[dict[str, Verdict]],
           untested: Counter[str], nmap_errors: list[str]) -> int:
    m_med, n_med = statistics.median(m_times), statistics.median(n_times)
    ratio = m_med / n_med
    found = m_counts[-1]
    verdicts = n_verdicts[-1]
    print(f"\nmamori scan median {m_med:.2f}s (runs {', '.join(f'{t:.2f}' for t in m_times)})")
    print(f"nmap -sV --script median {n_med:.2f}s (runs {', '.join(f'{t:.2f}' for t in n_times)})")
    print(f"ratio mamori/nmap {ratio:.3f} (goal < 1: {'met' if ratio < 1 else 'MISSED'})")

    print(f"\nmamori findings: {_total(found)} "
          f"({'same' if _stable(m_counts) else 'DIFFERENT'} in every run)")
    for check_id, n in sorted(found.items()):
        if "@" not in check_id:
            print(f"  {check_id:32s} {n}")
    if untested:
        print("mamori not tested:")
        for line, n in sorted(untested.items()):
            print(f"  {line} (x{n})")
    stable_n = all({k: v[0] for k, v in nv.items()} == {k: v[0] for k, v in verdicts.items()}
                   for nv in n_verdicts)
    n_found = [(label, ev) for label, (ok, ev) in verdicts.items() if ok]
    print(f"\nnmap problems reported: {len(n_found)} "
          f"({'same' if stable_n else 'DIFFERENT'} in every run)")
    for label, ev in n_found:
        print(f"  {label:38s} {ev}")
    for line in nmap_errors:
        print(f"  nmap script error: {line}")

    rows = []
    started = " ".join(lab.daemons).lower()
    print(f"\n{'problem class':40s} {'mamori':7s} {'nmap':7s} note")
    for c in CLASSES:
        if c.daemon.lower() not in started:
            continue
        m_ok = any(found.get(i if c.port is None else f"{i}@{c.port}", 0) for i in c.mamori)
        if c.nmap is None:
            n_txt, n_ok = "n/a", None
        else:
            n_ok = verdicts[c.label][0]
            n_txt = "yes" if n_ok else "no"
        print(f"{c.label:40s} {'yes' if m_ok else 'no':7s} {n_txt:7s} {c.nmap_note}")
        rows.append({"class": c.label, "mamori_checks": list(c.mamori), "mamori": m_ok,
                     "nmap": n_ok, "nmap_evidence": verdicts.get(c.label, NO)[1],
                     "note": c.nmap_note})
    m_classes = sum(r["mamori"] for r in rows)
    n_classes = sum(bool(r["nmap"]) for r in rows)
    print(f"{'classes found':40s} {m_classes:<7d} {n_classes:<7d} of {len(rows)}")

    if lab.skipped:
        print("\nskipped daemons:")
        for name, why in lab.skipped.items():
            print(f"  {name}: {why}")
    lookups = lab.resolver_lookups()
    print(f"\nlookups through the system resolver, answered by the lab DNS: {len(lookups)}")
    for (peer, owner, name, qtype), n in sorted(Counter(lookups).items()):
        print(f"  {name} type {qtype} from {owner or '?'} at {peer} (x{n})")
    fetches = lab.proxy_canary_fetches()
    print(f"proxy.url fetched through the proxies: {len(fetches)} times "
          f"(from {', '.join(sorted({p for p, _ in fetches})) or 'nobody'})")
    foreign = lab.foreign_queries()
    others = len(lab.canary_hits) - len(fetches)
    if foreign or others:
        print(f"other programs on this machine probed the lab's helper listeners: {len(foreign)} "
              f"DNS queries ({', '.join(sorted({q[1] for q in foreign}))}), {others} HTTP "
              "requests to the canary")

    if args.json:
        args.json.write_text(json.dumps({
            "mamori_median_s": round(m_med, 3), "nmap_median_s": round(n_med, 3),
            "ratio": round(ratio, 4), "goal_met": ratio < 1,
            "mamori_runs_s": [round(t, 3) for t in m_times],
            "nmap_runs_s": [round(t, 3) for t in n_times],
            "mamori_findings": {k: n for k, n in sorted(found.items()) if "@" not in k},
            "mamori_findings_total": _total(found),
            "nmap_problems": dict(n_found), "nmap_problems_total": len(n_found),
            "classes": rows, "daemons": {k: f"{p.port}/{p.proto}" for k, p in lab.ports.items()},
            "skipped": lab.skipped,
            "resolver_lookups": [list(q) for q in lookups],
            "nmap_openssl": "system" if args.nmap_system_openssl else "legacy (TLS 1.0 allowed)",
        }, indent=2) + "\n", encoding="utf-8")
    return 0 if ratio < 1 or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
