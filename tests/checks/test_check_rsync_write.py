"""rsync-module-writable proves the upload (issue 14): a real rsync --daemon (127.0.147.0/24)
with a writable module holding files, a read-only twin, a write-only and a password module;
hostile fake daemons (garbage, stall, flood after the checksum seed). Plus the protocol-29
upload bytes and MD4 against known values.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemons as dm
import fixtures_exposure as fb
from checks_helpers import assert_finding, assert_passed
from mamori.checks.catalog import CATALOG_DIR, load_check
from mamori.checks.engine import run_checks
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    PortState,
    Proto,
    Reason,
    Service,
)
from mamori.protocols import rsync
from mamori.protocols.md4 import md4

WRITABLE, READ_ONLY, MIXED = ("127.0.147.1", 18741), ("127.0.147.2", 18742), ("127.0.147.3", 18743)
NO_DELETE = ("127.0.147.5", 18745)
FAKE = ("127.0.147.9", 18749)
NAME = re.compile(r"^drop/\.mamori-write-test-[0-9a-f]{12} \((\d+) bytes\)$")


def check(where: tuple[str, int]) -> CheckResult:
    spec = load_check(CATALOG_DIR / "rsync-module-writable.yaml")
    ep = Endpoint(where[0], where[1], Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
    results = asyncio.run(run_checks([spec], ep, Service(name="rsync"), budget=60))
    assert len(results) == 1, results
    return results[0]


def tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dm.Lab]:
    base = tmp_path_factory.mktemp("rsyncw")
    secrets_file = base / "rsyncd.secrets"
    secrets_file.write_text("bob:not-a-real-password\n")
    secrets_file.chmod(0o600)
    extra = (f"[locked]\n  path = {base}/m3/pub\n  read only = no\n  auth users = bob\n"
             f"  secrets file = {secrets_file}\n"
             f"[inbox]\n  path = {base}/m3/drop\n  read only = no\n  write only = yes\n"
             "  uid = root\n  gid = root\n")
    starters = {
        "writable": lambda: fb.start_rsyncd_drop(base / "m1", *WRITABLE, writable=True),
        "read-only": lambda: fb.start_rsyncd_drop(base / "m2", *READ_ONLY, writable=False),
        "mixed": lambda: fb.start_rsyncd_drop(base / "m3", *MIXED, writable=False, extra=extra),
        "no-delete": lambda: fb.start_rsyncd_drop(
            base / "m4", *NO_DELETE, writable=False,
            extra=f"[keep]\n  path = {base}/m4/pub\n  read only = no\n"
                  "  refuse options = delete*\n  uid = root\n  gid = root\n"),
    }
    with dm.running_lab(starters) as running:
        yield running


def test_writable_module_upload_is_confirmed_and_the_module_is_left_exactly_as_before(
    lab: dm.Lab,
) -> None:
    lab.need("writable")
    drop = lab["writable"].workdir / "drop"
    before = tree(drop)
    result = check(WRITABLE)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED, result.summary
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["writable_module"] == "drop", facts
    m = NAME.match(facts["uploaded"])
    assert m, facts["uploaded"]
    assert facts["listed"] == f"seen, {m.group(1)} bytes"
    assert facts["cleanup"] == "deleted it (--delete-missing-args), listed again: gone"
    assert "pub: ERROR: module is read only" in facts["refused"]
    assert "listed it: seen" in (result.evidence.reply or "")
    assert tree(drop) == before and len(before) == 4  # 3 files and the sub directory


def test_read_only_modules_pass_and_nothing_is_written(lab: dm.Lab) -> None:
    lab.need("read-only")
    drop = lab["read-only"].workdir / "drop"
    before = tree(drop)
    result = check(READ_ONLY)
    assert_passed(result)
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert "drop: ERROR: module is read only" in facts["refused"]
    assert "writable_module" not in facts
    assert tree(drop) == before


def test_password_module_is_not_written_and_write_only_module_is_likely(lab: dm.Lab) -> None:
    """"locked" wants a password (never guessed); "inbox" takes uploads but cannot be
    listed (write only), so the upload is not seen: likely, and the file is deleted."""
    lab.need("mixed")
    inbox = lab["mixed"].workdir / "drop"
    before = tree(inbox)
    result = check(MIXED)
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY, result.summary
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["auth_required"] == "locked"
    assert facts["writable_module"] == "inbox", facts
    assert facts["listed"].startswith("listing failed"), facts["listed"]
    assert "check that inbox/.mamori-write-test-" in facts["cleanup"], facts["cleanup"]
    assert tree(inbox) == before


def test_a_delete_the_daemon_refuses_is_said_loudly_with_the_path(lab: dm.Lab) -> None:
    lab.need("no-delete")
    keep = lab["no-delete"].workdir / "pub"
    result = check(NO_DELETE)
    assert_finding(result)
    assert result.confidence is Confidence.CONFIRMED, result.summary
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    left = [p.name for p in keep.iterdir()]
    assert len(left) == 1 and left[0].startswith(".mamori-write-test-"), left
    assert facts["cleanup"].startswith("DELETE FAILED"), facts["cleanup"]
    assert f"remove keep/{left[0]} from the module yourself" in facts["cleanup"]
    assert f"keep/{left[0]}" in result.summary
    (keep / left[0]).unlink()


# --- hostile daemons ------------------------------------------------------------------------


def _fake(after_args: bytes, *, stall: bool = False, flood: bool = False,
          huge_list: bool = False, greeting: bytes = b"@RSYNCD: 31.0 md4\n") -> CheckResult:
    from fake_servers import tcp_server

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await reader.readline()
        module = (await reader.readline()).strip()
        if module == b"#list":
            writer.write(b"drop\tfiles\n@RSYNCD: EXIT\n")
            await writer.drain()
            return
        writer.write(b"@RSYNCD: OK\n")
        args = []
        while line := (await reader.readline()).strip():
            args.append(line)
        if huge_list and b"--sender" in args:  # a listing: an endless file list
            writer.write(b"\x01\x02\x03\x04")
            for i in range(100000):
                entry = b"\x18\x08" + f"f{i:07d}".encode() + struct.pack("<iii", 1, 1, 0o100644)
                writer.write(struct.pack("<I", (7 << 24) | len(entry)) + entry)
                await writer.drain()
            return
        writer.write(b"\x01\x02\x03\x04" + after_args)
        await writer.drain()
        if stall:
            await asyncio.sleep(60)
        while flood:
            writer.write(struct.pack("<I", (7 << 24) | 0xFFFF) + b"\x00" * 0xFFFF)
            await writer.drain()

    async def go() -> CheckResult:
        async with tcp_server(*FAKE, handler):
            spec = load_check(CATALOG_DIR / "rsync-module-writable.yaml")
            ep = Endpoint(*FAKE, Proto.TCP, PortState.OPEN, Reason.SYN_ACK)
            (result,) = await run_checks([spec], ep, Service(name="rsync"), budget=30)
            return result

    return asyncio.run(go())


def test_a_daemon_that_floods_the_listing_gives_no_confirmed_finding() -> None:
    """It asks for the file and ends every phase like rsync, then answers each listing with
    an endless file list: the read stops at the cap, the file is not seen, the finding is
    only likely and the clean-up is not claimed."""
    request = struct.pack("<iH", 0, 0x8000) + struct.pack("<iiii", 0, 0, 0, 0)
    frame = request + struct.pack("<i", -1) * 4
    result = _fake(struct.pack("<I", (7 << 24) | len(frame)) + frame, stall=True, huge_list=True)
    assert_finding(result)
    assert result.confidence is Confidence.LIKELY, result.summary
    assert result.evidence is not None
    facts = dict(result.evidence.facts)
    assert facts["listed"] == "not in the part of the list that arrived", facts
    assert facts["cleanup"].startswith("DELETE NOT CONFIRMED"), facts["cleanup"]


@pytest.mark.parametrize(("case", "after_args", "stall", "flood"), [
    ("garbage", b"\xff\xff\xff\x07" + b"\xfe" * 64, False, False),
    ("stall", b"", True, False),
    ("flood", b"", False, True),
])
def test_hostile_daemon_is_not_tested_with_a_reason(
    case: str, after_args: bytes, stall: bool, flood: bool
) -> None:
    result = _fake(after_args, stall=stall, flood=flood)
    assert result.status is CheckStatus.NOT_TESTED, (case, result.summary)
    assert "drop" in result.summary, result.summary


def test_a_daemon_older_than_protocol_29_is_not_tested() -> None:
    result = _fake(b"", stall=True, greeting=b"@RSYNCD: 28.0\n")
    assert result.status is CheckStatus.NOT_TESTED, result.summary
    assert "protocol 28, older than 29" in result.summary, result.summary


# --- the bytes ------------------------------------------------------------------------------


def test_md4_known_values() -> None:
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert md4(b"1234567890" * 8).hex() == "e33b4ddc9c38f2199c3e7b164fcc0536"


def test_upload_bytes_follow_protocol_29() -> None:
    flist = rsync.build_file_list(".t", 3, 1000, 0o100644)
    assert flist == (b"\x18\x02.t" + struct.pack("<iii", 3, 1000, 0o100644) + b"\x00"
                     + b"\x00" * 4)
    assert rsync.build_receiver_args("drop", delete_missing=True) == (
        b"--server\n--delete-missing-args\n.\ndrop/\n\n")
    req = rsync.parse_request(struct.pack("<i", 0) + struct.pack("<H", 0xA000)
                              + struct.pack("<iiii", 0, 700, 2, 0) + b"rest")
    assert req is not None and req.ndx == 0 and req.size == 22
    data = rsync.build_file_data(req, b"abc", 0x01020304)
    assert data == (req.echo + struct.pack("<i", 3) + b"abc" + struct.pack("<i", 0)
                    + md4(b"\x04\x03\x02\x01abc"))
    assert rsync.parse_request(b"\x00\x00\x00\x00\x00") is None
    with pytest.raises(ValueError):
        rsync.parse_request(struct.pack("<iHiiii", 0, 0, 1 << 20, 700, 16, 0))
    with pytest.raises(ValueError):
        rsync.build_file_list("a/b", 1, 1, 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_request_on_random_bytes_returns_or_raises_value_error_only(data: bytes) -> None:
    try:
        req = rsync.parse_request(data)
    except ValueError:
        return
    assert req is None or (req.size <= len(data) and req.echo == data[:len(req.echo)])
