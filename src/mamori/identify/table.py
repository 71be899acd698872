"""The probe table: ``probes.yaml`` validated by pydantic and compiled for the engine.

The file is data. Unknown fields are rejected, regexes are compiled and builder/parser/reader
names must be keys of the dicts in ``registry``; anything else fails at load time with
``TableError``. ``check_table`` enforces the table's own rules (examples match their rules,
every service we promise is covered) and is what the table test runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mamori.identify import registry
from mamori.yamlload import safe_load

DEFAULT_PATH = Path(__file__).with_name("probes.yaml")

# The services the issue promises to name; check_table fails if one loses its last rule.
REQUIRED_SERVICES = frozenset({
    "ssh", "ftp", "smtp", "pop3", "imap", "telnet", "http", "tls", "dns", "redis", "memcached",
    "mongodb", "postgresql", "mysql", "smb", "rsync", "mqtt", "vnc", "rdp", "snmp", "ntp",
    "ssdp", "mdns", "elasticsearch", "docker", "afp", "netbios-ns",
})

_ESCAPES = {"\\": 0x5C, "r": 0x0D, "n": 0x0A, "t": 0x09, "0": 0x00, '"': 0x22, "'": 0x27}
_FLAG_BITS = {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE}
_TEMPLATE = re.compile(r"\$(\d)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TableError(ValueError):
    """The probe table is malformed; the message says where."""


def unescape(text: str) -> bytes:
    """Bytes from an escaped string: \\\\ \\r \\n \\t \\0 \\" \\' and \\xHH; other text latin-1.

    Raises ValueError on an unknown escape, a cut \\x escape or a character above U+00FF.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            if ord(ch) > 0xFF:
                raise ValueError(f"character {ch!r} is not a byte; write it as \\xHH")
            out.append(ord(ch))
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            raise ValueError(f"bad escape at offset {i}: {text[i : i + 4]!r}")
    return bytes(out)


def _compile(pattern: str, flags: str = "") -> re.Pattern[bytes]:
    bits = 0
    for letter in flags:
        bits |= _FLAG_BITS[letter]
    return re.compile(pattern.encode("latin-1"), bits)


class MatcherModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    pattern: str
    flags: str = Field(default="", pattern=r"^[ism]*$")
    product: str | None = None
    version: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)
    confidence: Literal["confirmed", "likely"] = "confirmed"
    negative: list[str] = Field(default_factory=list)
    parser: str | None = None
    require: dict[str, str] = Field(default_factory=dict)
    examples: list[str] = Field(min_length=1)
    note: str | None = None

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            _compile(value)
        except (re.error, UnicodeEncodeError) as exc:
            raise ValueError(f"bad regex {value!r}: {exc}") from exc
        return value

    @field_validator("negative")
    @classmethod
    def _negatives_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            cls._pattern_compiles(pattern)
        return value

    @field_validator("require")
    @classmethod
    def _requires_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bad regex {pattern!r}: {exc}") from exc
        return value

    @field_validator("parser")
    @classmethod
    def _parser_known(cls, value: str | None) -> str | None:
        if value is not None and value not in registry.PARSERS:
            raise ValueError(f"unknown parser {value!r}; known: {sorted(registry.PARSERS)}")
        return value

    @field_validator("examples")
    @classmethod
    def _examples_decode(cls, value: list[str]) -> list[str]:
        for example in value:
            unescape(example)
        return value

    @model_validator(mode="after")
    def _require_needs_parser(self) -> MatcherModel:
        if self.require and self.parser is None:
            raise ValueError("'require' tests parser fields: name a parser")
        return self


class ProbeModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    transport: Literal["tcp", "udp"]
    tls: Literal["plain", "after-tls", "both"] = "plain"
    payload: str | None = None
    builder: str | None = None
    args: dict[str, str] = Field(default_factory=dict)
    read: str = "any"
    ports: list[int] = Field(default_factory=list)
    cost: int = Field(default=5, ge=0, le=100)
    matchers: list[MatcherModel] = Field(min_length=1)

    @field_validator("ports")
    @classmethod
    def _ports_valid(cls, value: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in value):
            raise ValueError("ports must be 1-65535")
        return value

    @field_validator("payload")
    @classmethod
    def _payload_decodes(cls, value: str | None) -> str | None:
        if value is not None:
            unescape(value)
        return value

    @field_validator("builder")
    @classmethod
    def _builder_known(cls, value: str | None) -> str | None:
        if value is not None and value not in registry.BUILDERS:
            raise ValueError(f"unknown builder {value!r}; known: {sorted(registry.BUILDERS)}")
        return value

    @field_validator("read")
    @classmethod
    def _reader_known(cls, value: str) -> str:
        if value not in registry.READERS:
            raise ValueError(f"unknown reader {value!r}; known: {sorted(registry.READERS)}")
        return value

    @model_validator(mode="after")
    def _one_payload(self) -> ProbeModel:
        if self.payload is not None and self.builder is not None:
            raise ValueError("give either 'payload' or 'builder', not both")
        if self.transport == "udp" and self.payload is None and self.builder is None:
            raise ValueError("a UDP probe needs a payload")
        return self


class TableModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    probes: list[ProbeModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> TableModel:
        names = [p.name for p in self.probes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate probe names: {sorted(dupes)}")
        nulls = [p.name for p in self.probes
                 if p.transport == "tcp" and p.payload is None and p.builder is None]
        if len(nulls) != 1:
            raise ValueError(f"need exactly one TCP probe without payload (NULL), got {nulls}")
        return self


# --- compiled, runtime form -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Matcher:
    service: str
    regex: re.Pattern[bytes]
    product: str | None
    version: str | None
    extra: Mapping[str, str]
    confidence: str
    negative: tuple[re.Pattern[bytes], ...]
    parser_name: str | None
    require: tuple[tuple[str, re.Pattern[str]], ...]
    examples: tuple[bytes, ...]

    def match(self, reply: bytes) -> dict[str, str] | None:
        """Template values when this rule accepts ``reply`` (regex, negatives, parser, require).

        Returns None when it does not. Keys "1".."9" hold regex groups; the parser's fields
        and named groups are under their names.
        """
        m = self.regex.search(reply)
        if m is None or any(n.search(reply) for n in self.negative):
            return None
        values: dict[str, str] = {}
        if self.parser_name is not None:
            fields = registry.PARSERS[self.parser_name](reply)
            if fields is None:
                return None
            for key, pattern in self.require:
                if pattern.search(fields.get(key, "")) is None:
                    return None
            values.update(fields)
        for index, group in enumerate(m.groups()[:9], start=1):
            values[str(index)] = (group or b"").decode("utf-8", "replace")
        for key, group in m.groupdict().items():
            values[key] = (group or b"").decode("utf-8", "replace")
        return values


def render(template: str | None, values: Mapping[str, str]) -> str | None:
    """Fill $1..$9 and ${name} from ``values``; None when the result is empty."""
    if template is None:
        return None
    filled = _TEMPLATE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), template)
    result = " ".join(filled.split())[:128]
    return result or None


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    transport: str
    tls: str
    payload: bytes | None
    builder_name: str | None
    args: Mapping[str, str]
    reader: registry.Reader
    ports: frozenset[int]
    cost: int
    matchers: tuple[Matcher, ...]

    @property
    def is_null(self) -> bool:
        return self.payload is None and self.builder_name is None

    def runs_in(self, tls: bool) -> bool:
        return self.tls in ("both", "after-tls" if tls else "plain")

    def build(self, ctx: registry.BuildContext) -> bytes:
        """The bytes to send (b"" for the NULL probe)."""
        if self.builder_name is not None:
            return registry.BUILDERS[self.builder_name](ctx, self.args)
        return self.payload or b""


@dataclass(frozen=True, slots=True)
class ProbeTable:
    probes: tuple[Probe, ...]

    def tcp(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.transport == "tcp")

    def udp(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.transport == "udp")

    def null(self) -> Probe:
        return next(p for p in self.probes if p.transport == "tcp" and p.is_null)


def _matcher(model: MatcherModel) -> Matcher:
    return Matcher(
        service=model.service,
        regex=_compile(model.pattern, model.flags),
        product=model.product,
        version=model.version,
        extra=dict(model.extra),
        confidence=model.confidence,
        negative=tuple(_compile(n, model.flags) for n in model.negative),
        parser_name=model.parser,
        require=tuple((k, re.compile(v)) for k, v in model.require.items()),
        examples=tuple(unescape(e) for e in model.examples),
    )


def compile_table(data: object) -> ProbeTable:
    """Validate parsed YAML and compile it. Raises ``TableError`` with pydantic's message."""
    try:
        model = TableModel.model_validate(data)
    except ValidationError as exc:
        raise TableError(str(exc)) from exc
    probes = tuple(
        Probe(
            name=p.name,
            transport=p.transport,
            tls=p.tls,
            payload=None if p.payload is None else unescape(p.payload),
            builder_name=p.builder,
            args=dict(p.args),
            reader=registry.READERS[p.read],
            ports=frozenset(p.ports),
            cost=p.cost,
            matchers=tuple(_matcher(m) for m in p.matchers),
        )
        for p in model.probes
    )
    return ProbeTable(probes)


def load_table(path: Path = DEFAULT_PATH) -> ProbeTable:
    """Read, validate and compile a probe table file.

    Raises ``TableError`` for invalid content and OSError when the file cannot be read.
    """
    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TableError(f"{path}: not valid YAML: {exc}") from exc
    return compile_table(data)


@cache
def default_table() -> ProbeTable:
    """The packaged table, loaded once per process."""
    return load_table(DEFAULT_PATH)


def first_match(
    matchers: tuple[Matcher, ...], reply: bytes
) -> tuple[Matcher, dict[str, str]] | None:
    """The first rule (in table order) that accepts ``reply``, with its template values."""
    for matcher in matchers:
        values = matcher.match(reply)
        if values is not None:
            return matcher, values
    return None


def check_table(table: ProbeTable) -> list[str]:
    """The table's own rules, as a list of problems (empty when the table is sound).

    - every example of a rule is accepted by that rule;
    - within its probe, no earlier rule for another service claims that example (shadowing);
    - every service in ``REQUIRED_SERVICES`` has at least one confirmed rule.
    """
    problems: list[str] = []
    confirmed: set[str] = set()
    for probe in table.probes:
        for index, matcher in enumerate(probe.matchers):
            if matcher.confidence == "confirmed":
                confirmed.add(matcher.service)
            for example in matcher.examples:
                where = f"{probe.name}[{index}] {matcher.service}"
                if matcher.match(example) is None:
                    problems.append(f"{where}: does not match its example {example[:60]!r}")
                    continue
                hit = first_match(probe.matchers, example)
                if hit is not None and hit[0] is not matcher and hit[0].service != matcher.service:
                    problems.append(
                        f"{where}: example {example[:60]!r} is claimed first by "
                        f"{hit[0].service!r}"
                    )
    missing = REQUIRED_SERVICES - confirmed
    if missing:
        problems.append(f"services without a confirmed rule: {sorted(missing)}")
    return problems
