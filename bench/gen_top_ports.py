"""Regenerate mamori's own port tables, src/mamori/data/ports-{tcp,udp}.txt.

These are the tables ``--top-ports`` uses when nmap is not installed (with nmap installed, mamori
reads nmap's own ``nmap-services`` at run time instead; see src/mamori/ports.py). They are built
from sources mamori may redistribute, and from nothing of nmap's:

1. ``HOME_TCP`` / ``HOME_UDP`` below: mamori's own judgement, written by hand, of the services a
   home server, NAS, Raspberry Pi or small-office host most often exposes, most common first.
2. Every port mamori's identification table (src/mamori/identify/probes.yaml) names, in the order
   the table names them: the services mamori identifies and checks.
3. Every other port the IANA Service Name and Transport Protocol Port Number Registry assigns to
   a named service for that protocol: the system ports (1-1023) in ascending order, then the user
   ports (1024-49151) in ascending order. The registry is dedicated to the public domain
   (CC0 1.0; https://www.iana.org/help/licensing-terms).

Regenerate (by hand, when the registry or the lists below change):

    curl -O https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv
    python bench/gen_top_ports.py --iana service-names-port-numbers.csv

The output is data, committed to the repository; the header of each file names the registry
file's sha256 and latest modification date. docs/ports.md says the same for users.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "mamori" / "data"
PROBES = ROOT / "src" / "mamori" / "identify" / "probes.yaml"

# mamori's judgement, most often exposed first: remote login and the web, then file sharing and
# the NAS/home-lab web consoles, mail, databases and caches left open, printers and media, IoT,
# VPNs, containers and admin consoles. Written from mamori's checks and what its users run.
HOME_TCP = (
    22, 80, 443, 445, 139, 8080, 53, 21, 23, 3389, 5900, 8443, 548, 631, 111, 2049, 25, 587,
    465, 993, 995, 143, 110, 135, 5000, 5001, 8000, 8008, 8888, 8081, 3000, 9000, 9090, 9443,
    10000, 8123, 32400, 8096, 8920, 8384, 22000, 9091, 3306, 5432, 6379, 27017, 11211, 9200,
    5601, 5984, 2375, 2376, 1883, 8883, 1080, 3128, 8118, 9050, 873, 3260, 515, 9100, 554,
    1900, 5357, 7000, 8009, 62078, 49152, 49153, 2222, 2200, 8022, 5985, 5986, 88, 389, 636,
    3268, 1433, 1521, 6443, 10250, 8086, 1723, 1194, 500, 5060, 5061, 3478, 5222, 5269, 6667,
    6697, 25565, 27015, 7777, 81, 82, 8001, 8082, 8083, 8084, 8085, 8088, 8089, 8090, 8181,
    8200, 8880, 8291, 8728, 8729, 7547, 37777, 34567, 10001, 1400, 3690, 9418, 11434, 853,
    4443, 990, 992, 563, 591, 119, 79, 113, 179, 5353, 6000, 6001, 4444, 5555, 5800, 5901,
    5902, 3283, 5433, 6380, 16379, 27018, 27019, 1812, 1701, 2082, 2083, 2086, 2087, 2095,
    2096, 8140, 8161, 61616, 5672, 15672, 4369, 9092, 2181, 7001, 7199, 9042, 8091, 50000,
    50070, 8020, 9870, 2379, 2380, 4001, 8500, 8600, 9093, 9094, 9115, 9187, 3100, 19999,
    61208, 8006, 8007, 8010, 7070, 8099, 8554, 1935, 4000, 4040, 6881, 51413, 9101, 9102, 9103,
)

HOME_UDP = (
    53, 123, 137, 138, 161, 1900, 5353, 67, 68, 69, 500, 4500, 1194, 51820, 5060, 3478, 11211,
    514, 520, 162, 111, 2049, 1812, 1813, 1701, 3702, 5355, 427, 623, 5683, 47808, 20000,
    10001, 17185, 1434, 41641, 6881, 27015, 19132, 9987, 3389, 443, 88, 464, 389,
)


def probe_ports(text: str) -> list[int]:
    """Return every port named under a ``ports:`` key of the identification table, in order."""
    found: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ports" and isinstance(value, list):
                    found.extend(p for p in value if isinstance(p, int))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(text))
    return found


def iana_ports(csv_text: str, proto: str) -> list[int]:
    """Return the single ports the IANA registry assigns to a named service for ``proto``."""
    ports: set[int] = set()
    for row in csv.DictReader(io.StringIO(csv_text)):
        number = (row.get("Port Number") or "").strip()
        if row.get("Transport Protocol") != proto or not row.get("Service Name"):
            continue
        if number.isdigit() and 1 <= int(number) <= 49151:
            ports.add(int(number))
    return sorted(ports)  # system ports (1-1023) come first by being lower


def ranked(*sources: list[int] | tuple[int, ...]) -> list[int]:
    """Concatenate ``sources``, keeping each port's first place."""
    seen: dict[int, None] = {}
    for source in sources:
        for port in source:
            if 1 <= port <= 65535:
                seen.setdefault(port, None)
    return list(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iana", type=Path, required=True, help="service-names-port-numbers.csv")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    raw = args.iana.read_bytes()
    text = raw.decode("utf-8", "replace")
    modified = max(
        (r.get("Modification Date") or "" for r in csv.DictReader(io.StringIO(text))), default=""
    )
    probes = probe_ports(PROBES.read_text(encoding="utf-8"))
    for proto, home in (("tcp", HOME_TCP), ("udp", HOME_UDP)):
        ports = ranked(home, probes if proto == "tcp" else [], iana_ports(text, proto))
        header = [
            f"# mamori's own port table, {proto.upper()}: one port per line, first = chosen first.",
            "# Used by --top-ports when nmap's nmap-services is not installed.",
            "# Made by bench/gen_top_ports.py (do not edit by hand) from: mamori's hand-ranked",
            "#   list of ports home and small-office hosts expose (HOME_"
            f"{proto.upper()} in the script),",
            "#   the ports of src/mamori/identify/probes.yaml"
            + (" (TCP only)," if proto == "tcp" else " (not used for UDP),"),
            "#   then the IANA Service Name and Transport Protocol Port Number Registry's",
            "#   assigned ports (1-1023 ascending, then 1024-49151 ascending); registry file",
            f"#   sha256 {hashlib.sha256(raw).hexdigest()[:16]}..., last modified {modified},",
            "#   CC0 1.0 (https://www.iana.org/help/licensing-terms). See docs/ports.md.",
            f"# {len(ports)} ports.",
        ]
        body = "\n".join(header + [str(p) for p in ports]) + "\n"
        (args.out / f"ports-{proto}.txt").write_text(body, encoding="ascii")
        print(f"{proto}: {len(ports)} ports")


if __name__ == "__main__":
    main()
