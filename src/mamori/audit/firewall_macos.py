"""macOS firewalls: the application firewall (socketfilterfw) and pf (pfctl).

The application firewall filters by program, not by port: a listener is blocked when "block
all" is on or its executable is listed as blocked, allowed when listed as allowed; anything
else depends on code signatures (signed software is allowed automatically by default) and is
undetermined. pf is evaluated like pf does it (last matching rule wins, `quick` stops), for a
packet from an arbitrary outside address; rules it cannot read make the answer undetermined.
Commands run through the CommandRunner seam; parsers are pure.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from mamori.audit.runner import CommandResult, CommandRunner, SystemRunner
from mamori.audit.sharing_linux import unsupported
from mamori.model.audit import AuditNote, FirewallDecision, Listener, Verdict

SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"
PFCTL = "/sbin/pfctl"
FIREWALL_IDS = ("macos-app-firewall", "macos-stealth-mode", "macos-pf")


def _failure(result: CommandResult) -> str:
    lines = [ln for ln in (result.stderr.strip() or result.stdout.strip()).splitlines()
             if not ln.startswith(("No ALTQ", "ALTQ related"))]
    tail = lines[-1].strip() if lines else ""
    if result.missing:
        return f"{result.argv[0]} not available"
    return f"{' '.join(result.argv)} exited {result.returncode}: {tail[:160]}"


# --- application firewall ------------------------------------------------------------------------


@dataclass(frozen=True)
class AlfApp:
    path: str
    allow: bool


@dataclass(frozen=True)
class AppFirewall:
    state: int | None  # 0 off, 1 on, 2 block all (essential services only)
    stealth: bool | None
    apps: tuple[AlfApp, ...] | None  # None: the list could not be read

    @property
    def enabled(self) -> bool | None:
        return None if self.state is None else self.state > 0


def parse_global_state(text: str) -> int | None:
    """"Firewall is enabled. (State = 1)" → 1; "... disabled. (State = 0)" → 0; else None."""
    m = re.search(r"\(State\s*=\s*(\d)\)", text)
    if m:
        return int(m.group(1))
    low = text.lower()
    if "firewall is enabled" in low:
        return 1
    if "firewall is disabled" in low:
        return 0
    return None


def parse_stealth(text: str) -> bool | None:
    """"Firewall stealth mode is on|off" (macOS 13 and later) or "Stealth mode enabled|disabled"
    (earlier releases) → bool; anything else → None."""
    low = text.lower()
    if re.search(r"stealth mode (is )?(on|enabled)\b", low):
        return True
    if re.search(r"stealth mode (is )?(off|disabled)\b", low):
        return False
    return None


_APP_HEADER = re.compile(r"ALF: total number of apps = (\d+)")
_APP_LINE = re.compile(r"^\s*\d+\s*:\s*(.+?)\s*$")
_APP_RULE = re.compile(r"\(\s*(Allow|Block) incoming connections\s*\)")


def parse_listapps(text: str) -> tuple[AlfApp, ...]:
    """`socketfilterfw --listapps` → (path, allowed) per listed program. Raises ValueError when
    the header is missing or the count disagrees with what was read."""
    header = _APP_HEADER.search(text)
    if header is None:
        raise ValueError("no 'ALF: total number of apps' header")
    apps: list[AlfApp] = []
    pending: str | None = None
    for raw in text[header.end():].splitlines():
        rule = _APP_RULE.search(raw)
        if rule and pending is not None:
            apps.append(AlfApp(pending, rule.group(1) == "Allow"))
            pending = None
            continue
        m = _APP_LINE.match(raw)
        if m:
            path = _APP_RULE.sub("", m.group(1)).strip()
            inline = _APP_RULE.search(m.group(1))
            if inline:
                apps.append(AlfApp(path, inline.group(1) == "Allow"))
            else:
                pending = path
    if len(apps) != int(header.group(1)):
        raise ValueError(f"header says {header.group(1)} apps, read {len(apps)}")
    return tuple(apps)


def read_app_firewall(runner: CommandRunner) -> tuple[AppFirewall, list[str]]:
    """The application firewall's state, and the reasons for anything unread."""
    errors: list[str] = []
    state = stealth = None
    r = runner.run([SOCKETFILTERFW, "--getglobalstate"])
    if r.ok:
        state = parse_global_state(r.stdout)
    if state is None:
        errors.append(_failure(r) if not r.ok else f"unreadable state {r.stdout.strip()[:60]!r}")
    r = runner.run([SOCKETFILTERFW, "--getstealthmode"])
    if r.ok:
        stealth = parse_stealth(r.stdout)
    if stealth is None:
        errors.append(_failure(r) if not r.ok else f"unreadable {r.stdout.strip()[:60]!r}")
    apps: tuple[AlfApp, ...] | None = None
    r = runner.run([SOCKETFILTERFW, "--listapps"])
    if r.ok:
        try:
            apps = parse_listapps(r.stdout)
        except ValueError as exc:
            errors.append(f"--listapps: {exc}")
    else:
        errors.append(_failure(r))
    return AppFirewall(state, stealth, apps), errors


