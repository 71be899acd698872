"""The lab for bench/checks.py: the check tests' MISCONFIGURED daemons on one loopback address.

Every daemon is started by the test fixture that the check tests use (tests/ is put on
sys.path), bound to 127.0.70.1 on its usual port, so that nmap's port rules and mamori's port
hints both apply. Two helper addresses:

- 127.0.70.2:53/udp  the lab's DNS server: the authoritative "." that unbound's stub zone
  points at (so recursion never leaves the machine), and the resolver of every process the
  bench starts (see ``jail_resolver``): a name lookup a daemon or a tool makes through the
  system resolver is answered here, logged, and never sent to /etc/resolv.conf's server;
- 127.0.70.3:80/tcp  an HTTP canary page, the ``proxy.url`` nmap's open-proxy scripts fetch
  through the target (socks-open-proxy always connects to port 80 and always resolves the
  URL's host with nselib's dns.query, even an address literal: the lab DNS answers it).

A daemon that fails to start is skipped and listed in ``Lab.skipped`` with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import daemons as dm  # noqa: E402
import fixtures_breadth as fbr  # noqa: E402
import fixtures_chains as fch  # noqa: E402
import fixtures_crypto as fc  # noqa: E402
import fixtures_data as fdata  # noqa: E402
import fixtures_dns as fdns  # noqa: E402
import fixtures_exposure as fx  # noqa: E402
import fixtures_mail as fmail  # noqa: E402
import fixtures_remote as fr  # noqa: E402
import fixtures_sharing as fs  # noqa: E402
import fixtures_smtp as fsmtp  # noqa: E402
import fixtures_snmp as fsnmp  # noqa: E402
import fixtures_web as fw  # noqa: E402
import fixtures_web_pages as fp  # noqa: E402
from mamori.protocols import dns  # noqa: E402

HOST = "127.0.70.1"  # every daemon under test
DNS_HOST = "127.0.70.2"  # the lab's DNS: unbound's "." and every bench process's resolver
CANARY_HOST = "127.0.70.3"  # the HTTP canary nmap's open-proxy scripts fetch (port 80)

# What the two tools' open-resolver probes ask, answered by the lab's "." (DNS data only:
# unbound talks to nothing but the stub address, whatever these records say).
# mamori's dns-open-resolver asks a.root-servers.net and expects its long-standing address;
# nmap's dns-recursion asks www.wikipedia.org and wants NOERROR with RA set.
EXTRA_RECORDS = {
    "a.root-servers.net": "198.41.0.4",
    "www.wikipedia.org": "192.0.2.80",  # TEST-NET-1
    CANARY_HOST: CANARY_HOST,  # socks-open-proxy resolves the literal through dns.query
}


@dataclass
class Port:
    proto: str  # "tcp" or "udp"
    port: int


@dataclass
class Lab:
    work: Path
    daemons: dict[str, dm.Daemon] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)  # daemon name -> its port on HOST
    skipped: dict[str, str] = field(default_factory=dict)  # daemon name -> why
    # (peer address, process that asked or "", name, type) of every query the lab DNS got
    dns_log: list[tuple[str, str, str, int]] = field(default_factory=list)
    canary_hits: list[tuple[str, str]] = field(default_factory=list)  # (peer, request line)
    canary_url: str = ""
    canary_pattern: str = ""

    def tcp_ports(self) -> list[int]:
        return sorted(p.port for p in self.ports.values() if p.proto == "tcp")

    def udp_ports(self) -> list[int]:
        return sorted(p.port for p in self.ports.values() if p.proto == "udp")

    def resolver_lookups(self) -> list[tuple[str, str, str, int]]:
        """Lookups that came through a process's system resolver (not unbound's recursion,
        which leaves from HOST): without the jail each of these would have gone off-machine."""
        return [q for q in self.dns_log if q[0] != HOST and "outside" not in q[1]]

    def foreign_queries(self) -> list[tuple[str, str, str, int]]:
        """Queries other programs on the machine sent to the lab DNS's listener."""
        return [q for q in self.dns_log if "outside" in q[1]]

    def proxy_canary_fetches(self) -> list[tuple[str, str]]:
        """Fetches of the proxy.url page (other requests to the canary are someone else's)."""
        path = self.canary_url.split(CANARY_HOST, 1)[1]
        return [h for h in self.canary_hits if f" {path} " in h[1]]


