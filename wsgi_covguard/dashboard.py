"""The live dashboard and snapshots: see what the end-to-end tests reach while they run.

Read-only pages under the control prefix, for a person in a browser:

- ``<prefix>/`` the dashboard (a static page that reads ``summary``);
- ``<prefix>/summary`` totals and per-file numbers of the data so far, as JSON;
- ``<prefix>/html/`` coverage.py's own HTML report of the data so far, brought up
  to date in a private temporary folder (removed at exit) at each visit of its
  index, served read-only (werkzeug's ``safe_join`` keeps requests inside it);
- ``<prefix>/snapshots`` the labelled snapshots, ``<prefix>/snapshots/<name>``
  one of them as a data file, ``<prefix>/diff?from=A&to=B`` the lines gained and
  lost between two snapshots (``to`` defaults to now).

They accept the token as a Bearer token, or as the password of HTTP Basic
authentication, which a browser asks for once. ``POST <prefix>/snapshot`` changes
state, so, like every such route, it is Bearer-only: a browser never sends a
Bearer token by itself, so a page on another origin cannot trigger it.

Numbers come from coverage.py's reporting API on the data of every process
(see :mod:`.workers`), read with the server's own coverage configuration.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import mimetypes
import os
import re
import shutil
import tempfile
import threading
import time
from importlib import resources
from typing import Any

import coverage
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from . import ending
from .messages import Answer, ControlRequest, json_answer
from .reporting import Reports
from .routes import Route
from .safefiles import create_private, is_regular_file, read_regular_file
from .session import MIN_FREE_BYTES, free_bytes
from .workers import Siblings

__all__ = ["Dashboard"]

_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


#: Snapshots kept beside the data at most, in count and in bytes.
MAX_SNAPSHOTS = 200
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024


class Dashboard:
    """The read-only pages, the snapshot route, and the data they share."""

    def __init__(self, group: Siblings) -> None:
        self.group = group
        self.session = group.session
        self._reports = Reports(group.session)
        self._html_dir: str | None = None
        self._html_lock = threading.Lock()
        # The data's fingerprint when the figures, and the HTML report, were last made.
        self._figures: tuple[list[Any] | None, dict[str, Any]] | None = None
        self._html_made_for: list[Any] | None = None

    def routes(self, prefix: str) -> list[Route]:
        """The pages a browser may read (Basic authentication too), and the snapshot route."""
        return [
            Route(f"{prefix}/", "GET", self.page, read_only=True),
            Route(f"{prefix}/summary", "GET", self.summary, read_only=True),
            Route(f"{prefix}/html/<rest:rest>", "GET", self.html, read_only=True),
            Route(f"{prefix}/snapshots", "GET", self.snapshots, read_only=True),
            Route(f"{prefix}/snapshots/<rest:rest>", "GET", self.snapshot_file, read_only=True),
            Route(f"{prefix}/diff", "GET", self.diff, read_only=True),
            Route(f"{prefix}/snapshot", "POST", self.take_snapshot),
        ]

    def page(self, request: ControlRequest) -> Answer:
        """The dashboard: a static page that reads ``summary``, under its own policy."""
        page = resources.files("wsgi_covguard").joinpath("dashboard.html").read_text("utf-8")
        answer = Answer.of(page.encode(), "text/html")
        answer.headers["Content-Security-Policy"] = _page_policy(page)
        return answer

    def summary(self, request: ControlRequest) -> Answer:
        """coverage.py's totals and per-file figures of the data so far, as JSON."""
        fingerprint = self.group.fingerprint()
        figures = self._figures
        if figures is None or fingerprint is None or figures[0] != fingerprint:
            # Gathering the data is work too (885 files: a third of the time): off the
            # request's traced thread, like the analysis.
            made = self._reports.run(lambda: self._reports.figures(self.group.parts()))
            figures = (fingerprint, made)
            self._figures = figures
        numbers = dict(figures[1])
        numbers.update(
            core=self.session.core,
            context=self.session.context,
            workers=self.group.worker_count(),
            overlap_count=self.session.overlap_count,
            generated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return json_answer(numbers)

    def html(self, request: ControlRequest, rest: str) -> Answer:
        """coverage.py's HTML report of the data so far, brought up to date at each visit of
        its index (coverage rewrites only the pages whose file changed)."""
        with self._html_lock:
            if self._html_dir is None:
                self._html_dir = tempfile.mkdtemp(prefix="covguard-html-")
                _remove_at_exit(self._html_dir)
            made = os.path.exists(os.path.join(self._html_dir, "index.html"))
            if not made or rest in ("", "index.html"):  # a visit of the index: up to date
                fingerprint = self.group.fingerprint()
                if not made or fingerprint is None or fingerprint != self._html_made_for:
                    folder = self._html_dir
                    self._reports.run(lambda: self._reports.html(self.group.parts(), folder))
                    self._html_made_for = fingerprint
            folder = self._html_dir
        path = safe_join(folder, rest or "index.html")
        if path is None or not os.path.isfile(path):
            raise NotFound(f"no page {rest!r} in the report")
        with open(path, "rb") as file:
            body = file.read()
        answer = Answer.of(body, mimetypes.guess_type(path)[0] or "application/octet-stream")
        answer.headers["Content-Security-Policy"] = REPORT_POLICY
        return answer

    # -- snapshots --------------------------------------------------------------------------
    # Bounded: each is as large as the data, and a test suite may take one per test.

    def _snapshot_dir(self) -> str:
        return os.path.dirname(self.session.data_file)

    def _snapshot_prefix(self) -> str:
        # Not "<data file>.*": `coverage combine` would merge and delete snapshots.
        return os.path.basename(self.session.data_file) + "-snapshot-"

    def take_snapshot(self, request: ControlRequest) -> Answer:
        """Keep every process's data so far as a snapshot, labelled by the body."""
        text = request.body(1024).decode("utf-8", "replace")
        label = _LABEL.sub("-", text.strip())[:60].strip("-")
        now = time.time()
        stamp = (
            time.strftime("%Y%m%dT%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        )
        name = f"{self._snapshot_prefix()}{stamp}-{label or 'unlabelled'}"  # sorts by time
        folder, kept = self._snapshot_dir(), self._names()
        if len(kept) >= MAX_SNAPSHOTS:
            return json_answer(
                {"error": f"{len(kept)} snapshots already, the most kept; remove old ones"}, 409
            )
        with self.group.combined() as path, open(path, "rb") as file:
            data = file.read()
        used = sum(os.path.getsize(os.path.join(folder, old)) for old in kept)
        if used + len(data) > MAX_SNAPSHOT_BYTES:
            return json_answer(
                {"error": f"snapshots would take {used + len(data)} bytes, more than"
                 f" {MAX_SNAPSHOT_BYTES} kept at most; remove old ones"}, 409,
            )  # fmt: skip
        free, needed = free_bytes(folder), len(data) + MIN_FREE_BYTES
        if free < needed:  # a disk filled by snapshots would fail the saves next
            return json_answer(
                {"error": f"could not keep a snapshot in {folder!r}: {free} bytes free,"
                 f" {needed} needed; free some space there"}, 507,
            )  # fmt: skip
        try:
            create_private(os.path.join(self._snapshot_dir(), name), data)
        except FileExistsError:  # taken within the same millisecond, or planted
            return json_answer({"error": f"{name!r} exists already; try again"}, 409)
        return json_answer({"snapshot": name, "label": label})

    def _names(self) -> list[str]:
        """The snapshots: regular files only, never a link someone planted."""
        folder, prefix = self._snapshot_dir(), self._snapshot_prefix()
        return sorted(
            name
            for name in os.listdir(folder)
            if name.startswith(prefix) and is_regular_file(os.path.join(folder, name))
        )

    def snapshots(self, request: ControlRequest) -> Answer:
        """The snapshots' names, oldest first."""
        return json_answer({"snapshots": self._names()})

    def snapshot_file(self, request: ControlRequest, rest: str) -> Answer:
        """One snapshot, as a data file to download."""
        if rest not in self._names():
            raise NotFound(f"no snapshot {rest!r}")
        try:
            body = read_regular_file(os.path.join(self._snapshot_dir(), rest))
        except FileNotFoundError:  # replaced since it was listed
            raise NotFound(f"no snapshot {rest!r}") from None
        answer = Answer.of(body, "application/vnd.sqlite3")
        answer.headers["Content-Disposition"] = f'attachment; filename="{rest}"'
        return answer

    def diff(self, request: ControlRequest) -> Answer:
        """The lines gained and lost between snapshot ``from`` and ``to`` (or now)."""
        args = request.args
        before, after = args.get("from", ""), args.get("to", "")
        names = self._names()
        for name in (before, after):
            if name and name not in names:
                return json_answer({"error": f"no snapshot {name!r}; see snapshots"}, 404)
        if not before:
            return json_answer({"error": "say from=<snapshot> (and to=<snapshot>, or now)"}, 400)
        old = _snapshot_lines(os.path.join(self._snapshot_dir(), before))
        if after:
            new = _snapshot_lines(os.path.join(self._snapshot_dir(), after))
        else:
            with self.group.combined() as path:
                new = _lines(path)
        changes = {}
        for name in sorted(set(old) | set(new)):
            gained = sorted(new.get(name, set()) - old.get(name, set()))
            lost = sorted(old.get(name, set()) - new.get(name, set()))
            if gained or lost:
                changes[name] = {"gained": gained, "lost": lost}
        return json_answer({"from": before, "to": after or "now", "files": changes})


#: coverage.py's HTML report: its own files, and the one inline script it writes (the
#: contexts of a page); nothing from elsewhere, no framing.
REPORT_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _page_policy(page: str) -> str:
    """The dashboard's policy: its own inline script and style (by hash), its own requests,
    and its empty ``data:`` icon (without one, the browser asks the app for an icon)."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
            for text in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')};"
        " connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'none'"
    )


def _remove_at_exit(folder: str) -> None:
    ending.remove_at_exit(functools.partial(shutil.rmtree, folder, ignore_errors=True))


def _snapshot_lines(path: str) -> dict[str, set[int]]:
    """A snapshot's lines, read from a regular file only (copied first: SQLite reads by name)."""
    try:
        body = read_regular_file(path)
    except FileNotFoundError:
        raise NotFound(f"no snapshot {os.path.basename(path)!r}") from None
    with tempfile.TemporaryDirectory(prefix="covguard-snapshot-") as folder:
        copy = os.path.join(folder, "snapshot")
        create_private(copy, body)
        return _lines(copy)


def _lines(path: str) -> dict[str, set[int]]:
    data = coverage.CoverageData(basename=path)
    data.read()
    try:
        return {name: set(data.lines(name) or ()) for name in data.measured_files()}
    finally:
        data.close(force=True)
