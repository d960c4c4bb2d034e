"""The WSGI entry point: measure from the first import, wrap the app."""

import wsgi_covguard

wsgi_covguard.start()  # before the app is imported, so import-time lines count

from taskboard import create_app  # noqa: E402

app = create_app()
app.wsgi_app = wsgi_covguard.CovGuard(app.wsgi_app)  # type: ignore[method-assign]
application = app
