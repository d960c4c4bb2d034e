"""End-to-end tests: a real Chromium, driven by Playwright, against the live Recipes server."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def test_adding_a_recipe_follows_the_redirect_to_it(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Pancakes")
    page.get_by_label("Minutes").fill("20")
    page.get_by_role("button", name="Add").click()
    expect(page).to_have_url(re.compile(r"/recipes/\d+$"))
    expect(page.locator("#name")).to_have_text("Pancakes")
    expect(page.locator("#minutes")).to_have_text("Ready in 20 minutes")


def test_a_bad_time_is_refused_and_the_name_kept(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Instant")
    page.get_by_label("Minutes").fill("0")
    page.get_by_role("button", name="Add").click()
    expect(page.locator(".errors")).to_have_text("Cooking takes at least a minute.")
    expect(page.get_by_label("Name")).to_have_value("Instant")


def test_the_json_api_lists_the_recipes(page: Page) -> None:
    page.goto("/")
    page.get_by_label("Name").fill("Soup")
    page.get_by_label("Minutes").fill("45")
    page.get_by_role("button", name="Add").click()
    names = [recipe["name"] for recipe in page.request.get("/api/recipes").json()["recipes"]]
    assert "Soup" in names


def test_an_unknown_recipe_is_a_friendly_404(page: Page) -> None:
    response = page.goto("/recipes/999")
    assert response is not None
    assert response.status == 404
    expect(page.locator("#message")).to_have_text("No such recipe.")
