"""wsgi_covguard: the coverage of a live WSGI server, saved when you say stop.

A framework-agnostic WSGI middleware. Start coverage at the top of the entry
point, wrap the application, run the server as always; an authenticated
``POST /__shutdown__`` lets requests in flight finish, saves every line and
stops the server so the process exits 0::

    import wsgi_covguard
    wsgi_covguard.start()
    from myproject import create_app
    application = wsgi_covguard.CovGuard(create_app())
"""

from __future__ import annotations

from .asgi import CovGuardASGI
from .auth import dashboard_password
from .errors import ConfigError, CovGuardError
from .middleware import CovGuard
from .session import CoverageSession
from .startup import get_session, start

__all__ = [
    "ConfigError",
    "CovGuard",
    "CovGuardASGI",
    "CovGuardError",
    "CoverageSession",
    "__version__",
    "dashboard_password",
    "get_session",
    "start",
]

__version__ = "0.1.0"