# --- pf ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortMatch:
    op: str  # "=", "!=", "<", ">", "<=", ">=", ":", "><", "<>"
    a: int
    b: int | None = None

    def matches(self, port: int) -> bool:
        b = self.b if self.b is not None else self.a
        return {
            "=": port == self.a, "!=": port != self.a, "<": port < self.a, ">": port > self.a,
            "<=": port <= self.a, ">=": port >= self.a, ":": self.a <= port <= b,
            "><": self.a < port < b, "<>": port < self.a or port > b,
        }[self.op]


@dataclass(frozen=True)
class PfRule:
    text: str
    action: str  # "pass" | "block"
    direction: str | None  # "in" | "out" | None (both)
    quick: bool
    interface: str | None
    family: int | None  # 4, 6 or None (both)
    protos: tuple[str, ...] | None  # None: every protocol
    source_any: bool
    dest_any: bool  # "any" or "(self)"-like: reaches every local address
    ports: PortMatch | None


def _port_spec(tokens: list[str], i: int) -> tuple[PortMatch, int]:
    """Reads "port = 22", "port 22", "port 5900:5910", "port 1 >< 5" at tokens[i] ("port")."""
    t = tokens[i + 1]
    if t in {"=", "!=", "<", ">", "<=", ">="}:
        return PortMatch(t, int(tokens[i + 2])), i + 3
    if ":" in t:
        lo, _, hi = t.partition(":")
        return PortMatch(":", int(lo), int(hi)), i + 2
    if len(tokens) > i + 3 and tokens[i + 2] in {"><", "<>"}:
        return PortMatch(tokens[i + 2], int(t), int(tokens[i + 3])), i + 4
    return PortMatch("=", int(t)), i + 2


_SKIP = ("scrub", "scrub-anchor", "nat", "nat-anchor", "rdr", "rdr-anchor", "binat",
         "dummynet-anchor", "load", "set", "table", "antispoof")


def _read_protos(tokens: list[str], i: int) -> tuple[tuple[str, ...], int]:
    """ "proto tcp" or "proto { tcp udp }" at tokens[i] ("proto") → protocols, next index."""
    if tokens[i + 1] == "{":
        end = tokens.index("}", i)
        return tuple(tokens[i + 2:end]), end + 1
    return (tokens[i + 1],), i + 2


def _read_host(tokens: list[str], i: int) -> tuple[bool, int]:
    """ "from X" / "to X" at tokens[i] → (reaches every source / every local address, next)."""
    target, nxt = tokens[i + 1], i + 2
    if target == "!":
        target, nxt = "!" + tokens[i + 2], i + 3
    wide = {"any", "(self)", "self"} if tokens[i] == "to" else {"any"}
    return target in wide, nxt


_STATE_WORDS = {"flags", "keep", "modulate", "synproxy", "label", "tag", "tagged", "queue",
                "icmp-type", "icmp6-type", "user", "group", "rtable", "probability"}
