"""nmap's file habits on `mamori scan`: ``-oN/-oX/-oG/-oA`` output files, ``-iL`` target
lists, and refusing a target that is really a file name (``mamori scan -oX out.xml`` used to
scan a host called "out.xml") before any name is looked up."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mamori.cli.common import UsageProblem

if TYPE_CHECKING:
    from mamori.model import ScanRecord

FILE_SUFFIXES = (".xml", ".txt", ".nmap", ".gnmap", ".csv", ".json", ".lst")
# nmap's -o<letter> formats: "-o X" written as one word is a habit, never a file name wanted.
_NMAP_FORMAT_LETTERS = frozenset("NXGASM")
MAX_LIST_BYTES = 16 * 1024 * 1024  # an -iL file: more than any MAX_HOSTS worth of specs


@dataclass(frozen=True, slots=True)
class NmapOutputs:
    """Files the finished scan is also written to, in nmap's formats (None: not asked)."""

    normal: Path | None = None
    xml: Path | None = None
    grepable: Path | None = None

    def files(self) -> tuple[tuple[str, Path], ...]:
        chosen = (("normal", self.normal), ("xml", self.xml), ("grepable", self.grepable))
        return tuple((kind, path) for kind, path in chosen if path is not None)


def _writable(option: str, path: Path) -> Path:
    if str(path) == "-":
        raise UsageProblem(f"{option} -: the report itself goes to stdout; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageProblem(f"{option} {path}: directory {parent} does not exist")
    if path.is_dir():
        raise UsageProblem(f"{option} {path}: is a directory")
    return path


def nmap_outputs(normal: Path | None, xml: Path | None, grepable: Path | None,
                 base: Path | None, output: Path | None) -> NmapOutputs:
    """The output files asked for (``-oA BASE``: BASE.nmap, BASE.xml, BASE.gnmap, each unless
    given on its own). Raises UsageProblem for "-", a missing directory, a directory, or
    ``-o`` given one of nmap's format letters (``-o X``: a file named "X" is never meant)."""
    if output is not None and str(output) in _NMAP_FORMAT_LETTERS:
        raise UsageProblem(f"-o {output}: write nmap's formats with -oN, -oX, -oG or -oA "
                           "FILE (to name a file so, write -o ./" + str(output) + ")")
    if base is not None:
        if str(base) == "-":
            raise UsageProblem("-oA -: give a base file name")
        normal = normal or base.with_name(base.name + ".nmap")
        xml = xml or base.with_name(base.name + ".xml")
        grepable = grepable or base.with_name(base.name + ".gnmap")
    return NmapOutputs(
        normal=_writable("-oN", normal) if normal is not None else None,
        xml=_writable("-oX", xml) if xml is not None else None,
        grepable=_writable("-oG", grepable) if grepable is not None else None,
    )


def parse_target_list(text: str) -> list[str]:
    """Target specs of an ``-iL`` list: whitespace-separated, ``#`` to the end of a line is a
    comment, blank lines skipped (nmap's rules)."""
    specs: list[str] = []
    for line in text.splitlines():
        specs.extend(line.split("#", 1)[0].split())
    return specs


def read_target_list(source: Path, stdin: TextIO = sys.stdin) -> list[str]:
    """The specs in file ``source`` (``-``: standard input); raises UsageProblem when it
    cannot be read, is too large, or names no target."""
    try:
        if str(source) == "-":
            text = stdin.read(MAX_LIST_BYTES + 1)
        else:
            with source.open(encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise UsageProblem(f"-iL {source}: cannot read: {exc.strerror or exc}") from None
    if len(text) > MAX_LIST_BYTES:
        raise UsageProblem(f"-iL {source}: larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB")
    specs = parse_target_list(text)
    if not specs:
        raise UsageProblem(f"-iL {source}: no targets in it")
    return specs


def _is_network(spec: str) -> bool:
    try:
        ipaddress.ip_network(spec.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def looks_like_file(spec: str) -> bool:
    """True when ``spec`` is more likely a file name than a host: a "/" that is not a CIDR
    block, a file suffix, or an existing file."""
    if _is_network(spec):
        return False
    if "/" in spec or spec.lower().endswith(FILE_SUFFIXES):
        return True
    return Path(spec).is_file()


def refuse_file_like(specs: Iterable[str]) -> None:
    """Raise UsageProblem naming the first target that looks like a file (no lookup made)."""
    for spec in specs:
        if looks_like_file(spec):
            raise UsageProblem(f"target {spec!r} looks like a file: use -iL FILE for a target "
                               "list, -oN/-oX/-oG/-oA FILE for output")


def write_outputs(record: ScanRecord, outputs: NmapOutputs) -> list[Path]:
    """Write ``record`` to each asked file; returns the paths written. Raises OSError."""
    from mamori.report import render
    from mamori.report.nmap_grep import render_nmap_grepable
    from mamori.report.nmap_xml import render_nmap_xml

    written: list[Path] = []
    for kind, path in outputs.files():
        if kind == "xml":
            text = render_nmap_xml(record)
        elif kind == "grepable":
            text = render_nmap_grepable(record)
        else:
            text = render(record, "table", width=120)
            text = text if text.endswith("\n") else text + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
