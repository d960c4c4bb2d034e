"""The shortcuts that make reports cheap at scale give coverage.py's own answers.

- Helper processes parse real files (coverage.py's and werkzeug's sources); every fact a
  report reads from a parser is compared with a parser made here the usual way.
- The HTML pages are written byte for byte as coverage.py's ``write_html`` writes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import coverage
import coverage.html
import pytest
import werkzeug
from coverage.config import DEFAULT_EXCLUDE
from coverage.misc import join_regex
from coverage.parser import PythonParser
from hypothesis import given
from hypothesis import strategies as st

from wsgi_covguard.covcompat import _write_html, lean_html_writes
from wsgi_covguard.parsing import HELPED_FROM, parse_all

pytestmark = pytest.mark.in_process

EXCLUDE = join_regex([*DEFAULT_EXCLUDE, "raise NotImplementedError"])
SOURCES = sorted(
    str(path)
    for package in (coverage, werkzeug)
    for path in Path(package.__file__).parent.rglob("*.py")  # type: ignore[arg-type]
)


def facts(parser: PythonParser, branch: bool) -> dict[str, object]:
    """What coverage.py's reports read from a parser."""
    known: dict[str, object] = {
        "statements": parser.statements,
        "excluded": parser.excluded,
        "multiline": parser.multiline_map,
        "partial": parser.lines_matching(r"while (True|1|False|0):"),
    }
    if branch:
        known["arcs"] = parser.arcs()
        known["exits"] = parser.exit_counts()
        known["why"] = {arc: parser.missing_arc_description(*arc) for arc in sorted(parser.arcs())}
    return known


@pytest.mark.parametrize("branch", [False, True], ids=["lines", "branches"])
def test_helpers_parse_as_coverage_does(branch: bool, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def broken(:\n")
    files = [*SOURCES, str(broken)]
    assert len(files) >= HELPED_FROM

    parsed = parse_all(files, EXCLUDE, branch)

    if (os.cpu_count() or 1) < 2:
        assert parsed == {}, "one CPU: nothing to share, the server parses"
        return
    assert str(broken) not in parsed, "left to the server, whose coverage.py says why"
    assert sorted(parsed) == SOURCES
    for file in SOURCES:
        here = PythonParser(filename=file, exclude=EXCLUDE)
        here.parse_source()
        assert facts(parsed[file], branch) == facts(here, branch), file
        assert parsed[file]._ast_root is None, "no syntax tree kept in the server"


def test_few_files_are_parsed_in_the_server() -> None:
    assert parse_all(SOURCES[: HELPED_FROM - 1], EXCLUDE, branch=False) == {}


# Pages as templates render them: tags, indentation, blank lines, odd white space.
PAGES = st.lists(
    st.sampled_from(["<td>", "x", " ", "  ", "\t", "\n", "\r", "\x0b", "\u2028", "\xa0", "é"])
).map("".join)


@given(page=PAGES)
def test_pages_are_written_as_coverage_writes_them(
    page: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("pages")
    coverage.html.write_html(str(folder / "theirs.html"), page)
    _write_html(str(folder / "ours.html"), page)
    assert (folder / "ours.html").read_bytes() == (folder / "theirs.html").read_bytes()


def test_only_the_write_html_we_know_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    own = coverage.html.write_html
    with lean_html_writes():
        assert coverage.html.write_html is _write_html
    assert coverage.html.write_html is own

    def changed(fname: str, html: str) -> None:  # a future coverage.py's, say
        """Not the regex we stand in for."""

    monkeypatch.setattr(coverage.html, "write_html", changed)
    with lean_html_writes():
        assert coverage.html.write_html is changed
