"""Inside checks as data: one YAML file per check in audit/catalog/, validated at load.

An adapter reports an AuditNote (check id, ok / problem / could not tell, evidence); this module
turns it into the same CheckResult a probe gives, with the catalog's title, severity, layer,
why-it-matters and fixes, so the checklist, the store and every report treat both alike.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mamori.checks.spec import Remediation, Text
from mamori.checks.texts import NOT_TESTED_PREFIX, PASSED_PREFIX, check_texts
from mamori.model import CheckResult, CheckStatus, Confidence, Evidence, Layer, Proto, Severity
from mamori.model.audit import AuditNote
from mamori.model.scan import TEXT_LANGS
from mamori.yamlload import safe_load

CATALOG_DIR = Path(__file__).resolve().parent / "catalog"


class NoteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")
    title: Text
    severity: Severity
    layer: Layer
    why: Text
    remediation: Remediation
    references: list[str] = Field(min_length=1)


class NoteCatalogError(ValueError):
    """An inside-check file is invalid; the message names the file."""


def load_notes(directory: Path = CATALOG_DIR) -> dict[str, NoteSpec]:
    """Every inside check by id. Raises NoteCatalogError on the first bad file."""
    out: dict[str, NoteSpec] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            spec = NoteSpec.model_validate(safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise NoteCatalogError(f"{path.name}: {str(exc).splitlines()[0]}") from None
        if spec.id != path.stem:
            raise NoteCatalogError(f"{path.name}: id {spec.id!r} differs from the file name")
        out[spec.id] = spec
    return out


@cache
def default_notes() -> dict[str, NoteSpec]:
    return load_notes()


def note_result(note: AuditNote, *, host: str = "localhost", port: int = 0,
                proto: Proto = Proto.TCP) -> CheckResult:
    """The CheckResult for one note. An id missing from the catalog is a bug: KeyError."""
    spec = default_notes()[note.check_id]
    # The note's detail is evidence (what the machine said), kept as it was read; a finding's
    # summary is the detail itself in every language.
    if note.ok is None:
        status, prefix = CheckStatus.NOT_TESTED, NOT_TESTED_PREFIX
    elif note.ok:
        status, prefix = CheckStatus.PASSED, PASSED_PREFIX
    else:
        status, prefix = CheckStatus.FINDING, {lang: "" for lang in TEXT_LANGS}
    summaries = {lang: prefix[lang] + note.detail for lang in TEXT_LANGS}
    summary = summaries["en"]
    return CheckResult(
        check_id=spec.id,
        address=host,
        port=port,
        proto=proto,
        status=status,
        severity=spec.severity,
        layer=spec.layer,
        confidence=Confidence.CONFIRMED if status is CheckStatus.FINDING else None,
        title=spec.title.en,
        summary=summary,
        evidence=Evidence(test=f"read {note.source}", reply=note.detail),
        remediation={"linux": spec.remediation.linux.en, "macos": spec.remediation.macos.en,
                     "router": spec.remediation.router.en},
        references=tuple(spec.references),
        texts=check_texts(spec, summaries),
    )
