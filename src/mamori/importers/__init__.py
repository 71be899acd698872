"""Importers: other tools' output read into mamori's records (pure parsers, no probing)."""

from __future__ import annotations

from mamori.importers.nmap_xml import (
    MAX_BYTES,
    NmapImportError,
    NmapRun,
    parse_nmap_xml,
    read_nmap_xml,
)

__all__ = ["MAX_BYTES", "NmapImportError", "NmapRun", "parse_nmap_xml", "read_nmap_xml"]
