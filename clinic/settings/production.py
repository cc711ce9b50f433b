"""Production settings: HTTPS only, secure cookies, HSTS, a secret key that must be given."""

from clinic.runtime.errors import RuntimeConfigError

from .base import *  # noqa: F403
from .base import SECRET_KEY
from .env import env_bool, env_int

if SECRET_KEY.startswith("insecure-") or len(SECRET_KEY) < 50:
    raise RuntimeConfigError(
        "DJANGO_SECRET_KEY must be set to a random string of at least 50 characters in production."
    )

DEBUG = False
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
