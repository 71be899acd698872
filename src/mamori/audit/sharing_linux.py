"""Sharing and remote-access services on Linux: samba, NFS exports, avahi, rpcbind, CUPS, sshd.

Each reader takes the command runner (the one seam for platform commands) and a root path for
files, so tests point it at a temporary tree and at real `testparm`/`sshd -T`/`rpcinfo`. Parsers
are pure. Every note says what it read; a reader that could not decide says why (ok None), never
"fine".
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from mamori.audit.runner import CommandResult, CommandRunner, SystemRunner
from mamori.model.audit import AuditNote

MAX_CONFIG_BYTES = 1024 * 1024  # a config file bigger than this is not read whole
MAX_FILES = 200  # per drop-in directory

# running(process_name) -> True / False, or None when the process table cannot be read.
RunningFn = Callable[[str], bool | None]


def process_running(name: str) -> bool | None:
    """Whether a process with this exact name runs (psutil). None if the table is unreadable."""
    try:
        return any(p.info.get("name") == name for p in psutil.process_iter(["name"]))
    except (psutil.Error, OSError):
        return None


def _read(path: Path) -> str:
    """A config file's text, capped. Raises OSError (missing, unreadable)."""
    with path.open("rb") as fh:
        return fh.read(MAX_CONFIG_BYTES).decode("utf-8", "replace")


def _under(root: Path, absolute: str) -> Path:
    return root / absolute.lstrip("/")


def _failure(result: CommandResult) -> str:
    """One line saying why a command did not give an answer."""
    msg = [ln.strip() for ln in (result.stderr.strip() or result.stdout.strip()).splitlines()
           if ln.strip()]
    # The first line usually names the cause ("line 2: Bad configuration option: X"), the
    # last the consequence ("terminating, 1 bad configuration options"): keep both.
    tail = " / ".join(dict.fromkeys([msg[0], msg[-1]])) if msg else ""
    if result.missing:
        return f"{result.argv[0]} not installed"
    if result.returncode == 124:
        return f"{' '.join(result.argv)}: {tail or 'timed out'}"
    return f"{' '.join(result.argv)} exited {result.returncode}: {tail[:240]}"


# --- samba ---------------------------------------------------------------------------------------

_SMB1_PROTOCOLS = {"core", "coreplus", "lanman1", "lanman2", "nt1"}


