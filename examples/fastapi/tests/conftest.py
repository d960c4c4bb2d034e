"""The live server and the browser come from wsgi_covguard's pytest plugin (pytest.ini).

``base_url`` is ``COVGUARD_URL`` under ``covguard run`` (or ``make demo``); run alone
(``pytest tests``), the plugin serves ``covguard_app`` for the session and stops it
through the shutdown route at the end, so the coverage data is saved either way.
The browser is Debian's Chromium (``covguard_chromium``), headless; without it the
tests fail, saying so.
"""
