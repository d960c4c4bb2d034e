"""End-to-end tests: a real HTTP client against the live Guestbook server."""

from __future__ import annotations

import requests


def test_the_form_is_on_the_home_page(base_url: str) -> None:
    page = requests.get(f"{base_url}/", timeout=5)
    assert page.status_code == 200
    assert '<form method="post" action="/sign">' in page.text


def test_signing_redirects_to_the_new_entry(base_url: str) -> None:
    signed = requests.post(
        f"{base_url}/sign", data={"name": "Ada", "message": "Lovely server."}, timeout=5
    )
    assert signed.status_code == 200
    assert signed.history
    assert signed.history[0].status_code in (302, 303)
    assert "Ada wrote" in signed.text


def test_an_empty_message_is_refused_with_the_reason(base_url: str) -> None:
    refused = requests.post(f"{base_url}/sign", data={"name": "Bob", "message": ""}, timeout=5)
    assert refused.status_code == 400
    assert "An empty message is no message." in refused.text


def test_the_json_api_lists_entries(base_url: str) -> None:
    requests.post(f"{base_url}/sign", data={"name": "Cy", "message": "via API"}, timeout=5)
    names = [
        entry["name"]
        for entry in requests.get(f"{base_url}/api/entries", timeout=5).json()["entries"]
    ]
    assert "Cy" in names


def test_an_unknown_entry_is_a_friendly_404(base_url: str) -> None:
    missing = requests.get(f"{base_url}/entries/999", timeout=5)
    assert missing.status_code == 404
    assert "No such entry." in missing.text
