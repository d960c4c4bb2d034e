"""End-to-end tests: a real Chromium, driven by Playwright, against the live Taskboard server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_the_home_page_shows_the_form(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    expect(page.get_by_label("Title")).to_be_empty()


def test_adding_a_task_follows_the_redirect_to_it(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Write the report")
    page.get_by_label("Priority").select_option("high")
    page.get_by_role("button", name="Add").click()
    expect(page).to_have_url(re.compile(r"/tasks/\d+$"))
    expect(page.locator("#title")).to_have_text("Write the report")
    expect(page.locator("#status")).to_have_text("Open, priority high")


def test_an_empty_title_is_refused_with_the_reason(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("   ")
    page.get_by_role("button", name="Add").click()
    expect(page.locator(".errors")).to_have_text("A title is required.")


def test_marking_a_task_done_moves_it_down_the_list(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("Ship it")
    page.get_by_role("button", name="Add").click()
    page.get_by_role("button", name="Mark done").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#tasks li.done", has_text="Ship it")).to_be_visible()


def test_the_json_api_lists_what_was_added(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Title").fill("From the browser")
    page.get_by_role("button", name="Add").click()
    titles = [task["title"] for task in page.request.get("/api/tasks").json()]
    assert "From the browser" in titles


def test_an_unknown_task_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/tasks/99999")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such page or task.")
