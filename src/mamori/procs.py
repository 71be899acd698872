"""Processes of this host: the one answer to "does process ``pid`` still run?".

A leaf module (imports nothing of mamori), so every layer may use it: the store judges scans
left "running", the serve backends judge checks held by a worker of this host.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host; a zombie (dead, not yet reaped) counts
    as dead. Where existence cannot be tested safely (Windows) or the state cannot be read
    (no procfs, e.g. macOS), an existing process counts as alive: never guess one dead."""
    if sys.platform == "win32":
        # os.kill(pid, 0) would send CTRL_C_EVENT on Windows.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no procfs: existence is all we can know
    # The state letter follows the parenthesised command name, which may itself hold ")".
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
