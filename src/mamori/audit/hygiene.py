"""Host hygiene that matters on an always-on line: empty passwords, automatic security updates,
SSH passwords, time sync.

Each ``check_*`` returns one ``AuditNote`` (ok True: fine, False: a problem, None: could not
tell, with the reason in ``detail``). Commands run through the injected ``CommandRunner`` and
files are read from paths given as parameters, so tests feed their own; the parsers
(``empty_password_accounts``, ``apt_config_values``, ``sshd_settings``, ``defaults_values``)
are pure.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

from mamori.audit.runner import CommandResult, CommandRunner
from mamori.model.audit import AuditNote

SHADOW = Path("/etc/shadow")
APT_CONF_DIR = Path("/etc/apt/apt.conf.d")
APT_CONF = Path("/etc/apt/apt.conf")
MAC_SOFTWAREUPDATE = "/Library/Preferences/com.apple.SoftwareUpdate"
FILE_CAP = 1024 * 1024  # bytes read from one configuration file


def _system(system: str | None) -> str:
    return system if system is not None else platform.system()


def _first_line(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).strip()
    return text.splitlines()[0][:200] if text else f"exit status {result.returncode}"


def _read(path: Path) -> str:
    """The text of ``path``, capped. Raises OSError when it cannot be read."""
    with path.open("rb") as fh:
        return fh.read(FILE_CAP).decode("utf-8", "replace")


# ---- accounts with empty passwords -------------------------------------------------------------

def empty_password_accounts(text: str) -> list[str]:
    """Names of /etc/shadow accounts whose password field is empty (login without a password).

    A locked or disabled field ("!", "!!", "*", "!<hash>") and any hash are fine. Malformed
    lines (fewer than two fields) are skipped. Pure; never raises.
    """
    names: list[str] = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 2 and fields[0] and not fields[0].startswith("#") and fields[1] == "":
            names.append(fields[0])
    return names


def check_empty_passwords(shadow: Path = SHADOW, system: str | None = None) -> AuditNote:
    """Accounts that log in with an empty password, from ``shadow`` (readable by root only).

    Returns ok=False naming the accounts, ok=True when none, ok=None when the file cannot be
    read (not root) or the platform keeps no shadow file. Never raises.
    """
    check_id, source = "os-empty-passwords", str(shadow)
    if _system(system) != "Linux":
        return AuditNote(check_id, None, f"not checked on {_system(system)}: no {shadow}", source)
    try:
        text = _read(shadow)
    except PermissionError:
        return AuditNote(check_id, None, f"undetermined: {shadow} is not readable (run as root)",
                         source)
    except OSError as exc:
        return AuditNote(check_id, None, f"undetermined: cannot read {shadow}: {exc.strerror}",
                         source)
    names = empty_password_accounts(text)
    if names:
        return AuditNote(check_id, False,
                         f"accounts with an empty password in {shadow}: {', '.join(names)}",
                         source)
    return AuditNote(check_id, True, f"no account in {shadow} has an empty password", source)


# ---- automatic security updates ----------------------------------------------------------------

_APT_TOKEN = re.compile(
    r'(?P<str>"[^"]*")|(?P<comment>//[^\n]*|/\*.*?\*/|#[^\n]*)|(?P<punct>[{};])|(?P<word>[^\s{};"]+)',
    re.DOTALL,
)


def apt_config_values(text: str) -> dict[str, str]:
    """Flatten one apt.conf text into {lower-cased "A::B::C": value}.

    Understands "A::B "v";", nested scopes "A { B "v"; };", quoted and bare values, and //, /* */
    and # comments. List items ("A { "x"; "y"; };") and the #clear/#include directives are
    ignored. Pure; never raises (broken syntax yields what could be read).
    """
    tokens = [(m.lastgroup, m.group()) for m in _APT_TOKEN.finditer(text)
              if m.lastgroup != "comment"]
    values: dict[str, str] = {}
    scope: list[str] = []
    i = 0
    while i < len(tokens):
        kind, tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if tok == "}":
            if scope:
                scope.pop()
            i += 1
        elif kind == "word" and nxt[1] == "{":
            scope.append(tok)
            i += 2
        elif kind == "word" and nxt[0] in ("str", "word"):
            values["::".join([*scope, tok]).lower()] = nxt[1].strip('"')
            i += 2
        else:
            i += 1
    return values


def _apt_part_files(conf_dir: Path) -> list[Path]:
    # apt reads parts in name order; it skips names with other characters or extensions.
    try:
        entries = sorted(conf_dir.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    return [p for p in entries if p.is_file() and re.fullmatch(r"[A-Za-z0-9_.-]+", p.name)
            and ("." not in p.name or p.name.endswith(".conf"))]


def _enabled(value: str | None) -> bool:
    try:
        return value is not None and int(value) > 0
    except ValueError:
        return value is not None and value.lower() in ("true", "yes", "on", "always")


def _check_debian_updates(runner: CommandRunner, conf_dir: Path, main_conf: Path) -> AuditNote:
    check_id = "os-automatic-updates"
    res = runner.run(["dpkg-query", "-W", "-f=${Status}", "unattended-upgrades"])
    source = f"dpkg-query unattended-upgrades; {conf_dir}"
    if res.missing:
        return AuditNote(check_id, None, "not checked: no dpkg here, and only Debian-family "
                         "automatic updates are understood on Linux", "dpkg-query")
    if not res.ok or "ok installed" not in res.stdout:
        return AuditNote(check_id, False, "unattended-upgrades is not installed: security "
                         "updates wait for someone to install them", source)
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in [*_apt_part_files(conf_dir), main_conf]:  # later files override earlier ones
        try:
            parsed = apt_config_values(_read(path))
        except OSError:
            continue
        values.update(parsed)
        origin.update(dict.fromkeys(parsed, path.name))
    key, enable, lists = ("apt::periodic::unattended-upgrade", "apt::periodic::enable",
                          "apt::periodic::update-package-lists")
    unattended = values.get(key)
    if unattended is None:
        return AuditNote(check_id, False, "unattended-upgrades is installed but "
                         "APT::Periodic::Unattended-Upgrade is not set (it stays off)", source)
    where = origin[key]
    if not _enabled(unattended):
        return AuditNote(check_id, False, f'APT::Periodic::Unattended-Upgrade "{unattended}" '
                         f"in {where}: automatic upgrades are off", source)
    if enable in values and not _enabled(values[enable]):
        return AuditNote(check_id, False, f'APT::Periodic::Enable "{values[enable]}" in '
                         f"{origin[enable]} turns every periodic apt job off", source)
    if lists in values and not _enabled(values[lists]):
        return AuditNote(check_id, False, f'APT::Periodic::Update-Package-Lists "{values[lists]}"'
                         f" in {origin[lists]}: upgrades never see new packages", source)
    return AuditNote(check_id, True, f"unattended-upgrades installed, "
                     f'APT::Periodic::Unattended-Upgrade "{unattended}" in {where}', source)


_DEFAULTS_LINE = re.compile(r'^\s*"?([A-Za-z0-9_.-]+)"?\s*=\s*"?([^";]*)"?\s*;\s*$')


def defaults_values(text: str) -> dict[str, str]:
    """Top-level scalar keys of a macOS ``defaults read DOMAIN`` output ({ Key = value; ...}).

    Nested dictionaries and arrays are skipped (their inner lines are read as keys only when
    they look like top-level ones, which is harmless for the keys asked here). Pure.
    """
    values: dict[str, str] = {}
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if depth == 1:
            match = _DEFAULTS_LINE.match(stripped)
            if match:
                values[match.group(1)] = match.group(2).strip()
        depth += stripped.count("{") + stripped.count("(")
        depth -= stripped.count("}") + stripped.count(")")
    return values


def _check_macos_updates(runner: CommandRunner) -> AuditNote:
    check_id = "os-automatic-updates"
    source = f"softwareupdate --schedule; defaults read {MAC_SOFTWAREUPDATE}"
    sched = runner.run(["softwareupdate", "--schedule"])
    prefs = runner.run(["defaults", "read", MAC_SOFTWAREUPDATE])
    problems: list[str] = []
    facts: list[str] = []
    if sched.ok:
        text = sched.stdout.strip().lower()
        if re.search(r"\b(off|turned off)\b", text):
            problems.append("automatic checking is off (softwareupdate --schedule)")
        elif re.search(r"\bon\b", text):
            facts.append("automatic checking on")
    values = defaults_values(prefs.stdout) if prefs.ok else {}
    # Absent keys mean the macOS default, which is on for both of these.
    for key, what in (("AutomaticCheckEnabled", "automatic checking"),
                      ("CriticalUpdateInstall", "security responses and system files")):
        value = values.get(key)
        if value is None:
            facts.append(f"{key} not set (macOS default: on)")
        elif _enabled(value):
            facts.append(f"{key}={value}")
        else:
            problems.append(f"{what} off ({key}={value})")
    if not sched.ok and not prefs.ok:
        return AuditNote(check_id, None, f"undetermined: softwareupdate: {_first_line(sched)}; "
                         f"defaults: {_first_line(prefs)}", source)
    if problems:
        return AuditNote(check_id, False, "; ".join(problems), source)
    return AuditNote(check_id, True, "; ".join(facts), source)


def check_auto_updates(runner: CommandRunner, system: str | None = None,
                       apt_conf_dir: Path = APT_CONF_DIR, apt_conf: Path = APT_CONF) -> AuditNote:
    """Whether security updates install themselves.

    Debian family: unattended-upgrades installed (dpkg-query) and APT::Periodic::Unattended-
    Upgrade above zero in the apt configuration (parts of ``apt_conf_dir`` in name order, then
    ``apt_conf``; APT::Periodic::Enable or Update-Package-Lists "0" also count as off).
    macOS: ``softwareupdate --schedule`` and AutomaticCheckEnabled / CriticalUpdateInstall of
    com.apple.SoftwareUpdate. Returns ok=None with the reason elsewhere. Never raises.
    """
    name = _system(system)
    if name == "Linux":
        return _check_debian_updates(runner, apt_conf_dir, apt_conf)
    if name == "Darwin":
        return _check_macos_updates(runner)
    return AuditNote("os-automatic-updates", None, f"not supported on {name}", "-")


# ---- SSH: keys or passwords --------------------------------------------------------------------

def sshd_settings(text: str) -> dict[str, str]:
    """``sshd -T`` output as {lower-cased keyword: value} (the first value of repeated keys).

    Pure; never raises.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            values.setdefault(key.lower(), value.strip())
    return values


