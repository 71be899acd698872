"""The inside-check catalog (audit/catalog/*.yaml) and the AuditNote -> CheckResult bridge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mamori.audit.notes import (
    CATALOG_DIR,
    NoteCatalogError,
    NoteSpec,
    default_notes,
    load_notes,
    note_result,
)
from mamori.model import CheckStatus, Confidence, Layer, Proto, Severity
from mamori.model.audit import AuditNote

# Every id an adapter reports. A missing file would be a KeyError at run time.
EXPECTED_IDS = {
    "sharing-smb-guest", "sharing-smb1", "sharing-nfs-exports", "sharing-avahi-services",
    "sharing-rpcbind", "sharing-cups-browsing", "ssh-password-login", "ssh-root-login-permitted",
    "macos-file-sharing", "macos-screen-sharing", "macos-remote-login",
    "macos-remote-management", "macos-airplay-receiver", "macos-bonjour-advertising",
    "macos-app-firewall", "macos-stealth-mode", "macos-pf",
    "os-empty-passwords", "os-automatic-updates", "os-time-sync",
    "firewall-inactive", "exposed-listener",
}

REFERENCE = re.compile(r"^(https://\S+|CWE-\d+|CVE-\d{4}-\d{4,}|RFC \d+)$")
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _texts(spec: NoteSpec):
    yield "title", spec.title
    yield "why", spec.why
    yield "remediation.linux", spec.remediation.linux
    yield "remediation.macos", spec.remediation.macos
    yield "remediation.router", spec.remediation.router


def test_every_note_file_loads_and_every_id_is_there() -> None:
    notes = load_notes()  # raises NoteCatalogError on any schema error
    assert len(notes) == len(list(CATALOG_DIR.glob("*.yaml")))
    assert EXPECTED_IDS <= set(notes), EXPECTED_IDS - set(notes)
    for note_id in notes:
        assert (CATALOG_DIR / f"{note_id}.yaml").exists()


ALL_IDS = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
AUDIT_SRC = Path(note_result.__code__.co_filename).resolve().parent


def test_every_id_an_adapter_writes_has_a_catalog_file() -> None:
    """Literal ids in AuditNote(...) calls anywhere in mamori/audit/ must all be in the catalog."""
    literal = re.compile(r'AuditNote\(\s*(?:check_id\s*=\s*)?"([a-z0-9][a-z0-9-]+)"')
    used = {m for path in AUDIT_SRC.rglob("*.py")
            for m in literal.findall(path.read_text(encoding="utf-8"))}
    assert used <= set(load_notes()), used - set(load_notes())


@pytest.mark.parametrize("note_id", ALL_IDS)
def test_every_text_is_there_in_both_languages(note_id: str) -> None:
    spec = load_notes()[note_id]
    for where, text in _texts(spec):
        assert text.en.strip(), f"{note_id}: {where}.en is empty"
        assert text.ja.strip(), f"{note_id}: {where}.ja is empty"
        # The Japanese side is really Japanese, not the English copied over.
        assert JAPANESE.search(text.ja), f"{note_id}: {where}.ja has no Japanese"
        assert text.en != text.ja, f"{note_id}: {where} is the same in both languages"


@pytest.mark.parametrize("note_id", ALL_IDS)
def test_references_look_real(note_id: str) -> None:
    spec = load_notes()[note_id]
    assert spec.references
    for ref in spec.references:
        assert REFERENCE.match(ref), f"{note_id}: reference {ref!r}"


def test_severities_are_an_experts_not_all_alike() -> None:
    notes = load_notes()
    assert notes["os-empty-passwords"].severity is Severity.HIGH
    assert notes["macos-screen-sharing"].severity is Severity.MEDIUM
    assert notes["macos-remote-management"].severity is Severity.MEDIUM
    assert notes["macos-bonjour-advertising"].severity is Severity.INFO
    assert len({n.severity for n in notes.values()}) >= 4
    assert {n.layer for n in notes.values()} == set(Layer)


@pytest.mark.parametrize("mutation,fragment", [
    (lambda t: t.replace("severity: high", "severity: severe"), "validation error"),
    (lambda t: t.replace("id: os-empty-passwords", "id: something-else"), "differs"),
    (lambda t: t + "\nunexpected_field: 1\n", "validation error"),
    (lambda t: t.replace("  ja: パスワードが空のアカウントがある\n", ""), "validation error"),
    (lambda t: t.replace("layer: os", "layer: kernel"), "validation error"),
    (lambda t: t.replace("  - CWE-521\n", "").replace("  - CWE-258\n", "")
     .split("references:")[0] + "references: []\n", "validation error"),
    (lambda t: "id: [unclosed\n" + t, "os-empty-passwords.yaml"),
])
def test_bad_note_files_are_rejected(tmp_path: Path, mutation, fragment: str) -> None:
    text = (CATALOG_DIR / "os-empty-passwords.yaml").read_text(encoding="utf-8")
    (tmp_path / "os-empty-passwords.yaml").write_text(mutation(text), encoding="utf-8")
    with pytest.raises(NoteCatalogError, match=fragment) as caught:
        load_notes(tmp_path)
    assert str(caught.value).startswith("os-empty-passwords.yaml: ")  # names the file


def _note(ok: bool | None) -> AuditNote:
    return AuditNote(check_id="os-empty-passwords", ok=ok,
                     detail="/etc/shadow: 'backup' has an empty password field",
                     source="/etc/shadow")


def test_a_problem_becomes_a_finding_with_the_catalog_text() -> None:
    spec = default_notes()["os-empty-passwords"]
    result = note_result(_note(False))
    assert result.status is CheckStatus.FINDING
    assert result.confidence is Confidence.CONFIRMED
    assert result.check_id == "os-empty-passwords"
    assert result.severity is spec.severity and result.layer is spec.layer
    assert result.title == spec.title.en
    assert result.summary == "/etc/shadow: 'backup' has an empty password field"
    assert result.evidence is not None
    assert result.evidence.test == "read /etc/shadow"
    assert result.evidence.reply == "/etc/shadow: 'backup' has an empty password field"
    assert dict(result.remediation) == {"linux": spec.remediation.linux.en,
                                        "macos": spec.remediation.macos.en,
                                        "router": spec.remediation.router.en}
    assert result.references == tuple(spec.references)
    assert (result.address, result.port, result.proto) == ("localhost", 0, Proto.TCP)


def test_fine_becomes_passed() -> None:
    result = note_result(_note(True))
    assert result.status is CheckStatus.PASSED
    assert result.confidence is None
    assert result.summary.startswith("passed: ")


def test_could_not_tell_becomes_not_tested_never_passed() -> None:
    note = AuditNote(check_id="os-empty-passwords", ok=None,
                     detail="/etc/shadow is readable only by root", source="/etc/shadow")
    result = note_result(note)
    assert result.status is CheckStatus.NOT_TESTED
    assert result.confidence is None
    assert result.summary == "not tested: /etc/shadow is readable only by root"


def test_the_endpoint_is_passed_through() -> None:
    note = AuditNote(check_id="exposed-listener", ok=False,
                     detail="redis-server listens on 0.0.0.0:6379, firewall: allowed",
                     source="ss -ltnup")
    result = note_result(note, host="192.0.2.7", port=6379, proto=Proto.TCP)
    assert result.key == ("192.0.2.7", "tcp", 6379, "exposed-listener")
    assert result.severity is default_notes()["exposed-listener"].severity


@pytest.mark.parametrize("note_id", ALL_IDS)
def test_every_id_turns_into_a_result(note_id: str) -> None:
    for ok, status in ((False, CheckStatus.FINDING), (True, CheckStatus.PASSED),
                       (None, CheckStatus.NOT_TESTED)):
        result = note_result(AuditNote(check_id=note_id, ok=ok, detail="x", source="test"))
        assert result.status is status and result.check_id == note_id


def test_an_unknown_id_is_a_bug() -> None:
    with pytest.raises(KeyError):
        note_result(AuditNote(check_id="no-such-check", ok=False, detail="x", source="test"))
