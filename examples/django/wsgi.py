"""The WSGI entry point: measure from the first import, wrap the app."""

import os

import wsgi_covguard

wsgi_covguard.start()  # before Django and the project are imported, so import-time lines count

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recipes.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = wsgi_covguard.CovGuard(get_wsgi_application())
