"""The documentation site: built strict (``make docs``), then read in Chromium, every internal
link followed and every anchor it names found."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
from live import BIN, CHROMIUM, CHROMIUM_FLAGS, ROOT, RunningServer, free_port
from playwright.sync_api import sync_playwright

pytestmark = pytest.mark.core_independent


def build(site: Path, docs: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``mkdocs build`` of the repository's mkdocs.yml into ``site`` (the pages of ``docs``)."""
    config = ROOT / "mkdocs.yml"
    if docs is not None:  # the same configuration on other pages
        config = docs.parent / "mkdocs.yml"
        config.write_text((ROOT / "mkdocs.yml").read_text())
    return subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


def test_every_internal_link_of_the_site_leads_to_a_page_and_its_anchor(
    tmp_path: Path, servers: Callable[..., RunningServer]
) -> None:
    site = tmp_path / "site"
    done = build(site)
    assert done.returncode == 0, done.stderr
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    server = servers(argv, cwd=site, port=port, token=None).wait_listening()
    start = f"{server.url}/index.html"
    seen: dict[str, set[str]] = {}  # page -> the ids it has
    wanted: list[tuple[str, str, str]] = []  # (from page, to page, anchor)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        queue = [start]
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            answer = page.goto(url)
            assert answer is not None, url
            assert answer.ok, url
            seen[url] = set(page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id)"))
            hrefs = page.eval_on_selector_all("a[href]", "nodes => nodes.map(n => n.href)")
            for href in hrefs:
                target, anchor = urldefrag(urljoin(url, href))
                if not target.startswith(server.url):
                    continue  # another site: not followed (loopback only)
                if target.endswith("/"):
                    target += "index.html"
                wanted.append((url, target, anchor))
                queue.append(target)
        browser.close()
    pages = {url.rsplit("/", 1)[1] for url in seen}
    assert {"index.html", "getting-started.html", "recipes.html", "command-line.html",
            "control-routes.html", "changelog.html", "ARCHITECTURE.html"} <= pages  # fmt: skip
    missing = [(source, target, anchor) for source, target, anchor in wanted
               if anchor and anchor not in seen[target]]  # fmt: skip
    assert missing == []


def test_a_broken_link_or_anchor_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in (ROOT / "docs").iterdir():
        if page.is_file():
            (docs / page.name).write_bytes(page.read_bytes())
    (tmp_path / "CHANGELOG.md").write_bytes((ROOT / "CHANGELOG.md").read_bytes())
    with (docs / "recipes.md").open("a") as recipes:
        recipes.write("\nSee [the servers](servers.md#no-such-section) and [more](nowhere.md).\n")
    done = build(tmp_path / "site", docs)
    assert done.returncode == 1
    assert "contains a link 'nowhere.md', but the target is not found" in done.stderr
    assert "does not contain an anchor '#no-such-section'" in done.stderr
