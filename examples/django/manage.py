#!/usr/bin/env python
"""Django's command line for the example: ``python manage.py runserver`` serves wsgi.py's
app, measured from here on (set COVGUARD_TOKEN; without it this line does nothing)."""

import os
import sys

import wsgi_covguard

wsgi_covguard.start()  # before Django imports the settings and the project (runserver's checks)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recipes.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
