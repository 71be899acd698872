"""Linux sharing and remote-access adapters, with the real tools where they exist here.

samba: real `testparm -s` on a smb.conf the test writes. sshd: real `sshd -T -f` on a config
the test writes. rpcbind: the real daemon inside a network namespace this test creates (so it
never listens on the machine's own interfaces), asked with the real `rpcinfo`. NFS exports,
avahi service files and cupsd.conf: files the test writes under a temporary root. Each both
ways: a misconfiguration that must be reported, and a fine one that must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mamori.audit import sharing_linux as sl
from mamori.audit.runner import DEFAULT_TIMEOUT, CommandResult, ReplayRunner, SystemRunner
from mamori.model.audit import AuditNote


def by_id(notes: list[AuditNote]) -> dict[str, AuditNote]:
    return {n.check_id: n for n in notes}


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


needs_testparm = pytest.mark.skipif(shutil.which("testparm") is None, reason="samba not installed")
needs_sshd = pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="no sshd")

# --- samba (real testparm) -----------------------------------------------------------------------


@needs_testparm
def test_samba_guest_shares_and_smb1_are_found(tmp_path: Path) -> None:
    write(tmp_path, "/etc/samba/smb.conf",
          "[global]\n  map to guest = bad user\n  server min protocol = NT1\n"
          "[public]\n  path = /srv/public\n  public = yes\n  writable = yes\n"
          "[photos]\n  path = /srv/photos\n  guest ok = yes\n"
          "[hidden]\n  path = /srv/h\n  guest ok = yes\n  available = no\n"
          "[private]\n  path = /srv/private\n")
    notes = by_id(sl.audit_samba(SystemRunner(), tmp_path))
    guest = notes["sharing-smb-guest"]
    assert guest.ok is False
    # "public = yes" is a synonym testparm resolves; "writable" likewise becomes read only = No.
    assert "[public] writable" in guest.detail and "[photos]" in guest.detail
    assert "[photos] writable" not in guest.detail
    assert "[hidden]" not in guest.detail and "[private]" not in guest.detail
    assert "map to guest = Bad User" in guest.detail
    assert notes["sharing-smb1"].ok is False and "NT1" in notes["sharing-smb1"].detail
    assert guest.source.startswith("testparm -s ")


@needs_testparm
def test_samba_defaults_pass(tmp_path: Path) -> None:
    write(tmp_path, "/etc/samba/smb.conf",
          "[global]\n  workgroup = HOME\n  server min protocol = SMB3\n"
          "[backup]\n  path = /srv/backup\n  valid users = alice\n")
    notes = by_id(sl.audit_samba(SystemRunner(), tmp_path))
    assert notes["sharing-smb-guest"].ok is True
    assert notes["sharing-smb1"].ok is True and "SMB3" in notes["sharing-smb1"].detail


@needs_testparm
def test_debian_defaults_alone_open_nothing_but_are_mentioned(tmp_path: Path) -> None:
    # Debian's stock smb.conf: bad-user mapping and guest usershares, but no guest share.
    write(tmp_path, "/etc/samba/smb.conf",
          "[global]\n  usershare allow guests = yes\n  map to guest = bad user\n"
          "[homes]\n  read only = yes\n")
    note = by_id(sl.audit_samba(SystemRunner(), tmp_path))["sharing-smb-guest"]
    assert note.ok is True
    assert "usershare allow guests" in note.detail and "map to guest" in note.detail
    # The same settings beside a guest share are part of the finding.
    write(tmp_path, "/etc/samba/smb.conf",
          "[global]\n  usershare allow guests = yes\n  map to guest = bad user\n"
          "[public]\n  path = /srv\n  guest ok = yes\n")
    note = by_id(sl.audit_samba(SystemRunner(), tmp_path))["sharing-smb-guest"]
    assert note.ok is False and "[public]" in note.detail and "map to guest" in note.detail


def test_samba_not_configured_and_testparm_missing(tmp_path: Path) -> None:
    assert by_id(sl.audit_samba(ReplayRunner({}), tmp_path))["sharing-smb-guest"].ok is True
    write(tmp_path, "/etc/samba/smb.conf", "[global]\n")
    notes = sl.audit_samba(ReplayRunner({}), tmp_path)
    assert [n.ok for n in notes] == [None, None]
    assert "testparm not installed" in notes[0].detail


# --- sshd (real sshd -T) -------------------------------------------------------------------------


@pytest.fixture
def host_key(tmp_path: Path) -> Path:
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@needs_sshd
def test_sshd_password_login_is_found(tmp_path: Path, host_key: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config",
          f"HostKey {host_key}\nPasswordAuthentication yes\nPermitRootLogin yes\nUsePAM yes\n")
    notes = by_id(sl.audit_sshd(SystemRunner(), tmp_path))
    assert notes["ssh-password-login"].ok is False
    assert "PasswordAuthentication yes" in notes["ssh-password-login"].detail
    root = notes["ssh-root-login-permitted"]
    assert root.ok is False and "passwords too" in root.detail


@needs_sshd
def test_sshd_keyboard_interactive_through_pam_counts_as_passwords(tmp_path: Path,
                                                                  host_key: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config",
          f"HostKey {host_key}\nPasswordAuthentication no\nKbdInteractiveAuthentication yes\n"
          "UsePAM yes\n")
    note = by_id(sl.audit_sshd(SystemRunner(), tmp_path))["ssh-password-login"]
    assert note.ok is False and "UsePAM" in note.detail


@needs_sshd
def test_sshd_keys_only_passes(tmp_path: Path, host_key: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config",
          f"HostKey {host_key}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
          "PermitRootLogin no\n")
    notes = by_id(sl.audit_sshd(SystemRunner(), tmp_path))
    assert notes["ssh-password-login"].ok is True
    assert notes["ssh-root-login-permitted"].ok is True


@needs_sshd
def test_sshd_default_root_login_by_key_is_reported(tmp_path: Path, host_key: Path) -> None:
    # OpenSSH's default, prohibit-password, still lets a key log in as root.
    write(tmp_path, "/etc/ssh/sshd_config", f"HostKey {host_key}\nPasswordAuthentication no\n")
    note = by_id(sl.audit_sshd(SystemRunner(), tmp_path))["ssh-root-login-permitted"]
    assert note.ok is False and "keys only" in note.detail


@needs_sshd
def test_sshd_key_required_first_passes(tmp_path: Path, host_key: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config",
          f"HostKey {host_key}\nPasswordAuthentication yes\n"
          "AuthenticationMethods publickey,password\n")
    note = by_id(sl.audit_sshd(SystemRunner(), tmp_path))["ssh-password-login"]
    assert note.ok is True and "requires a key first" in note.detail


@needs_sshd
def test_sshd_broken_config_is_not_tested(tmp_path: Path, host_key: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", f"HostKey {host_key}\nNoSuchKeyword yes\n")
    notes = sl.audit_sshd(SystemRunner(), tmp_path)
    assert all(n.ok is None for n in notes)
    assert "NoSuchKeyword" in notes[0].detail or "Bad configuration" in notes[0].detail


def test_sshd_not_installed(tmp_path: Path) -> None:
    notes = sl.audit_sshd(ReplayRunner({}), tmp_path)
    assert len(notes) == 1 and notes[0].ok is True and "not installed" in notes[0].detail


# --- NFS exports ---------------------------------------------------------------------------------


def test_world_exports_are_found(tmp_path: Path) -> None:
    write(tmp_path, "/etc/exports",
          "# comment\n/srv/media 192.168.1.0/24(ro,sync)\n"
          "/srv/everyone *(rw,no_subtree_check)\n"
          "/srv/typo 192.168.1.5 (rw)\n"  # the space: host with defaults + world rw
          "/srv/bare\n"
          '"/srv/with space" \\\n   10.0.0.0/8(rw,no_root_squash)\n')
    write(tmp_path, "/etc/exports.d/extra.exports", "/srv/v6 ::/0(ro)\n")
    write(tmp_path, "/etc/exports.d/ignored.txt", "/srv/not-read *(rw)\n")
    note = sl.audit_nfs(tmp_path)
    assert note.ok is False
    d = note.detail
    assert "/srv/everyone to every host (* rw)" in d
    assert "/srv/typo to every host (* rw)" in d
    assert "/srv/bare to every host (*)" in d
    assert "/srv/with space to 10.0.0.0/8 with no_root_squash" in d
    assert "/srv/v6 to every host (::/0)" in d
    assert "/srv/media" not in d and "/srv/not-read" not in d
    assert "exports:3" in d  # file:line evidence


def test_restricted_exports_pass(tmp_path: Path) -> None:
    write(tmp_path, "/etc/exports",
          "/srv/media 192.168.1.0/24(ro,sync) backup.lan(rw,root_squash)\n")
    note = sl.audit_nfs(tmp_path)
    assert note.ok is True and "/srv/media to 192.168.1.0/24" in note.detail
    assert sl.audit_nfs(tmp_path / "empty").ok is True  # no /etc/exports at all


def test_exports_parser_default_options() -> None:
    exports = sl.parse_exports("/srv/a -rw,no_root_squash host1 host2(ro)\n", "x")
    assert [(e.client, e.options) for e in exports] == [
        ("host1", ("rw", "no_root_squash")), ("host2", ("ro",))]


# --- avahi ---------------------------------------------------------------------------------------

SMB_SERVICE = """<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name replace-wildcards="yes">%h</name>
  <service><type>_smb._tcp</type><port>445</port></service>
  <service><type>_device-info._tcp</type><port>0</port><txt-record>model=Xserve</txt-record>
  </service>
