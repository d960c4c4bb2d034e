"""End-to-end tests: a real Chromium, driven by Playwright, against the live Bookshelf server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_shelving_a_book_follows_the_redirect_to_it(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("The Name of the Rose")
    page.get_by_label("Year").fill("1980")
    page.get_by_role("button", name="Shelve").click()
    expect(page).to_have_url(re.compile(r"/books/\d+$"))
    expect(page.locator("#title")).to_have_text("The Name of the Rose")
    expect(page.locator("#year")).to_have_text("Published in 1980")


def test_a_bad_year_is_refused_and_the_title_kept(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Future Book")
    page.get_by_label("Year").fill("3000")
    page.get_by_role("button", name="Shelve").click()
    expect(page.locator(".errors")).to_have_text("The year must be between 1450 and 2100.")
    expect(page.get_by_label("Title")).to_have_value("Future Book")


def test_the_json_api_lists_the_books(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Dune")
    page.get_by_label("Year").fill("1965")
    page.get_by_role("button", name="Shelve").click()
    titles = [book["title"] for book in page.request.get("/api/books").json()["books"]]
    assert "Dune" in titles


def test_an_unknown_book_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/books/999")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such book on the shelf.")
