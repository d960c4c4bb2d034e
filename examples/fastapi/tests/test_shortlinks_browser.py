"""End-to-end tests: a real Chromium, driven by Playwright, against the live Shortlinks server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def shorten(page: Page, title: str, target: str) -> None:
    page.goto("/")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Address").fill(target)
    page.get_by_role("button", name="Shorten").click()


def test_the_home_page_shows_the_form_and_goes_live(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Links")).to_be_visible()
    expect(page.locator("#live")).to_have_text("Live")  # its websocket is open


def test_shortening_a_link_leads_to_its_page(page: Page) -> None:
    shorten(page, "The docs", "https://example.org/docs")
    expect(page).to_have_url(re.compile(r"/links/[\w-]+$"))
    expect(page.locator("#title")).to_have_text("The docs")
    expect(page.locator("#target")).to_have_text("https://example.org/docs")
    expect(page.locator("#visits")).to_have_text("0 visits")


def test_the_api_errors_show_on_the_page(page: Page) -> None:
    shorten(page, "", "not an address")
    errors = page.locator(".errors li")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text("target: Input should be a valid URL")
    expect(errors.nth(1)).to_contain_text("title: String should have at least 1 character")


def test_an_open_page_hears_of_a_new_link_over_its_websocket(page: Page) -> None:
    page.goto("/")
    expect(page.locator("#live")).to_have_text("Live")
    other = page.context.new_page()
    shorten(other, "From another tab", "https://example.org/tab")
    expect(other.locator("#title")).to_have_text("From another tab")
    expect(page.locator("#live")).to_have_text("New: From another tab")


def test_the_short_address_redirects_and_counts_the_visit(page: Page) -> None:
    shorten(page, "Counted", "https://example.org/counted")
    expect(page.locator("#title")).to_have_text("Counted")
    short = page.locator("#short").get_attribute("href")
    assert short is not None
    answer = page.request.get(short, max_redirects=0)
    assert answer.status == 307
    assert answer.headers["location"] == "https://example.org/counted"
    page.reload()
    expect(page.locator("#visits")).to_have_text("1 visit")


def test_the_json_api_lists_what_was_added(page: Page) -> None:
    shorten(page, "Listed", "https://example.org/listed")
    expect(page.locator("#title")).to_have_text("Listed")
    titles = [link["title"] for link in page.request.get("/api/links").json()]
    assert "Listed" in titles


def test_an_unknown_link_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/links/nothing-here")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such page or link.")
