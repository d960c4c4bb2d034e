"""``python -m wsgi_covguard`` is ``covguard``."""

import sys

from .cli import main

sys.exit(main())
