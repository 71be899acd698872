"""Target specs: every form nmap users type, and clear errors for the rest."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.targets import MAX_HOSTS, TargetSpecError, expand_spec, expand_targets


def no_dns(name: str) -> list[str]:
    raise AssertionError(f"unexpected name lookup for {name!r}")


def addrs(specs: list[str], excludes: tuple[str, ...] = ()) -> list[str]:
    return [t.address for t in expand_targets(specs, excludes, resolver=no_dns)]


def test_single_addresses_and_spellings() -> None:
    assert addrs(["127.0.0.1"]) == ["127.0.0.1"]
    assert addrs(["::1"]) == ["::1"]
    assert addrs(["[::1]"]) == ["::1"]
    assert addrs(["0:0:0:0:0:0:0:1"]) == ["::1"]
    # IPv4-mapped IPv6 is the IPv4 host: one target, not two.
    assert addrs(["::ffff:127.0.0.9", "127.0.0.9"]) == ["127.0.0.9"]


def test_cidr_v4_and_v6() -> None:
    assert addrs(["127.0.3.0/30"]) == ["127.0.3.0", "127.0.3.1", "127.0.3.2", "127.0.3.3"]
    assert len(addrs(["127.0.3.0/26"])) == 64
    assert addrs(["::/127"]) == ["::", "::1"]


def test_octet_ranges_and_lists() -> None:
    assert addrs(["127.0.1.1-3"]) == ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
    assert addrs(["127.0.1-2.1"]) == ["127.0.1.1", "127.0.2.1"]
    assert addrs(["127.0.1.1,5,7-8"]) == ["127.0.1.1", "127.0.1.5", "127.0.1.7", "127.0.1.8"]
    assert addrs(["127.0.0.254-127.0.1.1"]) == [
        "127.0.0.254",
        "127.0.0.255",
        "127.0.1.0",
        "127.0.1.1",
    ]


def test_excludes_and_duplicates() -> None:
    assert addrs(["127.0.1.1-5", "127.0.1.3"], ("127.0.1.2,127.0.1.4",)) == [
        "127.0.1.1",
        "127.0.1.3",
        "127.0.1.5",
    ]


def test_names_are_resolved_once_and_kept() -> None:
    targets = expand_targets(["myhost"], resolver=lambda n: ["127.0.0.7", "::1"])
    assert [(t.address, t.hostname) for t in targets] == [("127.0.0.7", "myhost")]


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("127.0.1.300", "bad octet"),
        ("127.0.1.5-2", "bad octet range"),
        ("127.0.0.9-127.0.0.1", "bad address range"),
        ("10.0.0.0/8", "limit"),
        ("127.0.1.1.1", "not an address"),
        ("host name", "not an address"),
        ("-p", "not an address"),
        ("", "empty"),
        ("127.0.0.1/33", "bad network"),
    ],
)
def test_bad_specs_give_one_line_errors(spec: str, fragment: str) -> None:
    with pytest.raises(TargetSpecError) as info:
        expand_targets([spec], resolver=no_dns)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_everything_excluded_is_an_error() -> None:
    with pytest.raises(TargetSpecError, match="no targets left"):
        expand_targets(["127.0.0.1"], ["127.0.0.1"], resolver=no_dns)


def test_unresolvable_name_is_an_error() -> None:
    def failing(name: str) -> list[str]:
        raise TargetSpecError(f"cannot resolve host name {name!r}")

    with pytest.raises(TargetSpecError, match="cannot resolve"):
        expand_targets(["nonexistent.invalid"], resolver=failing)


@settings(deadline=None, max_examples=50)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=16, max_value=32))
def test_cidr_matches_ipaddress(base: int, prefix: int) -> None:
    net = ipaddress.ip_network((base, prefix), strict=False)
    got = [t.address for t in expand_spec(str(net), resolver=no_dns)]
    assert len(got) == net.num_addresses <= MAX_HOSTS
    assert got[0] == str(net.network_address) and got[-1] == str(net.broadcast_address)


@given(st.text(max_size=40))
def test_random_text_never_crashes(text: str) -> None:
    try:
        result = expand_spec(text, resolver=lambda n: ["127.0.0.1"])
    except TargetSpecError as exc:
        assert "\n" not in str(exc)
    else:
        assert result and all(ipaddress.ip_address(t.address) for t in result)