# --- the resolver jail ---------------------------------------------------------------------


def jail_resolver(resolv_conf: Path) -> None:
    """Bind-mount a resolv.conf naming only the lab DNS over /etc/resolv.conf.

    Call it inside a private mount namespace (``unshare --mount``): the mount is then seen by
    this process and its children only, and disappears with them.
    """
    resolv_conf.write_text(f"nameserver {DNS_HOST}\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", str(resolv_conf), "/etc/resolv.conf"], check=True)
    got = Path("/etc/resolv.conf").read_text()
    if DNS_HOST not in got:
        raise SystemExit("could not point /etc/resolv.conf at the lab DNS")


# --- the lab DNS and the HTTP canary ---------------------------------------------------------


def _udp_owner(peer: tuple[str, int]) -> str:
    """The process owning the UDP socket a query came from (it waits for our answer), and
    "outside the bench" when it is not in the bench's mount namespace (another program on
    the machine probing the lab's listener, not a lookup through the jailed resolver)."""
    out = subprocess.run(["ss", "-uanpH", "src", f"{peer[0]}:{peer[1]}"], capture_output=True,
                         text=True, check=False).stdout
    match = re.search(r'\(\("([^"]+)",pid=(\d+)', out)
    if match is None:
        return "?"
    name, pid = match.groups()
    try:
        inside = os.readlink(f"/proc/{pid}/ns/mnt") == mount_namespace()
    except OSError:
        inside = False
    return name if inside else f"{name} pid {pid}, outside the bench"


def _lab_dns(lab: Lab) -> fdns.UdpServer:
    records = fdns.zone(DNS_HOST)
    for name, address in EXTRA_RECORDS.items():
        records[(name, dns.TYPE_A)] = [socket.inet_aton(address)]

    def respond(data: bytes, peer: tuple[str, int]) -> list[bytes]:
        msg = dns.parse_message(data)
        if msg is not None and len(msg.questions) == 1:
            owner = _udp_owner(peer) if peer[0] != HOST else "unbound"
            lab.dns_log.append((peer[0], owner, msg.questions[0][0], msg.questions[0][1]))
        out = fdns.authoritative_reply(data, records)
        return [out] if out is not None else []

    return fdns.UdpServer(DNS_HOST, 53, respond)