def parse_testparm(text: str) -> dict[str, dict[str, str]]:
    """`testparm -s` output → {section (lower case): {parameter (lower case): value}}.

    testparm prints the effective configuration with synonyms resolved ("public" becomes
    "guest ok") and only values that differ from samba's defaults.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
            continue
        if current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[" ".join(key.split()).lower()] = value.strip()
    return sections


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in {"yes", "true", "1", "on"}


def judge_samba(sections: dict[str, dict[str, str]], source: str) -> list[AuditNote]:
    """Notes "sharing-smb-guest" and "sharing-smb1" from parsed testparm output."""
    glob = sections.get("global", {})
    guest_shares: list[str] = []
    for name, params in sections.items():
        if name == "global" or not _yes(params.get("guest ok")):
            continue
        if params.get("available", "yes").lower() in {"no", "false", "0"}:
            continue
        writable = params.get("read only", "yes").lower() in {"no", "false", "0"}
        guest_shares.append(f"[{name}]" + (" writable" if writable else ""))
    map_to_guest = glob.get("map to guest", "Never")
    usershare_guests = _yes(glob.get("usershare allow guests"))
    # Debian ships `map to guest = bad user` and `usershare allow guests = yes`: on their own
    # they open nothing (no share takes guests). They matter once a guest share exists, so
    # they are reported with it, and otherwise mentioned on the passing line.
    settings: list[str] = []
    if map_to_guest.lower() != "never":
        settings.append(f"map to guest = {map_to_guest} (unknown users log in as guest)")
    if usershare_guests:
        settings.append("usershare allow guests = Yes (users may publish guest shares)")
    if guest_shares:
        detail = "samba: guest ok = Yes on " + ", ".join(guest_shares)
        guest = AuditNote("sharing-smb-guest", False,
                          "; ".join([detail, *settings]), source)
    else:
        extra = f" (note: {'; '.join(settings)})" if settings else ""
        guest = AuditNote("sharing-smb-guest", True, f"samba: no guest shares{extra}", source)
    min_proto = glob.get("server min protocol", "SMB2_02")
    if min_proto.lower() in _SMB1_PROTOCOLS:
        smb1 = AuditNote("sharing-smb1", False,
                         f"samba: server min protocol = {min_proto} (SMB1 accepted)", source)
    else:
        smb1 = AuditNote("sharing-smb1", True,
                         f"samba: server min protocol = {min_proto} (no SMB1)", source)
    return [guest, smb1]


def audit_samba(runner: CommandRunner, root: Path) -> list[AuditNote]:
    """Samba's effective config via `testparm -s ROOT/etc/samba/smb.conf`.

    No smb.conf: samba is not configured (ok True). testparm missing or failing with a config
    present: ok None with the reason.
    """
    conf = _under(root, "/etc/samba/smb.conf")
    source = f"testparm -s {conf}"
    if not conf.is_file():
        return [AuditNote("sharing-smb-guest", True, f"samba not configured (no {conf})",
                          str(conf))]
    result = runner.run(["testparm", "-s", str(conf)])
    if not result.ok:
        why = _failure(result)
        return [AuditNote("sharing-smb-guest", None, f"{conf} exists but {why}", source),
                AuditNote("sharing-smb1", None, f"{conf} exists but {why}", source)]
    return judge_samba(parse_testparm(result.stdout), source)


# --- NFS exports ---------------------------------------------------------------------------------

_WORLD_CLIENTS = {"*", "0.0.0.0/0", "::/0", "0/0"}


@dataclass(frozen=True)
class NfsExport:
    path: str
    client: str  # "*" when the line names no client (exported to every host)
    options: tuple[str, ...]
    source: str  # "file:line"

    @property
    def world(self) -> bool:
        if self.client in _WORLD_CLIENTS:
            return True
        try:
            return ipaddress.ip_network(self.client, strict=False).prefixlen == 0
        except ValueError:
            return False

    @property
    def writable(self) -> bool:
        return "rw" in self.options

    @property
    def no_root_squash(self) -> bool:
        return "no_root_squash" in self.options


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with backslash continuations joined and comments dropped, with line numbers."""
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        line = "" if raw.lstrip().startswith("#") else raw
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def parse_exports(text: str, source: str) -> list[NfsExport]:
    """An exports(5) file → one NfsExport per (path, client).

    A path with no client, or an option list with a space before it ("host (rw)"), exports to
    every host: that spacing mistake is reported as client "*".
    """
    out: list[NfsExport] = []
    for number, line in _logical_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if not words or not words[0].startswith("/"):
            continue
        path, rest = words[0], words[1:]
        where = f"{source}:{number}"
        default_opts: tuple[str, ...] = ()
        if rest and rest[0].startswith("-"):  # "-ro,sync": default options for the line
            default_opts = tuple(o for o in rest[0][1:].split(",") if o)
            rest = rest[1:]
        if not rest:
            out.append(NfsExport(path, "*", default_opts, where))
        for word in rest:
            client, _, opts = word.partition("(")
            options = tuple(o.strip() for o in opts.rstrip(")").split(",") if o.strip())
            out.append(NfsExport(path, client or "*", options or default_opts, where))
    return out


def judge_exports(exports: list[NfsExport], read: list[str]) -> AuditNote:
    """The "sharing-nfs-exports" note: world-exported paths, rw to the world, no_root_squash."""
    source = ", ".join(read) if read else "/etc/exports"
    if not exports:
        return AuditNote("sharing-nfs-exports", True,
                         f"no NFS exports in {source}" if read else "no /etc/exports", source)
    problems: list[str] = []
    for e in exports:
        flags = [f for f, on in (("rw", e.writable), ("no_root_squash", e.no_root_squash)) if on]
        if e.world:
            opts = f" {','.join(flags)}" if flags else ""
            problems.append(f"{e.path} to every host ({e.client}{opts}) at {e.source}")
        elif e.no_root_squash:
            problems.append(f"{e.path} to {e.client} with no_root_squash at {e.source}")
    if problems:
        return AuditNote("sharing-nfs-exports", False, "NFS: " + "; ".join(problems), source)
    listed = ", ".join(f"{e.path} to {e.client}" for e in exports[:5])
    return AuditNote("sharing-nfs-exports", True,
                     f"NFS exports restricted to named clients, root squashed: {listed}", source)


