"""How the cost of reading a live server's coverage grows with the code and the workers.

A Django project is generated and measured whole (``[run] source = django``, some 74k
statements), or in part (~10k, ~1k statements). After an admin session it times, side by
side with coverage.py's own commands on the same data: ``summary`` cold and warm (again,
and after a few more requests), the HTML report cold and refreshed, ``data``, and
shutdown to gone; then, under gunicorn with 1, 4 and 16 workers, ``save``, ``data`` and
shutdown; and the app's throughput (wrk) with and without a dashboard open. Everything is
on 127.0.0.1; it prints a table and checks nothing (the goals are in the README).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from wsgi_covguard import dashboard_password

TOKEN = "scale-token-0123456789abcdef"  # noqa: S105 (a local benchmark's token)
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = ("bench", dashboard_password(TOKEN))  # the read-only pages' password
PY = sys.executable
BIN = Path(PY).parent

ENTRY = """\
import os
import wsgi_covguard
wsgi_covguard.start()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scaleproj.settings")
from django.core.wsgi import get_wsgi_application
application = wsgi_covguard.CovGuard(get_wsgi_application())
"""

#: name -> [run] source: the whole of Django, then smaller parts of it.
SIZES = {
    "~74k": "django",
    "~10k": "django.contrib.admin, django.contrib.auth, django.forms",
    "~1k": "django.contrib.admin.views, django.contrib.sessions",
}


def make_project(folder: Path) -> None:
    """``django-admin startproject``, migrated, with a superuser: the admin to browse."""
    folder.mkdir()
    subprocess.run([PY, "-m", "django", "startproject", "scaleproj", str(folder)], check=True)
    settings = folder / "scaleproj" / "settings.py"
    settings.write_text(settings.read_text().replace("ALLOWED_HOSTS = []", 'ALLOWED_HOSTS = ["*"]'))
    (folder / "wsgi_entry.py").write_text(ENTRY)
    env = {**os.environ, "DJANGO_SUPERUSER_PASSWORD": "bench-password-123"}
    env.pop("COVGUARD_TOKEN", None)
    for command in (["migrate", "-v0"], ["createsuperuser", "--noinput", "--username", "admin",
                                         "--email", "admin@example.com"]):  # fmt: skip
        subprocess.run([PY, "manage.py", *command], cwd=folder, env=env, check=True)


def admin_session(url: str, extra: bool = False) -> requests.Session:
    """Log in to the admin and visit its pages (``extra``: a few more of them)."""
    session = requests.Session()
    login = session.get(f"{url}/admin/login/", timeout=60)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token, login.text[:300]
    session.post(f"{url}/admin/login/?next=/admin/", timeout=60, headers={"Referer": url},
                 data={"csrfmiddlewaretoken": token[1], "username": "admin",
                       "password": "bench-password-123", "next": "/admin/"})  # fmt: skip
    pages = ["/admin/", "/admin/auth/user/", "/admin/auth/group/"]
    if extra:
        pages += ["/admin/auth/user/1/change/", "/admin/auth/group/add/", "/admin/password_change/"]
    for page in pages:
        assert session.get(url + page, timeout=60).status_code == 200, page
    return session


class Served:
    """``covguard serve`` (or gunicorn) on the project, ended by us."""

    def __init__(self, folder: Path, server: str = "waitress", workers: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COVGUARD_", "COVERAGE_"))}
        env["COVGUARD_TOKEN"] = TOKEN
        argv = [PY, "-m", "wsgi_covguard", "serve", "wsgi_entry:application", "--port", "0",
                "--server", server, *(["--workers", str(workers)] if workers else [])]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        self.url = ready.split(" on ")[1].split()[0]

    def timed(self, method: str, path: str, **kwargs: object) -> float:
        started = time.perf_counter()
        answer = requests.request(method, self.url + path, timeout=600, **kwargs)  # type: ignore[arg-type]
        took = time.perf_counter() - started
        assert answer.status_code in (200, 202), (path, answer.status_code, answer.text[:200])
        return took

    def shutdown(self) -> float:
        started = time.perf_counter()
        self.timed("POST", "/__shutdown__", headers=BEARER)
        self.process.wait(timeout=120)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def measured(folder: Path, source: str) -> Iterator[Path]:
    """The project with a fresh .coveragerc measuring ``source``, and no old data."""
    for old in folder.glob(".coverage*"):
        old.unlink() if old.is_file() else shutil.rmtree(old)
    (folder / ".coveragerc").write_text(f"[run]\nsource = {source}\n")
    yield folder


def coverage_command(folder: Path, *args: str) -> float:
    """Seconds for ``coverage <args>`` cold, in its own process, on the saved data."""
    started = time.perf_counter()
    subprocess.run([PY, "-m", "coverage", *args], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def by_size(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for name, source in SIZES.items():
        with measured(folder, source):
            served = Served(folder)
            try:
                admin_session(served.url)
                cold = served.timed("GET", "/__coverage__/summary", auth=BASIC)
                statements = requests.get(f"{served.url}/__coverage__/summary", auth=BASIC,
                                          timeout=600).json()["statements"]  # fmt: skip
                unchanged = served.timed("GET", "/__coverage__/summary", auth=BASIC)
                admin_session(served.url, extra=True)
                warm = served.timed("GET", "/__coverage__/summary", auth=BASIC)
                html_cold = served.timed("GET", "/__coverage__/html/", auth=BASIC)
                admin_session(served.url, extra=True)
                served.timed("GET", "/admin/auth/user/?q=x", cookies=None)
                html_refresh = served.timed("GET", "/__coverage__/html/", auth=BASIC)
                data = served.timed("GET", "/__coverage__/data", headers=BEARER)
                gone = served.shutdown()
            finally:
                served.stop()
            subprocess.run([PY, "-m", "coverage", "combine", "-q"], cwd=folder, check=True)
            report = coverage_command(folder, "report")
            html = coverage_command(folder, "html", "-d", str(folder / "htmlcov-cold"))
        rows += [
            (f"{name} ({statements:,} statements): summary, first call", f"{cold:.2f} s"),
            (f"{name}: summary again, nothing new measured", f"{unchanged:.3f} s"),
            (f"{name}: summary after more requests", f"{warm:.2f} s"),
            (f"{name}: `coverage report` cold, same data", f"{report:.2f} s"),
            (f"{name}: html/, first visit", f"{html_cold:.2f} s"),
            (f"{name}: html/ after more requests", f"{html_refresh:.2f} s"),
            (f"{name}: `coverage html` cold, same data", f"{html:.2f} s"),
            (f"{name}: data", f"{data:.2f} s"),
            (f"{name}: shutdown request → process gone", f"{gone:.2f} s"),
        ]
    return rows


def by_workers(folder: Path) -> list[tuple[str, str]]:
    rows = []
    with measured(folder, SIZES["~74k"]):
        for workers in (1, 4, 16):
            served = Served(folder, "gunicorn", workers)
            try:
                for _ in range(workers):  # reach most workers
                    admin_session(served.url)
                save = served.timed("POST", "/__coverage__/save", headers=BEARER)
                data = served.timed("GET", "/__coverage__/data", headers=BEARER)
                summary = served.timed("GET", "/__coverage__/summary", auth=BASIC)
                gone = served.shutdown()
            finally:
                served.stop()
            rows.append((f"gunicorn -w {workers}: save / data / summary / shutdown → gone",
                         f"{save:.2f} / {data:.2f} / {summary:.2f} / {gone:.2f} s"))  # fmt: skip
            for old in folder.glob(".coverage.*"):
                old.unlink()
    return rows


def wrk(url: str, cookie: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", "-H", f"Cookie: {cookie}", f"{url}/admin/"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match[1])


def dashboard_poller(url: str, stop: threading.Event) -> None:
    """What an open dashboard does: summary, then a pause of max(2 s, 10 times its time)."""
    while not stop.is_set():
        started = time.perf_counter()
        requests.get(f"{url}/__coverage__/summary", auth=BASIC, timeout=600)
        stop.wait(max(2.0, 10 * (time.perf_counter() - started)))


def with_a_dashboard(folder: Path, seconds: int, rounds: int) -> list[tuple[str, str]]:
    with measured(folder, SIZES["~74k"]):
        served = Served(folder)
        try:
            session = admin_session(served.url)
            cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
            wrk(served.url, cookie, 2)  # warm up
            quiet: list[float] = []
            watched: list[float] = []
            for _ in range(rounds):
                quiet.append(wrk(served.url, cookie, seconds))
                stop = threading.Event()
                poller = threading.Thread(target=dashboard_poller, args=(served.url, stop))
                poller.start()
                watched.append(wrk(served.url, cookie, seconds))
                stop.set()
                poller.join()
        finally:
            served.stop()
    ratio = statistics.median(watched) / statistics.median(quiet)
    figures = f"{statistics.median(watched):.0f} / {statistics.median(quiet):.0f} = {ratio:.2f}"
    return [(f"~74k: /admin/ req/s, a dashboard open / none ({rounds} rounds, medians)", figures)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds (default: 3)")
    parser.add_argument("--only", choices=["sizes", "workers", "dashboard"], action="append")
    args = parser.parse_args()
    parts: dict[str, Callable[[Path], list[tuple[str, str]]]] = {
        "sizes": by_size,
        "workers": by_workers,
        "dashboard": lambda folder: with_a_dashboard(folder, args.seconds, args.rounds),
    }
    with tempfile.TemporaryDirectory(prefix="covguard-scale-") as tmp:
        folder = Path(tmp) / "project"
        make_project(folder)
        rows = []
        for name in args.only or parts:
            rows += parts[name](folder)
            for row in rows[-1:]:
                print(f"  ... {row[0]}: {row[1]}", file=sys.stderr, flush=True)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| what | time |\n|---|---|")
    for what, figure in rows:
        print(f"| {what} | {figure} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
