"""Pre-fork servers: who this process's master is, and who the master's workers are.

Some servers serve from worker processes under a master; the server's module says
when this process is one of them (:meth:`~.servers.base.ServerSupport.prefork_here`)
and which master the server recorded (``master_at_open``). Each worker holds part of
the data (see :mod:`.workers`), and the stop goes to the master (see :mod:`.stopping`).

Who the master is is checked, never assumed: a process that merely imported a server
in a ``multiprocessing`` child of a test harness is no worker, and its parent (the
harness) is no master; a worker whose master died was adopted by another process
(pid 1, a subreaper), which is no master either. Either way the stop signals no one
else: the process stops by its own path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = [
    "PreforkServer",
    "children",
    "lost_master",
    "master",
    "remember_master",
]


class PreforkServer(Protocol):
    """What :func:`remember_master` asks of a server
    (:class:`~.servers.base.ServerSupport`)."""

    def master_at_open(self) -> int | None:
        """The master's pid as the server recorded it; None in a master that forks."""


#: The pid of this process's master, as the server recorded it (None: no master).
_master: int | None = None
_hooked: list[bool] = []  # whether each forked child notes its parent (once)


def remember_master(server: PreforkServer | None) -> None:
    """Note this process's master when the door opens, as ``server`` (the pre-fork server
    of this process, if any) recorded it; in a master that imports the app before it
    forks, each forked child's parent at the fork."""
    global _master
    if server is None:
        return
    _master = server.master_at_open()
    if _master is None and not _hooked:
        _hooked.append(True)
        os.register_at_fork(after_in_child=_forked)


def _forked() -> None:
    global _master
    _master = os.getppid()


def master() -> int | None:
    """The pid of the pre-fork master this process serves under, while it is still its
    parent; None in a process with no master, or whose master died (it was adopted)."""
    if _master is None or os.getppid() != _master:
        return None
    return _master


def lost_master() -> int | None:
    """The pid of this worker's master if it died (another process adopted this one)."""
    return _master if _master is not None and os.getppid() != _master else None


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
