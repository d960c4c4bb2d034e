"""End-to-end tests: a real HTTP client against the live Taskboard server."""

from __future__ import annotations

import requests


def test_home_page_lists_tasks(base_url: str) -> None:
    page = requests.get(f"{base_url}/", timeout=5)
    assert page.status_code == 200
    assert "<h1>Tasks</h1>" in page.text


def test_adding_a_task_redirects_to_it(base_url: str) -> None:
    created = requests.post(
        f"{base_url}/tasks", data={"title": "Write the report", "priority": "high"}, timeout=5
    )
    assert created.status_code == 200
    assert created.history
    assert created.history[0].status_code == 302
    assert "Write the report" in created.text
    assert "priority high" in created.text


def test_an_empty_title_is_refused_with_the_reason(base_url: str) -> None:
    refused = requests.post(f"{base_url}/tasks", data={"title": "  "}, timeout=5)
    assert refused.status_code == 400
    assert "A title is required." in refused.text


def test_completing_a_task_shows_it_done(base_url: str) -> None:
    created = requests.post(f"{base_url}/tasks", data={"title": "Ship it"}, timeout=5)
    task_url = created.url
    requests.post(f"{task_url}/done", timeout=5)
    assert "Done" in requests.get(task_url, timeout=5).text


def test_the_json_api_lists_what_was_added(base_url: str) -> None:
    requests.post(f"{base_url}/tasks", data={"title": "From the API test"}, timeout=5)
    titles = [task["title"] for task in requests.get(f"{base_url}/api/tasks", timeout=5).json()]
    assert "From the API test" in titles


def test_an_unknown_task_is_a_friendly_404(base_url: str) -> None:
    missing = requests.get(f"{base_url}/tasks/99999", timeout=5)
    assert missing.status_code == 404
    assert "No such page or task." in missing.text
