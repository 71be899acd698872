"""mamori serve, the pure parts: address normalisation and scope policy, trusted proxies,
CSRF and session tokens, password hashes, rate limits, profiles, settings, Host parsing."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from mamori.serve import ratelimit
from mamori.serve.middleware import host_of
from mamori.serve.passwords import hash_password, is_password_hash, verify_password
from mamori.serve.peer import ProxyHeaderError, client_address
from mamori.serve.profiles import ProfileError, choose, estimate_seconds
from mamori.serve.scope import (
    AddressError,
    ScopePolicy,
    judge,
    judge_text,
    normalise,
    parse_networks,
    rate_keys,
)
from mamori.serve.settings import ServeSettingsError, load_serve_settings
from mamori.serve.tokens import Signer

KEY = b"k" * 32


@pytest.fixture
def no_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text("")
    return path


# -- normalisation and scope ------------------------------------------------------------------

@pytest.mark.parametrize(("spelling", "normal"), [
    ("203.0.113.9", "203.0.113.9"),
    ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped IPv6 is the IPv4 peer
    ("[2001:4860::1]", "2001:4860::1"),
    ("fe80::1%eth0", "fe80::1"),  # zone ids name our interface
    ("2001:4860:0:0::0001", "2001:4860::1"),
    (" 8.8.8.8 ", "8.8.8.8"),
])
def test_spellings_are_normalised(spelling: str, normal: str) -> None:
    assert str(normalise(spelling)) == normal


@pytest.mark.parametrize("bad", ["", "localhost", "1.2.3", "1.2.3.4.5", "::g", "[::1",
                                 "1.2.3.4/32"])
def test_non_addresses_are_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        normalise(bad)
    assert judge_text(bad, ScopePolicy()).allowed is False


@pytest.mark.parametrize(("address", "category"), [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("192.0.2.1", "reserved"), ("198.18.0.1", "reserved"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"), ("2001:db8::1", "reserved"), ("::1.2.3.4", "reserved"),
    ("2001:0::1", "reserved"),  # Teredo
    ("4000::1", "reserved"),  # outside 2000::/3
])
def test_default_policy_refuses_every_non_public_category(address: str, category: str) -> None:
    verdict = judge_text(address, ScopePolicy())
    assert verdict.category == category
    assert verdict.allowed is False
    assert "cannot be checked" in verdict.reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "100.63.0.1",
                                     "100.128.0.1", "172.32.0.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    verdict = judge_text(address, ScopePolicy())
    assert (verdict.allowed, verdict.category) == (True, "global")


def test_operator_switches_open_only_their_category() -> None:
    policy = ScopePolicy(allow_loopback=True)
    assert judge_text("127.0.0.1", policy).allowed
    assert not judge_text("10.0.0.1", policy).allowed
    policy = ScopePolicy(allow_private=True, allow_cgnat=True, allow_link_local=True)
    assert judge_text("10.0.0.1", policy).allowed
    assert judge_text("100.64.1.1", policy).allowed
    assert judge_text("fe80::5", policy).allowed
    assert not judge_text("127.0.0.1", policy).allowed
    # Metadata is link-local, but never allowed, whatever the switches.
    assert not judge_text("169.254.169.254", policy).allowed


def test_allow_and_deny_networks() -> None:
    policy = ScopePolicy(allow_networks=parse_networks(["127.0.151.0/25"]),
                         deny_networks=parse_networks(["8.8.8.0/24"]))
    assert judge_text("127.0.151.5", policy).allowed
    assert not judge_text("127.0.151.200", policy).allowed  # outside the allowed /25
    assert not judge_text("8.8.8.8", policy).allowed
    assert judge_text("8.8.4.4", policy).allowed
    # An allow-list cannot open never-allowed space.
    policy = ScopePolicy(allow_networks=parse_networks(["169.254.0.0/16", "224.0.0.0/4"]))
    assert not judge_text("169.254.169.254", policy).allowed
    assert not judge_text("224.0.0.5", policy).allowed
    assert judge_text("169.254.10.10", policy).allowed


@pytest.mark.parametrize(("address", "inner"), [
    ("2002:7f00:1::1", "127.0.0.1"),  # 6to4 of loopback
    ("2002:0a00:0001::1", "10.0.0.1"),  # 6to4 of a private address
    ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4 of the metadata address
    ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64 of loopback
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
])
def test_6to4_and_nat64_are_judged_by_the_embedded_ipv4(address: str, inner: str) -> None:
    verdict = judge(ipaddress.ip_address(address), ScopePolicy())
    assert verdict.allowed is False
    assert inner in verdict.reason


def test_6to4_of_a_public_address_is_allowed() -> None:
    assert judge_text("2002:0808:0808::1", ScopePolicy()).allowed


def test_rate_keys_group_ipv6_by_64() -> None:
    assert rate_keys("203.0.113.5") == ("203.0.113.5", None)
    assert rate_keys("2001:db8:1:2:aaaa::1") == ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64")
    assert rate_keys("2001:db8:1:2:bbbb::9")[1] == "2001:db8:1:2::/64"
    assert rate_keys("::ffff:203.0.113.5") == ("203.0.113.5", None)


# -- trusted proxies --------------------------------------------------------------------------

TRUSTED = parse_networks(["127.0.151.250", "10.0.0.0/8"])


def _h(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    got = client_address("127.0.151.9", _h(x_forwarded_for="198.51.100.1"), TRUSTED)
    assert str(got) == "127.0.151.9"
    got = client_address("127.0.151.9", _h(forwarded="for=198.51.100.1"), TRUSTED, "forwarded")
    assert str(got) == "127.0.151.9"
    # No trusted proxy configured: never read.
    assert str(client_address("10.1.1.1", _h(x_forwarded_for="8.8.8.8"), ())) == "10.1.1.1"


def test_rightmost_untrusted_hop_is_the_visitor() -> None:
    # The visitor wrote "1.2.3.4" themselves; the proxy appended what it saw: 8.8.8.8.
    got = client_address("127.0.151.250", _h(x_forwarded_for="1.2.3.4, 8.8.8.8"), TRUSTED)
    assert str(got) == "8.8.8.8"
    # Two trusted proxies in a row are skipped.
    got = client_address("127.0.151.250", _h(x_forwarded_for="1.2.3.4, 8.8.4.4, 10.0.0.7"),
                         TRUSTED)
    assert str(got) == "8.8.4.4"
    # Several header lines are one list, in order.
    headers = [(b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-for", b"9.9.9.9:443")]
    assert str(client_address("127.0.151.250", headers, TRUSTED)) == "9.9.9.9"


def test_forwarded_header_forms() -> None:
    value = 'for=1.2.3.4, for="[2001:4860::5]:4711";proto=https'
    got = client_address("10.0.0.2", _h(forwarded=value), TRUSTED, "forwarded")
    assert str(got) == "2001:4860::5"
    got = client_address("10.0.0.2", _h(forwarded='For="::ffff:8.8.8.8"'), TRUSTED, "forwarded")
    assert str(got) == "8.8.8.8"


@pytest.mark.parametrize("value", ["", "unknown", "_hidden", "not-an-ip", "1.2.3.4, garbage"])
def test_unusable_headers_from_a_trusted_proxy_are_errors(value: str) -> None:
    headers = _h(x_forwarded_for=value) if value else []
    with pytest.raises(ProxyHeaderError):
        client_address("127.0.151.250", headers, TRUSTED)


def test_overlong_chains_are_refused() -> None:
    chain = ", ".join(["8.8.8.8"] * 40)
    with pytest.raises(ProxyHeaderError):
        client_address("127.0.151.250", _h(x_forwarded_for=chain), TRUSTED)


def test_a_forwarded_element_without_for_is_an_error() -> None:
    with pytest.raises(ProxyHeaderError):
        client_address("10.0.0.2", _h(forwarded="proto=https"), TRUSTED, "forwarded")


# -- tokens --------------------------------------------------------------------------------------

def test_csrf_token_is_bound_to_the_visitor_and_expires() -> None:
    signer = Signer(KEY)
    token = signer.csrf_token("visitor-a" * 3, now=1000.0)
    assert signer.csrf_valid(token, "visitor-a" * 3, now=1500.0)
    assert not signer.csrf_valid(token, "visitor-b" * 3, now=1500.0)  # another cookie
    assert not signer.csrf_valid(token, None, now=1500.0)  # no cookie
    assert not signer.csrf_valid(token, "visitor-a" * 3, now=1000.0 + 3 * 3600)  # too old
    assert not signer.csrf_valid(token, "visitor-a" * 3, now=900.0)  # from the future
    assert not Signer(b"x" * 32).csrf_valid(token, "visitor-a" * 3, now=1500.0)  # other key
    body, _, mac = token.partition(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    assert not signer.csrf_valid(tampered, "visitor-a" * 3, now=1500.0)
    assert not signer.csrf_valid("garbage", "visitor-a" * 3, now=1500.0)
    assert not signer.csrf_valid("a.b.c", "visitor-a" * 3, now=1500.0)


def test_a_csrf_token_is_no_session_and_back() -> None:
    signer = Signer(KEY)
    session = signer.session("alice", now=0.0, lifetime=100.0)
    assert signer.session_user(session, now=50.0) == "alice"
    assert signer.session_user(session, now=150.0) is None  # expired
    assert not signer.csrf_valid(session, "alice", now=50.0)
    assert signer.session_user(signer.csrf_token("alice", 0.0), now=1.0) is None


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"short")


# -- passwords -----------------------------------------------------------------------------------

def test_password_hashes_verify_and_differ() -> None:
    one, two = hash_password("correct horse", n=2**10), hash_password("correct horse", n=2**10)
    assert one != two and one.startswith("scrypt$1024$")  # salted
    assert is_password_hash(one)
    assert verify_password("correct horse", one)
    assert not verify_password("correct horsE", one)
    assert not verify_password("correct horse", None)  # unknown user
    assert not verify_password("", one)


@pytest.mark.parametrize("stored", ["plain-text", "scrypt$3$8$1$AAAA$AAAA", "md5$x",
                                    "scrypt$16384$8$1$!!!$AAAA", ""])
def test_non_hashes_are_rejected(stored: str) -> None:
    assert not is_password_hash(stored)
    assert not verify_password(stored, stored)


# -- rate limits ---------------------------------------------------------------------------------

def test_window_refuses_past_the_limit_and_says_how_long() -> None:
    now = [1000.0]
    w = ratelimit.Window(3, 60.0, clock=lambda: now[0])
    assert [ratelimit.acquire([(w, "a")]) for _ in range(3)] == [None, None, None]
    assert ratelimit.acquire([(w, "a")]) == 60
    assert ratelimit.acquire([(w, "b")]) is None  # other keys are not affected
    now[0] += 30
    assert ratelimit.acquire([(w, "a")]) == 30
    now[0] += 30.5
    assert ratelimit.acquire([(w, "a")]) is None


def test_acquire_is_all_or_nothing_and_release_gives_back() -> None:
    now = [0.0]
    per_address = ratelimit.Window(5, 60.0, clock=lambda: now[0])
    per_prefix = ratelimit.Window(2, 60.0, clock=lambda: now[0])
    pairs_a = [(per_address, "2001:db8::1"), (per_prefix, "2001:db8::/64")]
    pairs_b = [(per_address, "2001:db8::2"), (per_prefix, "2001:db8::/64")]
    assert ratelimit.acquire(pairs_a) is None
    assert ratelimit.acquire(pairs_b) is None
    assert ratelimit.acquire(pairs_a) is not None  # the /64 is full ...
    assert per_address.wait("2001:db8::1", 0.0) == 0  # ... and no address hit was taken
    ratelimit.release(pairs_b)
    assert ratelimit.acquire(pairs_a) is None
    assert ratelimit.acquire([(per_address, None)]) is None  # no key: not limited


def test_window_memory_is_bounded() -> None:
    w = ratelimit.Window(1, 60.0, clock=lambda: 0.0, max_keys=100)
    for i in range(1000):
        ratelimit.acquire([(w, f"k{i}")])
    assert len(w._hits) == 100


# -- profiles ------------------------------------------------------------------------------------

def test_profiles_and_the_excluded_port(no_file: Path) -> None:
    settings = load_serve_settings(no_file, excluded_ports="2024,443", custom_max_ports=5)
    common = choose("common", None, settings)
    assert len(common.tcp_ports) in (98, 99, 100) and 443 not in common.tcp_ports
    services = choose("services", None, settings)
    assert 6379 in services.tcp_ports and 27017 in services.tcp_ports  # probe-table ports
    assert 2024 not in services.tcp_ports and 53 in services.udp_ports
    custom = choose("custom", "22,80,2024", settings)
    assert custom.tcp_ports == (22, 80) and custom.dropped == (2024,)
    with pytest.raises(ProfileError, match="no port is left"):
        choose("custom", "2024", settings)
    with pytest.raises(ProfileError, match="at most 5"):
        choose("custom", "1-6", settings)
    with pytest.raises(ProfileError, match="longer than"):
        choose("custom", "1," * 150, settings)
    for bad in ("", "0", "70000", "T:22", "abc"):
        with pytest.raises(ProfileError):
            choose("custom", bad, settings)
    with pytest.raises(ProfileError):
        choose("everything", None, settings)
    typical, worst = estimate_seconds(services, settings)
    assert 0 < typical <= worst <= settings.check_timeout


# -- settings ------------------------------------------------------------------------------------

def test_settings_file_then_environment_then_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('exclude_ports = "1"\n[serve]\nport = 9000\nworkers = 3\n'
                    'trusted_proxies = ["10.0.0.1"]\npublic_url = "https://check.example.net/"\n')
    settings = load_serve_settings(path)
    assert (settings.port, settings.workers, settings.trusted_proxies) == (9000, 3, ["10.0.0.1"])
    assert settings.public_url == "https://check.example.net"
    assert settings.hosts == ["check.example.net"] and settings.secure_cookies
    assert "https://check.example.net" in settings.user_agent
    assert settings.smtp_helo == "check.example.net"
    monkeypatch.setenv("MAMORI_SERVE_WORKERS", "5")
    monkeypatch.setenv("MAMORI_SERVE_ALLOW_NETWORKS", '["192.0.2.0/24"]')
    settings = load_serve_settings(path, port=9100)
    assert (settings.port, settings.workers, settings.allow_networks) == (
        9100, 5, ["192.0.2.0/24"])


@pytest.mark.parametrize(("toml", "needle"), [
    ("[serve]\ncolour = 1\n", "colour"),
    ("[serve]\nport = 0\n", "port"),
    ("[serve]\ntrusted_proxies = [\"proxy.example\"]\n", "trusted_proxies"),
    ("[serve]\nadmin_users = { alice = \"hunter2\" }\n", "scrypt"),
    ("[serve]\nsecret_key = \"short\"\n", "32"),
    ("[serve]\npublic_url = \"https://x.example/path\"\n", "path"),
    ("[serve]\nbind = \"localhost\"\n", "bind"),
    ("[serve]\nexcluded_ports = \"70000\"\n", "excluded_ports"),
    ("serve = 3\n", "table"),
    ("[serve\n", "cannot read"),
])
def test_bad_settings_are_one_line_errors(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(toml)
    with pytest.raises(ServeSettingsError, match=needle) as info:
        load_serve_settings(path)
    assert "\n" not in str(info.value)


def test_ip_public_url_gives_an_address_literal_helo(no_file: Path) -> None:
    assert load_serve_settings(no_file, public_url="http://[2001:db8::1]:8080").smtp_helo == \
        "[IPv6:2001:db8::1]"


@pytest.mark.parametrize(("value", "host"), [
    ("example.net", "example.net"), ("Example.NET:8080", "example.net"), ("[::1]:80", "::1"),
    ("[2001:db8::1]", "2001:db8::1"), ("127.0.150.1:1234", "127.0.150.1"), ("a.b.", "a.b"),
    ("", None), ("a b", None), ("evil.com/x", None), ("a:b", None), ("[::1", None),
    ("user@host", None),
])
def test_host_header_parsing(value: str, host: str | None) -> None:
    assert host_of(value) == host
