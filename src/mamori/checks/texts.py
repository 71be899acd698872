"""A check result's text in every language, resolved from its spec when the check runs.

Reports render what the record holds (``CheckResult.texts``); they never read the catalogs.
"""

from __future__ import annotations

from typing import Protocol

from mamori.checks.spec import Remediation, Text
from mamori.model.scan import PLATFORMS, TEXT_LANGS, CheckText

# Passed and not-tested results keep their English evidence (the test, the probe's error)
# behind a prefix in the report's language.
PASSED_PREFIX = {"en": "passed: ", "ja": "合格: "}
NOT_TESTED_PREFIX = {"en": "not tested: ", "ja": "未テスト: "}


class TextSpec(Protocol):
    """What a check file and an inside-check file both hold: text in en and ja."""

    @property
    def title(self) -> Text: ...
    @property
    def why(self) -> Text: ...
    @property
    def remediation(self) -> Remediation: ...


def check_texts(spec: TextSpec, summaries: dict[str, str]) -> dict[str, CheckText]:
    """The text of one result in every language: ``spec``'s title, why and fixes (a check
    or an inside-check spec: both have ``title``, ``why`` and ``remediation`` in en/ja) and
    the given summary per language."""
    fixes = {"linux": spec.remediation.linux, "macos": spec.remediation.macos,
             "router": spec.remediation.router}
    return {
        lang: CheckText(
            title=_in(spec.title, lang),
            summary=summaries[lang],
            why=_in(spec.why, lang),
            fixes={p: _in(fixes[p], lang) for p in PLATFORMS},
        )
        for lang in TEXT_LANGS
    }


def _in(text: Text, lang: str) -> str:
    return text.ja if lang == "ja" else text.en