def audit_nfs(root: Path) -> AuditNote:
    """Reads ROOT/etc/exports and ROOT/etc/exports.d/*.exports."""
    files = [_under(root, "/etc/exports")]
    drop_in = _under(root, "/etc/exports.d")
    if drop_in.is_dir():
        files += sorted(drop_in.glob("*.exports"))[:MAX_FILES]
    exports: list[NfsExport] = []
    read: list[str] = []
    for path in files:
        if not path.exists():
            continue
        try:
            exports += parse_exports(_read(path), str(path))
        except OSError as exc:
            return AuditNote("sharing-nfs-exports", None, f"cannot read {path}: {exc.strerror}",
                             str(path))
        read.append(str(path))
    return judge_exports(exports, read)


# --- avahi ---------------------------------------------------------------------------------------


def parse_avahi_service(text: str) -> list[str]:
    """An avahi .service file → ["_smb._tcp:445", ...]. Raises ValueError on malformed XML."""
    try:
        # Root-owned local config, not remote input; the DOCTYPE is avahi's own.
        tree = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise ValueError(str(exc)) from None
    out: list[str] = []
    for service in tree.iter("service"):
        stype = (service.findtext("type") or "?").strip()
        port = (service.findtext("port") or "?").strip()
        out.append(f"{stype}:{port}")
    return out


def _avahi_publishing_disabled(text: str) -> bool:
    for raw in text.splitlines():
        key, _, value = raw.split("#", 1)[0].partition("=")
        if key.strip().lower() == "disable-publishing" and _yes(value):
            return True
    return False


def audit_avahi(root: Path, running: RunningFn) -> AuditNote:
    """The "sharing-avahi-services" note: services avahi-daemon announces on the LAN."""
    directory = _under(root, "/etc/avahi/services")
    source = str(directory)
    published: list[str] = []
    broken: list[str] = []
    if directory.is_dir():
        for path in sorted(directory.glob("*.service"))[:MAX_FILES]:
            try:
                published += [f"{s} ({path.name})" for s in parse_avahi_service(_read(path))]
            except (OSError, ValueError) as exc:
                broken.append(f"{path.name}: {exc}")
    daemon = running("avahi-daemon")
    conf = _under(root, "/etc/avahi/avahi-daemon.conf")
    try:
        disabled = conf.is_file() and _avahi_publishing_disabled(_read(conf))
    except OSError:
        disabled = False
    if daemon is False:
        return AuditNote("sharing-avahi-services", True,
                         "avahi-daemon is not running" +
                         (f" ({len(published)} service files would publish)" if published else ""),
                         source)
    if disabled:
        return AuditNote("sharing-avahi-services", True,
                         f"avahi publishing disabled (disable-publishing=yes in {conf})", str(conf))
    if daemon is None:
        return AuditNote("sharing-avahi-services", None,
                         "cannot read the process table to see whether avahi-daemon runs", source)
    if published:
        return AuditNote("sharing-avahi-services", False,
                         "avahi-daemon announces on the LAN: " + ", ".join(published), source)
    if broken:
        return AuditNote("sharing-avahi-services", None,
                         "avahi-daemon runs; unreadable service files: " + "; ".join(broken),
                         source)
    return AuditNote("sharing-avahi-services", True,
                     "avahi-daemon runs but publishes no static services (host name only)",
                     source)


# --- rpcbind -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RpcProgram:
    program: int
    version: int
    proto: str
    port: int
    service: str


def parse_rpcinfo(text: str) -> list[RpcProgram]:
    """`rpcinfo -p` output → registered programs (header and odd lines skipped)."""
    out: list[RpcProgram] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit() and parts[1].isdigit() and parts[3].isdigit():
            name = parts[4] if len(parts) > 4 else "?"
            out.append(RpcProgram(int(parts[0]), int(parts[1]), parts[2], int(parts[3]), name))
    return out


