"""The live dashboard, snapshots and ``covguard report``: in a real browser and over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import certifi.core
import coverage
import pytest
import requests
from live import (
    BIN,
    CHROMIUM,
    CHROMIUM_FLAGS,
    DASHBOARD,
    HTTPBIN_COVERAGERC,
    HTTPBIN_ENTRY,
    ROOT,
    TOKEN,
    CovguardServe,
    RunningServer,
    children,
    data_files,
    free_port,
)
from playwright.sync_api import expect, sync_playwright

PY = sys.executable
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = ("anyone", DASHBOARD)


def statements_run(counts: str) -> int:
    """``"41 of 120 statements run"`` -> 41."""
    return int(counts.split(" of ")[0])


@pytest.fixture
def taskboard_live(tmp_path: Path) -> Iterator[tuple[CovguardServe, Path]]:
    folder = tmp_path / "flask"
    shutil.copytree(
        ROOT / "examples" / "flask", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    live = CovguardServe(["wsgi:application"], cwd=folder)
    try:
        yield live, folder
    finally:
        live.stop()


@pytest.mark.core_independent
def test_the_dashboard_shows_coverage_rise_in_a_browser(
    taskboard_live: tuple[CovguardServe, Path], tmp_path: Path
) -> None:
    live, _ = taskboard_live
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(
            http_credentials={"username": "tester", "password": DASHBOARD},
            viewport={"width": 1100, "height": 700},
        )
        dashboard = context.new_page()
        dashboard.goto(f"{live.url}/__coverage__/")
        expect(dashboard.locator("#total")).to_have_text(re.compile(r"^\d+%$"), timeout=10_000)
        dashboard.wait_for_timeout(2500)  # one more refresh
        before = statements_run(dashboard.locator("#counts").inner_text())
        expect(dashboard.locator("#files tr")).to_have_count(2)
        assert "core " in dashboard.locator("#meta").inner_text()

        app = context.new_page()  # the end-to-end test, meanwhile
        app.goto(live.url + "/")
        app.get_by_label("Title").fill("Watch me")
        app.get_by_role("button", name="Add").click()
        app.get_by_role("button", name="Mark done").click()
        app.goto(live.url + "/tasks/999")

        # A locator, not wait_for_function: the page's policy forbids evaluating strings.
        counts = dashboard.locator("#counts")
        expect(counts).not_to_have_text(re.compile(rf"^{before} of "), timeout=10_000)
        assert statements_run(counts.inner_text()) > before
        least = dashboard.locator("#files tr").first.locator("td").nth(5).inner_text()
        most = dashboard.locator("#files tr").last.locator("td").nth(5).inner_text()
        assert float(least.rstrip("%")) <= float(most.rstrip("%")), "least covered first"
        shot = tmp_path / "dashboard.png"
        dashboard.screenshot(path=str(shot))

        dashboard.get_by_role("link", name="coverage.py's HTML report").click()
        expect(dashboard).to_have_url(f"{live.url}/__coverage__/html/")
        dashboard.get_by_role("link", name="taskboard/__init__.py").first.click()
        expect(dashboard.locator("h1")).to_contain_text("taskboard/__init__.py")
        browser.close()
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("COVGUARD_UPDATE_DOCS") == "1":
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")


#: The Flask example, with a log of every request that reaches the app itself.
LOGGED_ENTRY = """\
from taskboard import create_app

app = create_app()


def application(environ, start_response):
    with open("requests.log", "a") as log:
        log.write(environ["PATH_INFO"] + "\\n")
    return app(environ, start_response)
