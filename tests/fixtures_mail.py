"""Daemons for the mail-beyond-relaying checks (mail-cleartext-login, smtp-user-enumeration,
smtp-no-starttls): dovecot (IMAP + POP3) and postfix, each from its own config, pid file and
loopback address in 127.0.84.0/24, in a misconfigured and a hardened variant.

No mailbox is ever opened: dovecot's password database is a static random password nobody
knows, and postfix delivers nothing (mail not for a test domain is discarded; the checks never
send DATA anyway).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from daemons import Daemon, _need, _spawn, _started, make_cert, wait_tcp
from fixtures_smtp import _master_cf


def start_dovecot_mail(workdir: Path, host: str, imap_port: int, pop3_port: int, *,
                       mode: str) -> Daemon:
    """dovecot with IMAP and POP3 on host.

    mode "cleartext": ``ssl = no`` and ``disable_plaintext_auth = no`` (passwords only in the
    clear); "cleartext-tls": a certificate and STARTTLS, but ``disable_plaintext_auth = no``;
    "hardened": a certificate and ``disable_plaintext_auth = yes`` (LOGINDISABLED before
    STARTTLS). ``login_trusted_networks`` is empty, so our loopback probe is not trusted.
    """
    dovecot = _need("/usr/sbin/dovecot")
    work = workdir / f"dovecot-{mode}"
    base, state = work / "run", work / "state"
    for d in (work, base, state):
        d.mkdir(parents=True, exist_ok=True)
    if mode == "cleartext":
        ssl = "ssl = no\ndisable_plaintext_auth = no\n"
    else:
        cert, key = make_cert(work, "mail.mamori.test")
        ssl = (f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n"
               f"disable_plaintext_auth = {'yes' if mode == 'hardened' else 'no'}\n")
    cfg = work / "dovecot.conf"
    cfg.write_text(
        f"base_dir = {base}\nstate_dir = {state}\nprotocols = imap pop3\nlisten = {host}\n"
        f"log_path = {work}/dovecot.log\n" + ssl +
        "auth_mechanisms = plain login\nlogin_trusted_networks =\n"
        "stats_writer_socket_path =\n"
        "passdb {\n  driver = static\n  args = password=never-used-" + os.urandom(8).hex() + "\n}\n"
        "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
        "service imap-login {\n"
        f"  inet_listener imap {{\n    address = {host}\n    port = {imap_port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n}\n"
        "service pop3-login {\n"
        f"  inet_listener pop3 {{\n    address = {host}\n    port = {pop3_port}\n  }}\n"
        "  inet_listener pop3s {\n    port = 0\n  }\n}\n"
        "service submission-login {\n  inet_listener submission {\n    port = 0\n  }\n}\n"
        "service lmtp {\n  unix_listener lmtp {\n    mode = 0600\n  }\n}\n"
    )
    proc, log = _spawn([dovecot, "-F", "-c", str(cfg)], work, "dovecot.out")
    d = Daemon("dovecot", host, imap_port, proc, work, base / "master.pid", log,
               ports={"imap": imap_port, "pop3": pop3_port}, stop_signal=signal.SIGKILL)
    return _started(d, lambda: (wait_tcp(host, imap_port, proc=proc),
                                wait_tcp(host, pop3_port, proc=proc)) and None)


def start_postfix_mail(workdir: Path, host: str, smtp_port: int, submission_port: int, *,
                       hardened: bool) -> Daemon:
    """postfix with smtpd on host:smtp_port (the MX role) and host:submission_port
    (submission, with SASL AUTH PLAIN/LOGIN through Cyrus SASL from its own config; the
    password database is empty, nobody can log in).

    Misconfigured: VRFY enabled, unknown local recipients refused at RCPT time
    (``smtpd_reject_unlisted_recipient = yes``, local users are the system's plus the
    postmaster alias), no TLS at all, so submission offers AUTH in the clear.
    Hardened: ``disable_vrfy_command = yes``, unknown recipients accepted at RCPT time
    (``smtpd_reject_unlisted_recipient = no``), a certificate with
    ``smtpd_tls_security_level = may`` (STARTTLS offered) and ``smtpd_tls_auth_only = yes``.
    """
    postfix = _need("/usr/sbin/postfix")
    home = Path(tempfile.mkdtemp(prefix="mamori-mail-"))
    home.chmod(0o755)
    conf, queue, data = home / "etc", home / "queue", home / "data"
    for d in (conf, queue, data):
        d.mkdir()
    shutil.chown(data, "postfix", "postfix")
    if hardened:
        cert, key = make_cert(conf, "mx.mamori.test")
        for f in (cert, key):
            f.chmod(0o644)
        policy = (
            "disable_vrfy_command = yes\nsmtpd_reject_unlisted_recipient = no\n"
            f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
            f"smtpd_tls_key_file = {key}\nsmtpd_tls_auth_only = yes\n"
        )
    else:
        policy = ("disable_vrfy_command = no\nsmtpd_reject_unlisted_recipient = yes\n"
                  "smtpd_tls_security_level = none\n")
    (conf / "main.cf").write_text(
        "compatibility_level = 3.6\n"
        f"queue_directory = {queue}\ndata_directory = {data}\n"
        "mail_owner = postfix\nsetgid_group = postdrop\n"
        "myhostname = mx.mamori.test\nmydomain = mamori.test\n"
        "inet_interfaces = loopback-only\ninet_protocols = ipv4\n"
        "mydestination = $myhostname, mamori.test\n"
        # Local users are the system's (unix:passwd.byname) plus postmaster (RFC 5321 4.5.1);
        # nothing is ever delivered: the checks never send DATA, and a stray message would be
        # discarded.
        "local_recipient_maps = proxy:unix:passwd.byname $alias_maps\n"
        f"alias_maps = texthash:{conf}/aliases\nalias_database =\n"
        "local_transport = discard:mamori test\ndefault_transport = discard:mamori test\n"
        "biff = no\nsmtp_dns_support_level = disabled\nsmtpd_peername_lookup = no\n"
        "smtp_tls_security_level = none\n"
        f"maillog_file = {home}/postfix.log\nmaillog_file_prefixes = {home}\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "mynetworks = 127.0.0.5/32\n"
        f"cyrus_sasl_config_path = {conf}\nsmtpd_sasl_path = smtpd\nsmtpd_sasl_type = cyrus\n"
        + policy
    )
    (conf / "smtpd.conf").write_text(
        f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nsasldb_path: {conf}/no-sasldb\n"
        "mech_list: PLAIN LOGIN\n")
    (conf / "aliases").write_text("postmaster: root\nabuse: root\n")
    listeners = [
        f"{host}:{smtp_port} inet n - n - - smtpd\n",
        f"{host}:{submission_port} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n"
        "  -o smtpd_sasl_auth_enable=yes\n",
    ]
    (conf / "master.cf").write_text(_master_cf(listeners).replace(
        "pickup unix", "tlsmgr unix - - n 1000? 1 tlsmgr\npickup unix"))
    env = {"MAIL_CONFIG": str(conf)}
    subprocess.run([postfix, "-c", str(conf), "set-permissions"], capture_output=True,
                   env={**os.environ, **env}, check=False)
    proc, log = _spawn([postfix, "-c", str(conf), "start-fg"], workdir,
                       f"postfix-{smtp_port}-{host}.out", env)
    d = Daemon("postfix", host, smtp_port, proc, workdir, queue / "pid" / "master.pid", log,
               ports={"submission": submission_port})

    def stop_postfix() -> None:
        subprocess.run([postfix, "-c", str(conf), "stop"], capture_output=True, check=False)

    d.cleanup.append(stop_postfix)
    d.cleanup.insert(0, lambda: shutil.rmtree(home, ignore_errors=True))
    return _started(d, lambda: wait_tcp(host, smtp_port, timeout=15, proc=proc))
