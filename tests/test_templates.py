"""Which templates each test rendered: the engines' hooks and the notes' pairing, in-process.

The hooks are tried in a fresh interpreter (the engines imported after the hook went in,
as in a server started by ``covguard serve``), on real Jinja2 and Django templates that
extend and include others. The notes are paired with real parallel data files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from coverage import CoverageData

from wsgi_covguard.templates import NOTE_PREFIX, TemplateLog, read_for

pytestmark = pytest.mark.in_process

ENGINES = """\
import sys
from wsgi_covguard.templates import TemplateLog

context = [None]
log = TemplateLog(lambda: context[0])
log.install()
assert "jinja2" not in sys.modules and "django" not in sys.modules, "nothing imported"

import jinja2
env = jinja2.Environment(loader=jinja2.FileSystemLoader("jinja"))
env.get_template("startup.html")
context[0] = "test_a|run"
assert env.get_template("page.html").render() == "<main>part</main>"
env.from_string("{{ 1 }}").render()  # a string: no file
context[0] = "test_b|run"
env.select_template(["missing.html", "part/part.html"]).render()

from django.conf import settings
settings.configure(TEMPLATES=[{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": ["django"],
}])
import django
django.setup()
from django.template import Context, Template
from django.template.loader import render_to_string
context[0] = "test_c|run"
assert render_to_string("page.html") == "<main>part</main>"
Template("{{ 1 }}").render(Context())  # a string: no file
log.write(".", ["test_a|run", "test_b|run", "test_c|run"])
"""


def test_each_engine_s_loads_are_noted_under_the_context_running(tmp_path: Path) -> None:
    for engine in ("jinja", "django"):  # the same syntax for what is tried here
        (tmp_path / engine / "part").mkdir(parents=True)
        (tmp_path / engine / "base.html").write_text("<main>{% block main %}{% endblock %}</main>")
        (tmp_path / engine / "page.html").write_text(
            '{% extends "base.html" %}{% block main %}{% include "part/part.html" %}{% endblock %}'
        )
        (tmp_path / engine / "part" / "part.html").write_text("part")
        (tmp_path / engine / "startup.html").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", ENGINES], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    jinja, django = tmp_path / "jinja", tmp_path / "django"

    def page(folder: Path) -> dict[str, str]:
        return {str(folder / name): str(folder) for name in ("page.html", "base.html",
                                                              "part/part.html")}  # fmt: skip

    (written,) = tmp_path.glob(f"{NOTE_PREFIX}*.json")
    assert json.loads(written.read_text())["rendered"] == {
        "": {str(jinja / "startup.html"): str(jinja)},  # before any context: start-up
        "test_a|run": page(jinja),
        "test_b|run": {str(jinja / "part" / "part.html"): str(jinja)},
        "test_c|run": page(django),
    }


def parallel_file(folder: Path, pid: int, contexts: list[str]) -> Path:
    """A real parallel data file, as the process ``pid`` writes it, its lines under
    ``contexts``."""
    path = folder / f".coverage.host.pid{pid}.Xabcdefx"
    data = CoverageData(basename=str(path))
    for context in contexts:
        data.set_context(context)
        data.add_lines({str(folder / "app.py"): [1]})
    data.write()
    data.close(force=True)
    return path


def note(folder: Path, pid: int, contexts: list[str], rendered: dict[str, dict[str, str]]) -> None:
    """The note the process ``pid`` writes, as :meth:`TemplateLog.write` writes it (its
    engines hooked: whether jinja2 is imported in this test process is beside the point)."""
    log = TemplateLog(lambda: None)
    log.rendered = rendered
    log._unhooked = lambda: None  # type: ignore[method-assign]
    log.write(str(folder), contexts)
    os.replace(folder / f"{NOTE_PREFIX}{_host()}.pid{os.getpid()}.json",
               folder / f"{NOTE_PREFIX}host.pid{pid}.json")  # fmt: skip


def _host() -> str:
    import socket

    return socket.gethostname().replace(".", "_")


def test_a_data_file_s_note_vouches_for_its_contexts(tmp_path: Path) -> None:
    first = parallel_file(tmp_path, 11, ["a|run", "b|run"])
    second = parallel_file(tmp_path, 12, ["c|run"])
    quiet = parallel_file(tmp_path, 13, [""])  # no context: a master, say; no note needed
    note(tmp_path, 11, [None, "a|run", "b|run"], {"a|run": {"/t/x.html": "/t"}})
    note(tmp_path, 12, [None, "c|run"], {"c|run": {"/t/y.html": "/t"}, "": {"/t/s.html": "/t"}})
    rendered = read_for([first, second, quiet])
    assert rendered.unknown is None
    assert rendered.contexts == {"a|run", "b|run", "c|run"}
    assert rendered.by_context == {
        "a|run": {"/t/x.html": "/t"}, "c|run": {"/t/y.html": "/t"}, "": {"/t/s.html": "/t"},
    }  # fmt: skip


@pytest.mark.parametrize("lost", ["missing", "silent on a context", "older", "damaged",
                                  "combined"])  # fmt: skip
def test_a_data_file_without_its_note_leaves_the_templates_unknown(
    tmp_path: Path, lost: str
) -> None:
    """A worker's note lost must not read as "no test rendered anything there": its
    sibling's note names the same contexts."""
    first = parallel_file(tmp_path, 11, ["a|run"])
    second = parallel_file(tmp_path, 12, ["a|run"])
    note(tmp_path, 11, [None, "a|run"], {"a|run": {"/t/x.html": "/t"}})
    files = [first, second]
    if lost != "missing":
        note(tmp_path, 12, [None] if lost == "silent on a context" else [None, "a|run"], {})
    if lost == "older":
        os.utime(tmp_path / f"{NOTE_PREFIX}host.pid12.json", (1, 1))
    elif lost == "damaged":
        (tmp_path / f"{NOTE_PREFIX}host.pid12.json").write_text("{")
    elif lost == "combined":
        files = [parallel_file(tmp_path, 0, ["a|run"]).rename(tmp_path / ".coverage")]
    assert read_for(files).unknown is not None


def test_an_engine_imported_without_its_hook_leaves_the_templates_unknown(tmp_path: Path) -> None:
    """Whatever kept the hook out (a loader the import hook cannot wrap, say), the note
    must not read as "no test rendered a template"."""
    script = (
        "from wsgi_covguard.templates import TemplateLog\n"
        "import jinja2\n"  # before any hook: nothing notes its loads
        "TemplateLog(lambda: 'a|run').write('.', ['a|run'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (written,) = tmp_path.glob(f"{NOTE_PREFIX}*.json")
    assert json.loads(written.read_text())["unknown"] == (
        "jinja2.environment was imported without the hook that notes its templates"
    )
