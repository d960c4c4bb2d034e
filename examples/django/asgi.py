"""The ASGI entry point: the same project, served by an ASGI server (uvicorn, hypercorn,
granian, daphne). Measure from the first import, wrap the app."""

import os

import wsgi_covguard

wsgi_covguard.start()  # before Django and the project are imported, so import-time lines count

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recipes.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = wsgi_covguard.CovGuardASGI(get_asgi_application())
