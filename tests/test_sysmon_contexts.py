"""Dynamic contexts under the sysmon core: per-context lines equal ctrace's, nothing after
the stop.

coverage.py's sysmon core disables each line's event once it has reported, so on its own
only the first context to run a line gets it; wsgi_covguard re-arms every event at each
switch (``covcompat.switch_context``). The same workload runs under both cores, each in a
process of its own, and what each context holds must be the same, line for line: a
deterministic scenario of threads, generators, coroutines, exceptions and late imports, and
real servers (one process, gunicorn's workers, an ASGI one) labelled through the context
route. On the oldest coverage.py allowed, whose flush loses lines at a switch, sysmon
contexts are refused in one line instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import coverage
import pytest
import requests
from live import (
    PYTEST,
    ROOT,
    TEST_APPS,
    TOKEN,
    CovguardServe,
    data_files,
    read_data,
    wait_workers_measuring,
)  # fmt: skip

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="sys.monitoring (the sysmon core) is Python 3.12+"
)

#: What this coverage.py can do: record contexts under sysmon, or refuse them.
RECORDS = coverage.version_info >= (7, 18)

WORK = """\
import asyncio


def hot():
    total = 0
    for number in range(3):
        total += number
    return total


def shared(flag):
    if flag:
        return "first"
    return "second"


def numbers():
    yield 1
    yield 2
    yield 3


async def waiter():
    await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    return "done"


def blocked_thread(blocked, go):
    before = 1
    blocked.set()
    go.wait()
    after = before + 1
    return after


def fails():
    try:
        raise ValueError("on purpose")
    except ValueError:
        handled = True
    return handled
"""

LATE = """\
def run():
    value = 1
    return value + 1
"""

#: Each context's lines, as JSON, for a workload whose every step is in a known context: a
#: function hot before the first switch, a generator and a coroutine suspended across
#: switches, a thread blocked across one, an exception, a module first imported late. Then,
#: once finished, what runs no longer counts, even where a save follows.
SCENARIO = """\
import asyncio, json, sys, threading
import wsgi_covguard

session = wsgi_covguard.start(contexts=True)
import work

work.hot()
session.switch_context("one")
work.shared(True)
numbers = work.numbers()
next(numbers)
loop = asyncio.new_event_loop()
task = loop.create_task(work.waiter())
loop.run_until_complete(asyncio.sleep(0))
blocked, go = threading.Event(), threading.Event()
thread = threading.Thread(target=work.blocked_thread, args=(blocked, go))
thread.start()
blocked.wait()
session.switch_context("two")
work.shared(True)
next(numbers)
work.fails()
import late
late.run()
go.set()
thread.join()
session.switch_context("three")
work.hot()
loop.run_until_complete(task)
for _ in numbers:
    pass
loop.close()
session.finish()
work.shared(False)  # after the stop: its last line never ran before
work.hot()
session.coverage.save()
data = session.coverage.get_data()
found = {}
for context in sorted(data.measured_contexts()):
    data.set_query_context(context)
    found[context] = {
        name.rsplit("/", 1)[-1]: sorted(data.lines(name) or []) for name in data.measured_files()
    }
