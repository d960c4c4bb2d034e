"""End-to-end tests: a real Chromium, driven by Playwright, against the live Notebook server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_saving_a_note_follows_the_redirect_to_it(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Groceries")
    page.get_by_label("Text").fill("Bread, cheese.")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/notes/\d+$"))
    expect(page.locator("#title")).to_have_text("Groceries")
    expect(page.locator("#text")).to_have_text("Bread, cheese.")


def test_a_note_without_a_title_is_refused_and_the_text_kept(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Text").fill("No title here")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".errors")).to_have_text("A note needs a title.")
    expect(page.get_by_label("Text")).to_have_value("No title here")


def test_the_json_api_lists_the_notes(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("From the API")
    page.get_by_role("button", name="Save").click()
    titles = [note["title"] for note in page.request.get("/api/notes").json()["notes"]]
    assert "From the API" in titles


def test_an_unknown_note_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/notes/999")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such note.")