def check_ssh_auth(runner: CommandRunner, config: Path | None = None) -> AuditNote:
    """Whether sshd lets anyone try passwords, from its effective configuration (``sshd -T``,
    with ``-f config`` when given; Match blocks for particular users are not evaluated).

    Problems: passwordauthentication yes; keyboard-interactive with PAM (asks for the
    password too); permitrootlogin yes (root by password); permitemptypasswords yes.
    Returns ok=True when sshd is not installed, ok=None when ``sshd -T`` fails (not root,
    broken config). Never raises.
    """
    check_id = "ssh-password-login"
    argv = ["sshd", "-T", *(["-f", str(config)] if config is not None else [])]
    source = " ".join(argv)
    res = runner.run(argv)
    if res.missing:
        return AuditNote(check_id, True, "sshd is not installed: no SSH logins", source)
    if not res.ok:
        return AuditNote(check_id, None, f"undetermined: {source} failed: {_first_line(res)}",
                         source)
    conf = sshd_settings(res.stdout)
    if "passwordauthentication" not in conf:
        return AuditNote(check_id, None, f"undetermined: {source} printed no "
                         "passwordauthentication setting", source)
    kbd_key = ("kbdinteractiveauthentication" if "kbdinteractiveauthentication" in conf
               else "challengeresponseauthentication")
    problems: list[str] = []
    if conf["passwordauthentication"] == "yes":
        problems.append("password logins allowed (passwordauthentication yes)")
    if conf.get(kbd_key) == "yes" and conf.get("usepam") == "yes":
        problems.append(f"keyboard-interactive through PAM asks for passwords ({kbd_key} yes)")
    if conf.get("permitrootlogin") == "yes":
        problems.append("root may log in with a password (permitrootlogin yes)")
    if conf.get("permitemptypasswords") == "yes":
        problems.append("empty passwords accepted (permitemptypasswords yes)")
    if problems:
        return AuditNote(check_id, False, "; ".join(problems), source)
    return AuditNote(check_id, True, "keys only: passwordauthentication "
                     f"{conf['passwordauthentication']}, {kbd_key} {conf.get(kbd_key, '?')}, "
                     f"permitrootlogin {conf.get('permitrootlogin', '?')}", source)


