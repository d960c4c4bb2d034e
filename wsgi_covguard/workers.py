"""One command, every process: save, reset and context under a pre-fork server.

A control request reaches one worker of a pre-fork server, but every worker
(and a master that imports the app before it forks) holds part of the data. So each
measuring process of a pre-fork server listens on a Unix socket of its own,
``<run dir>/<pid>.sock``, in a folder only this user can enter (mode 0700). The
worker that receives the request applies the command to itself and sends it,
one JSON line, to the master and each sibling: the pids come from
``/proc/<master>/task/<master>/children`` (Linux), so nothing has to register or
be cleaned up when a worker dies. A process that does not answer within a few
seconds is reported, not waited for.

The listener starts where the middleware is built, and again in each child
after a fork (``os.register_at_fork``), since a preloaded app is built once in
the master. Single-process servers never start one.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import socket
import socketserver
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coverage

from . import ending
from .errors import SaveError
from .prefork import children, master
from .safefiles import private_folder
from .servers import prefork_here
from .session import CoverageSession
from .threads import start_thread

__all__ = ["Failure", "Siblings"]

_TIMEOUT = 10.0
#: How long a sibling that is still booting may take to start listening.
_BOOT_TIMEOUT = 5.0


def _run_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return private_folder(Path(base) / f"covguard-{os.getuid()}")


@dataclass(frozen=True)
class Failure:
    """A process that did not carry a command out: its pid, why, and whether it could
    not write its data (answered 507)."""

    pid: int
    message: str
    saving: bool = False

    def __str__(self) -> str:
        return f"process {self.pid}: {self.message}"


class Siblings:
    """This process and, under a pre-fork server, the master and the other workers."""

    def __init__(self, session: CoverageSession) -> None:
        self.session = session
        self._server: socketserver.UnixStreamServer | None = None
        self._forked_hook = False
        #: What ``stop-accepting`` does in this process (the ASGI door's: stop accepting, drain
        #: until quiet); nothing if unset.
        self.on_stop_accepting: Callable[[float], None] | None = None
        #: What ``deadline`` does here: the stop must be over by then (the guard's).
        self.on_deadline: Callable[[float], None] | None = None

    # -- the commands, as each process applies them --------------------------------

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command in this process; the answer names the pid (and, for save, the file).

        A data file that cannot be written (a full disk) raises :class:`SaveError`
        with one line saying so. coverage.py writes its file without a journal, so
        nothing is written without room for it first (see
        :meth:`CoverageSession._short_of_room`).
        """
        operation = command.get("op")
        answer: dict[str, Any] = {"pid": os.getpid()}
        try:
            if operation == "save":
                error = self.session.save()
                if error is not None:
                    raise SaveError(error)
                answer["data_file"] = self.session.current_file
            elif operation == "fingerprint":
                answer["fingerprint"] = self.session.fingerprint()
            elif operation == "dump":
                answer["data"] = base64.b64encode(self.session.dump()).decode("ascii")
            elif operation == "reset":
                self.session.reset(to_start=command.get("to") == "start")
            elif operation == "context":
                self.session.switch_context(str(command["context"]))
            elif operation == "current-context":  # a sibling opening late (join_context)
                answer["context"] = self.session.context
            elif operation == "stop-accepting":  # a sibling's stop began (see Guard)
                if self.on_stop_accepting is not None:
                    self.on_stop_accepting(float(command["settle"]))
            elif operation == "deadline":  # a sibling's stop began: it ends by then
                if self.on_deadline is not None:
                    self.on_deadline(float(command["at"]))
            else:
                raise ValueError(f"unknown command {operation!r}")
        except coverage.CoverageException as exc:
            raise SaveError(f"could not save coverage data: {exc}") from None
        return answer

    def broadcast(
        self, command: dict[str, Any], *, here: bool = True
    ) -> tuple[list[dict[str, Any]], list[Failure]]:
        """Apply ``command`` here (unless ``here`` is False) and in every sibling, all at
        once; (answers, failures).

        The siblings work in parallel (16 workers saving one after the other would take
        16 times as long as one); this process does its own part meanwhile.
        """
        answers: list[dict[str, Any]] = []
        failures: list[Failure] = []
        siblings = self.siblings()
        with ThreadPoolExecutor(max_workers=max(1, len(siblings))) as pool:
            sent = {pid: pool.submit(self._send, pid, command) for pid in siblings}
            try:
                if here:
                    answers.append(self.apply(command))
            except OSError as exc:
                failures.append(Failure(os.getpid(), str(exc), isinstance(exc, SaveError)))
            for pid, answer in sent.items():
                try:
                    answers.append(answer.result())
                except SaveError as exc:
                    failures.append(Failure(pid, str(exc), saving=True))
                except (OSError, ValueError) as exc:
                    failures.append(Failure(pid, str(exc)))
        return answers, failures

    @contextlib.contextmanager
    def combined(self) -> Iterator[str]:
        """Every process's data so far, combined in one data file in a private temporary folder.

        Nothing is saved: each process hands over what it measured (see
        :meth:`CoverageSession.dump`), so reading the data changes no file of the
        user's. Raises ``OSError`` (answered 507) when a process does not answer.
        """
        with tempfile.TemporaryDirectory(prefix="covguard-combined-") as folder:
            path = os.path.join(folder, "combined")
            combined = coverage.CoverageData(basename=path)
            for part in self.parts():
                combined.update(part)
                part.close(force=True)
            combined.write()
            combined.close(force=True)
            yield path

    def parts(self) -> list[coverage.CoverageData]:
        """Every process's data so far, in memory (see :meth:`CoverageSession.dump`); the
        caller closes each (``close(force=True)``: coverage.py leaves an in-memory
        database open otherwise, half a megabyte of native memory a report).

        Raises ``OSError`` (answered 507) when a process does not answer.
        """
        answers, failures = self.broadcast({"op": "dump"})
        if failures:
            raise OSError("; ".join(map(str, failures)))
        parts = []
        for answer in answers:
            part = coverage.CoverageData(no_disk=True)
            part.loads(base64.b64decode(answer["data"]))
            parts.append(part)
        return parts

    def fingerprint(self) -> list[Any] | None:
        """Every process's :meth:`CoverageSession.fingerprint`; None if one did not answer."""
        answers, failures = self.broadcast({"op": "fingerprint"})
        if failures:
            return None
        return sorted(answer["fingerprint"] for answer in answers)

    def siblings(self, boot_timeout: float = _BOOT_TIMEOUT) -> list[int]:
        """The other measuring processes of this server: the master's other children (the
        workers, given ``boot_timeout`` seconds in all to finish booting) and the master
        itself if it measures (``--preload``)."""
        if self._server is None:
            return []
        folder = _run_dir()
        me, parent = os.getpid(), master()
        if parent is None:  # its master died: the siblings cannot be told apart from others
            return []
        # The master measures only with --preload, and then listens before any worker
        # exists. Its file alone proves nothing (see below).
        found = [parent] if _listens(folder / f"{parent}.sock") else []
        deadline = time.monotonic() + boot_timeout
        for pid in children(parent):
            if pid == me:
                continue
            # Workers are alike: this one measures, so a booting sibling soon listens. (A
            # file alone proves nothing: a process killed past atexit leaves its own, and
            # pids come back.)
            while not _listens(folder / f"{pid}.sock") and time.monotonic() < deadline:
                time.sleep(0.02)
            found.append(pid)
        return found

    def worker_count(self) -> int:
        """Worker processes serving: the master's children under a pre-fork server, else 1."""
        parent = master()
        return len(children(parent)) if self._server is not None and parent else 1

    # -- the listener ------------------------------------------------------------------

    def listen_if_prefork(self) -> None:
        """Listen for siblings' commands under a pre-fork server, here and in forked children;
        and take the siblings' current context (:meth:`join_context`)."""
        if prefork_here() is None:
            return
        self._listen()
        if not self._forked_hook:
            self._forked_hook = True
            os.register_at_fork(after_in_child=self._listen_in_child)
        self.join_context()  # before this process serves: its first request is labelled

    def join_context(self) -> None:
        """Take the dynamic context the siblings record under, if one was set before this
        process listened (a worker the server started again after a switch): its lines
        carried the empty context until the next switch. Asked of the siblings already
        listening, in turn, for a second at most; a switch that reaches this process
        meanwhile wins."""
        if self.session.context is not None:
            return  # set already (inherited at a fork, or a switch came)
        folder = _run_dir()
        deadline = time.monotonic() + 1.0
        for pid in self.siblings(boot_timeout=0):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not _listens(folder / f"{pid}.sock"):
                continue  # booting too: it knows no more than this process
            try:
                context = self._send(pid, {"op": "current-context"}, timeout=left)["context"]
            except (OSError, ValueError, KeyError):
                continue
            if context is not None:
                self.session.take_context(str(context))
            return

    def _listen_in_child(self) -> None:
        if self._server is not None:
            self._server.socket.close()  # the parent's; its file is the parent's to remove
            self._server = None
        self._listen()

    def _listen(self) -> None:
        path = _run_dir() / f"{os.getpid()}.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a dead process whose pid came back
        group = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                # A thread of ours, made for this one command: no line of the app runs
                # here, and a copy or a save of the data is twice as slow traced.
                sys.settrace(None)
                line = self.rfile.readline()
                if not line:  # a sibling checking that this process listens
                    return
                try:
                    answer = group.apply(json.loads(line))
                except Exception as exc:  # answered, not raised: the caller reports it
                    answer = {"pid": os.getpid(), "error": str(exc)}
                    answer["saving"] = isinstance(exc, SaveError)
                # A sibling that stopped waiting (its timeout, under load) is no error here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        server = _Listener(str(path), Handler)
        self._server = server
        ending.remove_at_exit(functools.partial(path.unlink, missing_ok=True))
        # Its handler threads inherit the blocked signals.
        start_thread(server.serve_forever, name="covguard-control")

    def _send(self, pid: int, command: dict[str, Any], timeout: float = _TIMEOUT) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            _connect(sock, str(_run_dir() / f"{pid}.sock"))
            sock.sendall(json.dumps(command).encode() + b"\n")
            with sock.makefile("rb") as answers:
                answer: dict[str, Any] = json.loads(answers.readline())
        if "error" in answer:
            raise (SaveError if answer.get("saving") else ValueError)(answer["error"])
        return answer


class _Listener(socketserver.ThreadingUnixStreamServer):
    """A thread per command, so that commands from several siblings run at once; and
    in this thread when no thread can start.

    From Python 3.12 an exiting interpreter starts no thread (``RuntimeError``), and a
    worker on its way out (its atexit work, waiting for its threads) is still a
    sibling: its command would go unanswered, with a traceback in the server's log.
    """

    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            socketserver.BaseServer.process_request(self, request, client_address)


def _listens(path: Path) -> bool:
    """True if a process listens on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _connect(sock: socket.socket, path: str) -> None:
    """Connect to a sibling's socket, which a booting sibling may have bound and not yet
    listened on (its file exists from bind() on): refused, it is tried again, a while."""
    deadline = time.monotonic() + _BOOT_TIMEOUT
    while True:
        try:
            sock.connect(path)
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
