"""Signatures as data: one YAML file per family beside this module, validated at load.

``load()`` reads every ``*.yaml`` here (validated by :mod:`.spec`; each signature must match
its own examples and none of its counter examples, or loading fails with
:class:`SignatureError`). ``SignatureSet.classify(event)`` looks at the request text an event
carries (path, query, headers, user agent, body, command, username, password), URL-decodes
it a bounded number of times, and returns the event with ``signatures`` and ``danger`` filled
in. Matching is bounded: each value is cut at :data:`MAX_VALUE` characters first, and the
regexes are checked at load for the shapes that backtrack catastrophically.

Speed (an access log is read at 100,000 lines a second): an event is matched piece by piece
(url, user agent, referer, ...). Each piece has a gate, the literals its signatures promise
(``prefilter`` in the YAML; substrings are their own): a value holding none of them matches
nothing, which is the answer for nearly every line; only the signatures behind a literal that
is present are run. What a url, user agent or referer matched is remembered (bounded).
``match_values`` is the plain reference without any of this; a test holds the two equal.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from mamori.model.watch import Danger, Event, EventType
from mamori.watch.signatures.spec import SignatureFile, SignatureSpec
from mamori.yamlload import safe_load

__all__ = [
    "DEFAULT_DIR",
    "MAX_VALUE",
    "Signature",
    "SignatureError",
    "SignatureSet",
    "event_pieces",
    "load",
]

DEFAULT_DIR = Path(__file__).parent
MAX_VALUE = 8192  # characters of one field value that matching looks at
MAX_FILE_BYTES = 1 << 20


class SignatureError(ValueError):
    """A signature file is malformed or a signature fails its own examples."""


@dataclass(frozen=True, slots=True)
class Signature:
    """One compiled signature."""

    id: str
    family: str
    kind: str
    danger: Danger
    title_en: str
    title_ja: str
    fields: tuple[str, ...]
    decode: int
    case_sensitive: bool
    substrings: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    prefilter: tuple[str, ...] = ()  # lower-case literals one of which a match must hold

    def match_variants(self, variants: list[str], lowered: list[str]) -> bool:
        """True when any of the first ``decode + 1`` decoded variants matches."""
        pre = self.prefilter
        regex = self.regex
        for i in range(min(self.decode + 1, len(variants))):
            low = lowered[i]
            if pre and not any(p in low for p in pre):
                continue
            text = variants[i] if self.case_sensitive else low
            if regex is not None:
                if regex.search(text) is not None:
                    return True
            elif any(sub in text for sub in self.substrings):
                return True
        return False

    def matches(self, value: str) -> bool:
        """Whether one field value matches (used by tests and the loader's example check)."""
        variants = decode_variants(value[:MAX_VALUE], self.decode)
        return self.match_variants(variants, [v.lower() for v in variants])

    @property
    def literals(self) -> tuple[str, ...]:
        """Lower-case literals one of which any match holds (empty: no such promise)."""
        if self.regex is not None:
            return self.prefilter
        return tuple(sub.lower() for sub in self.substrings)


def decode_variants(value: str, rounds: int) -> list[str]:
    """``value`` and up to ``rounds`` successive URL-decodings of it (latin-1, so every
    escaped byte stays one character: ``%c0%af`` becomes two characters, never an error)."""
    out = [value]
    current = value
    for _ in range(rounds):
        if "%" not in current:
            break
        decoded = unquote(current, encoding="latin-1")
        if decoded == current:
            break
        out.append(decoded)
        current = decoded
    return out


_HTTP_REQUEST_LINE = re.compile(r"([A-Z][A-Z_-]{1,15}) (\S{1,8192}) HTTP/\d")


# What an event carries, in pieces, and the signature fields that look at each piece: the
# url is seen by url, path and query signatures (path and query are cut from it); the
# referer, the user agent and a raw header block by "headers" signatures (the user agent by
# "user_agent" ones too). Matching piece by piece keeps anchors like "^" meaningful and lets
# each piece be remembered on its own: logs repeat their pages and user agents endlessly.
PIECE_FIELDS: dict[str, tuple[str, ...]] = {
    "url": ("url", "path", "query"),
    "user_agent": ("user_agent", "headers"),
    "referer": ("headers",),
    "headers": ("headers",),
    "body": ("body",),
    "command": ("command",),
    "username": ("username",),
    "password": ("password",),
}
# values remembered per piece, in two generations: when the young one is full it becomes the
# old one and the previous old one is dropped; a value found in the old one moves back to the
# young one. Values in use stay, one-off values (unique query strings) fall out.
# Only the pieces every access-log line has are remembered (worst case 3 pieces x 2
# generations x 4096 values x 256 characters: about 6 MB).
_CACHE_SIZE = 4096
_CACHE_VALUE_MAX = 256  # longer values are never remembered
_REMEMBERED = frozenset({"url", "user_agent", "referer"})
_HTTP_REQUEST = EventType.HTTP_REQUEST


def event_pieces(event: Event) -> dict[str, str]:
    """The request text an event carries, by piece name (empty values and "-" left out).

    For decoy data that looks like an HTTP request and has no parsed fields, the request
    line and headers are read from the excerpt.
    """
    f = event.fields
    out: dict[str, str] = {}
    url = f.get("url") or f.get("path") or ""
    if url and "?" not in url and (query := f.get("query")):
        url = f"{url}?{query}"
    user_agent = f.get("user_agent", "")
    headers = f.get("headers", "")
    body = f.get("body", "")
    if event.type is not EventType.HTTP_REQUEST:
        if event.type in (EventType.DECOY_DATA, EventType.DECOY_UDP):
            raw = f.get("request") or event.excerpt
            if not url and raw:
                url, headers, user_agent = _http_from_text(raw, headers, user_agent)
            body = body or raw
        for name in ("command", "username", "password"):
            if value := f.get(name, ""):
                out[name] = value
    if url:
        out["url"] = url
    if user_agent and user_agent != "-":
        out["user_agent"] = user_agent
    if (referer := f.get("referer", "")) and referer != "-":
        out["referer"] = referer
    if headers:
        out["headers"] = headers
    if body:
        out["body"] = body
    return out


def _http_from_text(raw: str, headers: str, user_agent: str) -> tuple[str, str, str]:
    """(url, headers, user agent) of a raw HTTP request kept as an excerpt."""
    text = raw.replace("\\r\\n", "\n").replace("\\n", "\n")
    head, _, rest = text.partition("\n")
    m = _HTTP_REQUEST_LINE.match(head)
    if m is None:
        return "", headers, user_agent
    if not user_agent:
        for line in rest.split("\n"):
            name, colon, val = line.partition(":")
            if colon and name.strip().lower() == "user-agent":
                user_agent = val.strip()
                break
    return m.group(2), headers or rest, user_agent


def _variants(value: str, rounds: int) -> tuple[list[str], list[str]]:
    variants = decode_variants(value, rounds) if "%" in value else [value]
    return variants, [v.lower() for v in variants]


def _literal_regex(literals: tuple[str, ...]) -> re.Pattern[str]:
    """A regex matching any of ``literals`` (alternatives grouped by first character)."""
    by_first: dict[str, list[str]] = {}
    for lit in literals:
        by_first.setdefault(lit[0], []).append(lit[1:])
    branches = []
    for first, rests in sorted(by_first.items()):
        tails = sorted(rests, key=len, reverse=True)
        if tails == [""]:
            branches.append(re.escape(first))
        else:
            alts = "|".join(re.escape(t) for t in tails)
            branches.append(f"{re.escape(first)}(?:{alts})")
    return re.compile("|".join(branches))


class _PieceMatcher:
    """The signatures that look at one piece, with the gate (every literal they promise, when
    all of them promise some) and a bounded memory of values already judged."""

    def __init__(self, entries: list[tuple[Signature, str]], *, remember: bool) -> None:
        self.remember = remember
        self.entries = tuple(entries)  # (signature, part: "url" | "path" | "query" | "")
        self.rounds = max((sig.decode for sig, _ in entries), default=0)
        self.gate: tuple[str, ...] | None = None
        # for each gate literal, the entries that may match when it is present
        self.behind: dict[str, tuple[int, ...]] = {}
        if all(sig.literals for sig, _ in entries):
            literals = {lit for sig, _ in entries for lit in sig.literals}
            # a literal that contains another one adds nothing to the gate
            self.gate = tuple(sorted(
                lit for lit in literals if not any(o != lit and o in lit for o in literals)
            ))
            self.behind = {
                g: tuple(i for i, (sig, _) in enumerate(entries)
                         if any(g in lit for lit in sig.literals))
                for g in self.gate
            }
        # many literals: one regex (branches grouped by first character) tests them faster
        # than a loop of "in"; a few: the loop is faster
        self.gate_regex = _literal_regex(self.gate) if self.gate and len(self.gate) >= 8 else None
        self.memory: dict[str, tuple[Signature, ...]] = {}  # the young generation
        self.older: dict[str, tuple[Signature, ...]] = {}

    def match(self, raw: str) -> tuple[Signature, ...]:
        """What matches ``raw`` (callers may look in ``memory`` first: a hit there is the
        same answer)."""
        value = raw[:MAX_VALUE]
        known = self.memory.get(value)
        if known is not None:
            return known
        found = self.older.get(value)
        if found is None:
            found = self._judge(value)
            if not self.remember or len(value) > _CACHE_VALUE_MAX:
                return found
        if len(self.memory) >= _CACHE_SIZE:
            self.older = self.memory
            self.memory = {}
        self.memory[value] = found
        return found

    def _judge(self, value: str) -> tuple[Signature, ...]:
        if "%" in value:
            variants, lowered = _variants(value, self.rounds)
        else:
            variants, lowered = [value], [value.lower()]
        entries = self.entries
        if self.gate_regex is not None:
            search = self.gate_regex.search
            for low in lowered:
                if search(low) is not None:
                    break
            else:
                return ()
        if self.gate is not None:
            # only the signatures behind a literal the value holds can match
            chosen: set[int] = set()
            for lit in self.gate:
                for low in lowered:
                    if lit in low:
                        chosen.update(self.behind[lit])
                        break
            if not chosen:
                return ()
            entries = tuple(entries[i] for i in sorted(chosen))
        parts: dict[str, tuple[list[str], list[str]]] = {}
        found = []
        for sig, part in entries:
            if part in ("path", "query"):
                if part not in parts:
                    path, _sep, query = value.partition("?")
                    parts[part] = _variants(path if part == "path" else query, self.rounds)
                pv, pl = parts[part]
                if pv[0] and sig.match_variants(pv, pl):
                    found.append(sig)
            elif sig.match_variants(variants, lowered):
                found.append(sig)
        return tuple(found)


class SignatureSet:
    """Every loaded signature, indexed by the piece of an event it looks at."""

    def __init__(self, signatures: Iterable[Signature]) -> None:
        self.signatures: tuple[Signature, ...] = tuple(signatures)
        self._by_id = {s.id: s for s in self.signatures}
        if len(self._by_id) != len(self.signatures):
            raise SignatureError("duplicate signature ids")
        self._order = {s.id: i for i, s in enumerate(self.signatures)}
        self._by_field: dict[str, tuple[Signature, ...]] = {}
        for sig in self.signatures:
            for name in sig.fields:
                self._by_field[name] = (*self._by_field.get(name, ()), sig)
        self._pieces: dict[str, _PieceMatcher] = {}
        for piece, field_names in PIECE_FIELDS.items():
            entries = [
                (sig, name if piece == "url" else "")
                for sig in self.signatures
                for name in field_names
                if name in sig.fields
            ]
            if entries:
                self._pieces[piece] = _PieceMatcher(entries, remember=piece in _REMEMBERED)
        self._url = self._pieces.get("url")
        self._agent = self._pieces.get("user_agent")
        self._referer = self._pieces.get("referer")

    def __len__(self) -> int:
        return len(self.signatures)

    def get(self, signature_id: str) -> Signature | None:
        return self._by_id.get(signature_id)

    def match_values(self, values: Mapping[str, str]) -> list[Signature]:
        """Signatures matching any of the values given by signature field name (path, query,
        url, headers, ...), in set order, each once. The plain reference that ``classify``'s
        piecewise, remembered matching must agree with."""
        hits: dict[str, Signature] = {}
        for name, raw in values.items():
            for sig in self._by_field.get(name, ()):
                if sig.id not in hits and sig.matches(raw):
                    hits[sig.id] = sig
        return sorted(hits.values(), key=lambda s: self._order[s.id])

    def match_event(self, event: Event) -> list[Signature]:
        """The signatures an event's request text matches, in set order, each once."""
        found = self._http_hits(event)
        if found is None:
            found = ()
            pieces = self._pieces
            for piece, value in event_pieces(event).items():
                if (m := pieces.get(piece)) is not None:
                    found += m.match(value)
        return self._ordered(found)

    def _ordered(self, found: tuple[Signature, ...]) -> list[Signature]:
        if len(found) > 1:
            unique = {sig.id: sig for sig in found}
            return sorted(unique.values(), key=lambda s: self._order[s.id])
        return list(found)

    def _http_hits(self, event: Event) -> tuple[Signature, ...] | None:
        """The shape every access-log line has (url, user agent, referer and nothing else
        to look at), with no dict of pieces built and the memory asked first; None for any
        other event."""
        if event.type is not _HTTP_REQUEST:
            return None
        f = event.fields
        url = f.get("url")
        if (
            url is None
            or "headers" in f
            or "body" in f
            or ("?" not in url and "query" in f)
            or (m := self._url) is None
        ):
            return None
        found = m.memory.get(url)
        if found is None:
            found = m.match(url)
        agent = f.get("user_agent")
        if agent and agent != "-" and (m := self._agent) is not None:
            known = m.memory.get(agent)
            if known is None:
                known = m.match(agent)
            if known:
                found += known
        referer = f.get("referer")
        if referer and referer != "-" and (m := self._referer) is not None:
            known = m.memory.get(referer)
            if known is None:
                known = m.match(referer)
            if known:
                found += known
        return found

    def classify(self, event: Event) -> Event:
        """``event`` with the matching signature ids added and ``danger`` raised to the
        highest danger among them; the same object when nothing matches."""
        found = self._http_hits(event)
        if found is None:
            hits = self.match_event(event)
        elif not found:
            return event  # the common case, answered without building anything
        else:
            hits = self._ordered(found)
        if not hits:
            return event
        ids = tuple(dict.fromkeys((*event.signatures, *(s.id for s in hits))))
        danger = max((event.danger, *(s.danger for s in hits)), key=lambda d: d.rank)
        return dataclasses.replace(event, signatures=ids, danger=danger)


def _compile(family: str, spec: SignatureSpec) -> Signature:
    m = spec.match
    flags = 0 if m.case_sensitive else re.IGNORECASE
    return Signature(
        id=spec.id,
        family=family,
        kind=spec.kind,
        danger=spec.danger,
        title_en=spec.title.en,
        title_ja=spec.title.ja,
        fields=tuple(spec.fields),
        decode=m.decode,
        case_sensitive=m.case_sensitive,
        substrings=tuple(
            s if m.case_sensitive else s.lower() for s in (m.substrings or ())
        ),
        regex=re.compile(m.regex, flags) if m.regex is not None else None,
        prefilter=tuple(m.prefilter or ()),
    )


def check_examples(spec: SignatureSpec, sig: Signature) -> list[str]:
    """Problems with a signature's own examples (empty when every example matches and no
    counter example does)."""
    problems = []
    for example in spec.examples:
        values = spec.example_values(example)
        if not any(sig.matches(v) for name, v in values.items() if name in sig.fields):
            problems.append(f"{sig.id}: example does not match: {example!r}")
    for example in spec.counter_examples:
        values = spec.example_values(example)
        if any(sig.matches(v) for name, v in values.items() if name in sig.fields):
            problems.append(f"{sig.id}: counter example matches: {example!r}")
    return problems


def load_file(path: Path) -> list[Signature]:
    """One family file, validated and compiled; raises SignatureError naming the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SignatureError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
        raw = safe_load(path.read_text(encoding="utf-8"))
        data = SignatureFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise SignatureError(f"{path.name}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SignatureError(f"{path.name}: {where}: {first['msg']}") from None
    if data.family != path.stem:
        raise SignatureError(f"{path.name}: family {data.family!r} must match the file name")
    out = []
    for spec in data.signatures:
        sig = _compile(data.family, spec)
        problems = check_examples(spec, sig)
        if problems:
            raise SignatureError(f"{path.name}: {problems[0]}")
        out.append(sig)
    return out


def load_dir(directory: Path) -> SignatureSet:
    signatures: list[Signature] = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.yaml")):
        for sig in load_file(path):
            if sig.id in seen:
                raise SignatureError(f"{path.name}: duplicate signature id {sig.id}")
            seen.add(sig.id)
            signatures.append(sig)
    if not signatures:
        raise SignatureError(f"no signature files in {directory}")
    return SignatureSet(signatures)


@cache
def _default() -> SignatureSet:
    return load_dir(DEFAULT_DIR)


def load(directory: Path | None = None) -> SignatureSet:
    """The bundled signatures (cached), or those in ``directory``."""
    return _default() if directory is None else load_dir(directory)
