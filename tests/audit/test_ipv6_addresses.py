"""This host's IPv6 addresses (audit/ipv6.py): the /proc/net/if_inet6 parser, and the real read
inside a namespace the test gives a global and a ULA address."""

from __future__ import annotations

import subprocess
import sys

from mamori.audit.ipv6 import address_kind, parse_if_inet6
from netns import veth_pair

PROC = """\
00000000000000000000000000000001 01 80 10 80       lo
2a0e8b00007700000000000000000010 02 40 00 80     eth0
fd000000000000000000000000000010 02 40 00 80     eth0
fe800000000000000000000000000010 02 40 20 80     eth0
2a0e8b00007700000000000000000099 02 40 00 c0     eth0
2a0e8b000077000000000000000000aa 02 40 00 88     eth0
20010db8000000000000000000000001 02 40 00 01     eth0
garbage line
zzzz8b00007700000000000000000010 02 40 00 80     eth0
"""


def test_global_and_ula_addresses_are_kept_the_rest_left_out() -> None:
    assert parse_if_inet6(PROC) == (
        ("2a0e:8b00:77::10", "global"),  # tentative (0x40), failed DAD (0x08) left out
        ("fd00::10", "ula"),
        ("2001:db8::1", "global"),  # a temporary (privacy) address still counts
    )


def test_address_kinds() -> None:
    assert address_kind("fe80::1%eth0") is None and address_kind("::1") is None
    assert address_kind("::ffff:192.0.2.1") is None and address_kind("x") is None
    assert address_kind("fc00::1") == "ula" and address_kind("2600::1") == "global"


def test_a_huge_file_is_read_up_to_its_cap() -> None:
    line = "2a0e8b00007700000000000000000010 02 40 00 80 eth0\n"
    assert len(parse_if_inet6(line * 100_000)) == 1


def test_the_real_read_in_a_namespace_with_global_and_ula_addresses() -> None:
    procs: list[subprocess.Popen[str]] = []
    with veth_pair("mamori-v6a", "mamori-v6b", ("v6a0", "v6b0"),
                   (["2a0e:8b00:77::10/64", "fd00:77::10/64"], ["2a0e:8b00:77::1/64"]), procs):
        out = subprocess.run(
            ["ip", "netns", "exec", "mamori-v6a", sys.executable, "-c",
             "from mamori.audit.ipv6 import host_ipv6_addresses as h; print(h())"],
            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "('2a0e:8b00:77::10', 'global')" in out and "('fd00:77::10', 'ula')" in out
    assert "fe80" not in out and "2a0e:8b00:77::1'" not in out