# ---- time sync ---------------------------------------------------------------------------------

def _key_values(text: str, sep: str) -> dict[str, str]:
    pairs = (line.partition(sep) for line in text.splitlines())
    return {k.strip(): v.strip() for k, s, v in pairs if s}


def _check_linux_time(runner: CommandRunner) -> AuditNote:
    check_id = "os-time-sync"
    reasons: list[str] = []
    res = runner.run(["timedatectl", "show"])
    if res.ok:
        kv = _key_values(res.stdout, "=")
        synced, ntp = kv.get("NTPSynchronized"), kv.get("NTP")
        if synced == "yes":
            return AuditNote(check_id, True, "timedatectl: NTPSynchronized=yes", "timedatectl show")
        if synced == "no":
            why = "no NTP service enabled (NTP=no)" if ntp == "no" else "clock not synchronized"
            return AuditNote(check_id, False, f"timedatectl: NTPSynchronized=no: {why}",
                             "timedatectl show")
        reasons.append("timedatectl: no NTPSynchronized value")
    else:
        reasons.append(f"timedatectl: {_first_line(res)}")
    res = runner.run(["chronyc", "-n", "tracking"])
    if res.ok:
        leap = _key_values(res.stdout, ":").get("Leap status")
        if leap == "Normal" or (leap or "").startswith("Insert") or (leap or "").startswith(
                "Delete"):
            return AuditNote(check_id, True, f"chronyc tracking: Leap status {leap}",
                             "chronyc -n tracking")
        if leap is not None:
            return AuditNote(check_id, False, f"chronyc tracking: Leap status {leap}",
                             "chronyc -n tracking")
        reasons.append("chronyc: no Leap status")
    else:
        reasons.append(f"chronyc: {_first_line(res)}")
    return AuditNote(check_id, None, "undetermined: no time service answered ("
                     + "; ".join(reasons) + ")", "timedatectl show; chronyc -n tracking")


