"""The WSGI entry point: measure from the first import, wrap the app."""

import wsgi_covguard

wsgi_covguard.start()  # before the app is imported, so import-time lines count

from notebook import create_app  # noqa: E402

application = wsgi_covguard.CovGuard(create_app())
