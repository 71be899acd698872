"""The schema every signature file follows (pydantic, unknown fields rejected).

A file holds one family (``worm.yaml``: Code Red, Nimda, ...). Each signature names the event
fields it looks at, one matcher (a list of substrings or one regular expression), how many
rounds of URL-decoding are applied before matching, and examples that must match plus counter
examples that must not: the loader refuses a file whose signatures fail their own examples.
Regular expressions are checked for the shapes that make a backtracking engine blow up
(a repeated group that itself repeats, backreferences) and refused.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from mamori.model.watch import Danger

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
FieldName = Literal[
    "path", "query", "url", "headers", "user_agent", "body", "command", "username", "password"
]
MAX_DECODE_ROUNDS = 3
MAX_REGEX_LENGTH = 600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    en: NonEmpty
    ja: NonEmpty


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is unsafe for a backtracking engine, or None when it is fine.

    Refused: backreferences; an unbounded repeat inside any repeat (``(a+)+``,
    ``(?:\\w+\\s?)*``); a variable-length repeat inside an unbounded one (``(a{1,5})+``): the
    shapes whose running time grows exponentially or as a high power of the input. A bounded
    variable repeat inside a bounded one (``(?:x{0,60}){1,4}``) is allowed: its worst case
    stays polynomial and small, and the tests time every signature against long adversarial
    input.
    """
    from re import _parser as sre  # type: ignore[attr-defined]

    try:
        tree = sre.parse(pattern)
    except re.error as exc:
        return f"invalid regex: {exc}"
    unbounded = int(sre.MAXREPEAT)

    def walk(items: Any, outer: int) -> str | None:
        # outer: 0 = not inside a repeat, 1 = inside a bounded one, 2 = inside an unbounded one
        for op, arg in items:
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "backreferences are not allowed"
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                lo, hi, body = arg
                if (outer == 2 and lo != hi) or (outer == 1 and hi == unbounded):
                    return "a repeat inside a repeat (catastrophic backtracking)"
                inner = 2 if hi == unbounded else (max(outer, 1) if hi > 1 else outer)
                if (problem := walk(body, inner)) is not None:
                    return problem
            elif name == "SUBPATTERN":
                if (problem := walk(arg[-1], outer)) is not None:
                    return problem
            elif name == "BRANCH":
                for branch in arg[1]:
                    if (problem := walk(branch, outer)) is not None:
                        return problem
            elif name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
                body = arg[-1] if isinstance(arg, tuple) else arg
                if (problem := walk(body, outer)) is not None:
                    return problem
        return None

    return walk(tree, 0)


class Match(_Strict):
    """Exactly one of ``substrings`` (any of them) or ``regex``; case-insensitive unless told."""

    substrings: list[NonEmpty] | None = None
    regex: str | None = None
    case_sensitive: bool = False
    decode: int = Field(default=2, ge=0, le=MAX_DECODE_ROUNDS)  # URL-decoding rounds
    # Lower-case literals of which any text the regex matches holds at least one: a cheap
    # test run first (the examples must pass it too, so a wrong list fails at load).
    prefilter: list[NonEmpty] | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> Match:
        if (self.substrings is None) == (self.regex is None):
            raise ValueError("a match sets exactly one of substrings, regex")
        if self.substrings is not None and not self.substrings:
            raise ValueError("substrings must not be empty")
        if self.prefilter is not None:
            if self.regex is None:
                raise ValueError("prefilter only goes with regex (substrings are their own)")
            if any(p != p.lower() for p in self.prefilter) or not self.prefilter:
                raise ValueError("prefilter literals must be lower case, at least one")
        if self.regex is not None:
            if len(self.regex) > MAX_REGEX_LENGTH:
                raise ValueError(f"regex longer than {MAX_REGEX_LENGTH} characters")
            if (problem := regex_problem(self.regex)) is not None:
                raise ValueError(f"regex {self.regex!r}: {problem}")
        return self


Example = str | dict[FieldName, str]


class SignatureSpec(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")]
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_-]+)?$")]
    danger: Danger
    title: Text
    fields: list[FieldName] = Field(min_length=1)
    match: Match
    examples: list[Example] = Field(min_length=1)
    counter_examples: list[Example] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _distinct(cls, value: list[FieldName]) -> list[FieldName]:
        if len(set(value)) != len(value):
            raise ValueError("fields are listed twice")
        return value

    def example_values(self, example: Example) -> dict[str, str]:
        """An example as field values: a bare string is the value of the first field."""
        if isinstance(example, str):
            return {self.fields[0]: example}
        return {str(k): v for k, v in example.items()}


class SignatureFile(_Strict):
    family: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
    signatures: list[SignatureSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _kinds_in_family(self) -> SignatureFile:
        for sig in self.signatures:
            if sig.kind != self.family and not sig.kind.startswith(self.family + "."):
                raise ValueError(f"{sig.id}: kind {sig.kind} is not in family {self.family}")
            for example in (*sig.examples, *sig.counter_examples):
                if isinstance(example, dict):
                    unknown = set(example) - set(sig.fields)
                    if unknown:
                        raise ValueError(
                            f"{sig.id}: example names fields it does not apply to: "
                            f"{sorted(unknown)}"
                        )
        return self
