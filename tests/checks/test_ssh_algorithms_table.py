"""The SSH algorithm table's own rules (as ssh-audit's test_ssh2_kexdb does for its kexdb)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter

import pytest

from mamori.checks.data.ssh_algorithms import TABLE, Kind, Level, Why, lookup

# OpenSSH 9.x server defaults (sshd_config(5)): a hardened-by-default server must pass, so
# nothing here may be WEAK.
OPENSSH_DEFAULTS = {
    Kind.KEX: {"sntrup761x25519-sha512@openssh.com", "sntrup761x25519-sha512",
               "mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
               "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
               "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
               "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256",
               "kex-strict-s-v00@openssh.com"},
    Kind.HOST_KEY: {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                    "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256"},
    Kind.CIPHER: {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                  "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"},
    Kind.MAC: {"umac-64-etm@openssh.com", "umac-128-etm@openssh.com",
               "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
               "hmac-sha1-etm@openssh.com", "umac-64@openssh.com", "umac-128@openssh.com",
               "hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"},
}


def test_no_algorithm_listed_twice() -> None:
    counts = Counter((a.kind, a.name) for a in TABLE)
    assert [k for k, n in counts.items() if n > 1] == []


def test_every_entry_has_named_reasons_from_the_fixed_set() -> None:
    for algo in TABLE:
        assert algo.why, algo.name
        assert all(isinstance(w, Why) for w in algo.why), algo.name
        assert len(set(algo.why)) == len(algo.why), f"{algo.name}: a reason repeated"
        assert isinstance(algo.kind, Kind) and isinstance(algo.level, Level)


def test_names_are_valid_ssh_algorithm_names() -> None:
    # RFC 4251 6: printable US-ASCII, no comma or space, at most 64 characters.
    for algo in TABLE:
        assert re.fullmatch(r"[\x21-\x2b\x2d-\x7e]{1,64}", algo.name), algo.name


def test_no_default_algorithm_is_weak() -> None:
    for algo in TABLE:
        if algo.level is Level.WEAK:
            assert algo.name not in OPENSSH_DEFAULTS[algo.kind], algo.name


def test_reasons_fit_the_kind() -> None:
    only = {
        Why.CBC_MODE: {Kind.CIPHER}, Why.BLOCK_64: {Kind.CIPHER}, Why.RC4: {Kind.CIPHER},
        Why.NO_ENCRYPTION: {Kind.CIPHER}, Why.NO_INTEGRITY: {Kind.MAC},
        Why.SHORT_TAG: {Kind.MAC}, Why.SMALL_DH_GROUP: {Kind.KEX}, Why.DSA: {Kind.HOST_KEY},
    }
    for algo in TABLE:
        for why in algo.why:
            assert algo.kind in only.get(why, set(Kind)), f"{algo.name}: {why}"


def test_every_reason_is_used() -> None:
    used = {w for a in TABLE for w in a.why}
    assert used == set(Why), set(Why) - used


def test_every_kind_has_weak_entries() -> None:
    assert {a.kind for a in TABLE if a.level is Level.WEAK} == set(Kind)


def test_lookup() -> None:
    entry = lookup(Kind.CIPHER, "3des-cbc")
    assert entry is not None and Why.BLOCK_64 in entry.why
    assert lookup(Kind.CIPHER, "aes128-ctr") is None
    assert lookup(Kind.MAC, "none") is not None and lookup(Kind.CIPHER, "none") is not None


@pytest.mark.skipif(shutil.which("ssh") is None, reason="ssh client not installed")
def test_weak_names_spelled_as_openssh_spells_them() -> None:
    # Every weak algorithm this OpenSSH still knows must be spelled exactly as it spells it.
    query = {Kind.KEX: "kex", Kind.CIPHER: "cipher", Kind.MAC: "mac", Kind.HOST_KEY: "key"}
    known = {kind: set(subprocess.run(["ssh", "-Q", q], capture_output=True, text=True)
                       .stdout.split()) for kind, q in query.items()}
    for name in ("diffie-hellman-group1-sha1", "3des-cbc", "hmac-md5", "ssh-dss"):
        kind = next(a.kind for a in TABLE if a.name == name)
        assert name in known[kind], name
