"""Sharing and remote access on macOS: File Sharing, Screen Sharing, Remote Login, Remote
Management, AirPlay Receiver, Bonjour advertising.

Commands (all through the CommandRunner seam, absolute paths because /usr/libexec is not on
PATH): `sharing -l`, `launchctl print system` (loaded services and the "disabled services"
override table that the Sharing pane writes), `systemsetup -getremotelogin`, `mdmclient
QuerySecurityInfo`, `defaults read`. Parsers are pure; tests replay recorded outputs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mamori.audit.runner import CommandResult, CommandRunner, SystemRunner
from mamori.audit.sharing_linux import audit_sshd, unsupported
from mamori.model.audit import AuditNote

SHARING = "/usr/sbin/sharing"
LAUNCHCTL = "/bin/launchctl"
SYSTEMSETUP = "/usr/sbin/systemsetup"
MDMCLIENT = "/usr/libexec/mdmclient"
DEFAULTS = "/usr/bin/defaults"

SMBD = "com.apple.smbd"
AFP = "com.apple.AppleFileServer"
SCREEN_SHARING = "com.apple.screensharing"
SSHD = "com.openssh.sshd"

MACOS_IDS = ("macos-file-sharing", "macos-screen-sharing", "macos-remote-login",
             "macos-remote-management", "macos-airplay-receiver", "macos-bonjour-advertising")


def _failure(result: CommandResult) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    tail = lines[-1].strip() if lines else ""
    if result.missing:
        return f"{result.argv[0]} not available"
    return f"{' '.join(result.argv)} exited {result.returncode}: {tail[:160]}"


# --- sharing -l ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharePoint:
    name: str
    path: str
    protocols: dict[str, dict[str, str]] = field(default_factory=dict)  # "smb" → {"shared": "1"}

    def shared_over(self) -> list[str]:
        return [p for p, kv in self.protocols.items() if kv.get("shared") == "1"]

    def guest_over(self) -> list[str]:
        return [p for p, kv in self.protocols.items()
                if kv.get("shared") == "1" and kv.get("guest access") == "1"]


def parse_share_points(text: str) -> list[SharePoint]:
    """`sharing -l` output → share points. "name:" starts a record; "smb: {" … "}" blocks hold
    per-protocol key/values (tab separated, as Apple prints them)."""
    shares: list[SharePoint] = []
    name = path = None
    protocols: dict[str, dict[str, str]] = {}
    block: dict[str, str] | None = None

    def flush() -> None:
        if name is not None:
            shares.append(SharePoint(name, path or "", dict(protocols)))

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "List of Share Points":
            continue
        if line == "}":
            block = None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if block is not None:
            block[key] = value
        elif value == "{":
            block = protocols.setdefault(key, {})
        elif key == "name":
            flush()
            name, path, protocols = value, None, {}
        elif key == "path":
            path = value
    flush()
    return shares


# --- launchctl print system ----------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchdSystem:
    loaded: dict[str, int]  # label → pid (0: loaded, not running)
    overrides: dict[str, bool]  # label → enabled (the "disabled services" table)

    def state(self, label: str) -> tuple[bool, str]:
        """(on, evidence). On when loaded in the system domain or its override says enabled."""
        override = self.overrides.get(label)
        if label in self.loaded:
            pid = self.loaded[label]
            how = f"running, pid {pid}" if pid else "loaded (on demand)"
            return True, f"{label} {how}"
        if override is True:
            return True, f'"{label}" => enabled'
        if override is False:
            return False, f'"{label}" => disabled, not loaded'
        return False, f"{label} not loaded, no override"


_SERVICE_LINE = re.compile(r"^\s*(-|\d+)\s+(-|-?\d+|\(\w+\))?\s*([\w.\-]+)\s*$")
_OVERRIDE_LINE = re.compile(r'^\s*"([^"]+)"\s*=>\s*(\w+)\s*$')


def parse_launchd_system(text: str) -> LaunchdSystem:
    """`launchctl print system` → loaded services and the override table.

    Service lines are "PID  LAST-EXIT  LABEL" inside "services = {"; overrides are
    '"label" => enabled|disabled' (older releases: false|true, true meaning disabled).
    Raises ValueError when neither section is present (not launchd's output).
    """
    loaded: dict[str, int] = {}
    overrides: dict[str, bool] = {}
    section: str | None = None
    seen = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.endswith("= {"):
            head = line[:-3].strip()
            section = head if head in {"services", "disabled services"} else "other"
            seen = seen or section != "other"
            continue
        if line == "}":
            section = None
            continue
        if section == "services":
            m = _SERVICE_LINE.match(raw)
            if m:
                loaded[m.group(3)] = 0 if m.group(1) == "-" else int(m.group(1))
        elif section == "disabled services":
            m = _OVERRIDE_LINE.match(raw)
            if m and m.group(2) in {"enabled", "false", "disabled", "true"}:
                overrides[m.group(1)] = m.group(2) in {"enabled", "false"}
    if not seen:
        raise ValueError("no services or disabled services section")
    return LaunchdSystem(loaded, overrides)


# --- small single-value outputs ------------------------------------------------------------------


def parse_remote_login(text: str) -> bool | None:
    """`systemsetup -getremotelogin` → True (On), False (Off), None (anything else, e.g. the
    Full Disk Access or administrator refusal)."""
    m = re.search(r"Remote Login:\s*(On|Off)\b", text, re.I)
    return None if m is None else m.group(1).lower() == "on"


def parse_remote_desktop(text: str) -> bool | None:
    """`mdmclient QuerySecurityInfo` → RemoteDesktopEnabled (ARD/Remote Management), or None."""
    m = re.search(r"RemoteDesktopEnabled\s*=\s*(\d)", text)
    return None if m is None else m.group(1) == "1"


def parse_defaults_bool(result: CommandResult) -> bool | None:
    """`defaults read DOMAIN KEY` → the boolean, or None when the key is not set (the
    "domain/default pair … does not exist" answer). Raises ValueError for other output."""
    if result.ok:
        value = result.stdout.strip().lower()
        if value in {"1", "true", "yes"}:
            return True
        if value in {"0", "false", "no"}:
            return False
        raise ValueError(f"unexpected value {value[:40]!r}")
    if "does not exist" in result.stderr:
        return None
    raise ValueError(_failure(result))


# --- the notes -----------------------------------------------------------------------------------


def _launchd(runner: CommandRunner) -> LaunchdSystem | str:
    result = runner.run([LAUNCHCTL, "print", "system"])
    if not result.ok:
        return _failure(result)
    try:
        return parse_launchd_system(result.stdout)
    except ValueError as exc:
        return f"launchctl print system: {exc}"


def file_sharing_note(runner: CommandRunner, launchd: LaunchdSystem | str) -> AuditNote:
    """"macos-file-sharing": smbd/AFP on, and which share points (guest access named)."""
    source = f"{LAUNCHCTL} print system; {SHARING} -l"
    if isinstance(launchd, str):
        return AuditNote("macos-file-sharing", None, launchd, source)
    smb_on, smb_why = launchd.state(SMBD)
    afp_on, _ = launchd.state(AFP)
    if not (smb_on or afp_on):
        return AuditNote("macos-file-sharing", True, f"File Sharing off ({smb_why})", source)
    listing = runner.run([SHARING, "-l"])
    if not listing.ok:
        return AuditNote("macos-file-sharing", False,
                         f"File Sharing on ({smb_why}); shares unknown: {_failure(listing)}",
                         source)
    shares = [s for s in parse_share_points(listing.stdout) if s.shared_over()]
    parts = []
    for s in shares:
        guest = s.guest_over()
        parts.append(f"{s.name} ({s.path}, {'/'.join(s.shared_over())}"
                     + (f", guest access over {'/'.join(guest)}" if guest else "") + ")")
    servers = "/".join(n for n, on in (("SMB", smb_on), ("AFP", afp_on)) if on)
    detail = f"File Sharing on ({servers}): " + ("; ".join(parts) if parts else "no share points")
    return AuditNote("macos-file-sharing", False, detail, source)


def screen_sharing_note(launchd: LaunchdSystem | str) -> AuditNote:
    source = f"{LAUNCHCTL} print system"
    if isinstance(launchd, str):
        return AuditNote("macos-screen-sharing", None, launchd, source)
    on, why = launchd.state(SCREEN_SHARING)
    return AuditNote("macos-screen-sharing", not on,
                     f"Screen Sharing {'on' if on else 'off'} ({why})", source)


def remote_login_note(runner: CommandRunner, launchd: LaunchdSystem | str) -> AuditNote:
    """systemsetup when it answers (it needs root and Full Disk Access), launchd otherwise."""
    result = runner.run([SYSTEMSETUP, "-getremotelogin"])
    state = parse_remote_login(result.stdout) if result.ok else None
    if state is not None:
        return AuditNote("macos-remote-login", not state,
                         f"Remote Login {'On' if state else 'Off'} (systemsetup)",
                         f"{SYSTEMSETUP} -getremotelogin")
    refusal = _failure(result) if not result.ok else result.stdout.strip()[:120]
    if isinstance(launchd, str):
        return AuditNote("macos-remote-login", None, f"{refusal}; {launchd}",
                         f"{SYSTEMSETUP} -getremotelogin")
    on, why = launchd.state(SSHD)
    return AuditNote("macos-remote-login", not on,
                     f"Remote Login {'on' if on else 'off'} ({why}; systemsetup: {refusal})",
                     f"{LAUNCHCTL} print system")


def remote_management_note(runner: CommandRunner) -> AuditNote:
    source = f"{MDMCLIENT} QuerySecurityInfo"
    result = runner.run([MDMCLIENT, "QuerySecurityInfo"])
    state = parse_remote_desktop(result.stdout) if result.ok else None
    if state is None:
        why = _failure(result) if not result.ok else "no RemoteDesktopEnabled in the answer"
        return AuditNote("macos-remote-management", None, why, source)
    return AuditNote("macos-remote-management", not state,
                     f"Remote Management (ARD) {'on' if state else 'off'} "
                     f"(RemoteDesktopEnabled = {int(state)})", source)


def airplay_note(runner: CommandRunner) -> AuditNote:
    # Apple's own key is spelled "Reciever". It lives in the -currentHost preferences of the
    # user the command runs as; unset means the macOS default, which is on.
    argv = [DEFAULTS, "-currentHost", "read", "com.apple.controlcenter", "AirplayRecieverEnabled"]
    source = " ".join(argv)
    result = runner.run(argv)
    try:
        state = parse_defaults_bool(result)
    except ValueError as exc:
        return AuditNote("macos-airplay-receiver", None, str(exc), source)
    if state is None:
        return AuditNote("macos-airplay-receiver", False,
                         "AirPlay Receiver on (not set: the macOS default is on; listens on "
                         "TCP 5000/7000)", source)
    return AuditNote("macos-airplay-receiver", not state,
                     f"AirPlay Receiver {'on' if state else 'off'} "
                     f"(AirplayRecieverEnabled = {int(state)})", source)


def bonjour_note(runner: CommandRunner) -> AuditNote:
    argv = [DEFAULTS, "read", "/Library/Preferences/com.apple.mDNSResponder.plist",
            "NoMulticastAdvertisements"]
    source = " ".join(argv)
    try:
        quiet = parse_defaults_bool(runner.run(argv))
    except ValueError as exc:
        return AuditNote("macos-bonjour-advertising", None, str(exc), source)
    if quiet:
        return AuditNote("macos-bonjour-advertising", True,
                         "Bonjour advertising off (NoMulticastAdvertisements = 1)", source)
    how = "not set" if quiet is None else "NoMulticastAdvertisements = 0"
    return AuditNote("macos-bonjour-advertising", False,
                     f"Bonjour advertises this Mac's services on the LAN ({how})", source)


def audit_sharing_macos(runner: CommandRunner | None = None, root: Path = Path("/"),
                        platform: str = sys.platform) -> list[AuditNote]:
    """Every macOS sharing note, plus sshd's effective config when Remote Login is on.
    Missing commands and refusals become ok-None notes with the reason; never raises for them.
    On another platform: one "not supported" note per check."""
    if platform != "darwin":
        return unsupported(MACOS_IDS, platform)
    runner = runner or SystemRunner()
    launchd = _launchd(runner)
    notes = [
        file_sharing_note(runner, launchd),
        screen_sharing_note(launchd),
        remote_login_note(runner, launchd),
        remote_management_note(runner),
        airplay_note(runner),
        bonjour_note(runner),
    ]
    if notes[2].ok is False:  # Remote Login on: does it take passwords?
        notes += audit_sshd(runner, root)
    return notes