</service-group>
"""


def test_avahi_published_services_are_listed(tmp_path: Path) -> None:
    write(tmp_path, "/etc/avahi/services/smb.service", SMB_SERVICE)
    write(tmp_path, "/etc/avahi/services/ssh.service",
          SMB_SERVICE.replace("_smb._tcp", "_ssh._tcp").replace("445", "22"))
    note = sl.audit_avahi(tmp_path, lambda name: name == "avahi-daemon")
    assert note.ok is False
    assert "_smb._tcp:445 (smb.service)" in note.detail
    assert "_ssh._tcp:22 (ssh.service)" in note.detail


def test_avahi_quiet_cases(tmp_path: Path) -> None:
    write(tmp_path, "/etc/avahi/services/smb.service", SMB_SERVICE)
    assert sl.audit_avahi(tmp_path, lambda name: False).ok is True  # daemon not running
    write(tmp_path, "/etc/avahi/avahi-daemon.conf", "[publish]\ndisable-publishing=yes\n")
    assert sl.audit_avahi(tmp_path, lambda name: True).ok is True
    assert sl.audit_avahi(tmp_path / "none", lambda name: True).ok is True  # runs, no files
    assert sl.audit_avahi(tmp_path / "none", lambda name: None).ok is None


def test_avahi_broken_file_is_not_silently_fine(tmp_path: Path) -> None:
    write(tmp_path, "/etc/avahi/services/bad.service", "<service-group><service>")
    note = sl.audit_avahi(tmp_path, lambda name: True)
    assert note.ok is None and "bad.service" in note.detail


# --- CUPS ----------------------------------------------------------------------------------------


def test_cups_shared_and_listening_everywhere(tmp_path: Path) -> None:
    write(tmp_path, "/etc/cups/cupsd.conf",
          "LogLevel warn\nPort 631\nListen /run/cups/cups.sock\nBrowsing On\n"
          "BrowseLocalProtocols dnssd\n<Location />\n  Order allow,deny\n  Allow @LOCAL\n"
          "</Location>\n")
    write(tmp_path, "/etc/cups/cups-browsed.conf", "BrowseRemoteProtocols dnssd cups\n")
    note = sl.audit_cups(tmp_path)
    assert note.ok is False
    assert "*:631" in note.detail and "Browsing On" in note.detail
    assert "UDP 631" in note.detail


def test_cups_debian_default_passes(tmp_path: Path) -> None:
    write(tmp_path, "/etc/cups/cupsd.conf",
          "LogLevel warn\nListen localhost:631\nListen [::1]:631\nListen /run/cups/cups.sock\n"
          "Browsing No\nBrowseLocalProtocols dnssd\n")
    write(tmp_path, "/etc/cups/cups-browsed.conf", "BrowseRemoteProtocols dnssd\n")
    assert sl.audit_cups(tmp_path).ok is True
    assert sl.audit_cups(tmp_path / "none").ok is True  # CUPS not installed


# --- rpcbind (real daemon in a namespace of this test) -------------------------------------------


class NetnsRunner:
    """Runs every command inside one network namespace, recording argv as asked."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.inner = SystemRunner()

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        if shutil.which(argv[0]) is None:
            return CommandResult(tuple(argv), 127, "", f"{argv[0]}: not installed")
        res = self.inner.run(["ip", "netns", "exec", self.ns, *argv], timeout)
        return CommandResult(tuple(argv), res.returncode, res.stdout, res.stderr)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    name = f"share-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