class _CanaryHandler(BaseHTTPRequestHandler):
    """The page behind ``proxy.url``. nmap's proxy library matches ``proxy.pattern`` against
    the first read of the reply only: the token is in a header too, and the whole reply goes
    out in one write."""

    lab: Lab  # set on the subclass made per lab

    def _reply(self, with_body: bool) -> None:
        self.lab.canary_hits.append((self.client_address[0], self.requestline[:200]))
        token = self.lab.canary_pattern
        body = f"<html><body>{token}</body></html>\n".encode()
        head = (f"HTTP/1.0 200 OK\r\nServer: mamori-bench-canary\r\nX-Canary: {token}\r\n"
                f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        self.wfile.write(head + body if with_body else head)
        self.close_connection = True

    def do_GET(self) -> None:
        self._reply(with_body=True)

    def do_HEAD(self) -> None:
        self._reply(with_body=False)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CanaryServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a proxy test that connects and resets is no news

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks socket.getfqdn() for its own name: a reverse lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


@contextlib.contextmanager
def _canary(lab: Lab) -> Iterator[None]:
    # Letters and digits only: nmap's proxy library uses it as a Lua pattern ("-" is a
    # quantifier there).
    lab.canary_pattern = "mamoribenchcanary" + secrets.token_hex(12)
    # The path differs from the pattern: a server echoing the request cannot match.
    path = "/page-" + secrets.token_hex(8)
    lab.canary_url = f"http://{CANARY_HOST}{path}"
    handler = type("Handler", (_CanaryHandler,), {"lab": lab})
    server = _CanaryServer((CANARY_HOST, 80), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


# --- daemons -------------------------------------------------------------------------------


def _expired_self_signed(workdir: Path) -> fc.Pem:
    """A self-signed leaf for mamori.test and HOST that expired 35 days ago."""
    now = datetime.now(UTC)
    cert, key = fc._leaf("mamori.test", ["mamori.test", HOST], None,
                         now - timedelta(days=400), now - timedelta(days=35))
    return fc._write(workdir, "expired-self-signed", [cert], key)


def _redis_protected_mode_off(host: str, port: int) -> None:
    """The misconfiguration that makes a real Redis open: ``protected-mode no``.

    The fixture starts Redis in protected mode, which answers only clients whose address is
    127.0.0.1; samba's /32 alias for HOST makes every local connection to HOST come from
    HOST itself, so a protected Redis would deny both scanners. Redis accepts CONFIG SET
    from 127.0.0.1: switch protected mode off from there.
    """
    with socket.create_connection((host, port), timeout=5, source_address=("127.0.0.1", 0)) as s:
        s.sendall(b"*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$14\r\nprotected-mode\r\n$2\r\nno\r\n")
        reply = s.recv(512)
    if not reply.startswith(b"+OK"):
        raise dm.DaemonUnavailable(f"redis: CONFIG SET protected-mode no answered {reply[:80]!r}")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _starters(lab: Lab, stack: contextlib.ExitStack
              ) -> list[tuple[str, Port, Callable[[], dm.Daemon]]]:
    w = lab.work

    def mariadb() -> dm.Daemon:
        template = fdata.mariadb_datadir(w)
        return fdata.start_mariadb(template, w / "mariadb", HOST, 3306, root_password="")

    def vsftpd() -> dm.Daemon:
        home = stack.enter_context(fr.world_readable_dir())
        return fr.start_vsftpd(home / "ftp", HOST, 21, anonymous=True, upload=True)

    def proftpd() -> dm.Daemon:
        home = stack.enter_context(fr.world_readable_dir())
        return fbr.start_proftpd(home / "proftpd", HOST, 2121, anonymous=True)

    def rpcbind() -> dm.Daemon:
        daemon = fbr.start_rpcbind(_mkdir(w / "rpcbind"), HOST, wrapped=False)
        fbr.register_rpc_program(HOST, 100005, 3, 20048)
        fbr.register_rpc_program(HOST, 100003, 3, 2049)
        return daemon

    def cupsd() -> dm.Daemon:
        home = stack.enter_context(fr.world_readable_dir())
        return fbr.start_cupsd(home / "cupsd", HOST, open_to_all=True)

    def nginx() -> dm.Daemon:
        home = fw.world_dir("mamori-bench-site-")
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        site = fw.make_site(home / "www")
        server = (f"    root {site};\n    autoindex on;\n    dav_methods PUT DELETE;\n"
                  "    dav_access user:rw group:r all:r;\n")
        return fw.start_nginx_site(_mkdir(w / "nginx"), HOST, {80: server})

    def s_server() -> dm.Daemon:
        pem = _expired_self_signed(_mkdir(w / "pki"))
        # NULL-encryption suites too ("weak TLS ciphers" is a planted problem; DEFAULT alone
        # offers none, and its !eNULL cannot be undone), never anonymous ones (ssl-cert
        # would then get no certificate).
        return fc.start_s_server(_mkdir(w / "tls"), HOST, 443, pem, "-tls1",
                                 "-cipher", "ALL:eNULL:!aNULL:@SECLEVEL=0")

    def redis() -> dm.Daemon:
        daemon = dm.start_redis(_mkdir(w / "redis"), HOST, 6379)
        _redis_protected_mode_off(HOST, 6379)
        return daemon

    def apache_pages() -> dm.Daemon:
        home = fw.world_dir("mamori-bench-pages-")
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        root = fp.make_docroot(home)
        return fp.start_apache_pages(_mkdir(w / "apache-pages"), HOST, 8080, 8448, root,
                                     hardened=False)

    def nginx_pages() -> dm.Daemon:
        home = fw.world_dir("mamori-bench-nginx-pages-")
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        root = fp.make_docroot(home)
        fpm = fp.start_php_fpm(_mkdir(w / "php-fpm"), HOST, 9001)
        stack.callback(_stop_quietly, fpm)
        cert = dm.make_cert(_mkdir(w / "nginx-pages"))
        servers = fp.nginx_servers(root, HOST, 8081, 8449, (HOST, 9001), cert, hardened=False)
        return fw.start_nginx_site(w / "nginx-pages", HOST, servers, frozenset({8449}))

    def chain(name: str, port: int) -> Callable[[], dm.Daemon]:
        def start() -> dm.Daemon:
            made = fch.make_chains(_mkdir(w / f"pki-{name}"), {name: HOST})
            return fch.start_nginx_chains(_mkdir(w / f"chain-{name}"), {name: (HOST, port)},
                                          made)
        return start

    tcp, udp = "tcp", "udp"
    return [
        ("postfix (open relay)", Port(tcp, 25), lambda: fsmtp.start_postfix_relay(
            _mkdir(w / "postfix"), HOST, 25, open_relay=True)),
        ("tinyproxy (open)", Port(tcp, 3128), lambda: fsmtp.start_tinyproxy(
            _mkdir(w / "tinyproxy"), HOST, 3128, allow="127.0.0.0/8")),
        ("dante (open)", Port(tcp, 1080), lambda: fsmtp.start_danted(
            _mkdir(w / "dante"), HOST, 1080, mode="open")),
        ("unbound (open resolver)", Port(udp, 53), lambda: fdns.start_unbound_resolver(
            _mkdir(w / "unbound"), HOST, 53, auth=(DNS_HOST, 53), open_to_all=True)),
        ("redis (no auth, protected mode off)", Port(tcp, 6379), redis),
        ("memcached (no auth, TCP)", Port(tcp, 11211), lambda: fdata.start_memcached(
            HOST, 11211, auth=False)),
        ("postgresql (trust)", Port(tcp, 5432), lambda: fdata.start_postgres(
            HOST, 5432, trust=True)),
        ("mariadb (empty root password)", Port(tcp, 3306), mariadb),
        ("mosquitto (anonymous)", Port(tcp, 1883), lambda: fr.start_mosquitto(
            w / "mosquitto", HOST, 1883, anonymous=True)),
        ("rsyncd (open module)", Port(tcp, 873), lambda: fr.start_rsyncd(
            w / "rsyncd", HOST, 873, auth=False)),
        ("vsftpd (anonymous, writable)", Port(tcp, 21), vsftpd),
        ("telnetd", Port(tcp, 23), lambda: dm.start_telnetd(_mkdir(w / "telnetd"), HOST, 23)),
        ("samba (guest share, SMB1)", Port(tcp, 445), lambda: fs.start_samba(
            _mkdir(w / "samba"), HOST, 445, "open")),
        ("nginx (autoindex, .git/.env, DAV PUT)", Port(tcp, 80), nginx),
        ("openssl s_server (TLS 1.0, NULL suites, expired self-signed)", Port(tcp, 443),
         s_server),
        ("sshd (password auth, weak algorithms)", Port(tcp, 22), lambda: fc.start_sshd(
            w / "sshd", HOST, 22, fc.SSHD_WEAK)),
        ("snmpd (public read-only, private read-write)", Port(udp, 161),
         lambda: fsnmp.start_snmpd_access(
             _mkdir(w / "snmpd"), HOST, 161,
             "rocommunity public 127.0.0.0/8\nrwcommunity private 127.0.0.0/8\n")),
        ("apache2 (server-status, server-info, Digest on HTTP, login form)", Port(tcp, 8080),
         apache_pages),
        ("nginx pages (stub_status, php-fpm status, Basic on HTTP, login form)",
         Port(tcp, 8081), nginx_pages),
        ("nginx TLS (incomplete chain)", Port(tcp, 8443), chain("incomplete", 8443)),
        ("nginx TLS (RSA-1024 leaf)", Port(tcp, 8444), chain("rsa-1024", 8444)),
        ("nginx TLS (SHA-1 signature)", Port(tcp, 8445), chain("sha1", 8445)),
        # Issue 14, mail and SMB: dovecot with cleartext logins (IMAP on 143, POP3 on 110:
        # two instances, one scanned port each), postfix with VRFY on and no TLS (submission
        # with AUTH PLAIN/LOGIN on 587; its MX listener on 2525 is not scanned), smbd without
        # SMB3 encryption on 1445 (samba on 445 keeps signing "enabled, not required").
        ("dovecot IMAP (cleartext logins)", Port(tcp, 143), lambda: fmail.start_dovecot_mail(
            _mkdir(w / "dovecot-imap"), HOST, 143, 11110, mode="cleartext")),
        ("dovecot POP3 (cleartext logins)", Port(tcp, 110), lambda: fmail.start_dovecot_mail(
            _mkdir(w / "dovecot-pop3"), HOST, 11143, 110, mode="cleartext")),
        ("postfix submission (VRFY, no STARTTLS, AUTH in clear)", Port(tcp, 587),
         lambda: fmail.start_postfix_mail(_mkdir(w / "postfix-mail"), HOST, 2525, 587,
                                          hardened=False)),
        ("samba (no SMB3 encryption)", Port(tcp, 1445), lambda: fs.start_samba(
            _mkdir(w / "samba-noenc"), HOST, 1445, "no-encryption")),
        # Issue 14 exposure families. Xvfb listens on every address of the namespace (it
        # cannot bind one); named on 5300 (unbound has UDP 53; nmap is told the port).
        ("Xvfb :0 (-ac, no access control)", Port(tcp, 6000), lambda: fx.start_xvfb(
            _mkdir(w / "xvfb"), HOST, 0, open_access=True)),
        ("git daemon (--export-all)", Port(tcp, 9418), lambda: fx.start_git_daemon(
            _mkdir(w / "git"), HOST, 9418, export_all=True)),
        ("slapd (anonymous read)", Port(tcp, 389), lambda: fx.start_slapd(
            _mkdir(w / "slapd"), HOST, 389, anonymous=True)),
        ("tftpd-hpa (boot menu)", Port(udp, 69), lambda: fx.start_tftpd(
            _mkdir(w / "tftpd"), HOST, 69, files={"pxelinux.cfg/default": b"DEFAULT linux\n"})),
        ("named (zone transfer to anyone)", Port(tcp, 5300), lambda: fx.start_named_xfr(
            _mkdir(w / "named"), HOST, 5300, transfer="any")),
        ("rsyncd (module writable)", Port(tcp, 8873), lambda: fx.start_rsyncd_drop(
            _mkdir(w / "rsyncd-drop"), HOST, 8873, writable=True)),
        # Issue 14, FTP by behaviour, VNC, printing and discovery: ProFTPD whose greeting names
        # no product (anonymous upload to incoming/), Xvnc offering security type None,
        # rpcbind listing mountd and nfs (registrations only), cupsd sharing a printer with
        # remote administration on.
        ("proftpd (anonymous, writable, product-free greeting)", Port(tcp, 2121), proftpd),
        ("Xvnc (security type None)", Port(tcp, 5900), lambda: fr.start_xvnc(
            _mkdir(w / "xvnc"), HOST, 5900, 21, password=False)),
        ("rpcbind (DUMP to anyone)", Port(tcp, 111), rpcbind),
        ("cupsd (shared printer, remote admin)", Port(tcp, 631), cupsd),
    ]


def _stop_leftovers(marker: str) -> None:
    """End processes whose command line names ``marker`` (a lab work directory), by pid.

    smbd starts samba-dcerpcd and its rpcd_* workers on demand; they detach from smbd and
    outlive ``Daemon.stop()``. They are ours: their --configfile is in the lab's directory.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(proc.name), signal.SIGTERM)


def _stop_quietly(daemon: dm.Daemon) -> None:
    try:
        daemon.stop()
    except Exception as exc:  # keep stopping the others; say which one misbehaved
        print(f"  could not stop {daemon.name} cleanly: {exc!r}", file=sys.stderr)


@contextlib.contextmanager
def running_lab(log: Callable[[str], None] = print) -> Iterator[Lab]:
    """Start the lab DNS, the canary and every daemon; stop all of them on exit (also on
    Ctrl-C, SIGTERM turned into an exception by the caller, or an error)."""
    work = Path(tempfile.mkdtemp(prefix="mamori-bench-checks-"))
    lab = Lab(work)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        stack.callback(_stop_leftovers, f"{work}/")
        stack.enter_context(_lab_dns(lab))
        stack.enter_context(_canary(lab))
        for name, port, start in _starters(lab, stack):
            try:
                daemon = start()
            except (dm.DaemonUnavailable, OSError, subprocess.SubprocessError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                lab.skipped[name] = reason
                log(f"  SKIPPED {name}: {reason}")
                continue
            stack.callback(_stop_quietly, daemon)
            lab.daemons[name] = daemon
            lab.ports[name] = port
            log(f"  started {name} on {HOST}:{port.port}/{port.proto}")
        wild = dm.listeners_on_wildcard([d.proc.pid for d in lab.daemons.values()])
        for line in wild:
            log(f"  WARNING: a lab daemon listens on a wildcard address: {line}")
        yield lab


def mount_namespace() -> str:
    """This process's mount namespace, e.g. "mnt:[4026531832]"."""
    return os.readlink("/proc/self/ns/mnt")
