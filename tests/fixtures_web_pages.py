"""Status pages and password prompts on real daemons: apache2 (mod_status, mod_info,
mod_auth_digest, mod_ssl), nginx (stub_status, auth_basic, a login form) passing the PHP-FPM
status page to a real php-fpm, each misconfigured and hardened, on 127.0.86.0/24.

Built on tests/daemons.py (``_need``/``_spawn``/``_started``); every daemon has its own config
and pid file in its workdir and a world-traversable run directory removed when it stops.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import daemons as dm
import fixtures_web as fw
from daemons import Daemon, _need, _spawn, _started, wait_tcp

ADMIN_ONLY = "127.0.86.99"  # the one address the hardened twins let see their status pages
LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Members</title></head><body>\n"
    '<p><a href="/account/sign-in.html">Sign in</a> to see your orders.</p>\n'
    '<form action="/search" method="get"><input type="text" name="q"></form>\n'
    "</body></html>\n"
)
SIGN_IN = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>\n"
    '<form method="post" action="/account/session">\n'
    '  <input type="text" name="user"> <input type="password" name="pass">\n'
    '  <button type="submit">Sign in</button>\n</form></body></html>\n'
)


def make_docroot(home: Path) -> Path:
    """A document root with an index page that links to a sign-in page holding a password
    form posted to a relative URL, and a /private/ directory."""
    root = home / "www"
    (root / "account").mkdir(parents=True, exist_ok=True)
    (root / "private").mkdir(exist_ok=True)
    (root / "index.html").write_text(LOGIN_PAGE)
    (root / "account" / "sign-in.html").write_text(SIGN_IN)
    (root / "private" / "index.html").write_text("private\n")
    for path in [home, root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def start_php_fpm(workdir: Path, host: str, port: int) -> Daemon:
    """php-fpm in the foreground: one static pool on host:port (FastCGI) with its status page
    at /fpm-status (``pm.status_path``)."""
    binaries = sorted(Path("/usr/sbin").glob("php-fpm*"))
    fpm = _need(str(binaries[-1]) if binaries else "php-fpm")
    pid = workdir / "php-fpm.pid"
    cfg = workdir / "php-fpm.conf"
    cfg.write_text(
        f"[global]\npid = {pid}\nerror_log = {workdir}/php-fpm.log\ndaemonize = no\n"
        f"[lab]\nuser = nobody\ngroup = nogroup\nlisten = {host}:{port}\n"
        "listen.allowed_clients = 127.0.0.1\npm = static\npm.max_children = 2\n"
        "pm.status_path = /fpm-status\n"
    )
    proc, log = _spawn([fpm, "-F", "-R", "-n", "-y", str(cfg)], workdir, "php-fpm.out")
    d = Daemon("php-fpm", host, port, proc, workdir, pid, log)
    return _started(d, lambda: wait_tcp(host, port, proc=proc))


def nginx_servers(root: Path, host: str, port: int, tls_port: int, fpm: tuple[str, int],
                  cert: tuple[Path, Path], *, hardened: bool) -> dict[int, str]:
    """The server blocks of the nginx twin: stub_status, the FPM status page, auth_basic on
    /private/ and the sign-in page on plain HTTP (misconfigured); the same behind TLS only,
    status pages for ADMIN_ONLY, and plain HTTP redirecting (hardened)."""
    users = root.parent / "htpasswd"
    # An unguessable password nobody sends: the checks never log in.
    users.write_text("owner:{PLAIN}" + hashlib.sha256(str(root).encode()).hexdigest() + "\n")
    users.chmod(0o644)
    limit = f"      allow {ADMIN_ONLY};\n      deny all;\n" if hardened else ""
    site = (
        f"    root {root};\n"
        "    location /private/ {\n      auth_basic \"Members only\";\n"
        f"      auth_basic_user_file {users};\n    }}\n"
        f"    location = /nginx_status {{\n      stub_status;\n{limit}    }}\n"
        f"    location = /fpm-status {{\n{limit}      include /etc/nginx/fastcgi_params;\n"
        "      fastcgi_param SCRIPT_NAME /fpm-status;\n"
        "      fastcgi_param SCRIPT_FILENAME /fpm-status;\n"
        f"      fastcgi_pass {fpm[0]}:{fpm[1]};\n    }}\n"
    )
    tls = f"    ssl_certificate {cert[0]};\n    ssl_certificate_key {cert[1]};\n"
    if hardened:
        return {port: "    return 301 https://$host$request_uri;\n", tls_port: tls + site}
    return {port: site, tls_port: tls + site}


def start_apache_pages(workdir: Path, host: str, port: int, tls_port: int, root: Path, *,
                       hardened: bool) -> Daemon:
    """apache2 with mod_status (ExtendedStatus), mod_info and Digest authentication on
    /private/: for anyone on plain HTTP (misconfigured); status and info for ADMIN_ONLY only,
    Digest on the TLS port only and plain HTTP redirecting (hardened)."""
    apache = _need("/usr/sbin/apache2")
    modules = Path("/usr/lib/apache2/modules")
    run = fw.world_dir("mamori-apache-pages-run-")
    pid = run / "apache2.pid"
    names = ("mpm_event", "authz_core", "authz_host", "authz_user", "authn_core", "authn_file",
             "auth_digest", "dir", "mime", "alias", "status", "info", "ssl", "socache_shmcb")
    loads = "".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n" for m in names)
    cert, key = dm.make_cert(workdir)
    digest = root.parent / "htdigest"
    realm = "Members area"
    secret = hashlib.sha256(str(root).encode()).hexdigest()  # nobody sends it
    ha1 = hashlib.md5(f"owner:{realm}:{secret}".encode()).hexdigest()  # htdigest's format
    digest.write_text(f"owner:{realm}:{ha1}\n")
    digest.chmod(0o644)
    who = f"Require ip {ADMIN_ONLY}" if hardened else "Require all granted"
    private = (
        f'<Directory {root}/private>\n  AuthType Digest\n  AuthName "{realm}"\n'
        f"  AuthDigestProvider file\n  AuthUserFile {digest}\n  Require valid-user\n"
        "</Directory>\n"
    )
    pages = (
        f"<Location /server-status>\n  SetHandler server-status\n  {who}\n</Location>\n"
        f"<Location /server-info>\n  SetHandler server-info\n  {who}\n</Location>\n"
    )
    plain = (f"<VirtualHost {host}:{port}>\n  Redirect permanent / https://{host}:{tls_port}/\n"
             "</VirtualHost>\n" if hardened else "")
    cfg = workdir / "apache2.conf"
    cfg.write_text(
        f"{loads}ServerRoot {run}\nServerName mamori-pages.test\n"
        f"Listen {host}:{port}\nListen {host}:{tls_port}\n"
        f"PidFile {pid}\nDefaultRuntimeDir {run}\nMutex file:{run} default\n"
        f"ErrorLog {workdir}/apache-error.log\nLogLevel warn\nUser nobody\nGroup nogroup\n"
        "TypesConfig /etc/mime.types\nStartServers 1\nServerLimit 1\nThreadsPerChild 8\n"
        f"ExtendedStatus On\nSSLSessionCache shmcb:{run}/ssl_scache(512000)\n"
        f"DocumentRoot {root}\nDirectoryIndex index.html\n"
        "<Directory />\n  Require all denied\n</Directory>\n"
        f"<Directory {root}>\n  Require all granted\n</Directory>\n"
        + ("" if hardened else private + pages) + plain
        + f"<VirtualHost {host}:{tls_port}>\n  SSLEngine on\n  SSLCertificateFile {cert}\n"
        f"  SSLCertificateKeyFile {key}\n" + (private + pages if hardened else "")
        + "</VirtualHost>\n"
    )
    proc, log = _spawn([apache, "-f", str(cfg), "-DFOREGROUND"], workdir, "apache.out")
    d = Daemon("apache2", host, port, proc, workdir, pid, log, ports={"https": tls_port})
    d.cleanup.append(lambda: shutil.rmtree(run, ignore_errors=True))
    return _started(d, lambda: (wait_tcp(host, port, proc=proc),
                                wait_tcp(host, tls_port, proc=proc)) and None)