_NOISE = {"drop", "return", "return-rst", "log", "no", "state", "(all)", "all"}


@dataclass
class _Draft:
    direction: str | None = None
    quick: bool = False
    interface: str | None = None
    family: int | None = None
    protos: tuple[str, ...] | None = None
    source_any: bool = True
    dest_any: bool = True
    ports: PortMatch | None = None


def parse_pf_rule(line: str) -> PfRule | None:
    """One `pfctl -sr` line → PfRule; None for non-filter lines (scrub, nat, match, …).
    Raises ValueError (or IndexError) for a filter rule this parser cannot read."""
    tokens = line.replace("{", " { ").replace("}", " } ").split()
    if not tokens or tokens[0] in _SKIP or tokens[0] == "match":
        return None  # match rules only tag or scrub; they do not decide pass or block
    if tokens[0] not in {"pass", "block"}:
        raise ValueError(f"unknown rule: {line}")
    f = _Draft()
    side, i = "", 1
    while i < len(tokens) and tokens[i] not in _STATE_WORDS:
        t = tokens[i]
        if t in {"in", "out"}:
            f.direction, i = t, i + 1
        elif t == "quick":
            f.quick, i = True, i + 1
        elif t == "on":
            f.interface, i = tokens[i + 1], i + 2
        elif t in {"inet", "inet6"}:
            f.family, i = (4 if t == "inet" else 6), i + 1
        elif t == "proto":
            f.protos, i = _read_protos(tokens, i)
        elif t in {"from", "to"}:
            side = t
            wide, i = _read_host(tokens, i)
            if t == "from":
                f.source_any = wide
            else:
                f.dest_any = wide
        elif t == "port":
            spec, i = _port_spec(tokens, i)
            if side == "to":
                f.ports = spec
            else:
                f.source_any = False  # a source-port restriction: not every packet
        elif t in _NOISE:
            i += 1
        else:
            raise ValueError(f"unread token {t!r} in: {line}")
    protos = f.protos
    if protos is None and ("icmp-type" in tokens or "icmp6-type" in tokens):
        protos = ("icmp",)
    return PfRule(line.strip(), tokens[0], f.direction, f.quick, f.interface, f.family, protos,
                  f.source_any, f.dest_any, f.ports)


@dataclass(frozen=True)
class PfState:
    enabled: bool | None
    rules: tuple[PfRule, ...]
    anchors: tuple[str, ...]  # anchors named in the main ruleset (their contents are not shown)
    unreadable: tuple[str, ...]  # rules the parser could not read


def parse_pf_info(text: str) -> bool | None:
    """`pfctl -s info` → True ("Status: Enabled …"), False ("Status: Disabled"), else None."""
    m = re.search(r"^Status:\s*(Enabled|Disabled)", text, re.M)
    return None if m is None else m.group(1) == "Enabled"


def parse_pf_rules(text: str, enabled: bool | None) -> PfState:
    """`pfctl -sr` output → the filter rules in order, the anchors, and unreadable lines."""
    rules: list[PfRule] = []
    anchors: list[str] = []
    bad: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("No ALTQ", "ALTQ related")):
            continue
        if line.startswith("anchor "):
            m = re.match(r'anchor\s+"([^"]+)"', line)
            anchors.append(m.group(1) if m else line)
            continue
        try:
            rule = parse_pf_rule(line)
        except (ValueError, IndexError):
            bad.append(line)
            continue
        if rule is not None:
            rules.append(rule)
    return PfState(enabled, tuple(rules), tuple(anchors), tuple(bad))


def _rule_matches(rule: PfRule, proto: str, port: int, family: int) -> bool | None:
    """Whether the rule matches an inbound packet from any outside address to (proto, port);
    None when it matches only some of them (restricted source or destination)."""
    if rule.direction == "out":
        return False
    if rule.interface in {"lo0", "lo"}:
        return False
    if rule.family is not None and rule.family != family:
        return False
    if rule.protos is not None and proto not in rule.protos:
        return False
    if rule.ports is not None and not rule.ports.matches(port):
        return False
    if not rule.source_any or not rule.dest_any:
        return None
    return True