"""


@pytest.mark.core_independent
def test_opening_the_dashboard_and_the_report_measures_nothing_of_the_app(tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(
        ROOT / "examples" / "flask", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    (folder / "logged.py").write_text(LOGGED_ENTRY)
    live = CovguardServe(["logged:application"], cwd=folder)
    try:
        summary = f"{live.url}/__coverage__/summary"
        before = requests.get(summary, auth=BASIC, timeout=30).json()
        asked: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            context = browser.new_context(
                http_credentials={"username": "me", "password": DASHBOARD}
            )
            context.on("request", lambda request: asked.append(request.url))
            page = context.new_page()
            for path in ("/__coverage__/", "/__coverage__/html/"):
                page.goto(live.url + path)
                page.wait_for_load_state("networkidle")
                # A browser that asks for an icon (Chromium run by hand does; Playwright's
                # does not): the one the page declares, else the site's /favicon.ico.
                icon = page.locator("link[rel~=icon]").first
                declared = icon.get_attribute("href") if icon.count() else None
                assert declared is not None, f"{path} declares no icon: /favicon.ico, the app's"
                url = urljoin(page.url, declared)
                if not url.startswith("data:"):
                    assert requests.get(url, auth=BASIC, timeout=30).status_code == 200, url
                    asked.append(url)
            page.wait_for_timeout(2500)  # the dashboard polls once more meanwhile
            browser.close()
        after = requests.get(summary, auth=BASIC, timeout=30).json()
    finally:
        live.stop()
    control = f"{live.url}/__coverage__/"
    assert [url for url in asked if not url.startswith(control)] == []
    assert not (folder / "requests.log").exists(), "a request reached the app"
    assert (after["statements"], after["missing"]) == (before["statements"], before["missing"])


@pytest.mark.core_independent
def test_covguard_dashboard_prints_a_read_only_password_never_the_token(
    taskboard_live: tuple[CovguardServe, Path],
) -> None:
    live, folder = taskboard_live
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")}
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "dashboard", live.url], cwd=folder, text=True,
        capture_output=True, timeout=30, env={**env, "COVGUARD_TOKEN": TOKEN},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    address, login = done.stdout.splitlines()
    assert address == f"{live.url}/__coverage__/"
    password = login.removeprefix("user: any; password: ").removesuffix(" (read-only)")
    assert password == DASHBOARD
    assert TOKEN not in done.stdout + done.stderr
    assert requests.get(address, auth=("any", password), timeout=30).status_code == 200
    save = f"{live.url}/__coverage__/save"
    for refused in (
        requests.post(save, auth=("any", password), timeout=30),
        requests.post(save, headers={"Authorization": f"Bearer {password}"}, timeout=30),
        requests.post(f"{live.url}/__shutdown__", auth=("any", password), timeout=30),
    ):
        assert refused.status_code == 403, refused.text
    assert data_files(folder) == [], "the dashboard's password changes nothing"


def test_labelled_snapshots_are_listed_and_compared(
    taskboard_live: tuple[CovguardServe, Path],
) -> None:
    live, folder = taskboard_live
    url = f"{live.url}/__coverage__"
    first = requests.post(f"{url}/snapshot", data="after the home page", headers=BEARER, timeout=30)
    assert first.status_code == 200
    assert first.json()["label"] == "after-the-home-page"
    requests.get(f"{live.url}/api/tasks", timeout=10)  # reaches the JSON view
    second = requests.post(f"{url}/snapshot", data="after the api", headers=BEARER, timeout=30)
    names = requests.get(f"{url}/snapshots", auth=BASIC, timeout=30).json()["snapshots"]
    assert names == [first.json()["snapshot"], second.json()["snapshot"]]
    assert all((folder / name).exists() for name in names), "beside the data files"
    assert data_files(folder) == [], "a snapshot saves nothing else"
    assert not any(".coverage." in name for name in names)

    diff = requests.get(
        f"{url}/diff", params={"from": names[0], "to": names[1]}, auth=BASIC, timeout=30
    )
    changes = diff.json()["files"]
    source = (folder / "taskboard" / "__init__.py").read_text().splitlines()
    api_line = source.index("        return jsonify([task.as_dict() for task in tasks.all()])") + 1
    init = next(
        change for name, change in changes.items() if name.endswith("taskboard/__init__.py")
    )
    assert api_line in init["gained"], "the lines reached between the two snapshots"
    assert all(change["lost"] == [] for change in changes.values())

    download = requests.get(f"{url}/snapshots/{names[1]}", auth=BASIC, timeout=30)
    assert download.content.startswith(b"SQLite format 3\x00")
    assert requests.get(f"{url}/snapshots/nope", auth=BASIC, timeout=30).status_code == 404
    assert (
        requests.get(f"{url}/diff", params={"from": "nope"}, auth=BASIC, timeout=30).status_code
        == 404
    )


@pytest.mark.core_independent
def test_state_changes_need_bearer_and_pages_need_credentials(
    taskboard_live: tuple[CovguardServe, Path],
) -> None:
    live, folder = taskboard_live
    url = f"{live.url}/__coverage__"
    for route in ("snapshot", "save", "reset", "context"):
        assert requests.post(f"{url}/{route}", data="x", auth=BASIC, timeout=30).status_code == 403
    assert requests.post(f"{live.url}/__shutdown__", auth=BASIC, timeout=30).status_code == 403
    unauthenticated = requests.get(f"{url}/", timeout=30)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Basic ")
    assert (
        requests.get(f"{url}/summary", auth=("x", "wrong-token-0123456789"), timeout=30).status_code
        == 403
    )
    assert requests.get(f"{url}/html/", timeout=30).status_code == 401
    page = requests.get(f"{url}/", auth=BASIC, timeout=30)
    assert page.status_code == 200
    assert TOKEN not in page.text
    assert live.get("/").status_code == 200, "still serving"
    assert list(folder.glob(".coverage-snapshot-*")) == []


@pytest.mark.core_independent
def test_an_inert_middleware_serves_no_dashboard(tmp_path: Path) -> None:
    folder = tmp_path / "flask"
    shutil.copytree(
        ROOT / "examples" / "flask", folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [PY, "-c", "import wsgi\nfrom werkzeug.test import Client\n"
         "print(Client(wsgi.application).get('/__coverage__/', auth=('x', 'y' * 20)).status_code)"],
        cwd=folder, env={k: v for k, v in os.environ.items() if not k.startswith("COVGUARD_")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "404"  # the app's own 404
    assert data_files(folder) == []


def test_covguard_report_pulls_the_data_through_the_api(
    taskboard_live: tuple[CovguardServe, Path], tmp_path: Path
) -> None:
    live, _ = taskboard_live
    requests.get(live.url + "/", timeout=10)
    html = tmp_path / "report"
    done = subprocess.run(
        [PY, "-m", "wsgi_covguard", "report", live.url, "--html", str(html)],
        env={**os.environ, "COVGUARD_TOKEN": TOKEN}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "taskboard/__init__.py" in done.stdout
    assert "TOTAL" in done.stdout
    assert (html / "index.html").exists()
    wrong = subprocess.run(
        [PY, "-m", "wsgi_covguard", "report", live.url],
        env={**os.environ, "COVGUARD_TOKEN": "wrong-token-0123456789"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == f"covguard: {live.url} answered 403; check the token and URL"


def test_under_gunicorn_the_dashboard_counts_every_worker(
    tmp_path: Path, servers: Callable[..., RunningServer]
) -> None:
    (tmp_path / ".coveragerc").write_text(HTTPBIN_COVERAGERC)
    (tmp_path / "wsgi.py").write_text(HTTPBIN_ENTRY)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "-w", "3", "wsgi:application"]
    master = servers(argv, cwd=tmp_path, port=port).wait_listening()
    deadline = time.monotonic() + 20
    while len(children(master.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    paths = ["/get", "/headers", "/ip", "/user-agent", "/uuid", "/base64/aGk=", "/status/418"]
    for _ in range(6):
        for path in paths:
            requests.get(master.url + path, timeout=10)
    answer = requests.get(f"{master.url}/__coverage__/summary", auth=BASIC, timeout=60)
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["workers"] == 3
    assert master.shutdown().status_code == 202
    assert master.wait(timeout=15) == 0

    union = coverage.Coverage(
        data_file=str(tmp_path / ".coverage"), config_file=str(tmp_path / ".coveragerc")
    )
    union.combine([str(path) for path in data_files(tmp_path)], keep=True)
    reported = {entry["file"].split("httpbin/")[-1]: entry for entry in summary["files"]}
    for name in union.get_data().measured_files():
        _, statements, _, missing, _ = union.analysis2(name)
        entry = reported[name.split("httpbin/")[-1]]
        assert (entry["statements"], entry["missing"]) == (len(statements), len(missing)), name


@pytest.mark.core_independent
def test_the_html_report_before_anything_was_measured_is_a_clear_4xx(tmp_path: Path) -> None:
    (tmp_path / ".coveragerc").write_text("[run]\nsource_pkgs = nothing_measured_here\n")
    (tmp_path / "hello.py").write_text(
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'hi']\n"
    )
    live = CovguardServe(["hello:app"], cwd=tmp_path)
    try:
        answer = requests.get(f"{live.url}/__coverage__/html/", auth=BASIC, timeout=30)
        assert answer.status_code == 409
        assert "No data" in answer.json()["error"]
        summary = requests.get(f"{live.url}/__coverage__/summary", auth=BASIC, timeout=30)
        assert summary.status_code == 409, "coverage report's own answer: no data to report"
        assert summary.json()["error"] == "No data to report."
    finally:
        live.stop()


def big_project(folder: Path, apps: int = 8, modules: int = 30) -> None:
    """A project the size of a real site (500 files): apps of view modules, each imported
    and one function of it run, and migrations the server never imports."""
    calls = []
    for app in range(apps):
        package = folder / "bigsite" / f"app{app}"
        (package / "migrations").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "migrations" / "__init__.py").write_text("")
        for module in range(modules):
            (package / f"views{module}.py").write_text(
                f"def seen():\n    return {module}\n\n\ndef unseen():\n    return -{module}\n"
            )
            (package / "migrations" / f"{module:04d}_auto.py").write_text(
                "OPERATIONS = []\nDEPENDENCIES = []\n"
            )
            calls.append(f"bigsite.app{app}.views{module}")
    (folder / "bigsite" / "__init__.py").write_text("")
    # An installed package too: certifi's __init__.py and core.py (not what some of its
    # builds ship beside them).
    (folder / ".coveragerc").write_text(
        "[run]\nsource = bigsite\nsource_pkgs = certifi\n"
        "omit =\n    */certifi/tests/*\n    */certifi/__main__.py\n"
    )
    (folder / "bigapp.py").write_text(
        "import importlib\n\n"
        f"MODULES = {calls!r}\n\n\n"
        "def application(environ, start_response):\n"
        "    importlib.import_module('certifi').where()\n"
        "    for name in MODULES:\n"
        "        importlib.import_module(name).seen()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )


@pytest.mark.core_independent
def test_a_project_of_500_files_reads_folder_by_folder_filtered_the_unrun_apart(
    tmp_path: Path,
) -> None:
    big_project(tmp_path)
    live = CovguardServe(["bigapp:application"], cwd=tmp_path)
    try:
        assert requests.get(live.url + "/", timeout=30).status_code == 200
        summary = requests.get(live.url + "/__coverage__/summary", auth=BASIC, timeout=60).json()
        folders = {row["folder"]: row for row in summary["folders"]}
        # Each folder sums its own files, by coverage.py's Numbers: the total is theirs.
        assert sum(row["statements"] for row in folders.values()) == summary["statements"]
        assert sum(row["missing"] for row in folders.values()) == summary["missing"]
        app0 = folders["bigsite/app0"]
        assert (app0["statements"], app0["missing"], app0["shown"]) == (120, 30, "75")
        migrations = folders["bigsite/app0/migrations"]
        assert (migrations["statements"], migrations["missing"]) == (60, 60)
        # An installed package's files, absolute in coverage report, read as the package.
        shown = "site-packages/certifi/core.py"
        (core,) = [row for row in summary["files"] if row["name"] == shown]
        assert core["file"] == os.path.realpath(certifi.core.__file__)
        assert "site-packages/certifi" in folders

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(http_credentials={"username": "tester", "password": DASHBOARD})
            page.goto(f"{live.url}/__coverage__/")
            files = page.locator("#files tr")
            # The 240 view modules that ran (and certifi's two); the 240 migrations no line
            # of which ran, apart, not at the top of the list at 0%.
            expect(files).to_have_count(8 * 30 + 8 * 2 + 1 + 2, timeout=20_000)  # __init__s
            expect(page.locator("#unrun-count")).to_have_text(
                "240 file(s) of which no line ran (never imported by the server)"
            )
            page.get_by_label("Filter by path").fill("site-packages/certifi/")
            expect(files).to_have_count(2)
            row = files.filter(has=page.get_by_text(shown, exact=True))
            expect(row.locator("td").first).to_have_attribute("title", core["file"])
            assert "_auto.py" not in page.locator("#files").inner_text()
            page.get_by_label("Filter by path").fill("app3/views1")
            expect(files).to_have_count(11)  # views1, views10..19
            page.get_by_label("Filter by path").fill("")
            page.locator("#by-folder summary").click()
            folder_rows = page.locator("#folders tr")
            # Folders by name: the apps first, not their 0% migrations.
            expect(folder_rows.first.locator("td").first).to_have_text("bigsite")
            folder_rows.filter(has=page.get_by_text("bigsite/app5", exact=True)).click()
            expect(page.get_by_label("Filter by path")).to_have_value("bigsite/app5/")
            expect(files).to_have_count(30 + 2)
            expect(folder_rows.first.locator("td").nth(3)).to_have_text(
                folders["bigsite/app5"]["shown"] + "%"
            )
            browser.close()
    finally:
        live.stop()
