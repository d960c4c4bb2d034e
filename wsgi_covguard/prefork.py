"""Pre-fork servers: which they are, and how a process or a request knows it is in one.

gunicorn and granian serve from several worker processes under a master. Each worker
holds part of the data (see :mod:`.workers`), the stop goes to the master (see
:mod:`.stopping`), and ``covguard serve`` starts them differently (see
:mod:`.servers`). What marks them lives here, and only here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LOADS_IN_WORKERS", "PREFORK", "children", "in_prefork_process", "serves_prefork"]

#: Servers with several processes (``--workers``).
PREFORK = frozenset({"gunicorn", "granian"})
#: Servers whose workers import the application themselves: their launcher takes a
#: function that returns it, called in each worker.
LOADS_IN_WORKERS = frozenset({"granian"})


def in_prefork_process() -> bool:
    """True in a process of a pre-fork server: gunicorn's master or workers (``--preload``
    imports the app in the master), or a granian worker (a multiprocessing child)."""
    if "gunicorn" in sys.modules:
        return True
    mp = sys.modules.get("multiprocessing")
    return "granian" in sys.modules and mp is not None and mp.parent_process() is not None


def serves_prefork(environ: Mapping[str, Any]) -> bool:
    """True if a pre-fork server's worker is serving the request of ``environ``."""
    return "gunicorn.socket" in environ or environ.get("SERVER_SOFTWARE") == "Granian"


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a master's workers), from ``/proc`` (Linux)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]