def audit_rpcbind(runner: CommandRunner, running: RunningFn) -> AuditNote:
    """The "sharing-rpcbind" note: is the portmapper running, and what does it tell anyone."""
    source = "rpcinfo -p 127.0.0.1"
    daemon = running("rpcbind")
    result = runner.run(["rpcinfo", "-p", "127.0.0.1"])
    if result.ok:
        programs = parse_rpcinfo(result.stdout)
        names = sorted({p.service for p in programs})
        return AuditNote("sharing-rpcbind", False,
                         f"rpcbind answers and lists {len(programs)} registrations "
                         f"({', '.join(names)})", source)
    if daemon is True:
        return AuditNote("sharing-rpcbind", False,
                         f"rpcbind is running; {_failure(result)}", "process table")
    if daemon is False:
        return AuditNote("sharing-rpcbind", True, "rpcbind is not running", "process table")
    return AuditNote("sharing-rpcbind", None,
                     f"cannot tell whether rpcbind runs: {_failure(result)}", source)


# --- CUPS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CupsFacts:
    browsing: bool
    local_protocols: str
    listens: tuple[str, ...]  # "Listen"/"Port" values as written
    remote_protocols: str | None  # cups-browsed.conf BrowseRemoteProtocols, when set


def _directives(text: str) -> list[tuple[str, str]]:
    """Top-level "Name value" lines (inside <Location> blocks too; cupsd allows those only for
    access rules)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "<")):
            continue
        name, _, value = line.partition(" ")
        out.append((name.lower(), value.strip()))
    return out


def parse_cupsd(text: str, browsed: str | None = None) -> CupsFacts:
    """cupsd.conf (and cups-browsed.conf) → the facts that decide exposure.

    Defaults follow cupsd.conf(5): Browsing No, BrowseLocalProtocols dnssd.
    """
    browsing, local, listens = False, "dnssd", []
    for name, value in _directives(text):
        if name == "browsing":
            browsing = _yes(value)
        elif name == "browselocalprotocols":
            local = value.lower() or "none"
        elif name == "listen":
            listens.append(value)
        elif name == "port":
            listens.append(f"*:{value}")
    remote = None
    for name, value in _directives(browsed or ""):
        if name == "browseremoteprotocols":
            remote = value.lower()
    return CupsFacts(browsing, local, tuple(listens), remote)


def _loopback_listen(value: str) -> bool:
    if value.startswith("/"):
        return True  # a unix socket
    host = value.rsplit(":", 1)[0].strip("[]") if ":" in value else value
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", a host name, an interface address


def judge_cups(facts: CupsFacts, source: str) -> AuditNote:
    """The "sharing-cups-browsing" note."""
    problems: list[str] = []
    open_listens = [v for v in facts.listens if not _loopback_listen(v)]
    if open_listens:
        problems.append("cupsd listens beyond loopback: " + ", ".join(open_listens))
    if facts.browsing and facts.local_protocols != "none":
        problems.append(f"Browsing On: shared printers advertised ({facts.local_protocols})")
    if facts.remote_protocols and "cups" in facts.remote_protocols.split():
        problems.append("cups-browsed accepts CUPS browse packets on UDP 631 "
                        f"(BrowseRemoteProtocols {facts.remote_protocols})")
    if problems:
        return AuditNote("sharing-cups-browsing", False, "CUPS: " + "; ".join(problems), source)
    return AuditNote("sharing-cups-browsing", True,
                     "CUPS: loopback only, printers not advertised", source)


def audit_cups(root: Path) -> AuditNote:
    """Reads ROOT/etc/cups/cupsd.conf and cups-browsed.conf."""
    conf = _under(root, "/etc/cups/cupsd.conf")
    browsed_conf = _under(root, "/etc/cups/cups-browsed.conf")
    if not conf.exists():
        return AuditNote("sharing-cups-browsing", True, f"CUPS not installed (no {conf})",
                         str(conf))
    try:
        text = _read(conf)
        browsed = _read(browsed_conf) if browsed_conf.exists() else None
    except OSError as exc:
        return AuditNote("sharing-cups-browsing", None, f"cannot read {exc.filename}: "
                         f"{exc.strerror}", str(conf))
    return judge_cups(parse_cupsd(text, browsed), str(conf))


# --- sshd ----------------------------------------------------------------------------------------


def parse_sshd_t(text: str) -> dict[str, list[str]]:
    """`sshd -T` output ("keyword value" per line, keywords lower case) → keyword → values."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value.strip())
    return out


def _first(config: dict[str, list[str]], key: str, default: str) -> str:
    return (config.get(key) or [default])[0].lower()