RPCBIND_FILES = [Path("/run/rpcbind.sock"), Path("/run/rpcbind.lock"), Path("/run/rpcbind")]


@pytest.mark.root
@pytest.mark.daemon
def test_rpcbind_running_is_reported(netns: str) -> None:
    if shutil.which("rpcbind") is None or shutil.which("rpcinfo") is None:
        pytest.skip("rpcbind not installed")
    if sl.process_running("rpcbind"):
        pytest.skip("an rpcbind already runs on this machine")
    # rpcbind's socket, lock and warm-start files are machine-wide (/run): remove the ones this
    # test creates. -f: foreground; no -w, so no system instance's warm-start state is read.
    leftovers = [p for p in RPCBIND_FILES if not p.exists()]
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "rpcbind", "-f"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        runner = NetnsRunner(netns)
        deadline = time.monotonic() + 10
        note = sl.audit_rpcbind(runner, sl.process_running)
        while "answers" not in note.detail and time.monotonic() < deadline:
            time.sleep(0.1)
            note = sl.audit_rpcbind(runner, sl.process_running)
        assert note.ok is False
        assert "rpcbind answers" in note.detail and "portmapper" in note.detail
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    # Stopped: nothing answers and no process runs.
    note = sl.audit_rpcbind(NetnsRunner(netns), sl.process_running)
    assert note.ok is True and "not running" in note.detail


