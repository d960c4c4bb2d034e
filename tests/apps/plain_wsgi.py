import wsgi_covguard

wsgi_covguard.start()

from plainapp import app  # noqa: E402

application = wsgi_covguard.CovGuard(app, drain_timeout=8)
