"""Daemons for the stepping-stone checks: postfix (relay), tinyproxy (HTTP proxy), dante (SOCKS).

Each runs from its own config, pid file and loopback address in 127.0.60.0/24, in an open
(misconfigured) and a hardened variant. Mail relayed by the test postfix goes only to the
test's SMTP sink (the canary domain) or to postfix's discard transport.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from daemons import Daemon, _need, _spawn, _started, wait_tcp

CANARY_DOMAIN = "canary.mamori.test"
OUTSIDE = "127.0.0.5/32"  # a network our probes never come from


def _master_cf(listeners: list[str]) -> str:
    return "".join(listeners) + (
        "pickup unix n - n 60 1 pickup\ncleanup unix n - n - 0 cleanup\n"
        "qmgr unix n - n 300 1 qmgr\n"
        "rewrite unix - - n - - trivial-rewrite\nbounce unix - - n - 0 bounce\n"
        "defer unix - - n - 0 bounce\ntrace unix - - n - 0 bounce\n"
        "verify unix - - n - 1 verify\nflush unix n - n 1000? 0 flush\n"
        "proxymap unix - - n - - proxymap\nsmtp unix - - n - - smtp\n"
        "relay unix - - n - - smtp\nshowq unix n - n - - showq\nerror unix - - n - - error\n"
        "retry unix - - n - - error\ndiscard unix - - n - - discard\n"
        "anvil unix - - n - 1 anvil\nscache unix - - n - 1 scache\n"
        "postlog unix-dgram n - n - 1 postlogd\n"
    )


def start_postfix_relay(
    workdir: Path, host: str, port: int, *, open_relay: bool,
    sink: tuple[str, int] | None = None, permit_port: int | None = None,
) -> Daemon:
    """Postfix on host:port from its own config directory.

    ``open_relay``: the classic mistake, ``mynetworks = 0.0.0.0/0`` (everyone is "local").
    Otherwise hardened: ``mynetworks`` holds only an address our probes never use, and
    ``smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination``.
    ``permit_port``: a second smtpd on host:permit_port with ``smtpd_relay_restrictions =
    permit`` (the other classic mistake). ``sink``: mail for CANARY_DOMAIN goes to that SMTP
    server; every other delivery is discarded, so nothing ever leaves the machine.
    """
    postfix = _need("/usr/sbin/postfix")
    # Postfix's unprivileged processes must traverse to their queue (tmp_path is root-only).
    home = Path(tempfile.mkdtemp(prefix="mamori-relay-"))
    home.chmod(0o755)
    conf, queue, data = home / "etc", home / "queue", home / "data"
    for d in (conf, queue, data):
        d.mkdir()
    shutil.chown(data, "postfix", "postfix")
    transport = ""
    if sink:
        (conf / "transport").write_text(f"{CANARY_DOMAIN} smtp:[{sink[0]}]:{sink[1]}\n")
        transport = f"transport_maps = texthash:{conf}/transport\n"
    restrictions = (
        "mynetworks = 0.0.0.0/0\n" if open_relay else
        f"mynetworks = {OUTSIDE}\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
    )
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = relay.mamori.test\nmydomain = mamori.test\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        "mydestination =\nlocal_transport = error:local delivery disabled\n"
        "alias_maps =\nalias_database =\nbiff = no\n"
        "smtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\n"
        "smtp_tls_security_level = none\nsmtpd_tls_security_level = none\n"
        # Whatever is not for the canary is thrown away: no test mail ever leaves.
        "default_transport = discard:mamori test\nrelay_transport = discard:mamori test\n"
        "bounce_queue_lifetime = 0\nmaximal_queue_lifetime = 0\n"
        f"maillog_file = {home}/postfix.log\nmaillog_file_prefixes = {home}\n"
        + restrictions + transport
    )
    listeners = [f"{host}:{port} inet n - n - - smtpd\n"]
    if permit_port:
        # Postfix refuses a bare "permit"; a client table that says OK to all is the same.
        listeners.append(f"{host}:{permit_port} inet n - n - - smtpd\n  -o mynetworks={OUTSIDE}\n"
                         "  -o smtpd_relay_restrictions=check_client_access,static:OK,"
                         "reject_unauth_destination\n")
    (conf / "master.cf").write_text(_master_cf(listeners))
    env = {"MAIL_CONFIG": str(conf)}
    subprocess.run([postfix, "-c", str(conf), "set-permissions"], capture_output=True,
                   env={**os.environ, **env}, check=False)
    proc, log = _spawn([postfix, "-c", str(conf), "start-fg"], workdir, "postfix.out", env)
    d = Daemon("postfix", host, port, proc, workdir, queue / "pid" / "master.pid", log)
    if permit_port:
        d.ports["permit"] = permit_port

    def stop_postfix() -> None:
        subprocess.run([postfix, "-c", str(conf), "stop"], capture_output=True, check=False)

    d.cleanup.append(stop_postfix)
    d.cleanup.insert(0, lambda: shutil.rmtree(home, ignore_errors=True))
    return _started(d, lambda: wait_tcp(host, port, timeout=15, proc=proc))


def start_tinyproxy(workdir: Path, host: str, port: int, *, allow: str) -> Daemon:
    """tinyproxy on host:port, answering only clients in ``allow`` (an address or network).

    Open: ``allow`` covers our source (127.0.0.0/8). Hardened: another address.
    """
    tinyproxy = _need("/usr/bin/tinyproxy")
    pid = workdir / f"tinyproxy-{port}.pid"
    cfg = workdir / f"tinyproxy-{port}.conf"
    cfg.write_text(
        f"Port {port}\nListen {host}\nBind {host}\nTimeout 10\nMaxClients 20\n"
        f"PidFile \"{pid}\"\nLogFile \"{workdir}/tinyproxy-{port}.log\"\nLogLevel Info\n"
        f"Allow {allow}\nDisableViaHeader Yes\n"
    )
    proc, log = _spawn([tinyproxy, "-d", "-c", str(cfg)], workdir, f"tinyproxy-{port}.out")
    d = Daemon("tinyproxy", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def start_danted(workdir: Path, host: str, port: int, *, mode: str) -> Daemon:
    """dante's sockd on host:port, its outgoing side bound to ``host`` too.

    mode "open": any client, no authentication (SOCKS 4 and 5). "auth": SOCKS 5 with
    username/password only (sockd checks system passwords). "client-restricted": only
    clients from an address our probes never use may connect.
    """
    danted = _need("/usr/sbin/danted")
    pid = workdir / f"danted-{port}.pid"
    cfg = workdir / f"danted-{port}.conf"
    client_from = OUTSIDE if mode == "client-restricted" else "0.0.0.0/0"
    method = "username" if mode == "auth" else "none"
    cfg.write_text(
        f"logoutput: {workdir}/danted-{port}.log\n"
        f"internal: {host} port = {port}\nexternal: {host}\n"
        "clientmethod: none\n"
        f"socksmethod: {method}\n"
        "user.privileged: root\nuser.unprivileged: nobody\n"
        f"client pass {{\n  from: {client_from} to: 0.0.0.0/0\n  log: error connect\n}}\n"
        "client block {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: error connect\n}\n"
        # Only loopback destinations: the test proxy can never be used to reach outside.
        "socks pass {\n  from: 0.0.0.0/0 to: 127.0.0.0/8\n"
        "  command: connect\n  log: error connect\n}\n"
        "socks block {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  log: error connect\n}\n"
    )
    proc, log = _spawn([danted, "-f", str(cfg), "-p", str(pid), "-N", "1"], workdir,
                       f"danted-{port}.out")
    # sockd runs in the foreground (no -D); its pid file is empty by the time it stops,
    # so stop it through the process (group) we started.
    d = Daemon("danted", host, port, proc, workdir, None, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))
