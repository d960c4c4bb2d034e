"""coverage.py's parsing of many source files at once, in helper processes.

The first report of a large codebase is all parsing: coverage.py's ``PythonParser``
reads every measured file for its statements, exclusions and branches (885 files of
Django: seconds, the same work ``coverage report`` does cold). Parsing is pure Python,
so threads would share one GIL; fresh processes, one per CPU, share out the files
instead, and send back the parsers as they are after ``parse_source`` (and ``arcs``
with branch data). The server keeps them, so this happens once per file version.

A helper is ``sys.executable -I`` running :func:`_main`: no coverage of its own (the
variables that would start it are removed), nothing read from the server's current
folder, and the signals it inherited blocked are unblocked. Anything that goes wrong
in a helper (a file it cannot parse, a crash) only means those files are parsed in
the server as before, where coverage.py reports the error in its own words.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import coverage

from .covcompat import PythonParser, drop_syntax_tree

__all__ = ["HELPED_FROM", "parse_all"]

#: Fewer files than this are parsed in the server: a helper's start costs about as
#: much as parsing some twenty files.
HELPED_FROM = 48

#: Most helpers started at once, whatever the CPU count.
MOST_HELPERS = 8

_HELPER = "import sys; sys.path[:0] = {path!r}; from wsgi_covguard.parsing import _main; _main()"


def parse_all(files: list[str], exclude: str | None, branch: bool) -> dict[str, PythonParser]:
    """coverage.py's parser of each of ``files``, parsed, as its ``PythonFileReporter``
    would make it (``exclude``: its exclusion regex; ``branch``: arcs found too).

    Files the helpers could not parse are missing from the answer.
    """
    helpers = min(len(files) // (HELPED_FROM // 2), os.cpu_count() or 1, MOST_HELPERS)
    if len(files) < HELPED_FROM or helpers < 2 or not sys.executable:
        return {}
    shares: list[list[str]] = [[] for _ in range(helpers)]
    loads = [0] * helpers
    for file in sorted(files, key=_size, reverse=True):  # largest first, to the lightest
        lightest = loads.index(min(loads))
        shares[lightest].append(file)
        loads[lightest] += _size(file)
    with ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="covguard-parse") as pool:
        answers = pool.map(_helped, shares, [exclude] * helpers, [branch] * helpers)
        parsed: dict[str, PythonParser] = {}
        for answer in answers:
            parsed.update(answer)
    return parsed


def _size(file: str) -> int:
    try:
        return os.stat(file).st_size
    except OSError:
        return 0


def _helped(files: list[str], exclude: str | None, branch: bool) -> dict[str, PythonParser]:
    """One helper's parsers of ``files`` (none if it failed)."""
    # Where coverage and we are imported from, whatever the helper's sys.path.
    path = [str(Path(coverage.__file__).parents[1]), str(Path(__file__).parents[1])]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COVGUARD_"))}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _HELPER.format(path=path)],
            input=pickle.dumps((files, exclude, branch)), capture_output=True, env=env,
            timeout=600, check=True, start_new_session=True,
        )  # fmt: skip
        parsed = pickle.loads(done.stdout)  # noqa: S301 (our own helper's answer)
    except (OSError, subprocess.SubprocessError, pickle.UnpicklingError, EOFError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _main() -> None:
    """A helper: ``(files, exclude, branch)`` pickled on stdin, ``{file: parser}`` out."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    files, exclude, branch = pickle.load(sys.stdin.buffer)  # noqa: S301 (from the server)
    parsed: dict[str, Any] = {}
    for file in files:
        parser = PythonParser(filename=file, exclude=exclude)
        try:
            parser.parse_source()
            if branch:
                parser.arcs()  # finds the branches, then lets the syntax tree go
        except Exception:  # noqa: S112 (the server parses it again and says why)
            continue
        drop_syntax_tree(parser)
        parsed[file] = parser
    sys.stdout.buffer.write(pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL))
