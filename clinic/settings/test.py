"""Settings for the test suite: the same real PostgreSQL and Redis, faster password hashing."""

import os

os.environ.setdefault("CLINIC_CACHE_PREFIX", f"clinic-test-{os.getpid()}")

from .base import *  # noqa: F403
from .base import CACHES, LOGGING

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": os.environ["CLINIC_CACHE_PREFIX"]}}
CELERY_TASK_ALWAYS_EAGER = False
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Tasks queued by tests go to their own Redis database, away from a running development worker.
CELERY_BROKER_URL = os.environ.get("CLINIC_TEST_BROKER_URL") or (
    REDIS_URL.rsplit("/", 1)[0] + "/15"  # noqa: F405
)
