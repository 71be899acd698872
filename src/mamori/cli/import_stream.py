"""The two passes of `mamori import` over an nmap XML file, each with bounded memory.

Pass one (``survey``) reads the whole file without storing anything: a file mamori refuses
(DTD, entities, malformed XML, not nmap's) is refused before the store is touched, and the run's
header and host addresses are known before the scan record is begun. Pass two (``store_hosts``)
reads it again and hands each host to the store as soon as it is parsed (and runs the chosen
checks on it), so neither the file nor the run is ever held whole.

What the file held that mamori did not take (``ImportProblem``) is counted, the first
``MAX_STORED_PROBLEMS`` are stored as errors of the run (one more error says how many were left
out), and the first ``SHOWN_PROBLEMS`` are named on stderr by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mamori.importers import ImportProblem, NmapHeader, stream_nmap_file
from mamori.model import ErrorKind, HostResult, ProbeError

if TYPE_CHECKING:
    from mamori.checks.spec import CheckSpec
    from mamori.scan.store_sink import StoreSink

MAX_STORED_PROBLEMS = 100
SHOWN_PROBLEMS = 3
BATCH = 200  # hosts per commit: few commits, and never more than this many hosts in memory
PROBE = "import:nmap-xml"


@dataclass
class Survey:
    """What pass one learnt: how nmap was run, the hosts' addresses (file order), and how
    many things the file held that will not be taken, with the first few."""

    args: str = ""
    version: str = ""
    start: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    problem_count: int = 0
    first_problems: list[str] = field(default_factory=list)

    def note(self, problem: ImportProblem) -> None:
        self.problem_count += 1
        if len(self.first_problems) < SHOWN_PROBLEMS:
            self.first_problems.append(problem.detail)


def survey(path: Path) -> Survey:
    """Read ``path`` once, storing nothing. Raises ``NmapImportError`` for a refused file."""
    run = Survey()
    for item in stream_nmap_file(path):
        if isinstance(item, NmapHeader):
            run.args, run.version, run.start = item.args, item.version, item.start
            run.info = dict(item.info)
        elif isinstance(item, HostResult):
            run.targets.append(item.address)
        else:
            run.note(item)
    return run


def _error(problem: ImportProblem) -> ProbeError:
    return ProbeError(address=problem.address, port=problem.port_number, proto=None,
                      kind=ErrorKind.PROTOCOL, detail=problem.detail, probe=PROBE)


async def store_hosts(path: Path, sink: StoreSink, specs: list[CheckSpec]) -> int:
    """Read ``path`` again, writing the hosts (and the results of ``specs`` on their
    endpoints) through ``sink`` as they are parsed, ``BATCH`` hosts per commit, and the
    problems as errors (the first ``MAX_STORED_PROBLEMS``, then one that counts the rest).
    Returns the number of hosts.

    Raises ``NmapImportError`` when the file changed into one that is refused since pass one,
    ``StoreError`` when a write fails.
    """
    from mamori.checks.engine import run_checks

    hosts = problems = 0
    batch: list[HostResult] = []

    async def flush() -> None:
        sink.on_hosts(batch.copy())
        for host in batch if specs else ():
            for ep in host.endpoints:
                for result in await run_checks(specs, ep, ep.service, hostname=host.hostname):
                    sink.on_check(result)
        batch.clear()

    for item in stream_nmap_file(path):
        if isinstance(item, ImportProblem):
            problems += 1
            if problems <= MAX_STORED_PROBLEMS:
                sink.on_error(_error(item))
        elif isinstance(item, HostResult):
            hosts += 1
            batch.append(item)
            if len(batch) >= BATCH:
                await flush()
    await flush()
    if problems > MAX_STORED_PROBLEMS:
        sink.on_error(ProbeError(
            address=None, port=None, proto=None, kind=ErrorKind.PROTOCOL, probe=PROBE,
            detail=f"{problems - MAX_STORED_PROBLEMS} more problems in the file not stored "
            f"one by one ({problems} in all)"))
    return hosts
