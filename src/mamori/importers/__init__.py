"""Importers: other tools' output read into mamori's records (pure parsers, no probing)."""

from __future__ import annotations

from mamori.importers.nmap_xml import (
    MAX_BYTES,
    ImportProblem,
    NmapHeader,
    NmapImportError,
    NmapItem,
    NmapRun,
    iter_nmap_xml,
    parse_nmap_xml,
    stream_nmap_file,
)

__all__ = [
    "MAX_BYTES",
    "ImportProblem",
    "NmapHeader",
    "NmapImportError",
    "NmapItem",
    "NmapRun",
    "iter_nmap_xml",
    "parse_nmap_xml",
    "stream_nmap_file",
]