def decide_pf(state: PfState, proto: str, port: int, family: int) -> FirewallDecision:
    """pf's verdict for inbound (proto, port) from an arbitrary outside address."""
    if state.enabled is False:
        return FirewallDecision(Verdict.NO_FIREWALL, "pf", "pf is disabled (pfctl -s info)")
    if state.enabled is None:
        return FirewallDecision(Verdict.UNDETERMINED, "pf", "pf status unknown")
    if state.unreadable:
        return FirewallDecision(Verdict.UNDETERMINED, "pf",
                                f"unreadable rule: {state.unreadable[0][:120]}")
    deciding: PfRule | None = None
    partial: list[PfRule] = []
    for rule in state.rules:
        hit = _rule_matches(rule, proto, port, family)
        if hit is None:
            partial.append(rule)
            continue
        if hit:
            deciding = rule
            if rule.quick:
                break
    foreign = [a for a in state.anchors if not a.startswith("com.apple")]
    if foreign:
        return FirewallDecision(Verdict.UNDETERMINED, "pf",
                                f"anchor {foreign[0]!r} holds rules pfctl -sr does not show")
    if deciding is None:
        return FirewallDecision(Verdict.ALLOWED, "pf",
                                "no pf rule matches: pf passes by default", None)
    verdict = Verdict.ALLOWED if deciding.action == "pass" else Verdict.BLOCKED
    why = f"{'last matching' if not deciding.quick else 'quick'} rule {deciding.action}es it"
    if partial and verdict is Verdict.BLOCKED:
        why += f"; {len(partial)} source- or address-restricted rule(s) may let some in"
    if deciding.interface:
        why += f" (on {deciding.interface} only)"
    return FirewallDecision(verdict, "pf", why, deciding.text)


def read_pf(runner: CommandRunner) -> tuple[PfState | None, str | None]:
    """pf's status and main ruleset, or None and the reason (pfctl needs root)."""
    info = runner.run([PFCTL, "-s", "info"])
    if not info.ok:
        return None, _failure(info)
    enabled = parse_pf_info(info.stdout + "\n" + info.stderr)
    if enabled is None:
        return None, "pfctl -s info: no Status line"
    rules = runner.run([PFCTL, "-sr"])
    if not rules.ok:
        return None, _failure(rules)
    return parse_pf_rules(rules.stdout, enabled), None


# --- per-listener decision and notes -------------------------------------------------------------


def _app_decision(alf: AppFirewall, exe: str | None) -> FirewallDecision:
    if alf.state is None:
        return FirewallDecision(Verdict.UNDETERMINED, "alf", "application firewall state unknown")
    if alf.state == 0:
        return FirewallDecision(Verdict.NO_FIREWALL, "alf", "application firewall is off")
    if alf.state == 2:
        return FirewallDecision(Verdict.BLOCKED, "alf",
                                "application firewall blocks all incoming connections "
                                "(essential services excepted)")
    if alf.apps is None or exe is None:
        why = "program unknown" if exe is None else "app list unreadable"
        return FirewallDecision(Verdict.UNDETERMINED, "alf", f"application firewall on; {why}")
    for app in alf.apps:
        if exe == app.path or exe.startswith(app.path.rstrip("/") + "/"):
            verdict = Verdict.ALLOWED if app.allow else Verdict.BLOCKED
            return FirewallDecision(verdict, "alf",
                                    f"application firewall {'allows' if app.allow else 'blocks'}"
                                    f" {app.path}", app.path)
    return FirewallDecision(Verdict.UNDETERMINED, "alf",
                            f"application firewall on; {exe} not listed (signed software may be "
                            "allowed automatically)")