def test_rpcbind_process_without_rpcinfo() -> None:
    note = sl.audit_rpcbind(ReplayRunner({}), lambda name: True)
    assert note.ok is False and "rpcinfo" in note.detail
    assert sl.audit_rpcbind(ReplayRunner({}), lambda name: None).ok is None


def test_rpcinfo_parser() -> None:
    text = ("   program vers proto   port  service\n    100000    4   tcp    111  portmapper\n"
            "    100005    3   udp  20048  mountd\n")
    progs = sl.parse_rpcinfo(text)
    assert [(p.program, p.port, p.service) for p in progs] == [
        (100000, 111, "portmapper"), (100005, 20048, "mountd")]


# --- together ------------------------------------------------------------------------------------


def test_all_linux_notes_and_other_platforms(tmp_path: Path) -> None:
    notes = sl.audit_sharing_linux(ReplayRunner({}), tmp_path, lambda name: False,
                                   platform="linux")
    ids = {n.check_id for n in notes}
    assert set(sl._LINUX_IDS) <= ids
    assert all(n.ok is True for n in notes), notes  # empty root, nothing installed
    other = sl.audit_sharing_linux(ReplayRunner({}), tmp_path, platform="win32")
    assert {n.check_id for n in other} == set(sl._LINUX_IDS)
    assert all(n.ok is None and "not supported on win32" in n.detail for n in other)
