"""Host hygiene: each check both ways, from files and sshd configs the tests write, real
commands where this machine has them (sshd -T, dpkg-query, timedatectl), and recorded macOS
outputs (tests/fixtures/audit/macos_hygiene.json). No network traffic at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mamori.audit.hygiene import (
    apt_config_values,
    check_auto_updates,
    check_empty_passwords,
    check_ssh_auth,
    check_time_sync,
    defaults_values,
    empty_password_accounts,
    hygiene_notes,
    sshd_settings,
)
from mamori.audit.runner import ReplayRunner, SystemRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audit"
MACOS: dict[str, dict[str, dict[str, object]]] = json.loads(
    (FIXTURES / "macos_hygiene.json").read_text(encoding="utf-8"))

DPKG_INSTALLED = {"dpkg-query -W -f=${Status} unattended-upgrades":
                  {"returncode": 0, "stdout": "install ok installed"}}


def mac(scenario: str) -> ReplayRunner:
    return ReplayRunner(MACOS[scenario])


# ---- empty passwords ---------------------------------------------------------------------------

SHADOW_OK = """root:$y$j9T$abc$def:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
locked:!:19700:0:99999:7:::
never:!!:19700::::::
disabled:!$6$salt$hash:19700:0:99999:7:::
"""


def test_empty_password_accounts_parser() -> None:
    assert empty_password_accounts(SHADOW_OK) == []
    bad = SHADOW_OK + "guest::19700:0:99999:7:::\nbroken\n\nkiosk::::::::\n"
    assert empty_password_accounts(bad) == ["guest", "kiosk"]


def test_check_empty_passwords_both_ways(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW_OK)
    note = check_empty_passwords(shadow, system="Linux")
    assert (note.check_id, note.ok, note.source) == ("os-empty-passwords", True, str(shadow))
    shadow.write_text(SHADOW_OK + "guest::19700:0:99999:7:::\n")
    note = check_empty_passwords(shadow, system="Linux")
    assert note.ok is False and note.detail.endswith(f"{shadow}: guest")


def test_check_empty_passwords_cannot_tell(tmp_path: Path) -> None:
    note = check_empty_passwords(tmp_path / "missing", system="Linux")
    assert note.ok is None and note.detail.startswith("undetermined")
    assert check_empty_passwords(system="Darwin").ok is None


@pytest.mark.root
def test_check_empty_passwords_real_shadow_as_root_and_as_nobody(tmp_path: Path) -> None:
    assert check_empty_passwords(system="Linux").ok in (True, False)  # root reads /etc/shadow
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]);"
            "from mamori.audit.hygiene import check_empty_passwords;"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534);"
            "n = check_empty_passwords(system='Linux'); print(n.ok, n.detail)")
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code, src], capture_output=True, text=True,
                         timeout=30, check=True, cwd="/").stdout
    assert out.startswith("None undetermined: /etc/shadow is not readable")


# ---- automatic updates -------------------------------------------------------------------------

def test_apt_config_values_syntax() -> None:
    text = """
    // a comment
    APT::Periodic::Update-Package-Lists "1";
    /* block
       APT::Periodic::Unattended-Upgrade "9"; */
    # hash comment APT::Periodic::Enable "0";
    APT { Periodic { Unattended-Upgrade "1"; AutocleanInterval 7; }; };
    Acquire::http::Proxy "http://127.0.0.1:3142/";
    Unattended-Upgrade::Origins-Pattern { "origin=Debian"; "label=Debian-Security"; };
    """
    values = apt_config_values(text)
    assert values == {
        "apt::periodic::update-package-lists": "1",
        "apt::periodic::unattended-upgrade": "1",
        "apt::periodic::autocleaninterval": "7",
        "acquire::http::proxy": "http://127.0.0.1:3142/",
    }


def write_apt(conf_dir: Path, files: dict[str, str]) -> Path:
    conf_dir.mkdir()
    for name, text in files.items():
        (conf_dir / name).write_text(text)
    return conf_dir


AUTO_ON = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


@pytest.mark.parametrize(("files", "ok", "needle"), [
    ({"20auto-upgrades": AUTO_ON}, True, '"1" in 20auto-upgrades'),
    ({"20auto-upgrades": AUTO_ON.replace('Upgrade "1"', 'Upgrade "0"')}, False, "are off"),
    ({"20auto-upgrades": AUTO_ON, "99local": 'APT::Periodic::Unattended-Upgrade "0";'}, False,
     "in 99local"),
    # Ignored by apt, so ignored here: a backup file and a name with an extension.
    ({"20auto-upgrades": AUTO_ON, "99local.dpkg-old": 'APT::Periodic::Unattended-Upgrade "0";',
      "99x.bak": 'APT::Periodic::Enable "0";'}, True, "20auto-upgrades"),
    ({"20auto-upgrades": AUTO_ON, "99off.conf": 'APT::Periodic::Enable "0";'}, False,
     "every periodic"),
    ({"20auto-upgrades": AUTO_ON.replace('Lists "1"', 'Lists "0"')}, False, "never see"),
    ({"50other": 'APT::Periodic::Download-Upgradeable-Packages "1";'}, False, "not set"),
])
def test_debian_auto_updates_from_config_files(tmp_path: Path, files: dict[str, str], ok: bool,
                                               needle: str) -> None:
    conf_dir = write_apt(tmp_path / "apt.conf.d", files)
    note = check_auto_updates(ReplayRunner(DPKG_INSTALLED), "Linux", conf_dir,
                              tmp_path / "apt.conf")
    assert note.check_id == "os-automatic-updates"
    assert note.ok is ok, note.detail
    assert needle in note.detail


def test_debian_main_apt_conf_overrides_parts(tmp_path: Path) -> None:
    conf_dir = write_apt(tmp_path / "apt.conf.d", {"20auto-upgrades": AUTO_ON})
    main = tmp_path / "apt.conf"
    main.write_text('APT { Periodic { Unattended-Upgrade "0"; }; };\n')
    assert check_auto_updates(ReplayRunner(DPKG_INSTALLED), "Linux", conf_dir, main).ok is False


def test_debian_package_missing_or_no_dpkg(tmp_path: Path) -> None:
    conf_dir = write_apt(tmp_path / "apt.conf.d", {"20auto-upgrades": AUTO_ON})
    removed = ReplayRunner({"dpkg-query -W -f=${Status} unattended-upgrades":
                            {"returncode": 0, "stdout": "deinstall ok config-files"}})
    assert check_auto_updates(removed, "Linux", conf_dir, tmp_path / "x").ok is False
    no_dpkg = check_auto_updates(ReplayRunner({}), "Linux", conf_dir, tmp_path / "x")
    assert no_dpkg.ok is None and "no dpkg" in no_dpkg.detail


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
def test_debian_auto_updates_real_dpkg(tmp_path: Path) -> None:
    """The real dpkg-query: the verdict follows whether the package really is installed."""
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "unattended-upgrades"],
                            capture_output=True, text=True, check=False).stdout
    conf_dir = write_apt(tmp_path / "apt.conf.d", {"20auto-upgrades": AUTO_ON})
    note = check_auto_updates(SystemRunner(), "Linux", conf_dir, tmp_path / "apt.conf")
    if "ok installed" in status:
        assert note.ok is True, note.detail
    else:
        assert note.ok is False and "not installed" in note.detail


def test_defaults_values_parser() -> None:
    values = defaults_values(MACOS["updates_security_off"]["defaults read /Library/Preferences/"
                                                          "com.apple.SoftwareUpdate"]["stdout"])
    assert values == {"AutomaticCheckEnabled": "1", "CriticalUpdateInstall": "0"}


@pytest.mark.parametrize(("scenario", "ok", "needle"), [
    ("updates_on", True, "CriticalUpdateInstall=1"),
    ("updates_defaults", True, "macOS default"),
    ("updates_security_off", False, "security responses"),
    ("updates_schedule_off", False, "automatic checking is off"),
    ("updates_no_root", None, "must be run as root"),
])
def test_macos_auto_updates_from_recordings(scenario: str, ok: bool | None, needle: str) -> None:
    note = check_auto_updates(mac(scenario), "Darwin")
    assert note.ok is ok, note.detail
    assert needle in note.detail


# ---- SSH ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    key = tmp_path_factory.mktemp("sshd") / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                   timeout=30)
    return key


def sshd_config(tmp_path: Path, host_key: Path, body: str) -> Path:
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {host_key}\n{body}")
    return cfg


KEYS_ONLY = ("PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM yes\n"
             "PermitRootLogin prohibit-password\n")


@pytest.mark.skipif(shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin:/bin") is None,
                    reason="needs openssh-server")
@pytest.mark.parametrize(("body", "ok", "needle"), [
    (KEYS_ONLY, True, "keys only: passwordauthentication no"),
    (KEYS_ONLY.replace("PasswordAuthentication no", "PasswordAuthentication yes"), False,
     "password logins allowed"),
    (KEYS_ONLY.replace("KbdInteractiveAuthentication no", "KbdInteractiveAuthentication yes"),
     False, "keyboard-interactive"),
    # Keyboard-interactive without PAM does not ask for the account password.
    (KEYS_ONLY.replace("KbdInteractiveAuthentication no", "KbdInteractiveAuthentication yes")
     .replace("UsePAM yes", "UsePAM no"), True, "keys only"),
    (KEYS_ONLY.replace("PermitRootLogin prohibit-password", "PermitRootLogin yes"), False,
     "root may log in"),
    (KEYS_ONLY + "PermitEmptyPasswords yes\n", False, "empty passwords"),
    (KEYS_ONLY + "NoSuchKeyword yes\n", None, "undetermined"),
])
def test_ssh_auth_real_sshd(tmp_path: Path, host_key: Path, body: str, ok: bool | None,
                            needle: str) -> None:
    cfg = sshd_config(tmp_path, host_key, body)
    note = check_ssh_auth(SystemRunner(), cfg)
    assert note.check_id == "ssh-password-login"
    assert note.source == f"sshd -T -f {cfg}"
    assert note.ok is ok, note.detail
    assert needle in note.detail


def test_ssh_auth_not_installed_and_parser() -> None:
    assert check_ssh_auth(ReplayRunner({})).ok is True
    assert sshd_settings("port 22\nPasswordAuthentication yes\nport 2222\n\n") == {
        "port": "22", "passwordauthentication": "yes"}
    old = ReplayRunner({"sshd -T": {"stdout": "passwordauthentication no\nusepam yes\n"
                                              "challengeresponseauthentication yes\n"}})
    note = check_ssh_auth(old)
    assert note.ok is False and "challengeresponseauthentication" in note.detail
    odd = check_ssh_auth(ReplayRunner({"sshd -T": {"stdout": "port 22\n"}}))
    assert odd.ok is None


# ---- time sync ---------------------------------------------------------------------------------

TIMEDATECTL = "Timezone=Asia/Tokyo\nLocalRTC=no\nCanNTP=yes\nNTP={ntp}\nNTPSynchronized={sync}\n"
CHRONY = ("Reference ID    : 7F000001 (127.0.0.1)\nStratum         : 3\n"
          "System time     : 0.000001 seconds fast of NTP time\nLeap status     : {leap}\n")
NO_SYSTEMD = {"returncode": 1, "stderr": "System has not been booted with systemd as init "
              "system (PID 1). Can't operate.\n"}


@pytest.mark.parametrize(("recordings", "ok", "needle"), [
    ({"timedatectl show": {"stdout": TIMEDATECTL.format(ntp="yes", sync="yes")}}, True,
     "NTPSynchronized=yes"),
    ({"timedatectl show": {"stdout": TIMEDATECTL.format(ntp="no", sync="no")}}, False,
     "NTP=no"),
    ({"timedatectl show": {"stdout": TIMEDATECTL.format(ntp="yes", sync="no")}}, False,
     "not synchronized"),
    ({"timedatectl show": NO_SYSTEMD,
      "chronyc -n tracking": {"stdout": CHRONY.format(leap="Normal")}}, True, "Normal"),
    ({"timedatectl show": NO_SYSTEMD,
      "chronyc -n tracking": {"stdout": CHRONY.format(leap="Not synchronised")}}, False,
     "Not synchronised"),
    ({"timedatectl show": NO_SYSTEMD,
      "chronyc -n tracking": {"returncode": 1, "stdout": "506 Cannot talk to daemon\n"}}, None,
     "506 Cannot talk to daemon"),
    ({}, None, "not recorded"),
])
def test_linux_time_sync(recordings: dict[str, dict[str, object]], ok: bool | None,
                         needle: str) -> None:
    note = check_time_sync(ReplayRunner(recordings), "Linux")
    assert note.check_id == "os-time-sync"
    assert note.ok is ok, note.detail
    assert needle in note.detail


def test_linux_time_sync_real_commands() -> None:
    """Whatever this machine runs: a service that answers decides; none answering is None."""
    answered = any(
        shutil.which(cmd) and subprocess.run([cmd, *args], capture_output=True, check=False,
                                             timeout=20).returncode == 0
        for cmd, args in (("timedatectl", ["show"]), ("chronyc", ["-n", "tracking"])))
    note = check_time_sync(SystemRunner(), "Linux")
    if answered:
        assert note.ok is not None, note.detail
    else:
        assert note.ok is None
        assert note.detail.startswith("undetermined: no time service answered (timedatectl:")


@pytest.mark.parametrize(("scenario", "ok"), [("time_on", True), ("time_off", False),
                                               ("time_no_root", None)])
def test_macos_time_sync_from_recordings(scenario: str, ok: bool | None) -> None:
    assert check_time_sync(mac(scenario), "Darwin").ok is ok


def test_other_platforms_say_not_supported() -> None:
    notes = [check_auto_updates(ReplayRunner({}), "Windows"),
             check_time_sync(ReplayRunner({}), "Windows"), check_empty_passwords(system="Windows")]
    assert [n.ok for n in notes] == [None, None, None]


def test_hygiene_notes_real_machine() -> None:
    notes = hygiene_notes(SystemRunner())
    assert [n.check_id for n in notes] == ["os-empty-passwords", "os-automatic-updates",
                                           "ssh-password-login", "os-time-sync"]
    for note in notes:
        assert note.detail and note.source
        if note.ok is None:  # errors are data: the reason is said
            assert "undetermined" in note.detail or "not " in note.detail
