"""Pre-fork servers: which they are, and how a process or a request knows it is in one.

gunicorn, granian, uvicorn (``--workers``, ``--reload``) and hypercorn (its command
line: one worker or more) serve from worker processes under a master. Each worker
holds part of the data (see :mod:`.workers`), the stop goes to the master (see
:mod:`.stopping`), and ``covguard serve`` starts them differently (see
:mod:`.servers`). What marks them lives here, and only here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "LOADS_IN_WORKERS",
    "PREFORK",
    "children",
    "hypercorn_stop_event",
    "in_prefork_process",
    "serves_prefork",
]

#: Servers with several processes (``--workers``).
PREFORK = frozenset({"gunicorn", "granian"})
#: Servers whose workers import the application themselves: their launcher takes a
#: function that returns it, called in each worker.
LOADS_IN_WORKERS = frozenset({"granian"})


def in_prefork_process() -> bool:
    """True in a process of a pre-fork server: gunicorn's master or workers (``--preload``
    imports the app in the master), or a granian, uvicorn or hypercorn worker (a
    multiprocessing child of the server's supervisor)."""
    if "gunicorn" in sys.modules:
        return True
    mp = sys.modules.get("multiprocessing")
    child = mp is not None and mp.parent_process() is not None
    return child and any(server in sys.modules for server in _SUPERVISED)


#: Servers whose supervisor starts its workers with multiprocessing.
_SUPERVISED = ("granian", "uvicorn", "hypercorn")


def hypercorn_stop_event() -> Any | None:
    """In a worker of hypercorn's command line, the event its master sets to stop them all
    (the worker's own ``shutdown_event`` argument); None elsewhere."""
    if "hypercorn" not in sys.modules:
        return None
    import multiprocessing

    if multiprocessing.parent_process() is None:
        return None
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    event = kwargs.get("shutdown_event") if isinstance(kwargs, dict) else None
    return event if hasattr(event, "is_set") and hasattr(event, "wait") else None


def serves_prefork(environ: Mapping[str, Any]) -> bool:
    """True if a pre-fork server's worker is serving the request of ``environ``."""
    return "gunicorn.socket" in environ or environ.get("SERVER_SOFTWARE") == "Granian"


def children(pid: int) -> list[int]:
    """The worker processes of the master ``pid``, from ``/proc`` (Linux): its children but
    multiprocessing's own helpers (the resource tracker of a supervisor that spawns)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split() if not _is_helper(int(child))]


_HELPERS = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")


def _is_helper(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(helper in command for helper in _HELPERS)
