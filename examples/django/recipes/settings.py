"""Settings of the example: no database, the templates of this package, local hosts only."""

SECRET_KEY = "example-only-not-a-secret-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
INSTALLED_APPS = ["recipes"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "recipes.urls"
# manage.py runserver serves these: the entry points that wrap the app in the door.
WSGI_APPLICATION = "wsgi.application"
ASGI_APPLICATION = "asgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
