"""Pre-fork servers: which they are, and how a process or a request knows it is in one.

gunicorn, granian, uvicorn (``--workers``, ``--reload``) and hypercorn (its command
line: one worker or more) serve from worker processes under a master. Each worker
holds part of the data (see :mod:`.workers`), the stop goes to the master (see
:mod:`.stopping`), and ``covguard serve`` starts them differently (see
:mod:`.servers`). What marks a worker lives here (and hypercorn's stop event, in
:mod:`.servers.hypercorn`).

Who the master is is checked, never assumed: a process that merely imported uvicorn
in a ``multiprocessing`` child of a test harness is no worker, and its parent (the
harness) is no master; a worker whose master died was adopted by another process
(pid 1, a subreaper), which is no master either. Either way the stop signals no one
else: the process stops by its own path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "children",
    "in_prefork_process",
    "lost_master",
    "master",
    "remember_master",
    "serves_prefork",
]


def in_prefork_process() -> bool:
    """True in a process of a pre-fork server: gunicorn's master or workers (``--preload``
    imports the app in the master), or a granian, uvicorn or hypercorn worker: a
    multiprocessing child of the server's supervisor, running the server's own worker
    function (not a harness's function that runs the server in a child of its own)."""
    if "gunicorn" in sys.modules:
        return True
    mp = sys.modules.get("multiprocessing")
    if mp is None or mp.parent_process() is None:
        return False
    # uvicorn._subprocess.subprocess_started, hypercorn.asyncio.run.asyncio_worker,
    # granian.server.mp.MPServer._spawn_wsgi_worker, ...
    module = getattr(getattr(mp.current_process(), "_target", None), "__module__", None) or ""
    return module.partition(".")[0] in _SUPERVISED


#: Servers whose supervisor starts its workers with multiprocessing.
_SUPERVISED = ("granian", "uvicorn", "hypercorn")

#: The pid of this process's master, as the server recorded it (None: no master).
_master: int | None = None
_hooked: list[bool] = []  # whether each forked child notes its parent (once)


def remember_master() -> None:
    """Note this process's master when the door opens, as the server itself recorded it
    (never today's parent, which may have adopted an orphan): the pid multiprocessing
    gave a supervised worker, the arbiter's that gunicorn gave its worker; under
    gunicorn ``--preload``, where the door opens in the arbiter, each forked child's
    parent at the fork."""
    global _master
    if "gunicorn" in sys.modules:
        worker = _gunicorn_worker()
        if worker is not None:
            _master = int(worker.ppid)
        elif not _hooked:  # the arbiter (--preload): its children are the workers
            _hooked.append(True)
            os.register_at_fork(after_in_child=_forked)
        return
    if in_prefork_process():
        import multiprocessing

        parent = multiprocessing.parent_process()
        _master = parent.pid if parent is not None else None


def _forked() -> None:
    global _master
    _master = os.getppid()


def _gunicorn_worker() -> Any | None:
    """The gunicorn worker loading the app on this thread, if any (its ``ppid`` is the
    arbiter's pid, which gunicorn itself checks in the worker's loop)."""
    base = sys.modules.get("gunicorn.workers.base")
    frame = sys._getframe(1)
    while base is not None and frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, base.Worker):
            return owner
        frame = frame.f_back  # type: ignore[assignment]
    return None


def master() -> int | None:
    """The pid of the pre-fork master this process serves under, while it is still its
    parent; None in a process with no master, or whose master died (it was adopted)."""
    if _master is None or os.getppid() != _master:
        return None
    return _master


def lost_master() -> int | None:
    """The pid of this worker's master if it died (another process adopted this one)."""
    return _master if _master is not None and os.getppid() != _master else None


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
