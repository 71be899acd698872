"""The one seam through which audit adapters run platform commands."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OUTPUT_CAP = 4 * 1024 * 1024  # bytes of stdout kept from one command
DEFAULT_TIMEOUT = 20.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int  # 127: not installed; 124: timed out
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def missing(self) -> bool:
        return self.returncode == 127


class CommandRunner(Protocol):
    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult: ...


class SystemRunner:
    """Runs commands for real: bounded in time and output, never through a shell."""

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        args = tuple(argv)
        if shutil.which(args[0]) is None:
            return CommandResult(args, 127, "", f"{args[0]}: not installed")
        try:
            # argv comes from mamori's own adapters, never from a remote peer; no shell.
            proc = subprocess.run(  # noqa: S603
                args, capture_output=True, timeout=timeout, check=False,
                env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except subprocess.TimeoutExpired:
            return CommandResult(args, 124, "", f"timed out after {timeout:.0f} s")
        except OSError as exc:
            return CommandResult(args, 126, "", str(exc))
        return CommandResult(args, proc.returncode,
                             proc.stdout[:OUTPUT_CAP].decode("utf-8", "replace"),
                             proc.stderr[:65536].decode("utf-8", "replace"))


class ReplayRunner:
    """Answers from recorded outputs: a JSON file mapping "argv joined by spaces" to
    {"returncode", "stdout", "stderr"}. Unknown commands answer as not installed (127)."""

    def __init__(self, recordings: dict[str, dict[str, object]]) -> None:
        self.recordings = recordings
        self.calls: list[tuple[str, ...]] = []

    @classmethod
    def from_file(cls, path: Path) -> ReplayRunner:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def run(self, argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        rec = self.recordings.get(" ".join(args))
        if rec is None:
            return CommandResult(args, 127, "", f"{args[0]}: not recorded")
        return CommandResult(args, int(str(rec.get("returncode", 0))), str(rec.get("stdout", "")),
                             str(rec.get("stderr", "")))
