"""Start ``covguard serve`` in a child process and wait until it listens: once, for
``covguard run`` and the pytest plugin.

The server says it listens in one line on its standard output, ``covguard: serving
APP on URL (...)``, printed once its socket accepts connections. The child's output
is passed on line by line, the ready line included, for as long as it runs (an unread
pipe would block a chatty server): to ours (``covguard run``), or with its standard
error to a file of its own (the pytest plugin: a server's access log is not a test's
output). The wait for the line has a deadline, and a child that dies first or misses
it is said so in one line, and ended.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from .errors import ConfigError

__all__ = ["READY_LINE", "Spawned", "serve_argv", "spawn"]

#: The line ``covguard serve`` prints once it listens; ``url`` is where.
READY_LINE = re.compile(r"^covguard: serving \S+ on (?P<url>http://\S+) ")


@dataclass(frozen=True)
class Spawned:
    """A server we started: its process (ours to end) and where it listens."""

    process: subprocess.Popen[str]
    url: str


def serve_argv(
    app: str,
    *,
    server: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    app_dir: str = ".",
    threads: int | None = None,
    workers: int | None = None,
    contexts: bool = False,
    autosave: float | None = None,
) -> list[str]:
    """The command line of ``covguard serve`` with these options, in this interpreter."""
    argv = [sys.executable, "-m", "wsgi_covguard", "serve", app,
            "--host", host, "--port", str(port), "--app-dir", app_dir]  # fmt: skip
    if server:  # else serve's own choice, by the app's kind
        argv += ["--server", server]
    if threads:
        argv += ["--threads", str(threads)]
    if workers:
        argv += ["--workers", str(workers)]
    if contexts:
        argv.append("--contexts")
    if autosave:
        argv += ["--autosave", str(autosave)]
    return argv


def spawn(argv: list[str], *, token: str, timeout: float, log: TextIO | None = None) -> Spawned:
    """Run ``argv`` with ``COVGUARD_TOKEN=token``; return once it listens.

    ``log``: where its standard output and error go (default: its output to ours, its
    errors to our standard error). Raises :class:`ConfigError` if it exits first or does
    not listen within ``timeout`` seconds (it is then ended).
    """
    process = subprocess.Popen(
        argv,
        env={**os.environ, "COVGUARD_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=None if log is None else subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    out = sys.stdout if log is None else log
    seen = "above" if log is None else f"in {getattr(log, 'name', 'its log')}"
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                out.write(line)
                out.flush()
            except (ValueError, OSError):  # our output is closed (pytest's capture): drain
                pass
            match = READY_LINE.match(line)
            if match and not found:
                found.append(match["url"])
                ready.set()
        ready.set()  # its output ended: it is gone

    threading.Thread(target=pump, name="covguard-output", daemon=True).start()
    if not ready.wait(timeout) or not found:
        timed_out = not ready.is_set()
        if process.poll() is None:
            process.kill()
        code = process.wait()
        if timed_out:
            raise ConfigError(
                f"the server did not listen within {timeout:g}s; see its output {seen}"
            )
        raise ConfigError(f"the server exited with status {code} before listening; see {seen}")
    return Spawned(process, found[0])