def _check_macos_time(runner: CommandRunner) -> AuditNote:
    source = "systemsetup -getusingnetworktime"
    res = runner.run(["systemsetup", "-getusingnetworktime"])
    text = res.stdout.strip()
    match = re.search(r"Network Time:\s*(On|Off)", text, re.IGNORECASE)
    if not res.ok or match is None:
        return AuditNote("os-time-sync", None, f"undetermined: {source}: "
                         f"{text[:200] or _first_line(res)}", source)
    on = match.group(1).lower() == "on"
    return AuditNote("os-time-sync", on, f"{source}: {match.group(0)}", source)


def check_time_sync(runner: CommandRunner, system: str | None = None) -> AuditNote:
    """Whether the clock follows a time server (logs and certificates need the right time).

    Linux: ``timedatectl show`` (systemd-timesyncd or any NTP unit), then ``chronyc tracking``;
    when neither answers, ok=None with both reasons. macOS: ``systemsetup
    -getusingnetworktime``. Never raises.
    """
    name = _system(system)
    if name == "Linux":
        return _check_linux_time(runner)
    if name == "Darwin":
        return _check_macos_time(runner)
    return AuditNote("os-time-sync", None, f"not supported on {name}", "-")


def hygiene_notes(runner: CommandRunner, system: str | None = None) -> list[AuditNote]:
    """All four hygiene checks with the system's own paths, in checklist order."""
    return [check_empty_passwords(system=system), check_auto_updates(runner, system),
            check_ssh_auth(runner), check_time_sync(runner, system)]


__all__ = [
    "apt_config_values", "check_auto_updates", "check_empty_passwords", "check_ssh_auth",
    "check_time_sync", "defaults_values", "empty_password_accounts", "hygiene_notes",
    "sshd_settings",
]
