"""End-to-end tests: a real Chromium, driven by Playwright, against the live Guestbook server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_signing_follows_the_redirect_to_the_new_entry(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("Message").fill("Lovely server.")
    page.get_by_role("button", name="Sign").click()
    expect(page).to_have_url(re.compile(r"/entries/\d+$"))
    expect(page.locator("#name")).to_have_text("Ada wrote")
    expect(page.locator("#message")).to_have_text("Lovely server.")


def test_an_empty_message_is_refused_and_the_name_kept(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Bob")
    page.get_by_role("button", name="Sign").click()
    expect(page.locator(".errors")).to_have_text("An empty message is no message.")
    expect(page.get_by_label("Name")).to_have_value("Bob")


def test_the_home_page_lists_entries_with_links(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Cy")
    page.get_by_label("Message").fill("Hello from the list")
    page.get_by_role("button", name="Sign").click()
    page.get_by_role("link", name="Guestbook").click()
    page.locator("#entries").get_by_role("link", name="Cy").first.click()
    expect(page.locator("#message")).to_have_text("Hello from the list")


def test_the_json_api_lists_entries(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Dee")
    page.get_by_label("Message").fill("via the API")
    page.get_by_role("button", name="Sign").click()
    names = [entry["name"] for entry in page.request.get("/api/entries").json()["entries"]]
    assert "Dee" in names


def test_an_unknown_entry_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/entries/999")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such entry.")
