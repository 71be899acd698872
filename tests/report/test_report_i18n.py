"""Languages: every shown text in English and Japanese, the language chosen by --lang or the
locale, and every renderer speaking the chosen one (down to a real scan with --lang ja)."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import daemons as dm
from conftest import run_mamori
from mamori.audit.notes import load_notes
from mamori.checks.catalog import default_catalog, load_catalog
from mamori.checks.engine import evaluate, not_tested
from mamori.checks.observation import CheckOptions, Observation, ProbeContext
from mamori.checks.spec import Text
from mamori.model import CheckResult, CheckStatus, Proto, ScanRecord
from mamori.report import render, text
from mamori.report.i18n import LANGS, MESSAGES, locale_lang, resolve_lang, t
from mamori.store import Store
from store_fixtures import store_check_scan, store_sample_scan

JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")  # kana or kanji
_NO_WORDS = {"layer.os", "severity_count", "list_sep"}  # "OS", "{severity} {n}", "、"
REDIS_HOST, REDIS_PORT = "127.0.110.20", 16410


def _texts(node: Any, path: str = "") -> Iterator[tuple[str, Text]]:
    """Every Text (a shown text with both languages) anywhere in a catalog entry."""
    if isinstance(node, Text):
        yield path, node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _texts(getattr(node, name), f"{path}.{name}")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _texts(value, f"{path}[{key}]")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _texts(value, f"{path}[{i}]")


@pytest.mark.parametrize("catalog", [load_catalog, load_notes], ids=["checks", "audit"])
def test_every_shown_text_of_every_check_has_english_and_japanese(catalog: Any) -> None:
    specs = catalog()
    assert specs
    for check_id, spec in specs.items():
        found = dict(_texts(spec))
        # At least what every report shows: title, why, and the three fixes.
        for field in (".title", ".why", ".remediation.linux", ".remediation.macos",
                      ".remediation.router"):
            assert field in found, (check_id, field)
        for path, value in found.items():
            assert value.en.strip(), (check_id, path, "en")
            assert value.ja.strip(), (check_id, path, "ja")
            assert JAPANESE.search(value.ja), (check_id, path, "ja is not Japanese")


def test_ja_summaries_need_only_what_the_english_one_needs() -> None:
    """A Japanese summary can be rebuilt from stored facts only if it asks for no field the
    English one does not (else the report falls back to English)."""
    for check_id, spec in load_catalog().items():
        pairs = [spec.summary] + [g.summary for g in spec.grades.values() if g.summary]
        for pair in pairs:
            en = set(re.findall(r"\$\{(\w+)\}", pair.en))
            ja = set(re.findall(r"\$\{(\w+)\}", pair.ja))
            assert ja <= en, (check_id, ja - en)


def test_every_ui_message_has_both_languages_with_the_same_placeholders() -> None:
    fields = string.Formatter()
    for key, msg in MESSAGES.items():
        assert msg.en.strip() and msg.ja.strip(), key
        names = {f[1] for f in fields.parse(msg.en) if f[1]}
        assert {f[1] for f in fields.parse(msg.ja) if f[1]} == names, key
        if msg.en_plural is not None:
            assert {f[1] for f in fields.parse(msg.en_plural) if f[1]} == names, key
            assert "n" in names, key
        # Japanese words, except the few messages with none to translate.
        assert JAPANESE.search(msg.ja) or key in _NO_WORDS, key
    assert _NO_WORDS <= set(MESSAGES)


def test_t_fills_placeholders_and_picks_the_english_plural() -> None:
    assert t("checks_passed", "en", n=1) == "1 check passed"
    assert t("checks_passed", "en", n=3) == "3 checks passed"
    assert t("checks_passed", "ja", n=3) == "合格したチェック: 3 件"
    assert t("summary", "ja") == "概要" and t("summary", "en") == "Summary"
    with pytest.raises(KeyError):
        t("no.such.key", "en")


@pytest.mark.parametrize(("env", "lang"), [
    ({}, "en"),
    ({"LANG": "ja_JP.UTF-8"}, "ja"),
    ({"LANG": "ja"}, "ja"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LC_ALL": "C", "LANG": "ja_JP.UTF-8"}, "en"),  # LC_ALL wins
    ({"LC_MESSAGES": "ja_JP.UTF-8", "LANG": "en_GB.UTF-8"}, "ja"),
    ({"LC_ALL": "", "LC_MESSAGES": "", "LANG": "ja_JP.eucJP"}, "ja"),  # empty is unset
    ({"LC_ALL": "ja_JP.UTF-8", "LANG": "C"}, "ja"),
])
def test_the_locale_chooses_the_language(env: dict[str, str], lang: str) -> None:
    assert locale_lang(env) == lang
    assert resolve_lang(None, env) == lang


def test_an_explicit_language_wins_and_a_wrong_one_is_refused() -> None:
    assert resolve_lang("JA", {"LANG": "en_US"}) == "ja"
    assert resolve_lang("en", {"LANG": "ja_JP"}) == "en"
    assert set(LANGS) == {"en", "ja"}
    with pytest.raises(ValueError, match="unknown language"):
        resolve_lang("fr")


# -- check text in the chosen language ----------------------------------------------------------


def _ctx() -> ProbeContext:
    return ProbeContext("127.0.0.1", 6379, Proto.TCP, None, None, CheckOptions())


def _redis_finding(version: str = "7.2.4", role: str = "master") -> CheckResult:
    spec = default_catalog()["redis-unauthenticated"]
    obs = Observation(test="INFO", fields={"redis_version": version, "role": role})
    return evaluate(spec, _ctx(), obs)


def test_the_engine_stores_every_language_and_reports_read_only_the_record() -> None:
    c = _redis_finding()
    spec = default_catalog()["redis-unauthenticated"]
    expected = spec.summary.ja.replace("${redis_version}", "7.2.4").replace("${role}", "master")
    assert c.texts["ja"].summary == expected == text.summary(c, "ja")
    assert text.summary(c, "en") == c.summary == c.texts["en"].summary
    assert text.title(c, "ja") == spec.title.ja
    assert text.why(c, "ja") == spec.why.ja
    assert text.fixes(c, "ja")["linux"] == spec.remediation.linux.ja
    # What is shown is what was stored, even when the catalog says something else today.
    edited = replace(c, texts={**c.texts, "ja": replace(c.texts["ja"], summary="保存された要約")})
    assert text.summary(edited, "ja") == "保存された要約"
    # Passed and not-tested results keep the English evidence behind a translated prefix.
    passed = evaluate(spec, _ctx(), Observation(test="INFO", fields={"error": "NOAUTH"}))
    assert passed.status is CheckStatus.PASSED
    assert text.summary(passed, "ja") == "合格: INFO" and passed.summary == "passed: INFO"
    skipped = not_tested(spec, _ctx(), "timeout: no answer")
    assert text.summary(skipped, "ja") == "未テスト: timeout: no answer"


def test_a_record_stored_without_texts_shows_its_english_fields() -> None:
    c = replace(_redis_finding(), texts={})
    assert text.summary(c, "ja") == c.summary and text.title(c, "ja") == c.title
    assert text.why(c, "ja") is None
    assert text.fixes(c, "ja")["linux"] == c.remediation["linux"]
    only_en = replace(_redis_finding(), texts={"en": _redis_finding().texts["en"]})
    assert text.title(only_en, "ja") == only_en.texts["en"].title


def test_a_grade_summary_is_translated_too() -> None:
    spec = next(s for s in default_catalog().values()
                if any(g.summary for g in s.grades.values()))
    name, grade = next((n, g) for n, g in spec.grades.items() if g.summary)
    assert grade.summary is not None
    names = re.findall(r"\$\{(\w+)\}", grade.summary.en)
    fields = {**{n: f"v-{n}" for n in names}, "afp_versions": "AFP3.4",
              "uams": "No User Authent", "grade": name}
    ja = re.sub(r"\$\{(\w+)\}", lambda m: fields[m.group(1)], grade.summary.ja)
    en = re.sub(r"\$\{(\w+)\}", lambda m: fields[m.group(1)], grade.summary.en)
    c = evaluate(spec, _ctx(), Observation(test="t", fields=fields))
    assert c.status is CheckStatus.FINDING
    assert text.summary(c, "ja") == ja and text.summary(c, "en") == en


# -- every renderer ------------------------------------------------------------------------------


@pytest.fixture
def records(tmp_path: Path) -> tuple[ScanRecord, ScanRecord]:
    with Store.open(str(tmp_path / "m.db")) as store:
        scan = store.get_scan(store_sample_scan(store))
        check = store.get_scan(store_check_scan(store))
    assert scan is not None and check is not None
    return scan, check


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "sarif"])
def test_every_renderer_speaks_the_chosen_language(
    records: tuple[ScanRecord, ScanRecord], fmt: str
) -> None:
    ja_title = default_catalog()["redis-unauthenticated"].title.ja
    for record in records:
        en = render(record, fmt, lang="en")
        ja = render(record, fmt, lang="ja")
        assert ja_title in ja, fmt
        assert ja_title not in en and not JAPANESE.search(en.replace("守り", "")), fmt
    if fmt == "sarif":
        doc = json.loads(render(records[0], "sarif", lang="ja"))
        assert doc["runs"][0]["language"] == "ja-JP"
        rule = next(r for r in doc["runs"][0]["tool"]["driver"]["rules"]
                    if r["id"] == "redis-unauthenticated")
        assert rule["shortDescription"]["text"] == ja_title
    else:
        assert "概要" in render(records[0], fmt, lang="ja")  # "Summary", the UI word


def test_json_keeps_the_stored_english_text(records: tuple[ScanRecord, ScanRecord]) -> None:
    from mamori.report.json import render_json

    assert render(records[0], "json", lang="ja") == render_json(records[0])


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """One real scan of a real redis-server without a password; yields (db, scan id)."""
    work = tmp_path_factory.mktemp("i18n")
    db = str(work / "m.db")
    with dm.running(dm.start_redis, work, REDIS_HOST, REDIS_PORT):
        proc = run_mamori("scan", REDIS_HOST, "-p", str(REDIS_PORT), "--lang", "ja",
                          "--db", db)
    assert proc.returncode == 0, proc.stderr
    ja_title = default_catalog()["redis-unauthenticated"].title.ja
    assert ja_title in proc.stdout and "概要" in proc.stdout
    with Store.open(db) as store:
        (summary,) = store.list_scans()
    yield db, summary.id


@pytest.mark.daemon
def test_a_real_scan_in_japanese(redis_scan: tuple[str, int]) -> None:
    db, scan_id = redis_scan
    spec = default_catalog()["redis-unauthenticated"]
    proc = run_mamori("show", str(scan_id), "-f", "markdown", "--lang", "ja", "--db", db)
    assert proc.returncode == 0, proc.stderr
    assert spec.title.ja in proc.stdout and "## 概要" in proc.stdout
    # The locale decides when --lang is not given (precedence: test_the_locale_chooses...).
    env = {"LC_ALL": "", "LC_MESSAGES": "", "LANG": "ja_JP.UTF-8"}
    assert spec.title.ja in run_mamori("show", str(scan_id), "--db", db, env=env).stdout


def test_the_catalog_listing_in_both_languages() -> None:
    from mamori.cli.checks import render_catalog, render_check

    spec = default_catalog()["redis-unauthenticated"]
    specs = list(default_catalog().values())
    assert spec.title.ja in render_catalog(specs, "table", lang="ja")
    assert spec.title.ja not in render_catalog(specs, "table", lang="en")
    shown = render_check(spec, "table", lang="ja")
    assert spec.why.ja.split()[0] in shown and spec.remediation.linux.ja.split()[0] in shown
    assert "Why it matters:" in render_check(spec, "table")


@pytest.mark.daemon
def test_a_wrong_language_is_a_usage_error(redis_scan: tuple[str, int], tmp_path: Path) -> None:
    db, scan_id = redis_scan
    for args in (["show", str(scan_id), "--db", db], ["diff", "--db", db],
                 ["scan", REDIS_HOST, "-p", "1", "--db", str(tmp_path / "new.db")]):
        proc = run_mamori(*args, "--lang", "fr")
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
        assert "unknown language 'fr'" in proc.stderr
    assert not (tmp_path / "new.db").exists()  # nothing stored