def judge_sshd(config: dict[str, list[str]], source: str) -> list[AuditNote]:
    """Notes "ssh-password-login" and "ssh-root-login-permitted" from `sshd -T` output.

    Password login counts when PasswordAuthentication is yes, or keyboard-interactive is on
    with PAM (PAM then asks for the password), unless AuthenticationMethods demands a key.
    """
    password = _first(config, "passwordauthentication", "yes") == "yes"
    kbd = _first(config, "kbdinteractiveauthentication",
                 _first(config, "challengeresponseauthentication", "yes")) == "yes"
    pam = _first(config, "usepam", "no") == "yes"
    methods = _first(config, "authenticationmethods", "any")
    key_required = methods != "any" and all(
        "publickey" in chain for chain in methods.split())
    ways = [w for w, on in (("PasswordAuthentication yes", password),
                            ("KbdInteractiveAuthentication yes with UsePAM yes", kbd and pam))
            if on]
    if ways and not key_required:
        pw = AuditNote("ssh-password-login", False,
                       "sshd accepts passwords: " + ", ".join(ways), source)
    elif ways:
        pw = AuditNote("ssh-password-login", True,
                       f"sshd requires a key first (AuthenticationMethods {methods})", source)
    else:
        pw = AuditNote("ssh-password-login", True,
                       "sshd: PasswordAuthentication no, no keyboard-interactive passwords",
                       source)
    # Only "no" keeps root out; a key in /root/.ssh/authorized_keys is still a direct root
    # login ("prohibit-password"), and forced commands run whatever the key was given.
    root_login = _first(config, "permitrootlogin", "prohibit-password")
    how = {"yes": " (passwords too)" if ways and not key_required else " (keys)",
           "prohibit-password": " (keys only)", "without-password": " (keys only)",
           "forced-commands-only": " (keys with a forced command only)"}.get(root_login, "")
    root = AuditNote("ssh-root-login-permitted",
                     root_login in {"no", "forced-commands-only"},
                     f"sshd: PermitRootLogin {root_login}{how}", source)
    return [pw, root]


def audit_sshd(runner: CommandRunner, root: Path) -> list[AuditNote]:
    """sshd's effective config via `sshd -T -f ROOT/etc/ssh/sshd_config`.

    No config and no sshd: the OpenSSH server is not installed (ok True). A failing `sshd -T`
    (not root, no host keys, syntax error) gives ok None with sshd's own message.
    """
    conf = _under(root, "/etc/ssh/sshd_config")
    source = f"sshd -T -f {conf}"
    if not conf.exists():
        probe = runner.run(["sshd", "-V"])
        if probe.missing:
            return [AuditNote("ssh-password-login", True,
                              "OpenSSH server not installed (no sshd, no sshd_config)",
                              str(conf))]
        return [AuditNote("ssh-password-login", None, f"sshd present but no {conf}", str(conf))]
    result = runner.run(["sshd", "-T", "-f", str(conf)])
    if not result.ok:
        why = _failure(result)
        return [AuditNote("ssh-password-login", None, why, source),
                AuditNote("ssh-root-login-permitted", None, why, source)]
    return judge_sshd(parse_sshd_t(result.stdout), source)


# --- all together --------------------------------------------------------------------------------

_LINUX_IDS = ("sharing-smb-guest", "sharing-nfs-exports", "sharing-avahi-services",
              "sharing-rpcbind", "sharing-cups-browsing", "ssh-password-login")


def unsupported(check_ids: Iterable[str], platform: str) -> list[AuditNote]:
    """One ok-None note per check id: this platform has no adapter."""
    return [AuditNote(cid, None, f"not supported on {platform}", "platform") for cid in check_ids]


def audit_sharing_linux(runner: CommandRunner | None = None, root: Path = Path("/"),
                        running: RunningFn = process_running,
                        platform: str = sys.platform) -> list[AuditNote]:
    """Every Linux sharing and remote-access note. Never raises for a missing tool or file:
    those become ok-None (or "not installed", ok True) notes. On another platform: one
    "not supported" note per check."""
    if not platform.startswith("linux"):
        return unsupported(_LINUX_IDS, platform)
    runner = runner or SystemRunner()
    notes = audit_samba(runner, root)
    notes.append(audit_nfs(root))
    notes.append(audit_avahi(root, running))
    notes.append(audit_rpcbind(runner, running))
    notes.append(audit_cups(root))
    notes += audit_sshd(runner, root)
    return notes