def decide_macos(listener: Listener, alf: AppFirewall, pf: PfState | None) -> FirewallDecision:
    """The verdict for one listener: blocked if either firewall blocks it, allowed when both
    let it in (or are off), undetermined otherwise."""
    app = _app_decision(alf, listener.exe)
    pfd = (decide_pf(pf, str(listener.proto), listener.port, listener.family) if pf
           else FirewallDecision(Verdict.UNDETERMINED, "pf", "pf unreadable"))
    for d in (pfd, app):
        if d.verdict is Verdict.BLOCKED:
            return d
    if app.verdict is Verdict.NO_FIREWALL and pfd.verdict is Verdict.NO_FIREWALL:
        return FirewallDecision(Verdict.NO_FIREWALL, "none",
                                "application firewall off and pf disabled")
    for d in (pfd, app):
        if d.verdict is Verdict.UNDETERMINED:
            return d
    return app if app.verdict is Verdict.ALLOWED else pfd


def firewall_notes(alf: AppFirewall, alf_errors: Sequence[str], pf: PfState | None,
                   pf_error: str | None) -> list[AuditNote]:
    """Notes "macos-app-firewall", "macos-stealth-mode", "macos-pf" from what was read."""
    src = f"{SOCKETFILTERFW} --getglobalstate/--getstealthmode/--listapps"
    notes: list[AuditNote] = []
    if alf.state is None:
        notes.append(AuditNote("macos-app-firewall", None, "; ".join(alf_errors) or "unknown",
                               src))
    elif alf.state == 0:
        notes.append(AuditNote("macos-app-firewall", False,
                               "application firewall off (State = 0)", src))
    else:
        mode = "blocks all incoming" if alf.state == 2 else "on"
        listed = ("app list unreadable" if alf.apps is None else
                  f"{sum(a.allow for a in alf.apps)} apps allowed, "
                  f"{sum(not a.allow for a in alf.apps)} blocked")
        notes.append(AuditNote("macos-app-firewall", True,
                               f"application firewall {mode} (State = {alf.state}); {listed}",
                               src))
    if alf.stealth is None:
        notes.append(AuditNote("macos-stealth-mode", None,
                               "; ".join(alf_errors) or "stealth mode unknown", src))
    else:
        notes.append(AuditNote("macos-stealth-mode", alf.stealth,
                               f"stealth mode {'on' if alf.stealth else 'off'}", src))
    psrc = f"{PFCTL} -s info; {PFCTL} -sr"
    if pf is None:
        notes.append(AuditNote("macos-pf", None, pf_error or "pf unreadable", psrc))
    elif not pf.enabled:
        alf_on = alf.enabled is True
        notes.append(AuditNote("macos-pf", alf_on,
                               "pf disabled (macOS default); " +
                               ("inbound filtering is the application firewall's"
                                if alf_on else "and the application firewall is off too: "
                                "nothing filters inbound"), psrc))
    else:
        blocks = [r for r in pf.rules if r.action == "block" and r.direction != "out"]
        if pf.unreadable:
            notes.append(AuditNote("macos-pf", None,
                                   f"pf enabled; unreadable rule {pf.unreadable[0][:100]!r}",
                                   psrc))
        elif blocks:
            notes.append(AuditNote("macos-pf", True,
                                   f"pf enabled with {len(pf.rules)} rules, inbound blocks: "
                                   f"{blocks[0].text[:100]}", psrc))
        else:
            notes.append(AuditNote("macos-pf", False,
                                   f"pf enabled but no rule blocks inbound traffic "
                                   f"({len(pf.rules)} rules, anchors {', '.join(pf.anchors)})",
                                   psrc))
    return notes


def audit_firewall_macos(runner: CommandRunner | None = None,
                         platform: str = sys.platform) -> list[AuditNote]:
    """The three macOS firewall notes. Missing commands or refusals (pfctl needs root) give
    ok-None notes with the reason. On another platform: "not supported" notes."""
    if platform != "darwin":
        return unsupported(FIREWALL_IDS, platform)
    runner = runner or SystemRunner()
    alf, errors = read_app_firewall(runner)
    pf, pf_error = read_pf(runner)
    return firewall_notes(alf, errors, pf, pf_error)
