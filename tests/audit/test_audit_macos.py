"""macOS sharing and firewall adapters, replayed from recorded command outputs (macOS 14/15).

Three recordings: everything on (sharing_on), a hardened Mac (sharing_off), and an ordinary
user's shell without root or Full Disk Access (nonroot). Commands absent from a recording
answer "not installed", which must give ok None with the reason, never "fine".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori.audit import firewall_macos as fw
from mamori.audit import sharing_macos as sm
from mamori.audit.runner import CommandResult, ReplayRunner
from mamori.model import Proto
from mamori.model.audit import AuditNote, Listener, Scope, Verdict

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "macos"


def replay(name: str) -> ReplayRunner:
    return ReplayRunner.from_file(FIX / f"{name}.json")


def by_id(notes: list[AuditNote]) -> dict[str, AuditNote]:
    out = {n.check_id: n for n in notes}
    assert len(out) == len(notes), "one note per check id"
    return out


# --- sharing -------------------------------------------------------------------------------------


def test_everything_on_is_reported_as_problems() -> None:
    runner = replay("sharing_on")
    notes = by_id(sm.audit_sharing_macos(runner, platform="darwin"))
    fs = notes["macos-file-sharing"]
    assert fs.ok is False
    assert "Alice's Public Folder (/Users/alice/Public, smb, guest access over smb)" in fs.detail
    assert "Media (/Volumes/Data/Media, smb)" in fs.detail
    assert "Old" not in fs.detail  # listed but not shared
    assert notes["macos-screen-sharing"].ok is False
    assert notes["macos-remote-login"].ok is False
    assert "systemsetup" in notes["macos-remote-login"].detail
    assert notes["macos-remote-management"].ok is False
    assert "RemoteDesktopEnabled = 1" in notes["macos-remote-management"].detail
    air = notes["macos-airplay-receiver"]
    assert air.ok is False and "default is on" in air.detail
    assert notes["macos-bonjour-advertising"].ok is False
    # Remote Login on: sshd's effective config is read too, and it takes passwords.
    assert notes["ssh-password-login"].ok is False
    assert ("sshd", "-T", "-f", "/etc/ssh/sshd_config") in runner.calls


def test_hardened_mac_passes() -> None:
    runner = replay("sharing_off")
    notes = by_id(sm.audit_sharing_macos(runner, platform="darwin"))
    for cid in sm.MACOS_IDS:
        assert notes[cid].ok is True, notes[cid]
    assert "ssh-password-login" not in notes  # Remote Login off: sshd not consulted
    assert (sm.SHARING, "-l") not in runner.calls  # File Sharing off: no need to list shares
    assert '"com.apple.smbd" => disabled' in notes["macos-file-sharing"].detail


def test_without_root_the_adapter_falls_back_or_says_why() -> None:
    notes = by_id(sm.audit_sharing_macos(replay("nonroot"), platform="darwin"))
    login = notes["macos-remote-login"]
    assert login.ok is False  # launchd's override table says sshd is enabled
    assert "administrator access" in login.detail and "com.openssh.sshd" in login.detail
    fs = notes["macos-file-sharing"]
    assert fs.ok is False and "needs to be run as root" in fs.detail
    mgmt = notes["macos-remote-management"]  # mdmclient not in this recording
    assert mgmt.ok is None and "not available" in mgmt.detail
    assert notes["macos-airplay-receiver"].ok is False  # explicitly 1
    assert notes["ssh-password-login"].ok is None
    assert "no hostkeys" in notes["ssh-password-login"].detail


def test_every_command_missing_gives_none_with_reasons() -> None:
    notes = by_id(sm.audit_sharing_macos(ReplayRunner({}), platform="darwin"))
    for cid in sm.MACOS_IDS:
        assert notes[cid].ok is None, notes[cid]
        assert "not available" in notes[cid].detail


def test_other_platforms_are_not_supported() -> None:
    for platform in ("win32", "linux"):
        notes = sm.audit_sharing_macos(ReplayRunner({}), platform=platform)
        assert {n.check_id for n in notes} == set(sm.MACOS_IDS)
        assert all(n.ok is None and "not supported" in n.detail for n in notes)
    notes = fw.audit_firewall_macos(ReplayRunner({}), platform="win32")
    assert [n.ok for n in notes] == [None, None, None]


def test_share_point_parser_keeps_records_apart() -> None:
    text = replay("sharing_on").recordings["/usr/sbin/sharing -l"]["stdout"]
    shares = sm.parse_share_points(str(text))
    assert [s.name for s in shares] == ["Alice's Public Folder", "Media", "Old"]
    assert shares[0].guest_over() == ["smb"] and shares[0].shared_over() == ["smb"]
    assert shares[1].guest_over() == [] and shares[1].path == "/Volumes/Data/Media"
    assert shares[2].shared_over() == []


def test_launchd_parser_reads_services_and_both_override_dialects() -> None:
    text = str(replay("sharing_on").recordings["/bin/launchctl print system"]["stdout"])
    state = sm.parse_launchd_system(text)
    assert state.loaded["com.apple.RemoteDesktop.PrivilegeProxy"] == 731
    assert state.loaded["com.apple.smbd"] == 0
    assert state.overrides["com.openssh.sshd"] is True
    assert state.overrides["org.apache.httpd"] is False
    assert "com.apple.xpc.smd" in state.loaded  # not confused with the endpoints section
    old = sm.parse_launchd_system('\tdisabled services = {\n\t\t"com.apple.smbd" => true\n'
                                  '\t\t"com.openssh.sshd" => false\n\t}\n')
    assert old.overrides == {"com.apple.smbd": False, "com.openssh.sshd": True}
    with pytest.raises(ValueError):
        sm.parse_launchd_system("Unrecognized target specifier.\n")


def test_defaults_parser() -> None:
    def res(rc: int, out: str, err: str = "") -> CommandResult:
        return CommandResult(("defaults",), rc, out, err)

    assert sm.parse_defaults_bool(res(0, "1\n")) is True
    assert sm.parse_defaults_bool(res(0, "0\n")) is False
    assert sm.parse_defaults_bool(res(1, "", "The domain/default pair of (a, b) does not exist"))\
        is None
    with pytest.raises(ValueError):
        sm.parse_defaults_bool(res(0, "(\n    x\n)\n"))


# --- firewall ------------------------------------------------------------------------------------


def test_firewall_off_everything() -> None:
    notes = by_id(fw.audit_firewall_macos(replay("sharing_on"), platform="darwin"))
    assert notes["macos-app-firewall"].ok is False
    assert notes["macos-stealth-mode"].ok is False
    pf = notes["macos-pf"]
    assert pf.ok is False and "nothing filters inbound" in pf.detail


def test_firewall_on_everything() -> None:
    notes = by_id(fw.audit_firewall_macos(replay("sharing_off"), platform="darwin"))
    assert notes["macos-app-firewall"].ok is True
    assert "2 apps allowed, 1 blocked" in notes["macos-app-firewall"].detail
    assert notes["macos-stealth-mode"].ok is True
    assert notes["macos-pf"].ok is True
    assert "block drop in all" in notes["macos-pf"].detail


def test_firewall_without_root() -> None:
    notes = by_id(fw.audit_firewall_macos(replay("nonroot"), platform="darwin"))
    assert notes["macos-app-firewall"].ok is True
    assert notes["macos-stealth-mode"].ok is False
    pf = notes["macos-pf"]
    assert pf.ok is None and "Permission denied" in pf.detail


def test_firewall_commands_missing() -> None:
    notes = by_id(fw.audit_firewall_macos(ReplayRunner({}), platform="darwin"))
    assert all(n.ok is None for n in notes.values())
    assert "not available" in notes["macos-pf"].detail
    assert "not available" in notes["macos-app-firewall"].detail


def test_alf_output_dialects() -> None:
    assert fw.parse_global_state("Firewall is enabled. (State = 1) \n") == 1
    assert fw.parse_global_state("Firewall is disabled. (State = 0)") == 0
    assert fw.parse_global_state("Firewall is enabled. (State = 2)") == 2
    assert fw.parse_global_state("garbage") is None
    assert fw.parse_stealth("Firewall stealth mode is on \n") is True
    assert fw.parse_stealth("Stealth mode enabled") is True
    assert fw.parse_stealth("Stealth mode disabled") is False
    assert fw.parse_stealth("Firewall stealth mode is off") is False
    assert fw.parse_stealth("") is None
    apps = fw.parse_listapps("ALF: total number of apps = 2\n1 : /a ( Allow incoming connections )"
                             "\n2 :  /b c.app \n \t ( Block incoming connections ) \n")
    assert apps == (fw.AlfApp("/a", True), fw.AlfApp("/b c.app", False))
    with pytest.raises(ValueError):
        fw.parse_listapps("ALF: total number of apps = 3\n1 : /a\n ( Allow incoming connections )")
    with pytest.raises(ValueError):
        fw.parse_listapps("")


def _pf(name: str) -> fw.PfState:
    state, err = fw.read_pf(replay(name))
    assert state is not None, err
    return state


def lst(port: int, proto: Proto = Proto.TCP, exe: str | None = None,
        address: str = "0.0.0.0") -> Listener:
    return Listener(proto, address, port, Scope.ALL, exe=exe)


def test_pf_evaluation_on_the_recorded_ruleset() -> None:
    pf = _pf("sharing_off")
    assert pf.enabled and not pf.unreadable
    assert pf.anchors == ("com.apple/*",)
    d = fw.decide_pf(pf, "tcp", 22, 4)
    assert d.verdict is Verdict.ALLOWED and "port = 22" in (d.rule or "")
    d = fw.decide_pf(pf, "tcp", 6379, 6)
    assert d.verdict is Verdict.BLOCKED and d.rule and "quick" in d.rule
    d = fw.decide_pf(pf, "tcp", 5900, 4)  # pass only from 192.168.1.0/24: outside stays out
    assert d.verdict is Verdict.BLOCKED and d.rule == "block drop in all"
    assert "restricted" in d.reason
    assert fw.decide_pf(pf, "udp", 5353, 4).verdict is Verdict.ALLOWED
    assert fw.decide_pf(pf, "udp", 53, 4).verdict is Verdict.BLOCKED
    assert fw.decide_pf(_pf("sharing_on"), "tcp", 22, 4).verdict is Verdict.NO_FIREWALL


def test_pf_rules_it_cannot_read_make_it_undetermined() -> None:
    state = fw.parse_pf_rules("block drop in all\npass in proto tcp to any port 22 "
                              "os \"Windows\"\n", True)
    assert state.unreadable
    assert fw.decide_pf(state, "tcp", 22, 4).verdict is Verdict.UNDETERMINED
    foreign = fw.parse_pf_rules('block drop in all\nanchor "custom" all\n', True)
    d = fw.decide_pf(foreign, "tcp", 22, 4)
    assert d.verdict is Verdict.UNDETERMINED and "custom" in d.reason


def test_pf_port_operators() -> None:
    rules = fw.parse_pf_rules(
        "block drop in all\n"
        "pass in inet proto { tcp udp } from any to any port 1000:1010\n"
        "pass in inet6 proto tcp from any to any port 2000 >< 2005\n"
        "pass in proto tcp from any to any port != 3000\n"
        "block drop in quick proto tcp from any port = 53 to any\n", True)
    assert not rules.unreadable
    assert fw.decide_pf(rules, "udp", 1005, 4).verdict is Verdict.ALLOWED
    assert fw.decide_pf(rules, "udp", 1005, 6).verdict is Verdict.BLOCKED
    assert fw.decide_pf(rules, "tcp", 2003, 6).verdict is Verdict.ALLOWED
    assert fw.decide_pf(rules, "tcp", 3000, 4).verdict is Verdict.BLOCKED
    assert fw.decide_pf(rules, "tcp", 3001, 4).verdict is Verdict.ALLOWED


def test_listener_decision_joins_app_firewall_and_pf() -> None:
    runner = replay("sharing_off")
    alf, errors = fw.read_app_firewall(runner)
    assert not errors
    pf = _pf("sharing_off")
    redis = lst(6379, exe="/opt/homebrew/Cellar/redis/7.2.4/bin/redis-server")
    assert fw.decide_macos(redis, alf, pf).verdict is Verdict.BLOCKED
    plex = lst(32400, exe="/Applications/Plex Media Server.app/Contents/MacOS/Plex Media Server")
    d = fw.decide_macos(plex, alf, pf)
    assert d.verdict is Verdict.BLOCKED and d.backend == "pf"  # the app is allowed, pf is not
    ssh = lst(22, exe="/usr/libexec/sshd-keygen-wrapper")
    assert fw.decide_macos(ssh, alf, pf).verdict is Verdict.ALLOWED
    unknown = lst(22, exe="/usr/local/bin/thing")
    assert fw.decide_macos(unknown, alf, pf).verdict is Verdict.UNDETERMINED
    off_alf, _ = fw.read_app_firewall(replay("sharing_on"))
    d = fw.decide_macos(lst(445), off_alf, _pf("sharing_on"))
    assert d.verdict is Verdict.NO_FIREWALL
    block_all = fw.AppFirewall(2, True, ())
    assert fw.decide_macos(lst(445), block_all, None).verdict is Verdict.BLOCKED


def test_every_note_id_has_a_catalog_entry(tmp_path: Path) -> None:
    """note_result() looks each id up in audit/catalog: an id missing there is a crash."""
    from mamori.audit import sharing_linux as sl
    from mamori.audit.notes import default_notes

    ids: set[str] = set()
    for name in ("sharing_on", "sharing_off", "nonroot"):
        ids |= {n.check_id for n in sm.audit_sharing_macos(replay(name), platform="darwin")}
        ids |= {n.check_id for n in fw.audit_firewall_macos(replay(name), platform="darwin")}
    (tmp_path / "etc" / "samba").mkdir(parents=True)
    (tmp_path / "etc" / "samba" / "smb.conf").write_text("[global]\n")
    runner = ReplayRunner({f"testparm -s {tmp_path}/etc/samba/smb.conf":
                           {"stdout": "[global]\n"}})
    ids |= {n.check_id for n in sl.audit_sharing_linux(runner, tmp_path, lambda n: False,
                                                        platform="linux")}
    ids |= {"ssh-root-login-permitted"}
    assert ids - set(default_notes()) == set()
