"""The schema every check file must follow (pydantic, unknown fields rejected)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from mamori.checks.params import ParamValue
from mamori.model import Confidence, Layer, Severity

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# YAML's folded scalars (">-") join lines with a space: right in English, a stray gap in
# Japanese, which puts no space between words. A space between two Japanese characters, or
# after Japanese punctuation, is such a fold; the catalogs' deliberate spaces around Latin
# words ("Web サーバー", "(SSH) の") stay.
_JA = "\u3040-\u30ff\u3400-\u9fff\uff01-\uff5e"
_JA_FOLD = re.compile(f"(?:(?<=[{_JA}])|(?<=[\u3000-\u303f])) (?=[{_JA}\u3000-\u303f])"
                      "|(?<=[\u3000-\u303f]) (?=\\S)")


def unfold_japanese(text: str) -> str:
    """``text`` without the spaces YAML folding left after Japanese characters."""
    return _JA_FOLD.sub("", text)


class Text(_Strict):
    """Report text in both languages the catalog keeps side by side."""

    en: NonEmpty
    ja: NonEmpty

    @field_validator("ja")
    @classmethod
    def _unfold(cls, value: str) -> str:
        return unfold_japanese(value)


class Matcher(_Strict):
    """One test on a field the primitive observed; exactly one operator is set."""

    field: NonEmpty
    regex: str | None = None
    equals: str | None = None
    min: float | None = None  # numeric field >= min
    present: bool | None = None  # the field exists (True) / does not (False)

    @model_validator(mode="after")
    def _one_operator(self) -> Matcher:
        ops = [self.regex, self.equals, self.min, self.present]
        if sum(op is not None for op in ops) != 1:
            raise ValueError("a matcher sets exactly one of regex, equals, min, present")
        if self.regex is not None:
            re.compile(self.regex)
        return self


class Probe(_Strict):
    primitive: NonEmpty
    params: dict[str, ParamValue] = Field(default_factory=dict)


class Grade(_Strict):
    """How sure and how bad, for one grade of proof the primitive reports (field "grade")."""

    confidence: Confidence
    severity: Severity | None = None
    summary: Text | None = None


class Remediation(_Strict):
    linux: Text
    macos: Text
    router: Text


class CheckSpec(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
    title: Text
    severity: Severity
    layer: Layer
    transport: Literal["tcp", "udp"] = "tcp"
    # Service names from identification ("redis", "smtp", "http", ...). "tls" applies to any
    # endpoint that speaks TLS, whatever runs inside.
    services: list[NonEmpty] = Field(min_length=1)
    probe: Probe
    matchers: list[Matcher] = Field(min_length=1)  # all must hold
    negative_matchers: list[Matcher] = Field(default_factory=list)  # any rules the finding out
    evidence: list[NonEmpty] = Field(default_factory=list)  # fields kept as facts
    confidence: Confidence
    grades: dict[str, Grade] = Field(default_factory=dict)
    summary: Text  # one line; ${field} is replaced by the observed value
    why: Text  # why it matters to the owner of an always-on host
    remediation: Remediation
    references: list[NonEmpty] = Field(min_length=1)

    @field_validator("references")
    @classmethod
    def _references_look_real(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            if not re.match(r"^(https?://\S+|CWE-\d+|CVE-\d{4}-\d+|RFC \d+)$", ref):
                raise ValueError(f"reference {ref!r} is not a URL, CWE-n, CVE-y-n or RFC n")
        return refs
