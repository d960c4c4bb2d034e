"""The ASGI entry point: measure from the first import, wrap the app."""

import wsgi_covguard

wsgi_covguard.start()  # before the app is imported, so import-time lines count

from shortlinks import create_app  # noqa: E402

app = wsgi_covguard.CovGuardASGI(create_app())