print(json.dumps({"core": session.core, "lines": found}))
"""


def run_scenario(folder: Path, core: str) -> dict[str, Any]:
    (folder / "work.py").write_text(WORK)
    (folder / "late.py").write_text(LATE)
    (folder / ".coveragerc").write_text("[run]\ninclude = */work.py\n    */late.py\n")
    env = {**os.environ, "COVGUARD_TOKEN": TOKEN, "COVERAGE_CORE": core}
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO], cwd=folder, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["core"] == core, done.stderr
    assert "Coverage.py warning" not in done.stderr, done.stderr
    return result


@pytest.mark.skipif(not RECORDS, reason="coverage.py < 7.18 refuses sysmon contexts")
def test_per_context_lines_under_sysmon_equal_ctraces(tmp_path: Path) -> None:
    sysmon = run_scenario(tmp_path, "sysmon")["lines"]
    ctrace = run_scenario(tmp_path, "ctrace")["lines"]
    assert set(sysmon) == {"", "one", "two", "three"}
    assert sysmon == ctrace
    work = (tmp_path / "work.py").read_text().splitlines()
    last = work.index('    return "second"') + 1
    assert all(last not in lines["work.py"] for lines in sysmon.values()), "ran after the stop"
    hot = work.index("        total += number") + 1
    assert hot in sysmon[""]["work.py"]
    assert hot in sysmon["three"]["work.py"]


def test_contexts_under_sysmon_on_an_older_coverage_are_refused_in_one_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text("app = None\n")
    env = {**os.environ, "COVGUARD_TOKEN": TOKEN, "COVERAGE_CORE": "sysmon"}
    done = subprocess.run(
        [sys.executable, "-c", "import wsgi_covguard; wsgi_covguard.start(contexts=True)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if RECORDS:
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode != 0
    assert (
        f"core 'sysmon' cannot record dynamic contexts here: coverage.py {coverage.__version__}"
        " loses lines at a context switch under sysmon (install coverage>=7.18);"
        " drop the contexts option or set core to 'ctrace'"
    ) in done.stderr


#: Servers labelled through the context route: (covguard serve's arguments, app folder,
#: the paths asked in each context).
SERVERS = {
    "waitress": (["httpbin:app"], None, ["/get", "/status/418"]),
    "gunicorn --workers 2": (
        ["httpbin:app", "--server", "gunicorn", "--workers", "2"],
        None,
        ["/get", "/status/418"],
    ),
    "granian --workers 2 (threads its runtime makes)": (
        ["httpbin:app", "--server", "granian", "--workers", "2"],
        None,
        ["/get", "/status/418"],
    ),
    "uvicorn (ASGI)": (["notesapi:api", "--server", "uvicorn"], TEST_APPS, ["/hello", "/notes/1"]),
    "hypercorn (ASGI)": (
        ["notesapi:api", "--server", "hypercorn"],
        TEST_APPS,
        ["/hello", "/notes/1"],
    ),
}


def labelled(folder: Path, server: str, core: str) -> dict[str, dict[str, list[int]]]:
    """``server`` measuring under ``core`` (``--contexts``), three contexts set through the
    route and a request in each; what each context holds, combined over the processes."""
    args, app_dir, paths = SERVERS[server]
    run = folder / core
    run.mkdir()
    package = "httpbin" if app_dir is None else "notesapi"
    (run / ".coveragerc").write_text(f"[run]\nsource_pkgs = {package}\n")
    if app_dir is not None:
        args = [*args, "--app-dir", str(app_dir)]
    live = CovguardServe([*args, "--contexts"], cwd=run, env={**os.environ, "COVERAGE_CORE": core})
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        if "--workers" in args:  # each labelled from the first switch (one booting misses it)
            wait_workers_measuring(live, int(args[args.index("--workers") + 1]))
        for number, path in enumerate([paths[0], paths[1], paths[0]]):
            answer = requests.post(
                f"{live.url}/__coverage__/context", data=f"step {number}", headers=bearer,
                timeout=30,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            for _ in range(3):  # every worker, most likely
                assert live.get(path).status_code in (200, 418)
        assert live.shutdown().status_code == 202
        assert live.wait(timeout=30) == 0, live.stderr
    finally:
        live.stop()
    assert f"core {core}, contexts on" in live.stderr, live.stderr
    found: dict[str, dict[str, set[int]]] = {}
    for path in data_files(run):
        with read_data(path) as data:
            for context in data.measured_contexts():
                data.set_query_context(context)
                for name in data.measured_files():
                    short = name.split(f"/{package}/", 1)[-1]
                    found.setdefault(context, {}).setdefault(short, set()).update(
                        data.lines(name) or []
                    )
    return {
        context: {n: sorted(lines) for n, lines in files.items()}
        for context, files in found.items()
    }


@pytest.mark.skipif(not RECORDS, reason="coverage.py < 7.18 refuses sysmon contexts")
@pytest.mark.parametrize("server", SERVERS)
def test_a_servers_lines_per_context_under_sysmon_equal_ctraces(
    server: str, tmp_path: Path
) -> None:
    sysmon = labelled(tmp_path, server, "sysmon")
    assert {"step 0", "step 1", "step 2"} <= set(sysmon)
    assert sysmon == labelled(tmp_path, server, "ctrace")


#: Examples whose browser suite labels each test (--covguard-contexts): WSGI and ASGI.
EXAMPLES = {"flask": "wsgi:application", "fastapi": "asgi:app"}


def browser_suite_contexts(folder: Path, entry: str, core: str) -> dict[str, list[str]]:
    """``covguard run --contexts`` of the example's browser tests under ``core``; each
    context's lines, ``file:line``."""
    for stale in folder.glob(".coverage*"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "wsgi_covguard", "run", entry, "--contexts", "--",
         *PYTEST, "-q", "tests",
         "--covguard-contexts"],
        cwd=folder, env={**env, "COVERAGE_CORE": core}, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"core {core}, contexts on" in done.stderr, done.stderr
    found: dict[str, list[str]] = {}
    with read_data(folder / ".coverage") as data:
        for name in data.measured_files():
            short = os.path.relpath(name, folder)
            for line, contexts in data.contexts_by_lineno(name).items():
                for context in contexts:
                    found.setdefault(context, []).append(f"{short}:{line}")
    return {context: sorted(lines) for context, lines in found.items()}


@pytest.mark.skipif(not RECORDS, reason="coverage.py < 7.18 refuses sysmon contexts")
@pytest.mark.parametrize("example", EXAMPLES)
def test_an_examples_browser_suite_per_test_under_sysmon_equals_ctraces(
    example: str, tmp_path: Path
) -> None:
    folder = tmp_path / example
    shutil.copytree(
        ROOT / "examples" / example, folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    sysmon = browser_suite_contexts(folder, EXAMPLES[example], "sysmon")
    assert len([context for context in sysmon if context.endswith("|run")]) >= 3, sysmon.keys()
    assert sysmon == browser_suite_contexts(folder, EXAMPLES[example], "ctrace")
